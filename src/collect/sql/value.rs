//! Cell values → the snapshot's types. Platform data is untrusted: ids and names may be stored
//! as integers, flags as text, timestamps in several shapes; what cannot be read becomes `None`
//! plus an anomaly, never a guess. A queued row's `backlog_metadata` is reduced here to facts and
//! its text dropped.
//!
//! [`Cell`] is the one value type the readers see, whatever the dialect: SQLite hands over its
//! typed values, PostgreSQL its text output (the simple query protocol), and every function
//! here accepts both shapes (`"t"` is true, `"42"` an integer, `"2026-01-14 10:00:00+00"` a
//! timestamp).
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
}

impl From<rusqlite::types::Value> for Cell {
    fn from(value: rusqlite::types::Value) -> Cell {
        use rusqlite::types::Value;
        match value {
            Value::Null => Cell::Null,
            Value::Integer(i) => Cell::Integer(i),
            Value::Real(f) => Cell::Real(f),
            Value::Text(s) => Cell::Text(s),
            Value::Blob(b) => Cell::Blob(b),
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
pub(super) fn value_text(v: &Cell) -> Option<String> {
    match v {
        Cell::Null => None,
        Cell::Integer(i) => Some(i.to_string()),
        Cell::Real(f) => Some(f.to_string()),
        Cell::Text(s) => Some(s.clone()),
        Cell::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// `Ok(None)` for NULL, `Err` for a value that is not an integer (text digits are accepted:
/// SQLite's type affinity lets either land in an INTEGER column).
pub(super) fn as_integer(v: &Cell) -> Result<Option<i64>, ()> {
    match v {
        Cell::Null => Ok(None),
        Cell::Integer(i) => Ok(Some(*i)),
        Cell::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
        Cell::Text(s) => s.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

pub(super) fn truthy(v: &Cell) -> bool {
    match v {
        Cell::Integer(i) => *i != 0,
        Cell::Real(f) => *f != 0.0,
        Cell::Text(s) => {
            matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "t" | "yes" | "y"
            )
        }
        Cell::Null | Cell::Blob(_) => false,
    }
}

/// Reduces a queued row's `backlog_metadata` to facts; the text is dropped here. Nothing about
/// the content (not even a fragment in an anomaly) may leave this function.
pub(super) fn backlog_facts(metadata: Cell, skip: &[String]) -> Backlog {
    let text = match metadata {
        Cell::Null => {
            return Backlog {
                json: BacklogJson::Null,
                secret_patterns: Vec::new(),
            };
        }
        Cell::Text(s) => s,
        Cell::Integer(i) => i.to_string(),
        Cell::Real(f) => f.to_string(),
        // A blob that is UTF-8 is judged as text; other bytes are not JSON.
        Cell::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
    };
    let (valid, patterns) = crate::collect::secrets::scan_metadata(&text, skip);
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
    v: &Cell,
    subject: impl FnOnce() -> String,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let parsed = match v {
        Cell::Null => return None,
        Cell::Integer(i) => seconds_to_ms(*i as f64),
        Cell::Real(f) => seconds_to_ms(*f),
        Cell::Text(s) => parse_timestamp_ms(s),
        Cell::Blob(_) => None,
    };
    if parsed.is_none() {
        let shown = match v {
            Cell::Text(s) => format!("unparseable timestamp {:?}", truncate(s, 40)),
            Cell::Blob(_) => "timestamp stored as a blob".to_owned(),
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
        assert_eq!(as_integer(&Cell::Null), Ok(None));
        assert_eq!(as_integer(&Cell::Integer(5)), Ok(Some(5)));
        assert_eq!(as_integer(&Cell::Text(" 7 ".into())), Ok(Some(7)));
        assert_eq!(as_integer(&Cell::Real(4.0)), Ok(Some(4)));
        assert_eq!(as_integer(&Cell::Real(4.5)), Err(()));
        assert_eq!(as_integer(&Cell::Text("many".into())), Err(()));
    }

    #[test]
    fn truthiness() {
        assert!(truthy(&Cell::Integer(1)));
        assert!(truthy(&Cell::Text("TRUE".into())));
        assert!(!truthy(&Cell::Integer(0)));
        assert!(!truthy(&Cell::Null));
        assert!(!truthy(&Cell::Text("no".into())));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
