//! The daemon's one clock: the wall clock in unix milliseconds and the RFC 3339 text every
//! report, log line and API answer uses for an instant.
//!
//! Everything else takes time as an input (`now_ms: i64`), so it can be tested with a fixed or
//! virtual clock; this module is the only place that reads the system time. It must not grow
//! timers, sleeps or time-zone logic: the pure crate has no clock at all, and platform timestamp
//! *parsing* belongs to `collect::timestamp`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock in unix milliseconds. A clock before 1970 reads as 0 and one past `i64::MAX` ms
/// saturates, rather than failing a cycle over an impossible instant.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix ms as RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.000Z`), or `None` when
/// chrono cannot represent the instant (not producible by a real clock).
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Unix ms as RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.000Z`); an instant chrono
/// cannot represent is written as the raw number so the value is never lost from a report.
pub fn format_ms(ms: i64) -> String {
    rfc3339_ms(ms).unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(format_ms(1_795_341_600_000), "2026-11-22T10:00:00.000Z");
        assert_eq!(format_ms(1_795_341_600_123), "2026-11-22T10:00:00.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn unrepresentable_instants_fall_back_instead_of_failing() {
        assert_eq!(rfc3339_ms(i64::MAX), None);
        assert_eq!(format_ms(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
