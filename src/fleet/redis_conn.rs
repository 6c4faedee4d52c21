//! The fleet's Redis connection: one node (a reconnecting `ConnectionManager`) or a Redis
//! Cluster (the driver's async cluster client, which routes each single-key command by its
//! slot and follows `MOVED`/`ASK` by itself), behind one type the simulator, the fault recipes
//! and the seeder write through ([`RedisConn`] is a `ConnectionLike`, so `AsyncCommands` and
//! `Pipeline::query_async` work on both).
//!
//! What differs on a cluster, and is handled here rather than in every caller:
//! - a write touching two keys in different slots cannot be one `MULTI`/`EXEC` (the server
//!   answers `CROSSSLOT`): [`RedisConn::is_cluster`] lets the platform's acquire/release split
//!   them per key, in the platform's order;
//! - bulk writes go through [`Batcher`]: one pipeline per owning node (slot map from
//!   `CLUSTER SLOTS`, slots computed with the collector's own `key_slot`), so seeding stays a
//!   few round trips per node per few thousand commands, never one per key;
//! - SCAN runs on every primary ([`RedisConn::scan_keys`]).
//!
//! The fleet is the WRITE side: this module only ever targets stores named explicitly on the
//! command line or started by the rig. The collector's read path (`collect::redis::cluster`)
//! stays hand-written and read-only; nothing here is used by it. No URL is ever put in a
//! message.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::collect::redis::client::NodeAddr;
use crate::collect::redis::cluster::{SlotMap, key_slot};
use crate::fleet::platform::FleetError;

/// Where the fleet writes: one Redis node, or a Redis Cluster reached through seed nodes.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` (or `rediss://`) URL of one node.
    Node(String),
    /// Seed nodes of a cluster, `host:port` (plain `redis://`) or full URLs; any one that
    /// answers will do.
    Cluster(Vec<String>),
}

// URLs may carry a password: never printed.
impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Node(_) => f.write_str("RedisTarget::Node(..)"),
            RedisTarget::Cluster(nodes) => write!(f, "RedisTarget::Cluster({} seeds)", nodes.len()),
        }
    }
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> RedisTarget {
        RedisTarget::Node(url.to_owned())
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> RedisTarget {
        RedisTarget::Node(url)
    }
}

impl From<&String> for RedisTarget {
    fn from(url: &String) -> RedisTarget {
        RedisTarget::Node(url.clone())
    }
}

impl From<&RedisTarget> for RedisTarget {
    fn from(target: &RedisTarget) -> RedisTarget {
        target.clone()
    }
}

impl RedisTarget {
    /// A seed as the driver takes it: `host:port` becomes `redis://host:port`.
    fn seed_url(seed: &str) -> String {
        if seed.contains("://") {
            seed.to_owned()
        } else {
            format!("redis://{seed}")
        }
    }
}

/// The fleet's connection (cheap to clone: both kinds are handles on shared connections).
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Node(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_cluster() {
            "RedisConn::Cluster"
        } else {
            "RedisConn::Node"
        })
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a [`RedisConn`] on `target`. One node: a `ConnectionManager` (a few quick reconnection
/// attempts, then each command fails fast while the server is away instead of hanging the
/// simulator). A cluster: the driver's async cluster client on the seeds, with the same
/// timeouts (it refreshes its slot map on `MOVED` by itself).
pub async fn connect(target: impl Into<RedisTarget>) -> Result<RedisConn, FleetError> {
    match target.into() {
        RedisTarget::Node(url) => {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(3)
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            Ok(RedisConn(Inner::Node(
                redis::Client::open(url)?
                    .get_connection_manager_with_config(config)
                    .await?,
            )))
        }
        RedisTarget::Cluster(seeds) => {
            if seeds.is_empty() {
                return Err(FleetError::Setup("a redis cluster needs seed nodes".into()));
            }
            let client = redis::cluster::ClusterClient::builder(
                seeds.iter().map(|s| RedisTarget::seed_url(s)),
            )
            .retries(3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()?;
            Ok(RedisConn(Inner::Cluster(
                client.get_async_connection().await?,
            )))
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Node(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Node(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// Whether this is a cluster (multi-key transactions must then be split per key).
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// The cluster's slot map, asked of any node (`None` on one node).
    async fn slot_map(&mut self) -> Result<Option<SlotMap>, FleetError> {
        let Inner::Cluster(c) = &mut self.0 else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let reply = c
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        // Any node reports its peers' addresses; an empty host would mean "the node asked",
        // which the driver does not tell, so such a map is refused rather than guessed.
        let unknown = NodeAddr {
            host: String::new(),
            port: 0,
        };
        let map = SlotMap::parse(reply, &unknown)
            .map_err(|e| FleetError::Setup(format!("cluster slot map: {e}")))?;
        if map.primaries().iter().any(|a| a.host.is_empty()) || !map.uncovered().is_empty() {
            return Err(FleetError::Setup(
                "cluster slot map: a slot range without a reachable primary".into(),
            ));
        }
        Ok(Some(map))
    }

    /// Every key matching `pattern` (SCAN, not KEYS: this may run against a real platform), on
    /// every primary of a cluster.
    pub async fn scan_keys(&mut self, pattern: &str) -> Result<Vec<String>, FleetError> {
        let mut keys = Vec::new();
        let Some(map) = self.slot_map().await? else {
            let mut iter =
                redis::AsyncCommands::scan_match::<_, String>(self, pattern.to_owned()).await?;
            while let Some(key) = iter.next_item().await {
                keys.push(key?);
            }
            return Ok(keys);
        };
        let Inner::Cluster(c) = &mut self.0 else {
            return Ok(keys);
        };
        for node in map.primaries() {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = c.route_command(cmd, by_address(&node)).await?;
                let (next, page): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(redis::RedisError::from)?;
                keys.extend(page);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(keys)
    }

    /// Deletes `keys` (one `DEL` on one node; on a cluster one pipeline per owning node).
    pub async fn del_keys(&mut self, keys: &[String]) -> Result<(), FleetError> {
        if keys.is_empty() {
            return Ok(());
        }
        if !self.is_cluster() {
            let _: () = redis::AsyncCommands::del(self, keys).await?;
            return Ok(());
        }
        let mut batch = Batcher::new(self, usize::MAX).await?;
        for key in keys {
            batch
                .add(key, 1, |p| {
                    p.del(key).ignore();
                })
                .await?;
        }
        batch.finish().await?;
        Ok(())
    }
}

fn by_address(node: &NodeAddr) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: node.host.clone(),
        port: node.port,
    })
}

/// Bulk writes in pipelines of up to `limit` commands: one pipeline on one node; on a cluster
/// one pipeline per owning node (by the key's hash slot), each sent to that node when full and
/// at [`Batcher::finish`]. Replies are checked: a server error anywhere fails the batch.
pub struct Batcher<'c> {
    conn: &'c mut RedisConn,
    map: Option<SlotMap>,
    /// The cluster's primaries; `pending` is keyed by index in it (`None`: the one node).
    primaries: Vec<NodeAddr>,
    /// Pending pipeline and its command count, per node.
    pending: BTreeMap<Option<usize>, (Pipeline, usize)>,
    limit: usize,
    sent: usize,
    round_trips: usize,
}

impl std::fmt::Debug for Batcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("nodes", &self.primaries.len().max(1))
            .field("sent", &self.sent)
            .field("round_trips", &self.round_trips)
            .finish_non_exhaustive()
    }
}

impl<'c> Batcher<'c> {
    /// A batcher on `conn` flushing a node's pipeline at `limit` commands (asks a cluster for
    /// its slot map: one round trip).
    pub async fn new(conn: &'c mut RedisConn, limit: usize) -> Result<Batcher<'c>, FleetError> {
        let map = conn.slot_map().await?;
        Ok(Batcher {
            conn,
            primaries: map.as_ref().map(SlotMap::primaries).unwrap_or_default(),
            map,
            pending: BTreeMap::new(),
            limit: limit.max(1),
            sent: 0,
            round_trips: 0,
        })
    }

    /// Queues `commands` commands on `key` (all on that key's node), written by `build`; sends
    /// that node's pipeline once it holds `limit` commands.
    pub async fn add(
        &mut self,
        key: &str,
        commands: usize,
        build: impl FnOnce(&mut Pipeline),
    ) -> Result<(), FleetError> {
        let node = match &self.map {
            None => None,
            Some(map) => {
                let owner = map.node_of(key_slot(key.as_bytes()));
                let index = owner.and_then(|a| self.primaries.iter().position(|p| p == a));
                Some(index.ok_or_else(|| FleetError::Setup("a slot without a primary".into()))?)
            }
        };
        let entry = self
            .pending
            .entry(node)
            .or_insert_with(|| (redis::pipe(), 0));
        build(&mut entry.0);
        entry.1 += commands;
        if entry.1 >= self.limit
            && let Some((pipe, n)) = self.pending.remove(&node)
        {
            self.send(node, pipe, n).await?;
        }
        Ok(())
    }

    /// Sends what is pending; returns `(commands sent, round trips)` over the batcher's life.
    pub async fn finish(mut self) -> Result<(usize, usize), FleetError> {
        let pending = std::mem::take(&mut self.pending);
        for (node, (pipe, n)) in pending {
            self.send(node, pipe, n).await?;
        }
        Ok((self.sent, self.round_trips))
    }

    async fn send(
        &mut self,
        node: Option<usize>,
        pipe: Pipeline,
        commands: usize,
    ) -> Result<(), FleetError> {
        if commands == 0 {
            return Ok(());
        }
        match (&mut self.conn.0, node.and_then(|i| self.primaries.get(i))) {
            (Inner::Cluster(c), Some(node)) => {
                let count = pipe.len();
                let replies = c
                    .route_pipeline(
                        pipe,
                        0,
                        count,
                        SingleNodeRoutingInfo::ByAddress {
                            host: node.host.clone(),
                            port: node.port,
                        },
                    )
                    .await?;
                for reply in replies {
                    reply.extract_error()?;
                }
            }
            _ => pipe.query_async::<()>(self.conn).await?,
        }
        self.sent += commands;
        self.round_trips += 1;
        Ok(())
    }
}
