//! `b05-stale-queued` → B-05 (stale queued rows expire). Breaks the *expiry sweep*: a row queued
//! 25 h ago (past the 24 h + 60 s bound) is never failed. The revert is the sweep's missing
//! pass: the row failed with `completed_at` and an `expired in queue` error.

use crate::fleet::platform_db::params;

use canary_invariants::Severity;

use super::bench::ok_metadata;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::sim::{Shape, stamp};

/// A queued row older than the expiry bound.
#[derive(Debug)]
pub struct B05StaleQueued;

static META: RecipeMeta = RecipeMeta {
    name: "b05-stale-queued",
    invariant: "B-05",
    signal: "not_expired",
    severity: Severity::Minor,
    breaks: "expiry sweep: a row queued 25 h ago is never failed",
    revert: "the expiry sweep fails it (failed, completed_at)",
    cofiring: "none (the drain heartbeat is fresh, so B-02 excuses the waiting row)",
    ..RecipeMeta::BASE
};

impl Recipe for B05StaleQueued {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench.row_queued_shaped(
                site,
                &id,
                now - 25 * 3_600_000,
                Shape::SqliteDatetime,
                &ok_metadata(site),
            )?;
            Ok(Injected {
                what: format!("{site}: row {id} queued 25 h ago, never expired"),
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
            let now = now_ms();
            for id in ids {
                bench.platform.db().execute(
                    "UPDATE schedule_executions SET status = 'failed', completed_at = ?2, \
                     error = 'expired in queue' WHERE id = ?1",
                    params![id, stamp(now, Shape::IsoZ)],
                )?;
            }
            Ok(format!("{site}: stale queued row expired (failed)"))
        })
    }
}
