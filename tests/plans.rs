//! What a cycle costs the platform: on the production-shaped fixture (the platform's own indexes
//! on `schedule_executions`), no statement scans the history table, on SQLite (`EXPLAIN QUERY
//! PLAN`) and PostgreSQL (`EXPLAIN`); rows read grow with live rows and the window, not history.
//! The recheck after the slot read (`sql::recheck`) looks its rows up by key, never by a scan.

use canary::clock::now_ms;
use canary::collect::sql::recheck::{Suspects, recheck_explained};
use canary::collect::sql::{StatementPlan, collect_explained};
use canary::config::PlatformConfig;

use canary::fleet::postgres_server::PostgresServer;

use crate::support::platform_db::{AgentRow, ExecRow, PlatformDb, iso, sqlite_datetime};
use crate::support::postgres::{self as pg, Fixture};

const WINDOW_MS: i64 = 30 * 60 * 1000;
const DAY_MS: i64 = 86_400_000;

/// A history of `history` old terminal rows (mixed shapes) beside a few live and recent rows.
fn history_db(history: usize, now: i64) -> PlatformDb {
    let db = PlatformDb::create();
    let agents: Vec<AgentRow> = (0..20)
        .map(|i| AgentRow::new(&format!("agent-{i:02}")).caps(2, 600))
        .collect();
    db.add_agents(&agents);
    let mut rows = Vec::new();
    for i in 0..history {
        let agent = format!("agent-{:02}", i % 20);
        let at = now - 2 * DAY_MS - (i as i64) * 60_000;
        let status = ["success", "failed", "cancelled", "skipped"][i % 4];
        let stamp = if i % 2 == 0 {
            iso(at)
        } else {
            sqlite_datetime(at)
        };
        rows.push(
            ExecRow::new(&format!("old-{i:06}"), &agent, status)
                .started_at(&stamp)
                .completed_at(&stamp),
        );
    }
    for i in 0..20 {
        let agent = format!("agent-{i:02}");
        rows.push(
            ExecRow::new(&format!("run-{i}"), &agent, "running").started_at(&iso(now - 30_000)),
        );
        rows.push(
            ExecRow::new(&format!("done-{i}"), &agent, "success")
                .started_at(&sqlite_datetime(now - 120_000))
                .completed_at(&sqlite_datetime(now - 60_000)),
        );
    }
    db.add_executions(&rows);
    db
}

fn config(db: &PlatformDb) -> PlatformConfig {
    // No Redis is read here: only the SQL side.
    db.config("redis://127.0.0.1:1")
}

fn scans_history(plan: &StatementPlan) -> bool {
    plan.plan.iter().any(|line| {
        let l = line.trim_start_matches(['-', '>', ' ']);
        l.starts_with("SCAN schedule_executions") || l.contains("Seq Scan on schedule_executions")
    })
}

/// The plan of the executions statement (every collection has one).
fn executions_plan(plans: &[StatementPlan]) -> &StatementPlan {
    plans
        .iter()
        .find(|p| p.step == "reading executions")
        .unwrap_or_else(|| panic!("no executions plan: {}", render(plans)))
}

/// The plans of a recheck of every non-terminal row the main read returned, an id that does not
/// exist, a roster agent and one absent from the roster (as many keys as a bad cycle might have).
fn recheck_plans(cfg: &PlatformConfig, state: &canary_invariants::SqlState) -> Vec<StatementPlan> {
    let mut ids: Vec<String> = state
        .executions
        .iter()
        .filter(|e| e.phase != canary_invariants::Phase::Terminal)
        .map(|e| e.id.clone())
        .collect();
    assert!(!ids.is_empty(), "the fixture has live rows");
    ids.push("no-such-id".to_owned());
    ids.sort();
    let suspects = Suspects {
        ids,
        agents: vec!["agent-00".to_owned(), "ghost".to_owned()],
    };
    let (result, plans) = recheck_explained(cfg, &suspects);
    result.expect("recheck");
    assert!(
        plans
            .iter()
            .any(|p| p.step == "re-reading executions by id"),
        "{}",
        render(&plans)
    );
    plans
}

fn render(plans: &[StatementPlan]) -> String {
    plans
        .iter()
        .map(|p| format!("{}:\n  {}\n    {}", p.step, p.sql, p.plan.join("\n    ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sqlite_statements_never_scan_the_history() {
    let now = now_ms();
    let db = history_db(2_000, now);
    let (outcome, plans) = collect_explained(&config(&db), now - WINDOW_MS);
    let (state, _) = outcome.result.expect("collect");
    assert!(!plans.is_empty());
    eprintln!("{}", render(&plans));
    let scanning: Vec<&StatementPlan> = plans.iter().filter(|p| scans_history(p)).collect();
    assert!(scanning.is_empty(), "{}", render(&plans));
    // The live rows and the window's, not the 2 000 old ones.
    assert_eq!(state.executions.len(), 40);
    assert!(outcome.rows < 200, "rows read: {}", outcome.rows);
    let plans = recheck_plans(&config(&db), &state);
    eprintln!("recheck:\n{}", render(&plans));
    let scanning: Vec<&StatementPlan> = plans.iter().filter(|p| scans_history(p)).collect();
    assert!(scanning.is_empty(), "recheck: {}", render(&plans));
}

/// Every value shape the window read must handle, in and out of the window.
fn mixed_rows(now: i64) -> Vec<ExecRow> {
    let recent = now - 60_000;
    let old = now - 10 * DAY_MS;
    let edge = now - WINDOW_MS - 6 * 60_000; // just past the cutoff and its slack
    let offset = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms + 2 * 3_600_000)
            .expect("ms")
            .format("%Y-%m-%dT%H:%M:%S+02:00")
            .to_string()
    };
    let shapes: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("iso-recent", Some(iso(recent)), None),
        ("iso-old", Some(iso(old)), None),
        ("iso-edge", Some(iso(edge)), None),
        ("dt-recent", Some(sqlite_datetime(recent)), None),
        ("dt-old", Some(sqlite_datetime(old)), None),
        ("offset-recent", Some(offset(recent)), None),
        ("offset-old", Some(offset(old)), None),
        ("epoch-recent", Some((recent / 1000).to_string()), None),
        ("epoch-old", Some((old / 1000).to_string()), None),
        ("garbage", Some("garbage".to_owned()), None),
        ("empty", Some(String::new()), None),
        (
            "date-garbage-old",
            Some("2020-01-01 garbage".to_owned()),
            None,
        ),
        (
            "date-garbage-new",
            Some(format!("{} garbage", &iso(recent)[..10])),
            None,
        ),
        ("seventy", Some("1970".to_owned()), None),
        ("null-started-recent", None, Some(iso(recent))),
        ("null-started-old", None, Some(sqlite_datetime(old))),
        ("null-started-garbage", None, Some("soon".to_owned())),
        ("null-null", None, None),
    ];
    let mut rows = Vec::new();
    for (i, (name, completed, started)) in shapes.into_iter().enumerate() {
        for status in [
            "success",
            "failed",
            "cancelled",
            "skipped",
            "running",
            "weird",
        ] {
            let mut row = ExecRow::new(
                &format!("{name}-{status}"),
                &format!("agent-{:02}", i % 20),
                status,
            );
            row.completed_at = completed.clone();
            row.started_at = started.clone();
            rows.push(row);
        }
    }
    rows
}

/// The range-per-shape read (with the platform's terminal index) and the single-arm read (the
/// same database without it) return the same executions and the same anomalies.
#[test]
fn the_ranged_window_read_matches_the_single_arm_read() {
    let now = now_ms();
    let db = history_db(500, now);
    db.add_executions(&mixed_rows(now));
    // Numbers stored as numbers, and a blob, beside the text shapes.
    db.exec(&format!(
        "INSERT INTO schedule_executions (id, agent_name, status, completed_at) VALUES \
         ('int-recent', 'agent-01', 'success', {}), ('real-old', 'agent-02', 'failed', 1.5), \
         ('blob', 'agent-03', 'success', x'00ff');",
        (now - 60_000) / 1000
    ));
    let cutoff = now - WINDOW_MS;
    let (ranged, plans) = collect_explained(&config(&db), cutoff);
    let executions = executions_plan(&plans);
    assert!(
        executions
            .plan
            .iter()
            .any(|l| l.contains("USING INDEX idx_executions_completed")),
        "{}",
        render(&plans)
    );
    db.exec("DROP INDEX idx_executions_completed;");
    let (single, plans) = collect_explained(&config(&db), cutoff);
    assert!(
        !plans.iter().any(|p| p
            .plan
            .iter()
            .any(|l| l.contains("idx_executions_completed"))),
        "{}",
        render(&plans)
    );
    let (ranged, mut ranged_anomalies) = ranged.result.expect("ranged read");
    let (single, mut single_anomalies) = single.result.expect("single-arm read");
    // Row order differs between the two plans; the collector sorts anomalies afterwards.
    ranged_anomalies.sort();
    single_anomalies.sort();
    assert_eq!(ranged.executions, single.executions);
    assert_eq!(ranged_anomalies, single_anomalies);
    let ids: Vec<&str> = ranged.executions.iter().map(|e| e.id.as_str()).collect();
    // In the window, or unparseable and so reported: read. Old or NULL-and-old: not.
    for id in [
        "iso-recent-success",
        "dt-recent-failed",
        "offset-recent-skipped",
        "epoch-recent-success",
        "epoch-old-success",
        "garbage-cancelled",
        "date-garbage-new-success",
        "null-started-recent-success",
        "null-started-garbage-failed",
        "int-recent",
        "blob",
        "iso-old-running",
        "null-null-weird",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for id in [
        "iso-old-success",
        "iso-edge-success",
        "dt-old-failed",
        "offset-old-skipped",
        "null-started-old-success",
        "null-null-success",
        "date-garbage-old-success",
        // SQLite reads small numbers as Julian day numbers: long ago, on both reads.
        "seventy-success",
    ] {
        assert!(!ids.contains(&id), "{id} read");
    }
    // The 500 old rows are not read.
    assert!(!ids.iter().any(|id| id.starts_with("old-")));
}

/// The platform's history indexes of a SQLite platform file.
fn history_indexes(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open seeded db");
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'schedule_executions' AND name LIKE 'idx_executions_%' ORDER BY name",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// `canary fleet --seed-only` writes the production-shaped schema; `--bare-indexes` leaves the
/// platform's history indexes out.
#[test]
fn seed_only_writes_the_platform_indexes_unless_bare() {
    let redis = crate::support::redis_server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bare) in [("shaped.db", false), ("bare.db", true)] {
        let path = dir.path().join(name);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_canary"));
        cmd.args(["fleet", "--seed-only", "--sqlite-path"])
            .arg(&path)
            .args(["--redis-url", &redis.url()])
            .args(["--agents", "10", "--rows", "500", "--slots", "5"]);
        if bare {
            cmd.arg("--bare-indexes");
        }
        let out = cmd.output().expect("run canary fleet");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: Vec<String> = if bare {
            vec![]
        } else {
            vec![
                "idx_executions_agent_started".to_owned(),
                "idx_executions_completed".to_owned(),
                "idx_executions_queued".to_owned(),
            ]
        };
        assert_eq!(history_indexes(&path), expected, "{name}");
    }
}

/// A PostgreSQL platform on `fixture` with `history` old terminal rows (both UTC text shapes, or
/// `timestamptz`), 20 running and 20 recent ones, and statistics (`ANALYZE`, as autovacuum keeps
/// them on a real platform): its superuser URL and database name.
fn pg_history_db(server: &PostgresServer, fixture: Fixture, history: usize) -> (String, String) {
    let url = pg::database(server, fixture);
    let db = url.rsplit('/').next().expect("db name").to_owned();
    let stamp = |at: &str, shape: &str| match fixture {
        Fixture::Typed => at.to_owned(),
        _ => format!("to_char({at}, {shape})"),
    };
    let old = "now() - interval '2 days' - make_interval(mins => i)";
    let shape = "CASE WHEN i % 2 = 0 THEN 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"' \
                 ELSE 'YYYY-MM-DD HH24:MI:SS' END";
    let recent = "now() - interval '1 minute'";
    let spaced = "'YYYY-MM-DD HH24:MI:SS'";
    let sql = format!(
        "SET TIME ZONE 'UTC';
         INSERT INTO schedule_executions (id, agent_name, status, started_at, completed_at)
         SELECT 'old-' || i, 'agent-' || (i % 20),
                (ARRAY['success', 'failed', 'cancelled', 'skipped'])[1 + i % 4], {old_s}, {old_c}
         FROM generate_series(1, {history}) AS i;
         INSERT INTO schedule_executions (id, agent_name, status, started_at)
         SELECT 'run-' || i, 'agent-' || i, 'running', {run_s}
         FROM generate_series(0, 19) AS i;
         INSERT INTO schedule_executions (id, agent_name, status, started_at, completed_at)
         SELECT 'done-' || i, 'agent-' || i, 'success', {done_s}, {done_c}
         FROM generate_series(0, 19) AS i;
         ANALYZE;",
        old_s = stamp(old, shape),
        old_c = stamp(old, shape),
        run_s = stamp("now() - interval '30 seconds'", spaced),
        done_s = stamp("now() - interval '2 minutes'", spaced),
        done_c = stamp(recent, spaced),
    );
    server
        .admin_batch(&db, &sql)
        .unwrap_or_else(|e| panic!("seeding {db}: {e}"));
    (url, db)
}

/// The superuser's session may write: allowed here (the plans, not the role, are under test).
fn pg_config(url: &str) -> PlatformConfig {
    PlatformConfig {
        sqlite_path: std::path::PathBuf::new(),
        database_url: Some(canary::config::Secret::new(url.to_owned())),
        redis_url: "redis://127.0.0.1:1".to_owned(),
        allow_write_role: true,
        ..PlatformConfig::default()
    }
}

/// PostgreSQL, on both fixtures (text timestamps in the platform's shapes; `timestamptz`): with
/// the platform's indexes and statistics, no statement reads the history table sequentially,
/// and only the live rows and the window's are read.
#[test]
fn postgres_statements_never_scan_the_history() {
    let server = pg::shared();
    for fixture in [Fixture::Text, Fixture::Typed] {
        let (url, _) = pg_history_db(&server, fixture, 20_000);
        let (outcome, plans) = collect_explained(&pg_config(&url), now_ms() - WINDOW_MS);
        let (state, _) = outcome.result.expect("collect");
        eprintln!("{fixture:?}:\n{}", render(&plans));
        assert!(!plans.is_empty());
        let executions = executions_plan(&plans);
        assert!(
            executions
                .plan
                .iter()
                .any(|l| l.contains("idx_executions_completed")),
            "{fixture:?}: {}",
            render(&plans)
        );
        let scanning: Vec<&StatementPlan> = plans.iter().filter(|p| scans_history(p)).collect();
        assert!(scanning.is_empty(), "{fixture:?}: {}", render(&plans));
        assert_eq!(state.executions.len(), 40, "{fixture:?}");
        assert!(
            outcome.rows < 200,
            "{fixture:?}: rows read: {}",
            outcome.rows
        );
        let plans = recheck_plans(&pg_config(&url), &state);
        eprintln!("{fixture:?} recheck:\n{}", render(&plans));
        let scanning: Vec<&StatementPlan> = plans.iter().filter(|p| scans_history(p)).collect();
        assert!(
            scanning.is_empty(),
            "{fixture:?} recheck: {}",
            render(&plans)
        );
    }
}

/// On PostgreSQL too, the index-range read (the prefilter compared under the index's bytewise
/// order) and the scan (compared under `C`) return the same executions and anomalies, on every
/// value shape, whichever index the platform has: its own on a C-collated database (ranges), the
/// same index under a linguistic collation (no usable order: a scan), an index declared
/// `COLLATE "C"` on that column (ranges again, the README's advice), none (a scan).
#[test]
fn the_postgres_ranged_read_matches_the_scan() {
    let server = pg::shared();
    let now = now_ms();
    let (url, db) = pg_history_db(&server, Fixture::Text, 20_000);
    let quote = |v: &Option<String>| {
        v.as_ref().map_or("NULL".to_owned(), |s| {
            format!("'{}'", s.replace('\'', "''"))
        })
    };
    let inserts: Vec<String> = mixed_rows(now)
        .iter()
        .map(|r| {
            format!(
                "INSERT INTO schedule_executions (id, agent_name, status, started_at, completed_at) \
                 VALUES ('{}', '{}', '{}', {}, {});",
                r.id,
                r.agent,
                r.status,
                quote(&r.started_at),
                quote(&r.completed_at)
            )
        })
        .collect();
    server
        .admin_batch(&db, &format!("{} ANALYZE;", inserts.join("\n")))
        .expect("mixed rows");
    let cutoff = now - WINDOW_MS;
    let read = |expect_index: Option<&str>| {
        let (outcome, plans) = collect_explained(&pg_config(&url), cutoff);
        let executions = executions_plan(&plans);
        match expect_index {
            Some(index) => {
                assert!(
                    executions.plan.iter().any(|l| l.contains(index)),
                    "{index} expected: {}",
                    render(&plans)
                );
                assert!(!scans_history(executions), "{}", render(&plans));
            }
            None => assert!(scans_history(executions), "{}", render(&plans)),
        }
        let (state, mut anomalies) = outcome.result.expect("read");
        let mut executions = state.executions;
        executions.sort_by(|a, b| a.id.cmp(&b.id));
        anomalies.sort();
        (executions, anomalies)
    };
    let ranged = read(Some("idx_executions_completed"));
    let terminal = "WHERE status IN ('success', 'failed', 'cancelled', 'skipped')";
    let steps = [
        (
            "ALTER TABLE schedule_executions ALTER COLUMN completed_at TYPE text \
             COLLATE \"en-x-icu\"; ANALYZE;"
                .to_owned(),
            None,
        ),
        (
            format!(
                "CREATE INDEX idx_completed_c ON schedule_executions \
                 (completed_at COLLATE \"C\") {terminal}; ANALYZE;"
            ),
            Some("idx_completed_c"),
        ),
        (
            "DROP INDEX idx_completed_c; DROP INDEX idx_executions_completed; ANALYZE;".to_owned(),
            None,
        ),
    ];
    for (sql, expect_index) in steps {
        server.admin_batch(&db, &sql).expect("change the index");
        assert_eq!(read(expect_index), ranged, "after {sql}");
    }
    let ids: Vec<&str> = ranged.0.iter().map(|e| e.id.as_str()).collect();
    assert!(ids.contains(&"iso-recent-success"), "{ids:?}");
    assert!(!ids.contains(&"iso-old-success"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("old-")), "{ids:?}");
}
