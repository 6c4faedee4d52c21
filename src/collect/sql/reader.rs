//! The statement-counting reader every SQL reader goes through, whatever the dialect, and the
//! [`Dialect`] facts the readers need to build their statements (the transaction bracket, the
//! date-time window comparison, how two agent-name columns are compared).
//!
//! Statements are written once, in plain SQL with `?` placeholders; the reader binds them
//! (SQLite) or inlines them as quoted literals (PostgreSQL, whose simple query protocol returns
//! every value as text in one round trip, see `postgres`). Rows come back as [`Cell`]s.
//!
//! It must not decide what to read (the readers do) nor interpret cells (see `value`).

use super::error::SqlError;
use super::postgres;
use super::value::{Cell, CellRef};
use crate::collect::timestamp::MAX_OFFSET_SECONDS;
use rusqlite::types::ValueRef;

/// Which SQL engine the platform runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How a date-time column is stored, as far as the window comparison cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeColumn {
    /// Text in the platform's mixed shapes (DESIGN §4); SQLite's only kind.
    #[default]
    Text,
    /// A native `timestamp`, `timestamptz` or `date` column (PostgreSQL).
    Native,
    /// Anything else (a number of seconds, …): every non-NULL value is fetched and Rust decides.
    Other,
}

impl Dialect {
    /// Opens the snapshot every statement of a collection reads.
    pub(super) fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN",
            // One snapshot for every statement, and the server refuses any write in it.
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// A condition true when `column` (an SQL expression of kind `kind`) holds an instant at or
    /// after `cutoff_ms`, or a non-NULL value the database cannot place in time (fetched so
    /// Rust parses or reports it), with its parameters. May also keep some earlier rows: the
    /// invariants apply the exact window themselves.
    pub(super) fn time_at_least(
        self,
        column: &str,
        kind: TimeColumn,
        cutoff_ms: i64,
    ) -> (String, Vec<Cell>) {
        match (self, kind) {
            (Dialect::Sqlite, _) => (
                format!(
                    "julianday({column}) >= ? OR ({column} IS NOT NULL AND julianday({column}) IS NULL)"
                ),
                vec![Cell::Real(julian_day(cutoff_ms))],
            ),
            // The session's time zone is UTC (see `postgres`), so a `timestamp` without zone
            // compares as UTC, as the text shapes without zone do.
            (Dialect::Postgres, TimeColumn::Native) => (
                format!("{column} >= to_timestamp(?)"),
                vec![Cell::Real(cutoff_ms as f64 / 1000.0)],
            ),
            // PostgreSQL has no cast that fails softly: `::timestamptz` on one garbage value
            // would abort the whole read. Text is compared bytewise (`COLLATE "C"`):
            // - against the cutoff minus the widest zone offset, written with a space, which sorts
            //   below the `T` shape of the same day: a superset of the window, never a miss;
            // - and, for the two UTC shapes the platform writes most (`…T…Z` and `datetime()`'s
            //   `YYYY-MM-DD HH:MM:SS`, fractions allowed), against the exact cutoff in that
            //   shape, so those rows are not read 14 h early (at L that halved the rows read).
            // Text sorting below `1970` (epoch numbers, …) is fetched for Rust to parse.
            (Dialect::Postgres, TimeColumn::Text) => {
                let c = format!("{column} COLLATE \"C\"");
                (
                    format!(
                        "{column} IS NOT NULL AND ({c} < '1970' OR ({c} >= ? \
                         AND ({c} >= ? OR {column} !~ '{ISO_Z}') \
                         AND ({c} >= ? OR {column} !~ '{SPACED}')))"
                    ),
                    vec![
                        Cell::Text(text_floor(cutoff_ms)),
                        Cell::Text(utc_text(cutoff_ms, 'T')),
                        Cell::Text(utc_text(cutoff_ms, ' ')),
                    ],
                )
            }
            (Dialect::Postgres, TimeColumn::Other) => (format!("{column} IS NOT NULL"), vec![]),
        }
    }

    /// A cheap text prefilter `column` must pass before [`Dialect::time_at_least`] (`None`
    /// when the column is not text): rows sorting as a date-time before `floor` are too old.
    ///
    /// On PostgreSQL the comparisons are bytewise: under `C`, or under `range_collation` when
    /// an index on the column orders bytewise under that name (`default` on a C-collated
    /// database), so that each of the three conditions is a range of that index and the
    /// planner can combine them (`BitmapOr`) instead of scanning the history.
    pub(super) fn text_prefilter(
        self,
        column: &str,
        kind: TimeColumn,
        range_collation: Option<&str>,
    ) -> Option<String> {
        match (self, kind) {
            (Dialect::Sqlite, _) => Some(format!(
                "({column} >= ? OR {column} < '1970-01-01' OR {column} IS NULL)"
            )),
            (Dialect::Postgres, TimeColumn::Text) => {
                let collation = range_collation.filter(|c| !c.is_empty()).unwrap_or("C");
                let c = format!("{column} COLLATE \"{collation}\"");
                Some(format!(
                    "({c} >= ? OR {c} < '1970-01-01' OR {column} IS NULL)"
                ))
            }
            (Dialect::Postgres, _) => None,
        }
    }

    /// `a = b` for two agent-name columns. PostgreSQL refuses `=` between, say, `text` and
    /// `uuid`, so both sides are compared as their text (the form the readers carry).
    pub(super) fn names_equal(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{a} = {b}"),
            Dialect::Postgres => format!("CAST({a} AS TEXT) = CAST({b} AS TEXT)"),
        }
    }
}

/// Converts a unix-ms cutoff into the Julian day number SQLite's `julianday()` compares against.
fn julian_day(ms: i64) -> f64 {
    ms as f64 / 86_400_000.0 + 2_440_587.5
}

/// `…T…Z` with optional fraction: a UTC instant whose text sorts like the instant. (No `?` in
/// these patterns: the PostgreSQL reader takes every `?` for a placeholder.)
const ISO_Z: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+){0,1}Z$";
/// `YYYY-MM-DD HH:MM:SS` with optional fraction and no zone: UTC (DESIGN §4).
const SPACED: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+){0,1}$";

/// `cutoff_ms` as `YYYY-MM-DD<sep>HH:MM:SS` (UTC, whole seconds, floored): a value of the same
/// shape sorts at or above it exactly when its instant is at or after the cutoff's second. Out
/// of chrono's range: `0`, below every date-time text (no floor).
pub(super) fn utc_text(cutoff_ms: i64, sep: char) -> String {
    chrono::DateTime::from_timestamp_millis(cutoff_ms)
        .map(|t| t.format(&format!("%Y-%m-%d{sep}%H:%M:%S")).to_string())
        .unwrap_or_else(|| "0".to_owned())
}

/// `YYYY-MM-DD HH:MM:SS` fourteen hours (the widest zone offset the timestamp parser reads,
/// [`MAX_OFFSET_SECONDS`]) before `cutoff_ms`, in UTC: no text the parser reads as an instant at
/// or after the cutoff sorts below it. Such text starts with a zero-padded `YYYY-MM-DD`, then
/// `T`, `t` or a space (which sorts lowest), and shows local time at an offset of at most
/// ±14:00, so its date and time are after the floor's; a shorter text equal to the floor's
/// prefix (`…-DD`, `… HH:MM`) is the floor's own instant or earlier, which no offset brings into
/// the window. Both backends' text windows start here (the executions' recent-terminal
/// prefilter, and on PostgreSQL every text time window).
pub(super) fn text_floor(cutoff_ms: i64) -> String {
    utc_text(
        cutoff_ms.saturating_sub(i64::from(MAX_OFFSET_SECONDS) * 1000),
        ' ',
    )
}

/// The connection a [`Reader`] runs statements on.
pub(super) enum Conn<'c> {
    /// A read-only, `query_only` SQLite connection (`sqlite::open_read_only`).
    Sqlite(&'c rusqlite::Connection),
    /// A PostgreSQL session opened by `postgres::connect` (read-only transactions only).
    Postgres(&'c mut ::postgres::Client),
}

/// A connection wrapper that counts every statement it runs and every row they return.
pub(super) struct Reader<'c> {
    conn: Conn<'c>,
    statements: u32,
    rows: u64,
    /// When set, each query's plan is asked for first and kept here with its SQL (tests assert
    /// the plans: no statement scans the history table when the platform has its indexes).
    plans: Option<Vec<StatementPlan>>,
}

/// One statement a collection ran and the database's plan for it, one line per plan node
/// (`EXPLAIN QUERY PLAN` details on SQLite, `EXPLAIN` lines on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPlan {
    /// What the statement was for (its step name in errors).
    pub step: &'static str,
    /// The statement, with `?` placeholders.
    pub sql: String,
    /// The plan lines.
    pub plan: Vec<String>,
}

impl<'c> Reader<'c> {
    /// A wrapper around `conn` that has run nothing yet.
    pub(super) fn new(conn: Conn<'c>) -> Reader<'c> {
        Reader {
            conn,
            statements: 0,
            rows: 0,
            plans: None,
        }
    }

    /// A reader that also records the plan of every query it runs (tests only: one extra
    /// statement per query, not counted).
    pub(super) fn explaining(conn: Conn<'c>) -> Reader<'c> {
        Reader {
            plans: Some(Vec::new()),
            ..Reader::new(conn)
        }
    }

    /// Rows returned so far by the queries (the cost the platform pays, beside the statements).
    pub(super) fn rows_read(&self) -> u64 {
        self.rows
    }

    /// The plans recorded by an [`Reader::explaining`] reader (empty otherwise).
    pub(super) fn take_plans(&mut self) -> Vec<StatementPlan> {
        self.plans.take().unwrap_or_default()
    }

    /// The engine behind the connection.
    pub(super) fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Statements run so far.
    pub(super) fn statements(&self) -> u32 {
        self.statements
    }

    fn batch(&mut self, sql: &str, step: &'static str) -> Result<(), SqlError> {
        self.statements += 1;
        match &mut self.conn {
            Conn::Sqlite(conn) => conn
                .execute_batch(sql)
                .map_err(|source| SqlError::Query { step, source }),
            Conn::Postgres(client) => client
                .batch_execute(sql)
                .map_err(|e| SqlError::postgres(step, &e)),
        }
    }

    /// Runs one statement with `params` bound to its `?` placeholders, in order; every row.
    pub(super) fn rows(
        &mut self,
        sql: &str,
        params: &[Cell],
        step: &'static str,
    ) -> Result<Vec<Vec<Cell>>, SqlError> {
        self.record_plan(sql, params, step)?;
        self.statements += 1;
        let rows = match &mut self.conn {
            Conn::Sqlite(conn) => {
                sqlite_rows(conn, sql, params).map_err(|source| SqlError::Query { step, source })
            }
            Conn::Postgres(client) => postgres::rows(client, sql, params, step),
        }?;
        self.rows += rows.len() as u64;
        Ok(rows)
    }

    /// Runs one statement like [`Reader::rows`], handing each row's first `N` cells to `row` as
    /// it arrives (`NULL` for any the row lacks), borrowed from the driver: nothing is copied
    /// unless `row` keeps it, and the rows are never all held at once. Returns the row count.
    ///
    /// At L the executions and schedules reads return ~115 000 rows; collecting them as owned
    /// cells first cost one allocation per text cell (timestamps included, parsed and dropped)
    /// and a second copy of every kept id and name (benches/RESULTS.md).
    pub(super) fn each_row<const N: usize>(
        &mut self,
        sql: &str,
        params: &[Cell],
        step: &'static str,
        mut row: impl FnMut([CellRef<'_>; N]),
    ) -> Result<u64, SqlError> {
        self.record_plan(sql, params, step)?;
        self.statements += 1;
        let count = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite_each_row(conn, sql, params, &mut row)
                .map_err(|source| SqlError::Query { step, source }),
            Conn::Postgres(client) => postgres::each_row(client, sql, params, step, &mut row),
        }?;
        self.rows += count;
        Ok(count)
    }

    /// Asks for and keeps the plan of `sql` when this reader records plans (tests only).
    fn record_plan(
        &mut self,
        sql: &str,
        params: &[Cell],
        step: &'static str,
    ) -> Result<(), SqlError> {
        if self.plans.is_some() {
            let plan = self.explain(sql, params, step)?;
            if let Some(plans) = self.plans.as_mut() {
                plans.push(StatementPlan {
                    step,
                    sql: sql.to_owned(),
                    plan,
                });
            }
        }
        Ok(())
    }

    /// The database's plan for `sql` with `params`, one line per node.
    fn explain(
        &mut self,
        sql: &str,
        params: &[Cell],
        step: &'static str,
    ) -> Result<Vec<String>, SqlError> {
        let (explain, column) = match self.conn {
            // Columns: id, parent, notused, detail.
            Conn::Sqlite(_) => (format!("EXPLAIN QUERY PLAN {sql}"), 3),
            Conn::Postgres(_) => (format!("EXPLAIN {sql}"), 0),
        };
        let rows = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite_rows(conn, &explain, params)
                .map_err(|source| SqlError::Query { step, source })?,
            Conn::Postgres(client) => postgres::rows(client, &explain, params, step)?,
        };
        Ok(rows
            .into_iter()
            .map(|row| match row.into_iter().nth(column) {
                Some(Cell::Text(t)) => t,
                other => format!("{other:?}"),
            })
            .collect())
    }

    /// Runs `body` inside one read transaction so every query sees the same database state.
    pub(super) fn in_read_transaction<T>(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        self.batch(self.dialect().begin(), "begin read transaction")?;
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

fn sqlite_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Cell],
) -> rusqlite::Result<Vec<Vec<Cell>>> {
    let mut stmt = conn.prepare(sql)?;
    let width = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let cells = (0..width)
            .map(|i| sqlite_cell(row, i).map(CellRef::to_cell))
            .collect::<rusqlite::Result<Vec<Cell>>>()?;
        out.push(cells);
    }
    Ok(out)
}

fn sqlite_each_row<const N: usize>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Cell],
    row: &mut impl FnMut([CellRef<'_>; N]),
) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare(sql)?;
    let width = stmt.column_count().min(N);
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut count = 0;
    while let Some(r) = rows.next()? {
        let mut cells = [CellRef::Null; N];
        for (i, cell) in cells.iter_mut().enumerate().take(width) {
            *cell = sqlite_cell(r, i)?;
        }
        row(cells);
        count += 1;
    }
    Ok(count)
}

/// Column `i` of `row`, borrowed. Text that is not UTF-8 is an error (rusqlite's own, naming
/// the column), never a lossy or garbled name.
fn sqlite_cell<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<CellRef<'r>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => CellRef::Null,
        ValueRef::Integer(v) => CellRef::Integer(v),
        ValueRef::Real(v) => CellRef::Real(v),
        ValueRef::Text(bytes) => {
            CellRef::Text(std::str::from_utf8(bytes).map_err(|e| rusqlite::Error::Utf8Error(i, e))?)
        }
        ValueRef::Blob(bytes) => CellRef::Blob(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn julian_day_of_epoch() {
        assert!((julian_day(0) - 2_440_587.5).abs() < 1e-9);
        assert!((julian_day(86_400_000) - 2_440_588.5).abs() < 1e-9);
    }

    #[test]
    fn the_text_floor_is_fourteen_hours_earlier_and_sorts_below_the_t_shape() {
        let cutoff = 1_768_384_800_000; // 2026-01-14T10:00:00Z
        let floor = text_floor(cutoff);
        assert_eq!(floor, "2026-01-13 20:00:00");
        // The same instant in the shapes platforms write all sort at or above the floor.
        for shape in [
            "2026-01-14T10:00:00Z",
            "2026-01-14 10:00:00",
            "2026-01-13T20:00:00-14:00",
            "2026-01-13 20:00:00.000001",
        ] {
            assert!(shape >= floor.as_str(), "{shape}");
        }
        assert!("2026-01-13 19:59:59" < floor.as_str());
        assert_eq!(text_floor(i64::MIN), "0");
    }

    /// Every calendar shape the parser reads, at every offset it accepts, for instants from the
    /// cutoff onwards (the window and just after it): the text sorts at or above the floor, so
    /// no text window drops a row of the window. And the floor is not looser than it needs to
    /// be: `datetime()`'s shape fourteen hours and a second before the cutoff is below it.
    #[test]
    fn no_text_of_an_instant_in_the_window_sorts_below_the_floor() {
        use crate::collect::timestamp::parse_timestamp_ms;
        use chrono::{DateTime, FixedOffset};

        let cutoff: i64 = 1_764_540_000_000 + 123; // 2025-11-30T22:00:00.123Z
        let floor = text_floor(cutoff);
        let widest = MAX_OFFSET_SECONDS / 60;
        let offsets = (-widest..=widest).step_by(7).map(|m| m * 60);
        let mut checked = 0;
        for offset_s in offsets.chain([-MAX_OFFSET_SECONDS, MAX_OFFSET_SECONDS]) {
            let zone = FixedOffset::east_opt(offset_s).expect("offset in range");
            for ahead_ms in [0, 1, 999, 1_000, 59_999, 3_600_000, 35 * 60_000, 86_400_000] {
                let instant = cutoff + ahead_ms;
                let local = DateTime::from_timestamp_millis(instant)
                    .expect("in range")
                    .with_timezone(&zone);
                let utc = local.naive_utc();
                let texts = [
                    local.format("%Y-%m-%dT%H:%M:%S%.f%:z").to_string(),
                    local.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
                    local.format("%Y-%m-%dt%H:%M:%S%.3f%:z").to_string(),
                    local.format("%Y-%m-%dT%H:%M%:z").to_string(),
                    local.format("%Y-%m-%d %H:%M:%S%:z").to_string(),
                    utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    utc.format("%Y-%m-%d %H:%M:%S").to_string(),
                    utc.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                    utc.format("%Y-%m-%d %H:%M").to_string(),
                    utc.format("%Y-%m-%d").to_string(),
                ];
                for text in texts {
                    let ms = parse_timestamp_ms(&text).expect("every shape here parses");
                    if ms < cutoff - 1_000 * 60 {
                        continue; // a shape that truncates (minutes, dates): not in the window
                    }
                    assert!(text.as_str() >= floor.as_str(), "{text} < {floor}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
        let just_below =
            DateTime::from_timestamp_millis(cutoff - i64::from(MAX_OFFSET_SECONDS) * 1000 - 1_000)
                .expect("in range")
                .naive_utc();
        assert!(just_below.format("%Y-%m-%d %H:%M:%S").to_string() < floor);
    }

    /// Every `?` of a comparison is one of its parameters (the PostgreSQL reader inlines them
    /// by position, so a `?` inside a literal would shift them all).
    #[test]
    fn placeholders_match_parameters_in_every_dialect_and_kind() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for kind in [TimeColumn::Text, TimeColumn::Native, TimeColumn::Other] {
                let (sql, params) = dialect.time_at_least("\"c\"", kind, 1_768_384_800_000);
                assert_eq!(
                    sql.matches('?').count(),
                    params.len(),
                    "{dialect:?} {kind:?}: {sql}"
                );
                for collation in [None, Some("default")] {
                    if let Some(pre) = dialect.text_prefilter("\"c\"", kind, collation) {
                        assert_eq!(pre.matches('?').count(), 1, "{pre}");
                    }
                }
            }
        }
    }

    /// The exact arms: a UTC shape at or after the cutoff's second sorts at or above the cutoff
    /// text, an earlier one below it (fractions included).
    #[test]
    fn utc_shapes_compare_exactly_against_the_cutoff_text() {
        let cutoff = 1_768_384_800_500; // 2026-01-14T10:00:00.5Z
        let t = utc_text(cutoff, 'T');
        let space = utc_text(cutoff, ' ');
        assert_eq!(
            (t.as_str(), space.as_str()),
            ("2026-01-14T10:00:00", "2026-01-14 10:00:00")
        );
        assert!("2026-01-14T10:00:00Z" >= t.as_str());
        assert!("2026-01-14T10:00:00.000001Z" >= t.as_str());
        assert!("2026-01-14T09:59:59.999Z" < t.as_str());
        assert!("2026-01-14 10:00:00" >= space.as_str());
        assert!("2026-01-14 09:59:59.9" < space.as_str());
    }
}
