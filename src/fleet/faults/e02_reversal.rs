//! `e02-reversal` → E-02 (no phantom reversal). Breaks *terminal finality*: a stale writer sets a
//! finished execution, already seen terminal by canary, back to `pending_retry` (which holds no
//! slot and is not queued, so nothing else reacts). Provisioning writes that finished row before
//! the first cycle, so a cycle has remembered it. The revert restores the status to `success`.

use canary_invariants::Severity;
use crate::fleet::platform_db::params;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::platform::FleetError;
use crate::fleet::sim::{Shape, stamp};

/// A finished row overwritten back to non-terminal.
#[derive(Debug)]
pub struct E02Reversal;

static META: RecipeMeta = RecipeMeta {
    name: "e02-reversal",
    invariant: "E-02",
    signal: "reversal",
    severity: Severity::Critical,
    breaks: "a stale writer sets a finished execution (seen terminal by canary) back to \
             pending_retry",
    revert: "the status is restored to success",
    cofiring: "none (pending_retry holds no slot and is not queued). Needs one cycle to have \
               seen the row terminal: sites are provisioned before the first cycle",
    ..RecipeMeta::BASE
};

/// The site's finished row.
fn done_id(site: &str) -> String {
    format!("{site}-done")
}

impl Recipe for E02Reversal {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn provision(&self, bench: &Bench, site: &str, _fresh: bool) -> Result<(), FleetError> {
        let now = now_ms();
        bench.platform.db().execute(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, \
             status, queued_at, started_at, completed_at, duration_ms, \
             claude_session_id, backlog_metadata) VALUES (?1, NULL, ?2, 'success', \
             ?3, ?3, ?4, 60000, 'session-e02', '{}') \
             ON CONFLICT (id) DO UPDATE SET schedule_id = excluded.schedule_id, \
             agent_name = excluded.agent_name, status = excluded.status, \
             queued_at = excluded.queued_at, started_at = excluded.started_at, \
             completed_at = excluded.completed_at, duration_ms = excluded.duration_ms, \
             claude_session_id = excluded.claude_session_id, \
             backlog_metadata = excluded.backlog_metadata",
            params![
                done_id(site),
                site,
                stamp(now - 60_000, Shape::IsoZ),
                stamp(now, Shape::SqliteDatetime)
            ],
        )?;
        Ok(())
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let id = done_id(site);
            let changed = bench.platform.db().execute(
                "UPDATE schedule_executions SET status = 'pending_retry' WHERE id = ?1 \
                 AND status = 'success'",
                params![id],
            )?;
            if changed != 1 {
                return Err(FleetError::Setup(format!(
                    "{id} is not a finished row (provision the fault sites first)"
                )));
            }
            Ok(Injected {
                what: format!("{site}: finished execution {id} overwritten to pending_retry"),
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
                bench.platform.set_status(id, "success")?;
            }
            Ok(format!("{site}: status restored to success"))
        })
    }
}
