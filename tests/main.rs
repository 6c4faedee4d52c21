//! The one integration-test binary: real `redis-server` processes on ephemeral ports, real SQLite
//! files in temp dirs. Each module below owns one area; `support/` holds the harnesses.

// The whole binary is test code: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod alert;
mod check;
mod collect;
mod custom;
mod daemon;
mod fleet;
mod http;
mod store;
