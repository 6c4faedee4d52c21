//! `s03-short-ttl` → S-03 (slot TTL floor). Breaks the *claim* step's EXPIRE: the metadata hash
//! gets TTL = timeout, forgetting the +300 s buffer. The revert re-applies the correct TTL
//! (timeout + 300), then finishes the execution normally.

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::platform::SLOT_TTL_BUFFER_SECONDS;

/// A slot whose metadata expires without the buffer.
#[derive(Debug)]
pub struct S03ShortTtl;

static META: RecipeMeta = RecipeMeta {
    name: "s03-short-ttl",
    invariant: "S-03",
    signal: "below_floor",
    severity: Severity::Critical,
    breaks: "claim: the metadata EXPIRE forgets the +300 s buffer (TTL = timeout)",
    revert: "the correct TTL is re-applied, then the execution finishes normally",
    cofiring: "none while held under the short TTL (600 s); past it the hash expires and \
               the slot becomes S-04's (member without metadata), S-03 resolving",
    ..RecipeMeta::BASE
};

impl Recipe for S03ShortTtl {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(
                    site,
                    &id,
                    now - 5_000,
                    true,
                    SITE_EXEC_TIMEOUT,
                    Some(SITE_EXEC_TIMEOUT),
                )
                .await?;
            Ok(Injected {
                what: format!(
                    "{site}: slot {id} expires in {SITE_EXEC_TIMEOUT} s, not timeout + 300"
                ),
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
                bench
                    .platform
                    .expire_meta(site, id, SITE_EXEC_TIMEOUT + SLOT_TTL_BUFFER_SECONDS)
                    .await?;
                bench.finish(site, id, "success").await?;
            }
            Ok(format!("{site}: TTL re-applied, execution finished"))
        })
    }
}
