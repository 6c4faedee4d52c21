//! Cross-cycle memory: what invariants remember between cycles (E-02's "seen terminal" map,
//! H-01's suspicion marker). It lives in canary's state database; the pure functions take the
//! previous memory as input and return the next one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::snapshot::Millis;

/// Memory carried from one cycle to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// E-02: execution id → terminal status seen recently.
    pub seen_terminal: BTreeMap<String, SeenTerminal>,
    /// H-01: when the "collector is blind" suspicion started, if it is open.
    pub blind_suspected_since_ms: Option<Millis>,
}

/// A terminal status E-02 has seen for an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenTerminal {
    /// The terminal status word first seen.
    pub status: String,
    /// When it was first seen (unix ms, the snapshot's `taken_at`).
    pub seen_at_ms: Millis,
}
