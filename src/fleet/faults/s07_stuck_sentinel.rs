//! `s07-stuck-sentinel` → S-07 (sentinel lifetime bounded). Breaks the *drain sweep*: it crashed
//! mid-claim, so the `drain-` sentinel it placed 30 s ago is never removed. The revert runs the
//! missing ZREM of the sentinel.

use canary_invariants::Severity;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A drain sentinel that outlives its sweep.
#[derive(Debug)]
pub struct S07StuckSentinel;

static META: RecipeMeta = RecipeMeta {
    name: "s07-stuck-sentinel",
    invariant: "S-07",
    signal: "stale_sentinel",
    severity: Severity::Minor,
    breaks: "drain sweep: crashed mid-claim, its drain- sentinel placed 30 s ago never removed",
    revert: "ZREM of the sentinel",
    cofiring: "none (sentinels are excluded from S-01, S-02, S-03 and B-02)",
    ..RecipeMeta::BASE
};

impl Recipe for S07StuckSentinel {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let member = format!("drain-{:x}", now);
            bench
                .platform
                .add_sentinel(site, &member, now - 30_000)
                .await?;
            Ok(Injected {
                what: format!("{site}: drain sentinel {member} left behind 30 s ago"),
                ids: vec![member],
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
            let slots = bench.platform.slots_key(site);
            for member in ids {
                redis::cmd("ZREM")
                    .arg(&slots)
                    .arg(member)
                    .query_async::<()>(bench.platform.redis())
                    .await?;
            }
            Ok(format!("{site}: stale sentinel removed"))
        })
    }
}
