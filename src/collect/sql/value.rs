//! Cell values → the snapshot's types. Platform data is untrusted: ids and names may be stored
//! as integers, flags as text, timestamps in several shapes; what cannot be read becomes `None`
//! plus an anomaly, never a guess. A queued row's `backlog_metadata` is reduced here to facts and
//! its text dropped.
//!
//! [`CellRef`] is the one value type the readers see, whatever the dialect: SQLite hands over
//! its typed values, PostgreSQL its text output (the simple query protocol), and every function
//! here accepts both shapes (`"t"` is true, `"42"` an integer, `"2026-01-14 10:00:00+00"` a
//! timestamp). It borrows the row being read (`Reader::each_row`), so a cell is copied out only
//! when the snapshot keeps it: a timestamp is parsed in place, a flag read in place. [`Cell`] is
//! its owned form, for statement parameters and the few small reads that collect their rows.
//!
//! It must not run statements; everything here is pure.

use canary_invariants::{Anomaly, AnomalyKind, Backlog, BacklogJson, Source};

use crate::collect::timestamp::{parse_timestamp_ms, seconds_to_ms};

/// One cell of a result row (or one statement parameter), dialect-independent.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer (SQLite only: PostgreSQL cells arrive as text).
    Integer(i64),
    /// A floating-point number (SQLite only).
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes (SQLite only).
    Blob(Vec<u8>),
}

impl Cell {
    /// `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The borrowed view the value functions take.
    pub fn as_ref(&self) -> CellRef<'_> {
        match self {
            Cell::Null => CellRef::Null,
            Cell::Integer(i) => CellRef::Integer(*i),
            Cell::Real(f) => CellRef::Real(*f),
            Cell::Text(s) => CellRef::Text(s),
            Cell::Blob(b) => CellRef::Blob(b),
        }
    }
}

/// One cell of the row being read, borrowed from the driver's buffer (see [`Cell`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellRef<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer (SQLite only: PostgreSQL cells arrive as text).
    Integer(i64),
    /// A floating-point number (SQLite only).
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes (SQLite only).
    Blob(&'a [u8]),
}

impl CellRef<'_> {
    /// `NULL`.
    pub fn is_null(self) -> bool {
        matches!(self, CellRef::Null)
    }

    /// An owned copy.
    pub fn to_cell(self) -> Cell {
        match self {
            CellRef::Null => Cell::Null,
            CellRef::Integer(i) => Cell::Integer(i),
            CellRef::Real(f) => Cell::Real(f),
            CellRef::Text(s) => Cell::Text(s.to_owned()),
            CellRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Integer(i) => ValueRef::Integer(*i),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// The `N` first cells of a row, `NULL` for any the row lacks (readers destructure rows by
/// position; a short row is a dialect bug, never a panic).
pub(super) fn cells<const N: usize>(row: Vec<Cell>) -> [Cell; N] {
    let mut it = row.into_iter();
    std::array::from_fn(|_| it.next().unwrap_or(Cell::Null))
}

/// An anomaly of the SQL source: odd data carried instead of guessed.
pub(super) fn anomaly(kind: AnomalyKind, subject: String, note: impl Into<String>) -> Anomaly {
    Anomaly {
        source: Source::Sqlite,
        kind,
        subject,
        note: note.into(),
    }
}

/// Integers and text are both seen as ids and names in the wild; both are carried as text.
pub(super) fn value_text(v: CellRef<'_>) -> Option<String> {
    match v {
        CellRef::Null => None,
        CellRef::Integer(i) => Some(i.to_string()),
        CellRef::Real(f) => Some(f.to_string()),
        CellRef::Text(s) => Some(s.to_owned()),
        CellRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// `Ok(None)` for NULL, `Err` for a value that is not an integer (text digits are accepted:
/// SQLite's type affinity lets either land in an INTEGER column).
pub(super) fn as_integer(v: CellRef<'_>) -> Result<Option<i64>, ()> {
    match v {
        CellRef::Null => Ok(None),
        CellRef::Integer(i) => Ok(Some(i)),
        CellRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        CellRef::Text(s) => s.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

pub(super) fn truthy(v: CellRef<'_>) -> bool {
    match v {
        CellRef::Integer(i) => i != 0,
        CellRef::Real(f) => f != 0.0,
        CellRef::Text(s) => {
            let s = s.trim();
            ["1", "true", "t", "yes", "y"]
                .iter()
                .any(|word| s.eq_ignore_ascii_case(word))
        }
        CellRef::Null | CellRef::Blob(_) => false,
    }
}

/// Reduces a queued row's `backlog_metadata` to facts; the text is dropped here. Nothing about
/// the content (not even a fragment in an anomaly) may leave this function.
pub(super) fn backlog_facts(metadata: CellRef<'_>, skip: &[String]) -> Backlog {
    let owned;
    let text: &str = match metadata {
        CellRef::Null => {
            return Backlog {
                json: BacklogJson::Null,
                secret_patterns: Vec::new(),
            };
        }
        CellRef::Text(s) => s,
        CellRef::Integer(i) => {
            owned = i.to_string();
            &owned
        }
        CellRef::Real(f) => {
            owned = f.to_string();
            &owned
        }
        // A blob that is UTF-8 is judged as text; other bytes are not JSON.
        CellRef::Blob(b) => {
            owned = String::from_utf8_lossy(b).into_owned();
            &owned
        }
    };
    let (valid, patterns) = crate::collect::secrets::scan_metadata(text, skip);
    Backlog {
        json: if valid {
            BacklogJson::Valid
        } else {
            BacklogJson::Invalid
        },
        secret_patterns: patterns.into_iter().map(str::to_owned).collect(),
    }
}

/// A timestamp cell → unix ms. Text goes through [`parse_timestamp_ms`]; a number is unix
/// seconds. Anything non-NULL that does not parse is `None` plus an anomaly.
pub(super) fn parse_ts_value(
    v: CellRef<'_>,
    subject: impl FnOnce() -> String,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let parsed = match v {
        CellRef::Null => return None,
        CellRef::Integer(i) => seconds_to_ms(i as f64),
        CellRef::Real(f) => seconds_to_ms(f),
        CellRef::Text(s) => parse_timestamp_ms(s),
        CellRef::Blob(_) => None,
    };
    if parsed.is_none() {
        let shown = match v {
            CellRef::Text(s) => format!("unparseable timestamp {:?}", truncate(s, 40)),
            CellRef::Blob(_) => "timestamp stored as a blob".to_owned(),
            _ => "timestamp out of range".to_owned(),
        };
        anomalies.push(anomaly(AnomalyKind::TimestampUnparseable, subject(), shown));
    }
    parsed
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => s.get(..at).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_accept_text_digits_and_reject_garbage() {
        assert_eq!(as_integer(CellRef::Null), Ok(None));
        assert_eq!(as_integer(CellRef::Integer(5)), Ok(Some(5)));
        assert_eq!(as_integer(CellRef::Text(" 7 ")), Ok(Some(7)));
        assert_eq!(as_integer(CellRef::Real(4.0)), Ok(Some(4)));
        assert_eq!(as_integer(CellRef::Real(4.5)), Err(()));
        assert_eq!(as_integer(CellRef::Text("many")), Err(()));
    }

    #[test]
    fn truthiness() {
        assert!(truthy(CellRef::Integer(1)));
        assert!(truthy(CellRef::Text("TRUE")));
        assert!(truthy(CellRef::Text(" Yes ")));
        assert!(!truthy(CellRef::Integer(0)));
        assert!(!truthy(CellRef::Null));
        assert!(!truthy(CellRef::Text("no")));
        assert!(!truthy(CellRef::Text("tr")));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
