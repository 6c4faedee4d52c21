//! `b01-accessor-drift` → B-01 (queue accessor coherence). Breaks the *queued-count accessor's
//! cache invalidation*: two rows are queued on the site and the accessor caches the count (2),
//! then both are dispatched and run through the normal protocol, but the cache is never
//! invalidated, so the platform's endpoint keeps answering 2 for a queue that is empty. The
//! revert invalidates the cache (the endpoint counts the rows again: 0).
//!
//! Needs the running simulator's queue accessor (`sim::QueueAccessor`, through its controls).

use canary_invariants::Severity;

use super::bench::ok_metadata;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::platform::FleetError;

/// A stale cached queued count on the platform's accessor.
#[derive(Debug)]
pub struct B01AccessorDrift;

/// Rows queued (and cached) before the dispatch the cache misses.
const ROWS: u64 = 2;

static META: RecipeMeta = RecipeMeta {
    name: "b01-accessor-drift",
    invariant: "B-01",
    signal: "count_mismatch",
    severity: Severity::Critical,
    breaks: "the queued-count accessor's cache is not invalidated on dispatch: it keeps \
             answering 2 queued rows after both were claimed and run",
    revert: "the cache is invalidated: the endpoint counts the site's rows again (0)",
    ..RecipeMeta::BASE
};

impl Recipe for B01AccessorDrift {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let Some(control) = bench.control.clone() else {
                return Err(FleetError::Setup(
                    "b01-accessor-drift needs the running simulator's queue accessor".to_owned(),
                ));
            };
            let now = now_ms();
            let mut ids = Vec::new();
            for _ in 0..ROWS {
                let id = bench.next_id(site);
                bench.row_queued(site, &id, now, &ok_metadata(site))?;
                ids.push(id);
            }
            // The accessor caches the count it answered with...
            control
                .stale_queue_counts
                .lock()
                .map_err(|_| FleetError::Setup("queue accessor cache poisoned".to_owned()))?
                .insert(site.to_owned(), ROWS);
            // ...and the dispatch that empties the queue does not invalidate it.
            bench.dispatch(site, &ids).await?;
            Ok(Injected {
                what: format!(
                    "{site}: the queue accessor answers {ROWS} from a stale cache; the queue is \
                     empty (rows {} run)",
                    ids.join(", ")
                ),
                ids,
            })
        })
    }

    fn revert<'a>(
        &'a self,
        bench: &'a mut Bench,
        site: &'a str,
        _ids: &'a [String],
    ) -> Step<'a, String> {
        Box::pin(async move {
            if let Some(control) = &bench.control {
                control
                    .stale_queue_counts
                    .lock()
                    .map_err(|_| FleetError::Setup("queue accessor cache poisoned".to_owned()))?
                    .remove(site);
            }
            Ok(format!(
                "{site}: queue accessor cache invalidated, it counts the rows again"
            ))
        })
    }
}
