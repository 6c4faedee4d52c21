//! Timestamp parsing: every shape the platform writes, to unix milliseconds.
//!
//! The platform's rows carry ISO-8601 (`T`, `Z`, offsets, microseconds), SQLite's
//! `datetime('now')` form (space separator, implicitly UTC) and sometimes bare epoch seconds.
//! Comparing those as strings is wrong (`'T'` sorts after `' '`), so the collector turns each one
//! into milliseconds here and nowhere else.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Latest instant accepted (9999-12-31T23:59:59.999Z), matching SQLite's own date range; anything
/// beyond is more likely a unit mix-up (milliseconds stored as seconds) than a real time.
const MAX_MS: i64 = 253_402_300_799_999;
/// Earliest instant accepted (0000-01-01T00:00:00Z).
const MIN_MS: i64 = -62_167_219_200_000;

/// The widest zone offset accepted, either way: ±14:00, the bound XML Schema's `dateTime` sets
/// and the span of the zones in use (UTC−12:00 to UTC+14:00). The SQL readers rely on it: their
/// text prefilters start this far before a window's cutoff (`sql::reader::text_floor`), which
/// holds for every text this parser reads as an instant in the window only because no wider
/// offset is read. A wider one (`+15:00`, `-23:59`) is malformed data, reported as such.
pub const MAX_OFFSET_SECONDS: i32 = 14 * 3600;

/// Parses a platform timestamp to unix milliseconds; `None` when it is not one.
///
/// Accepted: `2026-01-14T10:00:00.123456Z`, `2026-01-14T10:00:00+02:00`, `…-0500`, `…+05`,
/// `2026-01-14T10:00:00` (UTC), `2026-01-14 10:00:00[.fff]` (UTC), `2026-01-14T10:00` (no
/// seconds), `2026-01-14` (midnight UTC), and a bare number as unix seconds (`1768384800`,
/// `1768384800.5`). Sub-millisecond digits are truncated. A zone offset beyond
/// [`MAX_OFFSET_SECONDS`] (±14:00) is not a timestamp.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(secs) = parse_epoch_seconds(s) {
        return seconds_to_ms(secs);
    }
    parse_calendar(s)
}

/// Unix seconds as float → rounded milliseconds, when finite and in range.
pub(crate) fn seconds_to_ms(secs: f64) -> Option<i64> {
    if !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // The bounds are exactly representable in f64, so the cast below cannot saturate.
    if ms < MIN_MS as f64 || ms > MAX_MS as f64 {
        return None;
    }
    Some(ms as i64)
}

/// `[-+]digits[.digits]` only: `f64::from_str` alone would also take `inf`, `NaN` and exponents,
/// none of which is a timestamp a platform writes.
fn parse_epoch_seconds(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let well_formed =
        !int.is_empty() && digits(int) && frac.is_none_or(|f| !f.is_empty() && digits(f));
    if !well_formed {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_calendar(s: &str) -> Option<i64> {
    let (date_part, rest) = match s.get(..10) {
        Some(d) => (d, s.get(10..)?),
        None => return None,
    };
    let date = parse_date(date_part)?;
    if rest.is_empty() {
        return Some(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    let mut chars = rest.chars();
    if !matches!(chars.next(), Some('T' | 't' | ' ')) {
        return None;
    }
    let (time_part, offset_s) = split_zone(chars.as_str())?;
    let time = parse_time(time_part)?;
    let naive = NaiveDateTime::new(date, time);
    let ms = naive.and_utc().timestamp_millis() - i64::from(offset_s) * 1000;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms)
}

/// `YYYY-MM-DD`. The plain shape (every platform row has it) is read digit by digit: chrono's
/// format-string parser was most of the collector's timestamp cost (70 000 schedules and ~45 000
/// executions at L). Anything else goes to chrono, so the accepted set is unchanged.
fn parse_date(s: &str) -> Option<NaiveDate> {
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *s.as_bytes()
        && [y0, y1, y2, y3, m0, m1, d0, d1]
            .iter()
            .all(u8::is_ascii_digit)
    {
        let num = |digits: &[u8]| {
            digits
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let year = i32::try_from(num(&[y0, y1, y2, y3])).ok()?;
        return NaiveDate::from_ymd_opt(year, num(&[m0, m1]), num(&[d0, d1]));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Splits `HH:MM[:SS[.f]][Z|±HH[:MM]|±HHMM]` into the time text and the zone offset in seconds
/// east of UTC (no zone = UTC, as SQLite writes it).
fn split_zone(s: &str) -> Option<(&str, i32)> {
    if let Some(t) = s.strip_suffix(['Z', 'z']) {
        return Some((t, 0));
    }
    match s.rfind(['+', '-']) {
        None => Some((s, 0)),
        Some(at) => {
            let (time, zone) = s.split_at(at);
            Some((time, parse_offset(zone)?))
        }
    }
}

fn parse_offset(zone: &str) -> Option<i32> {
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let body = zone.get(1..)?;
    let (h, m) = match body.len() {
        2 => (body, "00"),
        4 => (body.get(..2)?, body.get(2..)?),
        5 if body.as_bytes().get(2) == Some(&b':') => (body.get(..2)?, body.get(3..)?),
        _ => return None,
    };
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let seconds = h * 3600 + m * 60;
    if m > 59 || seconds > MAX_OFFSET_SECONDS {
        return None;
    }
    Some(sign * seconds)
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.f…` (any number of fraction digits; beyond nanoseconds they
/// are dropped, as SQLite does).
fn parse_time(s: &str) -> Option<NaiveTime> {
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let field = |p: Option<&str>| -> Option<u32> {
        let p = p?;
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let h = field(parts.next())?;
    let m = field(parts.next())?;
    let sec = match parts.next() {
        Some(p) => field(Some(p))?,
        None if frac.is_none() => 0,
        None => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            // The first nine digits, right-padded with zeros (no allocation per row).
            let mut nanos = 0u32;
            for i in 0..9 {
                let digit = f.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
                nanos = nanos * 10 + digit;
            }
            nanos
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_768_384_800_000; // 2026-01-14T10:00:00Z

    #[test]
    fn iso_with_z_and_microseconds() {
        assert_eq!(
            parse_timestamp_ms("2026-01-14T10:00:00.123456Z"),
            Some(BASE + 123)
        );
        assert_eq!(parse_timestamp_ms("2026-01-14T10:00:00Z"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-14t10:00:00z"), Some(BASE));
    }

    #[test]
    fn iso_with_offsets() {
        assert_eq!(parse_timestamp_ms("2026-01-14T12:00:00+02:00"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-14T05:00:00-0500"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-14T05:00:00-05"), Some(BASE));
        assert_eq!(
            parse_timestamp_ms("2026-01-14T10:00:00.5+00:00"),
            Some(BASE + 500)
        );
        assert_eq!(
            parse_timestamp_ms("2026-01-14T10:00:00.5-00:00"),
            Some(BASE + 500)
        );
    }

    /// ±14:00 is the widest offset read: the SQL prefilters' floors depend on it.
    #[test]
    fn offsets_up_to_fourteen_hours_either_way() {
        assert_eq!(parse_timestamp_ms("2026-01-15T00:00:00+14:00"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-13T20:00:00-1400"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-13T20:00:00-14"), Some(BASE));
        for wider in [
            "2026-01-15T00:01:00+14:01",
            "2026-01-13T19:59:00-14:01",
            "2026-01-13T19:00:00-15:00",
            "2026-01-13T10:01:00-23:59",
            "2026-01-15T09:59:00+2359",
        ] {
            assert_eq!(parse_timestamp_ms(wider), None, "{wider}");
        }
    }

    #[test]
    fn no_zone_means_utc() {
        assert_eq!(parse_timestamp_ms("2026-01-14T10:00:00"), Some(BASE));
        assert_eq!(parse_timestamp_ms("2026-01-14 10:00:00"), Some(BASE));
        assert_eq!(
            parse_timestamp_ms("2026-01-14 10:00:00.250"),
            Some(BASE + 250)
        );
        assert_eq!(parse_timestamp_ms("2026-01-14 10:00"), Some(BASE));
        assert_eq!(
            parse_timestamp_ms("2026-01-14"),
            Some(BASE - 10 * 3_600_000)
        );
        assert_eq!(parse_timestamp_ms("  2026-01-14 10:00:00 "), Some(BASE));
    }

    #[test]
    fn t_and_space_forms_of_the_same_instant_are_equal() {
        let pairs = [
            ("2026-01-14T10:00:00", "2026-01-14 10:00:00"),
            ("2026-01-14T10:00:00.123456Z", "2026-01-14 10:00:00.123"),
            ("2026-01-14T23:59:59", "2026-01-14 23:59:59"),
        ];
        for (a, b) in pairs {
            assert_eq!(parse_timestamp_ms(a), parse_timestamp_ms(b), "{a} vs {b}");
            assert!(parse_timestamp_ms(a).is_some());
        }
        // The string order disagrees with the time order: exactly why nothing compares text.
        let (t_form, space_form) = ("2026-01-14T09:00:00", "2026-01-14 10:00:00");
        assert!(t_form > space_form);
        assert!(parse_timestamp_ms(t_form) < parse_timestamp_ms(space_form));
    }

    #[test]
    fn long_fractions_are_truncated() {
        assert_eq!(
            parse_timestamp_ms("2026-01-14T10:00:00.123456789123Z"),
            Some(BASE + 123)
        );
        assert_eq!(
            parse_timestamp_ms("2026-01-14T10:00:00.9999Z"),
            Some(BASE + 999)
        );
    }

    #[test]
    fn epoch_numbers_are_seconds() {
        assert_eq!(parse_timestamp_ms("1768384800"), Some(BASE));
        assert_eq!(parse_timestamp_ms("1768384800.25"), Some(BASE + 250));
        assert_eq!(parse_timestamp_ms("0"), Some(0));
        assert_eq!(parse_timestamp_ms("-1.5"), Some(-1500));
    }

    #[test]
    fn the_digit_by_digit_date_agrees_with_chrono() {
        for d in [
            "2026-01-14",
            "2024-02-29",
            "2023-02-29",
            "0000-01-01",
            "9999-12-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-32",
            "2026-1-014",
            "+026-01-14",
            "2026/01/14",
            "２０２6-01-1",
        ] {
            assert_eq!(
                parse_date(d),
                NaiveDate::parse_from_str(d, "%Y-%m-%d").ok(),
                "{d}"
            );
        }
    }

    #[test]
    fn garbage_is_none() {
        for bad in [
            "",
            "   ",
            "now",
            "yesterday",
            "inf",
            "NaN",
            "1e9",
            "1.",
            ".5",
            "12:00:00",
            "2026-13-01 10:00:00",
            "2026-02-30 10:00:00",
            "2026-01-14 25:00:00",
            "2026-01-14 10:60:00",
            "2026-01-14 10:00:00.",
            "2026-01-14 10:00:00.abc",
            "2026-01-14X10:00:00",
            "2026-01-14 10",
            "2026-01-14 10:00:00:00",
            "2026-01-14 10:00:00+2",
            "2026-01-14 10:00:00+24:00",
            "2026-01-14 10:00:00 UTC",
            "2026/01/14 10:00:00",
            "14.01.2026",
            "2026-01-1",
            "99999999999999999999",
            "1768384800000000",
            "é2026-01-14",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_to_ms_rejects_non_finite_and_out_of_range() {
        assert_eq!(seconds_to_ms(f64::INFINITY), None);
        assert_eq!(seconds_to_ms(f64::NEG_INFINITY), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
        assert_eq!(seconds_to_ms(1e300), None);
        assert_eq!(seconds_to_ms(1_768_384_800.000_4), Some(BASE));
        assert_eq!(seconds_to_ms(1_768_384_800.000_6), Some(BASE + 1));
    }
}
