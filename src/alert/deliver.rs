//! The alert deliverer (DESIGN §7): a task that claims due outbox rows, POSTs each stored
//! payload to the Slack webhook, and records the outcome — delivered, retry later (429 after
//! `Retry-After`, 5xx/timeout/connect and other 4xx/3xx after an exponential backoff with
//! jitter, the latter at most `retry::REJECTED_ATTEMPTS` attempts), or abandoned (404/410, a
//! client error past its bound, or older than `give_up_after`; logged at ERROR, kept in the
//! outbox). A 400 `invalid_payload` is answered by sending the count-only message once
//! (abandoned if that fails too), and a resolved message whose fired alert was abandoned says
//! so. At most one POST per `min_interval` per webhook.
//!
//! Delivery is at least once: the row is marked delivered only after Slack's 2xx, so a crash in
//! between re-sends that one message on restart. It never sends from the cycle and never decides
//! classification itself (that is [`super::retry`]). The webhook URL is exposed only to build
//! the request: errors are stripped of URLs ([`reqwest::Error::without_url`]) and scrubbed of
//! the secret before they are logged or stored, and requests are never `Debug`-printed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::retry::{self, Attempt, Backoff, TransportFailure};
use super::slack::truncate;
use super::{AlertStats, slack};
use crate::clock::now_ms;
use crate::config::{AlertsConfig, Secret};
use crate::store::{LeaseName, OutboxRow, SharedDb, StateDb, StoreError, holder};
use canary_invariants::TransitionKind;

/// Rows claimed per outbox query: small, so a long queue does not hold stale rows in memory
/// while pacing works through it.
pub const BATCH: u32 = 8;
/// How often an idle deliverer looks for new rows (a cycle can also wake it: [`Deliverer::waker`]).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of an error response body kept for `last_error` (Slack answers with a short code such
/// as `no_service`).
const BODY_MAX: usize = 512;
/// Shortest deliverer-lease TTL. The lease is renewed at every poll (≤ [`POLL_INTERVAL`]) and
/// before every POST, so it only has to outlast one POST; a crashed deliverer on this host is
/// taken over at once (see `store::holder`), one on another host blocks for at most this long.
const DELIVERER_LEASE_MIN_TTL_MS: i64 = 30_000;

/// Errors setting the deliverer up or talking to its state database.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The state database failed.
    #[error("state database: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built (TLS backend).
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The blocking state-DB task died.
    #[error("state database task: {0}")]
    Task(String),
}

/// What one POST ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostOutcome {
    /// The classification.
    pub attempt: Attempt,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Short reason for logs and metrics: `ok`, `rate_limited`, `server`, `client`,
    /// `invalid_payload`, `timeout`, `connect`, `transport`, `build`.
    pub reason: &'static str,
    /// Human detail for `last_error` and logs (never contains the webhook URL).
    pub detail: String,
}

/// The HTTP client used for webhooks: per-POST timeout, no redirects (a webhook that redirects
/// is misconfigured, and following it would send the payload somewhere unreviewed).
pub fn client(timeout: Duration) -> Result<reqwest::Client, DeliverError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("canary/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DeliverError::Client(error_chain(&e.without_url())))
}

/// POSTs `payload` to `webhook` once and classifies the outcome. Used by the deliverer and by
/// `canary alert test`. Never returns or logs the URL.
pub async fn post_once(
    client: &reqwest::Client,
    webhook: &Secret,
    payload: &serde_json::Value,
) -> PostOutcome {
    match client.post(webhook.expose()).json(payload).send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_body_prefix(&mut response).await;
            let attempt = retry::classify_status(status, retry_after.as_deref(), &body);
            let reason = match attempt {
                Attempt::Delivered => "ok",
                Attempt::RetryAfter(_) => "rate_limited",
                Attempt::Backoff => "server",
                Attempt::Rejected | Attempt::Permanent => "client",
                Attempt::InvalidPayload => "invalid_payload",
            };
            let mut detail = format!("HTTP {status}");
            if !body.is_empty() {
                detail.push_str(": ");
                detail.push_str(&body);
            }
            PostOutcome {
                attempt,
                status: Some(status),
                reason,
                detail: scrub(&detail, webhook),
            }
        }
        Err(error) => {
            let failure = if error.is_builder() {
                TransportFailure::Build
            } else if error.is_timeout() {
                TransportFailure::Timeout
            } else if error.is_connect() {
                TransportFailure::Connect
            } else {
                TransportFailure::Other
            };
            PostOutcome {
                attempt: retry::classify_transport(failure),
                status: None,
                reason: failure.as_str(),
                detail: scrub(&error_chain(&error.without_url()), webhook),
            }
        }
    }
}

/// The first [`BODY_MAX`] bytes of a response body, lossily decoded and trimmed; empty on any
/// error (the status already says what matters).
async fn read_body_prefix(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(BODY_MAX);
    let text = String::from_utf8_lossy(&bytes);
    truncate(text.trim(), 200)
}

/// `error: cause: cause`, like `{:#}` for an error chain.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Removes the webhook URL and its path (Slack's token lives there) from `text`. Belt and
/// braces: `without_url` already drops the URL reqwest attaches, but causes deeper in the chain
/// are not under our control.
fn scrub(text: &str, webhook: &Secret) -> String {
    let secret = webhook.expose();
    let mut out = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[webhook]")
    };
    if let Ok(url) = reqwest::Url::parse(secret) {
        let path = url.path();
        if path.len() > 1 {
            out = out.replace(path, "/[redacted]");
        }
        if let Some(query) = url.query().filter(|q| !q.is_empty()) {
            out = out.replace(query, "[redacted]");
        }
    }
    out
}

/// Pacing per webhook: the earliest instant the next POST may start.
#[derive(Debug, Default)]
struct Pacer {
    next_post_at: Option<Instant>,
}

impl Pacer {
    /// Waits for the pace; `false` if cancelled meanwhile.
    async fn wait(&self, cancel: &CancellationToken) -> bool {
        let Some(at) = self.next_post_at.filter(|at| *at > Instant::now()) else {
            return !cancel.is_cancelled();
        };
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep_until(at) => true,
        }
    }

    fn not_before(&mut self, at: Instant) {
        self.next_post_at = Some(self.next_post_at.map_or(at, |t| t.max(at)));
    }
}

/// The deliverer. Build it with [`Deliverer::new`], share [`Deliverer::stats`] and
/// [`Deliverer::waker`], then spawn [`Deliverer::run`].
#[derive(Debug)]
pub struct Deliverer {
    /// Its own connection (WAL lets it sit beside the cycle's), called through the blocking
    /// pool like every state-DB call from async code.
    db: SharedDb,
    webhook: Option<Secret>,
    config: AlertsConfig,
    client: reqwest::Client,
    stats: Arc<AlertStats>,
    wake: Arc<Notify>,
    poll: Duration,
    /// Unique per deliverer instance: the holder of the state DB's deliverer lease.
    holder: String,
}

impl Deliverer {
    /// Opens its own connection to the state database at `db_path`. `webhook = None` makes
    /// [`Deliverer::run`] a silent sink that only waits for cancellation (the cycle writes no
    /// outbox rows then either).
    pub fn new(
        db_path: &Path,
        webhook: Option<Secret>,
        config: AlertsConfig,
    ) -> Result<Deliverer, DeliverError> {
        let db = StateDb::open(db_path)?;
        Ok(Deliverer {
            db: SharedDb::new(db),
            client: client(config.slack.timeout)?,
            webhook,
            config,
            stats: Arc::new(AlertStats::default()),
            wake: Arc::new(Notify::new()),
            poll: POLL_INTERVAL,
            holder: holder::holder_text("deliverer"),
        })
    }

    /// Uses shared counters (e.g. created by the daemon before the metrics endpoint).
    pub fn with_stats(mut self, stats: Arc<AlertStats>) -> Deliverer {
        self.stats = stats;
        self
    }

    /// Changes how often an idle deliverer polls the outbox.
    pub fn with_poll_interval(mut self, poll: Duration) -> Deliverer {
        self.poll = poll;
        self
    }

    /// The delivery counters.
    pub fn stats(&self) -> Arc<AlertStats> {
        Arc::clone(&self.stats)
    }

    /// `notify_one()` on this wakes an idle deliverer at once (e.g. after a cycle wrote rows).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Delivers until `cancel` fires. Stops between POSTs: an in-flight POST (bounded by the
    /// per-POST timeout) finishes and its outcome is recorded; undelivered rows stay in the
    /// outbox for the next run. State-DB errors are logged and retried on the next poll.
    pub async fn run(self, cancel: CancellationToken) {
        let Some(webhook) = self.webhook.clone() else {
            tracing::info!("no Slack webhook configured: alerts are recorded, not sent");
            cancel.cancelled().await;
            return;
        };
        tracing::info!(
            min_interval_ms =
                u64::try_from(self.config.slack.min_interval.as_millis()).unwrap_or(u64::MAX),
            "alert deliverer started"
        );
        let mut pacer = Pacer::default();
        // Wall-clock times (ms) of retries this deliverer scheduled, so it wakes right when one
        // is due instead of up to a poll interval later.
        let mut retries: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
        while !cancel.is_cancelled() {
            let now = now_ms();
            let rows = if !self.hold_lease().await {
                // Another deliverer is active on this state DB: stay idle, and take over if its
                // lease expires (it crashed).
                Ok(Vec::new())
            } else {
                self.with_db(move |db| db.due_outbox(now, BATCH)).await
            };
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(error = %error, "could not read the alert outbox; retrying");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                while retries.peek().is_some_and(|Reverse(at)| *at <= now) {
                    retries.pop();
                }
                let until_retry = retries.peek().map(|Reverse(at)| {
                    // +2 ms: wake just after the row is due, not just before.
                    Duration::from_millis(u64::try_from(at - now + 2).unwrap_or(0))
                });
                let sleep = until_retry.map_or(self.poll, |d| d.min(self.poll));
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(sleep) => {}
                }
                continue;
            }
            for row in rows {
                if cancel.is_cancelled() {
                    break;
                }
                if let Some(at) = self.attempt(&webhook, row, &mut pacer, &cancel).await {
                    retries.push(Reverse(at));
                }
            }
        }
        let holder = self.holder.clone();
        if let Err(error) = self
            .with_db(move |db| db.release(LeaseName::Deliverer, &holder))
            .await
        {
            tracing::warn!(error = %error, "could not release the deliverer lease; it expires");
        }
        tracing::info!("alert deliverer stopped");
    }

    /// Takes or renews the state DB's deliverer lease. Renewed before every POST, so a
    /// deliverer that waited out a long `Retry-After` re-checks that it is still the only one
    /// before sending. The TTL outlasts one POST (its timeout) with a wide margin.
    async fn hold_lease(&self) -> bool {
        let holder = self.holder.clone();
        let ttl = duration_ms(self.config.slack.timeout)
            .saturating_mul(3)
            .max(DELIVERER_LEASE_MIN_TTL_MS);
        let now = now_ms();
        match self
            .with_db(move |db| db.try_acquire(LeaseName::Deliverer, &holder, now, ttl))
            .await
        {
            Ok(lease) => lease.is_some(),
            Err(error) => {
                tracing::warn!(error = %error, "could not take the deliverer lease; retrying");
                false
            }
        }
    }

    /// Handles one due row. Returns the retry time (unix ms) when one was scheduled.
    async fn attempt(
        &self,
        webhook: &Secret,
        row: OutboxRow,
        pacer: &mut Pacer,
        cancel: &CancellationToken,
    ) -> Option<i64> {
        let give_up_ms = duration_ms(self.config.give_up_after);
        let age_ms = now_ms().saturating_sub(row.created_at_ms);
        if age_ms >= give_up_ms {
            let reason = format!(
                "gave up after {}: {}",
                slack::human_span(age_ms),
                row.last_error.as_deref().unwrap_or("never attempted")
            );
            self.abandon(&row, &reason, None).await;
            return None;
        }
        if !pacer.wait(cancel).await || !self.hold_lease().await {
            return None;
        }
        let payload = self.payload_to_send(&row).await;
        pacer.not_before(Instant::now() + self.config.slack.min_interval);
        let outcome = post_once(&self.client, webhook, &payload).await;
        let attempts = row.attempts.saturating_add(1);
        let done = now_ms();
        let stats = &self.stats;
        let (id, detail) = (row.id, outcome.detail.clone());
        let delay = match outcome.attempt {
            Attempt::Delivered => {
                AlertStats::bump(&stats.delivered);
                match self.with_db(move |db| db.mark_delivered(id, done)).await {
                    Ok(_) => tracing::info!(
                        alert.id = row.id,
                        invariant.id = %row.invariant_id,
                        transition.kind = row.kind.as_str(),
                        alert.attempts = attempts,
                        "alert delivered"
                    ),
                    Err(error) => tracing::error!(
                        alert.id = row.id,
                        invariant.id = %row.invariant_id,
                        error = %error,
                        "alert delivered but not recorded: it may be sent again"
                    ),
                }
                return None;
            }
            Attempt::Permanent => {
                AlertStats::bump(&stats.failed_permanent);
                self.abandon(&row, &outcome.detail, outcome.status).await;
                return None;
            }
            Attempt::InvalidPayload => {
                AlertStats::bump(&stats.failed_client);
                self.fall_back(webhook, &row, &payload, &outcome, pacer, cancel)
                    .await;
                return None;
            }
            Attempt::Rejected if retry::rejected_gives_up(attempts) => {
                AlertStats::bump(&stats.failed_client);
                let reason = format!("{} (rejected; attempt {attempts})", outcome.detail);
                self.abandon(&row, &reason, outcome.status).await;
                return None;
            }
            Attempt::Rejected => {
                AlertStats::bump(&stats.failed_client);
                Backoff {
                    initial: self.config.retry_initial,
                    max: self.config.retry_max,
                }
                .delay(attempts, rand::random::<f64>())
            }
            Attempt::RetryAfter(wait) => {
                AlertStats::bump(&stats.failed_rate_limited);
                // The whole webhook is rate limited, not just this row.
                pacer.not_before(Instant::now() + wait);
                wait
            }
            Attempt::Backoff => {
                AlertStats::bump(match outcome.reason {
                    "timeout" => &stats.failed_timeout,
                    "server" => &stats.failed_server,
                    _ => &stats.failed_connect,
                });
                Backoff {
                    initial: self.config.retry_initial,
                    max: self.config.retry_max,
                }
                .delay(attempts, rand::random::<f64>())
            }
        };
        let next_at = done.saturating_add(duration_ms(delay));
        tracing::warn!(
            alert.id = row.id,
            invariant.id = %row.invariant_id,
            http.status = outcome.status,
            alert.attempts = attempts,
            retry_in_ms = duration_ms(delay),
            reason = outcome.reason,
            error = %outcome.detail,
            "alert not delivered; will retry"
        );
        if let Err(error) = self
            .with_db(move |db| db.schedule_retry(id, attempts, next_at, &detail))
            .await
        {
            tracing::warn!(alert.id = row.id, error = %error, "could not record the retry");
        }
        Some(next_at)
    }

    /// The message to POST for `row`: its stored payload, except that a resolved message whose
    /// fired alert was abandoned says so (the reason is the fired row's secret-free
    /// `last_error`). If that cannot be looked up, the stored payload is sent as it is (logged
    /// at WARN): a resolution without its note beats no resolution.
    async fn payload_to_send(&self, row: &OutboxRow) -> serde_json::Value {
        if row.kind != TransitionKind::Resolved {
            return row.payload.clone();
        }
        let (id, invariant) = (row.id, row.invariant_id.clone());
        match self
            .with_db(move |db| db.abandoned_fired_before(id, &invariant))
            .await
        {
            Ok(Some(reason)) => {
                tracing::info!(
                    alert.id = row.id,
                    invariant.id = %row.invariant_id,
                    "resolved alert notes that its fired alert was not delivered"
                );
                slack::with_undelivered_note(&row.payload, &reason)
            }
            Ok(None) => row.payload.clone(),
            Err(error) => {
                tracing::warn!(
                    alert.id = row.id,
                    error = %error,
                    "could not check whether the fired alert was delivered; sending as stored"
                );
                row.payload.clone()
            }
        }
    }

    /// Slack answered 400 `invalid_payload` to `sent`: POST the count-only message derived from
    /// it, once. Delivered → the row is delivered; anything else (or `sent` already was the
    /// count-only message) → abandoned. A stop while waiting for the pace leaves the row pending.
    async fn fall_back(
        &self,
        webhook: &Secret,
        row: &OutboxRow,
        sent: &serde_json::Value,
        first: &PostOutcome,
        pacer: &mut Pacer,
        cancel: &CancellationToken,
    ) {
        let minimal = slack::count_only_fallback(sent);
        if minimal == *sent {
            let reason = format!("{} (already the count-only message)", first.detail);
            self.abandon(row, &reason, first.status).await;
            return;
        }
        tracing::warn!(
            alert.id = row.id,
            invariant.id = %row.invariant_id,
            http.status = first.status,
            error = %first.detail,
            "Slack rejected the alert's payload; sending the count-only message instead"
        );
        if !pacer.wait(cancel).await || !self.hold_lease().await {
            return;
        }
        pacer.not_before(Instant::now() + self.config.slack.min_interval);
        let outcome = post_once(&self.client, webhook, &minimal).await;
        if outcome.attempt == Attempt::Delivered {
            AlertStats::bump(&self.stats.delivered);
            let (id, done) = (row.id, now_ms());
            match self.with_db(move |db| db.mark_delivered(id, done)).await {
                Ok(_) => tracing::info!(
                    alert.id = row.id,
                    invariant.id = %row.invariant_id,
                    transition.kind = row.kind.as_str(),
                    alert.attempts = row.attempts.saturating_add(2),
                    "alert delivered as its count-only message"
                ),
                Err(error) => tracing::error!(
                    alert.id = row.id,
                    invariant.id = %row.invariant_id,
                    error = %error,
                    "alert delivered but not recorded: it may be sent again"
                ),
            }
            return;
        }
        let reason = format!(
            "{}; the count-only message failed too: {}",
            first.detail, outcome.detail
        );
        self.abandon(row, &reason, outcome.status.or(first.status))
            .await;
    }

    /// Marks a row abandoned and says so at ERROR: an operator must act (fix the webhook, or
    /// read the alert from the state database).
    async fn abandon(&self, row: &OutboxRow, reason: &str, status: Option<u16>) {
        AlertStats::bump(&self.stats.abandoned);
        tracing::error!(
            alert.id = row.id,
            invariant.id = %row.invariant_id,
            transition.kind = row.kind.as_str(),
            http.status = status,
            alert.attempts = row.attempts.saturating_add(u32::from(status.is_some())),
            error = %reason,
            "alert abandoned; it stays in the outbox"
        );
        let (id, at, reason) = (row.id, now_ms(), reason.to_owned());
        if let Err(error) = self
            .with_db(move |db| db.mark_abandoned(id, at, &reason))
            .await
        {
            tracing::warn!(alert.id = row.id, error = %error, "could not record the abandonment");
        }
    }

    /// Runs a state-DB call on the blocking pool (SQLite may wait on the busy timeout while a
    /// cycle holds the write lock; that must not stall the runtime).
    async fn with_db<T, F>(&self, f: F) -> Result<T, DeliverError>
    where
        T: Send + 'static,
        F: FnOnce(&StateDb) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.call(move |db| f(db)).await.map_err(|e| match e {
            StoreError::Task(detail) => DeliverError::Task(detail),
            e => DeliverError::Store(e),
        })
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_url_path_and_query() {
        let secret = Secret::new("https://hooks.example.com/services/T0/B0/TOKEN123?x=SECRETQ");
        let text = "error for https://hooks.example.com/services/T0/B0/TOKEN123?x=SECRETQ and \
                    /services/T0/B0/TOKEN123 and x=SECRETQ";
        let out = scrub(text, &secret);
        assert!(
            !out.contains("TOKEN123") && !out.contains("SECRETQ"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn unsendable_url_is_permanent_and_secret_free() {
        let c = client(Duration::from_secs(1)).unwrap();
        let secret = Secret::new("not a url TOKEN999");
        let out = post_once(&c, &secret, &serde_json::json!({"text": "x"})).await;
        assert_eq!(out.attempt, Attempt::Permanent);
        assert_eq!(out.reason, "build");
        assert!(!out.detail.contains("TOKEN999"), "{}", out.detail);
    }
}
