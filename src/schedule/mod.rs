//! The triggers of cycles: `timing.rs` decides when the next scheduled cycle fires (pure);
//! `scheduler.rs` is the loop that sleeps and triggers (and the retention loop); `runner.rs` is
//! the single-flight entry point every trigger goes through. The cycle itself — the order of its
//! steps — lives in `crate::cycle`; nothing here knows it.

pub mod runner;
pub mod scheduler;
pub mod timing;
