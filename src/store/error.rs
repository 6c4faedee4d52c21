//! [`StoreError`]: every way the state database can fail, each naming the operation that failed
//! so a log line or an API error says *what* canary was doing, not just "database is locked".

use std::path::PathBuf;

/// An error from the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The parent directory of the database file could not be created.
    #[error("state database: cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening or configuring the connection failed.
    #[error("state database {path}: {op}: {source}")]
    Open {
        /// The database file (`:memory:` for in-memory databases).
        path: PathBuf,
        /// What was being done (open, a pragma, ...).
        op: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A pragma did not take effect (e.g. WAL refused by the file system).
    #[error("state database {path}: {op}: got {got:?}")]
    Pragma {
        /// The database file.
        path: PathBuf,
        /// The pragma.
        op: &'static str,
        /// What SQLite reported back.
        got: String,
    },
    /// Applying the schema migrations failed.
    #[error("state database {path}: migration failed: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The migration error.
        source: rusqlite_migration::Error,
    },
    /// A statement failed.
    #[error("state database: {op}: {source}")]
    Sqlite {
        /// The operation, e.g. `record_cycle: insert violation`.
        op: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// Encoding or decoding a JSON column failed.
    #[error("state database: {op}: JSON: {source}")]
    Json {
        /// The operation.
        op: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A stored value is not one canary could have written (hand edit, newer schema, corruption).
    #[error("state database: {op}: unexpected value in {column}: {value:?}")]
    Corrupt {
        /// The operation.
        op: &'static str,
        /// `table.column`.
        column: &'static str,
        /// The offending value (never a secret: the state DB holds none).
        value: String,
    },
    /// The state database is on a file system mounted read-only.
    #[error("state database {path}: read-only file system ({dir} cannot be written)")]
    ReadOnlyFileSystem {
        /// The database file.
        path: PathBuf,
        /// The directory found read-only.
        dir: PathBuf,
        /// What SQLite or the file system reported.
        #[source]
        source: Box<StoreError>,
    },
    /// A call handed to the blocking pool could not run (the runtime is shutting down).
    #[error("state database task: {0}")]
    Task(String),
    /// The caller passed something inconsistent; nothing was written.
    #[error("state database: {op}: invalid input: {reason}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether the failure is SQLite's "busy/locked" (another writer held the lock past the busy
    /// timeout). Callers may retry these; every other error is not transient.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Sqlite { source, .. } => {
                super::is_busy(source)
            }
            _ => false,
        }
    }
}

/// Attaches the operation name to a `rusqlite` result.
pub(crate) trait SqlContext<T> {
    /// Maps the error to [`StoreError::Sqlite`] with `op`.
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { op, source })
    }
}

/// Attaches the operation name to a `serde_json` result.
pub(crate) trait JsonContext<T> {
    /// Maps the error to [`StoreError::Json`] with `op`.
    fn json_ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> JsonContext<T> for Result<T, serde_json::Error> {
    fn json_ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Json { op, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_recognised_and_other_errors_are_not() {
        let busy = StoreError::Sqlite {
            op: "x",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ),
        };
        assert!(busy.is_busy());
        let other = StoreError::Invalid {
            op: "x",
            reason: "y".into(),
        };
        assert!(!other.is_busy());
        assert!(busy.to_string().contains("x"));
    }
}
