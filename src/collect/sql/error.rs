//! Why the SQL source could not be read: the one error type of the SQL readers. A leaf (every
//! reader returns it; it depends on none of them).
//!
//! It must not carry secrets or row contents: messages are short and name tables and columns.

/// Why the SQL source (SQLite or PostgreSQL) could not be read. Messages are short and carry
/// no secrets.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The platform database is not configured (see `PlatformConfig::database`).
    #[error("{0}")]
    Choice(#[from] crate::config::platform::DatabaseChoiceError),
    /// No PostgreSQL session could be opened (unreachable, refused, authentication, TLS). The
    /// message never holds the URL: the driver's errors name hosts and roles, not passwords.
    #[error("postgres: cannot connect: {0}")]
    Connect(String),
    /// A PostgreSQL statement failed (statement timeout, permission, a dropped connection, ...).
    #[error("postgres: {step}: {message}")]
    Postgres {
        /// What was being read.
        step: &'static str,
        /// The server's (or the driver's) message.
        message: String,
    },
    /// The PostgreSQL role can write the watched tables (or is a superuser), and
    /// `platform.allow_write_role` is off: canary refuses to read with it.
    #[error("postgres: refusing a write-capable role: {0}")]
    WriteRole(String),
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
    /// A required table exists but the role may not read it.
    #[error("no SELECT privilege on table {0} (grant it to canary's role)")]
    NoPrivilege(String),
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

impl SqlError {
    /// A failed PostgreSQL statement at `step`.
    pub(super) fn postgres(step: &'static str, error: &postgres::Error) -> SqlError {
        SqlError::Postgres {
            step,
            message: postgres_message(error),
        }
    }
}

/// The server's own message when there is one (`ERROR: canceling statement due to statement
/// timeout`), else the driver's error and its causes (`db error` alone says nothing).
pub(super) fn postgres_message(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
