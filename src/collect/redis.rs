//! The Redis half of the collector: slot sets, slot metadata TTLs and the drain heartbeat, read
//! through a connection wrapper that can only issue read commands.
//!
//! Round trips per collection are fixed: the `SCAN` pages over the slot keys and the slot
//! metadata keys (one SCAN for both when the two patterns share a literal prefix, as the
//! defaults `agent:slots:` and `agent:slot:` do), one pipeline of `ZRANGE … WITHSCORES` (plus the
//! drain-tick `GET`), one pipeline of `PTTL` + `HGET` for every slot member. The agent count
//! changes what each pipeline carries, never how many there are. Only a cycle that found a
//! metadata hash without its member adds one more: after `redis_orphan_recheck_delay` a `PTTL`
//! of each such hash confirms it is still there (the platform's release does ZREM, then DEL a
//! few ms later, so a single look cannot tell a stray hash from a release in progress).
//!
//! A collection runs in two phases, [`read_slots`] (SCAN pages + the `ZRANGE` pipeline) and
//! [`SlotsRead::read_metadata`] (splitting the metadata keys, the `PTTL` + `HGET` pipeline and the
//! stray recheck), so that the collector can start the SQLite read once the slot sets are in and
//! overlap it with the second phase (see [`super::collect`]); [`collect`] runs both back to back.
//! The phases change when each command is sent, not which commands or how many round trips.
//!
//! Platform data is untrusted: wrong key types, odd scores, non-UTF-8 bytes and garbage numbers
//! become anomalies; only a connection failure makes the source unavailable.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use canary_invariants::{
    Anomaly, KeyTtl, MetaKey, RedisState, SlotMember, SlotMeta, SlotSet, Source,
};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, Pipeline, Value};

use super::timestamp::{parse_timestamp_ms, seconds_to_ms};
use crate::config::platform::{PlatformConfig, redact_url};

/// The `{agent}` placeholder of key patterns.
const AGENT: &str = "{agent}";
/// The `{execution_id}` placeholder of key patterns.
const EXECUTION_ID: &str = "{execution_id}";

/// Why the Redis source could not be read. Messages never contain the URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSourceError {
    /// The configured key patterns cannot be used.
    #[error("invalid key pattern: {0}")]
    Pattern(String),
    /// Connecting or talking to Redis failed.
    #[error("{0}")]
    Connection(String),
    /// Redis answered something a read command never answers (a protocol-level surprise).
    #[error("unexpected reply to {0}")]
    Protocol(&'static str),
}

/// Removes the URL and its credentials from driver error text.
#[derive(Clone)]
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(url: &str) -> Scrubber {
        let mut secrets = vec![url.to_owned(), redact_url(url)];
        let after_scheme = url
            .find("://")
            .and_then(|i| url.get(i + 3..))
            .unwrap_or(url);
        let host_and_rest = match after_scheme.rsplit_once('@') {
            Some((userinfo, rest)) => {
                secrets.push(userinfo.to_owned());
                secrets.extend(userinfo.split(':').map(str::to_owned));
                rest
            }
            None => after_scheme,
        };
        secrets.push(
            host_and_rest
                .split('/')
                .next()
                .unwrap_or(host_and_rest)
                .to_owned(),
        );
        secrets.retain(|s| s.len() >= 3);
        // Longest first, so a URL is removed whole before its parts are looked for.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber { secrets }
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        // Anything URL-shaped left over (a driver echoing a normalised form) goes too.
        let words: Vec<String> = out
            .split(' ')
            .map(|w| {
                if w.contains("://") {
                    "<redacted>".to_owned()
                } else {
                    w.to_owned()
                }
            })
            .collect();
        let joined = words.join(" ");
        match joined.char_indices().nth(160) {
            Some((at, _)) => format!("{}…", joined.get(..at).unwrap_or(&joined)),
            None => joined,
        }
    }

    /// A short, secret-free description of a driver error.
    fn describe(&self, context: &str, e: &redis::RedisError) -> RedisSourceError {
        let what = if e.is_connection_refusal() {
            "connection refused".to_owned()
        } else if e.is_timeout() {
            "timed out".to_owned()
        } else if e.kind() == ErrorKind::AuthenticationFailed {
            "authentication failed".to_owned()
        } else if e.kind() == ErrorKind::InvalidClientConfig {
            "invalid redis_url".to_owned()
        } else if e.is_connection_dropped() {
            "connection lost".to_owned()
        } else if let Some(code) = e.code() {
            format!("server error {}", self.scrub(code))
        } else {
            self.scrub(&e.to_string())
        };
        RedisSourceError::Connection(format!("{context}: {what}"))
    }
}

/// A Redis connection that can only read, and counts its round trips.
///
/// There is deliberately no generic command method: every command it can send is listed here,
/// so canary cannot write to the platform's Redis by accident.
pub struct ReadOnlyRedis {
    conn: MultiplexedConnection,
    scrubber: Scrubber,
    round_trips: u32,
}

impl fmt::Debug for ReadOnlyRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlyRedis")
            .field("round_trips", &self.round_trips)
            .finish()
    }
}

impl ReadOnlyRedis {
    /// Connects with explicit connect and response timeouts, so a dead Redis fails fast.
    pub async fn connect(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<ReadOnlyRedis, RedisSourceError> {
        let scrubber = Scrubber::new(url);
        let client = Client::open(url).map_err(|e| scrubber.describe("redis_url", &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        // The driver's own timeout covers the handshake; this outer one is a backstop in case a
        // step of it is not covered.
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(connect_timeout + response_timeout, attempt).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(scrubber.describe("connect", &e)),
            Err(_) => {
                return Err(RedisSourceError::Connection(
                    "connect: timed out".to_owned(),
                ));
            }
        };
        Ok(ReadOnlyRedis {
            conn,
            scrubber,
            round_trips: 0,
        })
    }

    /// Round trips made so far (each `SCAN` page, `PING` or pipeline is one).
    pub fn round_trips(&self) -> u32 {
        self.round_trips
    }

    /// `PING`.
    pub async fn ping(&mut self) -> Result<(), RedisSourceError> {
        self.round_trips += 1;
        let reply: Value = redis::cmd("PING")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("PING", &e))?;
        match reply {
            Value::SimpleString(_) | Value::Okay | Value::BulkString(_) => Ok(()),
            _ => Err(RedisSourceError::Protocol("PING")),
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count` page: the next cursor and raw key bytes.
    pub async fn scan_page(
        &mut self,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<(u64, Vec<Vec<u8>>), RedisSourceError> {
        self.round_trips += 1;
        let reply: Value = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("SCAN", &e))?;
        let Value::Array(parts) = reply else {
            return Err(RedisSourceError::Protocol("SCAN"));
        };
        let mut parts = parts.into_iter();
        let (Some(cursor), Some(Value::Array(keys))) = (parts.next(), parts.next()) else {
            return Err(RedisSourceError::Protocol("SCAN"));
        };
        let cursor = match cursor {
            Value::BulkString(b) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
        .ok_or(RedisSourceError::Protocol("SCAN"))?;
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Value::BulkString(b) => Some(b),
                Value::SimpleString(s) => Some(s.into_bytes()),
                _ => None,
            })
            .collect();
        Ok((cursor, keys))
    }

    /// Every key matching `pattern`, deduplicated (SCAN may return a key twice).
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: u32,
    ) -> Result<BTreeSet<Vec<u8>>, RedisSourceError> {
        let mut keys = BTreeSet::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.scan_page(cursor, pattern, count).await?;
            keys.extend(page);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Sends a batch of read commands as one pipeline (one round trip). Per-command server
    /// errors (e.g. `WRONGTYPE`) come back in place as [`Value::ServerError`]; only a
    /// connection-level failure is an `Err`.
    pub async fn run(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        if batch.len == 0 {
            return Ok(Vec::new());
        }
        self.round_trips += 1;
        let replies: Vec<Value> = batch
            .pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("pipeline", &e))?;
        if replies.len() != batch.len {
            return Err(RedisSourceError::Protocol("pipeline"));
        }
        Ok(replies)
    }
}

/// A pipeline builder restricted to read commands.
pub struct ReadBatch {
    pipe: Pipeline,
    len: usize,
}

impl fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBatch").field("len", &self.len).finish()
    }
}

impl Default for ReadBatch {
    fn default() -> Self {
        ReadBatch::new()
    }
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> ReadBatch {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        ReadBatch { pipe, len: 0 }
    }

    /// Commands queued so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No command queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, name: &str, args: &[&[u8]]) -> usize {
        let cmd = self.pipe.cmd(name);
        for arg in args {
            cmd.arg(*arg);
        }
        self.len += 1;
        self.len - 1
    }

    /// `ZRANGE key 0 -1 WITHSCORES`; returns the reply's index.
    pub fn zrange_withscores(&mut self, key: &[u8]) -> usize {
        self.push("ZRANGE", &[key, b"0", b"-1", b"WITHSCORES"])
    }

    /// `PTTL key`; returns the reply's index.
    pub fn pttl(&mut self, key: &[u8]) -> usize {
        self.push("PTTL", &[key])
    }

    /// `HGET key field`; returns the reply's index.
    pub fn hget(&mut self, key: &[u8], field: &[u8]) -> usize {
        self.push("HGET", &[key, field])
    }

    /// `GET key`; returns the reply's index.
    pub fn get(&mut self, key: &[u8]) -> usize {
        self.push("GET", &[key])
    }
}

/// What one Redis collection produced.
#[derive(Debug)]
pub struct RedisOutcome {
    /// The Redis state and the anomalies seen while reading it, or why the source is unavailable.
    pub result: Result<(RedisState, Vec<Anomaly>), RedisSourceError>,
    /// Round trips made (connection handshake excluded).
    pub round_trips: u32,
}

/// A collection after its first phase: the slot sets and the drain heartbeat are read, the
/// slot metadata is not yet. Finish it with [`SlotsRead::read_metadata`].
///
/// The split exists for the ordering guarantee of [`super::collect`]: S-01 only needs the SQL
/// view to be no older than the *slot-set* view, so the metadata pipeline (S-03, S-04) may run
/// while SQLite is being read.
#[derive(Debug)]
pub struct SlotsRead {
    redis: ReadOnlyRedis,
    slot_sets: Vec<SlotSet>,
    drain_tick_at_ms: Option<i64>,
    /// Keys under the SCAN prefix that are not slot sets: metadata hashes once split (done in
    /// the second phase, off the path the SQLite read waits on).
    other_keys: Vec<String>,
    meta_pattern: MetaKeyPattern,
    anomalies: Vec<Anomaly>,
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
            });
        }
    };
    let mut redis = match ReadOnlyRedis::connect(
        &cfg.redis_url,
        cfg.redis_connect_timeout,
        cfg.redis_response_timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            return Err(RedisOutcome {
                result: Err(e),
                round_trips: 0,
            });
        }
    };
    match read_slot_sets(&mut redis, cfg, &slot_pattern, &meta_pattern).await {
        Ok((slot_sets, drain_tick_at_ms, other_keys, anomalies)) => Ok(SlotsRead {
            redis,
            slot_sets,
            drain_tick_at_ms,
            other_keys,
            meta_pattern,
            anomalies,
        }),
        Err(e) => Err(RedisOutcome {
            result: Err(e),
            round_trips: redis.round_trips(),
        }),
    }
}

impl SlotsRead {
    /// Second phase: one pipeline of `PTTL` + `HGET` for every slot member, then (only when a
    /// metadata hash had no member) the delayed stray recheck.
    pub async fn read_metadata(self, cfg: &PlatformConfig) -> RedisOutcome {
        let SlotsRead {
            mut redis,
            mut slot_sets,
            drain_tick_at_ms,
            other_keys,
            meta_pattern,
            mut anomalies,
        } = self;
        // Splitting the metadata keys needs only what the first phase read; it is done here so
        // that it overlaps the SQLite read (~30 ms for 30 000 keys at L).
        let meta_keys = other_keys
            .into_iter()
            .filter(|key| meta_pattern.fits(key))
            .collect();
        let found = resolve_meta_keys(&meta_pattern, meta_keys, &slot_sets);
        let result = async {
            read_meta(&mut redis, cfg, &mut slot_sets, &mut anomalies).await?;
            let meta_keys = confirm_strays(&mut redis, cfg, found, &mut anomalies).await?;
            anomalies.sort();
            anomalies.dedup();
            Ok((
                RedisState {
                    slot_sets,
                    drain_tick_at_ms,
                    meta_keys,
                },
                anomalies,
            ))
        }
        .await;
        RedisOutcome {
            result,
            round_trips: redis.round_trips(),
        }
    }
}

/// Slot keys and metadata keys, from one SCAN over their common literal prefix, or two SCANs
/// when the patterns share none (a bare `*` would transfer every key of the database).
async fn scan_keys(
    redis: &mut ReadOnlyRedis,
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
                hex_subject(e.as_bytes()),
                "slot or metadata key is not UTF-8; skipped",
            )),
        }
    }
    slot_keys.sort();
    Ok((slot_keys, meta_keys))
}

/// What the first phase reads: slot sets, drain heartbeat, the other keys SCAN found under the
/// prefix (metadata candidates, not yet split) and the anomalies so far.
type SlotSetsRead = (Vec<SlotSet>, Option<i64>, Vec<String>, Vec<Anomaly>);

async fn read_slot_sets(
    redis: &mut ReadOnlyRedis,
    cfg: &PlatformConfig,
    slot_pattern: &SlotKeyPattern,
    meta_pattern: &MetaKeyPattern,
) -> Result<SlotSetsRead, RedisSourceError> {
    let keys = &cfg.keys;
    let mut anomalies = Vec::new();

    let (slot_keys, raw_meta_keys) =
        scan_keys(redis, cfg, slot_pattern, meta_pattern, &mut anomalies).await?;

    let mut first = ReadBatch::new();
    for (_, key) in &slot_keys {
        first.zrange_withscores(key.as_bytes());
    }
    let tick_index = first.get(keys.drain_tick.as_bytes());
    let replies = redis.run(&first).await?;

    let drain_tick_at_ms = replies
        .get(tick_index)
        .and_then(|v| parse_drain_tick(v, &keys.drain_tick, &mut anomalies));

    let mut slot_sets = Vec::with_capacity(slot_keys.len());
    for ((agent, key), reply) in slot_keys.iter().zip(&replies) {
        let Some(pairs) = zrange_pairs(reply, key, &mut anomalies) else {
            continue;
        };
        let mut members = Vec::with_capacity(pairs.len());
        for (member, score) in pairs {
            let member = match String::from_utf8(member) {
                Ok(m) => m,
                Err(e) => {
                    anomalies.push(anomaly(
                        key.clone(),
                        format!("member is not UTF-8 ({}); skipped", hex(e.as_bytes())),
                    ));
                    continue;
                }
            };
            let acquired_at_ms = score_ms(&score);
            if acquired_at_ms.is_none() {
                anomalies.push(anomaly(
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

    Ok((slot_sets, drain_tick_at_ms, raw_meta_keys, anomalies))
}

/// A metadata key found by SCAN, split into agent and id, and whether a member owned it when the
/// slot sets were read.
#[derive(Debug)]
struct FoundMeta {
    key: String,
    agent: String,
    id: String,
    owned: bool,
}

/// Splits every metadata key. Where the split is ambiguous (an agent name or id containing the
/// pattern's separator), the split naming a present member wins, then one naming an agent that
/// has a slot set, then the leftmost.
fn resolve_meta_keys(
    pattern: &MetaKeyPattern,
    raw: Vec<String>,
    slot_sets: &[SlotSet],
) -> Vec<FoundMeta> {
    let members: BTreeSet<(&str, &str)> = slot_sets
        .iter()
        .flat_map(|s| {
            s.members
                .iter()
                .map(move |m| (s.agent_name.as_str(), m.member.as_str()))
        })
        .collect();
    let agents: BTreeSet<&str> = slot_sets.iter().map(|s| s.agent_name.as_str()).collect();
    let mut out = Vec::with_capacity(raw.len());
    for key in raw {
        let splits = pattern.splits(&key);
        let chosen = splits
            .iter()
            .find(|s| members.contains(s))
            .or_else(|| splits.iter().find(|(agent, _)| agents.contains(agent)))
            .or_else(|| splits.first());
        let Some(&(agent, id)) = chosen else { continue };
        let owned = members.contains(&(agent, id));
        let (agent, id) = (agent.to_owned(), id.to_owned());
        out.push(FoundMeta {
            key,
            agent,
            id,
            owned,
        });
    }
    out
}

/// Keeps owned hashes as found; re-reads the others after the recheck delay (one pipeline of
/// `PTTL`, only when there are any) and keeps those still present, with their TTL.
async fn confirm_strays(
    redis: &mut ReadOnlyRedis,
    cfg: &PlatformConfig,
    found: Vec<FoundMeta>,
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
    for f in &strays {
        batch.pttl(f.key.as_bytes());
    }
    let replies = redis.run(&batch).await?;
    for (f, reply) in strays.into_iter().zip(replies) {
        match reply {
            // Gone: it was a release in progress (ZREM, then DEL).
            Value::Int(-2) => {}
            Value::Int(ms) => out.push(MetaKey {
                agent_name: f.agent,
                execution_id: f.id,
                orphan_ttl: Some(KeyTtl::from_pttl(ms)),
            }),
            other => anomalies.push(anomaly(
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

/// One pipeline for every non-sentinel member's metadata: `PTTL` and `HGET timeout_field`.
async fn read_meta(
    redis: &mut ReadOnlyRedis,
    cfg: &PlatformConfig,
    slot_sets: &mut [SlotSet],
    anomalies: &mut Vec<Anomaly>,
) -> Result<(), RedisSourceError> {
    let keys = &cfg.keys;
    let mut batch = ReadBatch::new();
    let mut wanted: Vec<(usize, usize, String)> = Vec::new();
    for (s, set) in slot_sets.iter().enumerate() {
        for (m, member) in set.members.iter().enumerate() {
            if member.sentinel {
                continue;
            }
            let meta_key = fill(
                &keys.slot_meta,
                &[
                    (AGENT, set.agent_name.as_str()),
                    (EXECUTION_ID, member.member.as_str()),
                ],
            );
            batch.pttl(meta_key.as_bytes());
            batch.hget(meta_key.as_bytes(), keys.timeout_field.as_bytes());
            wanted.push((s, m, meta_key));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let replies = redis.run(&batch).await?;
    // The instant the TTLs were read: S-03 measures a slot's age here, not at `taken_at`.
    let ttl_read_at_ms = chrono::Utc::now().timestamp_millis();
    for ((s, m, meta_key), pair) in wanted.into_iter().zip(replies.chunks_exact(2)) {
        let [pttl, timeout] = pair else { continue };
        let ttl = match pttl {
            Value::Int(ms) => KeyTtl::from_pttl(*ms),
            other => {
                anomalies.push(anomaly(
                    meta_key,
                    format!("PTTL answered {}; metadata not judged", show_value(other)),
                ));
                continue;
            }
        };
        let timeout_seconds = parse_timeout(timeout, &meta_key, &keys.timeout_field, anomalies);
        if let Some(member) = slot_sets.get_mut(s).and_then(|set| set.members.get_mut(m)) {
            member.meta = Some(SlotMeta {
                ttl,
                timeout_seconds,
                ttl_read_at_ms,
            });
        }
    }
    Ok(())
}

/// A slot-key pattern split around its `{agent}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotKeyPattern {
    prefix: String,
    suffix: String,
}

impl SlotKeyPattern {
    fn parse(pattern: &str) -> Result<SlotKeyPattern, RedisSourceError> {
        let (prefix, suffix) = pattern.split_once(AGENT).ok_or_else(|| {
            RedisSourceError::Pattern(format!("keys.slots {pattern:?} has no {AGENT} placeholder"))
        })?;
        if suffix.contains(AGENT) {
            return Err(RedisSourceError::Pattern(format!(
                "keys.slots {pattern:?} has more than one {AGENT} placeholder"
            )));
        }
        Ok(SlotKeyPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The `SCAN MATCH` glob: literal parts escaped, `{agent}` → `*`.
    fn glob(&self) -> String {
        format!(
            "{}*{}",
            glob_escape(&self.prefix),
            glob_escape(&self.suffix)
        )
    }

    /// The `{agent}` part of a key; `None` when the key does not fit the pattern.
    fn agent_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
}

/// The slot-metadata pattern split around its `{agent}` and `{execution_id}` placeholders
/// (in either order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetaKeyPattern {
    prefix: String,
    middle: String,
    suffix: String,
    agent_first: bool,
}

impl MetaKeyPattern {
    fn parse(pattern: &str) -> Result<MetaKeyPattern, RedisSourceError> {
        let bad =
            |why: &str| RedisSourceError::Pattern(format!("keys.slot_meta {pattern:?} {why}"));
        if pattern.matches(AGENT).count() != 1 || pattern.matches(EXECUTION_ID).count() != 1 {
            return Err(bad(&format!(
                "must contain {AGENT} and {EXECUTION_ID} exactly once"
            )));
        }
        let (Some(a), Some(e)) = (pattern.find(AGENT), pattern.find(EXECUTION_ID)) else {
            return Err(bad("lacks a placeholder"));
        };
        let agent_first = a < e;
        let (first, first_len, second, second_len) = if agent_first {
            (a, AGENT.len(), e, EXECUTION_ID.len())
        } else {
            (e, EXECUTION_ID.len(), a, AGENT.len())
        };
        let part = |from: usize, to: usize| {
            pattern
                .get(from..to)
                .map(str::to_owned)
                .ok_or_else(|| bad("has overlapping placeholders"))
        };
        Ok(MetaKeyPattern {
            prefix: part(0, first)?,
            middle: part(first + first_len, second)?,
            suffix: part(second + second_len, pattern.len())?,
            agent_first,
        })
    }

    /// The `SCAN MATCH` glob: literal parts escaped, placeholders → `*`.
    fn glob(&self) -> String {
        format!(
            "{}*{}*{}",
            glob_escape(&self.prefix),
            glob_escape(&self.middle),
            glob_escape(&self.suffix)
        )
    }

    /// Whether `key` could be a metadata key of this pattern.
    fn fits(&self, key: &str) -> bool {
        !self.splits(key).is_empty()
    }

    /// Every way `key` splits into non-empty (agent, execution id) parts.
    fn splits<'k>(&self, key: &'k str) -> Vec<(&'k str, &'k str)> {
        let Some(inner) = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_suffix(self.suffix.as_str()))
        else {
            return Vec::new();
        };
        let cuts: Vec<usize> = if self.middle.is_empty() {
            inner.char_indices().map(|(i, _)| i).collect()
        } else {
            inner
                .match_indices(self.middle.as_str())
                .map(|(i, _)| i)
                .collect()
        };
        cuts.into_iter()
            .filter_map(|at| {
                let first = inner.get(..at)?;
                let second = inner.get(at + self.middle.len()..)?;
                if first.is_empty() || second.is_empty() {
                    return None;
                }
                Some(if self.agent_first {
                    (first, second)
                } else {
                    (second, first)
                })
            })
            .collect()
    }
}

/// The longest common prefix of two strings, on a char boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let len = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()));
    a.get(..len).unwrap_or("")
}

fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Substitutes placeholders in one left-to-right pass, so a value that happens to contain a
/// placeholder's text is never substituted again.
fn fill(pattern: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut rest = pattern;
    'scan: while !rest.is_empty() {
        for (name, value) in values {
            if let Some(after) = rest.strip_prefix(name) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

fn anomaly(subject: String, note: impl Into<String>) -> Anomaly {
    Anomaly {
        source: Source::Redis,
        subject,
        note: note.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

fn hex_subject(bytes: &[u8]) -> String {
    format!("0x{}", hex(bytes))
}

/// A short rendering of a reply for anomaly notes (bounded: data is untrusted).
fn show_value(v: &Value) -> String {
    let text = match v {
        Value::Nil => "nil".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Double(f) => f.to_string(),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => format!("{s:?}"),
        Value::ServerError(e) => format!("error {}", e.code()),
        _ => "an unexpected reply".to_owned(),
    };
    match text.char_indices().nth(48) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(&text)),
        None => text,
    }
}

/// A `WRONGTYPE` (or other per-command) error, as an anomaly note.
fn server_error_note(e: &redis::ServerError, what: &str) -> String {
    if e.code() == "WRONGTYPE" {
        format!("{what} holds the wrong key type; skipped")
    } else {
        format!("{what}: server error {}; skipped", e.code())
    }
}

/// `ZRANGE … WITHSCORES` reply → (member bytes, score reply) pairs. RESP2 answers a flat
/// `[m1, s1, m2, s2, …]` array, RESP3 an array of `[member, score]` pairs; both are accepted.
fn zrange_pairs(
    reply: &Value,
    key: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<Vec<(Vec<u8>, Value)>> {
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) => {
            anomalies.push(anomaly(key.to_owned(), server_error_note(e, "slot key")));
            return None;
        }
        other => {
            anomalies.push(anomaly(
                key.to_owned(),
                format!("ZRANGE answered {}; skipped", show_value(other)),
            ));
            return None;
        }
    };
    let member_bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    let mut pairs = Vec::with_capacity(items.len() / 2);
    if items.iter().all(|i| matches!(i, Value::Array(_))) {
        for item in items {
            if let Value::Array(pair) = item
                && let [member, score] = pair.as_slice()
                && let Some(member) = member_bytes(member)
            {
                pairs.push((member, score.clone()));
            }
        }
    } else {
        for chunk in items.chunks_exact(2) {
            if let [member, score] = chunk
                && let Some(member) = member_bytes(member)
            {
                pairs.push((member, score.clone()));
            }
        }
    }
    Some(pairs)
}

/// Slot score (float unix seconds) → unix ms; `None` for `inf`, `-inf` or anything non-numeric.
fn score_ms(score: &Value) -> Option<i64> {
    let secs = match score {
        Value::Double(f) => *f,
        Value::Int(i) => *i as f64,
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse::<f64>().ok()?,
        Value::SimpleString(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    seconds_to_ms(secs)
}

fn parse_timeout(
    reply: &Value,
    meta_key: &str,
    field: &str,
    anomalies: &mut Vec<Anomaly>,
) -> Option<i64> {
    let text = match reply {
        Value::Nil => return None,
        Value::Int(i) => return Some(*i),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::ServerError(e) => {
            anomalies.push(anomaly(
                meta_key.to_owned(),
                server_error_note(e, "metadata key"),
            ));
            return None;
        }
        other => {
            anomalies.push(anomaly(
                format!("{meta_key} {field}"),
                format!("HGET answered {}", show_value(other)),
            ));
            return None;
        }
    };
    match text.trim().parse::<i64>() {
        Ok(v) => Some(v),
        Err(_) => {
            anomalies.push(anomaly(
                format!("{meta_key} {field}"),
                format!("not an integer: {}", show_value(reply)),
            ));
            None
        }
    }
}

/// Drain heartbeat (unix seconds, int or float) → unix ms.
fn parse_drain_tick(reply: &Value, key: &str, anomalies: &mut Vec<Anomaly>) -> Option<i64> {
    let parsed = match reply {
        Value::Nil => return None,
        Value::Int(i) => seconds_to_ms(*i as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(parse_timestamp_ms),
        Value::SimpleString(s) => parse_timestamp_ms(s),
        Value::ServerError(e) => {
            anomalies.push(anomaly(
                key.to_owned(),
                server_error_note(e, "drain tick key"),
            ));
            return None;
        }
        _ => None,
    };
    if parsed.is_none() {
        anomalies.push(anomaly(
            key.to_owned(),
            format!("drain tick {} is not a unix time", show_value(reply)),
        ));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slot_pattern_extracts_agent_and_builds_glob() {
        let p = SlotKeyPattern::parse("agent:slots:{agent}").unwrap();
        assert_eq!(p.glob(), "agent:slots:*");
        assert_eq!(p.agent_of("agent:slots:alpha"), Some("alpha"));
        assert_eq!(p.agent_of("agent:slots:a:b"), Some("a:b"));
        assert_eq!(p.agent_of("agent:slot:alpha:1"), None);

        let p = SlotKeyPattern::parse("x[1]*:{agent}:slots").unwrap();
        assert_eq!(p.glob(), "x\\[1\\]\\*:*:slots");
        assert_eq!(p.agent_of("x[1]*:bob:slots"), Some("bob"));
        assert_eq!(p.agent_of("x[1]*:bob:slotsX"), None);

        assert!(SlotKeyPattern::parse("agent:slots").is_err());
        assert!(SlotKeyPattern::parse("{agent}:{agent}").is_err());
    }

    #[test]
    fn meta_pattern_splits_keys() {
        let p = MetaKeyPattern::parse("agent:slot:{agent}:{execution_id}").unwrap();
        assert_eq!(p.glob(), "agent:slot:*:*");
        assert_eq!(p.splits("agent:slot:alpha:42"), [("alpha", "42")]);
        assert_eq!(
            p.splits("agent:slot:a:b:c"),
            [("a", "b:c"), ("a:b", "c")],
            "ambiguous: every split, leftmost first"
        );
        assert!(p.splits("agent:slots:alpha").is_empty());
        assert!(p.splits("agent:slot:alpha:").is_empty());
        assert!(!p.fits("agent:slot:alpha"));

        let p = MetaKeyPattern::parse("m/{execution_id}/{agent}/h").unwrap();
        assert_eq!(p.glob(), "m/*/*/h");
        assert_eq!(p.splits("m/7/bob/h"), [("bob", "7")]);

        assert!(MetaKeyPattern::parse("agent:slot:{agent}").is_err());
        assert!(MetaKeyPattern::parse("{agent}{agent}:{execution_id}").is_err());
    }

    #[test]
    fn ambiguous_meta_keys_prefer_present_members() {
        let p = MetaKeyPattern::parse("agent:slot:{agent}:{execution_id}").unwrap();
        let set = SlotSet {
            agent_name: "a:b".to_owned(),
            members: vec![SlotMember {
                member: "c".to_owned(),
                acquired_at_ms: Some(0),
                sentinel: false,
                meta: None,
            }],
        };
        let found = resolve_meta_keys(
            &p,
            vec!["agent:slot:a:b:c".to_owned(), "agent:slot:a:b:d".to_owned()],
            &[set],
        );
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.agent.as_str(), f.id.as_str(), f.owned))
            .collect();
        assert_eq!(got, [("a:b", "c", true), ("a:b", "d", false)]);
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix("agent:slots:", "agent:slot:"), "agent:slot");
        assert_eq!(common_prefix("x", "y"), "");
        assert_eq!(common_prefix("ab", "abc"), "ab");
        assert_eq!(common_prefix("é1", "é2"), "é");
    }

    #[test]
    fn fill_substitutes_once() {
        let p = "agent:slot:{agent}:{execution_id}";
        assert_eq!(
            fill(p, &[(AGENT, "a"), (EXECUTION_ID, "42")]),
            "agent:slot:a:42"
        );
        assert_eq!(
            fill(p, &[(AGENT, "{execution_id}"), (EXECUTION_ID, "é")]),
            "agent:slot:{execution_id}:é"
        );
    }

    #[test]
    fn scores() {
        assert_eq!(score_ms(&bulk("1768384800.1234")), Some(1_768_384_800_123));
        assert_eq!(score_ms(&Value::Double(1.5)), Some(1500));
        assert_eq!(score_ms(&bulk("inf")), None);
        assert_eq!(score_ms(&bulk("-inf")), None);
        assert_eq!(score_ms(&bulk("nan")), None);
        assert_eq!(score_ms(&bulk("x")), None);
    }

    #[test]
    fn zrange_reply_shapes() {
        let mut anomalies = Vec::new();
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let pairs = zrange_pairs(&flat, "k", &mut anomalies).unwrap();
        assert_eq!(pairs.len(), 2);
        let resp3 = Value::Array(vec![Value::Array(vec![bulk("a"), Value::Double(1.0)])]);
        assert_eq!(zrange_pairs(&resp3, "k", &mut anomalies).unwrap().len(), 1);
        assert!(anomalies.is_empty());
        assert!(zrange_pairs(&Value::Nil, "k", &mut anomalies).is_none());
        assert_eq!(anomalies.len(), 1);
    }

    #[test]
    fn timeouts_and_ticks() {
        let mut a = Vec::new();
        assert_eq!(
            parse_timeout(&bulk("900"), "m", "timeout_seconds", &mut a),
            Some(900)
        );
        assert_eq!(
            parse_timeout(&Value::Nil, "m", "timeout_seconds", &mut a),
            None
        );
        assert!(a.is_empty());
        assert_eq!(
            parse_timeout(&bulk("9.5"), "m", "timeout_seconds", &mut a),
            None
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            parse_drain_tick(&bulk("1768384800.5"), "t", &mut a),
            Some(1_768_384_800_500)
        );
        assert_eq!(parse_drain_tick(&Value::Nil, "t", &mut a), None);
        assert_eq!(a.len(), 1);
        assert_eq!(parse_drain_tick(&bulk("soon"), "t", &mut a), None);
        assert_eq!(a.len(), 2);
    }

    #[tokio::test]
    async fn a_malformed_url_is_reported_without_echoing_it() {
        let url = "redis://:pa55word@[::1:6379/0";
        let err = ReadOnlyRedis::connect(url, Duration::from_secs(1), Duration::from_secs(1))
            .await
            .expect_err("malformed URL");
        let text = err.to_string();
        assert!(text.starts_with("redis_url: "), "{text}");
        assert!(
            !text.contains("pa55word") && !text.contains("[::1"),
            "{text}"
        );
    }

    #[test]
    fn scrubber_removes_url_and_password() {
        let s = Scrubber::new("redis://user:hunter22@10.1.2.3:6380/0");
        let out =
            s.scrub("failed redis://user:hunter22@10.1.2.3:6380/0 pw hunter22 at 10.1.2.3:6380");
        assert!(!out.contains("hunter22"), "{out}");
        assert!(!out.contains("10.1.2.3:6380"), "{out}");
        assert!(!out.contains("redis://"), "{out}");
    }
}
