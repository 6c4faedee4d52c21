//! Replies → the snapshot's types: `ZRANGE … WITHSCORES` in both RESP shapes, scores, the
//! timeout field, the drain heartbeat, and bounded renderings of odd replies for anomaly notes.
//! Platform data is untrusted: wrong types, odd scores, non-UTF-8 bytes and garbage numbers
//! become anomalies, never errors.
//!
//! It must not talk to Redis; everything here is pure.

use canary_invariants::{Anomaly, AnomalyKind, Source};
use redis::Value;

use crate::collect::timestamp::{parse_timestamp_ms, seconds_to_ms};

/// An anomaly of the Redis source: odd data carried instead of guessed.
pub(super) fn anomaly(kind: AnomalyKind, subject: String, note: impl Into<String>) -> Anomaly {
    Anomaly {
        source: Source::Redis,
        kind,
        subject,
        note: note.into(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

pub(super) fn hex_subject(bytes: &[u8]) -> String {
    format!("0x{}", hex(bytes))
}

/// A short rendering of a reply for anomaly notes (bounded: data is untrusted).
pub(super) fn show_value(v: &Value) -> String {
    let text = match v {
        Value::Nil => "nil".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Double(f) => f.to_string(),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => format!("{s:?}"),
        Value::ServerError(e) => format!("error {}", e.code()),
        _ => "an unexpected reply".to_owned(),
    };
    match text.char_indices().nth(48) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(&text)),
        None => text,
    }
}

/// The kind of a per-command error: `WRONGTYPE` is malformed data, anything else is not.
pub(super) fn server_error_kind(e: &redis::ServerError) -> AnomalyKind {
    if e.code() == "WRONGTYPE" {
        AnomalyKind::WrongType
    } else {
        AnomalyKind::ServerError
    }
}

/// A `WRONGTYPE` (or other per-command) error, as an anomaly note.
pub(super) fn server_error_note(e: &redis::ServerError, what: &str) -> String {
    if e.code() == "WRONGTYPE" {
        format!("{what} holds the wrong key type; skipped")
    } else {
        format!("{what}: server error {}; skipped", e.code())
    }
}

/// `ZRANGE … WITHSCORES` reply → (member bytes, score reply) pairs. RESP2 answers a flat
/// `[m1, s1, m2, s2, …]` array, RESP3 an array of `[member, score]` pairs; both are accepted.
pub(super) fn zrange_pairs(
    reply: Value,
    key: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<Vec<(Vec<u8>, Value)>> {
    // Taken by value: a huge slot set's reply is moved into the pairs, never copied.
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) => {
            anomalies.push(anomaly(
                server_error_kind(&e),
                key.to_owned(),
                server_error_note(&e, "slot key"),
            ));
            return None;
        }
        other => {
            anomalies.push(anomaly(
                AnomalyKind::UnexpectedReply,
                key.to_owned(),
                format!("ZRANGE answered {}; skipped", show_value(&other)),
            ));
            return None;
        }
    };
    let member_bytes = |v: Value| match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    };
    let mut pairs = Vec::with_capacity(items.len() / 2);
    if items.iter().all(|i| matches!(i, Value::Array(_))) {
        for item in items {
            if let Value::Array(pair) = item
                && pair.len() == 2
            {
                let mut pair = pair.into_iter();
                if let (Some(member), Some(score)) = (pair.next(), pair.next())
                    && let Some(member) = member_bytes(member)
                {
                    pairs.push((member, score));
                }
            }
        }
    } else {
        let mut items = items.into_iter();
        while let (Some(member), Some(score)) = (items.next(), items.next()) {
            if let Some(member) = member_bytes(member) {
                pairs.push((member, score));
            }
        }
    }
    Some(pairs)
}

/// Slot score (float unix seconds) → unix ms; `None` for `inf`, `-inf` or anything non-numeric.
pub(super) fn score_ms(score: &Value) -> Option<i64> {
    let secs = match score {
        Value::Double(f) => *f,
        Value::Int(i) => *i as f64,
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse::<f64>().ok()?,
        Value::SimpleString(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    seconds_to_ms(secs)
}

/// `HGET timeout_field` reply → seconds; `None` when absent or odd (odd: an anomaly about the
/// metadata key `meta_key()`, built only then).
pub(super) fn parse_timeout(
    reply: &Value,
    meta_key: impl Fn() -> String,
    field: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let parsed = match reply {
        Value::Nil => return None,
        Value::Int(i) => return Some(*i),
        // Parsed in place: the reply's bytes are not copied (invalid UTF-8 is not an integer).
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok()),
        Value::SimpleString(s) => s.trim().parse::<i64>().ok(),
        Value::ServerError(e) => {
            anomalies.push(anomaly(
                server_error_kind(e),
                meta_key(),
                server_error_note(e, "metadata key"),
            ));
            return None;
        }
        other => {
            anomalies.push(anomaly(
                AnomalyKind::UnexpectedReply,
                format!("{} {field}", meta_key()),
                format!("HGET answered {}", show_value(other)),
            ));
            return None;
        }
    };
    if parsed.is_none() {
        anomalies.push(anomaly(
            AnomalyKind::TimeoutNotInteger,
            format!("{} {field}", meta_key()),
            format!("not an integer: {}", show_value(reply)),
        ));
    }
    parsed
}

/// Drain heartbeat (unix seconds, int or float) → unix ms.
pub(super) fn parse_drain_tick(
    reply: &Value,
    key: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let what = ("drain tick", AnomalyKind::DrainTickUnparseable);
    parse_unix_time(reply, key, what, anomalies).flatten()
}

/// A pilot's last claim attempt (`agent:pull_poll:{agent}`, unix seconds, int or float) →
/// `Some(Some(ms))`; never written → `Some(None)`; garbage or an error → `None` with an anomaly
/// (the pilot is then not judged on it: unreadable is not "silent").
pub(super) fn parse_pull_poll(
    reply: &Value,
    key: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<Option<i64>> {
    let what = ("pull poll", AnomalyKind::TimestampUnparseable);
    parse_unix_time(reply, key, what, anomalies)
}

/// A key holding a unix time in seconds (int or float, as Redis returns it): `Some(Some(ms))`,
/// `Some(None)` when the key does not exist, `None` with an anomaly (kind `unparseable` when the
/// value is not a time, the server error's kind otherwise) naming `what.0`, never the value
/// beyond `show_value`'s bounded form.
fn parse_unix_time(
    reply: &Value,
    key: &str,
    (what, unparseable): (&str, AnomalyKind),
    anomalies: &mut Vec<Anomaly>,
) -> Option<Option<i64>> {
    let parsed = match reply {
        Value::Nil => return Some(None),
        Value::Int(i) => seconds_to_ms(*i as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(parse_timestamp_ms),
        Value::SimpleString(s) => parse_timestamp_ms(s),
        Value::ServerError(e) => {
            anomalies.push(anomaly(
                server_error_kind(e),
                key.to_owned(),
                server_error_note(e, &format!("{what} key")),
            ));
            return None;
        }
        _ => None,
    };
    if parsed.is_none() {
        anomalies.push(anomaly(
            unparseable,
            key.to_owned(),
            format!("{what} {} is not a unix time", show_value(reply)),
        ));
    }
    parsed.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn pull_poll_is_read_absent_or_unreadable() {
        let mut a = Vec::new();
        assert_eq!(
            parse_pull_poll(&bulk("1768384800"), "k", &mut a),
            Some(Some(1_768_384_800_000))
        );
        assert_eq!(parse_pull_poll(&Value::Nil, "k", &mut a), Some(None));
        assert!(a.is_empty());
        assert_eq!(parse_pull_poll(&bulk("soon"), "k", &mut a), None);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AnomalyKind::TimestampUnparseable);
    }

    #[test]
    fn scores() {
        assert_eq!(score_ms(&bulk("1768384800.1234")), Some(1_768_384_800_123));
        assert_eq!(score_ms(&Value::Double(1.5)), Some(1500));
        assert_eq!(score_ms(&bulk("inf")), None);
        assert_eq!(score_ms(&bulk("-inf")), None);
        assert_eq!(score_ms(&bulk("nan")), None);
        assert_eq!(score_ms(&bulk("x")), None);
    }

    #[test]
    fn zrange_reply_shapes() {
        let mut anomalies = Vec::new();
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let pairs = zrange_pairs(flat.clone(), "k", &mut anomalies).unwrap();
        assert_eq!(pairs.len(), 2);
        let resp3 = Value::Array(vec![Value::Array(vec![bulk("a"), Value::Double(1.0)])]);
        assert_eq!(
            zrange_pairs(resp3.clone(), "k", &mut anomalies)
                .unwrap()
                .len(),
            1
        );
        assert!(anomalies.is_empty());
        assert!(zrange_pairs(Value::Nil, "k", &mut anomalies).is_none());
        assert_eq!(anomalies.len(), 1);
    }

    #[test]
    fn timeouts_and_ticks() {
        let mut a = Vec::new();
        let m = || "m".to_owned();
        assert_eq!(
            parse_timeout(&bulk("900"), m, "timeout_seconds", &mut a),
            Some(900)
        );
        assert_eq!(
            parse_timeout(&Value::Nil, m, "timeout_seconds", &mut a),
            None
        );
        assert!(a.is_empty());
        assert_eq!(
            parse_timeout(&bulk("9.5"), m, "timeout_seconds", &mut a),
            None
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            parse_drain_tick(&bulk("1768384800.5"), "t", &mut a),
            Some(1_768_384_800_500)
        );
        assert_eq!(parse_drain_tick(&Value::Nil, "t", &mut a), None);
        assert_eq!(a.len(), 1);
        assert_eq!(parse_drain_tick(&bulk("soon"), "t", &mut a), None);
        assert_eq!(a.len(), 2);
    }
}
