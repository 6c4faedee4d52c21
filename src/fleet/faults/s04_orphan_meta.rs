//! `s04-orphan-meta` → S-04 (metadata–membership consistency). Breaks the *finish* step's
//! release half-way: ZREM runs but the metadata hash is never DELeted, leaving a hash without a
//! member. The revert runs the missing DEL.

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::sim::Shape;

/// A metadata hash left behind by a release.
#[derive(Debug)]
pub struct S04OrphanMeta;

static META: RecipeMeta = RecipeMeta {
    name: "s04-orphan-meta",
    invariant: "S-04",
    signal: "meta_without_member",
    severity: Severity::Major,
    breaks: "finish: ZREM runs but the metadata hash is never DELeted (hash without member)",
    revert: "DEL of the metadata hash",
    cofiring: "none (the collector re-reads a stray hash after 1 s before reporting it, \
               so the detecting cycle takes that much longer)",
    ..RecipeMeta::BASE
};

impl Recipe for S04OrphanMeta {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(site, &id, now - 30_000, true, SITE_EXEC_TIMEOUT, None)
                .await?;
            bench.terminal(&id, "success", Some(now), Shape::IsoZ)?;
            let slots = bench.platform.slots_key(site);
            redis::cmd("ZREM")
                .arg(&slots)
                .arg(&id)
                .query_async::<()>(bench.platform.redis())
                .await?;
            Ok(Injected {
                what: format!("{site}: execution {id} released without DEL of its metadata hash"),
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
                let meta = bench.platform.meta_key(site, id);
                redis::cmd("DEL")
                    .arg(meta)
                    .query_async::<()>(bench.platform.redis())
                    .await?;
            }
            Ok(format!("{site}: orphan metadata hash deleted"))
        })
    }
}
