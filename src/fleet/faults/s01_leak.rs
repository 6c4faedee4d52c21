//! `s01-leak` → S-01 (slot–row bijection). Breaks the *finish* step: the row goes terminal (30 s
//! ago, past S-01's 3 s finish-race grace) but the slot is never released, neither ZREM nor DEL.
//! The revert runs the missing release late (ZREM + DEL), which restores the bijection.

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::sim::Shape;

/// The leaked slot.
#[derive(Debug)]
pub struct S01Leak;

static META: RecipeMeta = RecipeMeta {
    name: "s01-leak",
    invariant: "S-01",
    signal: "in_redis_only",
    severity: Severity::Critical,
    breaks: "finish: the row goes terminal but the slot is never released (no ZREM, no DEL)",
    revert: "the release step runs late: ZREM + DEL",
    cofiring: "none (the leaked slot keeps its metadata and TTL, and stays within the cap)",
    ..RecipeMeta::BASE
};

impl Recipe for S01Leak {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            // Finished 30 s ago: past S-01's grace, which excuses a release that is still a few
            // ms behind its terminal commit.
            bench
                .start(site, &id, now - 90_000, true, SITE_EXEC_TIMEOUT, None)
                .await?;
            bench.terminal(&id, "success", Some(now - 30_000), Shape::SqliteDatetime)?;
            Ok(Injected {
                what: format!("{site}: execution {id} finished 30 s ago, its slot never released"),
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
            for id in ids {
                bench.release(site, id).await?;
            }
            Ok(format!("{site}: leaked slot released"))
        })
    }
}
