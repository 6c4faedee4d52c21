//! The SQLite dialect: the read-only connection and the catalog query (`sqlite_master` +
//! `pragma_table_info` / index pragmas). `postgres` is its sibling offering the same items; the
//! readers' SQL around them is plain and shared, and the few comparisons that differ live in
//! `reader::Dialect`.
//!
//! It must not decide what to read (the readers do) nor interpret rows (see `value`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::SqlError;
use super::query::placeholders;
use super::reader::Reader;
use super::schema::Catalog;
use super::value::{Cell, cells, value_text};
use crate::config::platform::PlatformConfig;

/// Prefix the catalog query puts before a column that leads an index (`char(1)`).
const INDEXED: char = '\u{1}';
/// What the catalog query returns for a view or a table declaring a collation (`char(2)`).
const NOT_PLAIN: &str = "\u{2}";
/// Prefix the catalog query puts before a column that leads a partial index (`char(4)`).
const PARTIAL_INDEXED: char = '\u{4}';

/// Opens the platform database read-only (`mode=ro` URI, `query_only`), with the busy timeout.
///
/// The returned connection cannot write: the file handle is read-only and `query_only` makes
/// SQLite refuse any statement that would change the database.
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, SqlError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file_uri(path), flags).map_err(SqlError::Open)?;
    conn.busy_timeout(busy_timeout).map_err(SqlError::Open)?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(SqlError::Open)?;
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

/// One statement for the columns of every table canary may read. Restricted to those names so a
/// virtual table of an extension canary has not loaded cannot break the whole read.
pub(super) fn read_catalog(r: &mut Reader<'_>, cfg: &PlatformConfig) -> Result<Catalog, SqlError> {
    let mut wanted: BTreeSet<String> = cfg.cascade.iter().map(|c| c.table.clone()).collect();
    wanted.insert(cfg.tables.agents.table.clone());
    wanted.insert(cfg.tables.executions.table.clone());
    wanted.insert(cfg.tables.schedules.table.clone());
    wanted.insert(cfg.tables.settings.table.clone());
    let wanted: Vec<Cell> = wanted
        .into_iter()
        .map(|t| Cell::Text(t.to_ascii_lowercase()))
        .collect();
    // The second arm lists the first column of every index with the default collation, marked
    // with `char(1)` (full) or `char(4)` (partial), so the executions query can pick an index-driven shape
    // without another statement. The third marks (`char(2)`) views and tables whose
    // definition names a collation: only between plain tables do SQL `=` and Rust string
    // equality agree, which the executions cascade computed in Rust relies on.
    let sql = format!(
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
         WHERE m.type IN ('table', 'view') AND lower(m.name) IN ({list}) \
         UNION ALL SELECT m.name, CASE WHEN il.partial = 0 THEN char(1) ELSE char(4) END || x.name \
         FROM sqlite_master AS m \
         JOIN pragma_index_list(m.name) AS il JOIN pragma_index_xinfo(il.name) AS x \
         WHERE m.type = 'table' AND x.seqno = 0 AND x.name IS NOT NULL \
         AND x.coll = 'BINARY' AND lower(m.name) IN ({list}) \
         UNION ALL SELECT m.name, char(2) FROM sqlite_master AS m \
         WHERE m.type IN ('table', 'view') AND lower(m.name) IN ({list}) \
         AND (m.type = 'view' OR m.sql IS NULL OR instr(upper(m.sql), 'COLLATE') > 0)",
        list = placeholders(wanted.len())
    );
    let wanted: Vec<Cell> = wanted
        .iter()
        .chain(wanted.iter())
        .chain(wanted.iter())
        .cloned()
        .collect();
    let rows = r.rows(&sql, &wanted, "reading the schema")?;
    let mut catalog = Catalog::default();
    for row in rows {
        let [table, column] = cells(row);
        let (Some(table), Some(column)) = (value_text(table.as_ref()), value_text(column.as_ref()))
        else {
            continue;
        };
        let info = catalog
            .tables
            .entry(table.to_ascii_lowercase())
            .or_default();
        // Configured names are plain identifiers, so no real column starts with these marks.
        if let Some(indexed) = column.strip_prefix(INDEXED) {
            info.index_leads.insert(indexed.to_ascii_lowercase());
        } else if let Some(indexed) = column.strip_prefix(PARTIAL_INDEXED) {
            info.partial_index_leads
                .insert(indexed.to_ascii_lowercase());
        } else if column == NOT_PLAIN {
            info.not_plain = true;
        } else {
            info.columns.insert(column.to_ascii_lowercase());
        }
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
