//! A private three-primary Redis Cluster per test: three `redis-server --cluster-enabled yes`
//! in their own temp dirs on free ports (the bus port picked free too, not port + 10000), the
//! slots assigned at test time (`CLUSTER ADDSLOTSRANGE`, thirds), joined with `CLUSTER MEET`,
//! ready once every node reports `cluster_state:ok` and knows all three primaries. Fails (never
//! skips) when `redis-server` is missing.
//!
//! The platform's keys are written by canary's fleet writer on a `RedisTarget::Cluster` (the
//! driver's cluster client, slot routing the collector does not share); [`Cluster::client`] is
//! the driver's sync cluster client for a test's own edits.

use std::cell::Cell;
use std::time::{Duration, Instant};

use canary::fleet::redis_server::{RedisServer, free_loopback_port};

/// Slot ranges of the three primaries.
pub const RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// Three primaries, each serving a third of the slots. Killed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// The primaries, in [`RANGES`] order.
    pub nodes: Vec<RedisServer>,
}

/// A plain connection to one node (no redirect following: what the node itself answers).
pub fn node_conn(node: &RedisServer) -> redis::Connection {
    crate::support::redis_server::connect(node)
}

fn cluster_info(node: &RedisServer) -> String {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut node_conn(node))
        .unwrap_or_default()
}

impl Cluster {
    /// Starts the three nodes, assigns the slots, joins them and waits for `cluster_state:ok`.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`] with extra `redis-server` arguments on every node (ACL users).
    pub fn start_with(extra: &[String]) -> Cluster {
        let mut nodes = Vec::new();
        let mut bus_ports = Vec::new();
        for _ in RANGES {
            let bus = Cell::new(0u16);
            let node = RedisServer::start_with(|dir| {
                let port = free_loopback_port().expect("bus port");
                bus.set(port);
                vec![
                    "--cluster-enabled".to_owned(),
                    "yes".to_owned(),
                    "--cluster-config-file".to_owned(),
                    dir.join("nodes.conf").display().to_string(),
                    "--cluster-port".to_owned(),
                    port.to_string(),
                    "--cluster-node-timeout".to_owned(),
                    "2000".to_owned(),
                ]
                .into_iter()
                .chain(extra.iter().cloned())
                .collect()
            })
            .unwrap_or_else(|e| panic!("{e}"));
            nodes.push(node);
            bus_ports.push(bus.get());
        }
        for (node, (first, last)) in nodes.iter().zip(RANGES) {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut node_conn(node))
                .expect("ADDSLOTSRANGE");
        }
        for (other, bus) in nodes.iter().zip(&bus_ports).skip(1) {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(other.port())
                .arg(*bus)
                .query(&mut node_conn(&nodes[0]))
                .expect("MEET");
        }
        let cluster = Cluster { nodes };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.nodes.iter().all(|n| {
                let info = cluster_info(n);
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(&mut node_conn(n))
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:3")
                    && slots.len() == 3
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok within 30 s: {}",
                cluster_info(&self.nodes[0])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `host:port` of every node, for `platform.redis_cluster.nodes`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The driver's cluster client (follows redirects itself): the platform's writer in tests.
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        redis::cluster::ClusterClient::new(urls)
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection")
    }

    /// The server's own slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut node_conn(&self.nodes[0]))
            .expect("KEYSLOT")
    }

    /// The index of the node serving `key` (by the ranges assigned at start).
    pub fn owner(&self, key: &str) -> usize {
        let slot = self.keyslot(key);
        RANGES
            .iter()
            .position(|(a, b)| (*a..=*b).contains(&slot))
            .expect("every slot is assigned")
    }

    /// A node's cluster id (`CLUSTER MYID`).
    pub fn id(&self, node: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node_conn(&self.nodes[node]))
            .expect("MYID")
    }
}
