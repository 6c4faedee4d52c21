//! canary's own state database (DESIGN §6): open + migrate, the one-transaction
//! [`StateDb::record_cycle`], the history queries behind the CLI and the admin API, retention,
//! the alert outbox and the cross-process single-flight lease (DESIGN §2).
//!
//! One [`StateDb`] is one SQLite connection (WAL, `synchronous=NORMAL`, foreign keys on, 5 s
//! busy timeout). Several handles — in one process or several — may point at the same file:
//! WAL lets readers run beside the single writer, and every write transaction is taken
//! `IMMEDIATE` so two writers queue on the busy timeout instead of failing with a lock-upgrade
//! deadlock halfway through.
//!
//! All times are unix milliseconds (`i64`), both in the API and in the tables.
//!
//! Submodules: [`error`](StoreError), `record` (cycle writes, state and memory loads), `history`
//! (read-only queries), `overview` (the status page's bounded summaries), `retention` (prune),
//! `outbox` (deliverer queries), `lease` (single-flight),
//! `silences` (operator silences, and what a cycle reads of them in its transaction),
//! [`blocking`] ([`SharedDb`]: how async code calls all of the above without blocking a tokio
//! worker).

pub mod blocking;
mod codec;
mod error;
mod history;
pub mod holder;
mod lease;
mod outbox;
mod overview;
mod record;
mod retention;
mod silences;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

pub use blocking::SharedDb;
pub use error::StoreError;
pub use history::{MAX_PAGE, StoredCycle, StoredViolation, ViolationQuery, ViolationStat};
pub use lease::{Lease, LeaseName};
pub use outbox::{OutboxDepth, OutboxRow};
pub use overview::{CycleBucket, Delivery, RecentTransition};
pub use record::{
    AlertContext, AlertPlan, AlertPlanner, ClosedEpisode, CycleRecord, EpisodeWrites, PlannedAlert,
    RecordedAlerts, RecordedCycle, Release, tally,
};
pub use retention::{PRUNE_BATCH_CYCLES, PruneStats};
pub use silences::{Expired, NewSilence, Pending, Silence, SilenceState};

/// How long a statement waits for another connection's write lock before failing with "busy".
/// Long enough to ride out a cycle's write transaction or one prune batch, short enough that a
/// wedged holder surfaces as an error instead of a hang.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, oldest first. `include_str!` makes cargo rebuild when a file changes.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/0001_initial.sql")),
    M::up(include_str!("../../migrations/0002_deliverer_lease.sql")),
    M::up(include_str!("../../migrations/0003_violation_episodes.sql")),
    M::up(include_str!("../../migrations/0004_silences.sql")),
    M::up(include_str!("../../migrations/0005_memory_zombies.sql")),
];

/// canary's state database: one SQLite connection.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating the file and its parent directories if missing) and migrates the state
    /// database at `path`.
    pub fn open(path: &Path) -> Result<StateDb, StoreError> {
        Self::open_writable(path).map_err(|e| on_read_only_fs(path, e))
    }

    fn open_writable(path: &Path) -> Result<StateDb, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            op: "open",
            source,
        })?;
        Self::configure(conn, path.to_path_buf(), true)
    }

    /// Opens an existing state database without writing to it: no migration, no WAL switch,
    /// `query_only` on (`check --no-persist` reads states and memory from it). A schema that is
    /// not exactly current is an error rather than a silent migration.
    pub fn open_read_only(path: &Path) -> Result<StateDb, StoreError> {
        Self::open_reader(path).map_err(|e| on_read_only_fs(path, e))
    }

    fn open_reader(path: &Path) -> Result<StateDb, StoreError> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open_err = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| StoreError::Open { path, op, source }
        };
        let conn = Connection::open_with_flags(path, flags).map_err(open_err("open read-only"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(open_err("busy_timeout"))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(open_err("query_only"))?;
        let db = StateDb {
            conn,
            path: path.to_path_buf(),
        };
        let version = db.schema_version()?;
        if usize::try_from(version).ok() != Some(MIGRATIONS.len()) {
            return Err(StoreError::Invalid {
                op: "open_read_only",
                reason: format!(
                    "schema version {version}, expected {}: run a persisting cycle to migrate",
                    MIGRATIONS.len()
                ),
            });
        }
        Ok(db)
    }

    /// A private, migrated in-memory database (tests, `check --no-persist`).
    pub fn open_in_memory() -> Result<StateDb, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            op: "open",
            source,
        })?;
        Self::configure(conn, path, false)
    }

    /// The file this handle was opened on (`:memory:` for in-memory databases).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The applied schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| StoreError::Sqlite {
                op: "schema_version",
                source,
            })?;
        codec::to_u32("schema_version", "pragma.user_version", v)
    }

    /// Proves the database accepts writes right now (for `/readyz`): takes the write lock and
    /// rolls back, so nothing changes.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|source| StoreError::Sqlite {
            op: "check_writable",
            source,
        })?;
        tx.rollback().map_err(|source| StoreError::Sqlite {
            op: "check_writable",
            source,
        })
    }

    fn configure(mut conn: Connection, path: PathBuf, file: bool) -> Result<StateDb, StoreError> {
        let open_err = |op: &'static str| {
            let path = path.clone();
            move |source| StoreError::Open { path, op, source }
        };
        // Busy timeout first: switching to WAL on a file another process is using needs a lock.
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(open_err("busy_timeout"))?;
        if file {
            // Switching a fresh file to WAL can fail with "busy" at once, without the busy
            // handler, while another opener is switching it too: retry within the timeout.
            let mode: String = retry_busy(|| {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            })
            .map_err(open_err("journal_mode=WAL"))?;
            // WAL can be refused (e.g. some network file systems); readers would then block the
            // cycle's writer, so refuse to run rather than degrade silently.
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Pragma {
                    path: path.clone(),
                    op: "journal_mode=WAL",
                    got: mode,
                });
            }
        }
        // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
        // last commits, which a monitor re-derives on its next cycle anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err("synchronous"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err("foreign_keys"))?;
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .map_err(open_err("foreign_keys"))?;
        if fk != 1 {
            return Err(StoreError::Pragma {
                path: path.clone(),
                op: "foreign_keys=ON",
                got: fk.to_string(),
            });
        }
        migrate(&mut conn, &path)?;
        tracing::debug!(state.path = %path.display(), "state database open");
        Ok(StateDb { conn, path })
    }
}

/// `error` from opening the state database at `path`, or [`StoreError::ReadOnlyFileSystem`] when
/// the file system holding it is mounted read-only (SQLite itself only says "unable to open
/// database file"). Probed only after a failure, with an unnamed temporary file in the nearest
/// existing directory (removed at once; nothing is left behind).
fn on_read_only_fs(path: &Path, error: StoreError) -> StoreError {
    if matches!(
        error,
        StoreError::Invalid { .. } | StoreError::Corrupt { .. }
    ) {
        return error;
    }
    let start = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(dir) = start.ancestors().find(|dir| dir.is_dir()) else {
        return error;
    };
    match tempfile::tempfile_in(dir) {
        Err(probe) if probe.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            StoreError::ReadOnlyFileSystem {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                source: Box::new(error),
            }
        }
        _ => error,
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let migrations = Migrations::from_slice(MIGRATIONS);
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let Err(error) = migrations.to_latest(conn) else {
            return Ok(());
        };
        // rusqlite_migration reads the version outside its transaction, so two processes
        // opening a fresh file together can both try to migrate; the loser fails on "table
        // exists" or a stale snapshot. If the schema is now current, that loss is success.
        if let Ok(0) = migrations.pending_migrations(conn) {
            tracing::debug!(%error, "migration raced with another opener; schema is current");
            return Ok(());
        }
        let busy = matches!(
            &error,
            rusqlite_migration::Error::RusqliteError { err, .. } if is_busy(err)
        );
        if !busy || Instant::now() >= deadline {
            return Err(StoreError::Migrate {
                path: path.to_path_buf(),
                source: error,
            });
        }
        std::thread::sleep(BUSY_RETRY_PAUSE);
    }
}

/// Pause between attempts of an operation SQLite refused with "busy" without waiting.
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(10);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` again while it fails with "busy", up to [`BUSY_TIMEOUT`]. Only for the few steps
/// where SQLite reports busy immediately instead of invoking the busy handler (journal-mode
/// changes, lock upgrades); ordinary statements already wait through the busy timeout.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(BUSY_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
    }

    #[test]
    fn in_memory_opens_at_latest_version() {
        let db = StateDb::open_in_memory().unwrap();
        assert_eq!(db.schema_version().unwrap() as usize, MIGRATIONS.len());
        db.check_writable().unwrap();
    }

    #[test]
    fn file_open_sets_pragmas_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.db");
        let db = StateDb::open(&path).unwrap();
        assert!(path.exists());
        assert_eq!(db.path(), path);
        let mode: String = db
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let fk: i64 = db
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let timeout: i64 = db
            .conn
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .unwrap();
        assert_eq!(timeout, 5000);
    }

    #[test]
    fn concurrent_first_opens_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || StateDb::open(&p).map(|db| db.schema_version()))
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.join().unwrap().unwrap().unwrap() as usize,
                MIGRATIONS.len()
            );
        }
    }

    #[test]
    fn a_database_from_the_future_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(StateDb::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", 99).unwrap();
        drop(raw);
        let err = StateDb::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Migrate { .. }), "{err}");
    }
}
