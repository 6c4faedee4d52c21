//! The triggers of cycles: `scheduler.rs` is the loop (it asks the pure `crate::timing` when the
//! next scheduled cycle fires) that sleeps and triggers (and the retention loop); `runner.rs` is
//! the single-flight entry point every trigger goes through. The cycle itself — the order of its
//! steps — lives in `crate::cycle`; nothing here knows it.

pub mod runner;
pub mod scheduler;
