//! **H-01 Collector not blind** — tier A, major; needs Redis (the corroborating evidence) and
//! cross-cycle memory.
//!
//! Rule: the roster read must not come back empty (or fail) while independent evidence says the
//! fleet is alive: slot keys exist in Redis. That is `roster_empty_unverifiable`, major, because
//! Redis only corroborates. It is confirmed only once the suspicion has lasted at least
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

/// Whether this snapshot is suspicious: no roster (empty or unreadable) but live slot keys.
fn suspicious(input: &Input<'_>) -> bool {
    input.sql.agents.is_empty() && !input.redis.slot_sets.is_empty()
}

impl Invariant for H01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("The roster read is not empty (nor failing) while slot keys exist in Redis, for {} \
                 or longer.", human_seconds(params.h01.confirm_after_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Major;
        let id = META.id;
        vec![v(
            id,
            Major,
            "roster",
            "roster_empty_unverifiable",
            "the roster is empty but 12 slot key(s) exist in Redis, for 180 s",
            json!({"roster_readable": true, "slot_keys": 12, "suspected_since_ms": t0 - 180_000}),
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
        vec![input.violation(
            &META,
            "roster",
            "roster_empty_unverifiable",
            format!(
                "the roster is {} but {} slot key(s) exist in Redis, for {} s",
                if roster_readable {
                    "empty"
                } else {
                    "unreadable"
                },
                input.redis.slot_sets.len(),
                lasted_ms / 1000
            ),
            json!({
                "roster_readable": roster_readable,
                "slot_keys": input.redis.slot_sets.len(),
                "suspected_since_ms": since,
            }),
        )]
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
