//! The status page (`GET /`, issue 14) in a real browser and over real HTTP.
//!
//! - The browser test starts `canary run` on a temp platform (a private `redis-server`, a
//!   platform SQLite file) where one agent, named `<script>alert(1)</script> & co`, leaks a slot,
//!   so S-01 is red with platform data that would inject markup if it were not escaped. The state
//!   database is first given 24 h of recorded history through the store's own `record_cycle` (a
//!   red stretch with its fired/resolved alerts, an outage with Redis unreadable, a gap with no
//!   cycle), so the timeline has something to draw. Headless Chromium loads the page with the
//!   token in the URL's Basic credentials, and the test asserts on the DOM Chromium rendered;
//!   it also takes a screenshot (to a temp dir, or to `docs/status-page.png` when
//!   `CANARY_UPDATE_SCREENSHOT=1`, so CI never dirties the tree).
//! - The access rules (Basic with the token as password, any user name, wrong or missing → 401
//!   with a Basic challenge, no token → 503, `status_page.public` opens it) are proven against
//!   the router served on a real socket.
//!
//! Chromium missing is a failure naming `apt-get install chromium`, never a skip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canary::clock::now_ms;
use canary::config::{Config, Secret};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::http::{self, AppState};
use canary::schedule::runner::CycleRunner;
use canary::store::{CycleRecord, StateDb, tally};
use canary_invariants::{
    CATALOG, Memory, Outcome, Severity, Source, SourceUnavailable, Tier, Transition,
    TransitionKind, Violation,
};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{Daemon, free_port};
use crate::support::webhook::Webhook;

const TOKEN: &str = "page-T0KEN-0123456789abcdef";
/// The leaking agent's name: markup and an ampersand, as a hostile platform could write it.
const HOSTILE: &str = "<script>alert(1)</script> & co";
const MIN5: i64 = 5 * 60 * 1000;

/// The browser: `chromium` on PATH (Debian's package), or a failure saying how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found on PATH: the status page is tested in headless Chromium; \
                 install it with `apt-get install chromium`"
            )
        })
}

/// Runs headless Chromium with a fresh profile on `args`, at most 90 s; returns stdout.
fn run_chromium(args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--force-prefers-reduced-motion",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): apt-get install chromium"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {args:?} still running after 90 s; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium {args:?} failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// 24 h of history before the daemon starts, recorded the way cycles record themselves: green
/// every 5 min, S-03 red 2.5–3.7 h ago (1–4 violations, fired then resolved: two alerts that the
/// daemon's deliverer sends), Redis unreadable 8.3–9.3 h ago (everything unknown), and no cycle
/// at all 16.7–17.5 h ago (canary was down).
fn seed_history(state: &Path, now: i64) {
    let mut db = StateDb::open(state).unwrap();
    let ids: Vec<String> = CATALOG.iter().map(|i| i.meta().id.to_owned()).collect();
    let memory = Memory::default();
    let aligned = now - now.rem_euclid(MIN5);
    for ago in (1..=287).rev() {
        if (200..=210).contains(&ago) {
            continue;
        }
        let at = aligned - ago * MIN5 + 1000;
        let blind = (100..=112).contains(&ago);
        let red = (30..=44).contains(&ago);
        let outcomes: BTreeMap<String, Outcome> = ids
            .iter()
            .map(|id| {
                let o = match (blind, red && id == "S-03") {
                    (true, _) => Outcome::Unknown,
                    (false, true) => Outcome::Red,
                    (false, false) => Outcome::Green,
                };
                (id.clone(), o)
            })
            .collect();
        let violations: Vec<Violation> = if red {
            (0..1 + ago % 4)
                .map(|n| Violation {
                    invariant_id: "S-03".to_owned(),
                    tier: Tier::A,
                    severity: Severity::Major,
                    subject: format!("agent-{n}"),
                    summary: format!("agent-{n}: slot metadata TTL 4s below the floor of 30s"),
                    observed_state: serde_json::json!({ "ttl_ms": 4000 }),
                    signal: "ttl_below_floor".to_owned(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let transition = |kind| Transition {
            invariant_id: "S-03".to_owned(),
            kind,
            severity: Severity::Major,
            at_ms: at,
            previous_at_ms: None,
            reminder: false,
        };
        let transitions = match ago {
            44 => vec![transition(TransitionKind::Fired)],
            29 => vec![transition(TransitionKind::Resolved)],
            _ => Vec::new(),
        };
        let payloads: Vec<serde_json::Value> = transitions
            .iter()
            .map(|t| serde_json::json!({ "text": format!("seeded {:?}", t.kind) }))
            .collect();
        let unavailable = if blind {
            vec![SourceUnavailable {
                source: Source::Redis,
                error: "connection refused".to_owned(),
            }]
        } else {
            Vec::new()
        };
        let (counts, severities) = tally(&violations);
        db.record_cycle(&CycleRecord {
            started_at_ms: at,
            finished_at_ms: at + 40,
            duration_ms: 40.0,
            trigger: "schedule",
            checks_run: &ids,
            outcomes: &outcomes,
            sources_unavailable: &unavailable,
            taken_at_ms: at,
            violations: &violations,
            violation_counts: &counts,
            severities: &severities,
            states: &[],
            transitions: &transitions,
            outbox_payloads: &payloads,
            planner: None,
            previous_memory: &memory,
            next_memory: &memory,
        })
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    let browser = chromium(); // fail first, before any server starts, when it is missing
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("platform.db");
    platform::create_db(&db).unwrap();
    let mut p = Platform::connect(&db, &redis.url()).await.unwrap();
    let now = now_ms();
    for (n, agent) in ["agent-a", "agent-b", HOSTILE].into_iter().enumerate() {
        p.add_agent(agent, 3, 900).unwrap();
        p.start(agent, &format!("run-{n}"), 600, now - 120_000)
            .await
            .unwrap();
    }
    // S-01: a finished row whose slot was never released, on the hostile agent.
    p.start(HOSTILE, "leak-1", 600, now - 120_000)
        .await
        .unwrap();
    p.finish_row("leak-1", "success", now - 60_000).unwrap();

    let state = dir.path().join("state.db");
    seed_history(&state, now);
    let webhook = Webhook::start(vec![]).await;
    let port = free_port();
    let config = dir.path().join("canary.yaml");
    std::fs::write(
        &config,
        format!(
            "platform:
  sqlite_path: {sqlite}
  redis_url: {redis}
state:
  path: {state}
schedule:
  interval: 2s
  startup_delay: 0s
  jitter: 0s
alerts:
  slack:
    webhook_url: {hook}
    min_interval: 10ms
http:
  bind: 127.0.0.1:{port}
  admin_token: {TOKEN}
",
            sqlite = db.display(),
            redis = redis.url(),
            state = state.display(),
            hook = webhook.url(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, dir.path());
    // The two seeded alerts and S-01's fired alert delivered: the page shows delivery states.
    let started = Instant::now();
    daemon.wait_for(Duration::from_secs(30), "three alerts delivered", || {
        webhook.received().len() >= 3
    });
    eprintln!("daemon up, alerts delivered: {:?}", started.elapsed());
    let url = format!("http://127.0.0.1:{port}/");

    // A silence on an invariant that is not red (so S-01's alert above is untouched), with
    // markup in its comment: the page lists it, escaped.
    let silence = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/canary/silences"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "invariant_ids": ["E-06"],
            "subject": "fleet-*",
            "duration": "2h",
            "author": "jane",
            "comment": "schedules <b>migration</b>",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        silence.status(),
        StatusCode::CREATED,
        "creating the silence"
    );

    // The page needs credentials; Chromium sends the URL's as HTTP Basic.
    let authed = format!("http://viewer:{TOKEN}@127.0.0.1:{port}/");
    let dom = run_chromium(&["--dump-dom".to_owned(), authed.clone()]);
    eprintln!(
        "chromium {} rendered {} bytes of DOM",
        browser.display(),
        dom.len()
    );

    let tile = |id: &str, state: &str| format!(r#"data-invariant="{id}" data-state="{state}""#);
    assert!(dom.contains("<h1>"), "not the page:\n{dom}");
    assert!(dom.contains(&tile("S-01", "red")), "{dom}");
    assert!(dom.contains(&tile("E-02", "green")), "{dom}");
    assert!(dom.contains(&tile("S-03", "green")), "{dom}");
    // The red tile carries its summary, escaped: text in the DOM, never an element.
    let s01 = section_after(&dom, &tile("S-01", "red"));
    assert!(
        s01.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co: 1 slot(s) without a running row"
        ),
        "S-01 tile without its summary:\n{s01}"
    );
    assert!(
        !dom.to_lowercase().contains("<script"),
        "a script element reached the DOM"
    );
    assert!(dom.contains("1 invariant red"), "headline:\n{dom}");
    // Sources, the timeline, alerts with their delivery, the silences section.
    assert!(
        dom.contains(r#"data-source="redis" data-state="green""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-source="sqlite" data-state="green""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<svg class="timeline" id="timeline""#),
        "{dom}"
    );
    let bars = |class: &str| dom.matches(&format!(r#"class="bar {class}""#)).count();
    assert!(bars("green") > 200, "green bars: {}", bars("green"));
    assert!(bars("red") >= 10, "red bars: {}", bars("red"));
    assert!(bars("unknown") >= 10, "unknown bars: {}", bars("unknown"));
    assert!(
        dom.contains(r#"data-transition="S-01" data-kind="fired" data-delivery="delivered""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-transition="S-03" data-kind="resolved""#),
        "{dom}"
    );
    assert!(dom.contains(r#"id="silences-heading""#), "{dom}");
    let silences = section_after(&dom, r#"id="silences-heading""#);
    assert!(silences.contains("E-06, subject fleet-*"), "{silences}");
    assert!(
        silences.contains("jane: schedules &lt;b&gt;migration&lt;/b&gt;"),
        "silence comment not escaped:\n{silences}"
    );
    assert!(!dom.contains(TOKEN), "the token reached the page");

    // Without credentials the browser gets the 401, not the page.
    let refused = run_chromium(&["--dump-dom".to_owned(), url.clone()]);
    assert!(!refused.contains("data-invariant"), "{refused}");

    // The screenshot the README shows (desktop width), and a phone-width one beside it.
    let shots = tempfile::tempdir().unwrap();
    let update = std::env::var("CANARY_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1");
    for (name, size) in [
        ("status-page.png", "1280,2060"),
        ("status-page-phone.png", "390,3200"),
    ] {
        let target = if update {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(name)
        } else {
            shots.path().join(name)
        };
        run_chromium(&[
            format!("--screenshot={}", target.display()),
            format!("--window-size={size}"),
            authed.clone(),
        ]);
        let png = std::fs::read(&target).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        // A blank page compresses to a few kB; the rendered one carries text and bars.
        assert!(png.len() > 50_000, "{name}: {} bytes", png.len());
        eprintln!("screenshot {} ({} bytes)", target.display(), png.len());
    }

    daemon.sigterm();
    let status = daemon.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(!log.contains(TOKEN), "the token reached the log");
    // The page reloads itself while open: its loads are DEBUG, its refusals INFO (Chromium asks
    // without credentials first and sends the URL's only after the 401, so each load has one).
    let page_lines = |status: &str| {
        log.lines()
            .filter(|l| l.contains("request answered") && l.contains("http.path=/ "))
            .filter(|l| l.contains(&format!("http.status={status}")))
            .count()
    };
    assert_eq!(page_lines("200"), 0, "{log}");
    assert!(page_lines("401") >= 1, "{log}");
}

/// The DOM from `marker` to the end of its `<li>`.
fn section_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</li>").unwrap_or(rest.len())]
}

/// The router on a real socket over an empty state database, with `token` and `public`.
async fn serve(
    token: Option<&str>,
    public: bool,
) -> (SocketAddr, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.state.path = dir.path().join("state.db");
    config.http.status_page.public = public;
    let db = StateDb::open(&config.state.path).unwrap();
    let runner = CycleRunner::new(Arc::new(config), db);
    let state = AppState::new(
        runner,
        token.map(Secret::new),
        Arc::new(http::Metrics::new()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(http::serve(listener, state, shutdown.clone()));
    (addr, shutdown, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_access_over_http() {
    let client = reqwest::Client::new();
    let (addr, shutdown, _dir) = serve(Some(TOKEN), false).await;
    let page = format!("http://{addr}/");
    let get = |auth: Option<String>| {
        let mut request = client.get(&page);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        request.send()
    };
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        let raw = format!("{user}:{password}");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    };

    // No credentials, a wrong password, the token as the user name: 401 with a Basic challenge.
    for auth in [
        None,
        basic("admin", "wrong"),
        basic(TOKEN, ""),
        basic("admin", &TOKEN[1..]),
    ] {
        let r = get(auth.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Basic realm=\"canary\"");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(TOKEN) && body.contains("admin token as the password"),
            "{body}"
        );
    }
    // Any user name with the token as the password; the API's bearer header too.
    for auth in [
        basic("admin", TOKEN),
        basic("", TOKEN),
        Some(format!("Bearer {TOKEN}")),
    ] {
        let r = get(auth.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{auth:?}");
        let headers = r.headers().clone();
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'"),
            "{headers:?}"
        );
        let html = r.text().await.unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("No verdict yet: no cycle recorded"), "{html}");
        assert!(!html.contains(TOKEN));
    }
    // Basic opens the page only: the API still wants its bearer token.
    let api = client
        .get(format!("http://{addr}/api/canary/status"))
        .header(AUTHORIZATION, basic("admin", TOKEN).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    shutdown.cancel();

    // No token configured: fail closed, whatever is presented.
    let (addr, shutdown, _dir) = serve(None, false).await;
    let r = client
        .get(format!("http://{addr}/"))
        .header(AUTHORIZATION, basic("admin", TOKEN).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("admin token not configured")
    );
    shutdown.cancel();

    // `http.status_page.public: true` opens the page explicitly, token or not; the API stays shut.
    for token in [None, Some(TOKEN)] {
        let (addr, shutdown, _dir) = serve(token, true).await;
        let r = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "public, token {:?}",
            token.is_some()
        );
        assert!(r.text().await.unwrap().contains("canary status"));
        let api = client
            .get(format!("http://{addr}/api/canary/status"))
            .send()
            .await
            .unwrap();
        assert_ne!(api.status(), StatusCode::OK);
        shutdown.cancel();
    }
}
