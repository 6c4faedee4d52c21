//! `canary-invariants`: the pure core of canary.
//!
//! A [`Snapshot`] of the platform's stores goes in, [`Violation`]s and per-invariant
//! [`Outcome`]s come out ([`evaluate()`]), and [`transitions::diff`] turns outcomes into fired /
//! resolved transitions. No I/O, no clock, no environment: time arrives as
//! [`Snapshot::taken_at_ms`], cross-cycle memory as [`Memory`]. Platform data is untrusted, so
//! nothing here may panic on odd input (the crate denies `unwrap`, `expect`, `panic` and indexing).
//!
//! ```
//! use canary_invariants::{evaluate, Memory, Outcome, Params, Selection, Snapshot, Source, SqlState, RedisState};
//!
//! // Both stores read, nothing in them, Docker and the queue accessor not configured: every
//! // invariant that needs neither is evaluated and green; R-01 is not run (not configured,
//! // which is not unknown).
//! let snapshot = Snapshot {
//!     taken_at_ms: 1_768_384_800_000,
//!     sql: Some(SqlState::default()),
//!     redis: Some(RedisState::default()),
//!     not_configured: vec![Source::Docker, Source::QueueCount],
//!     ..Snapshot::default()
//! };
//! let eval = evaluate(&snapshot, &Memory::default(), &Params::default(), Selection::AllEnabled);
//! assert!(eval.outcomes.values().all(|o| *o == Outcome::Green));
//! assert!(eval.not_configured.contains_key("R-01"));
//!
//! // Redis unreadable: what needs it is unknown, never green.
//! let blind = Snapshot { redis: None, ..snapshot };
//! let eval = evaluate(&blind, &Memory::default(), &Params::default(), Selection::AllEnabled);
//! assert_eq!(eval.outcomes["S-01"], Outcome::Unknown);
//! ```

pub mod blind;
pub mod catalog;
pub mod checks;
pub mod custom;
pub mod evaluate;
mod lookup;
pub mod memory;
pub mod params;
pub mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transitions;
pub mod violation;

pub use catalog::{CATALOG, Input, Invariant, InvariantMeta, Need};
pub use custom::{CustomResult, CustomRow};
pub use evaluate::{Evaluation, Selection, evaluate, evaluate_capped};
pub use memory::{Memory, PidDwell, SeenTerminal, ZombieDwell};
pub use params::Params;
pub use snapshot::{
    Agent, Anomaly, AnomalyKind, Backlog, BacklogJson, Container, DockerState, Execution, Field,
    KeyTtl, MetaKey, Millis, OrphanRows, Phase, Processes, QueueCount, QueueCountState, RedisState,
    Schedule, SlotMember, SlotMeta, SlotSet, Snapshot, Source, SourceUnavailable, SqlState,
};
pub use transitions::{Hysteresis, InvariantState, Transition, TransitionKind, Verdict};
pub use violation::{Outcome, Severity, Tier, Violation};
