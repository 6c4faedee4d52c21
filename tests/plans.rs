//! What a cycle costs the platform: on the production-shaped fixture (the platform's own indexes
//! on `schedule_executions`), no statement scans the history table, on SQLite (`EXPLAIN QUERY
//! PLAN`) and PostgreSQL (`EXPLAIN`); rows read grow with live rows and the window, not history.

use canary::clock::now_ms;
use canary::collect::sql::{StatementPlan, collect_explained};
use canary::config::PlatformConfig;

use crate::support::platform_db::{AgentRow, ExecRow, PlatformDb, iso, sqlite_datetime};

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
    let executions = plans
        .iter()
        .find(|p| p.step == "reading executions")
        .expect("executions plan");
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
