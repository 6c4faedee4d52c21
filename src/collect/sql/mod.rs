//! The SQL source of the collector: roster, execution rows, delete-cascade orphans and schedules,
//! read in one read transaction over a read-only connection.
//!
//! One file per concern, the same shape as the other sources:
//! - [`sqlite`]: the dialect (connection, statement counting, catalog query, date-time
//!   comparison). Everything else here is dialect-independent, so a PostgreSQL dialect is a
//!   sibling of that file, not a fork of this folder.
//! - [`schema`]: the catalog typed into [`Schema`] (which optional columns exist, which entries
//!   can be scanned); [`roster`], [`executions`], [`cascade`], [`schedules`]: one statement each,
//!   built from those facts; [`value`]: cells → the snapshot's types.
//! - [`custom`]: the operator-defined statements; [`preflight`]: the same checked at startup.
//! - [`queued`]: B-01's re-read of a few agents' queued ids, on a connection of its own.
//! - `query` (identifier quoting, placeholders) and `error` ([`SqlError`]) are the leaves the
//!   others share; imports go one way, from this file down to them.
//!
//! The statement count is fixed by the configuration, never by the number of agents or rows:
//! one schema-discovery query, one roster query, one executions query, one `UNION ALL` anti-join
//! for all cascade tables, one schedules query (when the table exists), plus the pragma and
//! transaction bracket. The cascade entry for the executions table's non-terminal rows is, when
//! provably the same answer, counted from the rows the executions query returned instead of by
//! its own arm of the anti-join (see `executions::ExecutionsTally`). Optional columns absent
//! from an older schema degrade to `NULL` (and are listed in `missing_fields`); absent required
//! columns make the whole source unavailable, because guessing would be worse than *unknown*. A
//! missing schedules table only makes E-06 unknown.
//!
//! Two columns are read but never carried: `claude_session_id` becomes a has-a-session flag in
//! SQL (the id never leaves SQLite), and `backlog_metadata` of queued rows is reduced here to
//! facts (NULL / invalid / valid JSON, names of credential patterns found, see
//! [`crate::collect::secrets`]) and dropped; other rows' metadata is not even fetched.
//!
//! It must not judge anything nor write: the connection is read-only and `query_only`.

pub mod cascade;
mod copy_text;
pub mod custom;
pub mod custom_postgres;
mod error;
pub mod executions;
pub mod postgres;
pub mod preflight;
mod query;
pub mod queued;
mod reader;
pub mod recheck;
pub mod roster;
pub mod schedules;
pub mod schema;
pub mod sqlite;
pub mod value;

use canary_invariants::{Anomaly, SqlState};

use self::cascade::{executions_cascade_entry, read_orphans};
use self::executions::read_executions;
use self::reader::{Conn, Dialect, Reader};
use self::roster::read_roster;
use self::schedules::read_schedules;
use self::schema::Schema;
use crate::config::platform::{PlatformConfig, PlatformDatabase, is_identifier};

pub use self::error::SqlError;
pub use self::reader::{StatementPlan, TimeColumn};
pub use self::sqlite::open_read_only;
pub use self::value::Cell;

/// Slack subtracted from the recent-terminal cutoff so that rows near the window's edge are not
/// lost to clock or rounding differences; the invariants apply the exact window themselves.
const CUTOFF_SLACK_MS: i64 = 5 * 60 * 1000;

/// What one SQL collection (SQLite or PostgreSQL) produced.
#[derive(Debug)]
pub struct SqliteOutcome {
    /// The SQL state and the anomalies seen while reading it, or why the source is unavailable.
    pub result: Result<(SqlState, Vec<Anomaly>), SqlError>,
    /// Statements executed, pragmas and the transaction bracket included.
    pub statements: u32,
    /// Rows the queries returned (the platform's side of the cost, with `statements`).
    pub rows: u64,
}

/// The instants that bound the windowed reads (see `collect::Windows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Terminal rows completed before this instant (minus a slack) are not read.
    pub recent_terminal_ms: i64,
    /// When set, only schedules that are enabled, not soft-deleted and due at or before this
    /// instant are kept (the ones E-06 can judge); every row is still read for its anomalies.
    pub schedules_due_by_ms: Option<i64>,
}

/// A bare recent-terminal cutoff: every schedule is kept.
impl From<i64> for Cutoffs {
    fn from(recent_terminal_ms: i64) -> Cutoffs {
        Cutoffs {
            recent_terminal_ms,
            schedules_due_by_ms: None,
        }
    }
}

/// Reads the SQL part of a snapshot (SQLite or PostgreSQL, as configured). Never panics; every failure becomes `Err` in the outcome.
pub fn collect(cfg: &PlatformConfig, cutoffs: impl Into<Cutoffs>) -> SqliteOutcome {
    collect_with(cfg, cutoffs.into(), true)
}

/// [`collect`], optionally without computing the executions cascade entry from the rows read
/// (the tests compare both paths).
fn collect_with(cfg: &PlatformConfig, cutoffs: Cutoffs, local_cascade: bool) -> SqliteOutcome {
    collect_counted(cfg, cutoffs, local_cascade, false).0
}

/// [`collect`], also asking the database for the plan of every query it runs (for tests and
/// benches that assert no statement scans the history table; costs one statement per query,
/// not counted in the outcome).
pub fn collect_explained(
    cfg: &PlatformConfig,
    cutoffs: impl Into<Cutoffs>,
) -> (SqliteOutcome, Vec<StatementPlan>) {
    collect_counted(cfg, cutoffs.into(), true, true)
}

fn collect_counted(
    cfg: &PlatformConfig,
    cutoffs: Cutoffs,
    local_cascade: bool,
    explain: bool,
) -> (SqliteOutcome, Vec<StatementPlan>) {
    let read = read_transaction(cfg, explain, |r| read_all(r, cfg, cutoffs, local_cascade));
    let outcome = SqliteOutcome {
        result: read.result,
        statements: read.statements,
        rows: read.rows,
    };
    (outcome, read.plans)
}

/// What [`read_transaction`] ran and returned.
struct Transaction<T> {
    result: Result<T, SqlError>,
    /// Statements executed: the transaction bracket, and the `query_only` pragma on SQLite.
    statements: u32,
    rows: u64,
    /// The plans of the queries, when asked for (empty otherwise).
    plans: Vec<StatementPlan>,
}

/// Runs `body` in one read transaction on a fresh read-only connection to the configured
/// database (SQLite `mode=ro` + `query_only`, or a PostgreSQL session in a read-only
/// transaction), recording the plan of every query when `explain` is set.
fn read_transaction<T>(
    cfg: &PlatformConfig,
    explain: bool,
    body: impl FnOnce(&mut Reader<'_>) -> Result<T, SqlError>,
) -> Transaction<T> {
    let (mut statements, mut rows, mut plans, mut pragma) = (0, 0, Vec::new(), 0);
    let run = |conn: Conn<'_>| {
        let mut reader = if explain {
            Reader::explaining(conn)
        } else {
            Reader::new(conn)
        };
        let result = reader.in_read_transaction(body);
        statements += reader.statements();
        rows += reader.rows_read();
        plans = reader.take_plans();
        result
    };
    let result = check_identifiers(cfg).and_then(|()| match cfg.database()? {
        PlatformDatabase::Sqlite(path) => {
            let conn = open_read_only(&path, cfg.sqlite_busy_timeout)?;
            pragma = 1; // the query_only pragma
            run(Conn::Sqlite(&conn))
        }
        PlatformDatabase::Postgres(url) => {
            // The session settings travel in the startup packet: no statement of their own.
            let mut client = postgres::connect(cfg, &url)?;
            run(Conn::Postgres(&mut client))
        }
    });
    Transaction {
        result,
        statements: statements + pragma,
        rows,
        plans,
    }
}

fn check_identifiers(cfg: &PlatformConfig) -> Result<(), SqlError> {
    let a = &cfg.tables.agents;
    let e = &cfg.tables.executions;
    let fixed = [
        &cfg.schema,
        &a.table,
        &a.name,
        &a.is_system,
        &a.max_parallel_tasks,
        &a.execution_timeout_seconds,
        &a.deleted_at,
        &e.table,
        &e.id,
        &e.agent_name,
        &e.status,
        &e.schedule_id,
        &e.started_at,
        &e.completed_at,
        &e.queued_at,
        &e.duration_ms,
        &e.session_id,
        &e.lease_expires_at,
        &e.backlog_metadata,
        &cfg.tables.schedules.table,
        &cfg.tables.schedules.id,
        &cfg.tables.schedules.agent_name,
        &cfg.tables.schedules.enabled,
        &cfg.tables.schedules.next_run_at,
        &cfg.tables.schedules.deleted_at,
        &cfg.tables.settings.table,
        &cfg.tables.settings.key,
        &cfg.tables.settings.value,
    ];
    let cascade = cfg.cascade.iter().flat_map(|c| {
        std::iter::once(&c.table)
            .chain(std::iter::once(&c.column))
            .chain(c.filter.as_ref().map(|f| &f.column))
            .chain(c.conditions.iter().map(|w| &w.column))
    });
    match fixed
        .into_iter()
        .chain(cascade)
        .find(|name| !is_identifier(name))
    {
        Some(bad) => Err(SqlError::BadIdentifier(bad.clone())),
        None => Ok(()),
    }
}

/// The catalog of the configured dialect, typed into the [`Schema`] every statement is built
/// from (the main read and `recheck` both start with it).
fn read_schema(r: &mut Reader<'_>, cfg: &PlatformConfig) -> Result<Schema, SqlError> {
    let catalog = match r.dialect() {
        Dialect::Sqlite => sqlite::read_catalog(r, cfg)?,
        Dialect::Postgres => postgres::read_catalog(r, cfg)?,
    };
    Schema::resolve(&catalog, cfg)
}

fn read_all(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    cutoffs: Cutoffs,
    local_cascade: bool,
) -> Result<(SqlState, Vec<Anomaly>), SqlError> {
    let schema = read_schema(r, cfg)?;
    let mut state = SqlState {
        missing_fields: schema.missing_fields(),
        ..SqlState::default()
    };
    let mut anomalies = Vec::new();

    let roster = read_roster(
        r,
        cfg,
        &schema.agents,
        schema.settings,
        None,
        &mut anomalies,
    )?;
    let roster_all_text = roster.all_text;
    state.agents = roster.agents;
    state.max_parallel_tasks_ceiling = roster.ceiling;
    let local = if local_cascade {
        executions_cascade_entry(cfg, &schema)
    } else {
        None
    };
    let (executions, tally) = read_executions(
        r,
        cfg,
        &schema.executions,
        cutoffs.recent_terminal_ms - CUTOFF_SLACK_MS,
        local.is_some(),
        &mut anomalies,
    )?;
    state.executions = executions;
    // The executions cascade entry is answered from the rows just read when that is provably
    // the same answer (see [`executions_cascade_entry`]) and every value compared was text;
    // otherwise its SQL arm runs as for any other table.
    let local = match (local, tally) {
        (Some(i), Some(tally)) if roster_all_text && tally.all_text => Some((i, tally)),
        _ => None,
    };
    let (mut orphans, skipped) = read_orphans(
        r,
        cfg,
        &schema,
        local.as_ref().map(|(i, _)| *i),
        &mut anomalies,
    )?;
    if let Some((i, tally)) = local
        && let Some(entry) = cfg.cascade.get(i)
    {
        orphans.extend(tally.orphans(&state.agents, entry));
        orphans.sort();
    }
    state.orphans = orphans;
    state.skipped_tables = skipped;
    if let Some(schedules) = &schema.schedules {
        state.schedules = read_schedules(
            r,
            cfg,
            schedules,
            cutoffs.schedules_due_by_ms,
            &mut anomalies,
        )?;
    }
    Ok((state, anomalies))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use canary_invariants::{OrphanRows, Severity};
    use rusqlite::Connection;

    use super::*;

    /// The executions query has two shapes (status index or not); both must read the same rows:
    /// every non-terminal row, and terminal rows completed (or, without `completed_at`, started)
    /// in the window or with a value SQLite cannot parse.
    #[test]
    fn both_execution_query_shapes_read_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let db = Connection::open(&path).expect("open");
        db.execute_batch(include_str!("../../../tests/fixtures/platform.sql"))
            .expect("schema");
        let now_ms: i64 = 1_768_384_800_000; // 2026-01-14T10:00:00Z
        let recent = "2026-01-14T09:50:00Z";
        let old = "2026-01-01 10:00:00";
        // (`status` is NOT NULL in the platform schema, so the NULL-status arm is not built here.)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        // (id, status, started_at, completed_at)
        let rows: [Case<'_>; 10] = [
            ("queued", Some("queued"), None, None),
            ("running", Some("running"), Some(old), None),
            ("odd-status", Some("completed"), None, Some(old)),
            ("recent", Some("success"), Some(old), Some(recent)),
            (
                "recent-offset",
                Some("failed"),
                None,
                Some("2026-01-14T11:50:00+02:00"),
            ),
            ("old", Some("success"), Some(old), Some(old)),
            ("epoch-text", Some("cancelled"), None, Some("1768384000")),
            ("garbage", Some("success"), None, Some("yesterday")),
            (
                "no-completion-recent-start",
                Some("success"),
                Some(recent),
                None,
            ),
            ("no-completion-old-start", Some("skipped"), Some(old), None),
        ];
        for (id, status, started, completed) in rows {
            db.execute(
                "INSERT INTO schedule_executions (id, agent_name, status, started_at, completed_at) \
                 VALUES (?1, 'a', ?2, ?3, ?4)",
                rusqlite::params![id, status, started, completed],
            )
            .expect("insert");
        }
        let cfg = PlatformConfig {
            sqlite_path: path.clone(),
            ..PlatformConfig::default()
        };
        let read = || -> Vec<String> {
            let (state, _) = collect(&cfg, now_ms - 30 * 60_000).result.expect("collect");
            state.executions.into_iter().map(|e| e.id).collect()
        };
        let expected = [
            "epoch-text",
            "garbage",
            "no-completion-recent-start",
            "odd-status",
            "queued",
            "recent",
            "recent-offset",
            "running",
        ];
        assert_eq!(read(), expected, "with the status index");
        db.execute_batch("DROP INDEX idx_schedule_executions_status")
            .expect("drop index");
        assert_eq!(read(), expected, "without it");
        db.execute_batch("CREATE INDEX c ON schedule_executions (completed_at)")
            .expect("index completed_at");
        assert_eq!(read(), expected, "with an index on completed_at");
    }

    /// Which cascade entry (if any) the rows read would answer, for the database at `path`.
    fn answered_entry(path: &Path) -> Option<usize> {
        let cfg = PlatformConfig {
            sqlite_path: path.to_owned(),
            ..PlatformConfig::default()
        };
        let conn = open_read_only(path, Duration::from_secs(1)).expect("open");
        let mut reader = Reader::new(Conn::Sqlite(&conn));
        let catalog = sqlite::read_catalog(&mut reader, &cfg).expect("catalog");
        let schema = Schema::resolve(&catalog, &cfg).expect("schema");
        executions_cascade_entry(&cfg, &schema)
    }

    /// Orphans from both paths (the executions cascade entry answered from the rows read, and
    /// its SQL arm), with the statement counts.
    fn orphans_both_ways(path: &Path, now_ms: i64) -> [(Vec<OrphanRows>, u32); 2] {
        let cfg = PlatformConfig {
            sqlite_path: path.to_owned(),
            ..PlatformConfig::default()
        };
        [true, false].map(|local| {
            let outcome = collect_with(&cfg, (now_ms - 30 * 60_000).into(), local);
            let (state, _) = outcome.result.expect("collect");
            (state.orphans, outcome.statements)
        })
    }

    /// L-03's input is the same whether the executions entry is answered from the rows the
    /// executions query read or by its SQL arm: non-terminal rows of absent agents (NULL and
    /// unknown statuses included) count, terminal rows (recent or old) and soft-deleted agents'
    /// rows do not.
    #[test]
    fn executions_cascade_is_the_same_from_rows_and_from_sql() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let db = Connection::open(&path).expect("open");
        db.execute_batch(include_str!("../../../tests/fixtures/platform.sql"))
            .expect("schema");
        let now_ms: i64 = 1_768_384_800_000; // 2026-01-14T10:00:00Z
        db.execute_batch(
            "INSERT INTO agent_ownership (agent_name, deleted_at) VALUES \
             ('live', NULL), ('gone-soft', '2026-01-01 00:00:00'); \
             INSERT INTO agent_tags (agent_name, tag) VALUES ('ghost', 't'), ('live', 't');",
        )
        .expect("roster");
        let rows = [
            ("1", "live", "running", None),
            ("2", "gone-soft", "running", None),
            ("3", "ghost", "running", None),
            ("4", "ghost", "queued", None),
            ("5", "ghost", "pending_retry", None),
            ("6", "ghost", "completed", Some("2026-01-01 10:00:00")),
            ("7", "ghost", "success", Some("2026-01-14T09:50:00Z")),
            ("8", "ghost", "failed", Some("2026-01-01 10:00:00")),
            ("9", "phantom", "queued", None),
            ("10", "phantom", "cancelled", Some("2026-01-14 09:55:00")),
            ("11", "Live", "running", None),
            ("12", "old-only", "skipped", Some("2026-01-01 10:00:00")),
        ];
        for (id, agent, status, completed) in rows {
            db.execute(
                "INSERT INTO schedule_executions (id, agent_name, status, completed_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, agent, status, completed],
            )
            .expect("insert");
        }
        let default_entry = PlatformConfig::default()
            .cascade
            .iter()
            .position(|c| c.table == "schedule_executions");
        assert!(default_entry.is_some());
        assert_eq!(
            answered_entry(&path),
            default_entry,
            "the default list qualifies"
        );
        let [(local, local_statements), (sql, sql_statements)] = orphans_both_ways(&path, now_ms);
        assert_eq!(local, sql);
        assert_eq!(local_statements, sql_statements);
        let executions: Vec<(&str, u64, Severity)> = local
            .iter()
            .filter(|o| o.table == "schedule_executions")
            .map(|o| (o.agent_name.as_str(), o.rows, o.severity))
            .collect();
        assert_eq!(
            executions,
            [
                ("Live", 1, Severity::Critical),
                ("ghost", 4, Severity::Critical),
                ("phantom", 1, Severity::Critical)
            ]
        );
        assert!(
            local
                .iter()
                .any(|o| o.table == "agent_tags" && o.agent_name == "ghost")
        );

        // A blob agent name: SQL `=` no longer is Rust equality, so the SQL arm answers.
        db.execute_batch(
            "INSERT INTO schedule_executions (id, agent_name, status) VALUES ('13', X'6c697665', 'running')",
        )
        .expect("blob");
        let [(local, _), (sql, _)] = orphans_both_ways(&path, now_ms);
        assert_eq!(local, sql);
    }

    /// A roster whose names compare case-insensitively: Rust equality would disagree, so the
    /// executions entry stays with its SQL arm.
    #[test]
    fn a_declared_collation_keeps_the_sql_arm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let db = Connection::open(&path).expect("open");
        db.execute_batch(
            "CREATE TABLE agent_ownership (agent_name TEXT COLLATE NOCASE PRIMARY KEY); \
             CREATE TABLE schedule_executions (id TEXT PRIMARY KEY, agent_name TEXT, status TEXT); \
             INSERT INTO agent_ownership VALUES ('Alpha'); \
             INSERT INTO schedule_executions VALUES ('1', 'alpha', 'running'), ('2', 'beta', NULL);",
        )
        .expect("schema");
        assert_eq!(answered_entry(&path), None);
        let [(local, _), (sql, _)] = orphans_both_ways(&path, 1_768_384_800_000);
        assert_eq!(local, sql);
        let agents: Vec<&str> = local.iter().map(|o| o.agent_name.as_str()).collect();
        assert_eq!(agents, ["beta"]);
    }
}
