//! Test harnesses: real processes and real files, no mocks.
//!
//! - [`redis_server`]: a private `redis-server` per test (fails with an install hint when absent).
//! - [`platform_db`]: a temp platform SQLite database built from `tests/fixtures/platform.sql`.

pub mod platform_db;
pub mod redis_server;
