//! `e03-no-completed-at` → E-03 (completed rows populated). Breaks the *finish* step's terminal
//! write: status and `duration_ms` are set, `completed_at` is not (the slot is released
//! normally). The revert writes the missing `completed_at`.

use crate::fleet::platform_db::params;

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A terminal row without `completed_at`.
#[derive(Debug)]
pub struct E03NoCompletedAt;

static META: RecipeMeta = RecipeMeta {
    name: "e03-no-completed-at",
    invariant: "E-03",
    signal: "completed_at_null",
    severity: Severity::Major,
    breaks: "finish: the terminal write sets status and duration_ms but not completed_at",
    revert: "completed_at is written",
    ..RecipeMeta::BASE
};

impl Recipe for E03NoCompletedAt {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(site, &id, now - 20_000, true, SITE_EXEC_TIMEOUT, None)
                .await?;
            bench.platform.db().execute(
                "UPDATE schedule_executions SET status = 'success', duration_ms = 20000 \
                 WHERE id = ?1",
                params![id],
            )?;
            bench.release(site, &id).await?;
            Ok(Injected {
                what: format!("{site}: execution {id} finished (success) without completed_at"),
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
            Ok(format!("{site}: completed_at written"))
        })
    }
}
