//! Redis as it is deployed, through the real `canary check` binary against private
//! `redis-server`s started with the options under test, nothing mocked:
//!
//! - TLS (`rediss://`): verified against `platform.redis_tls.ca_file` (green, and a slot leak
//!   red), refused against the system roots (unknown, never green), accepted with
//!   `insecure_skip_verify` (which `config validate` warns about), and mutual TLS with a client
//!   certificate when the server requires one;
//! - an ACL user holding exactly the README's minimal ACL, its password from
//!   `platform.redis_password_file`: green on a healthy platform, red on a leak, and the server's
//!   `ACL LOG` empty afterwards, which proves canary issued no command outside that ACL; a wrong
//!   password is unknown and never shown;
//! - `config validate` refuses TLS settings on a plain `redis://` URL and half a client pair;
//! - the core Redis recipes (S-01 leak, S-03 short TTL, S-04 orphan metadata, L-03 orphan) run
//!   end to end over `rediss://` as the README's ACL user: red once, one fired and one resolved
//!   alert each.

use std::path::{Path, PathBuf};

use canary::clock::now_ms;
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::{RedisServer, free_loopback_port};
use serde_json::Value;

use crate::support::cli::canary;
use crate::support::tls::{TestPki, pki};

/// The ACL the README gives operators (`ACL SETUSER canary …`), without the password.
pub(crate) fn readme_acl() -> Vec<String> {
    let readme = include_str!("../README.md");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER canary"))
        .expect("the README's ACL line");
    line.split_whitespace()
        .skip(3) // ACL SETUSER canary
        .filter(|rule| !rule.starts_with('>'))
        .map(str::to_owned)
        .collect()
}

/// A platform SQLite with two agents, one running execution holding its slot: green.
pub(crate) struct Platformed {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: PathBuf,
}

pub(crate) async fn healthy_platform(redis: &RedisServer) -> Platformed {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    platform::create_db(&db).expect("schema");
    let mut p = Platform::connect(&db, &redis.url())
        .await
        .expect("platform");
    p.add_agent("agent-a", 2, 900).expect("agent");
    p.add_agent("agent-b", 2, 900).expect("agent");
    p.start("agent-a", "run-1", 900, now_ms() - 60_000)
        .await
        .expect("start");
    Platformed { dir, db }
}

/// Writes a config; `redis` is the YAML of the Redis keys under `platform:`.
pub(crate) fn config(p: &Platformed, name: &str, redis: &str) -> PathBuf {
    let path = p.dir.path().join(name);
    std::fs::write(
        &path,
        format!(
            "platform:\n  sqlite_path: {}\n{redis}state:\n  path: {}\n",
            p.db.display(),
            p.dir.path().join("state.db").display()
        ),
    )
    .expect("config");
    path
}

pub(crate) fn check(config: &Path) -> (i32, Value, String) {
    let config = config.display().to_string();
    let (code, stdout, stderr) = canary(&[
        "check",
        "--no-persist",
        "--format",
        "json",
        "--config",
        &config,
    ]);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

pub(crate) fn redis_reason(result: &Value) -> String {
    result["sources_unavailable"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["source"] == "redis"))
        .and_then(|s| s["error"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Leaks a slot (a member with no running row) on the plain port, as the platform would.
pub(crate) fn leak_slot(redis: &RedisServer) {
    let mut conn = crate::support::redis_server::connect(redis);
    let _: i64 = redis::cmd("ZADD")
        .arg("agent:slots:agent-b")
        .arg(now_ms() / 1000 - 30)
        .arg("leaked-1")
        .query(&mut conn)
        .expect("zadd");
}

/// A server with a TLS port beside the plain one; (server, TLS port).
fn tls_server(pki: &TestPki, require_client_cert: bool) -> (RedisServer, u16) {
    let tls_port = free_loopback_port().expect("port");
    let server = RedisServer::start_with(|dir| tls_args(dir, pki, tls_port, require_client_cert))
        .unwrap_or_else(|e| panic!("{e}"));
    (server, tls_port)
}

/// Writes `pki`'s CA and server certificate into `dir` and returns the `redis-server` arguments
/// of a TLS port beside the plain one.
fn tls_args(dir: &Path, pki: &TestPki, tls_port: u16, require_client_cert: bool) -> Vec<String> {
    for (name, text) in [
        ("ca.crt", &pki.ca),
        ("server.crt", &pki.server_cert),
        ("server.key", &pki.server_key),
    ] {
        std::fs::write(dir.join(name), text).expect("write pki");
    }
    let path = |name: &str| dir.join(name).display().to_string();
    vec![
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        path("server.crt"),
        "--tls-key-file".to_owned(),
        path("server.key"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.crt"),
        "--tls-auth-clients".to_owned(),
        if require_client_cert { "yes" } else { "no" }.to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_verified_against_the_configured_ca() {
    let pki = pki();
    let (server, tls_port) = tls_server(&pki, false);
    let p = healthy_platform(&server).await;
    let ca = p.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).expect("ca");
    let url = format!("rediss://localhost:{tls_port}/0");

    let verified = config(
        &p,
        "tls.yaml",
        &format!(
            "  redis_url: {url}\n  redis_tls:\n    ca_file: {}\n",
            ca.display()
        ),
    );
    let (code, result, stderr) = check(&verified);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    leak_slot(&server);
    let (code, result, stderr) = check(&verified);
    assert_eq!(code, 1, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(result["outcomes"]["S-01"], "red");

    // The system roots do not know the test CA: unknown, never green.
    let system = config(&p, "system.yaml", &format!("  redis_url: {url}\n"));
    let (code, result, stderr) = check(&system);
    assert_eq!(code, 2, "{}\n{stderr}", result["outcomes"]);
    assert!(
        redis_reason(&result).starts_with("connect:"),
        "{}",
        redis_reason(&result)
    );

    // The escape hatch works, and validation says what it costs.
    let insecure = config(
        &p,
        "insecure.yaml",
        &format!("  redis_url: {url}\n  redis_tls:\n    insecure_skip_verify: true\n"),
    );
    let (code, result, stderr) = check(&insecure);
    assert_eq!(code, 1, "{}\n{stderr}", result["outcomes"]);
    let (code, stdout, stderr) = canary(&[
        "config",
        "validate",
        "--config",
        &insecure.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("warning: platform.redis_tls.insecure_skip_verify is true"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = pki();
    let (server, tls_port) = tls_server(&pki, true);
    let p = healthy_platform(&server).await;
    let write = |name: &str, text: &str| {
        let path = p.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca = write("ca.pem", &pki.ca);
    let cert = write("client.crt", &pki.client_cert);
    let key = write("client.key", &pki.client_key);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let with_cert = config(
        &p,
        "mtls.yaml",
        &format!(
            "  redis_url: {url}\n  redis_tls:\n    ca_file: {}\n    client_cert_file: {}\n    client_key_file: {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    let (code, result, stderr) = check(&with_cert);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    let without = config(
        &p,
        "no-cert.yaml",
        &format!(
            "  redis_url: {url}\n  redis_tls:\n    ca_file: {}\n",
            ca.display()
        ),
    );
    let (code, result, stderr) = check(&without);
    assert_eq!(code, 2, "{}\n{stderr}", result["outcomes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_readme_acl_is_enough_and_nothing_else_is_sent() {
    let acl = readme_acl();
    assert!(acl.contains(&"-@all".to_owned()), "{acl:?}");
    let server = RedisServer::start_with(|_| {
        let mut args = vec![
            "--user".to_owned(),
            "canary".to_owned(),
            "on".to_owned(),
            ">acl-s3cret-pw".to_owned(),
        ];
        args.extend(acl.iter().cloned());
        args
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let p = healthy_platform(&server).await;
    let password = p.dir.path().join("redis-password");
    std::fs::write(&password, "acl-s3cret-pw\n").expect("password file");
    let as_canary = config(
        &p,
        "acl.yaml",
        &format!(
            "  redis_url: {}\n  redis_username: canary\n  redis_password_file: {}\n",
            server.url(),
            password.display()
        ),
    );
    let (code, result, stderr) = check(&as_canary);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    leak_slot(&server);
    let (code, result, stderr) = check(&as_canary);
    assert_eq!(code, 1, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(result["outcomes"]["S-01"], "red");

    // Every command canary sent was within the ACL: the server logged no denial.
    let mut admin = crate::support::redis_server::connect(&server);
    let denials: Vec<Value> = redis::cmd("ACL")
        .arg("LOG")
        .query::<redis::Value>(&mut admin)
        .map(|v| match v {
            redis::Value::Array(entries) => entries
                .into_iter()
                .map(|e| Value::String(format!("{e:?}")))
                .collect(),
            _ => Vec::new(),
        })
        .expect("ACL LOG");
    assert!(denials.is_empty(), "denied: {denials:?}");

    // A wrong password: unknown, and no password in any output.
    std::fs::write(&password, "wr0ng-acl-pw\n").expect("password file");
    let (code, result, stderr) = check(&as_canary);
    assert_eq!(code, 2, "{}\n{stderr}", result["outcomes"]);
    assert!(
        redis_reason(&result).contains("authentication failed"),
        "{}",
        redis_reason(&result)
    );
    let everything = format!("{result}{stderr}");
    assert!(!everything.contains("wr0ng-acl-pw"), "{everything}");
    assert!(!everything.contains("acl-s3cret-pw"), "{everything}");
}

#[test]
fn validation_refuses_tls_settings_it_cannot_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "platform:\n  sqlite_path: /p.db\n  redis_url: redis://127.0.0.1:6379/0\n  redis_tls:\n    client_cert_file: /nonexistent/client.crt\n",
    )
    .expect("config");
    let (code, _, stderr) = canary(&[
        "config",
        "validate",
        "--config",
        &path.display().to_string(),
    ]);
    assert_eq!(code, 78, "{stderr}");
    for expected in [
        "platform.redis_tls: applies only to a rediss:// redis_url",
        "platform.redis_tls.client_cert_file: client_cert_file and client_key_file go together",
        "platform.redis_tls.client_cert_file: /nonexistent/client.crt",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

/// The core Redis recipes over TLS with an ACL user holding exactly the README's ACL: each goes
/// red once (one fired alert) and resolves once, as on a plain Redis. The fleet writes through
/// the server's plain port as the default user; canary reads only through `rediss://` as
/// `canary`.
async fn recipe_over_tls_and_acl(name: &str) {
    use canary::fleet::rig::Rig;

    let pki = pki();
    let tls_port = free_loopback_port().expect("port");
    let acl = readme_acl();
    let redis = RedisServer::start_with(|dir| {
        let mut args = tls_args(dir, &pki, tls_port, false);
        args.extend([
            "--user".to_owned(),
            "canary".to_owned(),
            "on".to_owned(),
            ">tls-acl-pw".to_owned(),
        ]);
        args.extend(acl.iter().cloned());
        args
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = redis.dir().join("ca.crt");
    let password = redis.dir().join("canary-password");
    std::fs::write(&password, "tls-acl-pw\n").expect("password file");
    let recipe = crate::fleet::recipe_named(name);
    let rig = Rig::start_with_redis(redis, &crate::fleet::recipe_fleet_spec(), &[recipe])
        .await
        .unwrap_or_else(|e| panic!("starting the platform: {e}"));
    let env = crate::support::fleet::FleetEnv::watch(rig, |config| {
        let p = &mut config.platform;
        p.redis_url = format!("rediss://localhost:{tls_port}/0");
        p.redis_tls.ca_file = Some(ca);
        p.redis_username = Some("canary".to_owned());
        p.redis_password_file = Some(password);
    })
    .await;
    crate::fleet::detect_with(name, env, "rediss:// + ACL user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_leak_over_tls_and_acl() {
    recipe_over_tls_and_acl("s01-leak").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_short_ttl_over_tls_and_acl() {
    recipe_over_tls_and_acl("s03-short-ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_orphan_meta_over_tls_and_acl() {
    recipe_over_tls_and_acl("s04-orphan-meta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l03_orphan_over_tls_and_acl() {
    recipe_over_tls_and_acl("l03-orphan").await;
}
