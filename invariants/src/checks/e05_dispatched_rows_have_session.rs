//! **E-05 Dispatched rows have a session** — tier B (≤ 60 s), major; needs SQLite (with
//! `started_at` and `claude_session_id`).
//!
//! Rule: a `running` row older than `max_age_seconds` (60, by `started_at`) has a non-NULL,
//! non-empty `claude_session_id`. Leased rows (claimed by a pull worker) are excluded: their
//! session is the worker's business. Rows whose `started_at` is unknown are not judged. The
//! snapshot carries only whether a session id exists, never the id.
//!
//! Guards: dispatches whose agent process never started (or never reported back), leaving a row
//! that looks busy, holds a slot and can neither be resumed nor inspected.

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-05.
#[derive(Debug)]
pub struct E05;

static META: InvariantMeta = InvariantMeta {
    id: "E-05",
    name: "Dispatched rows have a session",
    tier: Tier::B,
    severity: Severity::Major,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecStartedAt),
        Need::Field(Field::ExecSessionId),
    ],
    guards: "Dispatches whose agent session never started or never reported back: rows that look \
             busy and hold a slot but do nothing.",
    runbook: "Check the dispatcher's logs for this execution: did the agent container start, and \
              did the session-start callback reach the platform? Cancel the row (releasing its \
              slot) if the session is gone.",
};

invariant_params! {
    /// E-05 parameters.
    pub struct E05Params {
        /// A running row older than this (by `started_at`) must have a session id.
        max_age_seconds: i64 = 60,
    }
}

impl Invariant for E05 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("A running row older than {} has a claude_session_id (leased rows excluded).", human_seconds(params.e05.max_age_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Major;
        let id = META.id;
        vec![v(
            id,
            Major,
            "3a4b5c6d7e8f9012",
            "no_session",
            "execution 3a4b5c6d7e8f9012 of agent agent-0140 has run for 185 s without a session",
            json!({"execution_id": "3a4b5c6d7e8f9012", "agent": "agent-0140", "age_ms": 185_000, "max_age_ms": 60_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("max_age_seconds", params.e05.max_age_seconds, 0);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let max_age_ms = input.params.e05.max_age_seconds.saturating_mul(1000);
        input
            .sql
            .executions
            .iter()
            // An illegible lease is no lease (see `Execution`).
            .filter(|row| {
                row.phase == Phase::Running && row.legible_lease().is_none() && !row.has_session
            })
            .filter_map(|row| {
                let age_ms = now.saturating_sub(row.started_at_ms?);
                (age_ms > max_age_ms).then(|| {
                    input.violation(
                        &META,
                        row.id.as_str(),
                        "no_session",
                        format!(
                            "execution {} of agent {} has run for {} s without a session",
                            row.id,
                            row.agent_name,
                            age_ms / 1000
                        ),
                        json!({
                            "execution_id": row.id,
                            "agent": row.agent_name,
                            "age_ms": age_ms,
                            "max_age_ms": max_age_ms,
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

    const MAX: i64 = 60_000;

    fn sessionless(started_at: i64) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", started_at);
        b.last_execution().has_session = false;
        b
    }

    #[test]
    fn rows_with_a_session_hold() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - 3_600_000)
            .build();
        assert!(run("E-05", &snap).is_empty());
    }

    #[test]
    fn fires_past_the_bound_only() {
        assert!(run("E-05", &sessionless(T0 - MAX).build()).is_empty());
        let v = run("E-05", &sessionless(T0 - MAX - 1).build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].signal, "no_session");
        assert!(v[0].observed_state.get("session_id").is_none());
    }

    #[test]
    fn leased_rows_and_unknown_starts_are_not_judged() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e1", "a", T0 - 10 * MAX);
        b.last_execution().has_session = false;
        assert!(run("E-05", &b.build()).is_empty());
        let mut b = sessionless(T0);
        b.last_execution().started_at_ms = None;
        assert!(run("E-05", &b.build()).is_empty());
    }

    /// An empty or unparseable lease is no lease (see `snapshot::Execution`): judged.
    #[test]
    fn an_illegible_lease_is_no_lease() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e1", "a", T0 - 10 * MAX);
        b.last_execution().has_session = false;
        b.last_execution().lease_expires_at_ms = None;
        assert_eq!(run("E-05", &b.build()).len(), 1);
    }

    #[test]
    fn queued_rows_are_not_judged() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .queued("e1", "a", T0 - 10 * MAX)
            .build();
        assert!(run("E-05", &snap).is_empty());
    }

    #[test]
    fn unknown_without_the_session_column() {
        let snap = SnapshotBuilder::new()
            .missing_field(Field::ExecSessionId)
            .build();
        let only = ["E-05".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Default::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["E-05"], crate::Outcome::Unknown);
    }
}
