//! `b08-workers-missing` → B-08 (pull workers alive). Breaks the *pull workers' container*: a
//! pull-mode pilot's agent container stops (an OOM kill, a failed deploy), so nobody serves its
//! queue. Needs a Docker engine; the site is a pilot (`platform.pull.pilot_agents`) whose
//! container runs with `TRINITY_PULL_MODE=1`. The revert starts the container again; its
//! workers poll at once (the rig's pull workers stamp the poll key every second).

use canary_invariants::Severity;

use super::bench::container_of;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};

/// A pilot's container stopped.
#[derive(Debug)]
pub struct B08WorkersMissing;

static META: RecipeMeta = RecipeMeta {
    name: "b08-workers-missing",
    invariant: "B-08",
    signal: "workers_missing",
    severity: Severity::Major,
    breaks: "a pull-mode pilot's agent container stops: no pull workers serve its queue",
    revert: "the container is started again; its workers poll",
    cofiring: "none (the pilot has no queued row, so B-02's pull arm stays green)",
    needs_docker: true,
    pilot: true,
    ..RecipeMeta::BASE
};

impl Recipe for B08WorkersMissing {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let container = container_of(site);
            let name = container.clone();
            bench
                .docker(move |d| d.docker(&["stop", "-t", "0", &name]))
                .await?;
            Ok(Injected {
                what: format!("{site}: pilot container {container} stopped"),
                ids: vec![container],
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
            for container in ids {
                let name = container.clone();
                bench.docker(move |d| d.docker(&["start", &name])).await?;
            }
            Ok(format!("{site}: pilot container started again"))
        })
    }
}
