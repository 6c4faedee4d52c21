//! The collector against real stores: a private `redis-server` and temp SQLite files per test.
//!
//! Covers the healthy snapshot, constant statement and round-trip counts as the fleet grows,
//! schema degradation (optional columns, cascade tables, required columns), garbage in Redis,
//! outages that must fail fast without leaking the URL, and that the platform file is never
//! written.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use canary::clock::now_ms;
use canary::collect::sql::open_read_only;
use canary::collect::{Collected, builtin};
use canary::config::PlatformConfig;
use canary::fleet::redis_server::RedisServer;
use canary_invariants::{
    Agent, AnomalyKind, Backlog, BacklogJson, Execution, Field, KeyTtl, OrphanRows, Phase,
    Severity, Snapshot, Source,
};

use crate::support::platform_db::{AgentRow, ExecRow, PlatformDb, iso, sqlite_datetime};
use crate::support::redis_server;

const WINDOW_MS: i64 = 30 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;

async fn collect_now(cfg: &PlatformConfig) -> Collected {
    builtin(cfg, WINDOW_MS, now_ms()).await
}

fn floor_sec(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn exec(id: &str, agent: &str, status: &str, phase: Phase) -> Execution {
    Execution {
        id: id.to_owned(),
        agent_name: agent.to_owned(),
        status: status.to_owned(),
        phase,
        started_at_ms: None,
        completed_at_ms: None,
        queued_at_ms: None,
        leased: false,
        lease_expires_at_ms: None,
        completed_at_set: false,
        queued_at_set: false,
        has_session: false,
        backlog: None,
    }
}

fn sql_unavailable(snapshot: &Snapshot) -> Option<&str> {
    snapshot
        .sources_unavailable
        .iter()
        .find(|s| s.source == Source::Sqlite)
        .map(|s| s.error.as_str())
}

fn redis_unavailable(snapshot: &Snapshot) -> Option<&str> {
    snapshot
        .sources_unavailable
        .iter()
        .find(|s| s.source == Source::Redis)
        .map(|s| s.error.as_str())
}

fn anomaly_subjects(snapshot: &Snapshot, source: Source) -> BTreeSet<String> {
    snapshot
        .anomalies
        .iter()
        .filter(|a| a.source == source)
        .map(|a| a.subject.clone())
        .collect()
}

fn run(conn: &mut redis::Connection, args: &[&[u8]]) {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.exec(conn).expect("redis command");
}

#[tokio::test]
async fn healthy_fleet_collects_into_the_expected_snapshot() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();

    db.add_agents(&[
        AgentRow::new("alpha").caps(2, 600).system(),
        AgentRow::new("beta"),
        AgentRow::new("gamma").deleted(&sqlite_datetime(now - 24 * HOUR_MS)),
    ]);
    let plus_two_hours = chrono::DateTime::from_timestamp_millis(now - 90_000 + 2 * HOUR_MS)
        .expect("ms")
        .format("%Y-%m-%dT%H:%M:%S%.3f+02:00")
        .to_string();
    db.add_executions(&[
        ExecRow::new("e-run", "alpha", "running")
            .queued_at(&iso(now - 12_000))
            .started_at(&iso(now - 10_000))
            .session("sess-e-run"),
        ExecRow::new("e-lease", "beta", "running")
            .started_at(&sqlite_datetime(now - 20_000))
            .leased_until(&iso(now + 60_000)),
        ExecRow::new("e-queued", "alpha", "queued")
            .queued_at(&sqlite_datetime(now - 5_000))
            .metadata(r#"{"message": "hello"}"#),
        ExecRow::new("e-ok", "beta", "success")
            .started_at(&iso(now - 120_000))
            .completed_at(&sqlite_datetime(now - 60_000)),
        // Outside the recent window, in both text shapes: the SQL prefilter drops them.
        ExecRow::new("e-old", "alpha", "failed").completed_at(&sqlite_datetime(now - 2 * HOUR_MS)),
        ExecRow::new("e-old-t", "alpha", "success").completed_at(&iso(now - 2 * HOUR_MS)),
        ExecRow::new("e-garbage", "beta", "failed").completed_at("the day before yesterday"),
        ExecRow::new("e-epoch", "beta", "cancelled")
            .completed_at(&((now - 30_000) / 1000).to_string()),
        ExecRow::new("e-offset", "beta", "skipped").completed_at(&plus_two_hours),
        ExecRow::new("e-word", "alpha", "completed"),
        // Terminal without completed_at (E-03's case): windowed by its start instead.
        ExecRow::new("e-nocomp", "beta", "failed").started_at(&iso(now - 60_000)),
        ExecRow::new("e-nocomp-old", "beta", "failed").started_at(&iso(now - 2 * HOUR_MS)),
        ExecRow::new("e-ghost", "ghost", "running").started_at(&iso(now - 3_000)),
        ExecRow::new("e-ghost-done", "ghost", "success").completed_at(&iso(now - 3 * HOUR_MS)),
    ]);
    db.add_keyed_rows("agent_tags", Some("ghost"), Some(("tag", "t")), 2);
    db.add_keyed_rows("agent_tags", Some("gamma"), Some(("tag", "t")), 1);
    db.add_keyed_rows("agent_tags", Some("alpha"), Some(("tag", "t")), 1);
    db.add_keyed_rows("agent_skills", Some("ghost2"), Some(("skill_name", "s")), 1);
    db.add_keyed_rows(
        "chat_sessions",
        Some("ghost"),
        Some(("status", "active")),
        1,
    );
    db.add_keyed_rows(
        "chat_sessions",
        Some("ghost"),
        Some(("status", "closed")),
        3,
    );
    db.add_keyed_rows("mcp_api_keys", Some("ghost"), Some(("scope", "agent")), 1);
    db.add_keyed_rows("mcp_api_keys", Some("ghost"), Some(("scope", "user")), 1);
    db.add_keyed_rows("mcp_api_keys", None, Some(("scope", "agent")), 1);
    db.add_keyed_rows(
        "operator_queue",
        Some("ghost"),
        Some(("status", "pending")),
        1,
    );
    // An alarm sentinel host's queue rows are never orphans (the default `where` condition).
    db.add_keyed_rows(
        "operator_queue",
        Some("_retention-guard"),
        Some(("status", "pending")),
        2,
    );
    db.add_keyed_rows(
        "access_requests",
        Some("ghost"),
        Some(("status", "approved")),
        1,
    );

    let mut r = redis_server::connect(&server);
    let zadd = |r: &mut redis::Connection, key: &str, at_ms: i64, member: &str| {
        redis::cmd("ZADD")
            .arg(key)
            .arg(secs(at_ms))
            .arg(member)
            .exec(r)
            .expect("ZADD");
    };
    zadd(&mut r, "agent:slots:alpha", now - 10_000, "e-run");
    zadd(&mut r, "agent:slots:alpha", now - 1_000, "drain-abc");
    zadd(&mut r, "agent:slots:ghost", now - 3_000, "e-ghost");
    redis::cmd("HSET")
        .arg("agent:slot:alpha:e-run")
        .arg("timeout_seconds")
        .arg(600)
        .exec(&mut r)
        .expect("HSET");
    redis::cmd("EXPIRE")
        .arg("agent:slot:alpha:e-run")
        .arg(900)
        .exec(&mut r)
        .expect("EXPIRE");
    redis::cmd("HSET")
        .arg("agent:slot:ghost:e-ghost")
        .arg("timeout_seconds")
        .arg(900)
        .exec(&mut r)
        .expect("HSET");
    redis::cmd("SET")
        .arg("canary:drain_tick_at")
        .arg(format!("{:.3}", secs(now - 5_000)))
        .exec(&mut r)
        .expect("SET");

    let cfg = db.config(&server.url());
    let before_read = now_ms();
    let started = Instant::now();
    let Collected { snapshot, stats } = builtin(&cfg, WINDOW_MS, now).await;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let after_read = now_ms();

    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    assert_eq!(snapshot.taken_at_ms, now);
    let sql = snapshot.sql.as_ref().expect("sql state");
    assert_eq!(
        sql.agents,
        vec![
            Agent {
                name: "alpha".into(),
                is_system: true,
                max_parallel_tasks: 2,
                execution_timeout_seconds: 600,
                deleted: false
            },
            Agent {
                name: "beta".into(),
                is_system: false,
                max_parallel_tasks: 3,
                execution_timeout_seconds: 900,
                deleted: false
            },
            Agent {
                name: "gamma".into(),
                is_system: false,
                max_parallel_tasks: 3,
                execution_timeout_seconds: 900,
                deleted: true
            },
        ]
    );

    let expected_execs = vec![
        Execution {
            completed_at_ms: Some(floor_sec(now - 30_000)),
            completed_at_set: true,
            ..exec("e-epoch", "beta", "cancelled", Phase::Terminal)
        },
        Execution {
            completed_at_set: true,
            ..exec("e-garbage", "beta", "failed", Phase::Terminal)
        },
        Execution {
            started_at_ms: Some(now - 3_000),
            ..exec("e-ghost", "ghost", "running", Phase::Running)
        },
        Execution {
            started_at_ms: Some(floor_sec(now - 20_000)),
            leased: true,
            lease_expires_at_ms: Some(now + 60_000),
            ..exec("e-lease", "beta", "running", Phase::Running)
        },
        Execution {
            started_at_ms: Some(now - 60_000),
            ..exec("e-nocomp", "beta", "failed", Phase::Terminal)
        },
        Execution {
            completed_at_ms: Some(now - 90_000),
            completed_at_set: true,
            ..exec("e-offset", "beta", "skipped", Phase::Terminal)
        },
        Execution {
            started_at_ms: Some(now - 120_000),
            completed_at_ms: Some(floor_sec(now - 60_000)),
            completed_at_set: true,
            ..exec("e-ok", "beta", "success", Phase::Terminal)
        },
        Execution {
            queued_at_ms: Some(floor_sec(now - 5_000)),
            queued_at_set: true,
            backlog: Some(Backlog {
                json: BacklogJson::Valid,
                secret_patterns: vec![],
            }),
            ..exec("e-queued", "alpha", "queued", Phase::Queued)
        },
        Execution {
            started_at_ms: Some(now - 10_000),
            queued_at_ms: Some(now - 12_000),
            queued_at_set: true,
            has_session: true,
            ..exec("e-run", "alpha", "running", Phase::Running)
        },
        exec("e-word", "alpha", "completed", Phase::Other),
    ];
    assert_eq!(sql.executions, expected_execs);

    let orphan = |table: &str, agent: &str, rows, severity| OrphanRows {
        table: table.into(),
        agent_name: agent.into(),
        rows,
        severity,
    };
    assert_eq!(
        sql.orphans,
        vec![
            orphan("agent_skills", "ghost2", 1, Severity::Major),
            orphan("agent_tags", "ghost", 2, Severity::Major),
            orphan("chat_sessions", "ghost", 1, Severity::Major),
            orphan("mcp_api_keys", "ghost", 1, Severity::Major),
            orphan("operator_queue", "ghost", 1, Severity::Major),
            orphan("schedule_executions", "ghost", 1, Severity::Critical),
        ]
    );
    assert!(sql.missing_fields.is_empty(), "{:?}", sql.missing_fields);
    assert!(sql.skipped_tables.is_empty(), "{:?}", sql.skipped_tables);
    assert!(sql.schedules.is_empty());

    let redis = snapshot.redis.as_ref().expect("redis state");
    assert_eq!(redis.drain_tick_at_ms, Some(now - 5_000));
    let agents: Vec<&str> = redis
        .slot_sets
        .iter()
        .map(|s| s.agent_name.as_str())
        .collect();
    assert_eq!(agents, ["alpha", "ghost"]);
    let alpha = &redis.slot_sets[0].members;
    assert_eq!(alpha.len(), 2);
    assert_eq!(
        (
            alpha[0].member.as_str(),
            alpha[0].acquired_at_ms,
            alpha[0].sentinel
        ),
        ("e-run", Some(now - 10_000), false)
    );
    let meta = alpha[0].meta.expect("metadata read");
    assert_eq!(meta.timeout_seconds, Some(600));
    match meta.ttl {
        KeyTtl::Remaining(ms) => assert!((880_000..=900_000).contains(&ms), "ttl {ms}"),
        other => panic!("expected a remaining TTL, got {other:?}"),
    }
    assert!((before_read..=after_read).contains(&meta.ttl_read_at_ms));
    assert_eq!(
        (
            alpha[1].member.as_str(),
            alpha[1].acquired_at_ms,
            alpha[1].sentinel,
            alpha[1].meta
        ),
        ("drain-abc", Some(now - 1_000), true, None)
    );
    let mut meta_keys: Vec<(&str, &str, Option<KeyTtl>)> = redis
        .meta_keys
        .iter()
        .map(|k| (k.agent_name.as_str(), k.execution_id.as_str(), k.orphan_ttl))
        .collect();
    meta_keys.sort();
    assert_eq!(
        meta_keys,
        [("alpha", "e-run", None), ("ghost", "e-ghost", None)],
        "one SCAN found both hashes; both have their member"
    );
    let ghost = &redis.slot_sets[1].members;
    let ghost_meta = ghost[0].meta.expect("metadata read");
    assert_eq!(
        (ghost_meta.ttl, ghost_meta.timeout_seconds),
        (KeyTtl::NoExpiry, Some(900))
    );

    let subjects: Vec<(Source, &str)> = snapshot
        .anomalies
        .iter()
        .map(|a| (a.source, a.subject.as_str()))
        .collect();
    assert_eq!(
        subjects,
        [(Source::Sqlite, "schedule_executions.e-garbage.completed_at")]
    );
    assert_eq!(
        stats.redis_round_trips, 3,
        "SCAN page + ZRANGE pipeline + metadata pipeline"
    );
    assert!(stats.sql_statements > 0);
    // Each source's time is real work measured inside the collection: positive, finite, and
    // within the wall time of the call (the two may add up to more, as they overlap).
    for (source, ms) in [("sqlite", stats.sqlite_ms), ("redis", stats.redis_ms)] {
        assert!(
            ms.is_finite() && ms > 0.0 && ms <= wall_ms,
            "{source}_ms = {ms}, collection took {wall_ms} ms"
        );
    }
    // The slot-set phase is part of the Redis read, which runs beside the SQL read.
    let slot_sets = stats.redis_slot_sets_ms;
    assert!(
        slot_sets > 0.0 && slot_sets < stats.redis_ms && stats.redis_ms <= wall_ms,
        "slot sets {slot_sets} ms, redis {} ms, sqlite {} ms, collection {wall_ms} ms",
        stats.redis_ms,
        stats.sqlite_ms
    );
}

/// A fleet of `n` agents, each with a running execution holding a slot, a finished execution and
/// an orphaned tag row for a deleted twin.
fn seed_fleet(n: usize, now: i64) -> (PlatformDb, RedisServer) {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let agents: Vec<AgentRow> = (0..n)
        .map(|i| AgentRow::new(&format!("agent-{i:04}")).caps(2, 600))
        .collect();
    db.add_agents(&agents);
    let mut rows = Vec::new();
    for i in 0..n {
        let agent = format!("agent-{i:04}");
        rows.push(
            ExecRow::new(&format!("run-{i}"), &agent, "running")
                .started_at(&iso(now - 30_000))
                .session(&format!("sess-{i}")),
        );
        rows.push(
            ExecRow::new(&format!("done-{i}"), &agent, "success")
                .completed_at(&sqlite_datetime(now - 60_000)),
        );
    }
    db.add_executions(&rows);
    // One schedule per agent: the schedules query is one statement whatever their number.
    db.exec(&format!(
        "INSERT INTO agent_schedules (id, agent_name, enabled, next_run_at) \
         SELECT 'sched-' || agent_name, agent_name, 1, '{}' FROM agent_ownership;",
        iso(now + HOUR_MS)
    ));
    for i in 0..n {
        db.add_keyed_rows(
            "agent_tags",
            Some(&format!("gone-{i:04}")),
            Some(("tag", "t")),
            1,
        );
    }
    let mut r = redis_server::connect(&server);
    let mut pipe = redis::pipe();
    for i in 0..n {
        let agent = format!("agent-{i:04}");
        let meta = format!("agent:slot:{agent}:run-{i}");
        pipe.cmd("ZADD")
            .arg(format!("agent:slots:{agent}"))
            .arg(secs(now - 30_000))
            .arg(format!("run-{i}"))
            .ignore();
        pipe.cmd("HSET")
            .arg(&meta)
            .arg("timeout_seconds")
            .arg(600)
            .ignore();
        pipe.cmd("EXPIRE").arg(&meta).arg(900).ignore();
    }
    pipe.exec(&mut r).expect("seed redis");
    (db, server)
}

struct Measured {
    stats: canary::collect::CollectStats,
    zrange: u64,
    pttl: u64,
    hget: u64,
    scan: u64,
    slot_sets: usize,
    executions: usize,
    orphans: usize,
    schedules: usize,
    meta_keys: usize,
}

async fn measure(n: usize) -> Measured {
    let now = now_ms();
    let (db, server) = seed_fleet(n, now);
    let mut r = redis_server::connect(&server);
    let calls = |r: &mut redis::Connection| {
        ["zrange", "pttl", "hget", "scan"].map(|c| redis_server::command_calls(r, c))
    };
    let before = calls(&mut r);
    let Collected { snapshot, stats } = builtin(&db.config(&server.url()), WINDOW_MS, now).await;
    let after = calls(&mut r);
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    assert!(snapshot.anomalies.is_empty(), "{:?}", snapshot.anomalies);
    let sql = snapshot.sql.expect("sql");
    let redis = snapshot.redis.expect("redis");
    Measured {
        stats,
        zrange: after[0] - before[0],
        pttl: after[1] - before[1],
        hget: after[2] - before[2],
        scan: after[3] - before[3],
        slot_sets: redis.slot_sets.len(),
        executions: sql.executions.len(),
        orphans: sql.orphans.len(),
        schedules: sql.schedules.len(),
        meta_keys: redis.meta_keys.len(),
    }
}

#[tokio::test]
async fn statement_and_round_trip_counts_do_not_grow_with_the_fleet() {
    let small = measure(3).await;
    let large = measure(300).await;

    for (m, n) in [(&small, 3u64), (&large, 300)] {
        // The work inside the pipelines grows with the fleet...
        assert_eq!((m.zrange, m.pttl, m.hget), (n, n, n));
        assert_eq!(m.slot_sets as u64, n);
        assert_eq!(m.executions as u64, 2 * n);
        assert_eq!(m.orphans as u64, n);
        assert_eq!((m.schedules as u64, m.meta_keys as u64), (n, n));
        // ...the number of SCAN pages does not (one page with the configured COUNT, one SCAN
        // for slot keys and metadata keys alike).
        assert_eq!(m.scan, 1);
    }
    eprintln!(
        "per collection: {} SQL statements, {} Redis round trips (3 and 300 agents alike)",
        large.stats.sql_statements, large.stats.redis_round_trips
    );
    // ...but the number of statements and round trips does not.
    assert_eq!(small.stats.sql_statements, large.stats.sql_statements);
    assert_eq!(small.stats.redis_round_trips, large.stats.redis_round_trips);
    assert_eq!(large.stats.redis_round_trips, 3);
    assert!(
        large.stats.sql_statements <= 10,
        "{}",
        large.stats.sql_statements
    );
}

#[tokio::test]
async fn missing_optional_columns_degrade_per_column() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha").caps(5, 60)]);
    db.add_executions(&[
        ExecRow::new("r1", "alpha", "running")
            .started_at(&iso(now - 1_000))
            .leased_until(&iso(now + 1_000)),
        ExecRow::new("t1", "alpha", "success").completed_at(&iso(now - 1_000)),
    ]);
    db.exec(
        "DROP INDEX idx_executions_completed;
         ALTER TABLE schedule_executions DROP COLUMN lease_expires_at;
         ALTER TABLE schedule_executions DROP COLUMN completed_at;
         ALTER TABLE schedule_executions DROP COLUMN backlog_metadata;
         ALTER TABLE agent_ownership DROP COLUMN max_parallel_tasks;",
    );

    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    let sql = snapshot.sql.expect("sql still collected");
    assert_eq!(
        sql.missing_fields,
        BTreeSet::from([
            Field::ExecLeaseExpiresAt,
            Field::ExecCompletedAt,
            Field::ExecBacklogMetadata,
            Field::AgentMaxParallelTasks,
        ])
    );
    assert_eq!(sql.agents.len(), 1);
    assert_eq!(
        (
            sql.agents[0].max_parallel_tasks,
            sql.agents[0].execution_timeout_seconds
        ),
        (3, 60)
    );
    // Without completed_at no terminal row can be windowed; the live row is still read.
    assert_eq!(
        sql.executions,
        vec![Execution {
            started_at_ms: Some(now - 1_000),
            ..exec("r1", "alpha", "running", Phase::Running)
        }]
    );
}

#[tokio::test]
async fn missing_cascade_tables_are_skipped_not_fatal() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[AgentRow::new("alpha")]);
    db.add_keyed_rows("agent_tags", Some("ghost"), Some(("tag", "t")), 1);
    db.exec(
        "DROP TABLE agent_reports;
         DROP TABLE mcp_api_keys;
         DROP TABLE chat_sessions;
         CREATE TABLE chat_sessions (id INTEGER PRIMARY KEY, agent_name TEXT);
         INSERT INTO chat_sessions (agent_name) VALUES ('ghost');",
    );

    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    let sql = snapshot.sql.as_ref().expect("sql");
    assert_eq!(
        sql.skipped_tables,
        ["agent_reports", "chat_sessions", "mcp_api_keys"]
    );
    let tables: Vec<&str> = sql.orphans.iter().map(|o| o.table.as_str()).collect();
    assert_eq!(tables, ["agent_tags"]);
    // The table that exists without its filter column is named, so nobody wonders why.
    assert_eq!(
        anomaly_subjects(&snapshot, Source::Sqlite),
        BTreeSet::from(["chat_sessions.status".to_owned()])
    );
}

#[tokio::test]
async fn sqlite_failures_make_the_source_unavailable() {
    let server = redis_server::start();

    // Required column missing.
    let db = PlatformDb::create();
    db.exec(
        "DROP INDEX idx_schedule_executions_status;
         DROP INDEX idx_executions_queued;
         DROP INDEX idx_executions_completed;
         ALTER TABLE schedule_executions DROP COLUMN status;",
    );
    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    let error = sql_unavailable(&snapshot).expect("sqlite unavailable");
    assert!(
        error.contains("schedule_executions") && error.contains("status"),
        "{error}"
    );
    assert!(snapshot.sql.is_none());
    assert!(snapshot.redis.is_some(), "redis is independent of sqlite");

    // Roster table missing.
    let db = PlatformDb::create();
    db.exec("DROP TABLE agent_ownership;");
    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    assert!(
        sql_unavailable(&snapshot)
            .expect("unavailable")
            .contains("agent_ownership")
    );

    // File missing: read-only open must not create it.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.db");
    let cfg = PlatformConfig {
        sqlite_path: missing.clone(),
        ..db.config(&server.url())
    };
    let snapshot = collect_now(&cfg).await.snapshot;
    eprintln!("missing file: {:?}", sql_unavailable(&snapshot));
    assert!(sql_unavailable(&snapshot).is_some());
    assert!(!missing.exists(), "a read-only open never creates the file");

    // Not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("write junk");
    let cfg = PlatformConfig {
        sqlite_path: junk,
        ..db.config(&server.url())
    };
    let snapshot = collect_now(&cfg).await.snapshot;
    let error = sql_unavailable(&snapshot).expect("unavailable");
    eprintln!("not a database: {error}");
    assert!(error.contains("not a database"), "{error}");

    // Locked past the busy timeout by a platform writer holding an exclusive lock.
    let db = PlatformDb::create();
    let writer = db.writer();
    writer
        .execute_batch(
            "BEGIN EXCLUSIVE; INSERT INTO agent_tags (agent_name, tag) VALUES ('a', 't');",
        )
        .expect("lock");
    let cfg = PlatformConfig {
        sqlite_busy_timeout: Duration::from_millis(200),
        ..db.config(&server.url())
    };
    let started = Instant::now();
    let snapshot = collect_now(&cfg).await.snapshot;
    let error = sql_unavailable(&snapshot).expect("unavailable");
    eprintln!("locked: {error}");
    assert!(error.contains("locked"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    writer.execute_batch("ROLLBACK").expect("unlock");
}

#[tokio::test]
async fn garbage_in_redis_becomes_anomalies() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha")]);
    let mut r = redis_server::connect(&server);
    let at = secs(now).to_string();
    run(&mut r, &[b"SET", b"agent:slots:stringy", b"not a zset"]);
    run(&mut r, &[b"ZADD", b"agent:slots:alpha", b"inf", b"e-inf"]);
    run(&mut r, &[b"ZADD", b"agent:slots:alpha", b"-inf", b"e-ninf"]);
    run(
        &mut r,
        &[b"ZADD", b"agent:slots:alpha", at.as_bytes(), b"\xff\xfe"],
    );
    run(
        &mut r,
        &[b"ZADD", b"agent:slots:alpha", at.as_bytes(), b"e-str"],
    );
    run(
        &mut r,
        &[b"ZADD", b"agent:slots:alpha", at.as_bytes(), b"e-frac"],
    );
    run(
        &mut r,
        &[b"ZADD", b"agent:slots:\xc3\x28", at.as_bytes(), b"e-x"],
    );
    run(
        &mut r,
        &[b"SET", b"agent:slot:alpha:e-str", b"a string, not a hash"],
    );
    run(
        &mut r,
        &[
            b"HSET",
            b"agent:slot:alpha:e-frac",
            b"timeout_seconds",
            b"12.5",
        ],
    );
    run(&mut r, &[b"SET", b"canary:drain_tick_at", b"soon"]);

    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    let redis = snapshot.redis.as_ref().expect("redis still available");
    assert_eq!(redis.drain_tick_at_ms, None);
    let agents: Vec<&str> = redis
        .slot_sets
        .iter()
        .map(|s| s.agent_name.as_str())
        .collect();
    assert_eq!(
        agents,
        ["alpha"],
        "wrong-type and non-UTF-8 slot keys are skipped"
    );
    let members = &redis.slot_sets[0].members;
    let by_name = |name: &str| members.iter().find(|m| m.member == name).expect(name);
    assert_eq!(
        members.len(),
        4,
        "the non-UTF-8 member is skipped: {members:?}"
    );
    assert_eq!(by_name("e-inf").acquired_at_ms, None);
    assert_eq!(by_name("e-ninf").acquired_at_ms, None);
    assert_eq!(by_name("e-str").acquired_at_ms, Some(now));
    let str_meta = by_name("e-str").meta.expect("ttl still read");
    assert_eq!(
        (str_meta.ttl, str_meta.timeout_seconds),
        (KeyTtl::NoExpiry, None)
    );
    let frac_meta = by_name("e-frac").meta.expect("ttl read");
    assert_eq!(frac_meta.timeout_seconds, None);
    assert_eq!(by_name("e-inf").meta.expect("read").ttl, KeyTtl::Missing);

    let subjects = anomaly_subjects(&snapshot, Source::Redis);
    // Each planted value with the reason code G-05 reports it by.
    for (expected, kind) in [
        ("agent:slots:stringy", AnomalyKind::WrongType),
        ("agent:slots:alpha e-inf", AnomalyKind::ScoreNotFinite),
        ("agent:slots:alpha e-ninf", AnomalyKind::ScoreNotFinite),
        ("agent:slots:alpha", AnomalyKind::MemberNotUtf8),
        ("agent:slot:alpha:e-str", AnomalyKind::WrongType),
        (
            "agent:slot:alpha:e-frac timeout_seconds",
            AnomalyKind::TimeoutNotInteger,
        ),
        ("canary:drain_tick_at", AnomalyKind::DrainTickUnparseable),
        ("0x6167656e743a736c6f74733ac328", AnomalyKind::KeyNotUtf8),
    ] {
        assert!(
            subjects.contains(expected),
            "missing anomaly for {expected}: {subjects:?}"
        );
        assert!(
            snapshot
                .anomalies
                .iter()
                .any(|a| a.subject == expected && a.kind == kind),
            "{expected} is not {kind:?}: {:?}",
            snapshot.anomalies
        );
    }
    let wrongtype = snapshot
        .anomalies
        .iter()
        .find(|a| a.subject == "agent:slots:stringy")
        .expect("anomaly");
    assert!(
        wrongtype.note.contains("wrong key type"),
        "{}",
        wrongtype.note
    );
}

#[tokio::test]
async fn a_dead_redis_is_unavailable_fast_without_leaking_the_url() {
    let mut server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[AgentRow::new("alpha")]);
    let port = server.port();
    server.kill();
    assert!(!server.is_running());

    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/0");
    let cfg = db.config(&url);
    let started = Instant::now();
    let snapshot = collect_now(&cfg).await.snapshot;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let error = redis_unavailable(&snapshot).expect("redis unavailable");
    eprintln!("dead redis: {error}");
    for secret in [
        url.as_str(),
        "s3cret-pw",
        &format!("127.0.0.1:{port}"),
        "redis://",
    ] {
        assert!(!error.contains(secret), "{error:?} leaks {secret:?}");
    }
    assert!(error.contains("refused"), "{error}");
    assert!(snapshot.redis.is_none());
    assert!(snapshot.sql.is_some(), "sqlite is independent of redis");

    // A peer that accepts connections but never answers: the connect timeout bounds the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "redis://user:hunter2-pw@127.0.0.1:{}/0",
        silent.local_addr().expect("addr").port()
    );
    let cfg = PlatformConfig {
        redis_connect_timeout: Duration::from_millis(500),
        redis_response_timeout: Duration::from_millis(500),
        ..db.config(&url)
    };
    let started = Instant::now();
    let snapshot = collect_now(&cfg).await.snapshot;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let error = redis_unavailable(&snapshot).expect("redis unavailable");
    assert!(
        !error.contains("hunter2-pw") && !error.contains(&url),
        "{error}"
    );
    eprintln!("silent redis: {error}");
    assert!(error.contains("timed out"), "{error}");
}

fn file_state(db: &PlatformDb) -> (Vec<u8>, std::time::SystemTime, Vec<String>) {
    let bytes = std::fs::read(db.path()).expect("read db");
    let mtime = std::fs::metadata(db.path())
        .expect("stat")
        .modified()
        .expect("mtime");
    let mut names: Vec<String> = std::fs::read_dir(db.dir())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (bytes, mtime, names)
}

#[tokio::test]
async fn the_platform_database_is_never_modified() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha")]);
    db.add_executions(&[ExecRow::new("r1", "alpha", "running").started_at(&iso(now))]);
    db.add_keyed_rows("agent_tags", Some("ghost"), Some(("tag", "t")), 1);
    let before = file_state(&db);

    let cfg = db.config(&server.url());
    for _ in 0..3 {
        let snapshot = collect_now(&cfg).await.snapshot;
        assert!(
            snapshot.sources_unavailable.is_empty(),
            "{:?}",
            snapshot.sources_unavailable
        );
    }
    assert_eq!(
        file_state(&db),
        before,
        "bytes, mtime and directory listing unchanged"
    );

    let conn = open_read_only(db.path(), Duration::from_secs(1)).expect("open read-only");
    assert!(
        conn.execute(
            "INSERT INTO agent_tags (agent_name, tag) VALUES ('x', 'y')",
            []
        )
        .is_err()
    );
    assert!(conn.execute("DELETE FROM agent_ownership", []).is_err());
    // Even with query_only switched off, the file handle itself is read-only.
    conn.execute_batch("PRAGMA query_only = 0").expect("pragma");
    assert!(
        conn.execute(
            "INSERT INTO agent_tags (agent_name, tag) VALUES ('x', 'y')",
            []
        )
        .is_err()
    );
    drop(conn);
    assert_eq!(file_state(&db), before);
}

#[tokio::test]
async fn a_wal_database_is_read_while_the_platform_writes() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    db.exec("PRAGMA journal_mode = WAL;");
    db.add_agents(&[AgentRow::new("alpha")]);
    // The platform keeps its connection open (so the -wal and -shm files exist) and writes more.
    let platform = db.writer();
    platform
        .execute_batch("INSERT INTO agent_ownership (agent_name) VALUES ('beta');")
        .expect("write");

    let cfg = db.config(&server.url());
    let snapshot = collect_now(&cfg).await.snapshot;
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    assert_eq!(snapshot.sql.expect("sql").agents.len(), 2);

    // A write transaction in progress does not block the reader in WAL mode.
    platform
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO agent_ownership (agent_name) VALUES ('gamma');",
        )
        .expect("write");
    let snapshot = collect_now(&cfg).await.snapshot;
    assert_eq!(
        snapshot.sql.expect("sql").agents.len(),
        2,
        "uncommitted rows are invisible"
    );
    platform.execute_batch("COMMIT").expect("commit");
    drop(platform);

    // Platform stopped: its last connection checkpointed and removed -wal/-shm.
    let snapshot = collect_now(&cfg).await.snapshot;
    assert!(
        snapshot.sources_unavailable.is_empty(),
        "{:?}",
        snapshot.sources_unavailable
    );
    assert_eq!(snapshot.sql.expect("sql").agents.len(), 3);
}

#[tokio::test]
async fn a_wrong_redis_password_is_unavailable_without_leaking_it() {
    let server = redis_server::start();
    let mut r = redis_server::connect(&server);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right-pw")
        .exec(&mut r)
        .expect("CONFIG SET");
    let db = PlatformDb::create();
    let url = format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port());
    let snapshot = collect_now(&db.config(&url)).await.snapshot;
    let error = redis_unavailable(&snapshot).expect("redis unavailable");
    assert!(
        !error.contains("wrong-pw") && !error.contains("right-pw") && !error.contains(&url),
        "{error}"
    );
    eprintln!("wrong password reported as: {error}");
}

/// The reads behind S-04 and E-03..G-04: session flags, queued metadata facts, schedules and
/// stray metadata hashes, with the secret text never entering the snapshot.
#[tokio::test]
async fn facts_for_the_extended_catalog_are_read_without_their_content() {
    const SECRET: &str = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha")]);
    db.add_executions(&[
        ExecRow::new("r-sess", "alpha", "running")
            .started_at(&iso(now - 120_000))
            .session("sess-1"),
        ExecRow::new("r-empty", "alpha", "running")
            .started_at(&iso(now - 120_000))
            .session(""),
        ExecRow::new("r-none", "alpha", "running").started_at(&iso(now - 120_000)),
        ExecRow::new("q-ok", "alpha", "queued")
            .queued_at(&iso(now - 1_000))
            .metadata(r#"{"message": "summarise the sk- prefixes"}"#),
        ExecRow::new("q-null", "alpha", "queued").queued_at(&iso(now - 1_000)),
        ExecRow::new("q-bad", "alpha", "queued").metadata("{not json"),
        ExecRow::new("q-secret", "alpha", "queued")
            .queued_at(&iso(now - 1_000))
            .metadata(&format!(r#"{{"env": {{"GITHUB_TOKEN": "{SECRET}"}}}}"#)),
        // Base64 image data that happens to hold a prefix is skipped (the reference's #3114);
        // the same text beside it is not.
        ExecRow::new("q-image", "alpha", "queued")
            .queued_at(&iso(now - 1_000))
            .metadata(&format!(
                r#"{{"images": [{{"mime": "image/png", "data": "{SECRET}"}}], "message": "hi"}}"#
            )),
        ExecRow::new("q-image-alt", "alpha", "queued")
            .queued_at(&iso(now - 1_000))
            .metadata(&format!(
                r#"{{"images": [{{"data": "iVBOR", "alt": "{SECRET}"}}]}}"#
            )),
        // Metadata of non-queued rows is not even fetched.
        ExecRow::new("r-secret", "alpha", "running")
            .started_at(&iso(now - 1_000))
            .session("s")
            .metadata(&format!(r#"{{"t": "{SECRET}"}}"#)),
    ]);
    db.exec(&format!(
        "INSERT INTO agent_schedules (id, agent_name, enabled, next_run_at, deleted_at) VALUES
           ('s-due', 'alpha', 1, '{}', NULL),
           ('s-off', 'alpha', 0, '{}', NULL),
           ('s-del', 'alpha', 1, NULL, '{}'),
           ('s-bad', 'alpha', 1, 'next tuesday', NULL);",
        sqlite_datetime(now - 2 * HOUR_MS),
        iso(now + HOUR_MS),
        iso(now - HOUR_MS),
    ));

    let mut r = redis_server::connect(&server);
    run(
        &mut r,
        &[
            b"ZADD",
            b"agent:slots:alpha",
            secs(now - 5_000).to_string().as_bytes(),
            b"r-sess",
        ],
    );
    run(
        &mut r,
        &[
            b"HSET",
            b"agent:slot:alpha:r-sess",
            b"timeout_seconds",
            b"600",
        ],
    );
    run(&mut r, &[b"EXPIRE", b"agent:slot:alpha:r-sess", b"900"]);
    // Stray hashes: one persists, one is deleted during the recheck delay (a release in
    // progress: ZREM happened, DEL follows).
    run(
        &mut r,
        &[
            b"HSET",
            b"agent:slot:alpha:stray",
            b"timeout_seconds",
            b"600",
        ],
    );
    run(
        &mut r,
        &[
            b"HSET",
            b"agent:slot:alpha:releasing",
            b"timeout_seconds",
            b"600",
        ],
    );
    run(&mut r, &[b"EXPIRE", b"agent:slot:alpha:releasing", b"900"]);

    let cfg = PlatformConfig {
        redis_orphan_recheck_delay: Duration::from_millis(700),
        ..db.config(&server.url())
    };
    let url = server.url();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut r = redis::Client::open(url)
            .expect("url")
            .get_connection()
            .expect("connect");
        redis::cmd("DEL")
            .arg("agent:slot:alpha:releasing")
            .exec(&mut r)
            .expect("DEL");
    });
    let collected = builtin(&cfg, WINDOW_MS, now).await;
    releaser.await.expect("releaser");
    let Collected { snapshot, stats } = &collected;
    assert!(snapshot.sources_unavailable.is_empty(), "{snapshot:?}");
    assert_eq!(
        stats.redis_round_trips, 4,
        "SCAN + ZRANGE + metadata pipelines + one stray recheck"
    );

    let sql = snapshot.sql.as_ref().expect("sql");
    let row = |id: &str| sql.executions.iter().find(|e| e.id == id).expect(id);
    assert!(row("r-sess").has_session);
    assert!(!row("r-empty").has_session, "an empty id is no session");
    assert!(!row("r-none").has_session);
    let facts = |id: &str| {
        let b = row(id).backlog.clone().expect(id);
        (b.json, b.secret_patterns)
    };
    assert_eq!(
        facts("q-ok"),
        (BacklogJson::Valid, vec![]),
        "prose is not a key"
    );
    assert_eq!(facts("q-null"), (BacklogJson::Null, vec![]));
    assert_eq!(facts("q-bad"), (BacklogJson::Invalid, vec![]));
    assert_eq!(
        facts("q-secret"),
        (
            BacklogJson::Valid,
            vec!["github_personal_access_token".to_owned()]
        )
    );
    assert_eq!(facts("q-image"), (BacklogJson::Valid, vec![]));
    assert_eq!(
        facts("q-image-alt"),
        (
            BacklogJson::Valid,
            vec!["github_personal_access_token".to_owned()]
        )
    );
    assert!(row("q-bad").queued_at_ms.is_none() && !row("q-bad").queued_at_set);
    assert_eq!(
        row("r-secret").backlog,
        None,
        "only queued rows are scanned"
    );

    let schedules: Vec<(&str, bool, bool, Option<i64>)> = sql
        .schedules
        .iter()
        .map(|s| (s.id.as_str(), s.enabled, s.deleted, s.next_run_at_ms))
        .collect();
    assert_eq!(
        schedules,
        [
            ("s-bad", true, false, None),
            ("s-del", true, true, None),
            ("s-due", true, false, Some(floor_sec(now - 2 * HOUR_MS))),
            ("s-off", false, false, Some(now + HOUR_MS)),
        ]
    );
    assert!(
        anomaly_subjects(snapshot, Source::Sqlite).contains("agent_schedules.s-bad.next_run_at")
    );

    let redis = snapshot.redis.as_ref().expect("redis");
    let mut meta: Vec<(&str, &str, Option<KeyTtl>)> = redis
        .meta_keys
        .iter()
        .map(|k| (k.agent_name.as_str(), k.execution_id.as_str(), k.orphan_ttl))
        .collect();
    meta.sort();
    assert_eq!(
        meta,
        [
            ("alpha", "r-sess", None),
            ("alpha", "stray", Some(KeyTtl::NoExpiry)),
        ],
        "the hash deleted during the delay was a release in progress"
    );

    let json = serde_json::to_string(&collected).expect("serialise");
    assert!(
        !json.contains(SECRET),
        "the secret never enters the snapshot"
    );
    assert!(!json.contains("GITHUB_TOKEN") && !json.contains("sess-1"));
}

/// Text that is not UTF-8 in a streamed read (the cells are borrowed, not copied) fails the SQL
/// source loudly, naming the step, as the owned read did: never a garbled name, never a panic.
#[tokio::test]
async fn text_that_is_not_utf8_makes_the_sql_source_unavailable() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha")]);
    db.add_executions(&[ExecRow::new("r-1", "alpha", "running").started_at(&iso(now - 1_000))]);
    db.exec("UPDATE schedule_executions SET agent_name = CAST(X'616CFF' AS TEXT);");
    let snapshot = collect_now(&db.config(&server.url())).await.snapshot;
    let error = sql_unavailable(&snapshot).expect("sqlite unavailable");
    assert!(
        error.contains("reading executions") && error.contains("utf-8"),
        "{error}"
    );
    assert!(snapshot.sql.is_none());
}

/// With E-06's window (the daemon's read) only the schedules E-06 can judge are kept, yet every
/// row is read: the anomalies (G-05's input) and every verdict are those of the full read.
#[tokio::test]
async fn schedules_outside_e06s_reach_are_read_for_anomalies_but_not_kept() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    let now = now_ms();
    db.add_agents(&[AgentRow::new("alpha"), AgentRow::new("beta")]);
    db.exec(&format!(
        "INSERT INTO agent_schedules (id, agent_name, enabled, next_run_at, deleted_at) VALUES
           ('s-overdue', 'alpha', 1, '{overdue}', NULL),
           ('s-edge', 'beta', 'true', '{edge}', NULL),
           ('s-recent', 'alpha', 1, '{recent}', NULL),
           ('s-future', 'alpha', 1, '{future}', NULL),
           ('s-off', 'alpha', 0, '{overdue}', NULL),
           ('s-del', 'alpha', 1, '{overdue}', '{recent}'),
           ('s-never', 'alpha', 1, NULL, NULL),
           ('s-bad', 'alpha', 1, 'next tuesday', NULL),
           ('s-bad-off', 'alpha', 0, 'never', NULL),
           (NULL, 'alpha', 1, '{overdue}', NULL),
           ('s-ghost', 'ghost', 1, '{overdue}', NULL),
           (42, 'beta', 1, {overdue_secs}, NULL);",
        overdue = iso(now - 3 * HOUR_MS),
        edge = iso(now - HOUR_MS - 1_000),
        recent = sqlite_datetime(now - HOUR_MS / 2),
        future = iso(now + HOUR_MS),
        overdue_secs = (now - 2 * HOUR_MS) / 1000,
    ));
    let cfg = db.config(&server.url());
    let windows = canary::collect::Windows {
        recent_terminal_ms: WINDOW_MS,
        schedule_overdue_ms: Some(HOUR_MS),
        s01_grace_ms: 0,
    };
    let kept = builtin(&cfg, windows, now).await.snapshot;
    let full = builtin(&cfg, WINDOW_MS, now).await.snapshot;
    let ids = |snapshot: &Snapshot| -> Vec<String> {
        let sql = snapshot.sql.as_ref().expect("sql");
        sql.schedules.iter().map(|s| s.id.clone()).collect()
    };
    assert_eq!(
        ids(&kept),
        ["42", "s-edge", "s-ghost", "s-overdue"],
        "enabled, not deleted, due an hour ago or earlier (the roster is E-06's to check)"
    );
    assert_eq!(
        ids(&full).len(),
        11,
        "the full read keeps every row with an id"
    );
    assert_eq!(kept.anomalies, full.anomalies, "every row is still read");
    let subjects = anomaly_subjects(&kept, Source::Sqlite);
    for subject in [
        "agent_schedules.s-bad.next_run_at",
        "agent_schedules.s-bad-off.next_run_at",
        "agent_schedules.id",
    ] {
        assert!(subjects.contains(subject), "{subject}: {subjects:?}");
    }

    let params = canary_invariants::Params::default();
    let memory = canary_invariants::Memory::default();
    let judge = |snapshot: &Snapshot| {
        let evaluation = canary_invariants::evaluate(
            snapshot,
            &memory,
            &params,
            canary_invariants::Selection::Only(&["E-06".to_owned(), "G-05".to_owned()]),
        );
        (evaluation.outcomes, evaluation.violations)
    };
    let (outcomes, violations) = judge(&kept);
    assert_eq!((outcomes.clone(), violations.clone()), judge(&full));
    let e06: Vec<&str> = violations
        .iter()
        .filter(|v| v.invariant_id == "E-06")
        .map(|v| v.subject.as_str())
        .collect();
    assert_eq!(e06, ["42", "s-edge", "s-overdue"]);
}

#[tokio::test]
async fn missing_schedules_table_and_session_column_degrade_to_unknown_inputs() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[AgentRow::new("alpha")]);
    let before = collect_now(&db.config(&server.url())).await;
    db.exec(
        "DROP TABLE agent_schedules;
         ALTER TABLE schedule_executions DROP COLUMN claude_session_id;",
    );
    let after = collect_now(&db.config(&server.url())).await;
    assert!(after.snapshot.sources_unavailable.is_empty());
    let sql = after.snapshot.sql.as_ref().expect("sql still collected");
    assert_eq!(
        sql.missing_fields,
        BTreeSet::from([Field::ExecSessionId, Field::Schedules])
    );
    assert_eq!(
        sql.skipped_tables,
        ["agent_schedules"],
        "also a cascade table"
    );
    assert_eq!(
        after.stats.sql_statements + 1,
        before.stats.sql_statements,
        "no schedules query without the table"
    );

    // A table lacking a column E-06 needs counts as missing; a missing deleted_at does not.
    db.exec(
        "CREATE TABLE agent_schedules (id TEXT, agent_name TEXT, enabled INTEGER, next_run_at TEXT);
         INSERT INTO agent_schedules VALUES ('s1', 'alpha', 1, '2026-01-01 00:00:00');",
    );
    let sql = collect_now(&db.config(&server.url()))
        .await
        .snapshot
        .sql
        .expect("sql");
    assert!(sql.missing_fields.contains(&Field::ScheduleDeletedAt));
    assert!(!sql.missing_fields.contains(&Field::Schedules));
    assert_eq!(sql.schedules.len(), 1);
    assert!(!sql.schedules[0].deleted);
    db.exec("ALTER TABLE agent_schedules DROP COLUMN next_run_at;");
    let sql = collect_now(&db.config(&server.url()))
        .await
        .snapshot
        .sql
        .expect("sql");
    assert!(sql.missing_fields.contains(&Field::Schedules));
    assert!(sql.schedules.is_empty());
}

/// Every `where` op of a cascade entry, on real SQLite: `!=` and `not_in` keep NULLs.
#[tokio::test]
async fn cascade_where_conditions_filter_rows_with_every_op() {
    use canary::config::platform::{CascadeEntry, ConditionOp, RowCondition};

    let server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[AgentRow::new("alpha")]);
    db.add_keyed_rows(
        "agent_shared_files",
        Some("ghost"),
        Some(("file_path", "a")),
        1,
    );
    db.add_keyed_rows(
        "agent_shared_files",
        Some("ghost"),
        Some(("file_path", "b")),
        2,
    );
    db.add_keyed_rows("agent_shared_files", Some("ghost"), None, 3);
    let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for (op, operands, expected) in [
        (ConditionOp::Eq, values(&["a"]), Some(1)),
        (ConditionOp::Ne, values(&["a"]), Some(5)),
        (ConditionOp::In, values(&["a", "b"]), Some(3)),
        (ConditionOp::NotIn, values(&["b"]), Some(4)),
        (ConditionOp::IsNull, values(&[]), Some(3)),
        (ConditionOp::IsNotNull, values(&[]), Some(3)),
        (ConditionOp::Eq, values(&["zzz"]), None),
    ] {
        let cfg = PlatformConfig {
            cascade: vec![CascadeEntry {
                table: "agent_shared_files".to_owned(),
                column: "agent_name".to_owned(),
                filter: None,
                conditions: vec![RowCondition {
                    column: "file_path".to_owned(),
                    op,
                    values: operands.clone(),
                }],
                severity: Severity::Major,
            }],
            ..db.config(&server.url())
        };
        let collected = builtin(&cfg, WINDOW_MS, now_ms()).await;
        let sql = collected.snapshot.sql.as_ref().expect("sql");
        let rows = sql.orphans.first().map(|o| o.rows);
        assert_eq!(rows, expected, "{op:?} {operands:?}");
    }
}

/// The concurrency ceiling is read with the roster (no statement of its own): the setting's
/// value, the platform default without the key, the default plus an anomaly for garbage, and
/// no ceiling at all without the table.
#[tokio::test]
async fn the_concurrency_ceiling_is_read_with_the_roster() {
    let server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[AgentRow::new("alpha")]);
    let cfg = db.config(&server.url());
    let read = || async {
        let collected = builtin(&cfg, WINDOW_MS, now_ms()).await;
        let sql = collected.snapshot.sql.clone().expect("sql");
        (
            sql.max_parallel_tasks_ceiling,
            collected.snapshot.anomalies.len(),
            collected.stats.sql_statements,
        )
    };
    let (ceiling, anomalies, statements) = read().await;
    assert_eq!((ceiling, anomalies), (Some(10), 0), "no key: the default");
    db.exec("INSERT INTO system_settings (key, value) VALUES ('max_parallel_tasks_ceiling', '2')");
    let (ceiling, _, same) = read().await;
    assert_eq!(ceiling, Some(2));
    assert_eq!(same, statements, "no statement of its own");
    db.exec("UPDATE system_settings SET value = 'lots' WHERE key = 'max_parallel_tasks_ceiling'");
    assert_eq!(read().await.0, Some(10));
    assert_eq!(read().await.1, 1, "the garbage is an anomaly");
    db.exec("DROP TABLE system_settings");
    assert_eq!(read().await.0, None, "no table: no ceiling");
}

/// Every agent a pull-mode pilot: one GET each rides the first pipeline, so the round trips stay
/// 3 whatever the number of pilots; a written key is read, a missing one is "never", garbage is
/// an anomaly and leaves the pilot out (not judged).
#[tokio::test]
async fn pull_poll_keys_ride_the_first_pipeline() {
    let mut trips = Vec::new();
    for n in [3usize, 300] {
        let now = now_ms();
        let (db, server) = seed_fleet(n, now);
        let mut r = redis_server::connect(&server);
        run(
            &mut r,
            &[b"SET", b"agent:pull_poll:agent-0000", b"1768384800"],
        );
        run(&mut r, &[b"SET", b"agent:pull_poll:agent-0001", b"soon"]);
        let mut cfg = db.config(&server.url());
        cfg.pull.pilot_agents = (0..n).map(|i| format!("agent-{i:04}")).collect();
        let before = redis_server::command_calls(&mut r, "get");
        let Collected { snapshot, stats } = builtin(&cfg, WINDOW_MS, now).await;
        // n pilot keys + the drain heartbeat.
        assert_eq!(
            redis_server::command_calls(&mut r, "get") - before,
            n as u64 + 1
        );
        assert!(anomaly_subjects(&snapshot, Source::Redis).contains("agent:pull_poll:agent-0001"));
        assert_eq!(snapshot.pilot_agents.len(), n);
        let redis = snapshot.redis.expect("redis");
        assert_eq!(
            redis.pull_polls.get("agent-0000"),
            Some(&Some(1_768_384_800_000))
        );
        assert_eq!(
            redis.pull_polls.get("agent-0001"),
            None,
            "garbage: not judged"
        );
        assert_eq!(
            redis.pull_polls.get("agent-0002"),
            Some(&None),
            "never written"
        );
        assert_eq!(redis.pull_polls.len(), n - 1);
        trips.push(stats.redis_round_trips);
    }
    assert_eq!(trips, [3, 3]);
}

/// The SQL read runs beside the slot-set read, so its view may predate a change the slot read
/// saw. Staged here in the worst order: the SQL read, then the platform finishes one execution
/// (terminal commit, `ZREM`), deletes another row, creates an agent and claims a slot for it,
/// raises a cap and uses it, then the Redis read. Judged as read, S-01 reports all three rows as
/// running without a slot, L-03 the new agent's slot set and S-02 the raised cap's second slot;
/// after the recheck (`sql::recheck`) only the real leak is left, and the finish shows as S-01's
/// graced finish race.
#[tokio::test]
async fn the_recheck_after_the_slot_read_leaves_only_what_is_really_wrong() {
    use canary::collect::sql::recheck::{Suspects, apply, recheck};
    use canary_invariants::{Memory, Params, Selection, evaluate};

    let now = now_ms();
    let server = redis_server::start();
    let db = PlatformDb::create();
    db.add_agents(&[
        AgentRow::new("a").caps(4, 600),
        AgentRow::new("c").caps(1, 600),
    ]);
    let started = iso(now - 60_000);
    db.add_executions(&[
        ExecRow::new("c-1", "c", "running").started_at(&started),
        ExecRow::new("finishing", "a", "running").started_at(&started),
        ExecRow::new("leaked", "a", "running").started_at(&started),
        ExecRow::new("purged", "a", "running").started_at(&started),
    ]);
    let mut r = redis_server::connect(&server);
    let zadd = |r: &mut redis::Connection, key: &str, at: i64, member: &str| {
        redis::cmd("ZADD")
            .arg(key)
            .arg(secs(at))
            .arg(member)
            .exec(r)
            .expect("ZADD");
    };
    zadd(&mut r, "agent:slots:a", now - 60_000, "finishing");
    zadd(&mut r, "agent:slots:a", now - 60_000, "purged");
    zadd(&mut r, "agent:slots:c", now - 60_000, "c-1");
    let cfg = db.config(&server.url());

    let (mut sql, _) = canary::collect::sql::collect(&cfg, now - WINDOW_MS)
        .result
        .expect("sql read");
    db.exec(&format!(
        "UPDATE schedule_executions SET status = 'success', completed_at = '{}' \
         WHERE id = 'finishing'; DELETE FROM schedule_executions WHERE id = 'purged';",
        iso(now)
    ));
    redis::cmd("ZREM")
        .arg("agent:slots:a")
        .arg("finishing")
        .arg("purged")
        .exec(&mut r)
        .expect("ZREM");
    db.add_agents(&[AgentRow::new("b").caps(1, 600)]);
    zadd(&mut r, "agent:slots:b", now - 1_000, "b-1");
    db.exec("UPDATE agent_ownership SET max_parallel_tasks = 2 WHERE agent_name = 'c';");
    db.add_executions(&[ExecRow::new("c-2", "c", "running").started_at(&iso(now - 500))]);
    zadd(&mut r, "agent:slots:c", now - 500, "c-2");
    let (redis, _) = canary::collect::redis::collect(&cfg)
        .await
        .result
        .expect("redis read");

    let params = Params::default();
    let judge = |sql: &canary_invariants::SqlState| {
        let snapshot = Snapshot {
            taken_at_ms: now,
            sql: Some(sql.clone()),
            redis: Some(redis.clone()),
            ..Snapshot::default()
        };
        let ids = ["S-01".to_owned(), "S-02".to_owned(), "L-03".to_owned()];
        let evaluation = evaluate(
            &snapshot,
            &Memory::default(),
            &params,
            Selection::Only(&ids),
        );
        evaluation
            .violations
            .iter()
            .map(|v| (v.invariant_id.clone(), v.observed_state.to_string()))
            .collect::<Vec<_>>()
    };
    let stale = judge(&sql);
    assert_eq!(stale.len(), 3, "{stale:?}");
    assert!(
        stale[0].0 == "L-03" && stale[0].1.contains("\"agent\":\"b\",\"slot_key\":true"),
        "{stale:?}"
    );
    assert!(
        stale[1].0 == "S-01" && stale[1].1.contains("[\"finishing\",\"leaked\",\"purged\"]"),
        "judged as read, the older SQL view contradicts the slot sets: {stale:?}"
    );
    assert!(
        stale[2].0 == "S-02" && stale[2].1.contains("\"max_parallel_tasks\":1"),
        "{stale:?}"
    );

    let suspects = Suspects::of(&sql, &redis, now, 3_000);
    assert_eq!(suspects.ids, ["finishing", "leaked", "purged"]);
    assert_eq!(suspects.agents, ["b", "c"]);
    let (rechecked, statements) = recheck(&cfg, &suspects);
    assert!(
        statements >= 4,
        "pragma, begin, catalog, rows, agents, end: {statements}"
    );
    let anomalies = apply(&mut sql, &suspects, rechecked.expect("recheck"));
    assert!(anomalies.is_empty(), "{anomalies:?}");
    let finished = sql.executions.iter().find(|e| e.id == "finishing");
    assert_eq!(finished.map(|e| e.phase), Some(Phase::Terminal));
    assert!(!sql.executions.iter().any(|e| e.id == "purged"));
    assert!(
        sql.agents
            .iter()
            .any(|a| a.name == "b" && a.max_parallel_tasks == 1)
    );

    let fresh = judge(&sql);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0].0, "S-01");
    assert!(
        fresh[0].1.contains("\"in_sql_only\":[\"leaked\"]"),
        "the leak is read twice and stays: {fresh:?}"
    );

    // A recheck that cannot read fails (the collector then reports the SQL source unavailable).
    std::fs::remove_file(db.path()).expect("remove the platform file");
    let (gone, _) = recheck(&cfg, &suspects);
    assert!(gone.is_err(), "{gone:?}");
}

/// Through the whole collection: a healthy cycle re-reads nothing (no extra statement); a
/// running row without a slot is re-read once, counted, and still judged.
#[tokio::test]
async fn a_healthy_cycle_rechecks_nothing_and_a_leak_is_rechecked_once() {
    let now = now_ms();
    let (db, server) = seed_fleet(3, now);
    let cfg = db.config(&server.url());
    let healthy = builtin(&cfg, WINDOW_MS, now).await;
    assert_eq!(healthy.stats.sql_rechecked, 0);
    db.add_executions(&[ExecRow::new("leaked", "agent-0001", "running")
        .started_at(&iso(now - 60_000))
        .session("s")]);
    let leak = builtin(&cfg, WINDOW_MS, now).await;
    assert!(leak.snapshot.sources_unavailable.is_empty());
    assert_eq!(leak.stats.sql_rechecked, 1);
    assert!(
        leak.stats.sql_statements > healthy.stats.sql_statements,
        "{} vs {}",
        leak.stats.sql_statements,
        healthy.stats.sql_statements
    );
    let rows = &leak.snapshot.sql.as_ref().expect("sql").executions;
    let leaked: Vec<&Execution> = rows.iter().filter(|e| e.id == "leaked").collect();
    assert_eq!(leaked.len(), 1, "read once, re-read in place");
    assert_eq!(leaked[0].phase, Phase::Running);
    assert!(
        rows.windows(2).all(|w| w[0].id <= w[1].id),
        "still sorted by id"
    );
}
