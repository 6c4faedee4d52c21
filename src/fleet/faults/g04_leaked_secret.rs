//! `g04-leaked-secret` → G-04 (no credentials in backlog metadata). Breaks the *enqueue* step:
//! the request's `backlog_metadata` carries a GitHub token (an obviously fake `ghp_…`). The
//! revert scrubs the metadata and cancels the row.

use canary_invariants::Severity;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A queued row carrying a credential.
#[derive(Debug)]
pub struct G04LeakedSecret;

static META: RecipeMeta = RecipeMeta {
    name: "g04-leaked-secret",
    invariant: "G-04",
    signal: "credential_in_metadata",
    severity: Severity::Critical,
    breaks: "enqueue: backlog_metadata carries a GitHub token (a fake ghp_…)",
    revert: "the metadata is scrubbed and the row cancelled",
    ..RecipeMeta::BASE
};

/// A token with GitHub's personal-token shape, obviously fake, assembled at run time so the
/// source never contains one for secret scanners to flag.
fn fake_github_token() -> String {
    format!("{}_{}", "ghp", "CANARYFAKE00000000000000000000000000")
}

impl Recipe for G04LeakedSecret {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            let metadata = serde_json::json!({
                "schedule_id": format!("sched-{site}"),
                "env": { "GITHUB_TOKEN": fake_github_token() },
            })
            .to_string();
            bench.row_queued(site, &id, now, &metadata)?;
            Ok(Injected {
                what: format!("{site}: queued row {id} carries a GitHub token in backlog_metadata"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_token_has_the_github_shape() {
        let t = fake_github_token();
        assert!(t.starts_with("ghp_") && t.len() == 40, "{t}");
    }
}
