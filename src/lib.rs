//! canary: the daemon around the pure `canary-invariants` crate.
//!
//! Modules, in the order data flows through them (collect → evaluate → record → deliver):
//! - [`config`]: typed configuration, layering and validation.
//! - [`collect`]: read-only adapters that turn the platform's SQLite and Redis into a `Snapshot`.
//! - [`cycle`]: the only sequencer (lease → load → collect → evaluate → diff → record) and the
//!   cycle result it returns.
//! - [`registry`]: the built-in catalog and the configured custom invariants behind one lookup.
//! - [`store`]: canary's own state database (cycles, violations, states, transitions, memory);
//!   `store::blocking` is how async code reaches it.
//! - [`alert`]: Slack payloads (pure), retry classification (pure) and the outbox deliverer.
//! - [`schedule`]: the triggers: the schedule loop, retention loop and single-flight runner.
//! - [`http`]: the admin HTTP API (probes, metrics, bearer-token admin routes) over the runner.
//! - [`daemon`]: `canary run`: composes scheduler, retention, deliverer and admin API; lifecycle.
//! - [`fleet`]: a synthetic platform (schema, seeding, private `redis-server`) for the demo and tests.
//! - [`cli`]: subcommands and output formats.
//!
//! [`allocator`] declares the process allocator (jemalloc, one arena).
//!
//! Leaf modules everything may use: [`clock`] (the one clock), [`timing`] (when a scheduled
//! cycle fires; pure), [`report`] (the stdout writer). [`exit`] holds the exit codes and the
//! error → code mapping for the binary's edge.

pub mod alert;
pub mod allocator;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod exit;
pub mod fleet;
pub mod http;
pub mod registry;
pub mod report;
pub mod schedule;
pub mod store;
pub mod timing;
