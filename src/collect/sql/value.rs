//! Cell values → the snapshot's types. Platform data is untrusted: ids and names may be stored
//! as integers, flags as text, timestamps in several shapes; what cannot be read becomes `None`
//! plus an anomaly, never a guess. A queued row's `backlog_metadata` is reduced here to facts and
//! its text dropped.
//!
//! It must not run statements; everything here is pure.

use canary_invariants::{Anomaly, AnomalyKind, Backlog, BacklogJson, Source};
use rusqlite::types::Value;

use crate::collect::timestamp::{parse_timestamp_ms, seconds_to_ms};

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
pub(super) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(s) => Some(s.clone()),
        Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// `Ok(None)` for NULL, `Err` for a value that is not an integer (text digits are accepted:
/// SQLite's type affinity lets either land in an INTEGER column).
pub(super) fn as_integer(v: &Value) -> Result<Option<i64>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(*i)),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
        Value::Text(s) => s.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

pub(super) fn truthy(v: &Value) -> bool {
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

/// Reduces a queued row's `backlog_metadata` to facts; the text is dropped here. Nothing about
/// the content (not even a fragment in an anomaly) may leave this function.
pub(super) fn backlog_facts(metadata: Value) -> Backlog {
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
    let (valid, patterns) = crate::collect::secrets::scan_metadata(&text);
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
    v: &Value,
    subject: impl FnOnce() -> String,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let parsed = match v {
        Value::Null => return None,
        Value::Integer(i) => seconds_to_ms(*i as f64),
        Value::Real(f) => seconds_to_ms(*f),
        Value::Text(s) => parse_timestamp_ms(s),
        Value::Blob(_) => None,
    };
    if parsed.is_none() {
        let shown = match v {
            Value::Text(s) => format!("unparseable timestamp {:?}", truncate(s, 40)),
            Value::Blob(_) => "timestamp stored as a blob".to_owned(),
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
