//! `r01-zombie` → R-01 (no persisting zombie agent processes). Breaks the *agent process's
//! parent*: inside the site's agent container a shell starts `claude` and `exec`s a program
//! that never waits for it, so the exited `claude` stays a zombie. R-01 remembers when it first
//! saw the pid and fires once it has persisted for `dwell_seconds` (shortened to one interval
//! in the demo and the suite, as H-01's confirmation is). Needs a Docker engine. The revert
//! kills that parent: the zombie is reparented to the container's init, which reaps it.

use canary_invariants::Severity;

use super::bench::container_of;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};

/// An unreaped `claude` in the site's container.
#[derive(Debug)]
pub struct R01Zombie;

static META: RecipeMeta = RecipeMeta {
    name: "r01-zombie",
    invariant: "R-01",
    signal: "zombie_persisting",
    severity: Severity::Critical,
    breaks: "the agent process's parent never reaps it: claude exits inside the site's \
             container and stays a zombie",
    revert: "the parent is killed: the container's init reaps the zombie",
    // First sighting starts the dwell, which is one interval here: red on the 2nd cycle, or
    // the 3rd when the 2nd runs a few ms short of a full interval after the 1st.
    cycles_to_detect: 3,
    needs_docker: true,
    ..RecipeMeta::BASE
};

impl Recipe for R01Zombie {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let container = container_of(site);
            let name = container.clone();
            bench.docker(move |d| d.make_zombie(&name)).await?;
            Ok(Injected {
                what: format!("{site}: claude exited in container {container} and nobody reaps it"),
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
                bench.docker(move |d| d.reap_zombies(&name)).await?;
            }
            Ok(format!("{site}: the zombie's parent killed, init reaped it"))
        })
    }
}
