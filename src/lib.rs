//! canary: the daemon around the pure `canary-invariants` crate.
//!
//! - [`config`]: typed configuration, layering and validation.
//! - [`collect`]: read-only adapters that turn the platform's SQLite and Redis into a `Snapshot`.
//! - [`store`]: canary's own state database (cycles, violations, states, transitions, memory).
//! - [`alert`]: Slack payloads (pure), retry classification (pure) and the outbox deliverer.
//! - [`schedule`]: the cycle sequencer (`cycle.rs`), the only place that orders the steps.
//! - [`http`]: the admin HTTP API (probes, metrics, bearer-token admin routes) over the cycle runner.
//! - [`fleet`]: a synthetic platform (schema, seeding, private `redis-server`) for the demo and tests.
//! - [`cli`]: subcommands, output formats and exit codes.
//! - [`daemon`]: `canary run`: composes scheduler, retention, deliverer and admin API; lifecycle.

pub mod alert;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod fleet;
pub mod http;
pub mod schedule;
pub mod store;
