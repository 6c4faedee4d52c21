//! The synthetic platform's database writer, one type for both engines the platform runs on:
//! [`PlatformDb`] is a SQLite connection or a PostgreSQL client, and every fleet write (the
//! simulator, the fault recipes, provisioning, `--seed-only`) goes through it.
//!
//! What it owns:
//! - the statement text: writers use SQLite's `?N` placeholders and dialect-neutral SQL
//!   (`ON CONFLICT … DO NOTHING/UPDATE`, no `datetime('now')`); for PostgreSQL `?N` becomes `$N`
//!   ([`to_dollar`]). The few fragments with no neutral form come from [`Dialect`];
//! - the values: [`Param`] (`params!` builds a slice of them) binds on both drivers. On
//!   PostgreSQL it adapts to the type the server inferred for the placeholder, so one writer
//!   fills both fixture schemas: a timestamp string binds as `text` into a text column and as a
//!   parsed instant into a `timestamptz` column; `0`/`1` bind as `boolean` into a boolean flag;
//! - the PostgreSQL connection's thread: the sync `postgres` client drives its own runtime, which
//!   panics on a thread that already drives async tasks (the simulator's, the demo's), so the
//!   client lives on a dedicated thread and calls are sent to it (blocking the caller briefly,
//!   exactly as a SQLite write does).
//!
//! It must not log or return a database URL (it may carry a password), and it must only ever
//! target a platform the operator named (`canary fleet`) or one canary created (demo, tests).
//! It connects without TLS (`sslmode` disable or prefer; the reader in `collect::sql::postgres`
//! does TLS): a synthetic load belongs on a test platform reached over loopback or a private
//! network, not on production.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::config::Secret;
use crate::fleet::platform::{FleetError, SCHEMA};

/// The PostgreSQL twin of the SQLite fixture: text timestamps, integer flags.
pub const PG_SCHEMA: &str = include_str!("../../tests/fixtures/platform.pg.sql");
/// The PostgreSQL fixture with `timestamptz` timestamps and `boolean` flags.
pub const PG_TYPED_SCHEMA: &str = include_str!("../../tests/fixtures/platform.pg-typed.sql");
/// The platform's own indexes on `schedule_executions` that the schema files create (queued rows
/// per agent, starts per agent, terminal rows by completion): what `--bare-indexes` drops.
pub const PLATFORM_HISTORY_INDEXES: [&str; 3] = [
    "idx_executions_queued",
    "idx_executions_agent_started",
    "idx_executions_completed",
];

/// How long a SQLite writer waits for the write lock (the watcher's reads and the fault injector
/// share the file).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting to a PostgreSQL platform may take.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per multi-row `INSERT` on PostgreSQL (below the protocol's 65 535 parameters).
const PG_ROWS_PER_INSERT: usize = 1_000;

/// Which platform database to write.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformTarget {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (the URL is a secret: it may carry a password).
    Postgres(Secret),
}

impl PlatformTarget {
    /// A PostgreSQL target from its URL.
    pub fn postgres(url: impl Into<String>) -> PlatformTarget {
        PlatformTarget::Postgres(Secret::new(url))
    }

    /// What to call it in messages: the file's path, never the URL.
    pub fn describe(&self) -> String {
        match self {
            PlatformTarget::Sqlite(path) => path.display().to_string(),
            PlatformTarget::Postgres(_) => "the named PostgreSQL database".to_owned(),
        }
    }
}

impl From<&Path> for PlatformTarget {
    fn from(path: &Path) -> PlatformTarget {
        PlatformTarget::Sqlite(path.to_path_buf())
    }
}

impl From<&PathBuf> for PlatformTarget {
    fn from(path: &PathBuf) -> PlatformTarget {
        PlatformTarget::Sqlite(path.clone())
    }
}

impl From<PathBuf> for PlatformTarget {
    fn from(path: PathBuf) -> PlatformTarget {
        PlatformTarget::Sqlite(path)
    }
}

impl From<&PlatformTarget> for PlatformTarget {
    fn from(target: &PlatformTarget) -> PlatformTarget {
        target.clone()
    }
}

/// The SQL dialect of a [`PlatformDb`], for the few fragments that have no neutral form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// Milliseconds from timestamp expression `from` to `to` (either may be a column holding
    /// any of the platform's text shapes, a `timestamptz` column, or a `?N` placeholder), as an
    /// integer.
    pub fn elapsed_ms(self, from: &str, to: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("CAST((julianday({to}) - julianday({from})) * 86400000 AS INTEGER)")
            }
            // The session's time zone is UTC, so zone-less text reads as UTC, as on SQLite.
            Dialect::Postgres => format!(
                "CAST(EXTRACT(EPOCH FROM (CAST({to} AS timestamptz) - \
                 CAST({from} AS timestamptz))) * 1000 AS bigint)"
            ),
        }
    }
}

/// One value bound to a placeholder. Text is borrowed where the writer has it (`params!` over a
/// hot insert loop allocates nothing) and owned only when it must cross to the PostgreSQL
/// client's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer (also a 0/1 flag).
    Int(i64),
    /// Text (also a timestamp in one of the platform's shapes).
    Text(Cow<'a, str>),
}

impl Param<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> Param<'static> {
        match self {
            Param::Null => Param::Null,
            Param::Int(v) => Param::Int(v),
            Param::Text(s) => Param::Text(Cow::Owned(s.into_owned())),
        }
    }
}

/// Owned copies of `params`, to send to the PostgreSQL client's thread.
fn owned(params: &[Param<'_>]) -> Vec<Param<'static>> {
    params.iter().cloned().map(Param::into_owned).collect()
}

/// Converts a writer's value into a [`Param`] (what `params!` calls on each argument).
pub trait ToParam {
    /// The value as a [`Param`] (borrowing its text).
    fn to_param(&self) -> Param<'_>;
}

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(Cow::Borrowed(self))
    }
}

impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(Cow::Borrowed(self.as_str()))
    }
}

impl ToParam for i64 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}

impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for Param<'_> {
    fn to_param(&self) -> Param<'_> {
        self.clone()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

/// `params![a, b, …]`: a `&[Param]` for [`PlatformDb::execute`], like rusqlite's `params!`.
macro_rules! params {
    () => { &[] as &[$crate::fleet::platform_db::Param] };
    ($($x:expr),+ $(,)?) => {
        &[$($crate::fleet::platform_db::ToParam::to_param(&$x)),+]
            as &[$crate::fleet::platform_db::Param<'_>]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Param::Null => ToSqlOutput::Owned(Value::Null),
            Param::Int(v) => ToSqlOutput::from(*v),
            Param::Text(s) => ToSqlOutput::from(s.as_ref()),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    /// Binds as the type the server inferred for the placeholder (see the module docs).
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => int_to_sql(*v, ty, out),
            Param::Text(s) => match *ty {
                Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT8 => {
                    let v = match s.as_ref() {
                        "true" | "t" => 1,
                        "false" | "f" => 0,
                        other => other.parse::<i64>()?,
                    };
                    int_to_sql(v, ty, out)
                }
                Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                    let ms = crate::collect::timestamp::parse_timestamp_ms(s)
                        .ok_or_else(|| format!("not a timestamp: {s:?}"))?;
                    let at = if ms >= 0 {
                        std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))
                    } else {
                        std::time::UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
                    }
                    .ok_or("timestamp out of range")?;
                    at.to_sql(ty, out)
                }
                _ => s.as_ref().to_sql(ty, out),
            },
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT8
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }

    to_sql_checked!();
}

fn int_to_sql(v: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    match *ty {
        Type::BOOL => (v != 0).to_sql(ty, out),
        Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
        Type::INT8 => v.to_sql(ty, out),
        Type::FLOAT8 => (v as f64).to_sql(ty, out),
        _ => v.to_string().as_str().to_sql(ty, out),
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (outside quoted literals).
pub fn to_dollar(sql: &str) -> String {
    renumber(sql, 0)
}

/// `?N` → `$(N + offset)`, outside quoted literals.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            continue;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push('$');
            out.push_str(&(n + offset).to_string());
            continue;
        }
        out.push(c);
    }
    out
}

/// The highest `?N` in `sql`.
fn arity(sql: &str) -> usize {
    let mut max = 0;
    let mut rest = sql;
    while let Some(i) = rest.find('?') {
        rest = rest.get(i + 1..).unwrap_or("");
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<usize>() {
            max = max.max(n);
        }
    }
    max
}

type Job = Box<dyn FnOnce(&mut postgres::Client) + Send>;

/// A PostgreSQL client living on its own thread (see the module docs).
pub struct PgConn {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

impl PgConn {
    fn connect(url: &Secret) -> Result<PgConn, FleetError> {
        let mut config: postgres::Config = url.expose().parse()?;
        config
            .application_name("canary-fleet")
            .connect_timeout(PG_CONNECT_TIMEOUT);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), postgres::Error>>();
        let thread = std::thread::Builder::new()
            .name("platform-pg".to_owned())
            .spawn(move || {
                let connected = config.connect(postgres::NoTls).and_then(|mut client| {
                    // Zone-less timestamp text reads as UTC, as the platform means it.
                    client.batch_execute("SET TIME ZONE 'UTC'")?;
                    Ok(client)
                });
                let mut client = match connected {
                    Ok(client) => {
                        let _ = ready_tx.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut client);
                }
            })
            .map_err(|e| FleetError::Setup(format!("spawning the postgres writer thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(PgConn {
                jobs: Some(jobs),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.into())
            }
            Err(_) => Err(FleetError::Setup(
                "the postgres writer thread ended while connecting".to_owned(),
            )),
        }
    }

    /// Runs `f` on the client's thread and returns its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, FleetError> {
        let gone = || FleetError::Setup("the postgres writer thread is gone".to_owned());
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(f(client));
        });
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        Ok(answer.recv().map_err(|_| gone())??)
    }

    fn execute(&self, sql: String, params: Vec<Param<'static>>) -> Result<u64, FleetError> {
        self.call(move |client| {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(sql.as_str(), &refs)
        })
    }

    fn batch(&self, sql: String) -> Result<(), FleetError> {
        self.call(move |client| client.batch_execute(&sql))
    }

    fn query_text(
        &self,
        sql: String,
        params: Vec<Param<'static>>,
    ) -> Result<Option<String>, FleetError> {
        self.call(move |client| {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let row = client.query_opt(sql.as_str(), &refs)?;
            // `try_get`: a non-text first column is an error, never a panic.
            Ok(row
                .map(|r| r.try_get::<_, Option<String>>(0))
                .transpose()?
                .flatten())
        })
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop; the client disconnects as it drops.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A writable platform database (see the module docs).
#[derive(Debug)]
pub enum PlatformDb {
    /// A SQLite file.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL database.
    Postgres(PgConn),
}

impl PlatformDb {
    /// Opens `target` for writing. With `init`, creates the schema when absent (a SQLite file is
    /// created too, in WAL mode); without it, the roster table must exist.
    pub fn open(target: &PlatformTarget, init: bool) -> Result<PlatformDb, FleetError> {
        let db = match target {
            PlatformTarget::Sqlite(path) => {
                let existed = path.exists();
                if !existed && !init {
                    return Err(FleetError::Setup(format!(
                        "{} does not exist (pass --init to create a platform database there)",
                        path.display()
                    )));
                }
                let db = rusqlite::Connection::open(path)?;
                db.busy_timeout(BUSY_TIMEOUT)?;
                if init && !existed {
                    // WAL lets canary's read transaction run beside the fleet's writes, as on a
                    // real platform; only for a file this process created (an operator's file
                    // keeps its mode).
                    db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
                }
                PlatformDb::Sqlite(db)
            }
            PlatformTarget::Postgres(url) => PlatformDb::Postgres(PgConn::connect(url)?),
        };
        if init {
            db.create_schema()?;
        } else if !db.has_table("agent_ownership")? {
            return Err(FleetError::Setup(format!(
                "{} has no agent_ownership table (pass --init to create the schema)",
                target.describe()
            )));
        }
        Ok(db)
    }

    /// Creates the platform schema when absent (idempotent): the SQLite fixture, or its
    /// PostgreSQL twin with text timestamps.
    pub fn create_schema(&self) -> Result<(), FleetError> {
        match self {
            PlatformDb::Sqlite(_) => self.batch(SCHEMA),
            PlatformDb::Postgres(_) => self.batch(PG_SCHEMA),
        }
    }

    /// Drops the platform's own history indexes ([`PLATFORM_HISTORY_INDEXES`]) the schema
    /// creates, for a dataset shaped like a platform without them (`--seed-only
    /// --bare-indexes`: the graceful-degradation bench).
    pub fn drop_history_indexes(&self) -> Result<(), FleetError> {
        for name in PLATFORM_HISTORY_INDEXES {
            self.batch(&format!("DROP INDEX IF EXISTS {name}"))?;
        }
        Ok(())
    }

    /// Whether table `name` exists (in the connection's search path).
    pub fn has_table(&self, name: &str) -> Result<bool, FleetError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            Dialect::Postgres => "SELECT CAST(to_regclass(?1) AS text)",
        };
        Ok(self.query_text(sql, params![name])?.is_some())
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            PlatformDb::Sqlite(_) => Dialect::Sqlite,
            PlatformDb::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection (test-specific edits); `None` on PostgreSQL.
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            PlatformDb::Sqlite(db) => Some(db),
            PlatformDb::Postgres(_) => None,
        }
    }

    /// Runs one statement with `?N` placeholders; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, FleetError> {
        match self {
            PlatformDb::Sqlite(db) => {
                Ok(db.execute(sql, rusqlite::params_from_iter(params.iter()))? as u64)
            }
            PlatformDb::Postgres(pg) => pg.execute(to_dollar(sql), owned(params)),
        }
    }

    /// Runs statements without parameters or results (schema, renames).
    pub fn batch(&self, sql: &str) -> Result<(), FleetError> {
        match self {
            PlatformDb::Sqlite(db) => Ok(db.execute_batch(sql)?),
            PlatformDb::Postgres(pg) => pg.batch(sql.to_owned()),
        }
    }

    /// The first column of the first row as text (`None`: no row, or NULL).
    pub fn query_text(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<String>, FleetError> {
        match self {
            PlatformDb::Sqlite(db) => {
                let mut stmt = db.prepare(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                match rows.next()? {
                    Some(row) => Ok(row.get::<_, Option<String>>(0)?),
                    None => Ok(None),
                }
            }
            PlatformDb::Postgres(pg) => pg.query_text(to_dollar(sql), owned(params)),
        }
    }

    /// Begins a transaction; it commits with [`Tx::commit`] and rolls back when dropped
    /// uncommitted.
    pub fn begin(&self) -> Result<Tx<'_>, FleetError> {
        self.batch("BEGIN")?;
        Ok(Tx {
            db: self,
            done: false,
        })
    }

    /// A bulk writer for one `INSERT … VALUES (?1, …)` statement: a prepared statement on
    /// SQLite, multi-row `INSERT`s of `PG_ROWS_PER_INSERT` rows on PostgreSQL. Call
    /// [`Inserter::finish`] to write the last rows.
    pub fn inserter(&self, sql: &str) -> Result<Inserter<'_>, FleetError> {
        match self {
            PlatformDb::Sqlite(db) => Ok(Inserter::Sqlite(db.prepare(sql)?)),
            PlatformDb::Postgres(pg) => {
                let at = sql.rfind("VALUES").ok_or_else(|| {
                    FleetError::Setup("a bulk insert needs a VALUES clause".to_owned())
                })?;
                let (head, tuple) = sql.split_at(at);
                let tuple = tuple.trim_start_matches("VALUES").trim().to_owned();
                let arity = arity(&tuple).max(1);
                Ok(Inserter::Postgres {
                    conn: pg,
                    head: format!("{head}VALUES "),
                    tuple,
                    arity,
                    pending: Vec::new(),
                })
            }
        }
    }
}

/// An open transaction on a [`PlatformDb`] (derefs to it).
#[derive(Debug)]
pub struct Tx<'a> {
    db: &'a PlatformDb,
    done: bool,
}

impl Tx<'_> {
    /// Commits.
    pub fn commit(mut self) -> Result<(), FleetError> {
        self.done = true;
        self.db.batch("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = PlatformDb;
    fn deref(&self) -> &PlatformDb {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing to report to: the error that abandoned the transaction is on its way.
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

/// A bulk writer (see [`PlatformDb::inserter`]).
#[derive(Debug)]
pub enum Inserter<'a> {
    /// One prepared statement.
    Sqlite(rusqlite::Statement<'a>),
    /// Rows buffered into multi-row `INSERT`s.
    Postgres {
        /// The writer thread.
        conn: &'a PgConn,
        /// `INSERT INTO t (…) VALUES `.
        head: String,
        /// `(?1, ?2, 'literal', …)`.
        tuple: String,
        /// Parameters per row.
        arity: usize,
        /// Buffered rows' parameters.
        pending: Vec<Param<'static>>,
    },
}

impl Inserter<'_> {
    /// Writes (or buffers) one row.
    pub fn row(&mut self, params: &[Param<'_>]) -> Result<(), FleetError> {
        match self {
            Inserter::Sqlite(stmt) => {
                stmt.execute(rusqlite::params_from_iter(params.iter()))?;
                Ok(())
            }
            Inserter::Postgres { pending, arity, .. } => {
                pending.extend(params.iter().cloned().map(Param::into_owned));
                if pending.len() >= *arity * PG_ROWS_PER_INSERT {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), FleetError> {
        let Inserter::Postgres {
            conn,
            head,
            tuple,
            arity,
            pending,
        } = self
        else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let rows = pending.len() / *arity;
        let mut sql = head.clone();
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&renumber(tuple, r * *arity));
        }
        conn.execute(sql, std::mem::take(pending))?;
        Ok(())
    }

    /// Writes the buffered rows.
    pub fn finish(mut self) -> Result<(), FleetError> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            to_dollar("UPDATE t SET a = ?2, b = '?1' WHERE id = ?1 AND c = ?12"),
            "UPDATE t SET a = $2, b = '?1' WHERE id = $1 AND c = $12"
        );
        assert_eq!(renumber("(?1, 'x', ?2)", 4), "($5, 'x', $6)");
        assert_eq!(arity("(?1, ?3, 'nightly', ?2)"), 3);
    }

    #[test]
    fn params_take_what_writers_pass() {
        let name = String::from("a");
        let p = params![name, "b", 3_i64, None::<&str>, Some(4_i64), true];
        assert_eq!(
            p,
            [
                Param::Text("a".into()),
                Param::Text("b".into()),
                Param::Int(3),
                Param::Null,
                Param::Int(4),
                Param::Int(1)
            ]
        );
    }

    #[test]
    fn a_failed_connection_names_the_cause_not_the_url() {
        // Nothing listens on port 1.
        let target = PlatformTarget::postgres("postgres://canary:hunter2@127.0.0.1:1/platform");
        let err = PlatformDb::open(&target, false)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("error connecting to server"), "{err}");
        assert!(
            !err.contains("hunter2") && !err.contains("127.0.0.1:1"),
            "{err}"
        );
        let bad = PlatformTarget::postgres("postgres://canary:hunter2@127.0.0.1:notaport/x");
        let err = PlatformDb::open(&bad, false)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid connection string"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_postgres_target_never_shows_its_url() {
        let t = PlatformTarget::postgres("postgres://u:hunter2@db/x");
        assert!(!t.describe().contains("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
