//! `b02-queued-idle` → B-02 (no queued without full slots). Breaks the *drain sweep*: it dies
//! (the running simulator's sweep is stopped, its heartbeat left 2 min old) while a row queued
//! 5 min ago waits on an agent with free slots. This is one of the recipes that touch the whole
//! platform: the heartbeat key is global. The revert brings the sweep back (fresh heartbeat,
//! the simulator's sweep restarted) and dispatches and runs the waiting row normally.

use std::sync::atomic::Ordering;
use std::time::Duration;

use canary_invariants::Severity;

use super::bench::ok_metadata;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A queued row waiting beside free slots while the drain sweep is dead.
#[derive(Debug)]
pub struct B02QueuedIdle;

static META: RecipeMeta = RecipeMeta {
    name: "b02-queued-idle",
    invariant: "B-02",
    signal: "queued_with_free_slots",
    severity: Severity::Critical,
    breaks: "drain sweep dies (heartbeat 2 min old, no more sweeps) while a row queued 5 min \
             ago waits on an agent with free slots",
    revert: "the sweep resumes: heartbeat written, the row claimed and run to completion",
    cofiring: "while the heartbeat is stale, B-02 also judges every simulated agent (same \
               invariant, more subjects possible)",
    platform_wide: Some("back-dates the drain heartbeat key"),
    ..RecipeMeta::BASE
};

impl Recipe for B02QueuedIdle {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            if let Some(control) = &bench.control {
                control.sweep_stopped.store(true, Ordering::Relaxed);
                // A sweep already under way may still write its heartbeat: let it end.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            bench.set_drain_tick(now - 120_000).await?;
            let id = bench.next_id(site);
            bench.row_queued(site, &id, now - 300_000, &ok_metadata(site))?;
            Ok(Injected {
                what: format!(
                    "{site}: drain sweep dead for 2 min, row {id} queued 5 min with free slots"
                ),
                ids: vec![id],
            })
        })
    }

    fn revert<'a>(
        &'a self,
        bench: &'a mut Bench,
        site: &'a str,
        ids: &'a [String],
    ) -> Step<'a, String> {
        Box::pin(async move {
            bench.set_drain_tick(now_ms()).await?;
            if let Some(control) = &bench.control {
                control.sweep_stopped.store(false, Ordering::Relaxed);
            }
            bench.dispatch(site, ids).await?;
            Ok(format!(
                "{site}: drain sweep back, waiting row dispatched and run"
            ))
        })
    }
}
