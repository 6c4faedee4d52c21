//! Redis Cluster reads: the slot map, one [`ReadOnlyRedis`] per primary, and the fan-out of
//! SCAN and of the read pipelines over them ([`DataConn`] is what `read` talks to, one node or
//! a cluster, through the same two reads).
//!
//! Why not the driver's cluster client: it routes, redirects, retries and refreshes its
//! topology by itself, which hides how many round trips a cycle costs and which node got what.
//! Here the slot map is built from `CLUSTER SLOTS` at every collection (so a reshard or a
//! failover is followed without a restart), each key's slot is computed locally (CRC16, hash
//! tags honoured) and each pipeline is split into one pipeline per owning node. Round trips per
//! collection: the `CLUSTER SLOTS` on the first seed that answers (one per seed tried), then per
//! primary the same constant as a single node (its SCAN pages, at most one pipeline per phase),
//! whatever the number of agents; the nodes' SCANs and pipelines are in flight at once, so a
//! phase costs one round trip of wall time, not one per node. A `MOVED`/`ASK` during a reshard
//! adds one pipeline per redirect target, followed once; a slot still redirected after that, a
//! node that cannot be reached or a slot without a primary makes the source unavailable this
//! cycle (never a partial read).
//!
//! It must not send anything but what [`ReadOnlyRedis`] offers, nor interpret slot data (see
//! `read`, `reply`), nor put a password or a URL in a message.

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use redis::{Cmd, Value};
use serde::Serialize;

use super::client::{NodeAddr, ReadBatch, ReadOnlyRedis, RedisSourceError, command_key};
use crate::config::platform::{PlatformConfig, RedisCluster};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis Cluster specifies.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`: CRC16 of the key, or of its hash tag (the bytes between the first
/// `{` and the next `}`, when not empty), modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        rest.get(..close).filter(|tag| !tag.is_empty())
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// Which primary serves each slot range (from `CLUSTER SLOTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first, last, primary)`, sorted by `first`.
    ranges: Vec<(u16, u16, NodeAddr)>,
}

impl SlotMap {
    /// Parses a `CLUSTER SLOTS` reply asked of `asked`: each entry is `[first, last, [host,
    /// port, id, …], replicas…]`; an empty host means `asked`'s host (a node that does not
    /// know its own address).
    pub fn parse(reply: Value, asked: &NodeAddr) -> Result<SlotMap, RedisSourceError> {
        const BAD: RedisSourceError = RedisSourceError::Protocol("CLUSTER SLOTS");
        let Value::Array(entries) = reply else {
            return Err(BAD);
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(parts) = entry else {
                return Err(BAD);
            };
            let mut parts = parts.into_iter();
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(BAD);
            };
            let mut primary = primary.into_iter();
            let host = match primary.next() {
                Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| BAD)?,
                Some(Value::SimpleString(s)) => s,
                _ => return Err(BAD),
            };
            let Some(Value::Int(port)) = primary.next() else {
                return Err(BAD);
            };
            let host = if host.is_empty() || host == "?" {
                asked.host.clone()
            } else {
                host
            };
            let (Ok(first), Ok(last), Ok(port)) = (
                u16::try_from(first),
                u16::try_from(last),
                u16::try_from(port),
            ) else {
                return Err(BAD);
            };
            if first > last || last >= SLOTS || port == 0 {
                return Err(BAD);
            }
            ranges.push((first, last, NodeAddr { host, port }));
        }
        ranges.sort_by_key(|r| r.0);
        Ok(SlotMap { ranges })
    }

    /// The primary serving `slot`.
    pub fn node_of(&self, slot: u16) -> Option<&NodeAddr> {
        let at = self.ranges.partition_point(|r| r.0 <= slot);
        let (_, last, addr) = self.ranges.get(at.checked_sub(1)?)?;
        (slot <= *last).then_some(addr)
    }

    /// Slot ranges no primary serves (a cluster that is not `cluster_state:ok`).
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut gaps = Vec::new();
        let mut next: u32 = 0;
        for (first, last, _) in &self.ranges {
            if u32::from(*first) > next {
                gaps.push((next as u16, first - 1));
            }
            next = next.max(u32::from(*last) + 1);
        }
        if next < u32::from(SLOTS) {
            gaps.push((next as u16, SLOTS - 1));
        }
        gaps
    }

    /// The primaries, each once, in slot order.
    pub fn primaries(&self) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = Vec::new();
        for (_, _, addr) in &self.ranges {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// Slots served by `addr`.
    fn slots_of(&self, addr: &NodeAddr) -> u32 {
        self.ranges
            .iter()
            .filter(|r| &r.2 == addr)
            .map(|r| u32::from(r.1 - r.0) + 1)
            .sum()
    }
}

/// What this collection saw of the cluster (in the cycle diagnostics, under
/// `redis_route.cluster`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterReport {
    /// The seed whose `CLUSTER SLOTS` was used.
    pub seed: Option<NodeAddr>,
    /// Seeds tried before it, each with why it did not answer (secret-free).
    pub seeds_failed: Vec<String>,
    /// Every node read, with the slots it serves and the round trips made to it.
    pub nodes: Vec<ClusterNodeReport>,
    /// Redirects followed (`MOVED slot host:port` / `ASK slot host:port`).
    pub redirects: Vec<String>,
}

/// One node of [`ClusterReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterNodeReport {
    /// Its address as the cluster names it.
    pub addr: NodeAddr,
    /// Slots it serves in the map this collection used (0 for a redirect target only).
    pub slots: u32,
    /// Round trips made to it this collection (SCAN pages and pipelines).
    pub round_trips: u32,
}

/// A connection to every primary of a cluster, reads routed by hash slot.
#[derive(Debug)]
pub struct ReadOnlyCluster {
    cfg: PlatformConfig,
    map: SlotMap,
    /// Slots a `MOVED` reassigned during this collection (later phases go there directly).
    moved: BTreeMap<u16, NodeAddr>,
    /// Primaries first (in slot order, the ones SCANned), then redirect targets.
    nodes: Vec<(NodeAddr, ReadOnlyRedis)>,
    primaries: usize,
    discovery_round_trips: u32,
    report: ClusterReport,
}

/// Asks the seeds for the slot map and connects to every primary. `Err` carries the report
/// so far (seeds tried) and the round trips spent.
pub async fn connect(
    cfg: &PlatformConfig,
    cluster: &RedisCluster,
) -> Result<ReadOnlyCluster, (RedisSourceError, ClusterReport, u32)> {
    let mut report = ClusterReport::default();
    let mut spent = 0;
    let mut found = None;
    for text in &cluster.nodes {
        let Some(addr) = NodeAddr::parse(text) else {
            report.seeds_failed.push(format!("{text}: not host:port"));
            continue;
        };
        let mut conn = match ReadOnlyRedis::connect_node(cfg, &cfg.redis_url, Some(&addr)).await {
            Ok(conn) => conn,
            Err(e) => {
                report.seeds_failed.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let reply = conn.cluster_slots().await;
        spent += conn.round_trips();
        match reply.and_then(|r| SlotMap::parse(r, &addr)) {
            Ok(map) => {
                report.seed = Some(addr.clone());
                conn.count_from(0);
                found = Some((addr, conn, map));
                break;
            }
            Err(e) => report.seeds_failed.push(format!("{addr}: {e}")),
        }
    }
    let Some((seed, seed_conn, map)) = found else {
        let e = RedisSourceError::Connection(format!(
            "cluster: no seed node answered CLUSTER SLOTS ({})",
            report.seeds_failed.join("; ")
        ));
        return Err((e, report, spent));
    };
    let gaps = map.uncovered();
    if !gaps.is_empty() {
        let shown: Vec<String> = gaps.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let e = RedisSourceError::Connection(format!(
            "cluster: slots {} have no primary (the cluster is not ok)",
            shown.join(", ")
        ));
        return Err((e, report, spent));
    }
    let mut seed_conn = Some(seed_conn);
    let mut nodes = Vec::new();
    for addr in map.primaries() {
        let conn = match seed_conn.take_if(|_| addr == seed) {
            Some(conn) => conn,
            None => match ReadOnlyRedis::connect_node(cfg, &cfg.redis_url, Some(&addr)).await {
                Ok(conn) => conn,
                Err(e) => {
                    let e = node_error(&addr, &e);
                    return Err((e, report, spent));
                }
            },
        };
        nodes.push((addr, conn));
    }
    Ok(ReadOnlyCluster {
        cfg: cfg.clone(),
        primaries: nodes.len(),
        map,
        moved: BTreeMap::new(),
        nodes,
        discovery_round_trips: spent,
        report,
    })
}

/// A node's failure, naming the node (an address the cluster reported, not a secret).
fn node_error(addr: &NodeAddr, e: &RedisSourceError) -> RedisSourceError {
    RedisSourceError::Connection(format!("cluster node {addr}: {e}"))
}

/// A redirect a command answered: `MOVED`/`ASK`, the slot and the node to ask.
fn redirect(reply: &Value, answered_by: &NodeAddr) -> Option<(bool, u16, NodeAddr)> {
    let Value::ServerError(e) = reply else {
        return None;
    };
    let ask = match e.code() {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let (slot, at) = e.details()?.trim().split_once(' ')?;
    let slot = slot.parse().ok()?;
    // `:port` alone: the node does not know the target's address; it is the same host.
    let at = match at.strip_prefix(':') {
        Some(port) => format!("{}:{port}", answered_by.host),
        None => at.to_owned(),
    };
    Some((ask, slot, NodeAddr::parse(&at)?))
}

impl ReadOnlyCluster {
    /// Round trips so far: the discovery plus every node's.
    pub fn round_trips(&self) -> u32 {
        self.discovery_round_trips + self.nodes.iter().map(|(_, n)| n.round_trips()).sum::<u32>()
    }

    /// Round trips spent asking the seeds.
    pub fn discovery_round_trips(&self) -> u32 {
        self.discovery_round_trips
    }

    /// The report with each node's slots and round trips as they stand.
    pub fn report(&self) -> ClusterReport {
        let mut report = self.report.clone();
        report.nodes = self
            .nodes
            .iter()
            .map(|(addr, conn)| ClusterNodeReport {
                addr: addr.clone(),
                slots: self.map.slots_of(addr),
                round_trips: conn.round_trips(),
            })
            .collect();
        report
    }

    /// Every key matching `pattern` on every primary (SCAN is per node in a cluster), the
    /// nodes scanned at once; unsorted, and a key may come twice, as from
    /// [`ReadOnlyRedis::scan_all`].
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: u32,
    ) -> Result<Vec<Vec<u8>>, RedisSourceError> {
        let scans = self
            .nodes
            .iter_mut()
            .take(self.primaries)
            .map(|(addr, conn)| async move {
                conn.scan_all(pattern, count)
                    .await
                    .map_err(|e| node_error(addr, &e))
            });
        let mut keys = Vec::new();
        for page in try_join_all(scans).await? {
            keys.extend(page);
        }
        Ok(keys)
    }

    fn node_for(&self, slot: u16) -> Option<usize> {
        let addr = self.moved.get(&slot).or_else(|| self.map.node_of(slot))?;
        self.nodes.iter().position(|(a, _)| a == addr)
    }

    /// The index of `addr`'s connection, connecting to it first when it is a node this
    /// collection has not talked to (a reshard's target).
    async fn node_at(&mut self, addr: &NodeAddr) -> Result<usize, RedisSourceError> {
        if let Some(i) = self.nodes.iter().position(|(a, _)| a == addr) {
            return Ok(i);
        }
        let conn = ReadOnlyRedis::connect_node(&self.cfg, &self.cfg.redis_url, Some(addr))
            .await
            .map_err(|e| node_error(addr, &e))?;
        self.nodes.push((addr.clone(), conn));
        Ok(self.nodes.len() - 1)
    }

    /// Runs `cmds` (indices into `all`) on node `node` as one pipeline and puts the replies in
    /// their places (a redirect target).
    async fn run_on(
        &mut self,
        node: usize,
        all: &[&Cmd],
        cmds: &[usize],
        asking: bool,
        out: &mut [Value],
    ) -> Result<(), RedisSourceError> {
        let batch = ReadBatch::of(cmds.iter().filter_map(|&i| all.get(i).copied()));
        let Some((addr, conn)) = self.nodes.get_mut(node) else {
            return Err(RedisSourceError::Protocol("cluster pipeline"));
        };
        let replies = if asking {
            conn.run_asking(&batch).await
        } else {
            conn.run(&batch).await
        }
        .map_err(|e| node_error(addr, &e))?;
        for (&i, reply) in cmds.iter().zip(replies) {
            if let Some(slot) = out.get_mut(i) {
                *slot = reply;
            }
        }
        Ok(())
    }

    /// The batch split by hash slot into one pipeline per node, replies back in the batch's
    /// order; `MOVED`/`ASK` replies are followed once (one pipeline per target), and a command
    /// still redirected after that makes the whole read fail.
    pub async fn run(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        let all: Vec<&Cmd> = batch.commands().collect();
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, cmd) in all.iter().enumerate() {
            let slot = key_slot(command_key(cmd));
            let node = self.node_for(slot).ok_or_else(|| {
                RedisSourceError::Connection(format!("cluster: slot {slot} has no primary"))
            })?;
            groups.entry(node).or_default().push(i);
        }
        // One pipeline per node, all in flight at once.
        let jobs = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(node, (addr, conn))| {
                let cmds = groups.get(&node)?;
                let batch = ReadBatch::of(cmds.iter().filter_map(|&i| all.get(i).copied()));
                Some(async move {
                    let replies = conn.run(&batch).await.map_err(|e| node_error(addr, &e))?;
                    Ok::<_, RedisSourceError>((cmds, replies))
                })
            });
        let mut out = vec![Value::Nil; all.len()];
        for (cmds, replies) in try_join_all(jobs).await? {
            for (&i, reply) in cmds.iter().zip(replies) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = reply;
                }
            }
        }

        // Redirects (a reshard under way): grouped per target and kind, each followed once.
        let mut follow: BTreeMap<(String, bool), (NodeAddr, Vec<usize>)> = BTreeMap::new();
        for (node, cmds) in &groups {
            let Some((answered_by, _)) = self.nodes.get(*node) else {
                continue;
            };
            for &i in cmds {
                if let Some((ask, slot, to)) = out.get(i).and_then(|r| redirect(r, answered_by)) {
                    let note = format!("{} {slot} {to}", if ask { "ASK" } else { "MOVED" });
                    if !self.report.redirects.contains(&note) {
                        self.report.redirects.push(note);
                    }
                    if !ask {
                        self.moved.insert(slot, to.clone());
                    }
                    follow
                        .entry((to.to_string(), ask))
                        .or_insert_with(|| (to, Vec::new()))
                        .1
                        .push(i);
                }
            }
        }
        for ((_, ask), (to, cmds)) in follow {
            let node = self.node_at(&to).await?;
            self.run_on(node, &all, &cmds, ask, &mut out).await?;
            let Some((answered_by, _)) = self.nodes.get(node) else {
                continue;
            };
            if let Some((_, slot, _)) = cmds
                .iter()
                .find_map(|&i| out.get(i).and_then(|r| redirect(r, answered_by)))
            {
                return Err(RedisSourceError::Connection(format!(
                    "cluster: slot {slot} still redirected after one redirect (a reshard under \
                     way); this cycle cannot read it"
                )));
            }
        }
        // A node that answers in place that the cluster cannot serve the key (down, a slot
        // without an owner, a failover in progress) must not pass for an odd value: the read
        // fails, never a partial one.
        if let Some((i, code)) = out.iter().enumerate().find_map(|(i, r)| match r {
            Value::ServerError(e) if UNAVAILABLE.contains(&e.code()) => Some((i, e.code())),
            _ => None,
        }) {
            let slot = all.get(i).map_or(0, |c| key_slot(command_key(c)));
            return Err(RedisSourceError::Connection(format!(
                "cluster: slot {slot} answered {code}; this cycle cannot read it"
            )));
        }
        Ok(out)
    }
}

/// In-place errors that say the cluster cannot serve a key now (as opposed to a wrong key type,
/// which is platform data and becomes an anomaly).
const UNAVAILABLE: [&str; 6] = [
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MASTERDOWN",
    "LOADING",
    "MOVED",
    "ASK",
];

/// The data side of a collection: one node, or every primary of a cluster.
#[derive(Debug)]
pub enum DataConn {
    /// `redis_url`, the sentinels' primary or a replica.
    Node(ReadOnlyRedis),
    /// `platform.redis_cluster`.
    Cluster(Box<ReadOnlyCluster>),
}

impl DataConn {
    /// Every key matching `pattern` (on every primary of a cluster).
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: u32,
    ) -> Result<Vec<Vec<u8>>, RedisSourceError> {
        match self {
            DataConn::Node(n) => n.scan_all(pattern, count).await,
            DataConn::Cluster(c) => c.scan_all(pattern, count).await,
        }
    }

    /// A batch of reads: one pipeline, or one per cluster node.
    pub async fn run(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        match self {
            DataConn::Node(n) => n.run(batch).await,
            DataConn::Cluster(c) => c.run(batch).await,
        }
    }

    /// Round trips so far (discovery included).
    pub fn round_trips(&self) -> u32 {
        match self {
            DataConn::Node(n) => n.round_trips(),
            DataConn::Cluster(c) => c.round_trips(),
        }
    }

    /// `route` with the cluster's report as it stands (per-node round trips), if any.
    pub fn route(
        &self,
        route: Option<super::route::RedisRoute>,
    ) -> Option<super::route::RedisRoute> {
        match self {
            DataConn::Node(_) => route,
            DataConn::Cluster(c) => route.map(|mut r| {
                r.cluster = Some(c.report());
                r.discovery_round_trips = c.discovery_round_trips();
                r
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_spec() {
        // Reference values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn the_slot_map_finds_owners_and_gaps() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let entry = |a, b, port| Value::Array(vec![Value::Int(a), Value::Int(b), node(port)]);
        let asked = NodeAddr {
            host: "127.0.0.1".to_owned(),
            port: 7000,
        };
        let map = SlotMap::parse(
            Value::Array(vec![entry(5461, 16383, 7001), entry(0, 5460, 7000)]),
            &asked,
        )
        .expect("parsed");
        assert_eq!(map.node_of(0).map(|a| a.port), Some(7000));
        assert_eq!(map.node_of(5461).map(|a| a.port), Some(7001));
        assert_eq!(map.node_of(16383).map(|a| a.port), Some(7001));
        assert!(map.uncovered().is_empty());
        assert_eq!(map.primaries().len(), 2);
        let gappy = SlotMap::parse(Value::Array(vec![entry(0, 99, 7000)]), &asked).expect("ok");
        assert_eq!(gappy.uncovered(), vec![(100, 16383)]);
        assert_eq!(gappy.node_of(100), None);
        assert!(SlotMap::parse(Value::Int(3), &asked).is_err());
    }
}
