//! **R-01 No persisting zombie agent processes** — tier A, critical; needs Docker and
//! cross-cycle memory.
//!
//! Rule: a process in state `Z` whose command is the agent process (`platform.docker.
//! process_name`, `claude`) inside a running agent container must not persist for
//! `dwell_seconds` (600) or longer. One violation per container, with its zombie pids and how
//! long each has been one.
//!
//! Dwell is memory ([`Memory::zombies`]) keyed by container id, the container's start time and
//! the pid:
//! - a container whose processes could not be read is left untouched (and the outcome is
//!   *unknown* when nothing else fired: a sick container is never "no zombies");
//! - zero zombies observed clears the container's dwell; a container no longer running is
//!   forgotten;
//! - a new start time (a restart: a new pid namespace, so a reused pid must not inherit an old
//!   dwell) starts it fresh;
//! - per current pid: unknown → first seen now; last seen more than `gap_seconds` ago → restarted
//!   (an observation gap proves nothing about the time between); otherwise the first-seen time is
//!   kept and only last seen moves. Never rewriting first seen while the pid persists is the
//!   point: the reference's version that did so never fired at all.
//!
//! A pid qualifies when `now − first seen ≥ dwell_seconds` (599 s silent, 600 s fires), so a
//! zombie reaped within the dwell (the normal case) never pages; a single sample never does
//! either.
//!
//! Guards: agent runtimes that leak unreaped children until the container's pid table is full.

use std::collections::BTreeMap;

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::memory::{Memory, PidDwell, ZombieDwell};
use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::snapshot::{Processes, Source};
use crate::violation::{Severity, Tier, Violation};

///
#[derive(Debug)]
pub struct R01;

static META: InvariantMeta = InvariantMeta {
    id: "R-01",
    name: "No persisting zombie agent processes",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Docker)],
    guards: "Agent runtimes that leave exited children unreaped until the container's pid \
             table fills and the agent can no longer start tools.",
    runbook: "docker exec the container and run `ps -eo stat,pid,ppid,comm`: the zombies' \
              parent is not reaping them. Restart the agent container once its running \
              executions are drained; report the parent process to the runtime's owners.",
};

invariant_params! {
    /// R-01 parameters.
    pub struct R01Params {
        /// A zombie persisting this long (or longer) fires.
        dwell_seconds: i64 = 600,
        /// An observation gap longer than this restarts a pid's dwell.
        gap_seconds: i64 = 600,
    }
}

/// The dwell memory after this snapshot: every container the snapshot read is updated (see the
/// module docs); unreadable ones keep their entry; containers no longer running are dropped.
fn advance(input: &Input<'_>) -> BTreeMap<String, ZombieDwell> {
    let now = input.now_ms();
    let gap_ms = input.params.r01.gap_seconds.saturating_mul(1000);
    let previous = &input.memory.zombies;
    let mut next = BTreeMap::new();
    for container in &input.docker.containers {
        let zombies = match &container.processes {
            Processes::Read { zombies } => zombies,
            Processes::Unreadable { .. } => {
                if let Some(kept) = previous.get(&container.id) {
                    next.insert(container.id.clone(), kept.clone());
                }
                continue;
            }
        };
        if zombies.is_empty() {
            continue;
        }
        let same_generation = previous
            .get(&container.id)
            .filter(|old| old.started_at_ms == container.started_at_ms);
        let mut pids = BTreeMap::new();
        for pid in zombies {
            let kept = same_generation
                .and_then(|old| old.pids.get(pid))
                .filter(|seen| now.saturating_sub(seen.last_seen_ms) <= gap_ms);
            let first_seen_ms = kept.map_or(now, |seen| seen.first_seen_ms);
            pids.insert(
                *pid,
                PidDwell {
                    first_seen_ms,
                    last_seen_ms: now,
                },
            );
        }
        let first_count = same_generation.map_or_else(
            || u32::try_from(zombies.len()).unwrap_or(u32::MAX),
            |old| old.first_count,
        );
        next.insert(
            container.id.clone(),
            ZombieDwell {
                agent: container.agent.clone(),
                started_at_ms: container.started_at_ms,
                first_count,
                pids,
            },
        );
    }
    next
}

impl Invariant for R01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!(
            "No agent process in state Z persists in a running agent container for {} or \
             longer (an observation gap over {} restarts the count).",
            human_seconds(params.r01.dwell_seconds),
            human_seconds(params.r01.gap_seconds)
        )
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![v(
            id,
            Critical,
            "agent-0042",
            "zombie_persisting",
            "agent-0042: 2 zombie process(es) for up to 900 s (pids 31, 57)",
            json!({"agent": "agent-0042", "container_id": "3f2a9c1d0b7e", "zombies": 2,
                   "first_count": 1, "pids": [31, 57], "oldest_pid": 31,
                   "first_seen_ms": t0 - 900_000, "held_for_seconds": 900, "dwell_seconds": 600}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        // Zero would page on the first sighting of a zombie the runtime is about to reap.
        problems.seconds_at_least("dwell_seconds", params.r01.dwell_seconds, 1);
        problems.seconds_at_least("gap_seconds", params.r01.gap_seconds, 1);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let dwell_ms = input.params.r01.dwell_seconds.saturating_mul(1000);
        let dwells = advance(input);
        let mut violations = Vec::new();
        for container in &input.docker.containers {
            if !matches!(container.processes, Processes::Read { .. }) {
                continue;
            }
            let Some(dwell) = dwells.get(&container.id) else {
                continue;
            };
            let Some((oldest_pid, oldest)) = dwell
                .pids
                .iter()
                .min_by_key(|(pid, seen)| (seen.first_seen_ms, **pid))
            else {
                continue;
            };
            let held_ms = now.saturating_sub(oldest.first_seen_ms);
            if held_ms < dwell_ms {
                continue;
            }
            let pids: Vec<u32> = dwell.pids.keys().copied().collect();
            let pid_list = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            violations.push(input.violation(
                &META,
                container.name.clone(),
                "zombie_persisting",
                format!(
                    "{}: {} zombie process(es) for up to {} s (pids {pid_list})",
                    container.name,
                    pids.len(),
                    held_ms / 1000
                ),
                json!({
                    "agent": container.agent,
                    "container_id": container.id.chars().take(12).collect::<String>(),
                    "zombies": pids.len(),
                    "first_count": dwell.first_count,
                    "pids": pids,
                    "oldest_pid": oldest_pid,
                    "first_seen_ms": oldest.first_seen_ms,
                    "held_for_seconds": held_ms / 1000,
                    "dwell_seconds": input.params.r01.dwell_seconds,
                }),
            ));
        }
        violations
    }

    fn unreadable(&self, input: &Input<'_>) -> Option<String> {
        let mut sick: Vec<&str> = input
            .docker
            .containers
            .iter()
            .filter(|c| matches!(c.processes, Processes::Unreadable { .. }))
            .map(|c| c.name.as_str())
            .collect();
        if sick.is_empty() {
            return None;
        }
        sick.sort_unstable();
        Some(format!(
            "{} container(s) unreadable: {}",
            sick.len(),
            sick.join(", ")
        ))
    }

    fn remember(&self, input: &Input<'_>, next: &mut Memory) {
        next.zombies = advance(input);
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::{Selection, evaluate};
    use crate::memory::Memory;
    use crate::params::Params;
    use crate::snapshot::{Snapshot, Source};
    use crate::testing::{SnapshotBuilder, T0};
    use crate::violation::{Outcome, Violation};

    const MIN: i64 = 60_000;

    fn step(snap: &Snapshot, memory: &Memory) -> (Outcome, Vec<Violation>, Memory) {
        let only = ["R-01".to_owned()];
        let eval = evaluate(snap, memory, &Params::default(), Selection::Only(&only));
        let outcome = eval
            .outcomes
            .get("R-01")
            .copied()
            .unwrap_or(Outcome::Unknown);
        (outcome, eval.violations, eval.memory)
    }

    fn zombies_at(at: i64, pids: &[u32]) -> Snapshot {
        SnapshotBuilder::new()
            .at(at)
            .container("a", T0 - 3_600_000, pids)
            .build()
    }

    /// Runs one snapshot per minute from `T0` to `T0 + minutes` with the same zombies.
    fn every_minute(minutes: i64, pids: &[u32]) -> (Outcome, Vec<Violation>, Memory) {
        let mut memory = Memory::default();
        let mut last = (Outcome::Unknown, Vec::new(), Memory::default());
        for m in 0..=minutes {
            last = step(&zombies_at(T0 + m * MIN, pids), &memory);
            memory = last.2.clone();
        }
        last
    }

    #[test]
    fn the_rule_shows_the_effective_thresholds() {
        use crate::catalog::Invariant;
        let mut params = Params::default();
        assert!(super::R01.rule(&params).contains("for 600 s or longer"));
        params.r01.dwell_seconds = 120;
        assert!(super::R01.rule(&params).contains("for 120 s or longer"));
    }

    #[test]
    fn a_single_sample_never_fires() {
        let (outcome, violations, memory) = step(&zombies_at(T0, &[7]), &Memory::default());
        assert_eq!(outcome, Outcome::Green);
        assert!(violations.is_empty());
        assert_eq!(memory.zombies["c-a"].pids[&7].first_seen_ms, T0);
    }

    #[test]
    fn dwell_boundary_599_silent_600_fires() {
        let memory = step(&zombies_at(T0, &[7]), &Memory::default()).2;
        let (early, _, memory) = step(&zombies_at(T0 + 599_000, &[7]), &memory);
        assert_eq!(early, Outcome::Green);
        let (fired, violations, _) = step(&zombies_at(T0 + 600_000, &[7]), &memory);
        assert_eq!(fired, Outcome::Red);
        assert_eq!(violations.len(), 1);
        let v = &violations[0];
        assert_eq!(v.subject, "agent-a");
        assert_eq!(v.signal, "zombie_persisting");
        assert_eq!(v.severity, crate::Severity::Critical);
        assert_eq!(v.observed_state["oldest_pid"], 7);
        assert_eq!(v.observed_state["held_for_seconds"], 600);
        assert_eq!(v.observed_state["first_seen_ms"], T0);
    }

    #[test]
    fn first_seen_is_never_rewritten_while_the_pid_persists() {
        // The reference's worst bug: rewriting first-seen every cycle meant dwell never elapsed.
        let (outcome, violations, memory) = every_minute(15, &[7, 9]);
        assert_eq!(outcome, Outcome::Red);
        assert_eq!(memory.zombies["c-a"].pids[&7].first_seen_ms, T0);
        assert_eq!(memory.zombies["c-a"].pids[&7].last_seen_ms, T0 + 15 * MIN);
        assert_eq!(violations[0].observed_state["pids"], serde_json::json!([7, 9]));
        assert_eq!(violations[0].observed_state["first_count"], 2);
    }

    #[test]
    fn zero_zombies_clears_the_dwell() {
        let memory = every_minute(5, &[7]).2;
        let (outcome, _, memory) = step(&zombies_at(T0 + 6 * MIN, &[]), &memory);
        assert_eq!(outcome, Outcome::Green);
        assert!(memory.zombies.is_empty());
        // The same pid seen again starts from scratch.
        let memory = step(&zombies_at(T0 + 7 * MIN, &[7]), &memory).2;
        let (outcome, _, _) = step(&zombies_at(T0 + 16 * MIN, &[7]), &memory);
        assert_eq!(outcome, Outcome::Green, "9 minutes since the dwell restarted");
    }

    #[test]
    fn a_gap_longer_than_gap_seconds_restarts_the_dwell() {
        let memory = step(&zombies_at(T0, &[7]), &Memory::default()).2;
        let (outcome, _, memory) = step(&zombies_at(T0 + 601_000, &[7]), &memory);
        assert_eq!(outcome, Outcome::Green, "a 601 s gap proves nothing");
        assert_eq!(memory.zombies["c-a"].pids[&7].first_seen_ms, T0 + 601_000);
        // A gap of exactly gap_seconds still continues the dwell.
        let memory = step(&zombies_at(T0, &[7]), &Memory::default()).2;
        let (outcome, _, _) = step(&zombies_at(T0 + 600_000, &[7]), &memory);
        assert_eq!(outcome, Outcome::Red);
    }

    #[test]
    fn a_restarted_container_starts_fresh() {
        let memory = every_minute(9, &[7]).2;
        let restarted = SnapshotBuilder::new()
            .at(T0 + 10 * MIN)
            .container("a", T0 + 9 * MIN + 30_000, &[7])
            .build();
        let (outcome, _, memory) = step(&restarted, &memory);
        assert_eq!(outcome, Outcome::Green, "a reused pid must not inherit the old dwell");
        assert_eq!(memory.zombies["c-a"].pids[&7].first_seen_ms, T0 + 10 * MIN);
        assert_eq!(memory.zombies["c-a"].started_at_ms, Some(T0 + 9 * MIN + 30_000));
    }

    #[test]
    fn a_vanished_pid_is_dropped_and_the_others_keep_their_dwell() {
        let memory = every_minute(5, &[7, 9]).2;
        let (_, _, memory) = step(&zombies_at(T0 + 6 * MIN, &[9]), &memory);
        assert!(!memory.zombies["c-a"].pids.contains_key(&7));
        assert_eq!(memory.zombies["c-a"].pids[&9].first_seen_ms, T0);
        let (outcome, violations, _) = step(&zombies_at(T0 + 10 * MIN, &[9]), &memory);
        assert_eq!(outcome, Outcome::Red);
        assert_eq!(violations[0].observed_state["oldest_pid"], 9);
    }

    #[test]
    fn an_unreadable_container_is_unknown_and_keeps_its_dwell() {
        let memory = every_minute(5, &[7]).2;
        let sick = SnapshotBuilder::new()
            .at(T0 + 6 * MIN)
            .unreadable_container("a", T0 - 3_600_000)
            .build();
        let only = ["R-01".to_owned()];
        let eval = evaluate(&sick, &memory, &Params::default(), Selection::Only(&only));
        assert_eq!(eval.outcomes["R-01"], Outcome::Unknown, "never a silent green");
        assert!(eval.unknown_reasons["R-01"].contains("agent-a"));
        assert_eq!(eval.memory.zombies, memory.zombies, "left untouched");
    }

    #[test]
    fn one_sick_container_does_not_blind_the_rest() {
        let memory = step(
            &SnapshotBuilder::new()
                .container("a", T0 - 3_600_000, &[7])
                .build(),
            &Memory::default(),
        )
        .2;
        let snap = SnapshotBuilder::new()
            .at(T0 + 10 * MIN)
            .container("a", T0 - 3_600_000, &[7])
            .unreadable_container("b", T0)
            .build();
        let (outcome, violations, _) = step(&snap, &memory);
        assert_eq!(outcome, Outcome::Red);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].subject, "agent-a");
    }

    #[test]
    fn a_stopped_container_is_forgotten() {
        let memory = every_minute(3, &[7]).2;
        let (outcome, _, memory) = step(&SnapshotBuilder::new().build(), &memory);
        assert_eq!(outcome, Outcome::Green);
        assert!(memory.zombies.is_empty());
    }

    #[test]
    fn unknown_when_docker_is_unreadable_and_memory_untouched() {
        let memory = every_minute(3, &[7]).2;
        let snap = SnapshotBuilder::new().unavailable(Source::Docker).build();
        let (outcome, _, next) = step(&snap, &memory);
        assert_eq!(outcome, Outcome::Unknown);
        assert_eq!(next, memory);
    }

    #[test]
    fn not_configured_is_not_run() {
        let snap = SnapshotBuilder::new()
            .not_configured(Source::Docker)
            .build();
        let eval = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        assert!(!eval.checks_run.iter().any(|id| id == "R-01"));
        assert!(!eval.outcomes.contains_key("R-01"));
        assert_eq!(eval.not_configured["R-01"], "source docker not configured");
    }
}
