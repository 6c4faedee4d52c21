//! canary: the daemon around the pure `canary-invariants` crate.
//!
//! - [`config`]: typed configuration, layering and validation.
//! - [`collect`]: read-only adapters that turn the platform's SQLite and Redis into a `Snapshot`.
//! - [`store`]: canary's own state database (cycles, violations, states, transitions, memory).
//! - [`schedule`]: the cycle sequencer (`cycle.rs`), the only place that orders the steps.
//! - [`fleet`]: a synthetic platform (schema, seeding, private `redis-server`) for the demo and tests.
//! - [`cli`]: subcommands, output formats and exit codes.

pub mod cli;
pub mod collect;
pub mod config;
pub mod fleet;
pub mod schedule;
pub mod store;
