//! `g05-malformed-slot` → G-05 (platform data well-formed). Breaks the *slot write*: a buggy
//! path stores a plain string under the site's slot key (`SET agent:slots:{site} hello`), so
//! the key holds the wrong Redis type and no sorted-set command can read it. The site is idle,
//! so its slot set did not exist before; the revert DELs the key, which is that state again.
//!
//! It must not touch any key but its own site's slot key.

use canary_invariants::Severity;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};

/// A slot key of the wrong type.
#[derive(Debug)]
pub struct G05MalformedSlot;

static META: RecipeMeta = RecipeMeta {
    name: "g05-malformed-slot",
    invariant: "G-05",
    signal: "wrong_type",
    severity: Severity::Major,
    breaks: "slot write: a plain string stored under the idle site's slot key (wrong type)",
    revert: "DEL of the malformed slot key (an idle agent has no slot set)",
    cofiring: "none (the unreadable key is skipped, and the idle site has no running rows)",
    ..RecipeMeta::BASE
};

impl Recipe for G05MalformedSlot {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let slots = bench.platform.slots_key(site);
            redis::cmd("SET")
                .arg(&slots)
                .arg("hello")
                .query_async::<()>(bench.platform.redis())
                .await?;
            Ok(Injected {
                what: format!("{site}: slot key {slots} overwritten with a string"),
                ids: vec![slots],
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
            for key in ids {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(bench.platform.redis())
                    .await?;
            }
            Ok(format!("{site}: malformed slot key removed"))
        })
    }
}
