//! Scheduling and sequencing of cycles. `cycle.rs` is the only place that orders the steps
//! (lease → load state → collect → evaluate → diff → record → release); `timing.rs` decides when
//! the next scheduled cycle fires (pure); `scheduler.rs` is the loop that sleeps and triggers.

pub mod runner;
pub mod scheduler;
pub mod timing;
