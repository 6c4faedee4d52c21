//! Cross-cycle memory: what invariants remember between cycles (E-02's "seen terminal" map,
//! H-01's suspicion marker). It lives in canary's state database; the pure functions take the
//! previous memory as input and return the next one.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::snapshot::Millis;

/// Memory carried from one cycle to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// E-02: execution id → terminal status seen recently.
    /// Ids and statuses are shared (`Arc<str>`): `evaluate` starts the next memory as a copy of
    /// the previous one, and at 10 000 agents (~50 000 entries) copying two strings per entry
    /// was a quarter of the whole evaluation; a shared string is copied by a count increment.
    pub seen_terminal: BTreeMap<Arc<str>, SeenTerminal>,
    /// H-01: when the "collector is blind" suspicion started, if it is open.
    pub blind_suspected_since_ms: Option<Millis>,
    /// container id → the zombie pids it has shown and since when. Absent in older
    /// serialized memory.
    #[serde(default)]
    pub zombies: BTreeMap<String, ZombieDwell>,
}

/// R-01's dwell of one container: keyed by container id, with the container's start time as
/// the generation (a restarted container starts fresh), one entry per zombie pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieDwell {
    /// The agent the container serves (for the violation's words).
    pub agent: String,
    /// The container's start time when the dwell began (`None` when unknown).
    pub started_at_ms: Option<Millis>,
    /// How many zombies it showed when the dwell began.
    pub first_count: u32,
    /// pid → when it was first and last seen as a zombie.
    pub pids: BTreeMap<u32, PidDwell>,
}

/// When one zombie pid was first and last seen (unix ms, snapshots' `taken_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidDwell {
    /// First seen in this observation run: never moved while the pid persists.
    pub first_seen_ms: Millis,
    /// Last seen.
    pub last_seen_ms: Millis,
}

/// A terminal status E-02 has seen for an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenTerminal {
    /// The terminal status word first seen.
    pub status: Arc<str>,
    /// When it was first seen (unix ms, the snapshot's `taken_at`).
    pub seen_at_ms: Millis,
}
