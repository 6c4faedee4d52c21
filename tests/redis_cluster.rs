//! Redis Cluster reads against a real three-primary cluster (`tests/support/cluster.rs`),
//! nothing mocked:
//!
//! - through the real `canary check` binary: agents spread over all three primaries (an
//!   agent's slot set and its metadata hash on different nodes), a clean platform is green, a
//!   leaked slot is red (S-01), a short metadata TTL is red (S-03), a primary killed is exit 2
//!   (unknown), never green; the round trips are one `CLUSTER SLOTS` plus at most three per
//!   primary (its SCAN page, one pipeline per phase), the same with three times the agents;
//!   `redis_url`'s host is a dead address and the first seed is dead too: only the live seeds
//!   can have named the nodes;
//! - through the library: canary's hash slot equals the server's `CLUSTER KEYSLOT`; a reshard
//!   under way (`ASK`) and a finished one the map has not seen (`MOVED`) are followed once,
//!   and a slot still redirected after that, or answered `CLUSTERDOWN`, fails the read (never
//!   a partial one).

use canary::clock::now_ms;
use canary::collect::redis::ReadBatch;
use canary::collect::redis::cluster::{self, key_slot};
use canary::config::platform::{PlatformConfig, RedisCluster};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::free_loopback_port;
use redis::{Commands, Value};

use crate::redis_deployed::{check, readme_acl, redis_reason};
use crate::support::cluster::{Cluster, node_conn};

fn cluster_report(result: &serde_json::Value) -> &serde_json::Value {
    &result["diagnostics"]["collect"]["redis_route"]["cluster"]
}

/// Round trips a node must get for its keys: its SCAN page, the `ZRANGE`/`GET` pipeline when
/// it holds a slot set or the drain tick, the `PTTL`/`HGET` pipeline when it holds metadata.
fn expected_round_trips(c: &Cluster, agents: &[(String, String)], node: usize) -> u64 {
    let zrange = agents
        .iter()
        .any(|(a, _)| c.owner(&format!("agent:slots:{a}")) == node)
        || c.owner("canary:drain_tick_at") == node;
    let meta = agents
        .iter()
        .any(|(a, id)| c.owner(&format!("agent:slot:{a}:{id}")) == node);
    1 + u64::from(zrange) + u64::from(meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_read_on_every_primary_with_round_trips_constant_per_node() {
    let c = Cluster::start();
    let scratch = crate::support::redis_server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    platform::create_db(&db).expect("schema");
    let mut p = Platform::connect(&db, &scratch.url())
        .await
        .expect("platform");
    let mut agents: Vec<(String, String)> = Vec::new();
    let add = async |p: &mut Platform, agents: &mut Vec<(String, String)>, n: usize| {
        for i in agents.len()..agents.len() + n {
            let (agent, id) = (format!("agent-{i:02}"), format!("run-{i:02}"));
            p.add_agent(&agent, 2, 900).expect("agent");
            p.start(&agent, &id, 900, now_ms() - 60_000)
                .await
                .expect("start");
            agents.push((agent, id));
        }
    };
    add(&mut p, &mut agents, 12).await;
    c.copy_from(&scratch);

    // The keys are spread: every node holds slot sets, and some agent's slot set and metadata
    // hash live on different nodes (no hash tags).
    for node in 0..3 {
        assert!(
            agents
                .iter()
                .any(|(a, _)| c.owner(&format!("agent:slots:{a}")) == node),
            "no slot set on node {node}"
        );
    }
    assert!(agents.iter().any(|(a, id)| {
        c.owner(&format!("agent:slots:{a}")) != c.owner(&format!("agent:slot:{a}:{id}"))
    }));

    let dead = format!("127.0.0.1:{}", free_loopback_port().expect("port"));
    let seeds = c.addrs();
    let cfg_path = dir.path().join("cluster.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "platform:\n  sqlite_path: {}\n  redis_url: redis://127.0.0.1:1/0\n  redis_cluster:\n    \
             nodes: [{dead}, {}]\nstate:\n  path: {}\n",
            db.display(),
            seeds.join(", "),
            dir.path().join("state.db").display()
        ),
    )
    .expect("config");

    let (code, healthy, stderr) = check(&cfg_path);
    assert_eq!(code, 0, "{}\n{stderr}", healthy["outcomes"]);
    let report = cluster_report(&healthy);
    assert_eq!(report["seed"], seeds[0], "{report}");
    assert_eq!(report["seeds_failed"].as_array().map(Vec::len), Some(1));
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{report}");
    let mut total = 1; // CLUSTER SLOTS on the seed
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["addr"], seeds[i], "{report}");
        let want = expected_round_trips(&c, &agents, i);
        assert_eq!(
            node["round_trips"].as_u64(),
            Some(want),
            "node {i}: {report}"
        );
        assert!(want <= 3);
        total += want;
    }
    assert_eq!(
        healthy["diagnostics"]["collect"]["redis_round_trips"].as_u64(),
        Some(total),
        "{report}"
    );
    assert_eq!(
        healthy["diagnostics"]["collect"]["redis_route"]["discovery_round_trips"],
        1
    );

    // Three times the agents: the same round trips per node.
    add(&mut p, &mut agents, 24).await;
    c.copy_from(&scratch);
    let (code, more, stderr) = check(&cfg_path);
    assert_eq!(code, 0, "{}\n{stderr}", more["outcomes"]);
    assert_eq!(more["outcomes"], healthy["outcomes"]);
    for (i, node) in cluster_report(&more)["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .enumerate()
    {
        assert_eq!(node["round_trips"].as_u64(), Some(3), "node {i}");
    }
    assert_eq!(
        more["diagnostics"]["collect"]["redis_round_trips"].as_u64(),
        Some(10)
    );

    // A leaked slot (a member with no running row), written through the cluster.
    let mut w = c.client();
    let _: i64 = w
        .zadd("agent:slots:agent-01", "leaked-1", now_ms() / 1000 - 30)
        .expect("zadd");
    let (code, leaked, stderr) = check(&cfg_path);
    assert_eq!(code, 1, "{}\n{stderr}", leaked["outcomes"]);
    assert_eq!(leaked["outcomes"]["S-01"], "red");
    let _: i64 = w.zrem("agent:slots:agent-01", "leaked-1").expect("zrem");
    let (code, _, stderr) = check(&cfg_path);
    assert_eq!(code, 0, "{stderr}");

    // S-03: a metadata TTL that does not outlive the execution's timeout + buffer.
    let _: bool = w.expire("agent:slot:agent-02:run-02", 900).expect("expire");
    let (code, short, stderr) = check(&cfg_path);
    assert_eq!(code, 1, "{}\n{stderr}", short["outcomes"]);
    assert_eq!(short["outcomes"]["S-03"], "red");

    // A primary down: unknown (exit 2), never green, and the message names the node only.
    let mut c = c;
    c.nodes[2].kill();
    let (code, blind, stderr) = check(&cfg_path);
    assert_eq!(code, 2, "{}\n{stderr}", blind["outcomes"]);
    let reason = redis_reason(&blind);
    assert!(reason.contains("cluster"), "{reason}");
    assert!(!reason.contains("redis://"), "{reason}");
    assert_ne!(blind["outcomes"]["S-01"], "green");
}

/// The README's ACL line plus its cluster additions (`+cluster|slots +asking`), with the
/// password; an ACL user on every node.
fn cluster_acl_args() -> Vec<String> {
    let readme = include_str!("../README.md");
    let additions = readme
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("ACL SETUSER canary (cluster additions)")
        })
        .expect("the README's cluster ACL additions");
    let mut args = vec![
        "--user".to_owned(),
        "canary".to_owned(),
        "on".to_owned(),
        ">cluster-acl-pw".to_owned(),
    ];
    args.extend(readme_acl());
    args.extend(additions.split_whitespace().map(str::to_owned));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_plus_its_cluster_additions_is_enough_on_every_node() {
    let c = Cluster::start_with(&cluster_acl_args());
    let scratch = crate::support::redis_server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    platform::create_db(&db).expect("schema");
    let mut p = Platform::connect(&db, &scratch.url())
        .await
        .expect("platform");
    for i in 0..9 {
        let (agent, id) = (format!("agent-{i:02}"), format!("run-{i:02}"));
        p.add_agent(&agent, 2, 900).expect("agent");
        p.start(&agent, &id, 900, now_ms() - 60_000)
            .await
            .expect("start");
    }
    c.copy_from(&scratch);
    let password = dir.path().join("redis-password");
    std::fs::write(&password, "cluster-acl-pw\n").expect("password file");
    let cfg_path = dir.path().join("cluster.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "platform:\n  sqlite_path: {}\n  redis_url: redis://127.0.0.1:1/0\n  redis_username: \
             canary\n  redis_password_file: {}\n  redis_cluster:\n    nodes: [{}]\nstate:\n  \
             path: {}\n",
            db.display(),
            password.display(),
            c.addrs().join(", "),
            dir.path().join("state.db").display()
        ),
    )
    .expect("config");
    let (code, result, stderr) = check(&cfg_path);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    let mut w = c.client();
    let _: i64 = w
        .zadd("agent:slots:agent-03", "leaked-1", now_ms() / 1000 - 30)
        .expect("zadd");
    let (code, result, stderr) = check(&cfg_path);
    assert_eq!(code, 1, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(result["outcomes"]["S-01"], "red");
    for (i, node) in c.nodes.iter().enumerate() {
        let log: Vec<Value> = redis::cmd("ACL")
            .arg("LOG")
            .query(&mut node_conn(node))
            .expect("ACL LOG");
        assert!(log.is_empty(), "node {i} denied: {log:?}");
    }
    assert!(!stderr.contains("cluster-acl-pw"));
}

fn cluster_config(c: &Cluster) -> (PlatformConfig, RedisCluster) {
    let cluster = RedisCluster { nodes: c.addrs() };
    let cfg = PlatformConfig {
        redis_url: "redis://127.0.0.1:1/0".to_owned(),
        redis_cluster: Some(cluster.clone()),
        ..PlatformConfig::default()
    };
    (cfg, cluster)
}

fn setslot(c: &Cluster, node: usize, slot: u16, args: &[&str]) {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SETSLOT").arg(slot);
    for a in args {
        cmd.arg(*a);
    }
    let _: () = cmd
        .query(&mut node_conn(&c.nodes[node]))
        .unwrap_or_else(|e| panic!("SETSLOT {args:?}: {e}"));
}

/// Moves `key` (alone in its slot) from its owner to `to`, leaving the slot mid-reshard
/// (MIGRATING on the source, IMPORTING on the target).
fn migrate_key(c: &Cluster, key: &str, from: usize, to: usize) -> u16 {
    let slot = c.keyslot(key);
    setslot(c, to, slot, &["IMPORTING", &c.id(from)]);
    setslot(c, from, slot, &["MIGRATING", &c.id(to)]);
    let _: Value = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(c.nodes[to].port())
        .arg(key)
        .arg(0)
        .arg(5000)
        .query(&mut node_conn(&c.nodes[from]))
        .expect("MIGRATE");
    slot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_during_a_reshard_are_followed_once() {
    let c = Cluster::start();
    let mut w = c.client();

    // canary's slot function is the server's.
    for key in [
        "agent:slots:agent-00",
        "agent:slot:agent-07:run-07",
        "canary:drain_tick_at",
        "{tag}x",
        "a{}b",
        "é",
    ] {
        assert_eq!(key_slot(key.as_bytes()), c.keyslot(key), "{key}");
    }

    let (cfg, cluster_cfg) = cluster_config(&c);
    let (key, other) = ("reshard-key-1", "reshard-key-2");
    let _: () = w.set(key, "v1").expect("set");
    let _: () = w.set(other, "v2").expect("set");
    let from = c.owner(key);
    let to = (from + 1) % 3;
    let mut read = cluster::connect(&cfg, &cluster_cfg)
        .await
        .map_err(|(e, _, _)| e)
        .expect("connect");

    // ASK: the key has moved to the importing node; the source redirects, canary follows
    // with ASKING.
    let slot = migrate_key(&c, key, from, to);
    let mut batch = ReadBatch::new();
    batch.get(key.as_bytes());
    batch.get(other.as_bytes());
    let replies = read.run(&batch).await.expect("read through ASK");
    assert_eq!(replies[0], Value::BulkString(b"v1".to_vec()));
    assert_eq!(replies[1], Value::BulkString(b"v2".to_vec()));
    let report = read.report();
    assert_eq!(
        report.redirects,
        [format!("ASK {slot} 127.0.0.1:{}", c.nodes[to].port())]
    );

    // MOVED: the reshard is finished; the map this read started with has not seen it.
    setslot(&c, to, slot, &["NODE", &c.id(to)]);
    setslot(&c, from, slot, &["NODE", &c.id(to)]);
    let before = read.round_trips();
    let replies = read.run(&batch).await.expect("read through MOVED");
    assert_eq!(replies[0], Value::BulkString(b"v1".to_vec()));
    assert!(
        read.report()
            .redirects
            .contains(&format!("MOVED {slot} 127.0.0.1:{}", c.nodes[to].port())),
        "{:?}",
        read.report()
    );
    // The read pipelines plus one per redirect target.
    assert!(read.round_trips() - before <= 3);
    // Later reads go to the new owner directly.
    let before = read.round_trips();
    read.run(&batch).await.expect("direct");
    let direct = read.round_trips() - before;
    assert!(direct <= 2, "{direct}");

    // Still redirected after one redirect: the read fails (unavailable), never partial.
    // Another slot mid-reshard, but its target forgets it is importing: the source says ASK,
    // the target (not importing) says MOVED back.
    let stuck = "reshard-key-3";
    let _: () = w.set(stuck, "v3").expect("set");
    assert_ne!(c.keyslot(stuck), slot);
    let (from, to) = (c.owner(stuck), (c.owner(stuck) + 1) % 3);
    let mut fresh = cluster::connect(&cfg, &cluster_cfg)
        .await
        .map_err(|(e, _, _)| e)
        .expect("connect");
    let stuck_slot = migrate_key(&c, stuck, from, to);
    setslot(&c, to, stuck_slot, &["STABLE"]);
    let mut batch = ReadBatch::new();
    batch.get(stuck.as_bytes());
    let err = fresh.run(&batch).await.expect_err("still redirected");
    assert!(
        err.to_string()
            .contains(&format!("slot {stuck_slot} still redirected")),
        "{err}"
    );

    // A slot its owner no longer serves (CLUSTERDOWN in place of the value): the read fails,
    // it is not an odd value to skip.
    let down = "reshard-key-4";
    let _: () = w.set(down, "v4").expect("set");
    let owner = c.owner(down);
    let mut stale = cluster::connect(&cfg, &cluster_cfg)
        .await
        .map_err(|(e, _, _)| e)
        .expect("connect");
    let _: () = redis::cmd("CLUSTER")
        .arg("DELSLOTS")
        .arg(c.keyslot(down))
        .query(&mut node_conn(&c.nodes[owner]))
        .expect("DELSLOTS");
    let mut batch = ReadBatch::new();
    batch.get(down.as_bytes());
    let err = stale.run(&batch).await.expect_err("slot not served");
    assert!(err.to_string().contains("CLUSTERDOWN"), "{err}");
}
