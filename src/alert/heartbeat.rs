//! The dead man's switch (`alerts.heartbeat`): after every recorded cycle, one request to the
//! configured URL, or to `<url>/fail` when a source was unavailable (the healthchecks.io and
//! Uptime Kuma conventions). The service outside canary pages when the pings stop: canary died,
//! hung, or lost its host.
//!
//! A ping runs on a task of its own, bounded by its timeout: it never delays a cycle, and an
//! unreachable pinger only counts `canary_heartbeat_pings_total{outcome="failed"}` and logs at
//! WARN (once per failure streak). The URL is a secret: it is never logged (errors say only
//! what failed).
//!
//! It must not decide anything about the cycle (it reads the verdict it is given).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{HeartbeatConfig, HeartbeatMethod, Secret};
use crate::cycle::CycleResult;
use crate::http::metrics::Metrics;

/// Pings the heartbeat URL after each cycle. Cheap to clone.
#[derive(Clone)]
pub struct Heartbeat {
    client: reqwest::Client,
    url: Secret,
    method: HeartbeatMethod,
    metrics: Arc<Metrics>,
    /// A failure was already logged: the next ones stay quiet until a ping succeeds.
    failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why the heartbeat client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("heartbeat client: {0}")]
pub struct HeartbeatError(String);

impl Heartbeat {
    /// A heartbeat for `url` with `config`'s method and timeout, counting into `metrics`.
    pub fn new(
        url: Secret,
        config: &HeartbeatConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Heartbeat, HeartbeatError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HeartbeatError(e.without_url().to_string()))?;
        Ok(Heartbeat {
            client,
            url,
            method: config.method,
            metrics,
            failing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The URL to request after `result`: `…/fail` when a source was unavailable.
    fn target(&self, result: &CycleResult) -> String {
        let base = self.url.expose().trim_end_matches('/');
        if result.sources_unavailable.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/fail")
        }
    }

    /// Pings for `result` on a task of its own (returns at once).
    pub fn ping(&self, result: &CycleResult) {
        let url = self.target(result);
        let this = self.clone();
        tokio::spawn(async move {
            let request = match this.method {
                HeartbeatMethod::Get => this.client.get(&url),
                HeartbeatMethod::Post => this.client.post(&url).body(""),
            };
            let outcome = match request.send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
                Err(e) => Err(e.without_url().to_string()),
            };
            this.metrics.observe_heartbeat(outcome.is_ok());
            match outcome {
                Ok(()) => {
                    if this.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("heartbeat ping delivered again");
                    }
                }
                Err(error) => {
                    if !this.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "heartbeat ping failed (the URL is not shown)");
                    }
                }
            }
        });
    }
}
