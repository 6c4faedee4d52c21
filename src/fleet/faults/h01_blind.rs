//! `h01-blind` → H-01 (collector not blind). Breaks the *roster*: a migration moves it away
//! (`agent_ownership` renamed) while slot keys exist, so the roster read fails while Redis says
//! the fleet is alive. It touches the whole platform and blinds the SQLite source while
//! injected, so it runs alone, and H-01 confirms only after its suspicion has lasted an
//! interval. The revert moves the roster table back and finishes the site's execution.

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// The roster moved away while slots exist.
#[derive(Debug)]
pub struct H01Blind;

/// The roster table this recipe moves away (and back).
const ROSTER: &str = "agent_ownership";
const ROSTER_MOVED: &str = "agent_ownership_moved";

static META: RecipeMeta = RecipeMeta {
    name: "h01-blind",
    invariant: "H-01",
    signal: "roster_empty_unverifiable",
    severity: Severity::Major,
    breaks: "a migration moves the roster (agent_ownership renamed) while slot keys exist",
    revert: "the roster table is moved back; the site's execution finishes",
    cofiring: "no alert, but the SQLite source is unavailable while injected, so every \
               invariant reading SQLite is unknown (never fired, never resolved). An emptied \
               roster was not chosen: every slot key and agent-keyed row would then be an \
               L-03 orphan (L-03 would fire, critical)",
    cycles_to_detect: 3,
    platform_wide: Some("renames the roster table"),
    runs_alone: true,
    ..RecipeMeta::BASE
};

impl Recipe for H01Blind {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(site, &id, now - 10_000, true, SITE_EXEC_TIMEOUT, None)
                .await?;
            bench
                .platform
                .db()
                .batch(&format!("ALTER TABLE {ROSTER} RENAME TO {ROSTER_MOVED}"))?;
            Ok(Injected {
                what: format!("roster table moved to {ROSTER_MOVED} while slot keys exist"),
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
            bench
                .platform
                .db()
                .batch(&format!("ALTER TABLE {ROSTER_MOVED} RENAME TO {ROSTER}"))?;
            for id in ids {
                bench.finish(site, id, "success").await?;
            }
            Ok("roster table moved back".to_owned())
        })
    }
}
