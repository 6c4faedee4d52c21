//! When the next scheduled cycle fires. PURE: no clock, no RNG, no sleeping — the caller passes
//! "now" (unix milliseconds, UTC) and the random jitter fraction, so every rule here is tested
//! with plain numbers.
//!
//! Rules:
//! - A [`Cadence`] is a fixed interval or a 5-field cron expression evaluated in UTC (so daylight
//!   saving never doubles or drops a tick).
//! - Interval ticks are anchored on the first fire (`anchor + k·interval`), so they do not drift
//!   by the duration of each cycle.
//! - Missed ticks are skipped: after a cycle that overran one or more ticks, the next fire is the
//!   next tick strictly in the future, never a burst of catch-up cycles.
//! - Jitter delays a tick by `fraction · jitter` with the fraction in `[0, 1)`; it never moves the
//!   tick grid itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How often cycles run.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// Every `interval`, anchored on the first fire.
    Interval(Duration),
    /// A 5-field cron expression (minute hour day-of-month month day-of-week), UTC.
    Cron(Box<Cron>),
}

/// A cron expression that does not parse (the expression is named: it is not a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule.cron: {expression:?} is not a valid 5-field UTC cron expression: {reason}")]
pub struct CadenceError {
    /// The expression as configured.
    pub expression: String,
    /// What the parser said.
    pub reason: String,
}

impl Cadence {
    /// The cadence of a schedule configuration: `cron` when set, else `interval`.
    pub fn from_config(interval: Duration, cron: Option<&str>) -> Result<Cadence, CadenceError> {
        match cron {
            Some(expression) => Cadence::cron(expression),
            None => Ok(Cadence::Interval(interval)),
        }
    }

    /// Parses a 5-field cron expression. Seconds and years are refused: the contract is the
    /// classic crontab form, and a 6-field string would silently mean something else.
    pub fn cron(expression: &str) -> Result<Cadence, CadenceError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let fields = expression.split_whitespace().count();
        let parsed = if fields == 5 {
            parser.parse(expression).map_err(|e| e.to_string())
        } else {
            Err(format!("expected 5 fields, found {fields}"))
        };
        match parsed {
            Ok(cron) => Ok(Cadence::Cron(Box::new(cron))),
            Err(reason) => Err(CadenceError {
                expression: expression.to_owned(),
                reason,
            }),
        }
    }

    /// Human description for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Cadence::Interval(d) => format!("every {}", humantime::format_duration(*d)),
            Cadence::Cron(c) => format!("cron {:?} (UTC)", c.pattern.to_string()),
        }
    }
}

/// The first tick: for an interval, `now + startup_delay` (it also anchors the grid); for cron,
/// the first occurrence at or after `now + startup_delay`. `None` when cron has no future match.
pub fn first_tick(cadence: &Cadence, now_ms: i64, startup_delay: Duration) -> Option<i64> {
    let earliest = now_ms.saturating_add(millis(startup_delay));
    match cadence {
        Cadence::Interval(_) => Some(earliest),
        // "At or after": the tick strictly after the millisecond before.
        Cadence::Cron(_) => next_tick(cadence, earliest, earliest.saturating_sub(1)),
    }
}

/// The smallest tick strictly after `after_ms`. `anchor_ms` is the interval grid's origin (the
/// first tick); cron ignores it. Skipping missed ticks falls out of "strictly after now".
/// `None` when cron has no future match (e.g. `0 0 30 2 *`).
pub fn next_tick(cadence: &Cadence, anchor_ms: i64, after_ms: i64) -> Option<i64> {
    match cadence {
        Cadence::Interval(interval) => {
            let step = millis(*interval).max(1);
            if after_ms < anchor_ms {
                return Some(anchor_ms);
            }
            let k = (after_ms - anchor_ms) / step + 1;
            Some(anchor_ms.saturating_add(k.saturating_mul(step)))
        }
        Cadence::Cron(cron) => {
            // Whole seconds: croner carries sub-second parts into its result, and ticks must
            // land on the minute.
            let after = DateTime::<Utc>::from_timestamp(after_ms.div_euclid(1000), 0)?;
            cron.find_next_occurrence(&after, false)
                .ok()
                .map(|t| t.timestamp_millis())
        }
    }
}

/// The latest tick of a cron cadence at or before `at_ms` (`None` for an interval cadence, or
/// when there is none): a maintenance window is open on `[tick, tick + duration)`.
pub fn last_cron_tick_at_or_before(cadence: &Cadence, at_ms: i64) -> Option<i64> {
    let Cadence::Cron(cron) = cadence else {
        return None;
    };
    let at = DateTime::<Utc>::from_timestamp(at_ms.div_euclid(1000), 0)?;
    cron.find_previous_occurrence(&at, true)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Whether a window starting at each tick of `cadence` and lasting `duration` is open at `at_ms`.
pub fn window_open(cadence: &Cadence, duration: Duration, at_ms: i64) -> bool {
    last_cron_tick_at_or_before(cadence, at_ms)
        .is_some_and(|tick| at_ms < tick.saturating_add(millis(duration)))
}

/// How many ticks strictly between `last_ms` and `next_ms` were skipped (capped at `cap`, so a
/// sparse cron never makes this loop long). For the "cycle overran" log line.
pub fn skipped_ticks(
    cadence: &Cadence,
    anchor_ms: i64,
    last_ms: i64,
    next_ms: i64,
    cap: u32,
) -> u32 {
    let mut skipped = 0;
    let mut t = last_ms;
    while skipped < cap {
        match next_tick(cadence, anchor_ms, t) {
            Some(n) if n < next_ms => {
                skipped += 1;
                t = n;
            }
            _ => break,
        }
    }
    skipped
}

/// The jitter delay for a random `fraction` (expected in `[0, 1)`; anything else is clamped so
/// the result is always in `[0, jitter)`, or zero when jitter is zero).
pub fn jitter_delay(jitter: Duration, fraction: f64) -> Duration {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let max_ms = millis(jitter);
    if max_ms == 0 {
        return Duration::ZERO;
    }
    // Truncation keeps the delay strictly below `jitter` even for a fraction of 1.0.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "0 ≤ f ≤ 1 and max_ms is a sane duration"
    )]
    let ms = ((max_ms as f64) * f) as u64;
    Duration::from_millis(ms.min(u64::try_from(max_ms - 1).unwrap_or(0)))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn iso(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    }

    #[test]
    fn a_cron_window_is_open_from_each_tick_for_its_duration() {
        // Sundays 02:00 UTC for 2 h; 2026-11-29 is a Sunday.
        let sunday = Cadence::cron("0 2 * * SUN").unwrap();
        let two_hours = Duration::from_secs(7200);
        assert!(!window_open(&sunday, two_hours, at("2026-11-29T01:59:59Z")));
        assert!(window_open(&sunday, two_hours, at("2026-11-29T02:00:00Z")));
        assert!(window_open(&sunday, two_hours, at("2026-11-29T03:59:59Z")));
        assert!(
            !window_open(&sunday, two_hours, at("2026-11-29T04:00:00Z")),
            "end exclusive"
        );
        assert!(
            !window_open(&sunday, two_hours, at("2026-11-30T02:30:00Z")),
            "a Monday"
        );
        assert_eq!(
            last_cron_tick_at_or_before(&sunday, at("2026-12-01T12:00:00Z")).map(iso),
            Some("2026-11-29T02:00:00.000Z".to_owned())
        );
        let interval = Cadence::Interval(Duration::from_secs(60));
        assert!(!window_open(&interval, two_hours, 0));
    }

    #[test]
    fn interval_ticks_are_anchored_on_the_first_fire() {
        let c = Cadence::Interval(Duration::from_secs(300));
        let anchor = first_tick(&c, 1_000, Duration::from_secs(30)).unwrap();
        assert_eq!(anchor, 31_000);
        assert_eq!(next_tick(&c, anchor, 0), Some(anchor));
        assert_eq!(next_tick(&c, anchor, anchor), Some(anchor + 300_000));
        // A cycle that took 12 s does not shift the grid.
        assert_eq!(
            next_tick(&c, anchor, anchor + 12_000),
            Some(anchor + 300_000)
        );
        assert_eq!(
            next_tick(&c, anchor, anchor + 300_000),
            Some(anchor + 600_000)
        );
    }

    #[test]
    fn an_overrun_skips_missed_ticks_instead_of_bursting() {
        let c = Cadence::Interval(Duration::from_secs(60));
        let anchor = 0;
        // The cycle of tick 0 ran until 3.5 intervals: ticks 1, 2 and 3 are gone.
        let now = 210_000;
        let next = next_tick(&c, anchor, now).unwrap();
        assert_eq!(next, 240_000);
        assert_eq!(skipped_ticks(&c, anchor, 0, next, 100), 3);
        assert_eq!(skipped_ticks(&c, anchor, 0, 60_000, 100), 0);
        assert_eq!(skipped_ticks(&c, anchor, 0, next, 2), 2, "capped");
    }

    #[test]
    fn cron_every_five_minutes() {
        let c = Cadence::cron("*/5 * * * *").unwrap();
        let t = at("2026-11-23T12:01:17.250Z");
        let n1 = next_tick(&c, 0, t).unwrap();
        assert_eq!(iso(n1), "2026-11-23T12:05:00.000Z");
        let n2 = next_tick(&c, 0, n1).unwrap();
        assert_eq!(iso(n2), "2026-11-23T12:10:00.000Z");
        // Exactly on a tick: strictly after means the following one.
        assert_eq!(
            iso(next_tick(&c, 0, at("2026-11-23T12:10:00Z")).unwrap()),
            "2026-11-23T12:15:00.000Z"
        );
        // Overrun from 12:05 to 12:17:30: 12:10 and 12:15 are skipped, next is 12:20.
        let next = next_tick(&c, 0, at("2026-11-23T12:17:30Z")).unwrap();
        assert_eq!(iso(next), "2026-11-23T12:20:00.000Z");
        assert_eq!(skipped_ticks(&c, 0, n1, next, 100), 2);
        // Across midnight and the year.
        assert_eq!(
            iso(next_tick(&c, 0, at("2026-12-31T23:58:00Z")).unwrap()),
            "2027-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn cron_first_tick_is_at_or_after_the_startup_delay() {
        let c = Cadence::cron("*/5 * * * *").unwrap();
        let start = at("2026-11-23T12:04:30Z");
        assert_eq!(
            iso(first_tick(&c, start, Duration::from_secs(30)).unwrap()),
            "2026-11-23T12:05:00.000Z"
        );
        assert_eq!(
            iso(first_tick(&c, start, Duration::from_secs(31)).unwrap()),
            "2026-11-23T12:10:00.000Z"
        );
    }

    #[test]
    fn cron_is_utc_so_dst_changes_nothing() {
        // 2026-03-29 01:00 UTC is the EU spring-forward instant, 2026-11-01 06:00 UTC the US
        // fall-back one: hourly ticks stay exactly one hour apart through both.
        let c = Cadence::cron("30 * * * *").unwrap();
        for start in ["2026-03-29T00:00:00Z", "2026-11-01T04:00:00Z"] {
            let mut t = at(start);
            let mut ticks = Vec::new();
            for _ in 0..4 {
                t = next_tick(&c, 0, t).unwrap();
                ticks.push(t);
            }
            assert!(ticks.windows(2).all(|w| w[1] - w[0] == 60 * MIN), "{start}");
        }
        let daily = Cadence::cron("0 2 * * *").unwrap();
        let t = next_tick(&daily, 0, at("2026-03-28T03:00:00Z")).unwrap();
        assert_eq!(iso(t), "2026-03-29T02:00:00.000Z");
        assert_eq!(next_tick(&daily, 0, t).unwrap() - t, 24 * 60 * MIN);
    }

    #[test]
    fn invalid_cron_names_the_expression() {
        for bad in [
            "*/5 * * *",
            "0 */5 * * * *",
            "61 * * * *",
            "nonsense a b c d",
            "",
        ] {
            let e = Cadence::cron(bad).unwrap_err();
            assert_eq!(e.expression, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let e = Cadence::from_config(Duration::from_secs(1), Some("99 * * * *")).unwrap_err();
        assert!(
            e.to_string().starts_with("schedule.cron: \"99 * * * *\""),
            "{e}"
        );
        assert!(matches!(
            Cadence::from_config(Duration::from_secs(7), None),
            Ok(Cadence::Interval(d)) if d == Duration::from_secs(7)
        ));
    }

    #[test]
    fn impossible_cron_has_no_next_tick() {
        let c = Cadence::cron("0 0 30 2 *").unwrap();
        assert_eq!(next_tick(&c, 0, at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let j = Duration::from_secs(5);
        assert_eq!(jitter_delay(j, 0.0), Duration::ZERO);
        assert_eq!(jitter_delay(j, 0.5), Duration::from_millis(2_500));
        for f in [0.999_999_9, 1.0, 7.0, f64::INFINITY] {
            let d = jitter_delay(j, f);
            assert!(d < j, "{f} → {d:?}");
        }
        assert_eq!(jitter_delay(j, -3.0), Duration::ZERO);
        assert_eq!(jitter_delay(j, f64::NAN), Duration::ZERO);
        assert_eq!(jitter_delay(Duration::ZERO, 0.7), Duration::ZERO);
        for i in 0..100 {
            let d = jitter_delay(j, f64::from(i) / 100.0);
            assert!(d < j);
        }
    }
}
