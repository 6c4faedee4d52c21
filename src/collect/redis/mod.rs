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
//! overlap it with the second phase (see [`crate::collect::builtin`]); [`collect`] runs both back
//! to back. The phases change when each command is sent, not which commands or how many round
//! trips.
//!
//! Platform data is untrusted: wrong key types, odd scores, non-UTF-8 bytes and garbage numbers
//! become anomalies; only a connection failure makes the source unavailable.
//!
//! One file per concern, the same shape as the SQL source: [`client`] (the read-only connections
//! to a data node and to a sentinel), [`route`] (which node this collection reads: `redis_url`,
//! the sentinels' current primary, or a caught-up replica), [`cluster`] (a cluster's slot map and
//! the per-node fan-out), [`keys`] (key patterns), [`read`] (the two phases), [`reply`] (replies
//! → snapshot types). Imports go one way: `read` uses `cluster`, `route`, `keys`, `reply` and
//! `client`; `cluster` uses `client` and `route`'s report type; `route` and `keys` use `client`;
//! this file only re-exports.
//!
//! Sentinel and replica reads add a fixed number of round trips before the first phase (see
//! [`route`]), shown with the route in the cycle diagnostics. A Redis Cluster ([`cluster`]) is
//! read on every primary: the same phases, each SCAN and pipeline sent once per node that holds
//! such keys, plus one `CLUSTER SLOTS`.
//!
//! It must not write to Redis nor judge anything.

pub mod client;
pub mod cluster;
pub mod keys;
pub mod read;
pub mod reply;
pub mod route;

pub use self::client::{ReadBatch, ReadOnlyRedis, RedisSourceError};
pub use self::read::{RedisOutcome, SlotsRead, collect, read_slots};
pub use self::route::RedisRoute;
