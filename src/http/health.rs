//! The unauthenticated probes: `GET /healthz` (the process answers), `GET /readyz` (the state
//! database takes writes and cycles are happening on schedule) and `GET /metrics`.
//!
//! Readiness is decided by the pure [`readiness`] from the schedule's own tick arithmetic, so an
//! interval and a cron schedule are judged alike: ready while the last *finished* cycle is at
//! most one missed tick old (plus its own duration, since the next cycle may take as long), or,
//! before any cycle, until one tick after the first scheduled one. Judging by the finish keeps a
//! cycle that overruns the interval from flapping the probe.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::metrics::CONTENT_TYPE;
use crate::clock::{format_ms, now_ms};
use crate::timing::{self, Cadence};

/// How long a probe waits for the state database while a cycle holds it. Cycles are usually
/// milliseconds; a probe that waited for a stuck one would itself hang, so it gives up and
/// reports the database as busy.
const DB_WAIT: Duration = Duration::from_secs(5);

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 `{"status":"ready",...}` or 503 `{"status":"not ready","reason":...}`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let probe = state.runner.with_db_within(DB_WAIT, |db| {
        let writable = db.check_writable();
        let last = db.last_cycle();
        Ok((writable, last))
    });
    let (writable, last) = match probe.await {
        Some(Ok(r)) => r,
        Some(Err(error)) => {
            tracing::warn!(error = %error, "readiness: state database call did not run");
            return not_ready("state database unreadable");
        }
        None => return not_ready("state database busy: a cycle has held it for over 5 s"),
    };
    if let Err(error) = writable {
        // A readiness failure is the probe's answer, not a request failure: WARN, not ERROR.
        tracing::warn!(error = %error, "readiness: state database not writable");
        return not_ready("state database not writable");
    }
    let last = match last {
        Ok(last) => last.map(|c| LastCycle {
            started_at_ms: c.started_at_ms,
            finished_at_ms: c.finished_at_ms,
        }),
        Err(error) => {
            tracing::warn!(error = %error, "readiness: cannot read the last cycle");
            return not_ready("state database unreadable");
        }
    };
    let schedule = &state.runner.config().schedule;
    let window = Window {
        started_at_ms: state.started_at_ms,
        startup_delay: schedule.startup_delay,
        jitter: schedule.jitter,
    };
    match readiness(&state.cadence, &window, last, now_ms()) {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "last_cycle_at": last.map(|c| format_ms(c.started_at_ms)),
                "last_cycle_finished_at": last.map(|c| format_ms(c.finished_at_ms)),
            })),
        )
            .into_response(),
        Err(reason) => not_ready(&reason),
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not ready", "reason": reason })),
    )
        .into_response()
}

/// `GET /metrics`: the registry, with the outbox depth read from the state DB first.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let depth = state
        .runner
        .with_db_within(DB_WAIT, |db| db.outbox_depth())
        .await;
    match depth {
        Some(Ok(depth)) => state.metrics.set_outbox_depth(depth),
        // A scrape must not fail because one gauge is stale: keep its previous value.
        Some(Err(error)) => tracing::warn!(error = %error, "metrics: cannot read the outbox depth"),
        None => tracing::debug!("metrics: state database busy; outbox depth not refreshed"),
    }
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::internal("rendering metrics", &e))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// The process facts readiness is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the server state was built (≈ process start), unix ms.
    pub started_at_ms: i64,
    /// `schedule.startup_delay`.
    pub startup_delay: Duration,
    /// `schedule.jitter` (a tick may fire up to this late).
    pub jitter: Duration,
}

/// The last recorded cycle, as readiness needs it (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCycle {
    /// When it started.
    pub started_at_ms: i64,
    /// When it finished (was recorded).
    pub finished_at_ms: i64,
}

/// Ready when `now` is before the later of two deadlines: one missed tick after the last cycle
/// *finished* (the tick after its next one) plus that cycle's duration (the next one may take as
/// long: a cycle longer than the interval makes the schedule skip ticks, not fall behind), and
/// one tick after the first scheduled tick of this process (the grace before, or just after, a
/// restart). `Err` says why not.
pub fn readiness(
    cadence: &Cadence,
    window: &Window,
    last: Option<LastCycle>,
    now_ms: i64,
) -> Result<(), String> {
    let jitter = i64::try_from(window.jitter.as_millis()).unwrap_or(i64::MAX);
    let second_tick_after = |anchor: i64| {
        timing::next_tick(cadence, anchor, anchor)
            .and_then(|next| timing::next_tick(cadence, anchor, next))
            // A schedule with no future tick cannot be late.
            .map_or(i64::MAX, |t| t.saturating_add(jitter))
    };
    let from_start = timing::first_tick(cadence, window.started_at_ms, window.startup_delay)
        .and_then(|first| timing::next_tick(cadence, first, first))
        .map_or(i64::MAX, |t| t.saturating_add(jitter));
    let from_last = last.map_or(i64::MIN, |c| {
        let duration = c.finished_at_ms.saturating_sub(c.started_at_ms).max(0);
        second_tick_after(c.finished_at_ms).saturating_add(duration)
    });
    if now_ms <= from_start.max(from_last) {
        return Ok(());
    }
    Err(match last {
        Some(last) => format!(
            "last cycle finished {} ago ({}), more than one missed tick",
            humantime::format_duration(Duration::from_secs(
                u64::try_from(now_ms.saturating_sub(last.finished_at_ms) / 1000).unwrap_or(0)
            )),
            format_ms(last.finished_at_ms)
        ),
        None => "no cycle has completed since start".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A cycle that took no time.
    fn at(ms: i64) -> Option<LastCycle> {
        Some(LastCycle {
            started_at_ms: ms,
            finished_at_ms: ms,
        })
    }

    fn window(start: i64) -> Window {
        Window {
            started_at_ms: start,
            startup_delay: Duration::from_secs(30),
            jitter: Duration::ZERO,
        }
    }

    #[test]
    fn interval_schedule() {
        let c = Cadence::Interval(Duration::from_secs(300));
        let start = 1_000_000_000;
        let w = window(start);
        // Before the first cycle: ready until startup_delay + one interval.
        assert!(readiness(&c, &w, None, start + 30_000 + 5 * MIN).is_ok());
        let e = readiness(&c, &w, None, start + 30_001 + 5 * MIN).unwrap_err();
        assert!(e.contains("no cycle"), "{e}");
        // After a cycle: ready for two intervals.
        let last = start + 10 * MIN;
        assert!(readiness(&c, &w, at(last), last + 10 * MIN).is_ok());
        let e = readiness(&c, &w, at(last), last + 10 * MIN + 1).unwrap_err();
        assert!(e.contains("10m"), "{e}");
        // A restart right after a long outage: grace from the process start.
        let late = start + 100 * MIN;
        assert!(readiness(&c, &window(late), at(last), late + MIN).is_ok());
    }

    #[test]
    fn jitter_extends_the_deadline() {
        let c = Cadence::Interval(Duration::from_secs(60));
        let mut w = window(0);
        w.jitter = Duration::from_secs(5);
        let last = 10 * MIN;
        assert!(readiness(&c, &w, at(last), last + 2 * MIN + 5_000).is_ok());
        assert!(readiness(&c, &w, at(last), last + 2 * MIN + 5_001).is_err());
    }

    #[test]
    fn cron_schedule() {
        // Hourly on the hour; last cycle at 10:00 → late after 12:00.
        let c = Cadence::cron("0 * * * *").unwrap();
        let hour = 60 * MIN;
        let ten = 1_795_341_600_000; // 2026-11-22T10:00:00Z
        let w = window(ten - 5 * hour);
        assert!(readiness(&c, &w, at(ten), ten + 2 * hour).is_ok());
        assert!(readiness(&c, &w, at(ten), ten + 2 * hour + 1).is_err());
    }

    /// A cycle longer than the interval: the schedule skips the ticks it overran, so the probe
    /// must stay ready while the next (equally long) cycle runs.
    #[test]
    fn a_cycle_longer_than_the_interval_does_not_flap() {
        let c = Cadence::Interval(Duration::from_secs(60));
        let w = window(0);
        let first = LastCycle {
            started_at_ms: 10 * MIN,
            finished_at_ms: 10 * MIN + 150_000,
        };
        // The next cycle starts at the next tick after 12:30 (13:00) and finishes at 15:30.
        for now in (first.finished_at_ms..=13 * MIN + 150_000).step_by(1_000) {
            assert!(
                readiness(&c, &w, Some(first), now).is_ok(),
                "not ready at {now}"
            );
        }
        // But a schedule that stopped is still seen: two ticks plus one cycle after the finish.
        let deadline = first.finished_at_ms + 2 * MIN + 150_000;
        assert!(readiness(&c, &w, Some(first), deadline).is_ok());
        let e = readiness(&c, &w, Some(first), deadline + 1).unwrap_err();
        assert!(e.contains("finished"), "{e}");
    }
}
