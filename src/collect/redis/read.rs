//! Reading a collection: the two phases ([`read_slots`]: SCAN pages + the `ZRANGE` pipeline;
//! [`SlotsRead::read_metadata`]: the `PTTL` + `HGET` pipeline and the delayed stray recheck), each
//! a fixed number of round trips whatever the fleet size — except a flood of slot members beyond
//! [`META_PIPELINE_MEMBERS`], whose metadata is read in bounded pipelines — and at most
//! `platform.redis_max_members_per_key` members read from any one slot set (a larger set costs
//! one `ZCARD` pipeline for its size, in the second phase).
//!
//! It must not send anything but the reads [`DataConn`] offers (one node or a cluster), nor parse
//! replies itself (see `reply`).

use std::collections::BTreeMap;

use canary_invariants::{
    Anomaly, AnomalyKind, KeyTtl, MetaKey, RedisState, SlotMember, SlotMeta, SlotSet,
};
use redis::Value;

use super::client::{ReadBatch, RedisSourceError, sort_dedup};
use super::cluster::DataConn;
use super::keys::{
    FoundMeta, MetaKeyPattern, SlotKeyPattern, common_prefix, glob_escape, resolve_meta_keys,
};
use super::reply::{
    anomaly, hex, hex_subject, parse_drain_tick, parse_pull_poll, parse_timeout, score_ms,
    show_value, zrange_pairs,
};
use crate::config::platform::PlatformConfig;

/// What one Redis collection produced.
#[derive(Debug)]
pub struct RedisOutcome {
    /// The Redis state and the anomalies seen while reading it, or why the source is unavailable.
    pub result: Result<(RedisState, Vec<Anomaly>), RedisSourceError>,
    /// Round trips made (connection handshake excluded; finding the node included).
    pub round_trips: u32,
    /// How the node was found (Sentinel, replica), `None` for a plain `redis_url` primary.
    pub route: Option<super::route::RedisRoute>,
}

/// A collection after its first phase: the slot sets and the drain heartbeat are read, the
/// slot metadata is not yet. Finish it with [`SlotsRead::read_metadata`].
///
/// The split exists for the ordering guarantee of [`crate::collect::builtin`]: S-01 only needs
/// the SQL view to be no older than the *slot-set* view, so the metadata pipeline (S-03, S-04)
/// may run while SQLite is being read.
#[derive(Debug)]
pub struct SlotsRead {
    redis: DataConn,
    route: Option<super::route::RedisRoute>,
    slot_sets: Vec<SlotSet>,
    drain_tick_at_ms: Option<i64>,
    /// Keys under the SCAN prefix that are not slot sets, in SCAN's order with its repeats:
    /// metadata hashes once sorted and split (done in the second phase, off the path the SQLite
    /// read waits on).
    other_keys: Vec<String>,
    meta_pattern: MetaKeyPattern,
    anomalies: Vec<Anomaly>,
    /// Agent → slot key of the sets read only in part (`platform.redis_max_members_per_key`):
    /// a metadata hash of theirs without a read member may belong to an unread one.
    truncated: BTreeMap<String, String>,
    /// Pilot → last claim attempt, for the pilots whose poll key could be read.
    pull_polls: BTreeMap<String, Option<i64>>,
}

/// Reads the Redis part of a snapshot in one go (both phases back to back). Never panics; only
/// connection failures are `Err`.
pub async fn collect(cfg: &PlatformConfig) -> RedisOutcome {
    match read_slots(cfg).await {
        Ok(slots) => slots.read_metadata(cfg).await,
        Err(outcome) => outcome,
    }
}

/// First phase: connects, SCANs the slot and metadata keys and reads every slot set plus the
/// drain heartbeat (the SCAN pages and one pipeline). A failure comes back as the finished
/// outcome.
pub async fn read_slots(cfg: &PlatformConfig) -> Result<SlotsRead, RedisOutcome> {
    let patterns = SlotKeyPattern::parse(&cfg.keys.slots)
        .and_then(|slots| Ok((slots, MetaKeyPattern::parse(&cfg.keys.slot_meta)?)));
    let (slot_pattern, meta_pattern) = match patterns {
        Ok(p) => p,
        Err(e) => {
            return Err(RedisOutcome {
                result: Err(e),
                round_trips: 0,
                route: None,
            });
        }
    };
    let (mut redis, route) = match connect(cfg).await {
        Ok(connected) => connected,
        Err(outcome) => return Err(outcome),
    };
    match read_slot_sets(&mut redis, cfg, &slot_pattern, &meta_pattern).await {
        Ok((slot_sets, drain_tick_at_ms, other_keys, anomalies, truncated, pull_polls)) => {
            Ok(SlotsRead {
                redis,
                route,
                slot_sets,
                drain_tick_at_ms,
                other_keys,
                meta_pattern,
                anomalies,
                truncated,
                pull_polls,
            })
        }
        Err(e) => Err(RedisOutcome {
            result: Err(e),
            round_trips: redis.round_trips(),
            route: redis.route(route),
        }),
    }
}

/// The node (route) or the cluster's primaries this collection reads; a failure comes back as
/// the finished outcome.
async fn connect(
    cfg: &PlatformConfig,
) -> Result<(DataConn, Option<super::route::RedisRoute>), RedisOutcome> {
    if let Some(cluster) = &cfg.redis_cluster {
        let route = super::route::RedisRoute::cluster();
        return match super::cluster::connect(cfg, cluster).await {
            Ok(c) => Ok((DataConn::Cluster(Box::new(c)), Some(route))),
            Err((e, report, spent)) => Err(RedisOutcome {
                result: Err(e),
                round_trips: spent,
                route: Some(super::route::RedisRoute {
                    cluster: Some(report),
                    discovery_round_trips: spent,
                    ..route
                }),
            }),
        };
    }
    let routed = super::route::connect(cfg).await;
    let failed_round_trips = routed.failed_round_trips();
    match routed.result {
        Ok(r) => Ok((DataConn::Node(r), routed.route)),
        Err(e) => Err(RedisOutcome {
            result: Err(e),
            round_trips: failed_round_trips,
            route: routed.route,
        }),
    }
}

impl SlotsRead {
    /// Second phase: one pipeline of `PTTL` + `HGET` for every slot member, then (only when a
    /// metadata hash had no member) the delayed stray recheck.
    pub async fn read_metadata(self, cfg: &PlatformConfig) -> RedisOutcome {
        let SlotsRead {
            mut redis,
            route,
            mut slot_sets,
            drain_tick_at_ms,
            mut other_keys,
            meta_pattern,
            mut anomalies,
            truncated,
            pull_polls,
        } = self;
        // Sorting and splitting the metadata keys needs only what the first phase read; it is
        // done here so that it overlaps the SQLite read (~30 ms for 30 000 keys at L).
        // (A key that does not split as a metadata key is skipped there: none of canary's
        // business.)
        sort_dedup(&mut other_keys);
        let found = resolve_meta_keys(&meta_pattern, other_keys, &slot_sets);
        let result = async {
            size_truncated(&mut redis, cfg, &truncated, &mut anomalies).await?;
            read_meta(
                &mut redis,
                cfg,
                &meta_pattern,
                &mut slot_sets,
                &mut anomalies,
            )
            .await?;
            let meta_keys =
                confirm_strays(&mut redis, cfg, found, &truncated, &mut anomalies).await?;
            anomalies.sort();
            anomalies.dedup();
            Ok((
                RedisState {
                    slot_sets,
                    drain_tick_at_ms,
                    meta_keys,
                    pull_polls,
                },
                anomalies,
            ))
        }
        .await;
        RedisOutcome {
            result,
            round_trips: redis.round_trips(),
            route: redis.route(route),
        }
    }
}

/// Slot keys and metadata keys, from one SCAN over their common literal prefix, or two SCANs
/// when the patterns share none (a bare `*` would transfer every key of the database).
async fn scan_keys(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    slot_pattern: &SlotKeyPattern,
    meta_pattern: &MetaKeyPattern,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<(String, String)>, Vec<String>), RedisSourceError> {
    let common = common_prefix(&slot_pattern.prefix, &meta_pattern.prefix);
    let raw_keys = if common.is_empty() {
        let mut keys = redis
            .scan_all(&slot_pattern.glob(), cfg.redis_scan_count)
            .await?;
        keys.extend(
            redis
                .scan_all(&meta_pattern.glob(), cfg.redis_scan_count)
                .await?,
        );
        keys
    } else {
        redis
            .scan_all(&format!("{}*", glob_escape(common)), cfg.redis_scan_count)
            .await?
    };
    let mut slot_keys: Vec<(String, String)> = Vec::with_capacity(raw_keys.len());
    let mut meta_keys: Vec<String> = Vec::new();
    for raw in raw_keys {
        match String::from_utf8(raw) {
            Ok(key) => match slot_pattern.agent_of(&key) {
                Some(agent) => slot_keys.push((agent.to_owned(), key)),
                // Not a slot set (the glob is wider than the pattern): maybe a metadata hash,
                // which the second phase tells (anything else under the prefix is none of
                // canary's business).
                None => meta_keys.push(key),
            },
            Err(e) => anomalies.push(anomaly(
                AnomalyKind::KeyNotUtf8,
                hex_subject(e.as_bytes()),
                "slot or metadata key is not UTF-8; skipped",
            )),
        }
    }
    // Only the slot keys are sorted (and SCAN's repeats dropped) here, on the path the SQL read
    // waits on; the metadata keys, three times as many at L, in the second phase.
    sort_dedup(&mut slot_keys);
    Ok((slot_keys, meta_keys))
}

/// What the first phase reads: slot sets, drain heartbeat, the other keys SCAN found under the
/// prefix (metadata candidates, not yet split) and the anomalies so far.
type SlotSetsRead = (
    Vec<SlotSet>,
    Option<i64>,
    Vec<String>,
    Vec<Anomaly>,
    BTreeMap<String, String>,
    BTreeMap<String, Option<i64>>,
);

async fn read_slot_sets(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    slot_pattern: &SlotKeyPattern,
    meta_pattern: &MetaKeyPattern,
) -> Result<SlotSetsRead, RedisSourceError> {
    let keys = &cfg.keys;
    let mut anomalies = Vec::new();

    let (slot_keys, raw_meta_keys) =
        scan_keys(redis, cfg, slot_pattern, meta_pattern, &mut anomalies).await?;

    // Per key: its first `max` members and one more, which tells a set larger than the cap
    // without a `ZCARD` per key (10 000 commands at L); such a set's size is asked in the second
    // phase (`size_truncated`). A runaway key costs at most `max` members of memory.
    let max = members_cap(cfg);
    // One read per slot set, the heartbeat and one per pilot.
    let mut first = ReadBatch::with_capacity(slot_keys.len() + 1 + cfg.pull.pilot_agents.len());
    for (_, key) in &slot_keys {
        first.zrange_withscores_first(key.as_bytes(), max.saturating_add(1));
    }
    let tick_index = first.get(keys.drain_tick.as_bytes());
    // One GET per pull-mode pilot in the same pipeline: no round trip is added.
    let mut pilots = cfg.pull.pilot_agents.clone();
    pilots.sort();
    pilots.dedup();
    let poll_keys: Vec<(String, String)> = pilots
        .into_iter()
        .map(|agent| {
            let key = keys.pull_poll.replace("{agent}", &agent);
            (agent, key)
        })
        .collect();
    for (_, key) in &poll_keys {
        first.get(key.as_bytes());
    }
    let mut replies = redis.run(&first).await?;

    let drain_tick_at_ms = replies
        .get(tick_index)
        .and_then(|v| parse_drain_tick(v, &keys.drain_tick, &mut anomalies));
    let mut pull_polls = BTreeMap::new();
    for (i, (agent, key)) in poll_keys.iter().enumerate() {
        if let Some(read) = replies
            .get(tick_index + 1 + i)
            .and_then(|v| parse_pull_poll(v, key, &mut anomalies))
        {
            pull_polls.insert(agent.clone(), read);
        }
    }
    replies.truncate(tick_index);

    let mut slot_sets = Vec::with_capacity(slot_keys.len());
    let mut truncated = BTreeMap::new();
    let mut replies = replies.into_iter();
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    for (agent, key) in &slot_keys {
        let Some(reply) = replies.next() else {
            break;
        };
        // Each reply is consumed (and freed) as it is parsed.
        let Some(mut pairs) = zrange_pairs(reply, key, &mut anomalies) else {
            continue;
        };
        if pairs.len() > cap {
            pairs.truncate(cap);
            truncated.insert(agent.clone(), key.clone());
        }
        let mut members = Vec::with_capacity(pairs.len());
        for (member, score) in pairs {
            let member = match String::from_utf8(member) {
                Ok(m) => m,
                Err(e) => {
                    anomalies.push(anomaly(
                        AnomalyKind::MemberNotUtf8,
                        key.clone(),
                        format!("member is not UTF-8 ({}); skipped", hex(e.as_bytes())),
                    ));
                    continue;
                }
            };
            let acquired_at_ms = score_ms(&score);
            if acquired_at_ms.is_none() {
                anomalies.push(anomaly(
                    AnomalyKind::ScoreNotFinite,
                    format!("{key} {member}"),
                    format!("score {} is not a finite unix time", show_value(&score)),
                ));
            }
            members.push(SlotMember {
                sentinel: member.starts_with(&keys.sentinel_prefix),
                member,
                acquired_at_ms,
                meta: None,
            });
        }
        slot_sets.push(SlotSet {
            agent_name: agent.clone(),
            members,
        });
    }

    Ok((
        slot_sets,
        drain_tick_at_ms,
        raw_meta_keys,
        anomalies,
        truncated,
        pull_polls,
    ))
}

/// Members read from one slot set at most (`platform.redis_max_members_per_key`, at least 1).
fn members_cap(cfg: &PlatformConfig) -> u32 {
    cfg.redis_max_members_per_key.max(1)
}

/// The `slot_set_truncated` anomaly of each set read only in part, with its size (one `ZCARD`
/// pipeline, only when there is such a set: a runaway key costs this round trip, a healthy fleet
/// none).
async fn size_truncated(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    truncated: &BTreeMap<String, String>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(), RedisSourceError> {
    if truncated.is_empty() {
        return Ok(());
    }
    let read = u64::from(members_cap(cfg));
    let mut batch = ReadBatch::new();
    for key in truncated.values() {
        batch.zcard(key.as_bytes());
    }
    let replies = redis.run(&batch).await?;
    for (key, card) in truncated.values().zip(replies) {
        let total = match card {
            Value::Int(total) => match u64::try_from(total) {
                Ok(total) if total > read => total.to_string(),
                // Released down to the cap since it was read.
                _ => format!("more than {read}"),
            },
            // ZCARD refused (an ACL without +zcard) or odd: the size is unknown, and said so.
            other => {
                anomalies.push(anomaly(
                    AnomalyKind::UnexpectedReply,
                    key.clone(),
                    format!(
                        "ZCARD answered {}; the slot set's size is unknown",
                        show_value(&other)
                    ),
                ));
                format!("more than {read}")
            }
        };
        anomalies.push(anomaly(
            AnomalyKind::SlotSetTruncated,
            key.clone(),
            format!(
                "{total} members; the first {read} (lowest scores) were read and judged \
                 (platform.redis_max_members_per_key)"
            ),
        ));
    }
    Ok(())
}

/// Keeps owned hashes as found; re-reads the others after the recheck delay (one pipeline of
/// `PTTL`, only when there are any) and keeps those still present, with their TTL. A hash of an
/// agent whose slot set was read only in part is first asked about (`ZSCORE` in the same
/// pipeline): when its member exists beyond what was read, the hash is left out, since neither
/// side of that slot was judged (the truncation itself is the `slot_set_truncated` anomaly).
async fn confirm_strays(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    found: Vec<FoundMeta>,
    truncated: &BTreeMap<String, String>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Vec<MetaKey>, RedisSourceError> {
    let (owned, strays): (Vec<FoundMeta>, Vec<FoundMeta>) =
        found.into_iter().partition(|f| f.owned);
    let mut out: Vec<MetaKey> = owned
        .into_iter()
        .map(|f| MetaKey {
            agent_name: f.agent,
            execution_id: f.id,
            orphan_ttl: None,
        })
        .collect();
    if strays.is_empty() {
        return Ok(out);
    }
    tracing::debug!(
        candidates = strays.len(),
        delay_ms = cfg.redis_orphan_recheck_delay.as_millis() as u64,
        "metadata hashes without a member; re-reading after the delay"
    );
    tokio::time::sleep(cfg.redis_orphan_recheck_delay).await;
    let mut batch = ReadBatch::new();
    // Per stray: its PTTL's reply index, and its ZSCORE's when its agent's set was truncated.
    let mut asked: Vec<(FoundMeta, usize, Option<usize>)> = Vec::with_capacity(strays.len());
    for f in strays {
        let pttl = batch.pttl(f.key.as_bytes());
        let member = truncated
            .get(&f.agent)
            .map(|slot_key| batch.zscore(slot_key.as_bytes(), f.id.as_bytes()));
        asked.push((f, pttl, member));
    }
    let mut replies: Vec<Option<Value>> = redis.run(&batch).await?.into_iter().map(Some).collect();
    for (f, pttl, member) in asked {
        let beyond_read = member
            .and_then(|i| replies.get(i))
            .is_some_and(|r| !matches!(r, Some(Value::Nil) | None));
        if beyond_read {
            continue;
        }
        let reply = replies
            .get_mut(pttl)
            .and_then(Option::take)
            .unwrap_or(Value::Nil);
        match reply {
            // Gone: it was a release in progress (ZREM, then DEL).
            Value::Int(-2) => {}
            Value::Int(ms) => out.push(MetaKey {
                agent_name: f.agent,
                execution_id: f.id,
                orphan_ttl: Some(KeyTtl::from_pttl(ms)),
            }),
            other => anomalies.push(anomaly(
                AnomalyKind::UnexpectedReply,
                f.key,
                format!(
                    "PTTL answered {}; stray metadata not judged",
                    show_value(&other)
                ),
            )),
        }
    }
    Ok(out)
}

/// Members whose metadata one pipeline reads. A fleet's slot members fit in one pipeline; a
/// flood (issue 11 §1: 100 000 leaked members) is read in pipelines of this many, so the queued
/// commands and their replies stay bounded instead of growing with the flood.
pub const META_PIPELINE_MEMBERS: usize = 10_000;

/// `PTTL` and `HGET timeout_field` for every non-sentinel member's metadata: one pipeline up to
/// [`META_PIPELINE_MEMBERS`] members, one more per further such chunk.
async fn read_meta(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    meta_pattern: &MetaKeyPattern,
    slot_sets: &mut [SlotSet],
    anomalies: &mut Vec<Anomaly>,
) -> Result<(), RedisSourceError> {
    let wanted: Vec<(usize, usize)> = slot_sets
        .iter()
        .enumerate()
        .flat_map(|(s, set)| {
            set.members
                .iter()
                .enumerate()
                .filter(|(_, member)| !member.sentinel)
                .map(move |(m, _)| (s, m))
        })
        .collect();
    for chunk in wanted.chunks(META_PIPELINE_MEMBERS) {
        read_meta_chunk(redis, cfg, meta_pattern, slot_sets, chunk, anomalies).await?;
    }
    Ok(())
}

async fn read_meta_chunk(
    redis: &mut DataConn,
    cfg: &PlatformConfig,
    meta_pattern: &MetaKeyPattern,
    slot_sets: &mut [SlotSet],
    chunk: &[(usize, usize)],
    anomalies: &mut Vec<Anomaly>,
) -> Result<(), RedisSourceError> {
    let keys = &cfg.keys;
    let mut batch = ReadBatch::with_capacity(2 * chunk.len());
    let mut wanted: Vec<(usize, usize)> = Vec::with_capacity(chunk.len());
    // One buffer for every member's key: the batch copies the bytes it needs.
    let mut meta_key = String::new();
    for &(s, m) in chunk {
        let Some((set, member)) = slot_sets
            .get(s)
            .and_then(|set| set.members.get(m).map(|member| (set, member)))
        else {
            continue;
        };
        meta_pattern.write_key(&mut meta_key, &set.agent_name, &member.member);
        batch.pttl(meta_key.as_bytes());
        batch.hget(meta_key.as_bytes(), keys.timeout_field.as_bytes());
        wanted.push((s, m));
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let replies = redis.run(&batch).await?;
    drop(batch);
    // The instant the TTLs were read: S-03 measures a slot's age here, not at `taken_at`.
    let ttl_read_at_ms = crate::clock::now_ms();
    for ((s, m), pair) in wanted.into_iter().zip(replies.chunks_exact(2)) {
        let [pttl, timeout] = pair else { continue };
        let Some(member) = slot_sets.get_mut(s).and_then(|set| {
            let agent = set.agent_name.as_str();
            set.members.get_mut(m).map(|member| (agent, member))
        }) else {
            continue;
        };
        let (agent, member) = member;
        // The key again, only for an anomaly's subject (rare: odd data).
        let key_of = |member: &str| {
            let mut key = String::new();
            meta_pattern.write_key(&mut key, agent, member);
            key
        };
        let ttl = match pttl {
            Value::Int(ms) => KeyTtl::from_pttl(*ms),
            other => {
                anomalies.push(anomaly(
                    AnomalyKind::UnexpectedReply,
                    key_of(&member.member),
                    format!("PTTL answered {}; metadata not judged", show_value(other)),
                ));
                continue;
            }
        };
        let timeout_seconds = parse_timeout(
            timeout,
            || key_of(&member.member),
            &keys.timeout_field,
            anomalies,
        );
        member.meta = Some(SlotMeta {
            ttl,
            timeout_seconds,
            ttl_read_at_ms,
        });
    }
    Ok(())
}
