//! Redis Cluster against a real three-primary cluster (`tests/support/cluster.rs`), nothing
//! mocked; the platform's keys are written by canary's own fleet writer
//! (`canary::fleet::platform` on a `RedisTarget::Cluster`):
//!
//! - the fleet on a cluster: the simulated fleet churning on it is green cycle after cycle;
//!   the core recipes (S-01 leak, S-03 short TTL, L-03 orphan slot key, S-04 orphan metadata)
//!   go red once, fire one alert, resolve once; `canary fleet --seed-only --redis-cluster`
//!   writes a dataset over all three nodes in one pipeline per node, and `canary check` on it
//!   is green;
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
use canary::fleet::platform::{self, Platform, RedisTarget};
use canary::fleet::redis_server::free_loopback_port;
use canary::fleet::rig::Rig;
use redis::{Commands, Value};

use crate::redis_deployed::{check, readme_acl, redis_reason};
use crate::support::cli::canary;
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
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    platform::create_db(&db).expect("schema");
    let mut p = Platform::connect(&db, RedisTarget::Cluster(c.addrs()))
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
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    platform::create_db(&db).expect("schema");
    // The fleet writes as the default user (the ACL user may only read).
    let mut p = Platform::connect(&db, RedisTarget::Cluster(c.addrs()))
        .await
        .expect("platform");
    for i in 0..9 {
        let (agent, id) = (format!("agent-{i:02}"), format!("run-{i:02}"));
        p.add_agent(&agent, 2, 900).expect("agent");
        p.start(&agent, &id, 900, now_ms() - 60_000)
            .await
            .expect("start");
    }
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

/// A churning simulated fleet writing to the cluster (slot sets and metadata on all three
/// nodes), watched by the daemon's sequencer: green, cycle after cycle, every node read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_churning_on_a_cluster_is_green() {
    let c = Cluster::start();
    let spec = canary::fleet::sim::FleetSpec {
        agents: 12,
        rate_per_min: 600.0,
        ..crate::fleet::recipe_fleet_spec()
    };
    let rig = Rig::start_with_cluster(c.addrs(), &spec, &[])
        .await
        .unwrap_or_else(|e| panic!("starting the fleet on the cluster: {e}"));
    let env = crate::support::fleet::FleetEnv::watch(rig, |_| {}).await;
    // Let it claim and finish on every node, then watch it for a while.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for _ in 0..20 {
        let result = env.cycle().await;
        assert!(
            crate::support::fleet::red(&result).is_empty() && result.sources_unavailable.is_empty(),
            "a clean fleet on the cluster is not green:\n{}",
            crate::support::fleet::describe(&result)
        );
        let json = serde_json::to_value(&result).expect("json");
        let nodes = cluster_report(&json)["nodes"].as_array().map(Vec::len);
        assert_eq!(nodes, Some(3), "{}", cluster_report(&json));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    // The fleet's keys are on every node.
    for (i, node) in c.nodes.iter().enumerate() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("agent:slots:*")
            .query(&mut node_conn(node))
            .expect("KEYS");
        assert!(!keys.is_empty(), "node {i} holds no slot set");
    }
    let stats = env.stop().await;
    assert_eq!(
        stats.errors, 0,
        "fleet write errors on the cluster: {stats}"
    );
    assert!(stats.started > 0 && stats.finished > 0, "{stats}");
}

/// Recipe `name` end to end on a fresh cluster: the fleet and the fault written through the
/// cluster client, canary reading every primary.
async fn recipe_on_cluster(name: &str) {
    let c = Cluster::start();
    let recipe = crate::fleet::recipe_named(name);
    let rig = Rig::start_with_cluster(c.addrs(), &crate::fleet::recipe_fleet_spec(), &[recipe])
        .await
        .unwrap_or_else(|e| panic!("starting the fleet on the cluster: {e}"));
    let env = crate::support::fleet::FleetEnv::watch(rig, |_| {}).await;
    crate::fleet::detect_with(name, env, "a 3-primary cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_leak_on_a_cluster() {
    recipe_on_cluster("s01-leak").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_short_ttl_on_a_cluster() {
    recipe_on_cluster("s03-short-ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_orphan_meta_on_a_cluster() {
    recipe_on_cluster("s04-orphan-meta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l03_orphan_on_a_cluster() {
    recipe_on_cluster("l03-orphan").await;
}

/// `canary fleet --seed-only --redis-cluster`: the dataset lands on all three nodes in one
/// pipeline per node (900 commands, under the batch size), and `canary check` reading the
/// cluster finds it green.
#[test]
fn fleet_seed_only_writes_a_cluster_in_one_pipeline_per_node() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    let seeds = c.addrs().join(",");
    let (code, stdout, stderr) = canary(&[
        "fleet",
        "--seed-only",
        "--sqlite-path",
        &db.display().to_string(),
        "--redis-cluster",
        &seeds,
        "--agents",
        "100",
        "--rows",
        "10000",
        "--slots",
        "300",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("300 (900 Redis commands in 3 pipelines)"),
        "{stdout}"
    );
    let mut total = 0;
    for (i, node) in c.nodes.iter().enumerate() {
        let n: i64 = redis::cmd("DBSIZE")
            .query(&mut node_conn(node))
            .expect("DBSIZE");
        assert!(n > 0, "node {i} got nothing");
        total += n;
    }
    // A slot set per agent holding a slot, a metadata hash per member.
    assert!(total > 300, "{total}");
    let cfg_path = dir.path().join("cluster.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "platform:\n  sqlite_path: {}\n  redis_url: redis://{}/0\n  redis_cluster:\n    \
             nodes: [{}]\nstate:\n  path: {}\n",
            db.display(),
            c.addrs()[0],
            c.addrs().join(", "),
            dir.path().join("state.db").display()
        ),
    )
    .expect("config");
    let (code, result, stderr) = check(&cfg_path);
    assert_eq!(code, 0, "{}\n{stderr}", result["outcomes"]);
    assert_eq!(
        cluster_report(&result)["nodes"].as_array().map(Vec::len),
        Some(3)
    );
}
