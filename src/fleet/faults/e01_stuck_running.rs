//! `e01-stuck-running` → E-01 (terminal-state closure). Breaks the *timeout sweep*: a running
//! execution whose worker keeps renewing its slot (re-score, re-EXPIRE) is never closed, 7 min
//! after its start on an agent with a 60 s timeout; only the row is stuck. The revert is the
//! sweep's missing pass: the row closed as failed with `completed_at`, the slot released.

use canary_invariants::Severity;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::platform::SLOT_TTL_BUFFER_SECONDS;

/// A running row past its agent's timeout.
#[derive(Debug)]
pub struct E01StuckRunning;

static META: RecipeMeta = RecipeMeta {
    name: "e01-stuck-running",
    invariant: "E-01",
    signal: "not_closed",
    severity: Severity::Critical,
    breaks: "timeout sweep: a running execution (its slot renewed by its worker) is never \
             closed, 7 min after start on an agent with a 60 s timeout",
    revert: "the timeout sweep closes it (failed, completed_at) and releases the slot",
    cofiring: "none (the slot is renewed, so S-01 and S-03 hold)",
    site_timeout: 60,
    ..RecipeMeta::BASE
};

impl Recipe for E01StuckRunning {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let timeout = META.site_timeout;
            let id = bench.next_id(site);
            let started = now - (timeout + SLOT_TTL_BUFFER_SECONDS + 60) * 1000;
            bench.row_running(site, &id, started, true)?;
            // The worker renews its slot (re-score, re-EXPIRE): only the row is stuck.
            bench.acquire(site, &id, now, timeout, None).await?;
            Ok(Injected {
                what: format!(
                    "{site}: execution {id} running for {} s (timeout {timeout} s), never closed",
                    (now - started) / 1000,
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
                bench.finish(site, id, "failed").await?;
            }
            Ok(format!("{site}: executions closed, slots released"))
        })
    }
}
