//! Operator-defined SQL invariants, the reading half (DESIGN §5 "Custom SQL invariants"): runs
//! each configured statement on a read-only platform connection and carries the rows into the
//! snapshot as [`CustomResult`]s. Judging them is the pure crate's job
//! (`canary_invariants::custom`).
//!
//! Safety, in layers:
//! - the connection is opened like the collector's (`mode=ro` URI, `PRAGMA query_only = 1`), so
//!   SQLite itself refuses any write;
//! - before running, each statement is prepared and must be exactly one statement
//!   (rusqlite reports trailing statements as `MultipleStatement`), be read-only according to
//!   SQLite (`sqlite3_stmt_readonly`, via [`rusqlite::Statement::readonly`]), return columns and
//!   start with `SELECT`, `WITH` or `VALUES`. The same check ([`check_statement`]) runs in the
//!   startup preflight ([`super::preflight`]), so a write is refused at startup, and again here
//!   every cycle, because the schema (and so what a statement does) may have changed since;
//! - rows: at most `row_limit` are kept (one more is stepped to know whether the result was
//!   truncated; a truncation is reported as an anomaly);
//! - time: a watchdog thread waits on a channel for the statement's time limit and calls
//!   [`rusqlite::InterruptHandle::interrupt`] when it expires. SQLite then aborts the running
//!   step with `SQLITE_INTERRUPT`, and that invariant's rows become an error (outcome *unknown*),
//!   while the other statements still run. (The interrupt handle needs no extra rusqlite feature
//!   and no `unsafe`; the watchdog is joined before the next statement starts.)
//!
//! [`crate::collect::collect`] runs them right after the built-in read ([`run_blocking`] on a
//! blocking thread) and puts the results in the snapshot, so it leaves the collector complete.
//!
//! All custom statements share one read transaction, so they see one state of the database. It
//! is a second read-only connection opened right after the built-in read (the built-in reader
//! keeps its connection private), so the two reads may be a few milliseconds apart.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use canary_invariants::{Anomaly, AnomalyKind, CustomResult, CustomRow, Source};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, Statement};
use serde_json::{Value, json};

use super::sqlite::open_read_only;
use crate::config::custom::CustomSpec;
use crate::config::platform::{PlatformConfig, PlatformDatabase};

/// Longest text value kept in `observed_state` (characters); longer text is cut with `…`.
const TEXT_MAX: usize = 1000;
/// Bytes of a blob shown as hex in `observed_state` (its length is always given).
const BLOB_HEX_MAX: usize = 32;

/// What running the custom statements produced.
#[derive(Debug, Default)]
pub struct CustomOutcome {
    /// One result per spec, in spec order.
    pub results: Vec<CustomResult>,
    /// Truncations.
    pub anomalies: Vec<Anomaly>,
    /// Statements executed (the pragma and the transaction bracket included).
    pub statements: u32,
}

impl CustomOutcome {
    /// Adds `spec`'s result (both dialects): its rows, or the reason it was not evaluated
    /// (logged here, where it is handled), and a truncation anomaly when rows were cut.
    pub(super) fn push(&mut self, spec: &CustomSpec, run: Result<(Vec<CustomRow>, bool), String>) {
        let (rows, truncated) = match run {
            Ok((rows, truncated)) => (Ok(rows), truncated),
            Err(reason) => {
                tracing::warn!(invariant.id = %spec.id, reason = %reason, "custom invariant not evaluated");
                (Err(reason), false)
            }
        };
        if truncated {
            self.anomalies.push(Anomaly {
                source: Source::Sqlite,
                kind: AnomalyKind::CustomTruncated,
                subject: format!("custom invariant {}", spec.id),
                note: format!("truncated: more than row_limit {} rows", spec.row_limit),
            });
        }
        self.results.push(CustomResult {
            id: spec.id.clone(),
            name: spec.name.clone(),
            tier: spec.tier,
            severity: spec.severity,
            rows,
            truncated,
        });
    }
}

/// Why a statement is refused (configuration validation and run time use the same words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Blank or comment-only.
    #[error("sql is empty")]
    Empty,
    /// More than one statement.
    #[error("sql must be exactly one statement (the database found another after the first)")]
    Multiple,
    /// The database could not prepare it (syntax error, unknown table or column, ...).
    #[error("sql does not prepare against the platform database: {0}")]
    Prepare(String),
    /// The database says it may write (SQLite's `sqlite3_stmt_readonly`; PostgreSQL refusing a
    /// data-modifying `WITH` below the top level).
    #[error(
        "sql is not read-only (the database says it may change data); only a single SELECT is allowed"
    )]
    NotReadOnly,
    /// Read-only but not a query (`BEGIN`, a `PRAGMA` without result, ...).
    #[error("sql must be a SELECT (optionally WITH … SELECT, or VALUES) returning columns")]
    NotSelect,
}

/// Prepares `sql` on `conn` and checks it is one read-only `SELECT` (see the module docs).
pub fn check_statement<'c>(
    conn: &'c Connection,
    sql: &str,
) -> Result<Statement<'c>, StatementError> {
    if sql.trim().is_empty() {
        return Err(StatementError::Empty);
    }
    let stmt = conn.prepare(sql).map_err(|e| match e {
        rusqlite::Error::MultipleStatement => StatementError::Multiple,
        other => StatementError::Prepare(sqlite_message(&other)),
    })?;
    // Comment-only text prepares to "no statement", which has no columns.
    if stmt.column_count() == 0 && first_keyword(sql).is_none() {
        return Err(StatementError::Empty);
    }
    // The authority on writing is SQLite itself, not a pattern over the text.
    if !stmt.readonly() {
        return Err(StatementError::NotReadOnly);
    }
    let keyword = first_keyword(sql).unwrap_or_default();
    let is_query = matches!(keyword.as_str(), "SELECT" | "WITH" | "VALUES");
    if !is_query || stmt.column_count() == 0 {
        return Err(StatementError::NotSelect);
    }
    Ok(stmt)
}

/// The first SQL keyword, upper-cased, skipping whitespace and comments.
pub(super) fn first_keyword(sql: &str) -> Option<String> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// SQLite's own message without rusqlite's wrapping (it names the table or column at fault).
fn sqlite_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

/// Runs every spec on the platform database (blocking; call from a blocking task). When the
/// database cannot be opened or the read transaction cannot start, every result carries that
/// reason (outcome *unknown*). PostgreSQL: see [`super::custom_postgres`].
pub fn run_blocking(platform: &PlatformConfig, specs: &[CustomSpec]) -> CustomOutcome {
    let mut outcome = CustomOutcome::default();
    if specs.is_empty() {
        return outcome;
    }
    let path = match platform.database() {
        Ok(PlatformDatabase::Sqlite(path)) => path,
        Ok(PlatformDatabase::Postgres(url)) => {
            return super::custom_postgres::run_blocking(platform, &url, specs);
        }
        Err(error) => {
            fail_all(&mut outcome, specs, &error.to_string());
            return outcome;
        }
    };
    let conn = match open_read_only(&path, platform.sqlite_busy_timeout) {
        Ok(conn) => conn,
        Err(error) => {
            fail_all(&mut outcome, specs, &error.to_string());
            return outcome;
        }
    };
    outcome.statements += 2; // the query_only pragma and BEGIN
    if let Err(error) = conn.execute_batch("BEGIN") {
        fail_all(
            &mut outcome,
            specs,
            &format!(
                "cannot begin a read transaction: {}",
                sqlite_message(&error)
            ),
        );
        return outcome;
    }
    for spec in specs {
        outcome.statements += 1;
        let run = run_one(&conn, spec);
        outcome.push(spec, run);
    }
    outcome.statements += 1;
    // Reads are done; a failed COMMIT (e.g. the transaction was already closed) loses nothing.
    if let Err(error) = conn.execute_batch("COMMIT") {
        tracing::debug!(error = %error, "ending the custom read transaction");
    }
    outcome
}

/// The custom reader's own failure (open or BEGIN): logged here, where it is handled.
pub(super) fn fail_all(outcome: &mut CustomOutcome, specs: &[CustomSpec], reason: &str) {
    tracing::warn!(reason = %reason, "custom invariants not evaluated");
    outcome.results = failed(specs, reason);
}

/// One error result per spec (outcome *unknown*), never a silent gap.
fn failed(specs: &[CustomSpec], reason: &str) -> Vec<CustomResult> {
    specs
        .iter()
        .map(|spec| CustomResult {
            id: spec.id.clone(),
            name: spec.name.clone(),
            tier: spec.tier,
            severity: spec.severity,
            rows: Err(reason.to_owned()),
            truncated: false,
        })
        .collect()
}

/// Results for specs that were not run because SQLite was unavailable this cycle. Not logged:
/// the unavailable source is logged once by the cycle.
pub fn unavailable(specs: &[CustomSpec], reason: &str) -> Vec<CustomResult> {
    failed(specs, reason)
}

/// One statement under its watchdog: the rows (at most `row_limit`) and whether there were more.
fn run_one(conn: &Connection, spec: &CustomSpec) -> Result<(Vec<CustomRow>, bool), String> {
    let started = Instant::now();
    let handle = conn.get_interrupt_handle();
    let (done, wait) = mpsc::channel::<()>();
    let timeout = spec.timeout;
    std::thread::scope(|scope| {
        let watchdog = std::thread::Builder::new()
            .name("canary-sql-watchdog".to_owned())
            .spawn_scoped(scope, move || {
                // Any message or a dropped sender means "finished in time".
                if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                    handle.interrupt();
                }
            });
        if let Err(error) = watchdog {
            // Never run a statement without its time limit.
            return Err(RunError::Watchdog(error.to_string()));
        }
        let result = read_rows(conn, spec);
        drop(done);
        result
    })
    .map_err(|error| {
        let interrupted = match &error {
            RunError::Sqlite(e) => e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted),
            // A prepare cut short by the watchdog is a timeout, not a bad statement.
            RunError::Statement(StatementError::Prepare(m)) => m == "interrupted",
            RunError::Statement(_) | RunError::Watchdog(_) => false,
        };
        match error {
            _ if interrupted => format!(
                "interrupted: exceeded its time limit of {} (ran {} ms)",
                humantime::format_duration(spec.timeout),
                started.elapsed().as_millis()
            ),
            RunError::Statement(e) => format!("statement rejected: {e}"),
            RunError::Watchdog(e) => format!("cannot start the time-limit watchdog: {e}"),
            RunError::Sqlite(e) => format!("query failed: {}", sqlite_message(&e)),
        }
    })
}

enum RunError {
    Statement(StatementError),
    Watchdog(String),
    Sqlite(rusqlite::Error),
}

fn read_rows(conn: &Connection, spec: &CustomSpec) -> Result<(Vec<CustomRow>, bool), RunError> {
    let mut stmt = check_statement(conn, &spec.sql).map_err(RunError::Statement)?;
    let names = column_names(&stmt);
    let limit = usize::try_from(spec.row_limit).unwrap_or(usize::MAX);
    let mut rows = stmt.query([]).map_err(RunError::Sqlite)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(RunError::Sqlite)? {
        if out.len() >= limit {
            return Ok((out, true));
        }
        let mut map = CustomRow::new();
        for (index, name) in names.iter().enumerate() {
            let value = row.get_ref(index).map_err(RunError::Sqlite)?;
            map.insert(name.clone(), to_json(value));
        }
        out.push(map);
    }
    Ok((out, false))
}

/// Column names, made unique (`id`, `id_2`, …) so no value is lost when two columns share a name.
fn column_names(stmt: &Statement<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in stmt.column_names() {
        let mut candidate = name.to_owned();
        let mut n = 2;
        while names.contains(&candidate) {
            candidate = format!("{name}_{n}");
            n += 1;
        }
        names.push(candidate);
    }
    names
}

/// SQLite value → JSON: NULL → null, integers and finite reals → numbers, non-finite reals →
/// their text, text → string (cut at [`TEXT_MAX`] characters), blobs → `{"blob_bytes": n,
/// "hex": first 32 bytes}` (evidence, not a dump).
fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        ValueRef::Text(bytes) => {
            Value::String(truncate_text(String::from_utf8_lossy(bytes).into_owned()))
        }
        ValueRef::Blob(bytes) => {
            let hex: String = bytes
                .iter()
                .take(BLOB_HEX_MAX)
                .map(|b| format!("{b:02x}"))
                .collect();
            json!({ "blob_bytes": bytes.len(), "hex": hex })
        }
    }
}

/// `text` cut at [`TEXT_MAX`] characters, marked with `…`.
pub(super) fn truncate_text(text: String) -> String {
    if text.chars().count() > TEXT_MAX {
        let mut cut: String = text.chars().take(TEXT_MAX).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use canary_invariants::{Severity, Tier};

    fn platform(dir: &tempfile::TempDir) -> PlatformConfig {
        let path = dir.path().join("p.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE agents (name TEXT, deleted_at TEXT, avatar BLOB, score REAL);
             INSERT INTO agents VALUES ('a', NULL, x'0102', 1.5), ('b', '2026-01-01', NULL, NULL);",
        )
        .unwrap();
        PlatformConfig {
            sqlite_path: path,
            ..PlatformConfig::default()
        }
    }

    fn spec(id: &str, sql: &str) -> CustomSpec {
        CustomSpec {
            id: id.to_owned(),
            name: id.to_owned(),
            tier: Tier::A,
            severity: Severity::Major,
            sql: sql.to_owned(),
            row_limit: 100,
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn writes_and_non_queries_are_refused_by_sqlite_not_by_a_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(&dir);
        let conn = open_read_only(&p.sqlite_path, p.sqlite_busy_timeout).unwrap();
        let refused = [
            ("DELETE FROM agents", StatementError::NotReadOnly),
            ("UPDATE agents SET name = 'x'", StatementError::NotReadOnly),
            (
                "INSERT INTO agents (name) VALUES ('x')",
                StatementError::NotReadOnly,
            ),
            ("CREATE TABLE t (x)", StatementError::NotReadOnly),
            ("DROP TABLE agents", StatementError::NotReadOnly),
            // SQLite reports ATTACH as read-only (it changes the connection, not a file):
            // the "must be a query" check refuses it.
            (
                "ATTACH DATABASE ':memory:' AS other",
                StatementError::NotSelect,
            ),
            ("   ", StatementError::Empty),
            ("-- nothing here", StatementError::Empty),
            ("SELECT 1; SELECT 2", StatementError::Multiple),
            ("SELECT 1; DELETE FROM agents", StatementError::Multiple),
            ("BEGIN", StatementError::NotSelect),
            ("PRAGMA table_info(agents)", StatementError::NotSelect),
        ];
        for (sql, expected) in refused {
            assert_eq!(check_statement(&conn, sql).err(), Some(expected), "{sql}");
        }
        for sql in ["PRAGMA writable_schema = 1", "PRAGMA query_only = 0"] {
            assert!(check_statement(&conn, sql).is_err(), "{sql}");
        }
        assert!(matches!(
            check_statement(&conn, "SELECT nope FROM agents"),
            Err(StatementError::Prepare(m)) if m.contains("nope")
        ));
        for sql in [
            "SELECT name FROM agents;",
            "  -- why\n  WITH x AS (SELECT 1 AS n) SELECT n FROM x",
            "VALUES (1)",
        ] {
            assert!(check_statement(&conn, sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn rows_become_json_with_limits_and_duplicate_columns_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(&dir);
        let mut limited = spec("C-02", "SELECT name FROM agents ORDER BY name");
        limited.row_limit = 1;
        let outcome = run_blocking(
            &p,
            &[
                spec(
                    "C-01",
                    "SELECT name AS subject, avatar, score, name, name FROM agents ORDER BY name",
                ),
                limited,
                spec("C-03", "DELETE FROM agents"),
            ],
        );
        let [all, cut, write] = outcome.results.as_slice() else {
            panic!("three results expected: {:?}", outcome.results)
        };
        let rows = all.rows.as_ref().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["subject"], json!("a"));
        assert_eq!(rows[0]["avatar"], json!({"blob_bytes": 2, "hex": "0102"}));
        assert_eq!(rows[0]["score"], json!(1.5));
        assert_eq!(rows[0]["name_2"], json!("a"));
        assert_eq!(rows[1]["score"], Value::Null);
        assert!(!all.truncated);
        assert_eq!(cut.rows.as_ref().unwrap().len(), 1);
        assert!(cut.truncated);
        assert_eq!(outcome.anomalies.len(), 1);
        assert!(write.rows.as_ref().unwrap_err().contains("not read-only"));
        // The write was never executed.
        let conn = Connection::open(&p.sqlite_path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM agents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_runaway_query_is_interrupted_and_the_next_one_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(&dir);
        let mut slow = spec(
            "C-09",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
             SELECT x FROM c WHERE x = 1000000000",
        );
        slow.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let outcome = run_blocking(&p, &[slow, spec("C-10", "SELECT 1 AS one")]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let reason = outcome.results[0].rows.as_ref().unwrap_err();
        assert!(reason.contains("time limit of 200ms"), "{reason}");
        assert_eq!(outcome.results[1].rows.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn an_unopenable_database_makes_every_result_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = PlatformConfig {
            sqlite_path: dir.path().join("missing.db"),
            ..PlatformConfig::default()
        };
        let outcome = run_blocking(&p, &[spec("C-01", "SELECT 1")]);
        assert!(outcome.results[0].rows.is_err());
        assert!(run_blocking(&p, &[]).results.is_empty());
    }

    #[test]
    fn first_keyword_skips_comments() {
        assert_eq!(
            first_keyword("/* a */ -- b\n select 1").as_deref(),
            Some("SELECT")
        );
        assert_eq!(first_keyword("  "), None);
    }
}
