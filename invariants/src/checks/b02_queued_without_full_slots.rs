//! **B-02 No queued without full slots** — tier B (≤ 60 s), critical; needs Redis and SQLite.
//!
//! Rule: an agent with queued rows is at its cap (slot count, sentinels excluded, ≥
//! `max_parallel_tasks`), or the platform's drain heartbeat is younger than
//! `heartbeat_max_age_seconds` (60): the drain sweep is alive and will dispatch them. With no
//! heartbeat ever written, only the slot arm is judged. Queued rows younger than
//! `grace_seconds` (60) do not count: dispatch is allowed that long to claim a free slot (the
//! tier-B bound); rows with an unknown `queued_at` count. Agents absent from the roster are L-03's.
//!
//! Pull arm (agents in `platform.pull.pilot_agents`, judged only when Docker was read; the push
//! arm skips them): their pull workers claim queued rows themselves, so slots and the drain
//! heartbeat say nothing. A pilot whose oldest queued row (by `queued_at`; unknown ones skipped)
//! is older than `pull_max_queued_age_seconds` (120; 120 s exactly holds) fires when its container
//! is not running (**major** `pilot_stopped`: B-08 says why), or runs with idle workers or
//! without pull mode (**critical** `queued_not_claimed`); all workers busy is backpressure. Idle
//! workers = `TRINITY_MAX_PARALLEL_TASKS` in pull mode (else 0) − its `running` rows with a
//! legible lease in the future. A pilot whose container could not be inspected is not judged.
//!
//! Guards: a queue that never drains: capacity is free but the drain sweep died or skips the
//! agent, so queued work waits until it expires.

use std::collections::BTreeMap;

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::checks::b08_pull_workers_alive::workers;
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
        /// A drain heartbeat younger than this means the sweep is alive: no push agent is judged.
        heartbeat_max_age_seconds: i64 = 60,
        /// Pull arm: a pilot's oldest queued row older than this with idle workers fires.
        pull_max_queued_age_seconds: i64 = 120,
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
                 younger than {}; a pull-mode pilot's queued rows are claimed within {} while it \
                 has idle workers.", human_seconds(params.b02.grace_seconds), human_seconds(params.b02.heartbeat_max_age_seconds), human_seconds(params.b02.pull_max_queued_age_seconds))
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
        ),
        v(
            id,
            Critical,
            "agent-pilot-2",
            "queued_not_claimed",
            "pilot agent-pilot-2 has 4 queued row(s), the oldest 540 s old, and 3 of its 3 pull worker(s) are idle",
            json!({"agent": "agent-pilot-2", "mode": "pull", "queued_rows": 4, "oldest_queued_age_ms": 9 * MINUTE, "container_running": true, "pull_mode": true, "pool": 3, "busy": 0, "idle": 3}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("grace_seconds", params.b02.grace_seconds, 0);
        problems.seconds_at_least("heartbeat_max_age_seconds", params.b02.heartbeat_max_age_seconds, 1);
        problems.seconds_at_least("pull_max_queued_age_seconds", params.b02.pull_max_queued_age_seconds, 0);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let mut out = pull_arm(input);
        out.extend(push_arm(input));
        out
    }

    fn unreadable(&self, input: &Input<'_>) -> Option<String> {
        let pilots = &input.snapshot.pilot_agents;
        if pilots.is_empty() {
            return None;
        }
        if input.snapshot.docker.is_none() {
            return Some(format!(
                "pull arm not judged: source docker not read ({} pilot(s))",
                pilots.len()
            ));
        }
        let sick: Vec<&str> = pilots
            .iter()
            .filter(|a| workers(input, a).container.is_some_and(|c| !c.inspected))
            .map(String::as_str)
            .collect();
        (!sick.is_empty()).then(|| format!("pilot container(s) not inspected: {}", sick.join(", ")))
    }
}

/// The pull arm (see the module docs): one violation per pilot whose old queue is not being
/// claimed.
fn pull_arm(input: &Input<'_>) -> Vec<Violation> {
    let pilots = &input.snapshot.pilot_agents;
    if pilots.is_empty() || input.snapshot.docker.is_none() {
        return Vec::new();
    }
    let now = input.now_ms();
    let max_age_ms = input.params.b02.pull_max_queued_age_seconds.saturating_mul(1000);
    let mut out = Vec::new();
    for agent in pilots {
        let mut rows = 0usize;
        let mut oldest_age_ms: Option<i64> = None;
        for row in input
            .sql
            .executions
            .iter()
            .filter(|r| r.phase == Phase::Queued && r.agent_name == *agent)
        {
            rows = rows.saturating_add(1);
            let age = row.queued_at_ms.map(|at| now.saturating_sub(at));
            oldest_age_ms = oldest_age_ms.max(age);
        }
        let Some(oldest) = oldest_age_ms.filter(|age| *age > max_age_ms) else {
            continue;
        };
        let w = workers(input, agent);
        let running = w.container.is_some();
        let pull_mode = w.container.is_some_and(|c| c.pull_mode());
        let (signal, severity, why) = match w.container {
            None => ("pilot_stopped", Severity::Major, "its container is not running".to_owned()),
            Some(c) if !c.inspected => continue,
            Some(c) if !c.pull_mode() => (
                "queued_not_claimed",
                Severity::Critical,
                "its container is not in pull mode".to_owned(),
            ),
            Some(_) if w.idle > 0 => (
                "queued_not_claimed",
                Severity::Critical,
                format!("{} of its {} pull worker(s) are idle", w.idle, w.pool),
            ),
            Some(_) => continue,
        };
        let mut v = input.violation(
            &META,
            agent.clone(),
            signal,
            format!(
                "pilot {agent} has {rows} queued row(s), the oldest {} s old, and {why}",
                oldest / 1000
            ),
            json!({
                "agent": agent,
                "mode": "pull",
                "queued_rows": rows,
                "oldest_queued_age_ms": oldest,
                "container_running": running,
                "pull_mode": pull_mode,
                "pool": w.pool,
                "busy": w.busy,
                "idle": w.idle,
            }),
        );
        v.severity = input.params.severity_override(META.id).unwrap_or(severity);
        out.push(v);
    }
    out
}

/// The push arm: agents that are not pilots.
fn push_arm(input: &Input<'_>) -> Vec<Violation> {
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
                || !caps.contains(row.agent_name.as_str())
                || input.snapshot.is_pilot(&row.agent_name)
            {
                continue;
            }
            let q = queues.entry(row.agent_name.as_str()).or_default();
            q.rows = q.rows.saturating_add(1);
            q.oldest_age_ms = q.oldest_age_ms.max(age_ms);
        }
        if queues.is_empty() {
            return Vec::new();
        }
        // Held slots of the queued agents only; a set listed twice counts as its last listing.
        let mut slots: BTreeMap<&str, usize> = BTreeMap::new();
        for set in &input.redis.slot_sets {
            if queues.contains_key(set.agent_name.as_str()) {
                slots.insert(
                    set.agent_name.as_str(),
                    set.members.iter().filter(|m| !m.sentinel).count(),
                );
            }
        }
        queues
            .into_iter()
            .filter_map(|(agent, queue)| {
                let stored_cap = caps.get(agent)?;
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

    /// A pilot `p` with one queued row `age_ms` old, its container in pull mode with 2 workers.
    fn pilot(age_ms: i64) -> SnapshotBuilder {
        SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .container("p", T0 - 3_600_000, &[])
            .container_env("p", "TRINITY_PULL_MODE", "1")
            .container_env("p", "TRINITY_MAX_PARALLEL_TASKS", "2")
            .queued("q1", "p", T0 - age_ms)
    }

    fn signals(snap: &crate::Snapshot) -> Vec<(String, crate::Severity)> {
        run("B-02", snap)
            .into_iter()
            .map(|v| (v.signal, v.severity))
            .collect()
    }

    #[test]
    fn pull_arm_fires_critical_past_120_s_with_idle_workers() {
        use crate::Severity::Critical;
        assert!(signals(&pilot(120_000).build()).is_empty(), "120 s holds");
        assert_eq!(
            signals(&pilot(120_001).build()),
            [("queued_not_claimed".to_owned(), Critical)]
        );
        let v = run("B-02", &pilot(600_000).build());
        assert_eq!(v[0].observed_state["mode"], "pull");
        assert_eq!(v[0].observed_state["idle"], 2);
        // Unknown queued_at is skipped: no age, nothing judged.
        let mut b = pilot(600_000);
        b.last_execution().queued_at_ms = None;
        assert!(signals(&b.build()).is_empty());
    }

    #[test]
    fn pull_arm_all_workers_busy_is_backpressure() {
        let busy = pilot(600_000)
            .leased_running("r1", "p", T0 - 60_000)
            .leased_running("r2", "p", T0 - 60_000);
        assert!(signals(&busy.build()).is_empty());
    }

    #[test]
    fn pull_arm_stopped_pilot_is_major_and_push_container_critical() {
        use crate::Severity::{Critical, Major};
        let stopped = SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .queued("q1", "p", T0 - 600_000);
        assert_eq!(
            signals(&stopped.build()),
            [("pilot_stopped".to_owned(), Major)]
        );
        let young = SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .queued("q1", "p", T0 - 60_000);
        assert!(signals(&young.build()).is_empty(), "a young queue is fine");
        let push_mode = pilot(600_000).container_env("p", "TRINITY_PULL_MODE", "false");
        assert_eq!(
            signals(&push_mode.build()),
            [("queued_not_claimed".to_owned(), Critical)]
        );
    }

    #[test]
    fn pilots_leave_the_push_arm_and_non_pilots_keep_it() {
        // A pilot with free "slots", no heartbeat and a young-enough queue for the pull arm:
        // the push arm would fire, it must not.
        let young = SnapshotBuilder::new()
            .agent_with("p", 3, 900)
            .pilot("p")
            .container("p", T0, &[])
            .container_env("p", "TRINITY_PULL_MODE", "1")
            .queued("q1", "p", T0 - 90_000);
        assert!(run("B-02", &young.build()).is_empty());
        // A fresh heartbeat excuses push agents, never pilots.
        let mut s = pilot(600_000).build();
        if let Some(redis) = s.redis.as_mut() {
            redis.drain_tick_at_ms = Some(T0);
        }
        assert_eq!(run("B-02", &s).len(), 1);
        // Non-pilots beside a pilot are judged as before.
        let both = queued_agent(3, 1, 600_000).build();
        let v = run("B-02", &both);
        assert_eq!(v[0].signal, "queued_with_free_slots");
    }

    #[test]
    fn pull_arm_needs_docker_and_an_inspected_container() {
        use crate::evaluate::{Selection, evaluate};
        use crate::{Memory, Outcome, Params};
        let only = ["B-02".to_owned()];
        let outcome = |s: &crate::Snapshot| {
            evaluate(s, &Memory::default(), &Params::default(), Selection::Only(&only))
                .outcomes
                .get("B-02")
                .copied()
        };
        let blind = pilot(600_000).unavailable(crate::Source::Docker).build();
        assert!(run("B-02", &blind).is_empty());
        assert_eq!(outcome(&blind), Some(Outcome::Unknown));
        let mut s = pilot(600_000).build();
        if let Some(d) = s.docker.as_mut() {
            d.containers[0].inspected = false;
        }
        assert!(run("B-02", &s).is_empty());
        assert_eq!(outcome(&s), Some(Outcome::Unknown));
        // Without pilots, Docker is irrelevant to B-02.
        let push = queued_agent(3, 3, 600_000)
            .unavailable(crate::Source::Docker)
            .build();
        assert_eq!(outcome(&push), Some(Outcome::Green));
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
