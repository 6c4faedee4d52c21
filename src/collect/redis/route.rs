//! Which Redis node a collection reads, decided afresh at every collection: `redis_url` as it
//! stands, or the primary the sentinels name now (so a failover is followed without a
//! restart), or a replica that has caught up with that primary within
//! `platform.redis_max_replica_lag` (else the primary, that cycle). What was decided and why is
//! the [`RedisRoute`] the cycle result shows under `diagnostics.collect.redis_route`.
//!
//! Round trips it adds to a collection (counted in the collection's total and shown as
//! `discovery_round_trips`): one pipeline to the first sentinel that answers (one more per
//! sentinel that accepted a connection but failed to answer); in replica mode one
//! `INFO replication` on the primary and one on the replica, plus one per 20 ms the replica
//! still needs to catch up (bounded by the lag bound).
//!
//! It must not send anything but what [`ReadOnlySentinel`] and [`ReadOnlyRedis`] offer, nor
//! read slot data (see `read`), nor put a password or a URL in a message or the route.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{NodeAddr, ReadOnlyRedis, ReadOnlySentinel, RedisSourceError};
use crate::config::Secret;
use crate::config::platform::{PlatformConfig, RedisReadFrom, RedisSentinel};

/// How often a lagging replica's offset is looked at again, within the lag bound.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

/// How this collection found its Redis node (shown in the cycle diagnostics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisRoute {
    /// The sentinel that named the primary (`host:port`); `None` without Sentinel.
    pub sentinel: Option<String>,
    /// Sentinels tried before it, each with why it did not answer (secret-free).
    pub sentinels_failed: Vec<String>,
    /// The primary the sentinels named this cycle.
    pub primary: Option<NodeAddr>,
    /// `platform.redis_read_from` as configured.
    pub configured: RedisReadFrom,
    /// The node actually read this cycle.
    pub read_from: RedisReadFrom,
    /// The replica looked at (replica mode only).
    pub replica: Option<ReplicaReport>,
    /// Round trips spent finding the node (sentinels, `INFO replication`; a cluster's
    /// `CLUSTER SLOTS`), included in the collection's `redis_round_trips`.
    pub discovery_round_trips: u32,
    /// Redis Cluster: the seed asked, every node read and its round trips, the redirects
    /// followed (`platform.redis_cluster` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::ClusterReport>,
}

impl RedisRoute {
    /// The route of a cluster read (every primary; the report is filled as it goes).
    pub fn cluster() -> RedisRoute {
        RedisRoute {
            sentinel: None,
            sentinels_failed: Vec::new(),
            primary: None,
            configured: RedisReadFrom::Primary,
            read_from: RedisReadFrom::Primary,
            replica: None,
            discovery_round_trips: 0,
            cluster: Some(super::cluster::ClusterReport::default()),
        }
    }
}

/// The replica's replication state as this cycle saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicaReport {
    /// Its address (from the sentinels; `None` for `redis_replica_url`, which is not shown).
    pub addr: Option<NodeAddr>,
    /// `master_link_status` (`up` / `down`).
    pub master_link_status: Option<String>,
    /// `master_last_io_seconds_ago`: seconds since the replica last heard from its primary
    /// (an idle primary pings every `repl-ping-replica-period`, 10 s by default).
    pub master_last_io_seconds_ago: Option<i64>,
    /// The primary's replication offset minus the replica's, at the first look (bytes).
    pub offset_lag_bytes: Option<i64>,
    /// How long after the primary's offset was read the replica had reached it.
    pub caught_up_after_ms: Option<f64>,
    /// Why the primary was read instead (`None` when the replica was read).
    pub fallback: Option<String>,
}

/// The node to read, or why Redis is unavailable this cycle; the route either way.
#[derive(Debug)]
pub struct Routed {
    /// The connection (its round-trip count includes the discovery round trips).
    pub result: Result<ReadOnlyRedis, RedisSourceError>,
    /// `None` for a plain `redis_url` primary (nothing to decide).
    pub route: Option<RedisRoute>,
}

impl Routed {
    /// Round trips spent when the result is an error.
    pub fn failed_round_trips(&self) -> u32 {
        self.route.as_ref().map_or(0, |r| r.discovery_round_trips)
    }
}

/// Finds and connects to the node this collection reads.
pub async fn connect(cfg: &PlatformConfig) -> Routed {
    if cfg.redis_sentinel.is_none() && cfg.redis_read_from == RedisReadFrom::Primary {
        return Routed {
            result: ReadOnlyRedis::connect(cfg).await,
            route: None,
        };
    }
    let mut route = RedisRoute {
        sentinel: None,
        sentinels_failed: Vec::new(),
        primary: None,
        configured: cfg.redis_read_from,
        read_from: RedisReadFrom::Primary,
        replica: None,
        discovery_round_trips: 0,
        cluster: None,
    };
    let result = route_and_connect(cfg, &mut route).await;
    Routed {
        result,
        route: Some(route),
    }
}

async fn route_and_connect(
    cfg: &PlatformConfig,
    route: &mut RedisRoute,
) -> Result<ReadOnlyRedis, RedisSourceError> {
    let want_replicas = cfg.redis_read_from == RedisReadFrom::Replica;
    let (primary_at, replicas) = match &cfg.redis_sentinel {
        Some(sentinel) => {
            let (primary, replicas) = ask_sentinels(cfg, sentinel, want_replicas, route).await?;
            route.primary = Some(primary.clone());
            (Some(primary), replicas)
        }
        None => (None, Vec::new()),
    };
    let mut primary = ReadOnlyRedis::connect_node(cfg, &cfg.redis_url, primary_at.as_ref()).await?;
    if !want_replicas {
        primary.count_from(route.discovery_round_trips);
        return Ok(primary);
    }

    // Replica mode: the primary's offset now, then the replica must reach it within the bound.
    let started = Instant::now();
    let primary_info = primary.info_replication().await;
    route.discovery_round_trips += 1;
    let primary_info = primary_info?;
    if primary_info.role != "master" {
        // A sentinel still naming a demoted primary mid-failover, or a redis_url that points
        // at a replica: reading it would be a replica read with nothing to bound its lag.
        return Err(RedisSourceError::Connection(format!(
            "the primary reports role {:?}: no replication offset to bound a replica's lag",
            primary_info.role
        )));
    }
    let mut report = ReplicaReport::default();
    let candidate = match &cfg.redis_sentinel {
        Some(_) => replicas
            .iter()
            .find(|r| r.healthy())
            .map(|r| (cfg.redis_url.as_str(), Some(r.addr.clone()))),
        None => cfg.redis_replica_url.as_deref().map(|url| (url, None)),
    };
    let verdict = match (primary_info.master_repl_offset, candidate) {
        (None, _) => Err("the primary reports no master_repl_offset".to_owned()),
        (_, None) => Err("the sentinels list no healthy replica".to_owned()),
        (Some(target), Some((url, addr))) => {
            report.addr.clone_from(&addr);
            caught_up_replica(
                cfg,
                url,
                addr.as_ref(),
                &primary_info.master_replid,
                target,
                started,
                &mut report,
                route,
            )
            .await
        }
    };
    let chosen = match verdict {
        Ok(mut replica) => {
            route.read_from = RedisReadFrom::Replica;
            replica.count_from(route.discovery_round_trips);
            replica
        }
        Err(reason) => {
            tracing::debug!(reason = %reason, "redis replica not read; reading the primary");
            report.fallback = Some(reason);
            primary.count_from(route.discovery_round_trips);
            primary
        }
    };
    route.replica = Some(report);
    Ok(chosen)
}

/// Connects to the replica and waits (polling its offset) until it has reached `target`, the
/// primary's offset read at `started`; an `Err` says why it must not be read this cycle.
#[allow(clippy::too_many_arguments)]
async fn caught_up_replica(
    cfg: &PlatformConfig,
    url: &str,
    addr: Option<&NodeAddr>,
    primary_replid: &str,
    target: i64,
    started: Instant,
    report: &mut ReplicaReport,
    route: &mut RedisRoute,
) -> Result<ReadOnlyRedis, String> {
    let mut replica = ReadOnlyRedis::connect_node(cfg, url, addr)
        .await
        .map_err(|e| format!("replica: {e}"))?;
    let bound = cfg.redis_max_replica_lag;
    let mut first = true;
    loop {
        let info = replica.info_replication().await;
        route.discovery_round_trips += 1;
        let info = info.map_err(|e| format!("replica: {e}"))?;
        if first {
            report
                .master_link_status
                .clone_from(&info.master_link_status);
            report.master_last_io_seconds_ago = info.master_last_io_seconds_ago;
            report.offset_lag_bytes = info.slave_repl_offset.map(|r| target - r);
            first = false;
        }
        if info.role != "slave" {
            return Err(format!("the replica reports role {:?}", info.role));
        }
        if info.master_link_status.as_deref() != Some("up") {
            return Err("the replica's link to its primary is down".to_owned());
        }
        if info.master_replid != primary_replid {
            return Err("the replica follows another primary".to_owned());
        }
        let offset = info.slave_repl_offset.unwrap_or(-1);
        let waited = started.elapsed();
        if offset >= target {
            report.caught_up_after_ms = Some(waited.as_secs_f64() * 1000.0);
            return Ok(replica);
        }
        if waited >= bound {
            return Err(format!(
                "the replica did not reach the primary's offset within redis_max_replica_lag \
                 ({}; {} bytes behind)",
                humantime::format_duration(bound),
                target - offset
            ));
        }
        tokio::time::sleep(CATCH_UP_POLL.min(bound.saturating_sub(waited))).await;
    }
}

/// Asks the sentinels in order; the first that names the primary wins.
async fn ask_sentinels(
    cfg: &PlatformConfig,
    sentinel: &RedisSentinel,
    want_replicas: bool,
    route: &mut RedisRoute,
) -> Result<(NodeAddr, Vec<super::client::SentinelReplica>), RedisSourceError> {
    // Read at every cycle, so a rotated password is picked up; the message names the file only.
    let password = match &sentinel.password_file {
        Some(path) => Some(Secret::from_file(path).map_err(|e| {
            RedisSourceError::Connection(format!(
                "platform.redis_sentinel.password_file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let name = sentinel.master_name.as_str();
    for text in &sentinel.sentinels {
        let Some(addr) = NodeAddr::parse(text) else {
            route
                .sentinels_failed
                .push(format!("{text}: not host:port"));
            continue;
        };
        let connected = ReadOnlySentinel::connect(
            &addr,
            sentinel.username.as_deref(),
            password.as_ref().map(Secret::expose),
            sentinel.tls.then_some(&cfg.redis_tls),
            cfg.redis_connect_timeout,
            cfg.redis_response_timeout,
        )
        .await;
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                route.sentinels_failed.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let answer = conn.master(name, want_replicas).await;
        route.discovery_round_trips += conn.round_trips();
        match answer {
            Ok(Some((primary, replicas))) => {
                route.sentinel = Some(addr.to_string());
                return Ok((primary, replicas));
            }
            Ok(None) => route
                .sentinels_failed
                .push(format!("{addr}: does not know master {name:?}")),
            Err(e) => route.sentinels_failed.push(format!("{addr}: {e}")),
        }
    }
    Err(RedisSourceError::Connection(format!(
        "sentinels: none named the primary of {name:?} ({})",
        route.sentinels_failed.join("; ")
    )))
}
