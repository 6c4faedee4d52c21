//! **E-06 No overdue next run** — tier B (≤ 1 h), major; needs SQLite (with the
//! `agent_schedules` table).
//!
//! Rule: an enabled, non-deleted schedule of a live agent (in the roster, not soft-deleted) has
//! a `next_run_at` no more than `max_overdue_seconds` (3600) in the past. One violation per
//! schedule.
//!
//! Not judged: schedules of agents absent from the roster (L-03's business) or soft-deleted;
//! an unparseable `next_run_at` (an anomaly, the row is skipped); and a NULL `next_run_at`: the
//! platform leaves it NULL for schedules it has not planned yet (a one-off that already ran, a
//! schedule created with a cron the planner rejected), and calling that "overdue" would be a
//! guess. A missing `agent_schedules` table (or one lacking `id`, `agent_name`, `enabled` or
//! `next_run_at`) makes the outcome unknown, never green; a missing `deleted_at` column means no
//! schedule is soft-deleted.
//!
//! Guards: a scheduler that stopped ticking (or skips some agents), so enabled schedules silently
//! never run.

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::lookup::{self, LookupMap};
use crate::snapshot::{Field, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-06.
#[derive(Debug)]
pub struct E06;

static META: InvariantMeta = InvariantMeta {
    id: "E-06",
    name: "No overdue next run",
    tier: Tier::B,
    severity: Severity::Major,
    needs: &[Need::Source(Source::Sqlite), Need::Field(Field::Schedules)],
    guards: "A scheduler that stopped ticking or skips some agents: enabled schedules that \
             silently never run.",
    runbook: "Check that the platform's scheduler process is running and sees this agent; a \
              next_run_at that stays in the past means no tick has claimed the schedule.",
};

invariant_params! {
    /// E-06 parameters.
    pub struct E06Params {
        /// An enabled schedule's `next_run_at` may lie this far in the past (the scheduler's slack).
        max_overdue_seconds: i64 = 3600,
    }
}

impl Invariant for E06 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("An enabled, non-deleted schedule of a live agent has a next_run_at no more than {} in \
                 the past.", human_seconds(params.e06.max_overdue_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Major;
        const MINUTE: i64 = 60_000;
        const HOUR: i64 = 60 * 60_000;
        let id = META.id;
        vec![v(
            id,
            Major,
            "sched-agent-0015-2",
            "overdue",
            "schedule sched-agent-0015-2 of agent agent-0015 is 95 min overdue",
            json!({"schedule_id": "sched-agent-0015-2", "agent": "agent-0015", "next_run_at_ms": t0 - 95 * MINUTE, "overdue_ms": 95 * MINUTE, "max_overdue_ms": HOUR}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("max_overdue_seconds", params.e06.max_overdue_seconds, 0);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let max_overdue_ms = input.params.e06.max_overdue_seconds.saturating_mul(1000);
        // A name listed twice (untrusted snapshot) is live only if every row says so, whatever
        // the row order.
        if input.sql.schedules.is_empty() {
            return Vec::new();
        }
        let mut live: LookupMap<&str, bool> = lookup::map(input.sql.agents.len());
        for agent in &input.sql.agents {
            live.entry(agent.name.as_str())
                .and_modify(|l| *l = *l && !agent.deleted)
                .or_insert(!agent.deleted);
        }
        input
            .sql
            .schedules
            .iter()
            .filter(|s| s.enabled && !s.deleted)
            .filter(|s| live.get(s.agent_name.as_str()).copied().unwrap_or(false))
            .filter_map(|s| {
                let next_run_at = s.next_run_at_ms?;
                let overdue_ms = now.saturating_sub(next_run_at);
                (overdue_ms > max_overdue_ms).then(|| {
                    input.violation(
                        &META,
                        s.id.as_str(),
                        "overdue",
                        format!(
                            "schedule {} of agent {} is {} min overdue",
                            s.id,
                            s.agent_name,
                            overdue_ms / 60_000
                        ),
                        json!({
                            "schedule_id": s.id,
                            "agent": s.agent_name,
                            "next_run_at_ms": next_run_at,
                            "overdue_ms": overdue_ms,
                            "max_overdue_ms": max_overdue_ms,
                        }),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::Field;
    use crate::testing::{SnapshotBuilder, T0, run};

    const MAX: i64 = 3_600_000;

    #[test]
    fn future_and_recently_due_schedules_hold() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .schedule("s1", "a", Some(T0 + 60_000))
            .schedule("s2", "a", Some(T0 - MAX))
            .build();
        assert!(run("E-06", &snap).is_empty());
    }

    #[test]
    fn fires_past_the_bound() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .schedule("s1", "a", Some(T0 - MAX - 1))
            .build();
        let v = run("E-06", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "s1");
        assert_eq!(v[0].signal, "overdue");
        assert_eq!(v[0].observed_state["agent"], "a");
    }

    #[test]
    fn disabled_deleted_and_null_schedules_are_not_judged() {
        let old = Some(T0 - 10 * MAX);
        let mut b = SnapshotBuilder::new().agent("a").schedule("s1", "a", old);
        b.last_schedule().enabled = false;
        let mut b = b.schedule("s2", "a", old);
        b.last_schedule().deleted = true;
        let snap = b.schedule("s3", "a", None).build();
        assert!(run("E-06", &snap).is_empty());
    }

    #[test]
    fn only_live_agents_count() {
        let old = Some(T0 - 10 * MAX);
        let snap = SnapshotBuilder::new()
            .deleted_agent("gone")
            .schedule("s1", "gone", old)
            .schedule("s2", "absent", old)
            .build();
        assert!(run("E-06", &snap).is_empty());
    }

    #[test]
    fn a_name_listed_twice_is_live_only_if_both_rows_say_so() {
        let old = Some(T0 - 10 * MAX);
        let snap = SnapshotBuilder::new()
            .agent("a")
            .deleted_agent("a")
            .schedule("s1", "a", old)
            .build();
        assert!(run("E-06", &snap).is_empty());
    }

    #[test]
    fn unknown_without_the_schedules_table() {
        let snap = SnapshotBuilder::new()
            .missing_field(Field::Schedules)
            .build();
        let only = ["E-06".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Default::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["E-06"], crate::Outcome::Unknown);
    }
}
