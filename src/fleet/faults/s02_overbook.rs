//! `s02-overbook` → S-02 (no overbooking). Breaks the *claim* step's check-then-set: two
//! dispatchers both saw the one free slot of a cap-1 agent, so two executions run with their
//! rows, slots, metadata and sessions. The revert finishes both normally (terminal row, ZREM +
//! DEL), which leaves the site idle and within its cap.

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// Two executions on a cap-1 agent.
#[derive(Debug)]
pub struct S02Overbook;

static META: RecipeMeta = RecipeMeta {
    name: "s02-overbook",
    invariant: "S-02",
    signal: "over_capacity",
    severity: Severity::Critical,
    breaks: "claim: two dispatchers both saw the one free slot (check-then-set): 2 running \
             executions with slots on a cap-1 agent",
    revert: "both executions finish normally (terminal row, ZREM + DEL)",
    cofiring: "none (each execution has its row, slot, metadata and session)",
    site_cap: 1,
    ..RecipeMeta::BASE
};

impl Recipe for S02Overbook {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let mut ids = Vec::new();
            for _ in 0..2 {
                let id = bench.next_id(site);
                bench
                    .start(site, &id, now - 10_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                ids.push(id);
            }
            Ok(Injected {
                what: format!("{site} (cap 1): two dispatchers both took the free slot"),
                ids,
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
            for id in ids {
                bench.finish(site, id, "failed").await?;
            }
            Ok(format!("{site}: executions closed, slots released"))
        })
    }
}
