//! Test harnesses: real processes and real files, no mocks.
//!
//! - [`redis_server`]: a private `redis-server` per test (fails with an install hint when absent).
//! - [`cli`]: the built `canary` binary, run with a clean environment.
//! - [`cluster`]: a three-primary Redis Cluster per test, written by the fleet's cluster writer.
//! - [`sentinel`]: a primary, its replica and three sentinels per test, and a failover helper.
//! - [`webhook`]: a local HTTP receiver with scripted answers, standing in for Slack.
//! - [`platform_db`]: a temp platform SQLite database built from `tests/fixtures/platform.sql`.
//! - [`postgres`]: a private PostgreSQL server per test group, a fresh fixture database per test.
//! - [`daemon`]: a real `canary run` process, stopped with SIGTERM, killed on drop.
//! - [`docker`]: a private `dockerd` per test with a busybox image (fails with an install hint).
//! - [`fleet`]: a simulated fleet on a private platform, watched by the real sequencer, alerts
//!   delivered to a [`webhook`] receiver.

pub mod cli; // the built canary binary run with a clean environment, output captured
pub mod cluster; // three cluster-enabled redis-servers, slots assigned at test time, the driver's cluster client as writer
pub mod daemon;
pub mod docker; // a private dockerd (temp data/exec root, socket), a busybox-static image imported, zombie fixtures // a real `canary run` child process: config file, captured stderr, SIGTERM, kill on drop
pub mod fleet; // simulated platform + real sequencer + deliverer + webhook, for end-to-end detection
pub mod platform_db; // temp platform SQLite from tests/fixtures/platform.sql, row-insert helpers
pub mod postgres; // a private PostgreSQL (initdb, runuser as root) + a fresh fixture database per test
pub mod redis_server; // a private redis-server per test (PING readiness, log on failure) + sync client
pub mod sentinel; // primary + replica + three sentinels (generated sentinel.conf, requirepass), failover helper
pub mod tls; // a CA, server and client certificates generated at test time (rcgen)
pub mod webhook; // local axum receiver standing in for Slack: scripted replies, recorded bodies, outages
