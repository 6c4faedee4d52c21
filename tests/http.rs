//! The admin HTTP API against real stores: a private `redis-server`, a platform SQLite database
//! and a state database in a temp dir. Most requests go through the router in process
//! (`tower::ServiceExt::oneshot`); one test serves on a real socket on 127.0.0.1:0.
//!
//! Single-flight is proven with real concurrency, not timing luck: Redis is reached through a
//! gate (a TCP proxy that holds each connection until the test opens it). The first request to
//! start a cycle blocks inside the cycle, holding the runner, for as long as the gate stays
//! shut; every other request therefore meets a busy runner, whatever the scheduling. The test
//! opens the gate only once all the others have answered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use canary::clock::now_ms;
use canary::config::{Config, Secret};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::http::{self, AppState};
use canary::schedule::runner::CycleRunner;
use canary::store::StateDb;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "tok-S3CRET-0123456789abcdef";

/// A gate in front of Redis: connections are accepted at once (and reported), but no byte
/// flows until [`Gate::open`].
struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    accepted: mpsc::UnboundedReceiver<()>,
}

impl Gate {
    async fn start(upstream: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, opened) = watch::channel(false);
        let (tx, accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let _ = tx.send(());
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Gate {
            addr,
            open,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Waits until canary has connected (so a cycle is running and holds the runner).
    async fn wait_accepted(&mut self) {
        tokio::time::timeout(Duration::from_secs(20), self.accepted.recv())
            .await
            .expect("a cycle connects to Redis")
            .expect("gate alive");
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// A healthy platform, a state database and the API over them.
struct Env {
    dir: tempfile::TempDir,
    _redis: RedisServer,
    platform: Platform,
    gate: Option<Gate>,
    runner: CycleRunner,
    state: AppState,
    app: Router,
}

struct Options {
    token: Option<&'static str>,
    gated: bool,
    body_limit: usize,
    request_timeout: Duration,
    /// Give the runner a second state-DB connection, as the daemon does.
    side_connection: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: Some(TOKEN),
            gated: false,
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            side_connection: false,
        }
    }
}

impl Env {
    async fn new() -> Env {
        Env::with(Options::default()).await
    }

    /// Three agents with one running and one finished execution each, and an idle tagged agent.
    async fn with(options: Options) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("platform.db");
        platform::create_db(&db).unwrap();
        let mut platform = Platform::connect(&db, &redis.url()).await.unwrap();
        let now = now_ms();
        for a in ["agent-a", "agent-b", "agent-c"] {
            platform.add_agent(a, 3, 900).unwrap();
            platform
                .start(a, &format!("{a}-run-0"), 600, now - 120_000)
                .await
                .unwrap();
            platform
                .add_finished(a, &format!("{a}-done"), "success", now - 60_000)
                .unwrap();
        }
        platform.add_agent("agent-idle", 3, 900).unwrap();
        platform.add_tag("agent-idle", "x").unwrap();

        let gate = if options.gated {
            Some(Gate::start(redis.port()).await)
        } else {
            None
        };
        let mut config = Config::default();
        config.platform.sqlite_path = db;
        config.platform.redis_url = gate.as_ref().map_or_else(|| redis.url(), Gate::url);
        // The gated tests hold Redis shut for a while: the collector must wait, not give up.
        config.platform.redis_connect_timeout = Duration::from_secs(30);
        config.platform.redis_response_timeout = Duration::from_secs(30);
        config.state.path = dir.path().join("state.db");
        config.http.admin_token = options.token.map(Secret::new);
        config.http.body_limit_bytes = options.body_limit;
        config.http.request_timeout = options.request_timeout;
        let state_db = StateDb::open(&config.state.path).unwrap();
        let side = options
            .side_connection
            .then(|| StateDb::open(&config.state.path).unwrap());
        let mut runner = CycleRunner::new(Arc::new(config), state_db);
        if let Some(side) = side {
            runner = runner.with_side_connection(side);
        }
        let state = AppState::from_config(runner.clone()).unwrap();
        let app = http::router(state.clone());
        Env {
            dir,
            _redis: redis,
            platform,
            gate,
            runner,
            state,
            app,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    fn cycle_rows(&self) -> i64 {
        rusqlite::Connection::open(self.state_path())
            .unwrap()
            .query_row("SELECT COUNT(*) FROM cycles", [], |r| r.get(0))
            .unwrap()
    }

    async fn get(&self, uri: &str) -> Reply {
        send(&self.app, Method::GET, uri, Some(TOKEN), Body::empty()).await
    }

    async fn run_cycle(&self, body: Value) -> Reply {
        send(
            &self.app,
            Method::POST,
            "/api/canary/run-cycle",
            Some(TOKEN),
            Body::from(body.to_string()),
        )
        .await
    }
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }
}

async fn send(app: &Router, method: Method, uri: &str, token: Option<&str>, body: Body) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let env = Env::new().await;
    let r = send(&env.app, Method::GET, "/healthz", None, Body::empty())
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.text, "ok");
}

#[tokio::test]
async fn admin_routes_need_the_right_token() {
    let env = Env::new().await;
    for uri in ["/api/canary/status", "/api/canary/invariants"] {
        for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let r = send(&env.app, Method::GET, uri, token, Body::empty())
                .await
                .expect(StatusCode::UNAUTHORIZED);
            assert_eq!(
                r.headers[header::WWW_AUTHENTICATE],
                "Bearer realm=\"canary\""
            );
            assert_eq!(r.json()["error"], "missing or invalid bearer token");
        }
    }
    let r = send(
        &env.app,
        Method::POST,
        "/api/canary/run-cycle",
        Some("wrong"),
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.cycle_rows(), 0, "a rejected request runs nothing");
}

#[tokio::test]
async fn no_token_configured_fails_closed() {
    let env = Env::with(Options {
        token: None,
        ..Options::default()
    })
    .await;
    for (method, uri) in [
        (Method::GET, "/api/canary/status"),
        (Method::GET, "/api/canary/violations"),
        (Method::POST, "/api/canary/run-cycle"),
    ] {
        // Whatever the client sends, including an empty bearer.
        for token in [None, Some(""), Some(TOKEN)] {
            let r = send(&env.app, method.clone(), uri, token, Body::empty())
                .await
                .expect(StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.json(), json!({"error": "admin token not configured"}));
        }
    }
    send(&env.app, Method::GET, "/healthz", None, Body::empty())
        .await
        .expect(StatusCode::OK);
    assert_eq!(env.cycle_rows(), 0);
}

#[tokio::test]
async fn run_cycle_answers_the_cycle_result() {
    let env = Env::new().await;
    // An empty body means every enabled invariant.
    let r = send(
        &env.app,
        Method::POST,
        "/api/canary/run-cycle",
        Some(TOKEN),
        Body::empty(),
    )
    .await
    .expect(StatusCode::OK);
    let result = r.json();
    assert!(result["cycle_id"].as_i64().is_some(), "{result:#}");
    assert!(result["taken_at"].as_str().unwrap().ends_with('Z'));
    assert!(result["duration_ms"].as_f64().is_some());
    assert_eq!(result["trigger"], "manual");
    // Every invariant this configuration can run: R-01 needs platform.docker, B-01
    // platform.queue_count (neither configured).
    let mut every_id: Vec<&str> = canary_invariants::catalog::core_ids().collect();
    every_id.sort_unstable();
    assert_eq!(result["checks_run"], json!(every_id));
    assert_eq!(
        result["not_configured"]["R-01"],
        "source docker not configured"
    );
    for id in every_id {
        assert_eq!(result["outcomes"][id], "green", "{result:#}");
    }
    assert_eq!(result["violations"], json!([]));
    assert_eq!(result["transitions"], json!([]));
    assert_eq!(result["sources_unavailable"], json!([]));

    // A restricted cycle runs only what was asked.
    let r = env
        .run_cycle(json!({"invariant_ids": ["S-01"]}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json()["checks_run"], json!(["S-01"]));
    assert_eq!(env.cycle_rows(), 2);
}

#[tokio::test]
async fn run_cycle_names_unknown_ids_and_rejects_bad_bodies() {
    let env = Env::new().await;
    let r = env
        .run_cycle(json!({"invariant_ids": ["S-01", "X-99", "nope"]}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.json();
    assert_eq!(body["unknown_ids"], json!(["X-99", "nope"]));
    assert!(body["error"].as_str().unwrap().contains("X-99"), "{body}");

    for bad in [
        "not json",
        r#"{"invariant_ids": []}"#,
        r#"{"ids": ["S-01"]}"#,
    ] {
        let r = send(
            &env.app,
            Method::POST,
            "/api/canary/run-cycle",
            Some(TOKEN),
            Body::from(bad),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(env.cycle_rows(), 0, "nothing ran");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let env = Env::with(Options {
        body_limit: 1024,
        ..Options::default()
    })
    .await;
    let ids: Vec<String> = (0..400).map(|i| format!("S-{i:02}")).collect();
    let body = json!({ "invariant_ids": ids }).to_string();
    assert!(body.len() > 1024);
    let r = send(
        &env.app,
        Method::POST,
        "/api/canary/run-cycle",
        Some(TOKEN),
        Body::from(body),
    )
    .await
    .expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json(), json!({"error": "request body too large"}));
    assert_eq!(env.cycle_rows(), 0);
}

/// Two red invariants: S-01 (critical, a leaked slot) and L-03 (major, orphaned tag rows), over
/// two cycles: two episodes (one per invariant and subject), each red in both cycles.
async fn red_history(env: &mut Env) -> Vec<Value> {
    // Finished a minute ago: past S-01's finish grace, so a leak rather than a release in flight.
    env.platform
        .finish_row("agent-b-run-0", "success", now_ms() - 60_000)
        .unwrap();
    env.platform.delete_roster_row("agent-idle").unwrap();
    let mut results = Vec::new();
    for _ in 0..2 {
        results.push(env.run_cycle(json!({})).await.expect(StatusCode::OK).json());
    }
    results
}

#[tokio::test]
async fn violations_list_filters_and_total() {
    let mut env = Env::new().await;
    let cycles = red_history(&mut env).await;
    assert_eq!(cycles[0]["outcomes"]["S-01"], "red", "{:#}", cycles[0]);
    assert_eq!(cycles[0]["outcomes"]["L-03"], "red", "{:#}", cycles[0]);

    let all = env
        .get("/api/canary/violations")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        all["total"], 2,
        "one row per episode, not per cycle: {all:#}"
    );
    assert_eq!(all["violations"].as_array().unwrap().len(), 2);
    for v in all["violations"].as_array().unwrap() {
        assert_eq!(
            (&v["status"], &v["cycles"]),
            (&json!("open"), &json!(2)),
            "{v:#}"
        );
    }

    let s01 = env
        .get("/api/canary/violations?invariant_id=S-01")
        .await
        .json();
    assert_eq!(s01["total"], 1);
    assert!(
        s01["violations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["invariant_id"] == "S-01" && v["subject"] == "agent-b")
    );

    let major = env
        .get("/api/canary/violations?severity=major")
        .await
        .json();
    assert_eq!(major["total"], 1);
    assert_eq!(major["violations"][0]["invariant_id"], "L-03");

    // By tier (the episode's, as the catalog gives it): S-01 and L-03 are both tier A.
    let a = env
        .get("/api/canary/violations?tier=A")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(a["total"], 2, "{a:#}");
    assert!(
        a["violations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["tier"] == "A")
    );
    let b = env
        .get("/api/canary/violations?tier=B")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (b["total"].clone(), b["violations"].clone()),
        (json!(0), json!([]))
    );

    let page = env
        .get("/api/canary/violations?limit=1&offset=1")
        .await
        .json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["violations"].as_array().unwrap().len(), 1);

    // Time bounds, in both accepted forms.
    let future = now_ms() + 3_600_000;
    let none = env
        .get(&format!("/api/canary/violations?since={future}"))
        .await
        .json();
    assert_eq!(none["total"], 0);
    let until = env
        .get("/api/canary/violations?until=2000-01-01T00:00:00Z")
        .await
        .json();
    assert_eq!(until["total"], 0);
    let since = env
        .get("/api/canary/violations?since=2000-01-01T00:00:00%2B02:00")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(since["total"], 2);

    for (query, named) in [
        ("severity=huge", "severity"),
        ("tier=C", "tier"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("invariant=S-01", "unknown field"),
    ] {
        let r = env
            .get(&format!("/api/canary/violations?{query}"))
            .await
            .expect(StatusCode::BAD_REQUEST);
        let message = r.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(named), "{query}: {message}");
    }

    // One by id; an absent id is 404, a non-numeric one 400.
    let id = all["violations"][0]["id"].as_i64().unwrap();
    let one = env
        .get(&format!("/api/canary/violations/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(one, all["violations"][0]);
    let r = env
        .get("/api/canary/violations/999999")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"error": "violation 999999 not found"}));
    env.get("/api/canary/violations/abc")
        .await
        .expect(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_status_and_invariants() {
    let mut env = Env::new().await;
    let cycles = red_history(&mut env).await;

    let stats = env
        .get("/api/canary/violations/stats")
        .await
        .expect(StatusCode::OK)
        .json();
    let rows = stats["stats"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{stats:#}");
    let s01 = rows.iter().find(|r| r["invariant_id"] == "S-01").unwrap();
    assert_eq!(s01["severity"], "critical");
    assert_eq!(s01["count"], 2);
    assert_eq!(s01["cycles"], 2, "red in both cycles");
    // Seen first in the first red cycle and last in the second (comparing the two `Option`s
    // would pass with both fields missing: `None <= None`).
    let (first, last) = (s01["first_seen_ms"].as_i64(), s01["last_seen_ms"].as_i64());
    assert!(first.unwrap() <= last.unwrap(), "{s01:#}");
    assert_eq!(s01["first_seen"], cycles[0]["taken_at"], "{s01:#}");
    assert_eq!(s01["last_seen"], cycles[1]["taken_at"], "{s01:#}");
    assert!(s01["first_seen"].as_str().unwrap().ends_with('Z'));
    let future = now_ms() + 3_600_000;
    let later = env
        .get(&format!("/api/canary/violations/stats?since={future}"))
        .await
        .json();
    assert_eq!(later["stats"], json!([]));
    env.get("/api/canary/violations/stats?since=soon")
        .await
        .expect(StatusCode::BAD_REQUEST);

    let status = env
        .get("/api/canary/status")
        .await
        .expect(StatusCode::OK)
        .json();
    let line = |id: &str| status_line(&status, id);
    let s01 = line("S-01");
    assert_eq!(s01["state"], "red");
    assert_eq!(s01["firing"], true);
    assert_eq!(s01["consecutive"], 2);
    assert!(s01["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s01["last_violation"]["subject"], "agent-b");
    let e02 = line("E-02");
    assert_eq!(e02["state"], "green");
    assert_eq!(e02["firing"], false);
    assert!(e02["last_violation"].is_null());
    assert!(status["last_cycle"]["id"].as_i64().is_some());

    let catalog = env
        .get("/api/canary/invariants")
        .await
        .expect(StatusCode::OK)
        .json();
    let entries = catalog["invariants"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, canary_invariants::catalog::ids().collect::<Vec<_>>());
    assert!(
        entries
            .iter()
            .all(|e| e["enabled"] == true && e["rule"].is_string())
    );
}

/// With the daemon's second connection, reads and probes answer while a cycle is in flight
/// (held inside the collector by the Redis gate), instead of queueing behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_probes_do_not_wait_for_a_running_cycle() {
    let mut env = Env::with(Options {
        gated: true,
        side_connection: true,
        ..Options::default()
    })
    .await;
    let cycle = tokio::spawn(post_run_cycle(env.app.clone()));
    let mut gate = env.gate.take().unwrap();
    gate.wait_accepted().await;
    for uri in [
        "/api/canary/violations",
        "/api/canary/status",
        "/metrics",
        "/readyz",
    ] {
        let reply = tokio::time::timeout(Duration::from_secs(3), env.get(uri))
            .await
            .unwrap_or_else(|_| panic!("{uri} waited for the running cycle"));
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
    }
    assert!(!cycle.is_finished(), "the cycle was in flight throughout");
    gate.open();
    cycle.await.unwrap().expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_run_cycles_one_wins_the_rest_get_409() {
    const N: usize = 8;
    let mut env = Env::with(Options {
        gated: true,
        ..Options::default()
    })
    .await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..N {
        requests.spawn(post_run_cycle(env.app.clone()));
    }
    // One of them is now inside its cycle, blocked on Redis and holding the runner; the gate
    // stays shut until every other request has answered, so each of them met a busy runner.
    let mut gate = env.gate.take().unwrap();
    gate.wait_accepted().await;
    let mut statuses = Vec::new();
    for _ in 0..N - 1 {
        let reply = tokio::time::timeout(Duration::from_secs(20), requests.join_next())
            .await
            .expect("the losers answer while the winner is blocked")
            .unwrap()
            .unwrap();
        assert_eq!(reply.json(), json!({"error": "cycle in progress"}));
        statuses.push(reply.status);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    gate.open();
    let winner = tokio::time::timeout(Duration::from_secs(30), requests.join_next())
        .await
        .expect("the winner finishes once Redis answers")
        .unwrap()
        .unwrap()
        .expect(StatusCode::OK);
    assert_eq!(winner.json()["outcomes"]["S-01"], "green");
    assert_eq!(env.cycle_rows(), 1, "exactly one cycle recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_run_cycle_still_records_its_cycle() {
    let mut env = Env::with(Options {
        gated: true,
        request_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let r = env
        .run_cycle(json!({}))
        .await
        .expect(StatusCode::REQUEST_TIMEOUT);
    assert_eq!(r.json(), json!({"error": "request timed out"}));
    let gate = env.gate.take().unwrap();
    gate.open();
    // The cycle went on without the client: it finishes, records and frees the runner.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while env.cycle_rows() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cycle never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = env.runner.with_db(|db| db.last_cycle()).await.unwrap();
    assert_eq!(recorded.unwrap().trigger, "manual");
    assert!(
        env.runner
            .with_db(|db| db.current_lease())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn no_response_ever_carries_the_token() {
    let env = Env::with(Options {
        body_limit: 64,
        ..Options::default()
    })
    .await;
    let near_miss = format!("{TOKEN}x");
    let cases: Vec<(Method, &str, Option<&str>, Body, StatusCode)> = vec![
        (
            Method::GET,
            "/api/canary/status",
            None,
            Body::empty(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/api/canary/status",
            Some(near_miss.as_str()),
            Body::empty(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/api/canary/violations?severity=x",
            Some(TOKEN),
            Body::empty(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/canary/violations/42",
            Some(TOKEN),
            Body::empty(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/canary/run-cycle",
            Some(TOKEN),
            Body::from(r#"{"invariant_ids":["X-1"]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/canary/run-cycle",
            Some(TOKEN),
            Body::from("x".repeat(100)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::GET,
            "/nowhere",
            Some(TOKEN),
            Body::empty(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/api/canary/status",
            Some(TOKEN),
            Body::empty(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    let mut replies = Vec::new();
    for (method, uri, token, body, status) in cases {
        replies.push(
            send(&env.app, method, uri, token, body)
                .await
                .expect(status),
        );
    }
    // An internal failure: the state database loses a table under the running server.
    rusqlite::Connection::open(env.state_path())
        .unwrap()
        .execute_batch("DROP TABLE violation_episodes")
        .unwrap();
    let r = env
        .get("/api/canary/violations")
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json(), json!({"error": "internal error"}));
    replies.push(r);

    for r in &replies {
        assert!(!r.text.contains(TOKEN), "token in body: {}", r.text);
        for (name, value) in &r.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(TOKEN), "token in header {name}: {value}");
        }
    }
}

#[tokio::test]
async fn readyz_follows_the_state_database() {
    let env = Env::new().await;
    // Before the first cycle, within startup_delay + interval of start: ready.
    let r = send(&env.app, Method::GET, "/readyz", None, Body::empty())
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json()["status"], "ready");
    env.run_cycle(json!({})).await.expect(StatusCode::OK);
    let r = send(&env.app, Method::GET, "/readyz", None, Body::empty())
        .await
        .expect(StatusCode::OK);
    assert!(r.json()["last_cycle_at"].as_str().unwrap().ends_with('Z'));

    // Another writer holds the state database's write lock: not writable, not ready.
    let blocker = rusqlite::Connection::open(env.state_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = send(&env.app, Method::GET, "/readyz", None, Body::empty())
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"status": "not ready", "reason": "state database not writable"})
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    send(&env.app, Method::GET, "/readyz", None, Body::empty())
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn serves_on_a_real_socket_and_shuts_down_on_the_token() {
    let env = Env::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, env.state.clone(), shutdown.clone()));
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let unauthorized = client
        .post(format!("{base}/api/canary/run-cycle"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let cycle = client
        .post(format!("{base}/api/canary/run-cycle"))
        .bearer_auth(TOKEN)
        .json(&json!({"invariant_ids": ["S-01", "E-02"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(cycle.status(), 200);
    let result: Value = cycle.json().await.unwrap();
    assert_eq!(result["checks_run"], json!(["E-02", "S-01"]));

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    for needle in [
        "canary_cycles_total{outcome=\"green\"} 1",
        "canary_cycle_duration_seconds_count 1",
        "canary_invariant_state{invariant=\"S-01\"} 0",
        "canary_invariant_state{invariant=\"E-02\"} 0",
        "canary_source_unavailable_total{source=\"redis\"} 0",
        "canary_last_cycle_timestamp_seconds",
        "canary_outbox_pending 0",
        "canary_alerts_total{outcome=\"delivered\"} 0",
        "# TYPE canary_violations counter",
    ] {
        // A whole line (or a sample whose value varies): a bare `contains` would also accept
        // `…{outcome="green"} 10` for `… 1`.
        assert!(
            text.lines()
                .any(|l| l == needle || l.starts_with(&format!("{needle} "))),
            "{needle} missing from:\n{text}"
        );
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer listening"
    );
}

/// Regression: an oversized body sent over a real socket gets its 413 (and a request refused
/// before its body is read gets its 401), every time. hyper closes the connection after
/// answering a request whose body it has not read whole; closing with unread bytes in the
/// receive buffer makes the kernel send RST, which can overtake the answer, so the client saw a
/// reset or `IncompleteMessage` instead (the flaky `daemon::secrets_never_appear…`). Several
/// bodies back to back, on one pooled client, each larger than what one read takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_on_a_real_socket_always_get_their_answer() {
    let env = Env::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/canary/run-cycle",
        listener.local_addr().unwrap()
    );
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, env.state.clone(), shutdown.clone()));
    let client = reqwest::Client::new();

    for round in 0..5 {
        for size in [200_000, 2_000_000] {
            let too_large = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("x".repeat(size))
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, {size} bytes: {e:?}"));
            assert_eq!(too_large.status(), 413, "round {round}, {size} bytes");
            let body: Value = too_large.json().await.unwrap();
            assert_eq!(body, json!({"error": "request body too large"}));

            let unauthorized = client
                .post(&url)
                .body("x".repeat(size))
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, {size} bytes, no token: {e:?}"));
            assert_eq!(unauthorized.status(), 401, "round {round}, {size} bytes");
        }
    }
    assert_eq!(env.cycle_rows(), 0);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
}

/// `POST /api/canary/run-cycle` with an empty body and the right token, ready to spawn.
async fn post_run_cycle(app: Router) -> Reply {
    send(
        &app,
        Method::POST,
        "/api/canary/run-cycle",
        Some(TOKEN),
        Body::empty(),
    )
    .await
}

/// Malformed platform data is counted by kind in `/metrics`, from the last cycle: a slot key of
/// the wrong type shows as `wrong_type 1` (and turns G-05 red), and drops back to 0 once the
/// key is gone.
#[tokio::test]
async fn metrics_count_platform_anomalies_by_kind() {
    let mut env = Env::new().await;
    let key = env.platform.slots_key("agent-idle");
    redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async::<()>(env.platform.redis())
        .await
        .unwrap();
    env.run_cycle(json!({})).await.expect(StatusCode::OK);
    let text = env.get("/metrics").await.expect(StatusCode::OK).text;
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    for line in [
        "canary_platform_anomalies{kind=\"wrong_type\"} 1",
        "canary_platform_anomalies{kind=\"score_not_finite\"} 0",
        "canary_invariant_state{invariant=\"G-05\"} 1",
    ] {
        assert!(has(&text, line), "{line} missing from:\n{text}");
    }

    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(env.platform.redis())
        .await
        .unwrap();
    env.run_cycle(json!({})).await.expect(StatusCode::OK);
    let text = env.get("/metrics").await.expect(StatusCode::OK).text;
    for line in [
        "canary_platform_anomalies{kind=\"wrong_type\"} 0",
        "canary_invariant_state{invariant=\"G-05\"} 0",
    ] {
        assert!(has(&text, line), "{line} missing from:\n{text}");
    }
}

/// One invariant's line of a `/api/canary/status` body (panics, naming it, when absent).
fn status_line(status: &Value, id: &str) -> Value {
    status["invariants"]
        .as_array()
        .expect("status.invariants")
        .iter()
        .find(|l| l["invariant_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {status:#}"))
        .clone()
}

// ---- issue 14: silences, instance ----------------------------------------------------------

async fn silences_request(
    env: &Env,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> Reply {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    send(&env.app, method, uri, token, body).await
}

/// The silences API: admin auth on every method (401 wrong token, 503 none configured), create →
/// list → a cycle records S-01's fire as silenced (L-03 announced) and `/metrics` counts it →
/// expire → the list is empty and `?all=true` keeps it; bad bodies name their problem, an absent
/// id is 404. `/status` and `/metrics` name the instance.
#[tokio::test]
async fn silences_api_round_trip_auth_and_effect() {
    let mut env = Env::new().await;
    let body = json!({
        "invariant_ids": ["S-01"],
        "subject": "agent-*",
        "duration": "2h",
        "author": "jane",
        "comment": "redis migration",
    });
    for (method, uri) in [
        (Method::GET, "/api/canary/silences"),
        (Method::POST, "/api/canary/silences"),
        (Method::DELETE, "/api/canary/silences/1"),
    ] {
        let r = silences_request(&env, method.clone(), uri, Some("wrong"), body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let r = silences_request(&env, method.clone(), uri, None, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let closed = Env::with(Options {
        token: None,
        ..Options::default()
    })
    .await;
    silences_request(
        &closed,
        Method::POST,
        "/api/canary/silences",
        Some(TOKEN),
        body.clone(),
    )
    .await
    .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        env.get("/api/canary/silences")
            .await
            .expect(StatusCode::OK)
            .json(),
        json!({"silences": []}),
        "the refused requests created nothing"
    );

    let created = silences_request(
        &env,
        Method::POST,
        "/api/canary/silences",
        Some(TOKEN),
        body,
    )
    .await
    .expect(StatusCode::CREATED)
    .json();
    assert_eq!(created["state"], "active");
    assert_eq!(created["author"], "jane");
    assert_eq!(created["subject"], "agent-*");
    let id = created["id"].as_i64().unwrap();
    let listed = env
        .get("/api/canary/silences")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(listed["silences"][0], created);

    let cycles = red_history(&mut env).await;
    let transitions = cycles[0]["transitions"].as_array().unwrap();
    let of = |id: &str| {
        transitions
            .iter()
            .find(|t| t["invariant_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of("S-01")["silenced_by"], format!("silence:{id}"));
    assert!(of("L-03").get("silenced_by").is_none(), "{transitions:?}");
    let metrics = env.get("/metrics").await.expect(StatusCode::OK).text;
    assert!(
        metrics.contains("canary_alerts_silenced_total{invariant=\"S-01\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("canary_alerts_silenced_total{invariant=\"L-03\"}"));
    let status = env
        .get("/api/canary/status")
        .await
        .expect(StatusCode::OK)
        .json();
    let line = |id: &str| status_line(&status, id);
    assert_eq!(line("S-01")["alert_silenced_by"], format!("silence:{id}"));
    assert!(line("L-03").get("alert_silenced_by").is_none());
    let instance = env
        .get("/api/canary/status")
        .await
        .expect(StatusCode::OK)
        .json()["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!instance.is_empty());
    assert!(
        metrics.contains(&format!("canary_info{{canary_instance=\"{instance}\"")),
        "{metrics}"
    );

    let expired = silences_request(
        &env,
        Method::DELETE,
        &format!("/api/canary/silences/{id}"),
        Some(TOKEN),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(expired["state"], "expired");
    assert!(expired["expired_at"].is_string());
    assert_eq!(
        env.get("/api/canary/silences").await.json(),
        json!({"silences": []})
    );
    let all = env
        .get("/api/canary/silences?all=true")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(all["silences"][0]["id"], id);
    silences_request(
        &env,
        Method::DELETE,
        "/api/canary/silences/999",
        Some(TOKEN),
        Value::Null,
    )
    .await
    .expect(StatusCode::NOT_FOUND);

    for (bad, named) in [
        (
            json!({"invariant_ids": ["Z-99"], "duration": "1h", "author": "a", "comment": "c"}),
            "Z-99",
        ),
        (
            json!({"invariant_ids": ["S-01"], "author": "a", "comment": "c"}),
            "duration",
        ),
        (
            json!({"invariant_ids": ["S-01"], "duration": "soon", "author": "a", "comment": "c"}),
            "duration",
        ),
        (
            json!({"invariant_ids": ["S-01"], "duration": "1h", "author": "a", "comment": " "}),
            "comment",
        ),
        (
            json!({"invariant_ids": ["S-01"], "ends_at": "2000-01-01T00:00:00Z", "author": "a", "comment": "c"}),
            "past",
        ),
        (
            json!({"invariant_ids": ["S-01"], "duration": "1h", "author": "a", "comment": "c", "x": 1}),
            "unknown field",
        ),
    ] {
        let r = silences_request(
            &env,
            Method::POST,
            "/api/canary/silences",
            Some(TOKEN),
            bad.clone(),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
        let message = r.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(named), "{bad}: {message}");
    }
}
