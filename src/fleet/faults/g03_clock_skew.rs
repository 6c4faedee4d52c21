//! `g03-clock-skew` → G-03 (clock sanity). Breaks the *finish* step's clock: `completed_at` is
//! written by a host whose clock runs 3 min behind, 150 s before the row's `started_at` (the
//! slot is released normally). The revert rewrites `completed_at` from a correct clock.

use crate::fleet::platform_db::params;

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::sim::{Shape, stamp};

/// A row completed before it started.
#[derive(Debug)]
pub struct G03ClockSkew;

static META: RecipeMeta = RecipeMeta {
    name: "g03-clock-skew",
    invariant: "G-03",
    signal: "completed_before_started",
    severity: Severity::Minor,
    breaks: "finish: completed_at written by a host whose clock is 3 min behind (150 s \
             before started_at)",
    revert: "completed_at rewritten from a correct clock",
    ..RecipeMeta::BASE
};

impl Recipe for G03ClockSkew {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(site, &id, now - 30_000, true, SITE_EXEC_TIMEOUT, None)
                .await?;
            bench.platform.db().execute(
                "UPDATE schedule_executions SET status = 'success', completed_at = ?2, \
                 duration_ms = 30000 WHERE id = ?1",
                params![id, stamp(now - 180_000, Shape::SqliteDatetime)],
            )?;
            bench.release(site, &id).await?;
            Ok(Injected {
                what: format!("{site}: execution {id} completed_at written 3 min slow"),
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
            bench.complete_now(ids)?;
            Ok(format!(
                "{site}: completed_at rewritten from a correct clock"
            ))
        })
    }
}
