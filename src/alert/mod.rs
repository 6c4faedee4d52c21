//! Alerts (DESIGN §7), in the component shape pure → I/O:
//!
//! - [`slack`]: Block Kit payloads from a transition and its violations (pure; called by the
//!   cycle so the payload is stored in the outbox in the cycle's transaction).
//! - [`blind`]: the "canary is blind" message for a source unreadable for `blind_after` cycles
//!   (pure, from the same helpers).
//! - [`silence`]: what a silence or maintenance window covers, and what a cycle sends when one
//!   ends (pure; the cycle applies it inside its transaction).
//! - [`retry`]: what an HTTP outcome means for an outbox row, and the backoff (pure).
//! - [`deliver`]: the deliverer task: claims due outbox rows, POSTs them to the webhook, records
//!   the outcome, paces posts per webhook.
//! - [`heartbeat`]: the dead man's switch, pinged after every recorded cycle (`/fail` when a
//!   source was unavailable), beside the cycle, never delaying it.
//! - [`AlertStats`]: delivery counters shared through `Arc` with the metrics endpoint.
//!
//! Alerts are never sent from the cycle itself, and nothing here decides whether an invariant is
//! red: that is `canary-invariants`' job. The webhook URL is a secret and appears in no log,
//! error or stored `last_error`.

pub mod blind;
pub mod deliver;
pub mod heartbeat;
pub mod retry;
pub mod silence;
pub mod slack;

use std::sync::atomic::{AtomicU64, Ordering};

pub use deliver::{DeliverError, Deliverer, PostOutcome, post_once};
pub use retry::{Attempt, Backoff, TransportFailure};

/// Delivery counters (monotonic), read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Messages Slack accepted (2xx).
    pub delivered: AtomicU64,
    /// Attempts answered 429.
    pub failed_rate_limited: AtomicU64,
    /// Attempts answered 5xx.
    pub failed_server: AtomicU64,
    /// Attempts that timed out.
    pub failed_timeout: AtomicU64,
    /// Attempts that could not connect, or broke on the wire.
    pub failed_connect: AtomicU64,
    /// Attempts rejected with a client error that is retried a bounded number of times (a 4xx
    /// other than 404/410/429, a 3xx, 400 `invalid_payload`).
    pub failed_client: AtomicU64,
    /// Attempts with a permanent failure (404/410, unsendable request).
    pub failed_permanent: AtomicU64,
    /// Rows given up: permanent failures plus rows older than `give_up_after`.
    pub abandoned: AtomicU64,
}

/// A plain copy of [`AlertStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertStatsSnapshot {
    /// See [`AlertStats::delivered`].
    pub delivered: u64,
    /// See [`AlertStats::failed_rate_limited`].
    pub failed_rate_limited: u64,
    /// See [`AlertStats::failed_server`].
    pub failed_server: u64,
    /// See [`AlertStats::failed_timeout`].
    pub failed_timeout: u64,
    /// See [`AlertStats::failed_connect`].
    pub failed_connect: u64,
    /// See [`AlertStats::failed_client`].
    pub failed_client: u64,
    /// See [`AlertStats::failed_permanent`].
    pub failed_permanent: u64,
    /// See [`AlertStats::abandoned`].
    pub abandoned: u64,
}

impl AlertStatsSnapshot {
    /// `(outcome label, count)` pairs, a small fixed label set for a Prometheus counter family
    /// (`delivered`, `rate_limited`, `server_error`, `timeout`, `connect`, `client_error`,
    /// `permanent`, `abandoned`).
    pub fn by_outcome(&self) -> [(&'static str, u64); 8] {
        [
            ("delivered", self.delivered),
            ("rate_limited", self.failed_rate_limited),
            ("server_error", self.failed_server),
            ("timeout", self.failed_timeout),
            ("connect", self.failed_connect),
            ("client_error", self.failed_client),
            ("permanent", self.failed_permanent),
            ("abandoned", self.abandoned),
        ]
    }
}

impl AlertStats {
    /// Reads every counter (each atomically; the set is not one transaction, which metrics do
    /// not need).
    pub fn snapshot(&self) -> AlertStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AlertStatsSnapshot {
            delivered: get(&self.delivered),
            failed_rate_limited: get(&self.failed_rate_limited),
            failed_server: get(&self.failed_server),
            failed_timeout: get(&self.failed_timeout),
            failed_connect: get(&self.failed_connect),
            failed_client: get(&self.failed_client),
            failed_permanent: get(&self.failed_permanent),
            abandoned: get(&self.abandoned),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
