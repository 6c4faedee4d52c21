//! `canary run` end to end: the real binary on a real platform (private `redis-server`, a
//! platform SQLite file), a 1 s interval. Cycles happen on schedule; SIGTERM stops it with exit 0
//! inside the shutdown timeout; a SIGTERM that lands mid-cycle lets that cycle commit whole (every
//! cycle row has exactly its violations); a bad cron is a configuration error (exit 78) naming
//! the expression; the composed deliverer sends a fired alert once; after a SIGKILL mid-cycle or
//! mid-POST, a restarted daemon takes the dead process's leases over at once (issue 11 §2); a
//! killed Redis is alerted once after `blind_after` cycles and resolved once (issue 11 §4).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canary::clock::now_ms;
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;

use crate::support::daemon::{Daemon, free_port};
use crate::support::webhook::{Reply, Webhook};

struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    _platform: Platform,
    port: u16,
}

impl Env {
    /// Two agents with a running execution each, plus one S-01 leak (a finished row whose slot
    /// was never released) so every cycle records a violation.
    async fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("platform.db");
        platform::create_db(&db).expect("platform schema");
        let mut p = Platform::connect(&db, &redis.url())
            .await
            .expect("connect platform");
        let now = now_ms();
        for a in ["agent-a", "agent-b"] {
            p.add_agent(a, 3, 900).unwrap();
            p.start(a, &format!("{a}-run"), 600, now - 120_000)
                .await
                .unwrap();
        }
        p.start("agent-a", "agent-a-leak", 600, now - 120_000)
            .await
            .unwrap();
        p.finish_row("agent-a-leak", "success", now - 60_000)
            .unwrap();
        Env {
            dir,
            redis,
            _platform: p,
            port: free_port(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// A config with a 1 s interval and the given shutdown timeout; `extra` is appended (more
    /// top-level sections).
    fn config(&self, shutdown_timeout: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("canary.yaml");
        let yaml = format!(
            "platform:
  sqlite_path: {sqlite}
  redis_url: {redis}
  redis_connect_timeout: 10s
  redis_response_timeout: 10s
state:
  path: {state}
schedule:
  interval: 1s
  startup_delay: 0s
  jitter: 0s
  shutdown_timeout: {shutdown_timeout}
http:
  bind: 127.0.0.1:{port}
  admin_token: test-token-0123456789
{extra}",
            sqlite = self.dir.path().join("platform.db").display(),
            redis = self.redis.url(),
            state = self.state_path().display(),
            port = self.port,
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn start(&self, shutdown_timeout: &str) -> Daemon {
        Daemon::start(&self.config(shutdown_timeout, ""), self.dir.path())
    }
}

/// Cycles in the state DB: (id, started_at, finished_at, trigger, violation_count, the violations
/// its per-invariant count rows add up to).
fn cycles(state: &Path) -> Vec<(i64, i64, i64, String, i64, i64)> {
    if !state.exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(state).expect("open state db");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = match conn.prepare(
        "SELECT c.id, c.started_at, c.finished_at, c.\"trigger\", c.violation_count,
                (SELECT COALESCE(SUM(ci.violations), 0) FROM cycle_invariants ci
                 WHERE ci.cycle_id = c.id)
         FROM cycles c ORDER BY c.id",
    ) {
        Ok(s) => s,
        // Not migrated yet: the daemon is still opening it.
        Err(_) => return Vec::new(),
    };
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Every recorded cycle is whole: its violation rows are all there.
fn assert_whole(rows: &[(i64, i64, i64, String, i64, i64)]) {
    for (id, _, _, _, count, stored) in rows {
        assert_eq!(
            count, stored,
            "cycle {id} has {stored} of its {count} violations"
        );
        assert_eq!(*count, 1, "cycle {id}: the S-01 leak, nothing else");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_cycles_on_schedule_and_stops_on_sigterm() {
    let env = Env::new().await;
    let mut daemon = env.start("10s");
    let state = env.state_path();
    let started = Instant::now();
    daemon.wait_for(Duration::from_secs(20), "4 cycles", || {
        cycles(&state).len() >= 4
    });
    let elapsed = started.elapsed();
    let rows = cycles(&state);
    // On schedule: 1 s apart, not a burst and not slower. The band is wide (±500 ms) because
    // CI runs this beside other tests on two cores; a burst would show gaps near 0.
    let gaps: Vec<i64> = rows.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        gaps.iter().all(|g| (500..=1_500).contains(g)),
        "gaps between cycle starts (ms): {gaps:?}"
    );
    assert!(
        elapsed < Duration::from_secs(12),
        "4 cycles took {elapsed:?}"
    );
    assert!(rows.iter().all(|r| r.3 == "schedule"));

    // The admin API is up, and its metrics count the scheduled cycles.
    let base = format!("http://127.0.0.1:{}", env.port);
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let red_cycles: f64 = metrics
        .lines()
        .find(|l| l.starts_with("canary_cycles_total{") && l.contains("red"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no red cycle counter in:\n{metrics}"));
    assert!(red_cycles >= 4.0, "{metrics}");

    let stop = Instant::now();
    daemon.sigterm();
    let status = daemon.wait(Duration::from_secs(10));
    let stop_took = stop.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("canary started"), "{log}");
    assert!(log.contains("canary stopped"), "{log}");
    eprintln!("SIGTERM → exit between cycles: {stop_took:?}");
    assert!(stop_took < Duration::from_secs(2), "{stop_took:?}");
    assert_whole(&cycles(&state));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_cycle_lets_the_cycle_commit_whole() {
    let env = Env::new().await;
    let mut daemon = env.start("10s");
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a first cycle", || {
        !cycles(&state).is_empty()
    });
    // Freeze Redis for 3 s: the next cycle (≤ 1 s away) blocks inside its collect step.
    let paused_at = pause_redis(&env, 3_000).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = cycles(&state);
    let sigterm_at = now_ms();
    let stop = Instant::now();
    daemon.sigterm();
    let status = daemon.wait(Duration::from_secs(10));
    let stop_took = stop.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    eprintln!("SIGTERM → exit with an in-flight cycle blocked on Redis: {stop_took:?}");

    let after = cycles(&state);
    assert_whole(&after);
    // Exactly one more cycle: the one that was in flight at SIGTERM, committed after it, and
    // no new cycle was started once the stop was requested.
    assert_eq!(
        after.len(),
        before.len() + 1,
        "before {before:?}\nafter {after:?}"
    );
    let last = after.last().unwrap();
    assert!(
        last.1 >= paused_at,
        "the last cycle started during the pause"
    );
    assert!(last.2 >= sigterm_at, "and finished after SIGTERM");
    // It waited for the pause to end (≈ 1.5 s), well inside the 10 s shutdown timeout.
    assert!(stop_took >= Duration::from_millis(1_000), "{stop_took:?}");
    assert!(stop_took < Duration::from_secs(5), "{stop_took:?}");
}

/// `CLIENT PAUSE ms ALL`: every client's commands wait (a stalled Redis, without DEBUG).
/// Returns when the pause began (unix ms).
async fn pause_redis(env: &Env, ms: u64) -> i64 {
    let mut admin = redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let at = now_ms();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_outliving_the_shutdown_timeout_is_abandoned_not_half_written() {
    let env = Env::new().await;
    let mut daemon = env.start("1s");
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a first cycle", || {
        !cycles(&state).is_empty()
    });
    pause_redis(&env, 6_000).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = cycles(&state);
    let stop = Instant::now();
    daemon.sigterm();
    let status = daemon.wait(Duration::from_secs(5));
    let stop_took = stop.elapsed();
    eprintln!("SIGTERM → exit past a 1 s shutdown timeout: {stop_took:?}");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(stop_took >= Duration::from_millis(900), "{stop_took:?}");
    assert!(stop_took < Duration::from_secs(3), "{stop_took:?}");
    assert!(
        daemon.log().contains("shutdown timeout elapsed"),
        "{}",
        daemon.log()
    );
    // The blocked cycle never reached its transaction: nothing of it was written.
    let after = cycles(&state);
    assert_eq!(after, before);
    assert_whole(&after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_when_configured() {
    let env = Env::new().await;
    let config = env.config("10s", "log:\n  format: json\n");
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a cycle", || {
        !cycles(&state).is_empty()
    });
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["message"] == "canary started")
        .unwrap_or_else(|| panic!("no start line in {log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["schedule"], "every 1s");
    assert!(
        lines.iter().any(|l| l["message"] == "canary stopped"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_a_fired_alert_once() {
    let env = Env::new().await;
    let webhook = Webhook::start(vec![]).await;
    let config = env.config(
        "10s",
        &format!("alerts:\n  slack:\n    webhook_url: {}\n", webhook.url()),
    );
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    let got = webhook.wait_for(1, Duration::from_secs(20)).await;
    assert!(
        got[0].body.to_string().contains("S-01"),
        "{:?}",
        got[0].body
    );
    // Three more cycles while S-01 stays red: no second message.
    let n = cycles(&state).len();
    daemon.wait_for(Duration::from_secs(20), "3 more cycles", || {
        cycles(&state).len() >= n + 3
    });
    assert_eq!(webhook.received().len(), 1);
    // The deliverer counts into the registry `/metrics` renders.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", env.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("canary_alerts_total{")
                && l.contains("delivered")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_bad_cron_is_a_config_error_naming_the_expression() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canary.yaml");
    std::fs::write(
        &config,
        format!(
            "state:\n  path: {}\nschedule:\n  cron: \"61 * * * *\"\nhttp:\n  bind: 127.0.0.1:{}\n",
            dir.path().join("state.db").display(),
            free_port()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, dir.path());
    let status = daemon.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(78), "log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("\"61 * * * *\""), "{log}");
    assert!(log.contains("schedule.cron"), "{log}");
    // Refused before touching anything.
    assert!(!dir.path().join("state.db").exists());
}

/// With a webhook URL and an admin token configured, neither secret appears in any log line,
/// API response (headers included) or stored error, across the error paths: a webhook answering
/// 404 (permanent failure, logged at ERROR), a closed webhook after that, wrong and missing
/// tokens, unknown ids, an absent violation, an oversized body, and the normal routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_responses_or_stored_errors() {
    use crate::support::webhook::{PATH, Reply};

    let env = Env::new().await;
    let webhook = Webhook::start(vec![Reply::status(404).body("no_service")]).await;
    let config = env.config(
        "10s",
        &format!(
            "alerts:\n  slack:\n    webhook_url: {}\n    min_interval: 10ms\n  retry_initial: 50ms\n  retry_max: 100ms\nlog:\n  level: debug\n",
            webhook.url()
        ),
    );
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    webhook.wait_for(1, Duration::from_secs(20)).await;

    let base = format!("http://127.0.0.1:{}", env.port);
    let client = reqwest::Client::new();
    let mut seen = String::new();
    let requests = [
        ("GET", "/healthz", None, None),
        ("GET", "/readyz", None, None),
        ("GET", "/metrics", None, None),
        ("GET", "/api/canary/status", None, None),
        ("GET", "/api/canary/status", Some("wrong-token"), None),
        (
            "GET",
            "/api/canary/status",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "GET",
            "/api/canary/violations?limit=5",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "GET",
            "/api/canary/violations?since=garbage",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "GET",
            "/api/canary/violations/999999",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "GET",
            "/api/canary/violations/stats",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "GET",
            "/api/canary/invariants",
            Some("test-token-0123456789"),
            None,
        ),
        (
            "POST",
            "/api/canary/run-cycle",
            Some("test-token-0123456789"),
            Some(r#"{"invariant_ids":["X-1"]}"#.to_owned()),
        ),
        (
            "POST",
            "/api/canary/run-cycle",
            Some("test-token-0123456789"),
            Some("x".repeat(200_000)),
        ),
        (
            "POST",
            "/api/canary/run-cycle",
            Some("test-token-0123456789"),
            Some("{not json".to_owned()),
        ),
        (
            "POST",
            "/api/canary/run-cycle",
            Some("test-token-0123456789"),
            None,
        ),
    ];
    for (method, path, token, body) in requests {
        let mut req = match method {
            "POST" => client.post(format!("{base}{path}")),
            _ => client.get(format!("{base}{path}")),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        seen.push_str(&format!(
            "{method} {path} -> {}\n{:?}\n",
            resp.status(),
            resp.headers()
        ));
        seen.push_str(&resp.text().await.unwrap());
        seen.push('\n');
    }
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(15)).code(), Some(0));

    let conn = rusqlite::Connection::open(&state).unwrap();
    let stored: Vec<String> = conn
        .prepare("SELECT COALESCE(last_error, '') FROM alert_outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(stored.iter().any(|e| e.contains("404")), "{stored:?}");
    let log = daemon.log();
    assert!(
        log.contains("ERROR"),
        "the permanent failure is logged at ERROR:\n{log}"
    );
    let everything = format!("{log}\n{seen}\n{}", stored.join("\n"));
    let token_part = PATH.rsplit('/').next().unwrap();
    for secret in [
        "test-token-0123456789",
        token_part,
        PATH,
        webhook.url().as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked:\n{everything}"
        );
    }
}

/// The lease row of `table` (`cycle_lease`, `deliverer_lease`): (holder, expires_at).
fn lease_row(state: &Path, table: &str) -> Option<(String, i64)> {
    let conn = rusqlite::Connection::open(state).expect("open state db");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(
        &format!("SELECT holder, expires_at FROM {table} WHERE id = 1"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// A second daemon on the same config, logging to its own file.
fn restart(env: &Env, config: &Path) -> Daemon {
    let dir = env.dir.path().join("restarted");
    std::fs::create_dir_all(&dir).unwrap();
    Daemon::start(config, &dir)
}

/// How long a restarted daemon may take to run its first cycle or resume delivery: one interval
/// (1 s) plus a few seconds of process start. Before leases named their holder it waited out
/// `state.lease_timeout` (2 min here) or the deliverer lease's 60 s.
const RESTART_BOUND: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_cycle_the_restarted_daemon_takes_the_lease_over_at_once() {
    let env = Env::new().await;
    // A long lease timeout: only the takeover, not expiry, can free the lease in time.
    let config = env.config("10s", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("state:\n", "state:\n  lease_timeout: 2m\n"),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a first cycle", || {
        !cycles(&state).is_empty()
    });
    // Hold the next cycle inside its collect step, then kill the daemon there (a new client
    // cannot end a pause early: its own handshake waits too, so the pause stays short).
    pause_redis(&env, 3_000).await;
    let pid = daemon.pid();
    daemon.wait_for(Duration::from_secs(5), "a cycle holding the lease", || {
        lease_row(&state, "cycle_lease").is_some()
    });
    // Past any cycle that was already beyond Redis when the pause began: the one held now is
    // blocked in collect.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    daemon.wait_for(Duration::from_secs(5), "a cycle blocked on Redis", || {
        lease_row(&state, "cycle_lease").is_some()
    });
    daemon.sigkill();
    let before = cycles(&state).len();
    let (holder, expires_at) = lease_row(&state, "cycle_lease").expect("the dead cycle's lease");
    assert!(holder.contains(&format!(" pid={pid} ")), "{holder}");
    assert!(expires_at > now_ms() + 60_000, "{expires_at}");

    let restarted_at = Instant::now();
    let killed_at = now_ms();
    let mut second = restart(&env, &config);
    second.wait_for(Duration::from_secs(30), "a cycle after the restart", || {
        cycles(&state).iter().skip(before).any(|c| c.1 >= killed_at)
    });
    let took = restarted_at.elapsed();
    eprintln!("SIGKILL mid-cycle → restarted daemon's first cycle after {took:?}");
    assert!(took < RESTART_BOUND, "{took:?}; log:\n{}", second.log());
    let log = second.log();
    let takeover = log
        .lines()
        .find(|l| l.contains("lease held by a process that no longer exists"))
        .unwrap_or_else(|| panic!("no takeover line in:\n{log}"));
    assert!(takeover.contains("WARN"), "{takeover}");
    assert!(takeover.contains(&format!("pid={pid} ")), "{takeover}");
    assert!(takeover.contains("pid absent"), "{takeover}");
    second.sigterm();
    assert_eq!(second.wait(Duration::from_secs(10)).code(), Some(0));
    assert_whole(&cycles(&state));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_post_the_restarted_daemon_resumes_delivery_at_once() {
    let env = Env::new().await;
    // The first POST stalls far past the kill; the next ones are answered at once.
    let webhook = Webhook::start(vec![Reply::status(200).delayed(Duration::from_secs(60))]).await;
    let config = env.config(
        "10s",
        &format!(
            "alerts:\n  slack:\n    webhook_url: {}\n    timeout: 30s\n",
            webhook.url()
        ),
    );
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    webhook.wait_for(1, Duration::from_secs(20)).await;
    let pid = daemon.pid();
    daemon.sigkill();
    let (holder, expires_at) =
        lease_row(&state, "deliverer_lease").expect("the dead deliverer's lease");
    assert!(holder.contains(&format!(" pid={pid} ")), "{holder}");
    // 3 × the 30 s POST timeout: expiry alone would keep delivery stopped for ~90 s.
    assert!(expires_at > now_ms() + 60_000, "{expires_at}");

    let restarted_at = Instant::now();
    let mut second = restart(&env, &config);
    let got = webhook.wait_for(2, Duration::from_secs(30)).await;
    let took = got[1].at.duration_since(restarted_at.into());
    eprintln!("SIGKILL mid-POST → restarted daemon's first delivery after {took:?}");
    assert!(took < RESTART_BOUND, "{took:?}; log:\n{}", second.log());
    // At least once: the message cut off by the kill is the one sent again.
    assert_eq!(got[1].body, got[0].body);
    assert!(
        second
            .log()
            .contains("lease held by a process that no longer exists"),
        "{}",
        second.log()
    );
    let deliverer = lease_row(&state, "deliverer_lease").expect("the new deliverer's lease");
    assert!(
        deliverer.0.contains(&format!(" pid={} ", second.pid())),
        "{deliverer:?}"
    );
    second.sigterm();
    assert_eq!(second.wait(Duration::from_secs(10)).code(), Some(0));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_in_another_process_still_blocks_and_is_named() {
    let env = Env::new().await;
    let mut daemon = env.start("10s");
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a first cycle", || {
        !cycles(&state).is_empty()
    });
    // This test process, alive on this host, takes the cycle lease between two cycles.
    let holder = canary::store::holder::holder_text("cycle");
    let db = canary::store::StateDb::open(&state).unwrap();
    let mut taken = None;
    while taken.is_none() {
        taken = db.try_acquire_lease(&holder, now_ms(), 60_000).unwrap();
    }
    let n = cycles(&state).len();
    let log_path = env.dir.path().join("daemon.log");
    daemon.wait_for(Duration::from_secs(10), "a skip naming the holder", || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        daemon_log_has_skip(&log, std::process::id())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // At most the cycle that was already past its lease step when the test took the lease.
    assert!(cycles(&state).len() <= n + 1, "a live holder did not block");
    assert!(db.release_lease(&holder).unwrap());
    let blocked = cycles(&state).len();
    daemon.wait_for(Duration::from_secs(10), "a cycle after release", || {
        cycles(&state).len() > blocked
    });
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
}

/// Whether the log has the WARN skip line naming a holder with `pid` and its age.
fn daemon_log_has_skip(log: &str, pid: u32) -> bool {
    log.lines().any(|l| {
        l.contains("WARN")
            && l.contains("a cycle is already in progress in another process")
            && l.contains(&format!("pid={pid} "))
            && l.contains("lease.age_ms=")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_cycle_renews_its_lease_and_keeps_blocking_others() {
    let env = Env::new().await;
    // A 1 s lease and a cycle held 3 s by a paused Redis: only renewal keeps it held.
    let config = env.config("10s", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("state:\n", "state:\n  lease_timeout: 1s\n"),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "a first cycle", || {
        !cycles(&state).is_empty()
    });
    pause_redis(&env, 4_000).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    daemon.wait_for(Duration::from_secs(5), "a cycle blocked on Redis", || {
        lease_row(&state, "cycle_lease").is_some()
    });
    let (holder, first_expiry) = lease_row(&state, "cycle_lease").unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (still, later_expiry) = lease_row(&state, "cycle_lease").expect("still held");
    assert_eq!(still, holder, "the same cycle holds it");
    assert!(
        later_expiry > first_expiry,
        "{first_expiry} → {later_expiry}"
    );
    // Past the first expiry, another process still cannot take it.
    let db = canary::store::StateDb::open(&state).unwrap();
    let other = canary::store::holder::holder_text("cycle");
    assert!(now_ms() > first_expiry);
    assert_eq!(
        db.try_acquire_lease(&other, now_ms(), 60_000).unwrap(),
        None
    );
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
    assert_whole(&cycles(&state));
}

/// Cycles whose `sources_unavailable` names `source`.
fn cycles_blind_on(state: &Path, source: &str) -> i64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.query_row(
        "SELECT count(*) FROM cycles WHERE sources_unavailable LIKE ?1",
        [format!("%\"source\":\"{source}\"%")],
        |r| r.get(0),
    )
    .unwrap()
}

/// The POST headers about `id` (the fallback text's second word).
fn headers_about(webhook: &Webhook, id: &str) -> Vec<String> {
    webhook
        .received()
        .iter()
        .filter(|g| g.body["text"].as_str().unwrap_or("").split(' ').nth(1) == Some(id))
        .map(|g| {
            g.body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// issue 11 §4 end to end, with its latency: the daemon (1 s interval, default `blind_after: 3`)
/// sees Redis killed, POSTs ONE "canary is blind" alert after three unreadable cycles, and ONE
/// "can see again" once Redis is back; nothing else about the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_alerted_after_blind_after_cycles_and_resolved_once() {
    let mut env = Env::new().await;
    let webhook = Webhook::start(vec![]).await;
    let config = env.config(
        "10s",
        &format!(
            "alerts:\n  slack:\n    webhook_url: {}\n    min_interval: 10ms\n",
            webhook.url()
        ),
    );
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    webhook.wait_for(1, Duration::from_secs(20)).await; // S-01's fired alert: the daemon is up

    env.redis.kill();
    let down = Instant::now();
    daemon.wait_for(Duration::from_secs(30), "the blind alert", || {
        !headers_about(&webhook, "source:redis").is_empty()
    });
    let latency = down.elapsed();
    let blind_cycles = cycles_blind_on(&state, "redis");
    eprintln!(
        "blind alert latency: {:.2} s, {blind_cycles} unreadable cycles (interval 1 s, blind_after 3)",
        latency.as_secs_f64()
    );
    assert!(
        (3..=4).contains(&blind_cycles),
        "fired after blind_after cycles, not before: {blind_cycles}"
    );
    assert!(latency < Duration::from_secs(8), "{latency:?}");

    env.redis.restart().unwrap();
    let up = Instant::now();
    daemon.wait_for(Duration::from_secs(30), "the resolved alert", || {
        headers_about(&webhook, "source:redis").len() >= 2
    });
    eprintln!("resolve latency: {:.2} s", up.elapsed().as_secs_f64());
    let n = cycles(&state).len();
    daemon.wait_for(Duration::from_secs(20), "3 more cycles", || {
        cycles(&state).len() >= n + 3
    });
    assert_eq!(
        headers_about(&webhook, "source:redis"),
        [
            "🔴 canary is blind: source redis unreadable",
            "✅ canary can see again: source redis"
        ]
    );
    let log = daemon.log();
    assert!(log.contains("canary blind: source unreadable"), "{log}");
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
}

/// The dead man's switch (`alerts.heartbeat`): a ping after every recorded cycle, `/fail`
/// while a source is unavailable, back to the plain URL when it returns; counted in
/// `/metrics`. The URL (a secret) is in no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_is_pinged_every_cycle_and_fails_while_blind() {
    let mut env = Env::new().await;
    let pinger = Webhook::start(vec![]).await;
    let url = format!("{}/ping/hb-SECRET-123", pinger.url().trim_end_matches('/'));
    let config = env.config(
        "10s",
        &format!("alerts:\n  heartbeat:\n    url: {url}\n    method: post\n    timeout: 2s\n"),
    );
    let mut daemon = Daemon::start(&config, env.dir.path());
    let state = env.state_path();
    daemon.wait_for(Duration::from_secs(20), "3 cycles", || {
        cycles(&state).len() >= 3
    });
    let pings = |suffix: &str| {
        pinger
            .received()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pings("/hb-SECRET-123") >= 3, "{:?}", pinger.received());
    assert_eq!(pings("/fail"), 0);

    // Redis down: the next cycles ping /fail.
    env.redis.kill();
    let before = pings("/fail");
    let n = cycles(&state).len();
    daemon.wait_for(Duration::from_secs(30), "2 blind cycles", || {
        cycles(&state).len() >= n + 2
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pings("/hb-SECRET-123/fail") > before,
        "{:?}",
        pinger.received()
    );

    // Back: plain pings again.
    env.redis.restart().expect("restart redis");
    let ok_before = pings("/hb-SECRET-123");
    let n = cycles(&state).len();
    daemon.wait_for(Duration::from_secs(30), "2 more cycles", || {
        cycles(&state).len() >= n + 2
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pings("/hb-SECRET-123") > ok_before);

    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", env.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("canary_heartbeat_pings_total{outcome=\"ok\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    daemon.sigterm();
    assert_eq!(daemon.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(!daemon.log().contains("hb-SECRET-123"), "{}", daemon.log());
}
