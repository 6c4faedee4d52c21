//! Why the SQL source could not be read: the one error type of the SQL readers. A leaf (every
//! reader returns it; it depends on none of them).
//!
//! It must not carry secrets or row contents: messages are short and name tables and columns.

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
