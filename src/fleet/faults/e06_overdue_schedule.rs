//! `e06-overdue-schedule` → E-06 (no overdue next run). Breaks the *scheduler*: an enabled
//! schedule is skipped, its `next_run_at` 2 h in the past. Provisioning gives the site that
//! schedule, due in an hour. The revert is the scheduler's missing fire: `last_run_at` = now,
//! `next_run_at` advanced an hour.

use canary_invariants::Severity;
use crate::fleet::platform_db::params;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::clock::now_ms;
use crate::fleet::platform::FleetError;
use crate::fleet::sim::{Shape, stamp};

/// A skipped schedule.
#[derive(Debug)]
pub struct E06OverdueSchedule;

static META: RecipeMeta = RecipeMeta {
    name: "e06-overdue-schedule",
    invariant: "E-06",
    signal: "overdue",
    severity: Severity::Major,
    breaks: "scheduler: an enabled schedule is skipped, next_run_at 2 h in the past",
    revert: "the scheduler fires it: last_run_at = now, next_run_at advanced",
    ..RecipeMeta::BASE
};

/// The site's schedule.
fn schedule_id(site: &str) -> String {
    format!("sched-{site}")
}

/// Writes the site's enabled schedule with `next_run_at`.
fn put_schedule(bench: &Bench, site: &str, next_run_at: &str) -> Result<(), FleetError> {
    bench.platform.db().execute(
        "INSERT INTO agent_schedules (id, agent_name, name, enabled, next_run_at) \
         VALUES (?1, ?2, 'hourly report', ?4, ?3) \
         ON CONFLICT (id) DO UPDATE SET agent_name = excluded.agent_name, \
         name = excluded.name, enabled = excluded.enabled, next_run_at = excluded.next_run_at",
        params![schedule_id(site), site, next_run_at, true],
    )?;
    Ok(())
}

impl Recipe for E06OverdueSchedule {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn provision(&self, bench: &Bench, site: &str, _fresh: bool) -> Result<(), FleetError> {
        put_schedule(bench, site, &stamp(now_ms() + 3_600_000, Shape::IsoZ))
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            let now = now_ms();
            let id = schedule_id(site);
            put_schedule(bench, site, &stamp(now - 7_200_000, Shape::SqliteDatetime))?;
            Ok(Injected {
                what: format!("{site}: schedule {id} skipped, next_run_at 2 h ago"),
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
            let now = now_ms();
            for id in ids {
                bench.platform.db().execute(
                    "UPDATE agent_schedules SET last_run_at = ?2, next_run_at = ?3 \
                     WHERE id = ?1",
                    params![
                        id,
                        stamp(now, Shape::IsoZ),
                        stamp(now + 3_600_000, Shape::IsoOffset(120))
                    ],
                )?;
            }
            Ok(format!("{site}: schedule fired, next_run_at advanced"))
        })
    }
}
