//! **H-01 Collector not blind** — tier A, critical or major; needs Redis (the corroborating
//! evidence), uses Docker when configured, and cross-cycle memory.
//!
//! Rule: the roster read must not come back empty (or fail) while independent evidence says the
//! fleet is alive. Running agent containers are that evidence: `roster_empty_contradicted`,
//! critical (the collector reads the containers before the roster, so the containers cannot be
//! younger than the roster view). Slot keys in Redis alone are `roster_empty_unverifiable`,
//! major, because Redis only corroborates. Either is confirmed only once the suspicion has lasted at least
//! `confirm_after_seconds` (one cycle interval, 300 s by default), so the race of the last
//! agent's delete, whose slot key goes a moment later, cannot fire it.
//!
//! Guards: a watcher that silently watches nothing (wrong database path after a migration, a
//! renamed table, an emptied file): every roster-based invariant would be vacuously green.

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::memory::Memory;
use crate::snapshot::Source;
use crate::violation::{Severity, Tier, Violation};

/// H-01.
#[derive(Debug)]
pub struct H01;

static META: InvariantMeta = InvariantMeta {
    id: "H-01",
    name: "Collector not blind",
    tier: Tier::A,
    severity: Severity::Major,
    needs: &[Need::Source(Source::Redis)],
    guards: "A watcher that silently watches nothing (wrong database path, renamed table, emptied \
             file), making every roster-based invariant vacuously green.",
    runbook: "Check platform.sqlite_path (or platform.database_url and platform.schema) and the \
              roster table name in canary's config against the platform, and whether the roster \
              table was emptied or moved.",
};

invariant_params! {
    /// H-01 parameters.
    pub struct H01Params {
        /// The suspicion must last this long before it is reported (one cycle interval).
        confirm_after_seconds: i64 = 300,
    }
}

/// Whether this snapshot is suspicious: no roster (empty or unreadable) but live slot keys or
/// running agent containers.
fn suspicious(input: &Input<'_>) -> bool {
    input.sql.agents.is_empty()
        && (!input.redis.slot_sets.is_empty() || !input.docker.containers.is_empty())
}

/// How many names of evidence a violation carries.
const SAMPLE: usize = 10;

/// `read`, `unavailable` or `not_configured`: how an evidence source fared this cycle.
fn availability(input: &Input<'_>, source: Source) -> &'static str {
    if input.snapshot.has(source) {
        "read"
    } else if input.snapshot.is_not_configured(source) {
        "not_configured"
    } else {
        "unavailable"
    }
}

impl Invariant for H01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("The roster read is not empty (nor failing) while running agent containers \
                 (critical) or slot keys in Redis (major) exist, for {} or longer.",
                 human_seconds(params.h01.confirm_after_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![v(
            id,
            Critical,
            "roster",
            "roster_empty_contradicted",
            "the roster is empty but 4 agent container(s) run and 12 slot key(s) exist in Redis, for 360 s",
            json!({"roster_readable": true, "agent_containers": 4, "slot_keys": 12,
                   "evidence": ["agent-0001", "agent-0002", "agent-0003", "agent-0004"],
                   "docker_source": "read", "redis_source": "read",
                   "suspected_since_ms": t0 - 360_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("confirm_after_seconds", params.h01.confirm_after_seconds, 0);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        if !suspicious(input) {
            return Vec::new();
        }
        let Some(since) = input.memory.blind_suspected_since_ms else {
            return Vec::new();
        };
        let lasted_ms = input.now_ms().saturating_sub(since);
        let confirm_ms = input.params.h01.confirm_after_seconds.saturating_mul(1000);
        if lasted_ms < confirm_ms {
            return Vec::new();
        }
        let roster_readable = input.snapshot.has(Source::Sqlite);
        let containers = input.docker.containers.len();
        let slot_keys = input.redis.slot_sets.len();
        let mut evidence: Vec<&str> = input
            .docker
            .containers
            .iter()
            .map(|c| c.agent.as_str())
            .chain(input.redis.slot_sets.iter().map(|s| s.agent_name.as_str()))
            .collect();
        evidence.sort_unstable();
        evidence.dedup();
        evidence.truncate(SAMPLE);
        let contradicted = containers > 0;
        let (signal, seen) = if contradicted {
            (
                "roster_empty_contradicted",
                format!("{containers} agent container(s) run and {slot_keys} slot key(s) exist in Redis"),
            )
        } else {
            (
                "roster_empty_unverifiable",
                format!("{slot_keys} slot key(s) exist in Redis"),
            )
        };
        let mut violation = input.violation(
            &META,
            "roster",
            signal,
            format!(
                "the roster is {} but {seen}, for {} s",
                if roster_readable {
                    "empty"
                } else {
                    "unreadable"
                },
                lasted_ms / 1000
            ),
            json!({
                "roster_readable": roster_readable,
                "agent_containers": containers,
                "slot_keys": slot_keys,
                "evidence": evidence,
                "docker_source": availability(input, Source::Docker),
                "redis_source": availability(input, Source::Redis),
                "suspected_since_ms": since,
            }),
        );
        if contradicted {
            // The containers are independent evidence: critical, unless the operator overrides.
            violation.severity = input
                .params
                .severity_override(META.id)
                .unwrap_or(Severity::Critical);
        }
        vec![violation]
    }

    fn remember(&self, input: &Input<'_>, next: &mut Memory) {
        next.blind_suspected_since_ms = if suspicious(input) {
            Some(
                input
                    .memory
                    .blind_suspected_since_ms
                    .unwrap_or(input.now_ms()),
            )
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::{Selection, evaluate};
    use crate::memory::Memory;
    use crate::params::Params;
    use crate::snapshot::Source;
    use crate::testing::{SnapshotBuilder, T0};
    use crate::violation::Outcome;

    fn step(snap: &crate::Snapshot, memory: &Memory) -> (Outcome, Memory) {
        let only = ["H-01".to_owned()];
        let eval = evaluate(snap, memory, &Params::default(), Selection::Only(&only));
        (eval.outcomes["H-01"], eval.memory)
    }

    #[test]
    fn fires_only_after_the_suspicion_lasted_one_interval() {
        let blind = |at| SnapshotBuilder::new().at(at).slot("a", "e1", at).build();
        let (first, memory) = step(&blind(T0), &Memory::default());
        assert_eq!(
            first,
            Outcome::Green,
            "a last-agent delete race must not fire"
        );
        assert_eq!(memory.blind_suspected_since_ms, Some(T0));
        let (early, memory) = step(&blind(T0 + 299_999), &memory);
        assert_eq!(early, Outcome::Green);
        assert_eq!(
            memory.blind_suspected_since_ms,
            Some(T0),
            "first sighting kept"
        );
        let (confirmed, _) = step(&blind(T0 + 300_000), &memory);
        assert_eq!(confirmed, Outcome::Red);
    }

    #[test]
    fn an_unreadable_roster_counts_as_empty() {
        let snap = SnapshotBuilder::new()
            .unavailable(Source::Sqlite)
            .slot("a", "e1", T0)
            .build();
        let memory = Memory {
            blind_suspected_since_ms: Some(T0 - 600_000),
            ..Memory::default()
        };
        let only = ["H-01".to_owned()];
        let eval = evaluate(&snap, &memory, &Params::default(), Selection::Only(&only));
        assert_eq!(eval.outcomes["H-01"], Outcome::Red);
        assert_eq!(eval.violations[0].observed_state["roster_readable"], false);
        assert_eq!(eval.violations[0].severity, crate::Severity::Major);
    }

    #[test]
    fn running_agent_containers_contradict_an_empty_roster_critically() {
        let memory = Memory {
            blind_suspected_since_ms: Some(T0 - 600_000),
            ..Memory::default()
        };
        let only = ["H-01".to_owned()];
        let snap = SnapshotBuilder::new()
            .container("b", T0 - 3_600_000, &[])
            .container("a", T0 - 3_600_000, &[])
            .build();
        let eval = evaluate(&snap, &memory, &Params::default(), Selection::Only(&only));
        assert_eq!(eval.outcomes["H-01"], Outcome::Red);
        let v = &eval.violations[0];
        assert_eq!(v.signal, "roster_empty_contradicted");
        assert_eq!(v.severity, crate::Severity::Critical);
        assert_eq!(v.observed_state["agent_containers"], 2);
        assert_eq!(v.observed_state["evidence"], serde_json::json!(["a", "b"]));
        assert_eq!(v.observed_state["docker_source"], "read");
        // Unreadable roster, same arm.
        let snap = SnapshotBuilder::new()
            .unavailable(Source::Sqlite)
            .container("a", T0, &[])
            .build();
        let eval = evaluate(&snap, &memory, &Params::default(), Selection::Only(&only));
        assert_eq!(eval.violations[0].signal, "roster_empty_contradicted");
        assert_eq!(eval.violations[0].observed_state["roster_readable"], false);
    }

    #[test]
    fn containers_start_the_suspicion_and_it_is_confirmed_after_the_interval() {
        let blind = |at| SnapshotBuilder::new().at(at).container("a", T0, &[]).build();
        let (first, memory) = step(&blind(T0), &Memory::default());
        assert_eq!(first, Outcome::Green);
        assert_eq!(memory.blind_suspected_since_ms, Some(T0));
        let (early, memory) = step(&blind(T0 + 299_999), &memory);
        assert_eq!(early, Outcome::Green);
        let (confirmed, _) = step(&blind(T0 + 300_000), &memory);
        assert_eq!(confirmed, Outcome::Red);
    }

    #[test]
    fn slot_keys_without_docker_stay_major_and_say_docker_is_not_configured() {
        let memory = Memory {
            blind_suspected_since_ms: Some(T0 - 600_000),
            ..Memory::default()
        };
        let only = ["H-01".to_owned()];
        let snap = SnapshotBuilder::new()
            .not_configured(Source::Docker)
            .slot("a", "e1", T0)
            .build();
        let eval = evaluate(&snap, &memory, &Params::default(), Selection::Only(&only));
        let v = &eval.violations[0];
        assert_eq!(v.signal, "roster_empty_unverifiable");
        assert_eq!(v.severity, crate::Severity::Major);
        assert_eq!(v.observed_state["docker_source"], "not_configured");
    }

    #[test]
    fn a_roster_or_no_slot_keys_clears_the_suspicion() {
        let memory = Memory {
            blind_suspected_since_ms: Some(T0 - 600_000),
            ..Memory::default()
        };
        let healthy = SnapshotBuilder::new()
            .agent("a")
            .slot("a", "e1", T0)
            .build();
        assert_eq!(step(&healthy, &memory), (Outcome::Green, Memory::default()));
        let idle = SnapshotBuilder::new().build();
        assert_eq!(step(&idle, &memory), (Outcome::Green, Memory::default()));
    }

    #[test]
    fn unknown_without_redis_and_memory_untouched() {
        let snap = SnapshotBuilder::new().unavailable(Source::Redis).build();
        let memory = Memory {
            blind_suspected_since_ms: Some(T0),
            ..Memory::default()
        };
        assert_eq!(step(&snap, &memory), (Outcome::Unknown, memory));
    }
}
