//! The synthetic platform: schema, seeding, a private redis-server for the demo and tests.

pub mod demo;
pub mod platform;
pub mod redis_server;
