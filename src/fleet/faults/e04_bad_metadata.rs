//! `e04-bad-metadata` → E-04 (queued rows have metadata). Breaks the *enqueue* step:
//! `backlog_metadata` is written truncated, not valid JSON. The row is fresh, so B-02's dispatch
//! grace excuses it. The revert writes valid metadata, then cancels the row.

use canary_invariants::Severity;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A queued row with truncated metadata.
#[derive(Debug)]
pub struct E04BadMetadata;

static META: RecipeMeta = RecipeMeta {
    name: "e04-bad-metadata",
    invariant: "E-04",
    signal: "backlog_metadata_invalid_json",
    severity: Severity::Major,
    breaks: "enqueue: backlog_metadata is written truncated (not valid JSON)",
    revert: "valid metadata is written, then the row is cancelled",
    cofiring: "none (the row is younger than B-02's 60 s dispatch grace)",
    ..RecipeMeta::BASE
};

impl Recipe for E04BadMetadata {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench.row_queued(site, &id, now, r#"{"schedule_id": "sched-x", "attempt": "#)?;
            Ok(Injected {
                what: format!("{site}: queued row {id} with truncated backlog_metadata"),
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
                bench.cancel_with_ok_metadata(site, id)?;
            }
            Ok(format!("{site}: metadata repaired, row cancelled"))
        })
    }
}
