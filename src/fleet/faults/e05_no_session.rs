//! `e05-no-session` → E-05 (dispatched rows have a session). Breaks the *claim* step: the row
//! goes running (90 s ago, past E-05's 60 s bound) without a `claude_session_id`. The revert
//! writes the session id, then finishes the execution normally.

use crate::fleet::platform_db::params;

use canary_invariants::Severity;

use super::bench::SITE_EXEC_TIMEOUT;
use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;

/// A running row without a session.
#[derive(Debug)]
pub struct E05NoSession;

static META: RecipeMeta = RecipeMeta {
    name: "e05-no-session",
    invariant: "E-05",
    signal: "no_session",
    severity: Severity::Major,
    breaks: "claim: the row goes running (90 s ago) without a claude_session_id",
    revert: "the session id is written, then the execution finishes normally",
    ..RecipeMeta::BASE
};

impl Recipe for E05NoSession {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = bench.next_id(site);
            bench
                .start(site, &id, now - 90_000, false, SITE_EXEC_TIMEOUT, None)
                .await?;
            Ok(Injected {
                what: format!("{site}: execution {id} running for 90 s without a session"),
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
                bench.platform.db().execute(
                    "UPDATE schedule_executions SET claude_session_id = ?2 WHERE id = ?1",
                    params![id, format!("session-{id}")],
                )?;
                bench.finish(site, id, "success").await?;
            }
            Ok(format!("{site}: session written, execution finished"))
        })
    }
}
