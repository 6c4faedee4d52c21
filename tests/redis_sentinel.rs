//! Redis Sentinel and replica reads, through the real `canary check` binary against real
//! `redis-server`s (a primary, a `--replicaof` replica, three `--sentinel`s), nothing mocked:
//!
//! - Sentinel: green on a healthy platform, red on a leaked slot; after `SENTINEL FAILOVER`
//!   canary reads the new primary with the same outcomes (no false alarm either way); an
//!   unreachable sentinel is skipped, one killed mid-run is too (two left); all of them down is
//!   exit 2 (unknown), with a message that holds no password. `redis_url`'s host and port are
//!   a dead address throughout: only the sentinels can have named the node.
//! - Replica mode via the sentinels: the replica is read (its `INFO replication` lag shown in
//!   the diagnostics, the slot reads counted on the replica, not the primary) and sees a leak.
//! - Replica mode via `redis_replica_url`, under the README's ACL plus `+info`: a replica whose
//!   link is down is not read (the primary is, that cycle), so its stale leak is no alarm; no
//!   command was denied on either node; a "primary" that is a replica, or the primary killed
//!   with no failover, is unknown (exit 2), never a stale read.

use std::time::Duration;

use serde_json::Value;

use crate::redis_deployed::{check, config, healthy_platform, leak_slot, readme_acl, redis_reason};
use crate::support::cli::canary;
use crate::support::sentinel::{Deployment, MASTER, info_replication, replica_of_with};

const SENTINEL_PW: &str = "sentinel-s3cret-pw";

fn route(result: &Value) -> &Value {
    &result["diagnostics"]["collect"]["redis_route"]
}

fn unleak(server: &canary::fleet::redis_server::RedisServer) {
    let mut conn = crate::support::redis_server::connect(server);
    let _: i64 = redis::cmd("ZREM")
        .arg("agent:slots:agent-b")
        .arg("leaked-1")
        .query(&mut conn)
        .expect("zrem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_without_a_false_alarm() {
    let mut d = Deployment::start(SENTINEL_PW);
    let p = healthy_platform(&d.primary).await;
    let pw_file = p.dir.path().join("sentinel-password");
    std::fs::write(&pw_file, format!("{SENTINEL_PW}\n")).expect("password file");
    // A sentinel that is not there comes first: it is skipped.
    let dead = format!(
        "127.0.0.1:{}",
        canary::fleet::redis_server::free_loopback_port().expect("port")
    );
    let addrs: Vec<String> = d.sentinels.iter().map(|s| s.addr()).collect();
    let cfg = config(
        &p,
        "sentinel.yaml",
        &format!(
            "  redis_url: redis://127.0.0.1:1/0\n  redis_sentinel:\n    master_name: {MASTER}\n    \
             sentinels: [{dead}, {}]\n    password_file: {}\n",
            addrs.join(", "),
            pw_file.display()
        ),
    );

    let (code, healthy, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", healthy["outcomes"]);
    let r = route(&healthy);
    assert_eq!(
        r["primary"],
        format!("127.0.0.1:{}", d.primary.port()),
        "{r}"
    );
    assert_eq!(r["sentinel"], addrs[0], "{r}");
    assert_eq!(
        r["sentinels_failed"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    assert_eq!(r["read_from"], "primary", "{r}");
    // One sentinel pipeline on top of the plain three (SCAN, ZRANGE pipeline, PTTL/HGET).
    assert_eq!(r["discovery_round_trips"], 1, "{r}");
    assert_eq!(healthy["diagnostics"]["collect"]["redis_round_trips"], 4);

    leak_slot(&d.primary);
    let (code, leaked, stderr) = check(&cfg);
    assert_eq!(code, 1, "{}\n{stderr}", leaked["outcomes"]);
    assert_eq!(leaked["outcomes"]["S-01"], "red");

    d.failover();
    let (code, after, stderr) = check(&cfg);
    assert_eq!(code, 1, "{}\n{stderr}", after["outcomes"]);
    assert_eq!(
        after["outcomes"], leaked["outcomes"],
        "same verdicts after failover"
    );
    assert_eq!(
        route(&after)["primary"],
        format!("127.0.0.1:{}", d.replica.port()),
        "{}",
        route(&after)
    );
    // The new primary takes the platform's writes: the leak is fixed there, and canary sees it.
    unleak(&d.replica);
    let (code, fixed, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", fixed["outcomes"]);
    assert_eq!(fixed["outcomes"], healthy["outcomes"], "no false alarm");

    // A sentinel killed mid-run: the next one answers.
    d.sentinels[0].kill();
    let (code, two_left, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", two_left["outcomes"]);
    assert_eq!(route(&two_left)["sentinel"], addrs[1]);
    assert_eq!(two_left["outcomes"], healthy["outcomes"]);

    // None left: unknown (exit 2), never green, and no password anywhere.
    for s in &mut d.sentinels {
        s.kill();
    }
    let (code, blind, stderr) = check(&cfg);
    assert_eq!(code, 2, "{}\n{stderr}", blind["outcomes"]);
    let reason = redis_reason(&blind);
    assert!(
        reason.starts_with("sentinels: none named the primary"),
        "{reason}"
    );
    assert_eq!(blind["outcomes"]["S-01"], "unknown");
    let everything = format!("{blind}{stderr}");
    assert!(!everything.contains(SENTINEL_PW), "{everything}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_mode_via_the_sentinels_reads_the_caught_up_replica() {
    let d = Deployment::start(SENTINEL_PW);
    let p = healthy_platform(&d.primary).await;
    let pw_file = p.dir.path().join("sentinel-password");
    std::fs::write(&pw_file, SENTINEL_PW).expect("password file");
    let cfg = config(
        &p,
        "replica.yaml",
        &format!(
            "  redis_url: redis://127.0.0.1:1/0\n  redis_read_from: replica\n  redis_sentinel:\n    \
             master_name: {MASTER}\n    sentinels: {}\n    password_file: {}\n",
            d.sentinels_yaml(),
            pw_file.display()
        ),
    );
    let mut primary_conn = crate::support::redis_server::connect(&d.primary);
    let mut replica_conn = crate::support::redis_server::connect(&d.replica);
    let zrange =
        |c: &mut redis::Connection| crate::support::redis_server::command_calls(c, "zrange");
    let (primary_before, replica_before) = (zrange(&mut primary_conn), zrange(&mut replica_conn));

    let (code, result, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    let r = route(&result);
    assert_eq!(r["configured"], "replica", "{r}");
    assert_eq!(r["read_from"], "replica", "{r}");
    let replica = &r["replica"];
    assert_eq!(
        replica["addr"],
        format!("127.0.0.1:{}", d.replica.port()),
        "{r}"
    );
    assert_eq!(replica["master_link_status"], "up", "{r}");
    assert!(
        replica["master_last_io_seconds_ago"].as_i64().is_some(),
        "{r}"
    );
    assert!(replica["offset_lag_bytes"].as_i64().is_some(), "{r}");
    assert!(replica["caught_up_after_ms"].as_f64().is_some(), "{r}");
    assert!(replica["fallback"].is_null(), "{r}");
    // The sentinel pipeline, INFO on the primary and on the replica, then the plain three.
    assert_eq!(r["discovery_round_trips"], 3, "{r}");
    assert_eq!(result["diagnostics"]["collect"]["redis_round_trips"], 6);
    assert!(
        zrange(&mut replica_conn) > replica_before,
        "the replica was read"
    );
    assert_eq!(
        zrange(&mut primary_conn),
        primary_before,
        "the primary was not"
    );

    // A leak written to the primary reaches the replica before canary reads it.
    leak_slot(&d.primary);
    let (code, result, stderr) = check(&cfg);
    assert_eq!(code, 1, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(result["outcomes"]["S-01"], "red");
    assert_eq!(route(&result)["read_from"], "replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_link_is_down_is_not_read_past_the_lag_bound() {
    // Both nodes hold the README's ACL plus +info (replica mode's one extra command).
    let mut acl = readme_acl();
    acl.push("+info".to_owned());
    let user = |acl: &[String]| {
        let mut args = vec![
            "--user".to_owned(),
            "canary".to_owned(),
            "on".to_owned(),
            ">replica-acl-pw".to_owned(),
        ];
        args.extend(acl.iter().cloned());
        args
    };
    let primary = canary::fleet::redis_server::RedisServer::start_with(|_| user(&acl))
        .unwrap_or_else(|e| panic!("{e}"));
    let replica = replica_of_with(&primary, user(&acl));
    let p = healthy_platform(&primary).await;
    let pw = p.dir.path().join("redis-password");
    std::fs::write(&pw, "replica-acl-pw").expect("password file");
    let cfg = config(
        &p,
        "replica-url.yaml",
        &format!(
            "  redis_url: {}\n  redis_username: canary\n  redis_password_file: {}\n  \
             redis_read_from: replica\n  redis_replica_url: {}\n  redis_max_replica_lag: 300ms\n",
            primary.url(),
            pw.display(),
            replica.url()
        ),
    );
    let (code, result, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    let r = route(&result);
    assert_eq!(r["read_from"], "replica", "{r}");
    assert!(
        r["replica"]["addr"].is_null(),
        "the replica URL is not shown: {r}"
    );
    assert_eq!(r["discovery_round_trips"], 2, "{r}");
    assert_eq!(result["diagnostics"]["collect"]["redis_round_trips"], 5);

    // The replica loses its primary (REPLICAOF a port nobody listens on) while holding a leak
    // that the primary has since fixed: reading it would be a false alarm.
    leak_slot(&primary);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !info_replication(&replica).contains("slave_repl_offset")
        || redis::cmd("ZSCORE")
            .arg("agent:slots:agent-b")
            .arg("leaked-1")
            .query::<Option<f64>>(&mut crate::support::redis_server::connect(&replica))
            .expect("zscore")
            .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "leak never replicated"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let nowhere = canary::fleet::redis_server::free_loopback_port().expect("port");
    let _: redis::Value = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(nowhere)
        .query(&mut crate::support::redis_server::connect(&replica))
        .expect("REPLICAOF");
    unleak(&primary);
    let (code, result, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    let r = route(&result);
    assert_eq!(r["read_from"], "primary", "{r}");
    assert_eq!(r["replica"]["master_link_status"], "down", "{r}");
    assert!(
        r["replica"]["fallback"]
            .as_str()
            .is_some_and(|f| f.contains("link to its primary is down")),
        "{r}"
    );

    // No command canary sent was outside the ACL, on either node.
    for server in [&primary, &replica] {
        let log: redis::Value = redis::cmd("ACL")
            .arg("LOG")
            .query(&mut crate::support::redis_server::connect(server))
            .expect("ACL LOG");
        assert_eq!(log, redis::Value::Array(Vec::new()), "denied: {log:?}");
    }
    let everything = format!("{result}{stderr}");
    assert!(!everything.contains("replica-acl-pw"), "{everything}");

    // redis_url naming the replica (and the replica URL the primary): its "primary" is a
    // replica, so there is no offset to bound a lag with: unknown, not a stale read.
    let swapped = config(
        &p,
        "swapped.yaml",
        &format!(
            "  redis_url: {}\n  redis_username: canary\n  redis_password_file: {}\n  \
             redis_read_from: replica\n  redis_replica_url: {}\n",
            replica.url(),
            pw.display(),
            primary.url()
        ),
    );
    let (code, result, stderr) = check(&swapped);
    assert_eq!(code, 2, "{}\n{stderr}", result["outcomes"]);
    assert!(
        redis_reason(&result).contains("the primary reports role \"slave\""),
        "{}",
        redis_reason(&result)
    );

    // The primary gone, no failover: nothing bounds the replica's lag, so Redis is unknown
    // (exit 2), never the replica's stale view.
    let mut primary = primary;
    primary.kill();
    let (code, result, stderr) = check(&cfg);
    assert_eq!(code, 2, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(result["outcomes"]["S-01"], "unknown");
    assert!(
        redis_reason(&result).starts_with("connect:"),
        "{}",
        redis_reason(&result)
    );
}

#[test]
fn validation_refuses_sentinel_settings_it_cannot_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "platform:\n  sqlite_path: /p.db\n  redis_url: unix:///run/redis.sock\n  \
         redis_read_from: replica\n  redis_sentinel:\n    master_name: m\n    \
         sentinels: [10.0.0.1]\n",
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
        "platform.redis_sentinel.sentinels[0]: \"10.0.0.1\" is not host:port",
        "platform.redis_url: with redis_sentinel it must be redis:// or rediss://",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

/// `redis_sentinel.tls: true`: the sentinels are asked over their TLS port, verified with
/// `platform.redis_tls.ca_file` (the data node stays plain `redis://`); without the CA the
/// system roots refuse the test certificate and the cycle is unknown, never green; with
/// `tls: false` the TLS port is not spoken to in plain text either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_over_tls_are_verified_with_redis_tls() {
    let pki = crate::support::tls::pki();
    let d = Deployment::start_tls(SENTINEL_PW, &pki);
    let p = healthy_platform(&d.primary).await;
    let pw_file = p.dir.path().join("sentinel-password");
    std::fs::write(&pw_file, format!("{SENTINEL_PW}\n")).expect("password file");
    let ca = p.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).expect("ca");
    let addrs: Vec<String> = d.sentinels.iter().map(|s| s.tls_addr()).collect();
    let sentinel_yaml = |tls: bool, ca_file: bool| {
        format!(
            "  redis_url: redis://127.0.0.1:1/0\n{}  redis_sentinel:\n    master_name: {MASTER}\n    \
             sentinels: [{}]\n    password_file: {}\n    tls: {tls}\n",
            if ca_file {
                format!("  redis_tls:\n    ca_file: {}\n", ca.display())
            } else {
                String::new()
            },
            addrs.join(", "),
            pw_file.display()
        )
    };

    let cfg = config(&p, "sentinel-tls.yaml", &sentinel_yaml(true, true));
    let (code, healthy, stderr) = check(&cfg);
    assert_eq!(code, 0, "{}\n{stderr}", healthy["outcomes"]);
    let r = route(&healthy);
    assert_eq!(r["sentinel"], addrs[0], "{r}");
    assert_eq!(
        r["primary"],
        format!("127.0.0.1:{}", d.primary.port()),
        "{r}"
    );
    leak_slot(&d.primary);
    let (code, leaked, stderr) = check(&cfg);
    assert_eq!(code, 1, "{}\n{stderr}", leaked["outcomes"]);
    assert_eq!(leaked["outcomes"]["S-01"], "red");

    // The system roots do not know the test CA: every sentinel refused, unknown.
    let cfg = config(&p, "sentinel-tls-roots.yaml", &sentinel_yaml(true, false));
    let (code, unverified, stderr) = check(&cfg);
    assert_eq!(code, 2, "{}\n{stderr}", unverified["outcomes"]);
    assert_ne!(unverified["outcomes"]["S-01"], "green");
    assert_eq!(
        route(&unverified)["sentinels_failed"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{}",
        route(&unverified)
    );
    assert!(!stderr.contains(SENTINEL_PW));

    // Plain text to a TLS port: refused too.
    let cfg = config(&p, "sentinel-plain.yaml", &sentinel_yaml(false, false));
    let (code, plain, stderr) = check(&cfg);
    assert_eq!(code, 2, "{}\n{stderr}", plain["outcomes"]);
    assert!(!redis_reason(&plain).is_empty());
}
