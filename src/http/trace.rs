//! Cross-cutting middleware: one span and one log line per request (method, path, status,
//! `duration_ms`), and the request timeout answered as a JSON 408.
//!
//! Probes (`/healthz`, `/readyz`, `/metrics`) are polled every few seconds by orchestrators and
//! scrapers, so their lines are DEBUG; so are the status page's successful loads (`/`: an open
//! page reloads itself every 10–60 s), while its refusals stay INFO; everything else is INFO.
//! Query strings are not logged: the path is enough to tell requests apart, and parameters are
//! the client's business.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;

/// Paths logged at DEBUG only.
const QUIET: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// The status page: DEBUG when answered 2xx, INFO otherwise.
const PAGE: &str = "/";

/// Middleware: a span around the request and one line when it is answered.
pub async fn trace(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let quiet = QUIET.contains(&path.as_str());
    let page = path == PAGE;
    let span = if quiet || page {
        tracing::debug_span!(
            "http.request",
            http.method = %method,
            http.path = %path,
            http.status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        )
    } else {
        tracing::info_span!(
            "http.request",
            http.method = %method,
            http.path = %path,
            http.status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        )
    };
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    // On the span too, so a JSON log or a trace exporter sees the whole request in one place.
    span.record("http.status", status);
    span.record("duration_ms", duration_ms);
    span.in_scope(|| {
        if quiet || (page && response.status().is_success()) {
            tracing::debug!(http.status = status, duration_ms, "request answered");
        } else if page {
            // Its span is DEBUG (not shown at INFO): the line carries what the span would.
            tracing::info!(
                http.method = %method,
                http.path = %path,
                http.status = status,
                duration_ms,
                "request answered"
            );
        } else {
            tracing::info!(http.status = status, duration_ms, "request answered");
        }
    });
    response
}

/// Middleware: answers 408 when the inner service takes longer than the configured timeout.
///
/// The inner future is dropped at the deadline; the run-cycle handler therefore runs the cycle
/// on its own task, so a timed-out client never leaves a half-run cycle (or its lease) behind.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
