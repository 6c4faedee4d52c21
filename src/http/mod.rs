//! The admin HTTP API (DESIGN §8): probes and metrics without authentication, the admin routes
//! under `/api/canary/` behind a bearer token, the HTML status page on `/` behind HTTP Basic (the
//! token as the password) unless `http.status_page.public`.
//!
//! - `mod.rs`: [`AppState`], the [`router`] (which layers wrap which routes) and [`serve`]
//!   (injected listener, graceful shutdown on a token; nothing here touches signals).
//! - `auth.rs`: the token checks (bearer; Basic for the page), fail-closed when no token is
//!   configured.
//! - `handlers.rs`: the admin routes; `silences.rs`: `/api/canary/silences`; `health.rs`:
//!   `/healthz`, `/readyz`, `/metrics`; `page/`: the status page (its model and the askama
//!   template `templates/status.html`).
//! - `params.rs`: pure parsing of query strings and bodies; `error.rs`: status codes and JSON
//!   error bodies; `trace.rs`: request logging and the timeout; `metrics.rs`: [`Metrics`].
//! - `drain.rs`: reads what a handler left of a request body before answering, so a refused
//!   body (413, 401) gets its answer rather than a connection reset.
//!
//! It must not run cycles by itself or decide anything about invariants: every cycle goes
//! through the shared single-flight [`CycleRunner`].

mod auth;
mod drain;
mod error;
mod handlers;
mod health;
pub mod metrics;
pub mod page;
mod params;
pub mod silences;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use health::{Window, readiness};
pub use metrics::Metrics;

use crate::clock::now_ms;
use crate::config::{ConfigError, Secret};
use crate::schedule::runner::CycleRunner;
use crate::timing::Cadence;

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    runner: CycleRunner,
    admin_token: Option<Secret>,
    metrics: Arc<Metrics>,
    cadence: Arc<Cadence>,
    started_at_ms: i64,
    /// Pinged after an admin-triggered cycle with transitions, so its alerts go out now rather
    /// than at the deliverer's next poll (the scheduler does the same for scheduled cycles).
    alert_waker: Option<Arc<tokio::sync::Notify>>,
    /// The dead man's switch, pinged after an admin-triggered cycle too.
    heartbeat: Option<crate::alert::heartbeat::Heartbeat>,
}

impl AppState {
    /// State for a server running cycles through `runner`, admitting `admin_token` (none = admin
    /// routes answer 503), counting into `metrics` (share the same `Arc` with the scheduler).
    /// The readiness clock starts now.
    pub fn new(
        runner: CycleRunner,
        admin_token: Option<Secret>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        let schedule = &runner.config().schedule;
        // The daemon refuses a bad cron before it builds this; should one slip through anyway,
        // judging readiness by the plain interval is better than refusing to serve.
        let cadence = Cadence::from_config(schedule.interval, schedule.cron.as_deref())
            .unwrap_or(Cadence::Interval(schedule.interval));
        metrics.set_instance(&runner.config().alerts.instance_name());
        AppState {
            runner,
            admin_token,
            metrics,
            cadence: Arc::new(cadence),
            started_at_ms: now_ms(),
            alert_waker: None,
            heartbeat: None,
        }
    }

    /// Pings `heartbeat` after admin-triggered cycles as the scheduler does after its own.
    pub fn with_heartbeat(
        mut self,
        heartbeat: Option<crate::alert::heartbeat::Heartbeat>,
    ) -> AppState {
        self.heartbeat = heartbeat;
        self
    }

    /// [`AppState::new`] with the admin token read from the runner's configuration
    /// (`http.admin_token` or `http.admin_token_file`) and fresh metrics.
    pub fn from_config(runner: CycleRunner) -> Result<AppState, ConfigError> {
        let token = runner.config().admin_token()?;
        Ok(AppState::new(runner, token, Arc::new(Metrics::new())))
    }

    /// Wakes the alert deliverer after admin-triggered cycles that produced transitions.
    pub fn with_alert_waker(mut self, waker: Arc<tokio::sync::Notify>) -> AppState {
        self.alert_waker = Some(waker);
        self
    }

    /// The metrics this server renders (hand a clone to whatever else runs cycles).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// The whole API. Layers, outermost first: request trace → drain of an unread body → timeout →
/// body limit → (admin routes and the page) token check → handler. The trace is outermost so a
/// 408 or a 401 is logged like any answer; the token is checked before any handler reads a body
/// (a refused body is only drained: read and discarded); the drain sits outside the timeout so it
/// never turns a 413 into a 408 (it stops at the same deadline).
pub fn router(state: AppState) -> Router {
    let http = &state.runner.config().http;
    let body_limit = http.body_limit_bytes;
    let request_timeout: Duration = http.request_timeout;

    let admin = Router::new()
        .route("/run-cycle", post(handlers::run_cycle))
        .route("/violations", get(handlers::violations))
        .route("/violations/stats", get(handlers::stats))
        .route("/violations/{id}", get(handlers::violation))
        .route("/status", get(handlers::status))
        .route("/invariants", get(handlers::invariants))
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/{id}", delete(silences::expire))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    let page = Router::new()
        .route("/", get(page::status_page))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_page_access,
        ));

    Router::new()
        .merge(page)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/canary", admin)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            trace::timeout,
        ))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            drain::drain_unread_body,
        ))
        .layer(middleware::from_fn(trace::trace))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// in-flight requests finish (the caller bounds how long it waits for that).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
