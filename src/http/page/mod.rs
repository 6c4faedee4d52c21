//! The status page, `GET /` (issue 14): server-rendered HTML (askama, `templates/status.html`),
//! no script and no external asset, refreshed by `<meta http-equiv="refresh">`.
//!
//! - `mod.rs` (this file): the handler: one state-DB call on the blocking pool gathers the
//!   [`model::Facts`], the pure [`model::build`] shapes them, askama renders; the response headers
//!   forbid scripts and caching.
//! - `model.rs`: the page model (pure, unit tested).
//!
//! Access is the router's job (`auth::require_page_access`), not this module's. It must not run
//! cycles or write anything.

pub mod model;

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::health::{LastCycle, Window, readiness};
use crate::clock::now_ms;
use crate::registry::Registry;
use crate::timing::Cadence;
use model::{BUCKET_MS, BUCKETS, Context, Facts, SilenceView, TRANSITIONS};

/// What the page may load: nothing but its own inline styles (and inline SVG, which is markup).
/// Even if escaping ever failed, a browser would run no script from it.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Shortest and longest auto-refresh: the cycle interval, clamped.
const REFRESH_MIN: Duration = Duration::from_secs(10);
const REFRESH_MAX: Duration = Duration::from_secs(60);

/// The page's refresh interval: the cycle interval clamped to 10–60 s (a cron schedule: 60 s).
pub fn refresh_interval(cadence: &Cadence) -> Duration {
    match cadence {
        Cadence::Interval(every) => (*every).clamp(REFRESH_MIN, REFRESH_MAX),
        Cadence::Cron(_) => REFRESH_MAX,
    }
}

/// `GET /`: the status page.
pub async fn status_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = now_ms();
    let start = model::timeline_start(now);
    let (facts, stored_silences) = state
        .runner
        .with_db(move |db| {
            let last_cycle = db.last_cycle()?;
            let counts = match &last_cycle {
                Some(c) => db.cycle_violation_counts(c.id)?,
                None => Default::default(),
            };
            let facts = Facts {
                states: db.load_states()?,
                last_violations: db.last_violation_per_invariant()?,
                buckets: db.cycle_buckets(start, BUCKET_MS, BUCKETS)?,
                transitions: db.recent_transitions(TRANSITIONS)?,
                last_cycle,
                counts,
            };
            Ok((facts, db.silences(now, false)?))
        })
        .await
        .map_err(|e| ApiError::internal("status page", &e))?;

    let config = state.runner.config();
    let schedule = &config.schedule;
    let window = Window {
        started_at_ms: state.started_at_ms,
        startup_delay: schedule.startup_delay,
        jitter: schedule.jitter,
    };
    let last = facts.last_cycle.as_ref().map(|c| LastCycle {
        started_at_ms: c.started_at_ms,
        finished_at_ms: c.finished_at_ms,
    });
    let ready = readiness(&state.cadence, &window, last, now);
    let ctx = Context {
        registry: Registry::new(config),
        blind_after: config.alerts.blind_after,
        refresh_secs: refresh_interval(&state.cadence).as_secs(),
        readiness: ready.as_ref().map(|_| ()).map_err(String::as_str),
        now_ms: now,
    };
    let silences = stored_silences
        .iter()
        .map(|s| SilenceView::new(s, now))
        .collect();
    let page = model::build(&facts, &ctx, silences);
    let html = page
        .render()
        .map_err(|e| ApiError::internal("rendering the status page", &e))?;
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_follows_the_interval_within_bounds() {
        let every = |s| refresh_interval(&Cadence::Interval(Duration::from_secs(s))).as_secs();
        assert_eq!((every(1), every(30), every(300)), (10, 30, 60));
        let cron = Cadence::cron("*/5 * * * *").unwrap();
        assert_eq!(refresh_interval(&cron).as_secs(), 60);
    }
}
