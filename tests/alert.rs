//! Alert delivery end to end: the real [`Deliverer`] against a real local webhook receiver
//! (`support::webhook`) and a real state database file, outbox rows written by
//! `StateDb::record_cycle` exactly as a cycle writes them. Covers retry on 5xx, 429 with
//! `Retry-After`, permanent 404, an outage, a restart of the deliverer, pacing, giving up, the
//! silent sink, and that the webhook URL never reaches a log line or a stored error. Issue 11
//! §4: a source unreadable (Redis killed, wrong password, SQLite file moved) for `blind_after`
//! cycles gives exactly one fired and, once readable, one resolved "canary is blind" POST.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary::alert::{Deliverer, slack};
use canary::clock::now_ms;
use canary::config::{AlertsConfig, Secret, SlackConfig};
use canary::store::{CycleRecord, StateDb};
use canary_invariants::{Memory, Severity, Tier, Transition, TransitionKind, Violation};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::support::webhook::{PATH, Reply, Webhook};

/// The distinctive part of every test webhook URL (see `support::webhook::PATH`).
const TOKEN: &str = "SECRETTOKEN0123";

struct Env {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    StateDb::open(&db).unwrap();
    Env { _dir: dir, db }
}

/// Records one cycle with a fired transition per id (and one violation each), so the outbox
/// holds one real Slack payload per id, created at `created_at_ms`.
fn seed_at(db: &Path, ids: &[&str], created_at_ms: i64) {
    seed_kind(db, ids, created_at_ms, TransitionKind::Fired);
}

/// Records one cycle with a transition of `kind` per id (a fired one with one violation each).
fn seed_kind(db: &Path, ids: &[&str], created_at_ms: i64, kind: TransitionKind) {
    let mut db = StateDb::open(db).unwrap();
    let transitions: Vec<Transition> = ids
        .iter()
        .map(|id| Transition {
            invariant_id: (*id).to_owned(),
            kind,
            severity: Severity::Critical,
            at_ms: created_at_ms,
            previous_at_ms: (kind == TransitionKind::Resolved).then_some(created_at_ms - 60_000),
            reminder: false,
        })
        .collect();
    let violations: Vec<Violation> = ids
        .iter()
        .filter(|_| kind == TransitionKind::Fired)
        .map(|id| Violation {
            invariant_id: (*id).to_owned(),
            tier: Tier::A,
            severity: Severity::Critical,
            subject: format!("subject-of-{id}"),
            summary: "broken".to_owned(),
            observed_state: serde_json::json!({ "agent": "agent-a" }),
            signal: "test".to_owned(),
        })
        .collect();
    let payloads: Vec<serde_json::Value> = transitions
        .iter()
        .map(|t| slack::payload(t, &violations, created_at_ms))
        .collect();
    let (counts, severities) = canary::store::tally(&violations);
    db.record_cycle(&CycleRecord {
        started_at_ms: created_at_ms,
        finished_at_ms: created_at_ms,
        duration_ms: 1.0,
        trigger: "test",
        checks_run: &[],
        outcomes: &BTreeMap::new(),
        sources_unavailable: &[],
        taken_at_ms: created_at_ms,
        violations: &violations,
        violation_counts: &counts,
        severities: &severities,
        states: &[],
        transitions: &transitions,
        outbox_payloads: &payloads,
        planner: None,
        previous_memory: &Memory::default(),
        next_memory: &Memory::default(),
    })
    .unwrap();
}

fn seed(db: &Path, ids: &[&str]) {
    seed_at(db, ids, now_ms());
}

#[derive(Debug)]
struct Row {
    attempts: i64,
    delivered: bool,
    abandoned: bool,
    last_error: Option<String>,
}

fn rows(db: &Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT attempts, delivered_at IS NOT NULL, abandoned_at IS NOT NULL, last_error
             FROM alert_outbox ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            attempts: r.get(0)?,
            delivered: r.get(1)?,
            abandoned: r.get(2)?,
            last_error: r.get(3)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Waits until `check` holds on the outbox rows.
async fn wait_rows(db: &Path, timeout: Duration, check: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = rows(db);
        if check(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "outbox never matched: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(retry_initial_ms: u64, retry_max_ms: u64, min_interval_ms: u64) -> AlertsConfig {
    AlertsConfig {
        slack: SlackConfig {
            timeout: Duration::from_secs(2),
            min_interval: Duration::from_millis(min_interval_ms),
            ..SlackConfig::default()
        },
        retry_initial: Duration::from_millis(retry_initial_ms),
        retry_max: Duration::from_millis(retry_max_ms),
        ..AlertsConfig::default()
    }
}

/// Log lines captured in memory (the deliverer's task runs with this subscriber).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Running {
    stats: Arc<canary::alert::AlertStats>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    logs: Logs,
}

impl Running {
    async fn stop(self) -> Logs {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("deliverer stops promptly")
            .unwrap();
        self.logs
    }
}

fn start(db: &Path, url: Option<String>, config: AlertsConfig) -> Running {
    let deliverer = Deliverer::new(db, url.map(Secret::new), config)
        .unwrap()
        .with_poll_interval(Duration::from_millis(100));
    let stats = deliverer.stats();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(deliverer.run(cancel.clone()).with_subscriber(subscriber));
    Running {
        stats,
        cancel,
        task,
        logs,
    }
}

fn invariant_of(body: &serde_json::Value) -> String {
    body["text"]
        .as_str()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered_once() {
    let env = self::env();
    let hook = Webhook::start(vec![
        Reply::status(500),
        Reply::status(503),
        Reply::status(200),
    ])
    .await;
    seed(&env.db, &["S-01"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let got = hook.wait_for(3, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    assert_eq!(
        r[0].attempts, 2,
        "two failed attempts recorded before the success"
    );
    assert!(
        got.iter()
            .all(|g| g.path == PATH && invariant_of(&g.body) == "S-01")
    );
    assert_eq!(
        got[0].body, got[2].body,
        "the stored payload is re-sent unchanged"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.received().len(), 3, "nothing after the 200");
    let stats = run.stats.snapshot();
    assert_eq!((stats.delivered, stats.failed_server), (1, 2), "{stats:?}");
    run.stop().await;
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after() {
    let env = self::env();
    let hook = Webhook::start(vec![Reply::status(429).header("retry-after", "2")]).await;
    seed(&env.db, &["E-02"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(2), "second POST after {gap:?}");
    assert!(gap < Duration::from_secs(5), "but not much later: {gap:?}");
    wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    run.stop().await;
}

#[tokio::test]
async fn not_found_is_permanent_logged_and_kept() {
    let env = self::env();
    let hook = Webhook::start(vec![Reply::status(404).body("no_service")]).await;
    seed(&env.db, &["L-03"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    hook.wait_for(1, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    assert!(!r[0].delivered);
    assert_eq!(r[0].last_error.as_deref(), Some("HTTP 404: no_service"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "no retry after a permanent failure"
    );
    let stats = run.stats.snapshot();
    assert_eq!(
        (stats.failed_permanent, stats.abandoned, stats.delivered),
        (1, 1, 0)
    );
    let logs = run.stop().await.text();
    let line = logs
        .lines()
        .find(|l| l.contains("alert abandoned"))
        .unwrap_or_else(|| panic!("no abandon log in:\n{logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("invariant.id=L-03") && line.contains("http.status=404"),
        "{line}"
    );
    assert!(line.contains("alert.id=1"), "{line}");
}

#[tokio::test]
async fn a_client_error_is_retried_then_delivered() {
    let env = self::env();
    let hook = Webhook::start(vec![Reply::status(400).body("invalid_token")]).await;
    seed(&env.db, &["S-01"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    assert!(!r[0].abandoned);
    assert_eq!(r[0].attempts, 1, "one rejected attempt before the success");
    assert_eq!(
        got[0].body, got[1].body,
        "the stored payload is re-sent unchanged"
    );
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(50),
        "retried after the backoff: {gap:?}"
    );
    let stats = run.stats.snapshot();
    assert_eq!(
        (stats.delivered, stats.failed_client, stats.abandoned),
        (1, 1, 0),
        "{stats:?}"
    );
    run.stop().await;
}

#[tokio::test]
async fn invalid_payload_falls_back_to_the_count_only_message_once() {
    let env = self::env();
    let hook = Webhook::start(vec![Reply::status(400).body("invalid_payload")]).await;
    seed(&env.db, &["S-01"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    assert!(!r[0].abandoned);
    let (full, minimal) = (&got[0].body, &got[1].body);
    assert!(full.to_string().contains("subject-of-S-01"), "{full}");
    // What arrives second is the same message's header and counts, nothing from the data.
    assert_eq!(minimal["text"], full["text"]);
    let blocks = minimal["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2, "{minimal}");
    assert_eq!(blocks[0], full["blocks"][0], "same header");
    assert_eq!(blocks[0]["type"], "header");
    let summary = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        summary.starts_with("*Fired* · severity *critical* · 1 violation · snapshot ")
            && summary.ends_with("(details omitted: see `canary violations`)"),
        "{summary}"
    );
    for gone in ["subject-of-S-01", "agent-a", "broken", "Runbook"] {
        assert!(!minimal.to_string().contains(gone), "{gone} in {minimal}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.received().len(), 2, "nothing after the fallback's 200");
    run.stop().await;
}

#[tokio::test]
async fn invalid_payload_twice_is_abandoned_after_one_fallback() {
    let env = self::env();
    let hook = Webhook::start(vec![
        Reply::status(400).body("invalid_payload"),
        Reply::status(400).body("invalid_payload"),
    ])
    .await;
    seed(&env.db, &["E-02"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    hook.wait_for(2, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    assert_eq!(
        r[0].last_error.as_deref(),
        Some(
            "HTTP 400: invalid_payload; the count-only message failed too: HTTP 400: \
             invalid_payload"
        )
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.received().len(), 2, "the fallback is sent once");
    let logs = run.stop().await.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("ERROR") && l.contains("alert abandoned")),
        "{logs}"
    );
}

#[tokio::test]
async fn gone_webhooks_are_abandoned_at_once() {
    let env = self::env();
    let hook = Webhook::start(vec![
        Reply::status(410).body("channel_is_archived"),
        Reply::status(404).body("no_service"),
    ])
    .await;
    seed(&env.db, &["E-02", "S-01"]);
    let run = start(&env.db, Some(hook.url()), config(50, 100, 10));
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| {
        r.iter().all(|r| r.abandoned)
    })
    .await;
    assert!(r.iter().all(|r| !r.delivered && r.attempts == 0), "{r:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.received().len(), 2, "no retry of a 404 or a 410");
    run.stop().await;
}

#[tokio::test]
async fn redirects_are_retried_then_abandoned_after_the_bound() {
    let env = self::env();
    let bound = canary::alert::retry::REJECTED_ATTEMPTS as usize;
    let replies = (0..bound + 2)
        .map(|_| Reply::status(302).header("location", "http://127.0.0.1:9/elsewhere"))
        .collect();
    let hook = Webhook::start(replies).await;
    seed(&env.db, &["L-03"]);
    let run = start(&env.db, Some(hook.url()), config(20, 60, 5));
    let got = hook.wait_for(bound, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    assert!(!r[0].delivered);
    assert_eq!(
        r[0].last_error.as_deref(),
        Some(format!("HTTP 302 (rejected; attempt {bound})").as_str())
    );
    assert_eq!(
        r[0].attempts,
        bound as i64 - 1,
        "retries recorded before giving up"
    );
    assert!(
        got.iter().all(|g| g.path == PATH),
        "the redirect is not followed"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        hook.received().len(),
        bound,
        "abandoned after {bound} attempts"
    );
    let stats = run.stats.snapshot();
    assert_eq!(
        (stats.failed_client, stats.abandoned, stats.delivered),
        (bound as u64, 1, 0),
        "{stats:?}"
    );
    run.stop().await;
}

#[tokio::test]
async fn resolved_after_an_abandoned_fired_alert_says_so() {
    let env = self::env();
    let hook = Webhook::start(vec![Reply::status(404).body("no_service")]).await;
    let t0 = now_ms();
    seed_at(&env.db, &["S-03"], t0);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    wait_rows(&env.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    // The webhook is fixed; the incident resolves.
    seed_kind(&env.db, &["S-03"], now_ms(), TransitionKind::Resolved);
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[1].delivered).await;
    assert!(r[0].abandoned && !r[0].delivered);
    let resolved = &got[1].body;
    let text = resolved["text"].as_str().unwrap();
    assert!(
        text.contains("resolved — note: the fired alert for this incident could not be delivered: HTTP 404: no_service"),
        "{text}"
    );
    let summary = resolved["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        summary.starts_with("*Resolved*")
            && summary.contains("could not be delivered: HTTP 404: no_service"),
        "{summary}"
    );
    // A later incident whose fired alert got through resolves without the note.
    seed_at(&env.db, &["S-03"], now_ms());
    wait_rows(&env.db, Duration::from_secs(5), |r| {
        r.len() == 3 && r[2].delivered
    })
    .await;
    seed_kind(&env.db, &["S-03"], now_ms(), TransitionKind::Resolved);
    let got = hook.wait_for(4, Duration::from_secs(10)).await;
    assert!(
        !got[3].body.to_string().contains("could not be delivered"),
        "{}",
        got[3].body
    );
    let logs = run.stop().await.text();
    assert!(!logs.contains(TOKEN), "{logs}");
}

#[tokio::test]
#[allow(clippy::print_stderr, reason = "reports the measured recovery latency")]
async fn outage_then_recovery_delivers_exactly_once() {
    let env = self::env();
    let mut hook = Webhook::start(vec![]).await;
    hook.stop().await;
    seed(&env.db, &["S-03"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    // Down for a while: several connection failures get recorded.
    wait_rows(&env.db, Duration::from_secs(5), |r| r[0].attempts >= 3).await;
    assert!(hook.received().is_empty());
    let back_up = Instant::now();
    hook.restart().await;
    let got = hook.wait_for(1, Duration::from_secs(5)).await;
    let latency = got[0].at - back_up;
    eprintln!(
        "alert delivered {} ms after the receiver came back",
        latency.as_millis()
    );
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    assert!(
        r[0].last_error
            .as_deref()
            .is_some_and(|e| e.contains("connect")),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.received().len(), 1, "delivered exactly once");
    run.stop().await;
}

#[tokio::test]
async fn restarted_deliverer_sends_each_row_exactly_once() {
    let env = self::env();
    let hook = Webhook::start(vec![]).await;
    seed(&env.db, &["S-01", "E-02", "L-03", "S-03"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 400));
    hook.wait_for(1, Duration::from_secs(5)).await;
    wait_rows(&env.db, Duration::from_secs(5), |r| r[0].delivered).await;
    run.stop().await;
    let before = rows(&env.db);
    assert!(
        before.iter().any(|r| !r.delivered),
        "stopped with rows pending: {before:?}"
    );
    let sent_before = hook.received().len();
    assert_eq!(
        sent_before,
        before.iter().filter(|r| r.delivered).count(),
        "every POST so far was recorded as delivered"
    );

    let run = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let got = hook.wait_for(4, Duration::from_secs(10)).await;
    wait_rows(&env.db, Duration::from_secs(5), |r| {
        r.iter().all(|r| r.delivered)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.stop().await;
    let got_all = hook.received();
    assert_eq!(got_all.len(), 4, "{got:?}");
    let mut ids: Vec<String> = got_all.iter().map(|g| invariant_of(&g.body)).collect();
    ids.sort();
    assert_eq!(ids, ["E-02", "L-03", "S-01", "S-03"]);
}

/// Two deliverers on one state DB (two daemons, or a daemon and a future delivering CLI): the
/// deliverer lease lets one send, so each row goes out exactly once; the idle one stays idle.
#[tokio::test]
async fn two_deliverers_on_one_state_db_send_each_row_once() {
    let env = self::env();
    let hook = Webhook::start(vec![]).await;
    seed(&env.db, &["S-01", "E-02", "L-03", "S-03", "B-02", "G-04"]);
    let a = start(&env.db, Some(hook.url()), config(100, 400, 10));
    let b = start(&env.db, Some(hook.url()), config(100, 400, 10));
    wait_rows(&env.db, Duration::from_secs(10), |r| {
        r.iter().all(|r| r.delivered)
    })
    .await;
    // Time for a duplicate to arrive, were one in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!(hook.received().len(), 6, "each row exactly once");
    let delivered_by = |logs: &Logs| logs.text().matches("alert delivered").count();
    let (by_a, by_b) = (delivered_by(&a), delivered_by(&b));
    assert!(
        (by_a, by_b) == (6, 0) || (by_a, by_b) == (0, 6),
        "one deliverer sends, the other idles: {by_a} / {by_b}"
    );
}

#[tokio::test]
async fn posts_are_paced_per_webhook() {
    let env = self::env();
    let hook = Webhook::start(vec![]).await;
    seed(&env.db, &["S-01", "E-02", "L-03"]);
    let run = start(&env.db, Some(hook.url()), config(100, 400, 1000));
    let got = hook.wait_for(3, Duration::from_secs(10)).await;
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(950), "POSTs {gap:?} apart");
    }
    run.stop().await;
}

#[tokio::test]
async fn webhook_url_never_logged_or_stored() {
    // A closed port: connection errors (reqwest puts the URL in these).
    let env = self::env();
    let closed = Webhook::closed_port().await;
    let url = format!("http://{closed}{PATH}");
    seed(&env.db, &["S-01"]);
    let run = start(&env.db, Some(url), config(100, 200, 10));
    wait_rows(&env.db, Duration::from_secs(5), |r| r[0].attempts >= 2).await;
    let logs = run.stop().await.text();
    assert!(logs.contains("will retry"), "{logs}");
    // And a 404 (permanent, logged at ERROR).
    let hook = Webhook::start(vec![Reply::status(404).body("no_service")]).await;
    let env404 = self::env();
    seed(&env404.db, &["E-02"]);
    let run = start(&env404.db, Some(hook.url()), config(100, 200, 10));
    wait_rows(&env404.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    let logs404 = run.stop().await.text();
    assert!(logs404.contains("ERROR"), "{logs404}");

    let stored: Vec<String> = rows(&env.db)
        .into_iter()
        .chain(rows(&env404.db))
        .filter_map(|r| r.last_error)
        .collect();
    assert_eq!(stored.len(), 2);
    for text in stored.iter().chain([&logs, &logs404]) {
        assert!(!text.contains(TOKEN), "webhook token leaked: {text}");
        assert!(!text.contains("T0CANARY"), "webhook path leaked: {text}");
    }
}

#[tokio::test]
async fn rows_older_than_give_up_after_are_abandoned_not_sent() {
    let env = self::env();
    let hook = Webhook::start(vec![]).await;
    seed_at(&env.db, &["S-01"], now_ms() - 120_000);
    let mut cfg = config(100, 400, 10);
    cfg.give_up_after = Duration::from_secs(60);
    let run = start(&env.db, Some(hook.url()), cfg);
    let r = wait_rows(&env.db, Duration::from_secs(5), |r| r[0].abandoned).await;
    assert!(
        r[0].last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("gave up after 2m")),
        "{r:?}"
    );
    let logs = run.stop().await.text();
    assert!(
        logs.contains("ERROR") && logs.contains("alert abandoned"),
        "{logs}"
    );
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn no_webhook_is_a_silent_sink() {
    let env = self::env();
    seed(&env.db, &["S-01"]);
    let run = start(&env.db, None, config(100, 400, 10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await;
    let r = rows(&env.db);
    assert!(
        !r[0].delivered && !r[0].abandoned && r[0].attempts == 0,
        "{r:?}"
    );
}

/// A YAML config for a temp platform, optionally with a webhook.
fn write_config(dir: &Path, redis_url: &str, webhook: Option<&str>) -> PathBuf {
    let mut yaml = format!(
        "platform:\n  sqlite_path: {}\n  redis_url: {redis_url}\nstate:\n  path: {}\n",
        dir.join("platform.db").display(),
        dir.join("state.db").display()
    );
    if let Some(url) = webhook {
        yaml.push_str(&format!("alerts:\n  slack:\n    webhook_url: \"{url}\"\n"));
    }
    let path = dir.join(format!("canary-{}.yaml", webhook.is_some()));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test]
async fn a_red_cycle_reaches_the_webhook_and_no_webhook_writes_no_outbox() {
    use canary::cycle::{CycleRequest, Trigger, run_cycle};

    let (dir, redis, mut platform) = one_agent_platform().await;
    // A slot with no running row: S-01 `in_redis_only`, with a subject that tries a mention.
    platform
        .acquire_slot("agent-a", "<!channel>", 600, now_ms() - 60_000)
        .await
        .unwrap();
    let hook = Webhook::start(vec![]).await;
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: None,
    };

    // Without a webhook: transitions recorded, no outbox rows.
    let silent = write_config(dir.path(), &redis.url(), None);
    let config = canary::config::load_from(Some(&silent), &[], &Default::default()).unwrap();
    let state = dir.path().join("silent-state.db");
    let db = canary::store::SharedDb::new(StateDb::open(&state).unwrap());
    let result = run_cycle(&config, &db, &request).await.unwrap();
    assert!(result.transitions.iter().any(|t| t.invariant_id == "S-01"));
    assert!(rows(&state).is_empty());

    // With a webhook: one outbox row per transition, delivered by the deliverer.
    let loud = write_config(dir.path(), &redis.url(), Some(&hook.url()));
    let config = canary::config::load_from(Some(&loud), &[], &Default::default()).unwrap();
    let state = config.state.path.clone();
    let db = canary::store::SharedDb::new(StateDb::open(&state).unwrap());
    let result = run_cycle(&config, &db, &request).await.unwrap();
    let n = result.transitions.len();
    assert_eq!(rows(&state).len(), n);
    let mut alerts = config.alerts.clone();
    alerts.slack.min_interval = Duration::from_millis(10);
    let run = start(
        &state,
        config.webhook_url().unwrap().map(|s| s.expose().to_owned()),
        alerts,
    );
    let got = hook.wait_for(n, Duration::from_secs(10)).await;
    run.stop().await;
    let s01 = got
        .iter()
        .find(|g| invariant_of(&g.body) == "S-01")
        .expect("S-01 alert");
    let text = s01.body.to_string();
    assert!(text.contains("🔴 S-01 Slot–row bijection fired"), "{text}");
    assert!(
        text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"),
        "{text}"
    );
}

#[test]
fn alert_test_command_exit_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(Webhook::start(vec![]));
    let gone = rt.block_on(Webhook::start(vec![Reply::status(404).body("no_service")]));
    let dir = tempfile::tempdir().unwrap();
    let run = |webhook: Option<&str>| {
        let config = write_config(dir.path(), "redis://127.0.0.1:1/0", webhook);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_canary"))
            .args(["alert", "test", "--config"])
            .arg(config)
            .env_remove("CANARY_CONFIG")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(TOKEN), "webhook leaked: {all}");
        (out.status.code(), all)
    };
    let (code, out) = run(Some(&ok.url()));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ok.received().len(), 1);
    let (code, out) = run(Some(&gone.url()));
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("HTTP 404: no_service"), "{out}");
    let (code, out) = run(None);
    assert_eq!(code, Some(78), "{out}");
    drop((ok, gone));
}

/// Red, red, green, red through real cycles with the deliverer running: exactly two fired and
/// one resolved message for S-01, in that order; then `renotify_after` sends a reminder.
#[tokio::test]
async fn red_green_red_sends_two_fired_one_resolved_then_reminders() {
    use canary::cycle::{CycleRequest, Trigger, run_cycle};

    let (dir, redis, mut platform) = one_agent_platform().await;
    let hook = Webhook::start(vec![]).await;
    let path = write_config(dir.path(), &redis.url(), Some(&hook.url()));
    let mut config = canary::config::load_from(Some(&path), &[], &Default::default()).unwrap();
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: Some(vec!["S-01".to_owned()]),
    };
    let db = canary::store::SharedDb::new(StateDb::open(&config.state.path).unwrap());
    let mut alerts = config.alerts.clone();
    alerts.slack.min_interval = Duration::from_millis(10);
    let run = start(
        &config.state.path,
        config.webhook_url().unwrap().map(|s| s.expose().to_owned()),
        alerts,
    );
    leak(&mut platform).await;
    run_cycle(&config, &db, &request).await.unwrap();
    run_cycle(&config, &db, &request).await.unwrap();
    platform.release_slot("agent-a", "leaked").await.unwrap();
    run_cycle(&config, &db, &request).await.unwrap();
    leak(&mut platform).await;
    run_cycle(&config, &db, &request).await.unwrap();
    let got = hook.wait_for(3, Duration::from_secs(10)).await;
    let headers: Vec<String> = got
        .iter()
        .map(|g| {
            g.body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        headers,
        [
            "🔴 S-01 Slot–row bijection fired",
            "✅ S-01 Slot–row bijection resolved",
            "🔴 S-01 Slot–row bijection fired"
        ]
    );

    // Still red with renotify_after elapsed: one reminder per elapsed interval, no new incident.
    config.alerts.renotify_after = Some(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let result = run_cycle(&config, &db, &request).await.unwrap();
    assert!(result.transitions[0].reminder, "{:?}", result.transitions);
    let got = hook.wait_for(4, Duration::from_secs(10)).await;
    let reminder = got[3].body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(reminder, "🔴 S-01 Slot–row bijection still red");
    run.stop().await;
    assert_eq!(hook.received().len(), 4, "nothing sent twice");
}

/// The S-01 fault: a slot acquired a minute ago with no running row.
async fn leak(platform: &mut canary::fleet::platform::Platform) {
    let at = now_ms() - 60_000;
    platform
        .acquire_slot("agent-a", "leaked", 600, at)
        .await
        .unwrap();
}

/// A temp platform (database + private redis-server) with one live agent, `agent-a`.
async fn one_agent_platform() -> (
    tempfile::TempDir,
    canary::fleet::redis_server::RedisServer,
    canary::fleet::platform::Platform,
) {
    use canary::fleet::platform::{self, Platform};
    let dir = tempfile::tempdir().unwrap();
    let redis = canary::fleet::redis_server::RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    platform::create_db(&dir.path().join("platform.db")).unwrap();
    let platform = Platform::connect(&dir.path().join("platform.db"), &redis.url())
        .await
        .unwrap();
    platform.add_agent("agent-a", 3, 900).unwrap();
    (dir, redis, platform)
}

// ---- issue 11 §4: "canary is blind" -------------------------------------------------------

/// Runs one full cycle (all invariants) against `config` on `db`.
async fn full_cycle(
    config: &canary::config::Config,
    db: &canary::store::SharedDb,
) -> canary::cycle::CycleResult {
    use canary::cycle::{CycleRequest, Trigger, run_cycle};
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: None,
    };
    run_cycle(config, db, &request).await.unwrap()
}

/// The POSTs received so far about `id` (by the fallback text's second word), as
/// (kind from the header, whole body text).
fn posts_about(hook: &Webhook, id: &str) -> Vec<(String, String)> {
    hook.received()
        .iter()
        .filter(|g| invariant_of(&g.body) == id)
        .map(|g| {
            let header = g.body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned();
            (header, g.body.to_string())
        })
        .collect()
}

/// `(kind, reminder)` of this cycle's blind transitions for `id`.
fn blind_kinds(result: &canary::cycle::CycleResult, id: &str) -> Vec<&'static str> {
    result
        .blind
        .transitions
        .iter()
        .filter(|t| t.invariant_id == id)
        .map(|t| t.kind)
        .collect()
}

/// Waits until the deliverer has nothing left to send (so "no POST" is a real observation).
async fn drained(state: &Path) {
    wait_rows(state, Duration::from_secs(10), |r| {
        r.iter().all(|row| row.delivered)
    })
    .await;
}

/// Redis killed: two cycles say nothing, the third fires ONE critical "canary is blind" alert
/// naming redis and its error; S-01, red before, stays unknown and does not resolve while Redis
/// is unreadable. Redis back: ONE resolved for the source (and S-01 resolves on real data).
#[tokio::test]
async fn redis_down_for_blind_after_cycles_fires_once_and_resolves_once() {
    let (dir, mut redis, mut platform) = one_agent_platform().await;
    let hook = Webhook::start(vec![]).await;
    let path = write_config(dir.path(), &redis.url(), Some(&hook.url()));
    let config = canary::config::load_from(Some(&path), &[], &Default::default()).unwrap();
    assert_eq!(config.alerts.blind_after, 3, "default");
    let state = config.state.path.clone();
    let db = canary::store::SharedDb::new(StateDb::open(&state).unwrap());
    let mut alerts = config.alerts.clone();
    alerts.slack.min_interval = Duration::from_millis(10);
    let run = start(
        &state,
        config.webhook_url().unwrap().map(|s| s.expose().to_owned()),
        alerts,
    );

    leak(&mut platform).await;
    let first = full_cycle(&config, &db).await;
    assert_eq!(first.outcomes["S-01"], canary_invariants::Outcome::Red);
    assert!(
        first.blind.sources.iter().all(|s| s.readable),
        "{:?}",
        first.blind
    );
    hook.wait_for(1, Duration::from_secs(10)).await;

    redis.kill();
    for n in 1..=2 {
        let r = full_cycle(&config, &db).await;
        assert_eq!(r.outcomes["S-01"], canary_invariants::Outcome::Unknown);
        assert!(r.blind.transitions.is_empty(), "cycle {n}: {:?}", r.blind);
        assert!(
            r.transitions.is_empty(),
            "unknown never resolves: {:?}",
            r.transitions
        );
        let redis_state = r
            .blind
            .sources
            .iter()
            .find(|s| s.source == "redis")
            .unwrap();
        assert_eq!(
            (redis_state.readable, redis_state.unreadable_cycles),
            (false, n)
        );
    }
    drained(&state).await;
    assert!(
        posts_about(&hook, "source:redis").is_empty(),
        "fewer than blind_after: no POST"
    );

    let third = full_cycle(&config, &db).await;
    assert_eq!(blind_kinds(&third, "source:redis"), ["fired"]);
    assert_eq!(third.blind.transitions[0].severity, "critical");
    assert!(!third.checks_run.iter().any(|id| id.starts_with("source:")));
    assert!(!third.outcomes.keys().any(|id| id.starts_with("source:")));
    // Still blind: nothing more.
    let fourth = full_cycle(&config, &db).await;
    assert!(fourth.blind.transitions.is_empty() && fourth.transitions.is_empty());
    drained(&state).await;
    let fired = posts_about(&hook, "source:redis");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "🔴 canary is blind: source redis unreadable");
    assert!(
        fired[0]
            .1
            .contains("canary is blind: source redis unreadable for 3 cycles: "),
        "{}",
        fired[0].1
    );
    let error = &third.sources_unavailable[0].error;
    assert!(
        fired[0].1.contains(error.as_str()),
        "names the error: {}",
        fired[0].1
    );
    assert!(!fired[0].1.contains("redis://"), "{}", fired[0].1);
    assert!(
        posts_about(&hook, "S-01")
            .iter()
            .all(|(h, _)| h.contains("fired")),
        "S-01 never resolved while unknown"
    );

    redis.restart().unwrap();
    let back = full_cycle(&config, &db).await;
    assert_eq!(blind_kinds(&back, "source:redis"), ["resolved"]);
    let again = full_cycle(&config, &db).await;
    assert!(again.blind.transitions.is_empty());
    drained(&state).await;
    run.stop().await;
    let posts = posts_about(&hook, "source:redis");
    let headers: Vec<&str> = posts.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headers,
        [
            "🔴 canary is blind: source redis unreadable",
            "✅ canary can see again: source redis"
        ]
    );
    assert!(
        posts[1]
            .1
            .contains("source redis readable after 4 unreadable cycles"),
        "{}",
        posts[1].1
    );
}

/// A wrong Redis password is blindness too: one fired alert, and the password appears in no
/// POST, no stored cycle, no outbox row; the right password resolves it once.
#[tokio::test]
async fn wrong_redis_password_fires_once_without_the_secret_and_resolves_once() {
    const WRONG: &str = "wrong-PASSWORD-7f3a";
    const RIGHT: &str = "right-PASSWORD-91c2";
    let (dir, redis, _platform) = one_agent_platform().await;
    let mut admin = crate::support::redis_server::connect(&redis);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(RIGHT)
        .query::<()>(&mut admin)
        .unwrap();
    let hook = Webhook::start(vec![]).await;
    let with_pass = |p: &str| format!("redis://:{p}@127.0.0.1:{}/0", redis.port());
    let path = write_config(dir.path(), &with_pass(WRONG), Some(&hook.url()));
    let wrong = canary::config::load_from(Some(&path), &[], &Default::default()).unwrap();
    let path = write_config(dir.path(), &with_pass(RIGHT), Some(&hook.url()));
    let right = canary::config::load_from(Some(&path), &[], &Default::default()).unwrap();
    let state = wrong.state.path.clone();
    let db = canary::store::SharedDb::new(StateDb::open(&state).unwrap());
    let mut alerts = wrong.alerts.clone();
    alerts.slack.min_interval = Duration::from_millis(10);
    let run = start(
        &state,
        wrong.webhook_url().unwrap().map(|s| s.expose().to_owned()),
        alerts,
    );

    let kinds: Vec<Vec<&str>> = [
        full_cycle(&wrong, &db).await,
        full_cycle(&wrong, &db).await,
        full_cycle(&wrong, &db).await,
        full_cycle(&wrong, &db).await,
        full_cycle(&right, &db).await,
        full_cycle(&right, &db).await,
    ]
    .iter()
    .map(|r| blind_kinds(r, "source:redis"))
    .collect();
    let expected: [Vec<&str>; 6] = [
        vec![],
        vec![],
        vec!["fired"],
        vec![],
        vec!["resolved"],
        vec![],
    ];
    assert_eq!(kinds, expected);
    drained(&state).await;
    run.stop().await;
    let posts = posts_about(&hook, "source:redis");
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[0].0.contains("blind") && posts[1].0.contains("see again"));
    for (_, body) in &posts {
        assert!(!body.contains(WRONG) && !body.contains(RIGHT), "{body}");
    }
    let conn = rusqlite::Connection::open(&state).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT group_concat(sources_unavailable, ' ') || (SELECT group_concat(payload, ' ')
             FROM alert_outbox) FROM cycles",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.contains("source:redis"), "{stored}");
    assert!(
        !stored.contains(WRONG) && !stored.contains(RIGHT),
        "{stored}"
    );
}

/// The SQLite side, generically: the platform file moved away for `blind_after` (here 2)
/// cycles fires one alert naming sqlite; moved back, one resolved.
#[tokio::test]
async fn sqlite_unreadable_fires_once_and_resolves_once() {
    let (dir, _redis, _platform) = one_agent_platform().await;
    let hook = Webhook::start(vec![]).await;
    let path = write_config(dir.path(), &_redis.url(), Some(&hook.url()));
    let mut config = canary::config::load_from(Some(&path), &[], &Default::default()).unwrap();
    config.alerts.blind_after = 2;
    let state = config.state.path.clone();
    let db = canary::store::SharedDb::new(StateDb::open(&state).unwrap());
    let mut alerts = config.alerts.clone();
    alerts.slack.min_interval = Duration::from_millis(10);
    let run = start(
        &state,
        config.webhook_url().unwrap().map(|s| s.expose().to_owned()),
        alerts,
    );
    let platform_db = dir.path().join("platform.db");
    let moved = dir.path().join("platform.db.moved");
    let green = full_cycle(&config, &db).await;
    assert!(green.blind.transitions.is_empty());

    std::fs::rename(&platform_db, &moved).unwrap();
    let one = full_cycle(&config, &db).await;
    assert_eq!(one.sources_unavailable[0].source.as_str(), "sqlite");
    assert!(one.blind.transitions.is_empty());
    drained(&state).await;
    assert!(posts_about(&hook, "source:sqlite").is_empty());
    let two = full_cycle(&config, &db).await;
    assert_eq!(blind_kinds(&two, "source:sqlite"), ["fired"]);
    assert!(
        blind_kinds(&two, "source:redis").is_empty(),
        "redis is fine"
    );
    std::fs::rename(&moved, &platform_db).unwrap();
    let back = full_cycle(&config, &db).await;
    assert_eq!(blind_kinds(&back, "source:sqlite"), ["resolved"]);
    drained(&state).await;
    run.stop().await;
    let posts = posts_about(&hook, "source:sqlite");
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[0].0, "🔴 canary is blind: source sqlite unreadable");
    let error = &two.sources_unavailable[0].error;
    assert!(
        posts[0].1.contains(&format!(
            "canary is blind: source sqlite unreadable for 2 cycles: {error}"
        )),
        "{}",
        posts[0].1
    );
    assert_eq!(posts[1].0, "✅ canary can see again: source sqlite");
}
