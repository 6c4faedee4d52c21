//! `b02-pull-queued` → B-02's pull arm (no queued without full slots). Breaks the *pull
//! workers' claim*: a pull-mode pilot's workers keep polling (its poll key stays fresh, so B-08
//! holds) but claim nothing, so a row queued 3 min ago waits while both workers are idle (the
//! pull arm's bound is 120 s; B-05's 24 h is far off). Needs a Docker engine; the site is a
//! pilot with its own short name (`fault-b02pull`, beside `b02-queued-idle`'s `fault-b02`). The
//! revert has a worker claim the row and run it to completion.

use canary_invariants::Severity;

use super::bench::ok_metadata;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A pilot's queued row unclaimed beside idle pull workers.
#[derive(Debug)]
pub struct B02PullQueued;

static META: RecipeMeta = RecipeMeta {
    name: "b02-pull-queued",
    invariant: "B-02",
    signal: "queued_not_claimed",
    severity: Severity::Critical,
    breaks: "a pull-mode pilot's workers poll but claim nothing: a row queued 3 min ago waits \
             while its workers are idle",
    revert: "a worker claims the row and runs it to completion",
    cofiring: "none (the push arm skips pilots; the poll key stays fresh, so B-08 holds)",
    needs_docker: true,
    pilot: true,
    site: "b02pull",
    ..RecipeMeta::BASE
};

impl Recipe for B02PullQueued {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let id = bench.next_id(site);
            bench.row_queued(site, &id, now_ms() - 180_000, &ok_metadata(site))?;
            Ok(Injected {
                what: format!("{site}: row {id} queued 3 min, the pilot's workers idle"),
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
            bench.dispatch(site, ids).await?;
            Ok(format!("{site}: waiting row claimed and run"))
        })
    }
}
