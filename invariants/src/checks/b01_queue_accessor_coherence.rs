//! **B-01 Queue accessor coherence** — tier A, critical; needs the SQL database and the
//! platform's queued-count endpoint (`platform.queue_count`).
//!
//! Per agent asked this cycle, the platform's own accessor count of queued rows must equal the
//! number of queued rows canary reads independently. Two code paths over one store: a cache in
//! front of the accessor, or a status word the accessor counts differently, makes them drift
//! while every row looks fine on its own.
//!
//! The collector has already done the reference's re-read: on a first mismatch it read the
//! agent's queued ids, the endpoint, and the ids again, and kept that second pair. So this check
//! only judges what survived:
//! - [`QueueCount::Read`] with `reported != read` → `count_mismatch` (evidence: agent, the
//!   accessor's count, canary's count, canary's sorted ids, whether it was re-read);
//! - [`QueueCount::Unreadable`] (endpoint or re-read failed for that agent) → that agent is not
//!   judged; the outcome is *unknown* when nothing else fired, never green;
//! - [`QueueCount::Unsettled`] (the queue moved during the re-read) → not judged this cycle and
//!   not unknown: the next cycle judges it again.
//!
//! Guards: a platform whose dispatch decisions read a stale or wrong queued count (work that is
//! never started, or capacity reserved for work that does not exist).

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, invariant_params};
use crate::snapshot::{QueueCount, QueueCountState, Source};
use crate::violation::{Severity, Tier, Violation};

/// B-01.
#[derive(Debug)]
pub struct B01;

static META: InvariantMeta = InvariantMeta {
    id: "B-01",
    name: "Queue accessor coherence",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Source(Source::QueueCount),
    ],
    guards: "A cache or a status-word drift in the platform's queued-count accessor: the \
             platform decides dispatch on a count its own rows contradict.",
    runbook: "Compare the platform's queue endpoint for the agent with its queued rows \
              (SELECT id FROM schedule_executions WHERE agent_name = … AND status = 'queued'). \
              A stale count points at a cache (invalidate it, find the missing invalidation); \
              a constant offset points at a status word the accessor counts differently.",
};

invariant_params! {
    /// B-01 parameters (none beyond `enabled` and `severity`: the endpoint, its pointer and
    /// the share of agents asked per cycle are `platform.queue_count`).
    pub struct B01Params {}
}

impl Invariant for B01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, _params: &Params) -> String {
        "For every agent asked, the queued count the platform's own accessor reports equals the \
         queued rows canary reads (a mismatch is re-read once before it counts)."
            .to_owned()
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use crate::violation::Severity::Critical;
        vec![v(
            META.id,
            Critical,
            "agent-research",
            "count_mismatch",
            "agent-research: the platform reports 0 queued rows, canary reads 2",
            json!({"agent": "agent-research", "reported": 0, "read": 2,
                   "ids": ["ex-1041", "ex-1042"], "ids_truncated": false, "reread": true}),
        )]
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let Some(state) = queue_counts(input) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (agent, count) in &state.agents {
            let QueueCount::Read {
                reported,
                read,
                ids,
                reread,
            } = count
            else {
                continue;
            };
            if reported == read {
                continue;
            }
            let truncated = u64::try_from(ids.len()).unwrap_or(u64::MAX) < *read;
            out.push(input.violation(
                &META,
                agent.clone(),
                "count_mismatch",
                format!("{agent}: the platform reports {reported} queued rows, canary reads {read}"),
                json!({"agent": agent, "reported": reported, "read": read, "ids": ids,
                       "ids_truncated": truncated,
                       "reread": reread}),
            ));
        }
        out
    }

    fn unreadable(&self, input: &Input<'_>) -> Option<String> {
        let state = queue_counts(input)?;
        let sick: Vec<&str> = state
            .agents
            .iter()
            .filter(|(_, c)| matches!(c, QueueCount::Unreadable { .. }))
            .map(|(a, _)| a.as_str())
            .collect();
        (!sick.is_empty()).then(|| {
            let shown: Vec<&str> = sick.iter().copied().take(10).collect();
            let more = sick.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "queue count unreadable for {} agent(s): {}{tail}",
                sick.len(),
                shown.join(", ")
            )
        })
    }
}

fn queue_counts<'a>(input: &Input<'a>) -> Option<&'a QueueCountState> {
    input.snapshot.queue_counts.as_ref()
}

#[cfg(test)]
mod tests {
    use crate::evaluate::{Selection, evaluate};
    use crate::memory::Memory;
    use crate::params::Params;
    use crate::snapshot::{QueueCount, Snapshot, Source};
    use crate::testing::{SnapshotBuilder, run};
    use crate::violation::{Outcome, Severity};

    fn read(reported: u64, read: u64, ids: &[&str], reread: bool) -> QueueCount {
        QueueCount::Read {
            reported,
            read,
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            reread,
        }
    }

    fn outcome(snap: &Snapshot) -> Option<Outcome> {
        let only = ["B-01".to_owned()];
        let eval = evaluate(
            snap,
            &Memory::default(),
            &Params::default(),
            Selection::Only(&only),
        );
        eval.outcomes.get("B-01").copied()
    }

    #[test]
    fn equal_counts_hold() {
        let s = SnapshotBuilder::new()
            .agent("a")
            .agent("b")
            .queue_count("a", read(0, 0, &[], false))
            .queue_count("b", read(3, 3, &[], true))
            .build();
        assert!(run("B-01", &s).is_empty());
        assert_eq!(outcome(&s), Some(Outcome::Green));
    }

    #[test]
    fn a_mismatch_that_survived_its_reread_is_critical_with_both_counts_and_the_ids() {
        let s = SnapshotBuilder::new()
            .agent("a")
            .queue_count("a", read(0, 2, &["ex-1", "ex-2"], true))
            .build();
        let v = run("B-01", &s);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "a");
        assert_eq!(v[0].signal, "count_mismatch");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].observed_state["reported"], 0);
        assert_eq!(v[0].observed_state["read"], 2);
        assert_eq!(v[0].observed_state["ids"], serde_json::json!(["ex-1", "ex-2"]));
        assert_eq!(v[0].observed_state["ids_truncated"], false);
        assert_eq!(v[0].observed_state["reread"], true);
        assert_eq!(outcome(&s), Some(Outcome::Red));
        // The accessor counting more than there is (a stale cache after a dispatch) too.
        let phantom = SnapshotBuilder::new()
            .queue_count("b", read(5, 0, &[], true))
            .build();
        assert_eq!(run("B-01", &phantom)[0].observed_state["read"], 0);
    }

    #[test]
    fn an_unreadable_agent_is_unknown_alone_never_green() {
        let s = SnapshotBuilder::new()
            .queue_count("a", read(1, 1, &[], false))
            .queue_count(
                "b",
                QueueCount::Unreadable {
                    reason: "HTTP 500".to_owned(),
                },
            )
            .build();
        assert!(run("B-01", &s).is_empty());
        assert_eq!(outcome(&s), Some(Outcome::Unknown));
        // Another agent's mismatch still fires: one sick agent does not blind the rest.
        let both = SnapshotBuilder::new()
            .queue_count("a", read(1, 4, &[], true))
            .queue_count(
                "b",
                QueueCount::Unreadable {
                    reason: "timeout".to_owned(),
                },
            )
            .build();
        assert_eq!(run("B-01", &both).len(), 1);
        assert_eq!(outcome(&both), Some(Outcome::Red));
    }

    #[test]
    fn an_unsettled_agent_is_not_judged_and_not_unknown() {
        let s = SnapshotBuilder::new()
            .queue_count(
                "a",
                QueueCount::Unsettled {
                    reported: 4,
                    before: 2,
                    after: 3,
                },
            )
            .build();
        assert!(run("B-01", &s).is_empty());
        assert_eq!(outcome(&s), Some(Outcome::Green));
    }

    #[test]
    fn source_unavailable_is_unknown() {
        let s = SnapshotBuilder::new().unavailable(Source::QueueCount).build();
        assert_eq!(outcome(&s), Some(Outcome::Unknown));
        let no_sql = SnapshotBuilder::new()
            .queue_count("a", read(0, 0, &[], false))
            .unavailable(Source::Sqlite)
            .build();
        assert_eq!(outcome(&no_sql), Some(Outcome::Unknown));
    }

    #[test]
    fn not_configured_is_not_run() {
        let s = SnapshotBuilder::new()
            .not_configured(Source::QueueCount)
            .build();
        let only = ["B-01".to_owned()];
        let eval = evaluate(&s, &Memory::default(), &Params::default(), Selection::Only(&only));
        assert!(!eval.outcomes.contains_key("B-01"));
        assert_eq!(
            eval.not_configured["B-01"],
            "source queue_count not configured"
        );
    }
}
