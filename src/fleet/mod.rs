//! The synthetic platform: schema, a simulator that runs a fleet by the platform's protocol
//! (`sim`), fault recipes that break one step each (`faults`: one file per recipe, one registry
//! that the demo, `canary fleet --faults` and the tests iterate), bulk seeding for benches
//! (`seed`), a private redis-server, and the continuous demo.

pub mod demo;
pub mod drive;
pub mod faults;
pub mod platform;
pub mod redis_server;
pub mod rig;
pub mod seed;
pub mod sim;
