//! Scheduling and sequencing of cycles. `cycle.rs` is the only place that orders the steps
//! (lease → load state → collect → evaluate → diff → record → release).

pub mod cycle;
pub mod runner;
