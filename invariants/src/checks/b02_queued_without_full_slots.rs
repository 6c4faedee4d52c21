//! **B-02 No queued without full slots** — tier B (≤ 60 s), critical; needs Redis and SQLite.
//!
//! Rule: an agent with queued rows is at its cap (slot count, sentinels excluded, ≥
//! `max_parallel_tasks`), or the platform's drain heartbeat is younger than
//! `heartbeat_max_age_seconds` (60): the drain sweep is alive and will dispatch them. With no
//! heartbeat ever written, only the slot arm is judged. Queued rows younger than
//! `grace_seconds` (60) do not count: dispatch is allowed that long to claim a free slot (the
//! tier-B bound); rows with an unknown `queued_at` count. Agents absent from the roster are L-03's.
//!
//! Guards: a queue that never drains: capacity is free but the drain sweep died or skips the
//! agent, so queued work waits until it expires.

use std::collections::BTreeMap;

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// B-02.
#[derive(Debug)]
pub struct B02;

static META: InvariantMeta = InvariantMeta {
    id: "B-02",
    name: "No queued without full slots",
    tier: Tier::B,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Redis), Need::Source(Source::Sqlite)],
    guards: "Queues that never drain: free capacity while the drain sweep is dead or skips the \
             agent.",
    runbook: "Check the platform's capacity-maintenance (drain) sweep: is it running, and does \
              it see this agent? The heartbeat key shows when it last completed.",
};

invariant_params! {
    /// B-02 parameters.
    pub struct B02Params {
        /// Queued rows younger than this do not count (dispatch may take that long to claim a slot).
        grace_seconds: i64 = 60,
        /// A drain heartbeat younger than this means the sweep is alive: nothing is judged.
        heartbeat_max_age_seconds: i64 = 60,
    }
}

#[derive(Default)]
struct Queue {
    rows: usize,
    oldest_age_ms: Option<i64>,
}

impl Invariant for B02 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("An agent with queued rows (older than {}) is at its cap, or the drain heartbeat is \
                 younger than {}.", human_seconds(params.b02.grace_seconds), human_seconds(params.b02.heartbeat_max_age_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        const MINUTE: i64 = 60_000;
        let id = META.id;
        vec![v(
            id,
            Critical,
            "agent-0003",
            "queued_with_free_slots",
            "agent agent-0003 has 7 queued row(s) but holds 1 of 3 slots and the drain sweep is late",
            json!({"agent": "agent-0003", "queued_rows": 7, "oldest_queued_age_ms": 14 * MINUTE, "slot_count": 1, "max_parallel_tasks": 3, "effective_cap": 3, "drain_tick_age_ms": 190_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("grace_seconds", params.b02.grace_seconds, 0);
        problems.seconds_at_least("heartbeat_max_age_seconds", params.b02.heartbeat_max_age_seconds, 1);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let p = &input.params.b02;
        let heartbeat_age_ms = input
            .redis
            .drain_tick_at_ms
            .map(|at| now.saturating_sub(at));
        if heartbeat_age_ms
            .is_some_and(|age| age < p.heartbeat_max_age_seconds.saturating_mul(1000))
        {
            return Vec::new();
        }
        let grace_ms = p.grace_seconds.saturating_mul(1000);
        let caps = input.sql.strictest_per_agent(|a| a.max_parallel_tasks);
        let mut queues: BTreeMap<&str, Queue> = BTreeMap::new();
        for row in input
            .sql
            .executions
            .iter()
            .filter(|r| r.phase == Phase::Queued)
        {
            let age_ms = row.queued_at_ms.map(|at| now.saturating_sub(at));
            if age_ms.is_some_and(|age| age < grace_ms)
                || !caps.contains_key(row.agent_name.as_str())
            {
                continue;
            }
            let q = queues.entry(row.agent_name.as_str()).or_default();
            q.rows = q.rows.saturating_add(1);
            q.oldest_age_ms = q.oldest_age_ms.max(age_ms);
        }
        let slots: BTreeMap<&str, usize> = input
            .redis
            .slot_sets
            .iter()
            .map(|set| {
                (
                    set.agent_name.as_str(),
                    set.members.iter().filter(|m| !m.sentinel).count(),
                )
            })
            .collect();
        queues
            .into_iter()
            .filter_map(|(agent, queue)| {
                let stored_cap = *caps.get(agent)?;
                // The platform's ceiling clamps every cap (#506): an agent at the ceiling with
                // queued rows is backpressure, not a stall. (S-02 keeps the stored cap.)
                let cap = input
                    .sql
                    .max_parallel_tasks_ceiling
                    .map_or(stored_cap, |ceiling| stored_cap.min(ceiling));
                let held = slots.get(agent).copied().unwrap_or(0);
                if i64::try_from(held).unwrap_or(i64::MAX) >= cap {
                    return None;
                }
                Some(input.violation(
                    &META,
                    agent,
                    "queued_with_free_slots",
                    format!(
                        "agent {agent} has {} queued row(s) but holds {held} of {cap} slots and the \
                         drain sweep is {}",
                        queue.rows,
                        if heartbeat_age_ms.is_some() { "late" } else { "not reporting" }
                    ),
                    json!({
                        "agent": agent,
                        "queued_rows": queue.rows,
                        "oldest_queued_age_ms": queue.oldest_age_ms,
                        "slot_count": held,
                        "max_parallel_tasks": stored_cap,
                        "effective_cap": cap,
                        "drain_tick_age_ms": heartbeat_age_ms,
                    }),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{SnapshotBuilder, T0, run};

    fn queued_agent(cap: i64, running: usize, queued_age_ms: i64) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new().agent_with("a", cap, 900);
        for i in 0..running {
            let id = format!("r{i}");
            b = b.running(&id, "a", T0 - 60_000).slot("a", &id, T0 - 60_000);
        }
        b.queued("q1", "a", T0 - queued_age_ms)
    }

    fn with_heartbeat(b: SnapshotBuilder, age_ms: i64) -> crate::Snapshot {
        let mut s = b.build();
        if let Some(redis) = s.redis.as_mut() {
            redis.drain_tick_at_ms = Some(T0 - age_ms);
        }
        s
    }

    /// The ceiling clamps the cap B-02 judges by (the reference's #506).
    #[test]
    fn the_concurrency_ceiling_clamps_the_cap() {
        let clamp = |ceiling: Option<i64>| {
            let mut s = queued_agent(20, 10, 600_000).build();
            if let Some(sql) = s.sql.as_mut() {
                sql.max_parallel_tasks_ceiling = ceiling;
            }
            run("B-02", &s)
        };
        assert!(clamp(Some(10)).is_empty(), "at the ceiling: backpressure");
        let v = clamp(Some(12));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].observed_state["max_parallel_tasks"], 20);
        assert_eq!(v[0].observed_state["effective_cap"], 12);
        assert_eq!(clamp(None).len(), 1, "no settings table: the stored cap");
    }

    #[test]
    fn holds_when_the_agent_is_at_its_cap() {
        assert!(run("B-02", &queued_agent(2, 2, 600_000).build()).is_empty());
    }

    #[test]
    fn fires_with_free_slots_and_no_heartbeat() {
        let v = run("B-02", &queued_agent(3, 1, 600_000).build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "a");
        assert_eq!(v[0].observed_state["slot_count"], 1);
        assert!(v[0].observed_state["drain_tick_age_ms"].is_null());
    }

    #[test]
    fn a_fresh_heartbeat_excuses_and_a_late_one_does_not() {
        assert!(run("B-02", &with_heartbeat(queued_agent(3, 1, 600_000), 59_999)).is_empty());
        assert_eq!(
            run("B-02", &with_heartbeat(queued_agent(3, 1, 600_000), 60_000)).len(),
            1
        );
    }

    #[test]
    fn young_queued_rows_get_the_dispatch_grace() {
        assert!(run("B-02", &queued_agent(3, 0, 59_999).build()).is_empty());
        let mut b = queued_agent(3, 0, 0);
        b.last_execution().queued_at_ms = None;
        assert_eq!(run("B-02", &b.build()).len(), 1, "unknown queued_at counts");
    }

    #[test]
    fn sentinels_do_not_fill_the_cap_and_absent_agents_are_left_to_l03() {
        let snap = queued_agent(1, 0, 600_000)
            .sentinel("a", "drain-1", T0)
            .build();
        assert_eq!(run("B-02", &snap).len(), 1);
        let ghost = SnapshotBuilder::new()
            .queued("q", "ghost", T0 - 600_000)
            .build();
        assert!(run("B-02", &ghost).is_empty());
    }
}
