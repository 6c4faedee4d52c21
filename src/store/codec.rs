//! Column codecs: the text and integer forms the tables store, back to the typed vocabulary of
//! `canary-invariants`. Anything canary could not have written becomes [`StoreError::Corrupt`]
//! rather than a guess.

use canary_invariants::{Millis, Outcome, Severity, Tier, TransitionKind};

use super::StoreError;

pub(crate) fn tier_str(tier: Tier) -> &'static str {
    match tier {
        Tier::A => "A",
        Tier::B => "B",
    }
}

pub(crate) fn parse_tier(
    op: &'static str,
    column: &'static str,
    s: &str,
) -> Result<Tier, StoreError> {
    match s {
        "A" => Ok(Tier::A),
        "B" => Ok(Tier::B),
        _ => Err(corrupt(op, column, s)),
    }
}

pub(crate) fn parse_severity(
    op: &'static str,
    column: &'static str,
    s: &str,
) -> Result<Severity, StoreError> {
    Severity::parse(s).ok_or_else(|| corrupt(op, column, s))
}

pub(crate) fn parse_outcome(
    op: &'static str,
    column: &'static str,
    s: &str,
) -> Result<Outcome, StoreError> {
    Outcome::parse(s).ok_or_else(|| corrupt(op, column, s))
}

pub(crate) fn parse_kind(
    op: &'static str,
    column: &'static str,
    s: &str,
) -> Result<TransitionKind, StoreError> {
    match s {
        "fired" => Ok(TransitionKind::Fired),
        "resolved" => Ok(TransitionKind::Resolved),
        _ => Err(corrupt(op, column, s)),
    }
}

pub(crate) fn to_u32(op: &'static str, column: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(op, column, &v.to_string()))
}

pub(crate) fn to_u64(op: &'static str, column: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(op, column, &v.to_string()))
}

/// `u64` to SQLite's `i64`, saturating: counts and offsets never get near `i64::MAX`, and a
/// saturated offset simply returns an empty page.
pub(crate) fn sat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// RFC 3339 with milliseconds and `Z`, for JSON output next to the raw milliseconds. Out-of-range
/// values (not producible by a real clock) render as the empty string rather than failing a query.
pub(crate) fn rfc3339(ms: Millis) -> String {
    crate::clock::rfc3339_ms(ms).unwrap_or_default()
}

pub(crate) fn corrupt(op: &'static str, column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        op,
        column,
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        for t in [Tier::A, Tier::B] {
            assert_eq!(parse_tier("t", "c", tier_str(t)).unwrap(), t);
        }
        assert!(parse_tier("t", "c", "C").is_err());
        assert!(parse_severity("t", "c", "fatal").is_err());
        assert!(parse_outcome("t", "c", "purple").is_err());
        assert_eq!(
            parse_kind("t", "c", "fired").unwrap(),
            TransitionKind::Fired
        );
        assert!(parse_kind("t", "c", "other").is_err());
        assert!(to_u32("t", "c", -1).is_err());
        assert_eq!(to_u64("t", "c", 7).unwrap(), 7);
        assert_eq!(sat_i64(u64::MAX), i64::MAX);
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339(1_763_805_600_123), "2025-11-22T10:00:00.123Z");
        assert_eq!(rfc3339(i64::MAX), "");
    }
}
