//! The queue-accessor source (B-01) against real stores through `canary check`: a real HTTP
//! endpoint (a local axum server counting the queued rows of a real SQLite platform file, with
//! per-agent scripted misbehaviour) and a private `redis-server`.
//!
//! Green when the counts agree; red `count_mismatch` when the endpoint drifts; a transient
//! mismatch healed by the re-read (not red); a 500, garbage JSON or a timeout → that agent
//! unknown while the others are judged; the endpoint down → the source unavailable (B-01
//! unknown, never green; the blind machinery covers it); the URL and the token appear in no
//! output and not in the state database. The PostgreSQL side of the re-read runs in the fleet
//! suite (`fleet::on_postgres::b01_accessor_drift`, `…on_postgres_typed…`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use canary::fleet::redis_server::RedisServer;
use serde_json::{Value, json};

use crate::support::platform_db::{AgentRow, ExecRow, PlatformDb, iso};

/// Only ever in the endpoint's path and query (the URL is a secret).
const URL_SECRET: &str = "url-secret-4e1f";
/// Only ever in the token file.
const TOKEN: &str = "token-secret-9b2c";

/// What the endpoint does for one agent.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Counts the agent's queued rows (a coherent accessor).
    Count,
    /// Always answers this count (a drifted accessor).
    Fixed(u64),
    /// Answers this count once, then counts (a transient mismatch).
    Once(u64),
    /// Answers this count once, then this status (the re-read fails).
    OnceThenStatus(u64, u16),
    /// Answers this status.
    Status(u16),
    /// Answers a body that is not JSON.
    Garbage,
    /// Answers a count under another key.
    WrongKey,
    /// Answers after this long.
    Slow(Duration),
}

struct Endpoint {
    db: PathBuf,
    script: Mutex<BTreeMap<String, Behaviour>>,
    /// Agent names as received and whether the bearer token came with each request.
    seen: Mutex<Vec<(String, bool)>>,
}

async fn queue(
    State(e): State<Arc<Endpoint>>,
    UrlPath((secret, agent)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    e.seen.lock().unwrap().push((agent.clone(), authorized));
    if secret != URL_SECRET || !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let behaviour = {
        let mut script = e.script.lock().unwrap();
        let b = script.get(&agent).cloned().unwrap_or(Behaviour::Count);
        match b {
            Behaviour::Once(_) => {
                script.insert(agent.clone(), Behaviour::Count);
            }
            Behaviour::OnceThenStatus(_, code) => {
                script.insert(agent.clone(), Behaviour::Status(code));
            }
            _ => {}
        }
        b
    };
    let count = |db: &Path, agent: &str| -> u64 {
        let conn = rusqlite::Connection::open(db).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM schedule_executions WHERE agent_name = ?1 AND status = 'queued'",
                [agent],
                |r| r.get(0),
            )
            .unwrap();
        u64::try_from(n).unwrap()
    };
    match behaviour {
        Behaviour::Count => Json(json!({"queued": count(&e.db, &agent)})).into_response(),
        Behaviour::Fixed(n) | Behaviour::Once(n) | Behaviour::OnceThenStatus(n, _) => {
            Json(json!({"queued": n})).into_response()
        }
        Behaviour::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Behaviour::Garbage => "<html>busy</html>".into_response(),
        Behaviour::WrongKey => Json(json!({"count": 1})).into_response(),
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            Json(json!({"queued": count(&e.db, &agent)})).into_response()
        }
    }
}

/// A platform (SQLite file + private Redis), the endpoint over it, a state DB, in a temp dir.
struct Env {
    dir: tempfile::TempDir,
    platform: PlatformDb,
    redis: RedisServer,
    endpoint: Arc<Endpoint>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Env {
    /// Agents `a` (2 queued rows), `b` (none), `c` (1 queued row, 1 running).
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let platform = PlatformDb::create();
        platform.add_agents(&[AgentRow::new("a"), AgentRow::new("b"), AgentRow::new("c")]);
        let now = iso(chrono::Utc::now().timestamp_millis());
        platform.add_executions(&[
            ExecRow::new("a-1", "a", "queued")
                .queued_at(&now)
                .metadata("{}"),
            ExecRow::new("a-2", "a", "queued")
                .queued_at(&now)
                .metadata("{}"),
            ExecRow::new("c-1", "c", "queued")
                .queued_at(&now)
                .metadata("{}"),
        ]);
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let endpoint = Arc::new(Endpoint {
            db: platform.path().to_path_buf(),
            script: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/{secret}/agents/{agent}/queue", get(queue))
            .with_state(Arc::clone(&endpoint));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Env {
            dir,
            platform,
            redis,
            endpoint,
            addr,
            server,
        }
    }

    fn script(&self, agent: &str, b: Behaviour) {
        self.endpoint
            .script
            .lock()
            .unwrap()
            .insert(agent.to_owned(), b);
    }

    /// The config: the platform, the endpoint at `addr` (the live one unless given), B-01 only.
    fn config(&self, addr: Option<std::net::SocketAddr>) -> PathBuf {
        let path = self.dir.path().join("canary.yaml");
        let addr = addr.unwrap_or(self.addr);
        let yaml = format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {}\n  queue_count:\n    \
             url: \"http://{addr}/{URL_SECRET}/agents/{{agent}}/queue?key={URL_SECRET}\"\n    \
             json_pointer: /queued\n    token_file: {}\n    timeout: 500ms\n    \
             concurrency: 2\nstate:\n  path: {}\nalerts:\n  blind_after: 1\n",
            self.platform.path().display(),
            self.redis.url(),
            self.dir.path().join("token").display(),
            self.dir.path().join("state.db").display(),
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `canary check --invariant B-01` on a blocking thread (the endpoint serves meanwhile).
    async fn check(&self, config: &Path) -> (i32, Value, String) {
        let config = config.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_canary"))
                .args([
                    "check",
                    "--format",
                    "json",
                    "--invariant",
                    "B-01",
                    "--config",
                ])
                .arg(&config)
                .env_remove("CANARY_CONFIG")
                .env("RUST_LOG", "debug")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let json = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
            assert_no_secret(&stdout, "stdout");
            assert_no_secret(&stderr, "stderr");
            (out.status.code().unwrap_or(-1), json, stderr)
        })
        .await
        .unwrap()
    }

    /// The state database's files hold neither the URL nor the token.
    fn assert_state_secret_free(&self) {
        for name in ["state.db", "state.db-wal"] {
            let bytes = std::fs::read(self.dir.path().join(name)).unwrap_or_default();
            assert_no_secret(&String::from_utf8_lossy(&bytes), name);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(
        !text.contains(URL_SECRET) && !text.contains(TOKEN),
        "{what} leaks the queue_count URL or token:\n{text}"
    );
}

fn violations(result: &Value) -> Vec<Value> {
    result["violations"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherent_counts_are_green_and_every_request_carries_the_token() {
    let env = Env::new().await;
    let (code, result, stderr) = env.check(&env.config(None)).await;
    assert_eq!(code, 0, "{result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "green");
    assert_eq!(result["diagnostics"]["collect"]["queue_count_requests"], 3);
    let seen = env.endpoint.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, token)| *token), "{seen:?}");
    env.assert_state_secret_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_that_survives_the_reread_is_red_with_both_counts_and_the_ids() {
    let env = Env::new().await;
    env.script("a", Behaviour::Fixed(0));
    let (code, result, stderr) = env.check(&env.config(None)).await;
    assert_eq!(code, 1, "{result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "red");
    let v = violations(&result);
    assert_eq!(v.len(), 1, "{result}");
    assert_eq!(v[0]["subject"], "a");
    assert_eq!(v[0]["signal"], "count_mismatch");
    assert_eq!(v[0]["severity"], "critical");
    let evidence = &v[0]["observed_state"];
    assert_eq!(
        (evidence["reported"].clone(), evidence["read"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(evidence["ids"], json!(["a-1", "a-2"]));
    assert_eq!(evidence["reread"], true);
    // 3 asked + 1 re-read + 1 confirmation.
    assert_eq!(result["diagnostics"]["collect"]["queue_count_requests"], 5);
    env.assert_state_secret_free();

    // The accessor fixed: one resolved transition.
    env.script("a", Behaviour::Count);
    let (code, green, _) = env.check(&env.config(None)).await;
    assert_eq!(code, 0, "{green}");
    assert_eq!(green["transitions"][0]["kind"], "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_mismatch_is_healed_by_the_reread() {
    let env = Env::new().await;
    env.script("a", Behaviour::Once(7));
    let (code, result, stderr) = env.check(&env.config(None)).await;
    assert_eq!(code, 0, "{result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "green");
    assert!(violations(&result).is_empty());
    assert_eq!(result["diagnostics"]["collect"]["queue_count_requests"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reread_leaves_that_agent_unknown_not_green_nor_red() {
    let env = Env::new().await;
    env.script("a", Behaviour::OnceThenStatus(9, 503));
    let (code, result, stderr) = env.check(&env.config(None)).await;
    assert_eq!(code, 2, "unknown: {result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "unknown");
    assert!(violations(&result).is_empty(), "{result}");
    let reason = result["diagnostics"]["unknown_reasons"]["B-01"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("1 agent(s): a"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_is_unknown_alone_and_never_green() {
    let env = Env::new().await;
    env.script("b", Behaviour::Status(500));
    env.script("c", Behaviour::Garbage);
    let (code, result, stderr) = env.check(&env.config(None)).await;
    assert_eq!(code, 2, "unknown: {result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "unknown");
    let reason = result["diagnostics"]["unknown_reasons"]["B-01"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("2 agent(s)") && reason.contains('b') && reason.contains('c'),
        "{reason}"
    );
    // The source itself is readable: no blind alert for one sick agent.
    assert!(result["sources_unavailable"].as_array().unwrap().is_empty());

    // A drift on the healthy agent still fires beside them.
    env.script("a", Behaviour::Fixed(9));
    env.script("c", Behaviour::WrongKey);
    env.script("b", Behaviour::Slow(Duration::from_secs(2)));
    let (code, result, _) = env.check(&env.config(None)).await;
    assert_eq!(code, 1, "{result}");
    assert_eq!(violations(&result).len(), 1);
    assert_eq!(violations(&result)[0]["subject"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_down_is_unavailable_unknown_and_the_blind_alert_covers_it() {
    let env = Env::new().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, result, stderr) = env.check(&env.config(Some(closed))).await;
    assert_eq!(code, 2, "{result}\n{stderr}");
    assert_eq!(result["outcomes"]["B-01"], "unknown");
    let unavailable = &result["sources_unavailable"][0];
    assert_eq!(unavailable["source"], "queue_count");
    let error = unavailable["error"].as_str().unwrap_or_default();
    assert!(error.contains("all 3 agents"), "{error}");
    assert!(!error.contains("127.0.0.1"), "{error}");
    let blind: Vec<&str> = result["blind"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["readable"] == false)
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert_eq!(blind, ["queue_count"]);
    assert_eq!(result["blind"]["transitions"][0]["kind"], "fired");
    env.assert_state_secret_free();

    // Without the key B-01 is not configured: not run, not unknown.
    let yaml = std::fs::read_to_string(env.config(None)).unwrap();
    let cut = yaml.find("  queue_count:").unwrap();
    let end = yaml.find("state:").unwrap();
    let bare = format!("{}{}", &yaml[..cut], &yaml[end..]);
    let path = env.dir.path().join("bare.yaml");
    std::fs::write(&path, bare).unwrap();
    // `--invariant B-01` alone then checks nothing: unknown (exit 2), never a green.
    let (code, result, _) = env.check(&path).await;
    assert_eq!(code, 2, "{result}");
    assert!(result["outcomes"].get("B-01").is_none(), "{result}");
    assert_eq!(
        result["not_configured"]["B-01"],
        "source queue_count not configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_names_are_percent_encoded_and_a_bad_config_never_quotes_the_url() {
    let env = Env::new().await;
    env.platform.add_agents(&[AgentRow::new("we ird/x?")]);
    let (code, result, _) = env.check(&env.config(None)).await;
    assert_eq!(code, 0, "{result}");
    let seen = env.endpoint.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(a, _)| a == "we ird/x?"), "{seen:?}");

    // `config show` redacts the URL.
    let path = env.config(None);
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["config", "show", "--config"])
        .arg(&path)
        .env_remove("CANARY_CONFIG")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("queue_count") && shown.contains("[redacted]"),
        "{shown}"
    );
    assert_no_secret(&shown, "config show");

    // `{agent}` missing: refused at validation (exit 78), the URL not shown.
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{agent}", "agent");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["config", "validate", "--config"])
        .arg(&path)
        .env_remove("CANARY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("platform.queue_count.url") || stdout.contains("platform.queue_count.url")
    );
    assert_no_secret(&stderr, "stderr");
    assert_no_secret(&stdout, "stdout");
}
