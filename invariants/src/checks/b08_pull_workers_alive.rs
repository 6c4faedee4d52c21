//! **B-08 Pull workers alive** — tier B, major; needs Docker, Redis and SQLite.
//!
//! Some agents (`platform.pull.pilot_agents`) are served by pull workers instead of slots: their
//! container runs with `TRINITY_PULL_MODE=1` (or `true`) and `TRINITY_MAX_PARALLEL_TASKS`
//! workers (default 3, clamped to 1–32), which claim queued rows themselves and stamp Redis
//! `agent:pull_poll:{agent}` (unix seconds) at every claim attempt.
//!
//! Rule, per pilot:
//! - `workers_missing`: its container is not running, or runs without pull mode (it must be
//!   recreated with the variable);
//! - `workers_silent`: it has idle workers (pool − busy > 0, busy = its `running` rows whose
//!   lease is legible and in the future) and `now − max(last claim attempt, container start)`
//!   is over `silent_seconds` (300; 300 s exactly holds). Not judged when the poll key could not
//!   be read (an anomaly says why) or neither time is known.
//!
//! A pilot whose container could not be inspected is not judged (its mode is unknown): the
//! outcome is *unknown* when nothing else fired. Kept apart from B-02's pull arm (which judges
//! the pilot's queue) so a long-broken pilot does not mask new push stalls: alerts fire only on
//! green → red.
//!
//! Guards: pull workers that died, hung or were never started while the pilot's queue grows.

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::snapshot::{Container, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// B-08.
#[derive(Debug)]
pub struct B08;

static META: InvariantMeta = InvariantMeta {
    id: "B-08",
    name: "Pull workers alive",
    tier: Tier::B,
    severity: Severity::Major,
    needs: &[
        Need::Source(Source::Docker),
        Need::Source(Source::Redis),
        Need::Source(Source::Sqlite),
    ],
    guards: "Pull workers that died, hung or were never started: a pilot agent's queue is \
             claimed by nobody.",
    runbook: "Check the pilot's container: is it running, with TRINITY_PULL_MODE=1? If not, \
              recreate it with the variable. If it runs, read its worker logs: the poll key \
              agent:pull_poll:{agent} shows the last claim attempt.",
};

invariant_params! {
    /// B-08 parameters.
    pub struct B08Params {
        /// Idle workers that made no claim attempt for longer than this are silent.
        silent_seconds: i64 = 300,
    }
}

/// A pilot's pull workers as the snapshot shows them (shared with B-02's pull arm).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workers<'a> {
    /// Its running container (the first by id should there be two).
    pub container: Option<&'a Container>,
    /// Workers: `TRINITY_MAX_PARALLEL_TASKS` in pull mode, else 0.
    pub pool: i64,
    /// Its `running` rows with a legible lease in the future.
    pub busy: i64,
    /// `pool − busy`, at least 0.
    pub idle: i64,
}

/// The pull workers of `agent` in this snapshot.
pub(crate) fn workers<'a>(input: &Input<'a>, agent: &str) -> Workers<'a> {
    let now = input.now_ms();
    let container = input
        .docker
        .containers
        .iter()
        .filter(|c| c.agent == agent)
        .min_by(|a, b| a.id.cmp(&b.id));
    let pool = container
        .filter(|c| c.pull_mode())
        .map_or(0, Container::max_parallel_tasks);
    let busy = input
        .sql
        .executions
        .iter()
        .filter(|r| r.agent_name == agent && r.phase == Phase::Running)
        .filter(|r| r.legible_lease().is_some_and(|at| at > now))
        .count();
    let busy = i64::try_from(busy).unwrap_or(i64::MAX);
    Workers {
        container,
        pool,
        busy,
        idle: pool.saturating_sub(busy).max(0),
    }
}

impl Invariant for B08 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!(
            "Every pull-mode pilot's container runs with TRINITY_PULL_MODE set, and its idle \
             workers made a claim attempt within the last {}.",
            human_seconds(params.b08.silent_seconds)
        )
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use crate::violation::Severity::Major;
        let id = META.id;
        vec![
            v(
                id,
                Major,
                "agent-pilot-1",
                "workers_missing",
                "pilot agent-pilot-1 has no pull workers: its container is not in pull mode",
                json!({"agent": "agent-pilot-1", "container_running": true, "pull_mode": false}),
            ),
            v(
                id,
                Major,
                "agent-pilot-2",
                "workers_silent",
                "pilot agent-pilot-2: 3 idle pull worker(s) made no claim attempt for 840 s",
                json!({"agent": "agent-pilot-2", "pool": 3, "busy": 0, "idle": 3,
                       "last_poll_ms": t0 - 840_000, "silent_seconds": 840,
                       "threshold_seconds": 300}),
            ),
        ]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("silent_seconds", params.b08.silent_seconds, 1);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let threshold_ms = input.params.b08.silent_seconds.saturating_mul(1000);
        let mut out = Vec::new();
        for agent in &input.snapshot.pilot_agents {
            let w = workers(input, agent);
            let Some(container) = w.container else {
                out.push(input.violation(
                    &META,
                    agent.clone(),
                    "workers_missing",
                    format!("pilot {agent} has no pull workers: its container is not running"),
                    json!({"agent": agent, "container_running": false, "pull_mode": false}),
                ));
                continue;
            };
            if !container.inspected {
                continue;
            }
            if !container.pull_mode() {
                out.push(input.violation(
                    &META,
                    agent.clone(),
                    "workers_missing",
                    format!(
                        "pilot {agent} has no pull workers: its container is not in pull mode"
                    ),
                    json!({"agent": agent, "container_running": true, "pull_mode": false}),
                ));
                continue;
            }
            if w.idle == 0 {
                continue;
            }
            // An unreadable poll key is not a silent one (the anomaly says why).
            let Some(poll) = input.redis.pull_polls.get(agent.as_str()) else {
                continue;
            };
            // A worker pool younger than the threshold has not had time to poll yet.
            let Some(last) = (*poll).max(container.started_at_ms) else {
                continue;
            };
            let silent_ms = now.saturating_sub(last);
            if silent_ms <= threshold_ms {
                continue;
            }
            out.push(input.violation(
                &META,
                agent.clone(),
                "workers_silent",
                format!(
                    "pilot {agent}: {} idle pull worker(s) made no claim attempt for {} s",
                    w.idle,
                    silent_ms / 1000
                ),
                json!({"agent": agent, "pool": w.pool, "busy": w.busy, "idle": w.idle,
                       "last_poll_ms": poll, "silent_seconds": silent_ms / 1000,
                       "threshold_seconds": input.params.b08.silent_seconds}),
            ));
        }
        out
    }

    fn unreadable(&self, input: &Input<'_>) -> Option<String> {
        let sick: Vec<&str> = input
            .snapshot
            .pilot_agents
            .iter()
            .filter(|a| {
                workers(input, a)
                    .container
                    .is_some_and(|c| !c.inspected)
            })
            .map(String::as_str)
            .collect();
        (!sick.is_empty()).then(|| {
            format!(
                "{} pilot container(s) not inspected: {}",
                sick.len(),
                sick.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::{Selection, evaluate};
    use crate::memory::Memory;
    use crate::params::Params;
    use crate::snapshot::{Snapshot, Source};
    use crate::testing::{SnapshotBuilder, T0, run};
    use crate::violation::Outcome;

    const S: i64 = 1000;

    /// A pilot `p` whose container started an hour ago in pull mode with 2 workers.
    fn pilot() -> SnapshotBuilder {
        SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .container("p", T0 - 3_600 * S, &[])
            .container_env("p", "TRINITY_PULL_MODE", "1")
            .container_env("p", "TRINITY_MAX_PARALLEL_TASKS", "2")
    }

    fn signals(snap: &Snapshot) -> Vec<String> {
        run("B-08", snap).into_iter().map(|v| v.signal).collect()
    }

    #[test]
    fn a_polling_pilot_holds_and_non_pilots_are_not_judged() {
        assert!(signals(&pilot().pull_poll("p", Some(T0 - 10 * S)).build()).is_empty());
        // A non-pilot without a container or pull mode is none of B-08's business.
        let push = SnapshotBuilder::new().agent("x").container("x", T0, &[]);
        assert!(signals(&push.build()).is_empty());
    }

    #[test]
    fn workers_missing_when_the_container_is_stopped_or_not_in_pull_mode() {
        let stopped = SnapshotBuilder::new().agent("p").pilot("p").build();
        let v = run("B-08", &stopped);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "workers_missing");
        assert_eq!(v[0].severity, crate::Severity::Major);
        assert_eq!(v[0].observed_state["container_running"], false);
        let push = SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .container("p", T0, &[])
            .container_env("p", "TRINITY_PULL_MODE", "0")
            .pull_poll("p", Some(T0));
        let v = run("B-08", &push.build());
        assert_eq!(v[0].signal, "workers_missing");
        assert_eq!(v[0].observed_state["container_running"], true);
        for on in ["1", "true", " TRUE "] {
            let b = pilot()
                .container_env("p", "TRINITY_PULL_MODE", on)
                .pull_poll("p", Some(T0));
            assert!(signals(&b.build()).is_empty(), "{on:?} is pull mode");
        }
    }

    #[test]
    fn workers_silent_past_300_s_exactly_300_holds() {
        let at = |age_ms: i64| signals(&pilot().pull_poll("p", Some(T0 - age_ms)).build());
        assert!(at(300 * S).is_empty());
        assert_eq!(at(300 * S + 1), ["workers_silent"]);
        let v = run("B-08", &pilot().pull_poll("p", Some(T0 - 900 * S)).build());
        assert_eq!(v[0].observed_state["idle"], 2);
        assert_eq!(v[0].observed_state["silent_seconds"], 900);
    }

    #[test]
    fn busy_workers_are_not_silent() {
        let busy = pilot()
            .pull_poll("p", Some(T0 - 900 * S))
            .leased_running("r1", "p", T0 - 60 * S)
            .leased_running("r2", "p", T0 - 60 * S);
        assert!(signals(&busy.build()).is_empty(), "all workers busy");
        // An expired lease does not hold a worker.
        let mut one_expired = pilot()
            .pull_poll("p", Some(T0 - 900 * S))
            .leased_running("r1", "p", T0 - 60 * S)
            .leased_running("r2", "p", T0 - 600 * S);
        one_expired.last_execution().lease_expires_at_ms = Some(T0);
        let v = run("B-08", &one_expired.build());
        assert_eq!(v[0].observed_state["busy"], 1);
        assert_eq!(v[0].observed_state["idle"], 1);
    }

    #[test]
    fn the_pool_defaults_to_3_and_is_clamped() {
        let pool = |value: &str| {
            let b = pilot()
                .container_env("p", "TRINITY_MAX_PARALLEL_TASKS", value)
                .pull_poll("p", None);
            run("B-08", &b.build())[0].observed_state["pool"].clone()
        };
        assert_eq!(pool("many"), 3);
        assert_eq!(pool("0"), 1);
        assert_eq!(pool("99"), 32);
        assert_eq!(pool("5"), 5);
    }

    #[test]
    fn the_container_start_counts_when_the_key_was_never_written() {
        let young = SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .container("p", T0 - 100 * S, &[])
            .container_env("p", "TRINITY_PULL_MODE", "1")
            .pull_poll("p", None);
        assert!(signals(&young.build()).is_empty(), "started 100 s ago");
        assert_eq!(
            signals(&pilot().pull_poll("p", None).build()),
            ["workers_silent"],
            "never polled in an hour"
        );
        // A stale poll but a fresh restart: the newer of the two counts.
        let restarted = SnapshotBuilder::new()
            .agent("p")
            .pilot("p")
            .container("p", T0 - 10 * S, &[])
            .container_env("p", "TRINITY_PULL_MODE", "1")
            .pull_poll("p", Some(T0 - 3_600 * S));
        assert!(signals(&restarted.build()).is_empty());
    }

    #[test]
    fn an_unreadable_poll_key_or_container_is_not_judged() {
        // No entry: the key held garbage (an anomaly), not "silent".
        assert!(signals(&pilot().build()).is_empty());
        let mut s = pilot().build();
        if let Some(d) = s.docker.as_mut() {
            d.containers[0].inspected = false;
            d.containers[0].env.clear();
        }
        let only = ["B-08".to_owned()];
        let eval = evaluate(&s, &Memory::default(), &Params::default(), Selection::Only(&only));
        assert!(eval.violations.is_empty(), "mode unknown, not missing");
        assert_eq!(eval.outcomes.get("B-08"), Some(&Outcome::Unknown));
    }

    #[test]
    fn not_configured_without_docker() {
        let s = pilot().not_configured(Source::Docker).build();
        let only = ["B-08".to_owned()];
        let eval = evaluate(&s, &Memory::default(), &Params::default(), Selection::Only(&only));
        assert!(!eval.outcomes.contains_key("B-08"));
        assert_eq!(eval.not_configured["B-08"], "source docker not configured");
    }
}
