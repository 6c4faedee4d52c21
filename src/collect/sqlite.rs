//! The SQLite half of the collector: roster, execution rows and delete-cascade orphans, read in
//! one read transaction over a read-only connection.
//!
//! The statement count is fixed by the configuration, never by the number of agents or rows:
//! one schema-discovery query, one roster query, one executions query, one `UNION ALL` anti-join
//! for all cascade tables, one schedules query (when the table exists), plus the pragma and
//! transaction bracket. The cascade entry for the executions table's non-terminal rows is, when
//! provably the same answer, counted from the rows the executions query returned instead of by
//! its own arm of the anti-join (see `ExecutionsTally`). Optional columns absent from an older
//! schema degrade to `NULL` (and are listed in `missing_fields`); absent required columns make
//! the whole source unavailable, because guessing would be worse than *unknown*. A missing
//! schedules table only makes E-06 unknown.
//!
//! Two columns are read but never carried: `claude_session_id` becomes a has-a-session flag in
//! SQL (the id never leaves SQLite), and `backlog_metadata` of queued rows is reduced here to
//! facts (NULL / invalid / valid JSON, names of credential patterns found, see
//! [`super::secrets`]) and dropped; other rows' metadata is not even fetched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use canary_invariants::{
    Agent, Anomaly, Backlog, BacklogJson, Execution, Field, OrphanRows, Phase, Schedule, Source,
    SqlState,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Row, params_from_iter};

use super::classify_phase;
use super::timestamp::parse_timestamp_ms;
use crate::config::platform::{CascadeEntry, PlatformConfig, is_identifier};

/// Slack subtracted from the recent-terminal cutoff so that rows near the window's edge are not
/// lost to clock or rounding differences; the invariants apply the exact window themselves.
const CUTOFF_SLACK_MS: i64 = 5 * 60 * 1000;

/// Why the SQLite source could not be read. Messages are short and carry no secrets.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The file could not be opened read-only (missing, unreadable, not a database).
    #[error("cannot open database read-only: {0}")]
    Open(#[source] rusqlite::Error),
    /// A statement failed (locked past the busy timeout, corrupt file, ...).
    #[error("{step}: {source}")]
    Query {
        /// What was being read.
        step: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A required table is absent.
    #[error("table {0} not found")]
    MissingTable(String),
    /// Required columns are absent.
    #[error("table {table} lacks required column(s): {columns}")]
    MissingColumns {
        /// The table.
        table: String,
        /// Comma-separated column names.
        columns: String,
    },
    /// A configured table or column name is not a plain identifier (never spliced into SQL).
    #[error("configured name {0:?} is not a plain SQL identifier")]
    BadIdentifier(String),
}

/// What one SQLite collection produced.
#[derive(Debug)]
pub struct SqliteOutcome {
    /// The SQL state and the anomalies seen while reading it, or why the source is unavailable.
    pub result: Result<(SqlState, Vec<Anomaly>), SqliteError>,
    /// Statements executed, pragmas and the transaction bracket included.
    pub statements: u32,
}

/// Opens the platform database read-only (`mode=ro` URI, `query_only`), with the busy timeout.
///
/// The returned connection cannot write: the file handle is read-only and `query_only` makes
/// SQLite refuse any statement that would change the database.
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, SqliteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file_uri(path), flags).map_err(SqliteError::Open)?;
    conn.busy_timeout(busy_timeout).map_err(SqliteError::Open)?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(SqliteError::Open)?;
    Ok(conn)
}

/// A `file:` URI for `path`: bytes outside the unreserved set are percent-encoded, so a path
/// containing `?`, `#` or `%` cannot smuggle URI parameters (such as `mode=rw`).
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Reads the SQLite part of a snapshot. Never panics; every failure becomes `Err` in the outcome.
///
/// `recent_cutoff_ms`: terminal rows completed before this instant (minus a slack) are not read.
pub fn collect(cfg: &PlatformConfig, recent_cutoff_ms: i64) -> SqliteOutcome {
    collect_with(cfg, recent_cutoff_ms, true)
}

/// [`collect`], optionally without computing the executions cascade entry from the rows read
/// (the tests compare both paths).
fn collect_with(cfg: &PlatformConfig, recent_cutoff_ms: i64, local_cascade: bool) -> SqliteOutcome {
    let mut statements = 0;
    let result = collect_counted(cfg, recent_cutoff_ms, local_cascade, &mut statements);
    SqliteOutcome { result, statements }
}

fn collect_counted(
    cfg: &PlatformConfig,
    recent_cutoff_ms: i64,
    local_cascade: bool,
    statements: &mut u32,
) -> Result<(SqlState, Vec<Anomaly>), SqliteError> {
    check_identifiers(cfg)?;
    let conn = open_read_only(&cfg.sqlite_path, cfg.sqlite_busy_timeout)?;
    *statements += 1; // the query_only pragma
    let mut reader = Reader {
        conn: &conn,
        statements: 0,
    };
    let result = reader.in_read_transaction(|r| read_all(r, cfg, recent_cutoff_ms, local_cascade));
    *statements += reader.statements;
    result
}

fn check_identifiers(cfg: &PlatformConfig) -> Result<(), SqliteError> {
    let a = &cfg.tables.agents;
    let e = &cfg.tables.executions;
    let fixed = [
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
    ];
    let cascade = cfg.cascade.iter().flat_map(|c| {
        std::iter::once(&c.table)
            .chain(std::iter::once(&c.column))
            .chain(c.filter.as_ref().map(|f| &f.column))
    });
    match fixed
        .into_iter()
        .chain(cascade)
        .find(|name| !is_identifier(name))
    {
        Some(bad) => Err(SqliteError::BadIdentifier(bad.clone())),
        None => Ok(()),
    }
}

/// Double-quoted identifier; callers have checked [`is_identifier`], so no escaping is needed.
fn q(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// A connection wrapper that counts every statement it runs.
struct Reader<'c> {
    conn: &'c Connection,
    statements: u32,
}

impl Reader<'_> {
    fn batch(&mut self, sql: &str, step: &'static str) -> Result<(), SqliteError> {
        self.statements += 1;
        self.conn
            .execute_batch(sql)
            .map_err(|source| SqliteError::Query { step, source })
    }

    fn rows<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        step: &'static str,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, SqliteError> {
        self.statements += 1;
        let err = |source| SqliteError::Query { step, source };
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(params.iter())).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            out.push(map(row).map_err(err)?);
        }
        Ok(out)
    }

    /// Runs `body` inside `BEGIN … COMMIT` so every query sees the same database state.
    fn in_read_transaction<T>(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<T, SqliteError>,
    ) -> Result<T, SqliteError> {
        self.batch("BEGIN", "begin read transaction")?;
        match body(self) {
            Ok(value) => {
                self.batch("COMMIT", "end read transaction")?;
                Ok(value)
            }
            Err(e) => {
                // The connection is dropped right after; a failed rollback changes nothing.
                let _ = self.batch("ROLLBACK", "rollback");
                Err(e)
            }
        }
    }
}

/// Lowercased table name → lowercased column names, for the tables canary reads.
type Schema = BTreeMap<String, BTreeSet<String>>;

/// Prefix of the pseudo-column that says "this column leads an index" in [`Schema`]. Configured
/// names are plain identifiers, so no real column can collide with it.
const INDEXED: char = '\u{1}';

/// The pseudo-column that says "this table is a view or declares a collation" in [`Schema`].
const NOT_PLAIN: &str = "\u{2}";

/// `table` is a table (not a view) whose definition declares no collation: every comparison
/// of its columns is then BINARY.
fn is_plain_table(schema: &Schema, table: &str) -> bool {
    schema
        .get(&table.to_ascii_lowercase())
        .is_some_and(|cols| !cols.contains(NOT_PLAIN))
}

/// `column` is the first column of a full, BINARY-collated index on `table`.
fn leads_index(schema: &Schema, table: &str, column: &str) -> bool {
    schema
        .get(&table.to_ascii_lowercase())
        .is_some_and(|cols| cols.contains(&format!("{INDEXED}{}", column.to_ascii_lowercase())))
}

fn has_column(schema: &Schema, table: &str, column: &str) -> bool {
    schema
        .get(&table.to_ascii_lowercase())
        .is_some_and(|cols| cols.contains(&column.to_ascii_lowercase()))
}

fn read_all(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    recent_cutoff_ms: i64,
    local_cascade: bool,
) -> Result<(SqlState, Vec<Anomaly>), SqliteError> {
    let schema = read_schema(r, cfg)?;
    let mut state = SqlState::default();
    let mut anomalies = Vec::new();

    require(
        &schema,
        &cfg.tables.agents.table,
        &[&cfg.tables.agents.name],
    )?;
    let e = &cfg.tables.executions;
    require(&schema, &e.table, &[&e.id, &e.agent_name, &e.status])?;
    for (field, table, column) in optional_columns(cfg) {
        if !has_column(&schema, table, column) {
            state.missing_fields.insert(field);
        }
    }

    let (agents, roster_all_text) = read_roster(r, cfg, &schema, &mut anomalies)?;
    state.agents = agents;
    let local = if local_cascade {
        executions_cascade_entry(cfg, &schema)
    } else {
        None
    };
    let (executions, tally) = read_executions(
        r,
        cfg,
        &schema,
        recent_cutoff_ms - CUTOFF_SLACK_MS,
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
    let sc = &cfg.tables.schedules;
    if [&sc.id, &sc.agent_name, &sc.enabled, &sc.next_run_at]
        .iter()
        .all(|c| has_column(&schema, &sc.table, c))
    {
        if !has_column(&schema, &sc.table, &sc.deleted_at) {
            state.missing_fields.insert(Field::ScheduleDeletedAt);
        }
        state.schedules = read_schedules(r, cfg, &schema, &mut anomalies)?;
    } else {
        // Without the table (or a column E-06 cannot do without) E-06 is unknown, not green.
        state.missing_fields.insert(Field::Schedules);
    }
    Ok((state, anomalies))
}

/// One statement for the columns of every table canary may read. Restricted to those names so a
/// virtual table of an extension canary has not loaded cannot break the whole read.
fn read_schema(r: &mut Reader<'_>, cfg: &PlatformConfig) -> Result<Schema, SqliteError> {
    let mut wanted: BTreeSet<String> = cfg.cascade.iter().map(|c| c.table.clone()).collect();
    wanted.insert(cfg.tables.agents.table.clone());
    wanted.insert(cfg.tables.executions.table.clone());
    wanted.insert(cfg.tables.schedules.table.clone());
    let wanted: Vec<Value> = wanted
        .into_iter()
        .map(|t| Value::Text(t.to_ascii_lowercase()))
        .collect();
    // The second arm lists the first column of every full (non-partial) index with the default
    // collation, marked with [`INDEXED`], so the executions query can pick an index-driven shape
    // without another statement. The third marks ([`NOT_PLAIN`]) views and tables whose
    // definition names a collation: only between plain tables do SQL `=` and Rust string
    // equality agree, which the executions cascade computed in Rust relies on.
    let sql = format!(
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
         WHERE m.type IN ('table', 'view') AND lower(m.name) IN ({list}) \
         UNION ALL SELECT m.name, char(1) || x.name FROM sqlite_master AS m \
         JOIN pragma_index_list(m.name) AS il JOIN pragma_index_xinfo(il.name) AS x \
         WHERE m.type = 'table' AND il.partial = 0 AND x.seqno = 0 AND x.name IS NOT NULL \
         AND x.coll = 'BINARY' AND lower(m.name) IN ({list}) \
         UNION ALL SELECT m.name, char(2) FROM sqlite_master AS m \
         WHERE m.type IN ('table', 'view') AND lower(m.name) IN ({list}) \
         AND (m.type = 'view' OR m.sql IS NULL OR instr(upper(m.sql), 'COLLATE') > 0)",
        list = placeholders(wanted.len())
    );
    let wanted: Vec<Value> = wanted
        .iter()
        .chain(wanted.iter())
        .chain(wanted.iter())
        .cloned()
        .collect();
    let pairs = r.rows(&sql, &wanted, "reading the schema", |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut schema = Schema::new();
    for (table, column) in pairs {
        schema
            .entry(table.to_ascii_lowercase())
            .or_default()
            .insert(column.to_ascii_lowercase());
    }
    Ok(schema)
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn require(schema: &Schema, table: &str, columns: &[&String]) -> Result<(), SqliteError> {
    if !schema.contains_key(&table.to_ascii_lowercase()) {
        return Err(SqliteError::MissingTable(table.to_owned()));
    }
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| !has_column(schema, table, c))
        .map(|c| c.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SqliteError::MissingColumns {
            table: table.to_owned(),
            columns: missing.join(", "),
        })
    }
}

fn optional_columns(cfg: &PlatformConfig) -> [(Field, &str, &str); 12] {
    let a = &cfg.tables.agents;
    let e = &cfg.tables.executions;
    [
        (Field::AgentIsSystem, &a.table, &a.is_system),
        (
            Field::AgentMaxParallelTasks,
            &a.table,
            &a.max_parallel_tasks,
        ),
        (
            Field::AgentExecutionTimeout,
            &a.table,
            &a.execution_timeout_seconds,
        ),
        (Field::AgentDeletedAt, &a.table, &a.deleted_at),
        (Field::ExecScheduleId, &e.table, &e.schedule_id),
        (Field::ExecStartedAt, &e.table, &e.started_at),
        (Field::ExecCompletedAt, &e.table, &e.completed_at),
        (Field::ExecQueuedAt, &e.table, &e.queued_at),
        (Field::ExecDurationMs, &e.table, &e.duration_ms),
        (Field::ExecSessionId, &e.table, &e.session_id),
        (Field::ExecLeaseExpiresAt, &e.table, &e.lease_expires_at),
        (Field::ExecBacklogMetadata, &e.table, &e.backlog_metadata),
    ]
}

/// `"col"` when the column exists, else `NULL` so the query keeps its shape.
fn col_or_null(schema: &Schema, table: &str, column: &str) -> String {
    if has_column(schema, table, column) {
        q(column)
    } else {
        "NULL".to_owned()
    }
}

fn anomaly(subject: String, note: impl Into<String>) -> Anomaly {
    Anomaly {
        source: Source::Sqlite,
        subject,
        note: note.into(),
    }
}

/// Integers and text are both seen as ids and names in the wild; both are carried as text.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(s) => Some(s.clone()),
        Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// The roster, and whether every non-NULL name was stored as text (see [`ExecutionsTally`]).
fn read_roster(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &Schema,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<Agent>, bool), SqliteError> {
    let a = &cfg.tables.agents;
    let deleted = if has_column(schema, &a.table, &a.deleted_at) {
        format!("{} IS NOT NULL", q(&a.deleted_at))
    } else {
        "0".to_owned()
    };
    let sql = format!(
        "SELECT {}, {}, {}, {}, {} FROM {}",
        q(&a.name),
        col_or_null(schema, &a.table, &a.is_system),
        col_or_null(schema, &a.table, &a.max_parallel_tasks),
        col_or_null(schema, &a.table, &a.execution_timeout_seconds),
        deleted,
        q(&a.table),
    );
    let rows = r.rows(&sql, &[], "reading the roster", |row| {
        Ok((
            row.get::<_, Value>(0)?,
            row.get::<_, Value>(1)?,
            row.get::<_, Value>(2)?,
            row.get::<_, Value>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let defaults = &cfg.agent_defaults;
    let mut agents = Vec::with_capacity(rows.len());
    let all_text = rows
        .iter()
        .all(|(name, ..)| matches!(name, Value::Text(_) | Value::Null));
    for (name, is_system, cap, timeout, deleted) in rows {
        let Some(name) = value_text(&name) else {
            anomalies.push(anomaly(
                format!("{}.{}", a.table, a.name),
                "agent row with NULL name skipped",
            ));
            continue;
        };
        let mut int_or_default = |v: &Value, column: &str, default: i64| match as_integer(v) {
            Ok(Some(i)) => i,
            Ok(None) => default,
            Err(()) => {
                anomalies.push(anomaly(
                    format!("{}.{}.{}", a.table, name, column),
                    format!("not an integer; platform default {default} assumed"),
                ));
                default
            }
        };
        let max_parallel_tasks =
            int_or_default(&cap, &a.max_parallel_tasks, defaults.max_parallel_tasks);
        let execution_timeout_seconds = int_or_default(
            &timeout,
            &a.execution_timeout_seconds,
            defaults.execution_timeout_seconds,
        );
        agents.push(Agent {
            name,
            is_system: truthy(&is_system),
            max_parallel_tasks,
            execution_timeout_seconds,
            deleted: deleted != 0,
        });
    }
    agents.sort_by(|x, y| x.name.cmp(&y.name));
    Ok((agents, all_text))
}

/// `Ok(None)` for NULL, `Err` for a value that is not an integer (text digits are accepted:
/// SQLite's type affinity lets either land in an INTEGER column).
fn as_integer(v: &Value) -> Result<Option<i64>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(*i)),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
        Value::Text(s) => s.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Integer(i) => *i != 0,
        Value::Real(f) => *f != 0.0,
        Value::Text(s) => {
            matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "t" | "yes" | "y"
            )
        }
        Value::Null | Value::Blob(_) => false,
    }
}

/// `YYYY-MM-DD` two days before `cutoff_ms`: text sorting below it is a date-time too old for
/// the recent window whatever its zone offset (offsets are at most ±14 h).
fn recent_floor(cutoff_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(cutoff_ms.saturating_sub(2 * 86_400_000))
        .map(|t| t.format("%Y-%m-%d").to_string())
        // Out of chrono's range: no floor (every text value sorts above "0").
        .unwrap_or_else(|| "0".to_owned())
}

/// Converts SQLite's unix-ms cutoff into the Julian day number `julianday()` compares against.
fn julian_day(ms: i64) -> f64 {
    ms as f64 / 86_400_000.0 + 2_440_587.5
}

/// Every non-terminal row and the recently completed terminal ones; with `tally`, also the
/// count of non-terminal rows per agent name for the executions cascade entry.
fn read_executions(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &Schema,
    cutoff_ms: i64,
    tally: bool,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<Execution>, Option<ExecutionsTally>), SqliteError> {
    let e = &cfg.tables.executions;
    let terminal = &cfg.statuses.terminal;
    // Placeholders of the select list come first, then those of the filter.
    let mut params: Vec<Value> = Vec::new();
    let session = if has_column(schema, &e.table, &e.session_id) {
        let c = q(&e.session_id);
        format!("({c} IS NOT NULL AND CAST({c} AS TEXT) <> '')")
    } else {
        "0".to_owned()
    };
    // Only queued rows' metadata is fetched: the others are never judged on it.
    let queued = &cfg.statuses.queued;
    let backlog = if has_column(schema, &e.table, &e.backlog_metadata) && !queued.is_empty() {
        params.extend(queued.iter().map(|w| Value::Text(w.clone())));
        format!(
            "CASE WHEN {} IN ({}) THEN {} END",
            q(&e.status),
            placeholders(queued.len()),
            q(&e.backlog_metadata)
        )
    } else {
        "NULL".to_owned()
    };
    let select = format!(
        "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {}",
        q(&e.id),
        q(&e.agent_name),
        q(&e.status),
        col_or_null(schema, &e.table, &e.started_at),
        col_or_null(schema, &e.table, &e.completed_at),
        col_or_null(schema, &e.table, &e.queued_at),
        col_or_null(schema, &e.table, &e.lease_expires_at),
        session,
        backlog,
        q(&e.table),
    );
    let select_params = params;
    let mut params = select_params.clone();
    let st = q(&e.status);
    let terms = placeholders(terminal.len());
    let words = || terminal.iter().map(|w| Value::Text(w.clone()));

    // Terminal rows completed recently. SQLite parses the ISO and `datetime()` shapes itself, so
    // the window needs no string comparison; values it cannot parse (epoch numbers, garbage) are
    // fetched too, so Rust parses or reports them.
    let mut recent_arm: Option<(String, Vec<Value>)> = None;
    if has_column(schema, &e.table, &e.completed_at) {
        let c = q(&e.completed_at);
        let recent = |col: &str| {
            format!("julianday({col}) >= ? OR ({col} IS NOT NULL AND julianday({col}) IS NULL)")
        };
        // Cheap prefilter first: without an index on `completed_at` every terminal row is read,
        // and `julianday()` on each of them was most of the query (0.7 s at 1 M rows). Text
        // that sorts as a date-time before `recent_floor` (two days before the cutoff, which
        // covers any zone offset) cannot be in the window, so it is skipped by a plain
        // comparison. This drops only such date-prefixed text (e.g. `2020-01-01 garbage`) from
        // the unparseable-value report; every other shape (numbers, NULL, text sorting below
        // '1970' or above the floor) still reaches `julianday()`. Written as three ranges so
        // that a platform with an index on `completed_at` gets index lookups instead of the scan
        // (88 ms instead of ~400 ms at 1 M rows, benches/RESULTS.md).
        let mut arm = format!(
            "({c} >= ? OR {c} < '1970-01-01' OR {c} IS NULL) AND ({}",
            recent(&c)
        );
        let mut arm_params = vec![
            Value::Text(recent_floor(cutoff_ms)),
            Value::Real(julian_day(cutoff_ms)),
        ];
        if has_column(schema, &e.table, &e.started_at) {
            // Terminal rows that never got a `completed_at` (what E-03 looks for) are windowed
            // by their start instead.
            arm.push_str(&format!(
                " OR ({c} IS NULL AND ({}))",
                recent(&q(&e.started_at))
            ));
            arm_params.push(Value::Real(julian_day(cutoff_ms)));
        }
        arm.push(')');
        recent_arm = Some((arm, arm_params));
    }

    let sql = if terminal.is_empty() {
        format!("{select} WHERE 1")
    } else if leads_index(schema, &e.table, &e.status) {
        // With an index on status, the few non-terminal rows are fetched through it: a
        // recursive skip-scan lists the distinct statuses (one index probe each; a platform has
        // a handful of status words), and the rows of the non-terminal ones are looked up. Only
        // the recent-terminal arm scans the table. At 1 M rows: ~10 ms instead of a scan.
        let mut sql = format!(
            "WITH RECURSIVE st(v) AS (SELECT (SELECT min({st}) FROM {t}) UNION ALL \
             SELECT (SELECT min({st}) FROM {t} WHERE {st} > st.v) FROM st WHERE st.v IS NOT NULL) \
             {select} WHERE {st} IN (SELECT v FROM st WHERE v NOT IN ({terms})) \
             UNION ALL {select} WHERE {st} IS NULL",
            t = q(&e.table),
        );
        params.extend(words());
        params.extend(select_params.iter().cloned());
        if let Some((arm, arm_params)) = recent_arm {
            // `+` keeps SQLite from reading the terminal rows through the status index (one
            // random table read per row); the scan is cheaper.
            sql.push_str(&format!(
                " UNION ALL {select} WHERE +{st} IN ({terms}) AND {arm}"
            ));
            params.extend(select_params.iter().cloned());
            params.extend(words());
            params.extend(arm_params);
        }
        sql
    } else {
        // No usable index: one scan answers both arms.
        let mut filter = format!("{st} IS NULL OR {st} NOT IN ({terms})");
        params.extend(words());
        if let Some((arm, arm_params)) = recent_arm {
            filter.push_str(&format!(" OR ({arm})"));
            params.extend(arm_params);
        }
        format!("{select} WHERE {filter}")
    };
    let backlog_column = has_column(schema, &e.table, &e.backlog_metadata);
    let rows = r.rows(&sql, &params, "reading executions", |row| {
        let mut v: [Value; 9] = std::array::from_fn(|_| Value::Null);
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = row.get::<_, Value>(i)?;
        }
        Ok(v)
    })?;

    let mut out = Vec::with_capacity(rows.len());
    let mut tally = tally.then(|| ExecutionsTally {
        all_text: true,
        per_agent: BTreeMap::new(),
    });
    for [
        id,
        agent,
        status,
        started,
        completed,
        queued,
        lease,
        session,
        metadata,
    ] in rows
    {
        if let Some(tally) = tally.as_mut() {
            // Before any row is skipped: the SQL arm counts rows whatever their id.
            tally.add(&agent, &status, terminal);
        }
        let Some(id) = value_text(&id) else {
            anomalies.push(anomaly(
                format!("{}.{}", e.table, e.id),
                "row with NULL id skipped",
            ));
            continue;
        };
        let subject = |column: &str| format!("{}.{}.{}", e.table, id, column);
        let agent_name = value_text(&agent).unwrap_or_else(|| {
            anomalies.push(anomaly(subject(&e.agent_name), "NULL agent name"));
            String::new()
        });
        let status = value_text(&status).unwrap_or_else(|| {
            anomalies.push(anomaly(subject(&e.status), "NULL status"));
            String::new()
        });
        let mut ts = |v: &Value, column: &str| parse_ts_value(v, || subject(column), anomalies);
        let started_at_ms = ts(&started, &e.started_at);
        let completed_at_ms = ts(&completed, &e.completed_at);
        let queued_at_ms = ts(&queued, &e.queued_at);
        let lease_expires_at_ms = ts(&lease, &e.lease_expires_at);
        let phase = classify_phase(&status, &cfg.statuses);
        let backlog = (backlog_column && phase == Phase::Queued).then(|| backlog_facts(metadata));
        out.push(Execution {
            phase,
            id,
            agent_name,
            status,
            started_at_ms,
            completed_at_ms,
            queued_at_ms,
            leased: !matches!(lease, Value::Null),
            lease_expires_at_ms,
            completed_at_set: !matches!(completed, Value::Null),
            queued_at_set: !matches!(queued, Value::Null),
            has_session: matches!(session, Value::Integer(i) if i != 0),
            backlog,
        });
    }
    out.sort_by(|x, y| x.id.cmp(&y.id));
    Ok((out, tally))
}

/// Non-terminal execution rows per agent name, counted while reading them, to answer the
/// executions cascade entry without its SQL arm.
///
/// That arm walked the whole agent index of the executions table (1 M entries at L, ~70–90 ms)
/// only to find rows the executions query has already returned. The answers agree when every
/// compared value is text (`all_text`, with the roster's names also text): SQL `=` between text
/// values of plain tables (no view, no declared collation, see [`is_plain_table`]) is byte
/// equality, as in Rust. A number or blob anywhere falls back to the SQL arm.
#[derive(Debug)]
struct ExecutionsTally {
    /// Every agent name and status seen was text or NULL.
    all_text: bool,
    /// Non-terminal rows per (non-NULL) agent name.
    per_agent: BTreeMap<String, u64>,
}

impl ExecutionsTally {
    fn add(&mut self, agent: &Value, status: &Value, terminal: &[String]) {
        let non_terminal = match status {
            Value::Null => true,
            Value::Text(s) => !terminal.iter().any(|t| t == s),
            _ => {
                self.all_text = false;
                return;
            }
        };
        match agent {
            // The SQL arm never matches a NULL agent name either.
            Value::Null => {}
            Value::Text(a) if non_terminal => match self.per_agent.get_mut(a.as_str()) {
                Some(n) => *n += 1,
                None => {
                    self.per_agent.insert(a.clone(), 1);
                }
            },
            Value::Text(_) => {}
            _ => self.all_text = false,
        }
    }

    /// The entry's orphans: counted agents absent from the roster (soft-deleted agents are in it).
    fn orphans(self, roster: &[Agent], entry: &CascadeEntry) -> Vec<OrphanRows> {
        let known: BTreeSet<&str> = roster.iter().map(|a| a.name.as_str()).collect();
        self.per_agent
            .into_iter()
            .filter(|(agent, _)| !known.contains(agent.as_str()))
            .map(|(agent_name, rows)| OrphanRows {
                table: entry.table.clone(),
                agent_name,
                rows,
                severity: entry.severity,
            })
            .collect()
    }
}

/// The index of the cascade entry that selects exactly the executions query's non-terminal rows
/// (the executions table, its agent column, and a filter keeping the rows whose status is none
/// of the configured terminal words), when the roster and executions tables are plain tables.
/// Names compare case-insensitively, as SQLite's identifiers do.
fn executions_cascade_entry(cfg: &PlatformConfig, schema: &Schema) -> Option<usize> {
    let e = &cfg.tables.executions;
    let terminal: BTreeSet<&str> = cfg.statuses.terminal.iter().map(String::as_str).collect();
    if terminal.is_empty()
        || !is_plain_table(schema, &e.table)
        || !is_plain_table(schema, &cfg.tables.agents.table)
    {
        return None;
    }
    let mut matching = cfg.cascade.iter().enumerate().filter(|(_, c)| {
        c.table.eq_ignore_ascii_case(&e.table)
            && c.column.eq_ignore_ascii_case(&e.agent_name)
            && c.filter.as_ref().is_some_and(|f| {
                f.column.eq_ignore_ascii_case(&e.status)
                    && f.is_in.is_empty()
                    && f.not_in.iter().map(String::as_str).collect::<BTreeSet<_>>() == terminal
            })
    });
    let (index, _) = matching.next()?;
    // Two such entries would each be reported; keep the plain SQL path for that odd config.
    matching.next().is_none().then_some(index)
}

/// Reduces a queued row's `backlog_metadata` to facts; the text is dropped here. Nothing about
/// the content (not even a fragment in an anomaly) may leave this function.
fn backlog_facts(metadata: Value) -> Backlog {
    let text = match metadata {
        Value::Null => {
            return Backlog {
                json: BacklogJson::Null,
                secret_patterns: Vec::new(),
            };
        }
        Value::Text(s) => s,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        // A blob that is UTF-8 is judged as text; other bytes are not JSON.
        Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
    };
    let (valid, patterns) = super::secrets::scan_metadata(&text);
    Backlog {
        json: if valid {
            BacklogJson::Valid
        } else {
            BacklogJson::Invalid
        },
        secret_patterns: patterns.into_iter().map(str::to_owned).collect(),
    }
}

/// Every schedule row, in one statement. Callers have checked that the table and its required
/// columns exist.
fn read_schedules(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &Schema,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Vec<Schedule>, SqliteError> {
    let sc = &cfg.tables.schedules;
    let deleted = if has_column(schema, &sc.table, &sc.deleted_at) {
        format!("{} IS NOT NULL", q(&sc.deleted_at))
    } else {
        "0".to_owned()
    };
    let sql = format!(
        "SELECT {}, {}, {}, {}, {} FROM {}",
        q(&sc.id),
        q(&sc.agent_name),
        q(&sc.enabled),
        q(&sc.next_run_at),
        deleted,
        q(&sc.table),
    );
    let rows = r.rows(&sql, &[], "reading schedules", |row| {
        Ok((
            row.get::<_, Value>(0)?,
            row.get::<_, Value>(1)?,
            row.get::<_, Value>(2)?,
            row.get::<_, Value>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, agent, enabled, next_run_at, deleted) in rows {
        let Some(id) = value_text(&id) else {
            anomalies.push(anomaly(
                format!("{}.{}", sc.table, sc.id),
                "schedule with NULL id skipped",
            ));
            continue;
        };
        let subject = |column: &str| format!("{}.{}.{}", sc.table, id, column);
        let agent_name = value_text(&agent).unwrap_or_else(|| {
            anomalies.push(anomaly(subject(&sc.agent_name), "NULL agent name"));
            String::new()
        });
        let next_run_at_ms = parse_ts_value(&next_run_at, || subject(&sc.next_run_at), anomalies);
        out.push(Schedule {
            id,
            agent_name,
            enabled: truthy(&enabled),
            deleted: deleted != 0,
            next_run_at_ms,
        });
    }
    out.sort_by(|x, y| x.id.cmp(&y.id));
    Ok(out)
}

/// A timestamp cell → unix ms. Text goes through [`parse_timestamp_ms`]; a number is unix
/// seconds. Anything non-NULL that does not parse is `None` plus an anomaly.
fn parse_ts_value(
    v: &Value,
    subject: impl FnOnce() -> String,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let parsed = match v {
        Value::Null => return None,
        Value::Integer(i) => super::timestamp::seconds_to_ms(*i as f64),
        Value::Real(f) => super::timestamp::seconds_to_ms(*f),
        Value::Text(s) => parse_timestamp_ms(s),
        Value::Blob(_) => None,
    };
    if parsed.is_none() {
        let shown = match v {
            Value::Text(s) => format!("unparseable timestamp {:?}", truncate(s, 40)),
            Value::Blob(_) => "timestamp stored as a blob".to_owned(),
            _ => "timestamp out of range".to_owned(),
        };
        anomalies.push(anomaly(subject(), shown));
    }
    parsed
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => s.get(..at).unwrap_or(s),
        None => s,
    }
}

/// Which cascade entries can be scanned: the table and the columns it needs exist.
fn scannable<'a>(
    cfg: &'a PlatformConfig,
    schema: &Schema,
    anomalies: &mut Vec<Anomaly>,
) -> (Vec<(usize, &'a CascadeEntry)>, Vec<String>) {
    let mut usable = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for (i, entry) in cfg.cascade.iter().enumerate() {
        if !schema.contains_key(&entry.table.to_ascii_lowercase()) {
            if !skipped.contains(&entry.table) {
                skipped.push(entry.table.clone());
            }
            continue;
        }
        let needed = std::iter::once(&entry.column).chain(entry.filter.as_ref().map(|f| &f.column));
        if let Some(absent) = needed
            .into_iter()
            .find(|c| !has_column(schema, &entry.table, c))
        {
            // A present table without its agent (or filter) column cannot be judged; say so
            // rather than failing the whole source on one odd table.
            anomalies.push(anomaly(
                format!("{}.{}", entry.table, absent),
                "cascade column missing; table skipped",
            ));
            if !skipped.contains(&entry.table) {
                skipped.push(entry.table.clone());
            }
            continue;
        }
        usable.push((i, entry));
    }
    (usable, skipped)
}

/// All cascade tables in ONE statement: a `UNION ALL` of anti-joins against the roster.
/// `answered`: the index of a cascade entry already answered from the executions rows, left out
/// of the statement.
fn read_orphans(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &Schema,
    answered: Option<usize>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<OrphanRows>, Vec<String>), SqliteError> {
    let (mut usable, skipped) = scannable(cfg, schema, anomalies);
    usable.retain(|(i, _)| Some(*i) != answered);
    if usable.is_empty() {
        return Ok((Vec::new(), skipped));
    }
    let agents = q(&cfg.tables.agents.table);
    let name = q(&cfg.tables.agents.name);
    let mut params: Vec<Value> = Vec::new();
    let mut parts = Vec::with_capacity(usable.len());
    for (i, entry) in &usable {
        let col = format!("t.{}", q(&entry.column));
        // The anti-join runs over the table's DISTINCT agent names (a covering scan of its agent
        // index), and only the rows of agents missing from the roster are then filtered and
        // counted. Joining every row instead made SQLite walk `schedule_executions` in agent-index
        // order to serve the GROUP BY, one random table read per row: 3.7 s of a 4 s cycle at
        // 1 M rows, against ~65 ms for this shape (benches/RESULTS.md).
        let mut sql = format!(
            "SELECT {i}, {col}, COUNT(*) FROM {table} AS t WHERE {col} IN (\
             SELECT d.v FROM (SELECT DISTINCT {c} AS v FROM {table} WHERE {c} IS NOT NULL) AS d \
             LEFT JOIN {agents} AS r ON r.{name} = d.v WHERE r.{name} IS NULL)",
            table = q(&entry.table),
            c = q(&entry.column),
        );
        if let Some(f) = &entry.filter {
            let fcol = format!("t.{}", q(&f.column));
            if !f.is_in.is_empty() {
                sql.push_str(&format!(" AND {fcol} IN ({})", placeholders(f.is_in.len())));
                params.extend(f.is_in.iter().map(|v| Value::Text(v.clone())));
            }
            if !f.not_in.is_empty() {
                // NULL is in no list, so a NULL status is a live row, not an excluded one.
                sql.push_str(&format!(
                    " AND ({fcol} IS NULL OR {fcol} NOT IN ({}))",
                    placeholders(f.not_in.len())
                ));
                params.extend(f.not_in.iter().map(|v| Value::Text(v.clone())));
            }
        }
        sql.push_str(&format!(" GROUP BY {col}"));
        parts.push(sql);
    }
    let sql = parts.join(" UNION ALL ");
    let rows = r.rows(&sql, &params, "scanning delete cascades", |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, Value>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut orphans = Vec::with_capacity(rows.len());
    for (index, agent, count) in rows {
        let entry = usize::try_from(index).ok().and_then(|i| cfg.cascade.get(i));
        let (Some(entry), Some(agent_name)) = (entry, value_text(&agent)) else {
            continue;
        };
        orphans.push(OrphanRows {
            table: entry.table.clone(),
            agent_name,
            rows: u64::try_from(count).unwrap_or(0),
            severity: entry.severity,
        });
    }
    orphans.sort();
    Ok((orphans, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_invariants::Severity;

    /// The executions query has two shapes (status index or not); both must read the same rows:
    /// every non-terminal row, and terminal rows completed (or, without `completed_at`, started)
    /// in the window or with a value SQLite cannot parse.
    #[test]
    fn both_execution_query_shapes_read_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let db = Connection::open(&path).expect("open");
        db.execute_batch(crate::fleet::platform::SCHEMA)
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
        let mut reader = Reader {
            conn: &conn,
            statements: 0,
        };
        let schema = read_schema(&mut reader, &cfg).expect("schema");
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
            let outcome = collect_with(&cfg, now_ms - 30 * 60_000, local);
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
        db.execute_batch(crate::fleet::platform::SCHEMA)
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

    #[test]
    fn recent_floor_is_two_days_before() {
        assert_eq!(recent_floor(1_768_384_800_000), "2026-01-12");
        assert_eq!(recent_floor(i64::MIN), "0");
    }

    #[test]
    fn file_uri_escapes_uri_syntax() {
        assert_eq!(
            file_uri(Path::new("/var/lib/p.db")),
            "file:/var/lib/p.db?mode=ro"
        );
        assert_eq!(
            file_uri(Path::new("/tmp/a b?mode=rw#x%.db")),
            "file:/tmp/a%20b%3Fmode%3Drw%23x%25.db?mode=ro"
        );
    }

    #[test]
    fn julian_day_of_epoch() {
        assert!((julian_day(0) - 2_440_587.5).abs() < 1e-9);
        assert!((julian_day(86_400_000) - 2_440_588.5).abs() < 1e-9);
    }

    #[test]
    fn integers_accept_text_digits_and_reject_garbage() {
        assert_eq!(as_integer(&Value::Null), Ok(None));
        assert_eq!(as_integer(&Value::Integer(5)), Ok(Some(5)));
        assert_eq!(as_integer(&Value::Text(" 7 ".into())), Ok(Some(7)));
        assert_eq!(as_integer(&Value::Real(4.0)), Ok(Some(4)));
        assert_eq!(as_integer(&Value::Real(4.5)), Err(()));
        assert_eq!(as_integer(&Value::Text("many".into())), Err(()));
    }

    #[test]
    fn truthiness() {
        assert!(truthy(&Value::Integer(1)));
        assert!(truthy(&Value::Text("TRUE".into())));
        assert!(!truthy(&Value::Integer(0)));
        assert!(!truthy(&Value::Null));
        assert!(!truthy(&Value::Text("no".into())));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
