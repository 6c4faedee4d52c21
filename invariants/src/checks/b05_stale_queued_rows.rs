//! **B-05 Stale queued rows expire** — tier B (≤ 24 h + 60 s), minor; needs SQLite (with
//! `queued_at`).
//!
//! Rule: no `queued` row has a `queued_at` older than `max_age_seconds` (86 460: the platform's
//! 24 h expiry plus 60 s for its sweep). Rows with an unknown `queued_at` are not judged here
//! (E-04 reports a NULL `queued_at`).
//!
//! Guards: an expiry sweep that stopped running, leaving a backlog that will never be served
//! and that hides real queueing problems.

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// B-05.
#[derive(Debug)]
pub struct B05;

static META: InvariantMeta = InvariantMeta {
    id: "B-05",
    name: "Stale queued rows expire",
    tier: Tier::B,
    severity: Severity::Minor,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecQueuedAt),
    ],
    guards: "An expiry sweep that stopped running: a backlog that is never served.",
    runbook: "Check that the platform's queued-row expiry job runs; it should mark these rows \
              failed.",
};

invariant_params! {
    /// B-05 parameters.
    pub struct B05Params {
        /// A queued row older than this should have been expired by the platform (24 h + 60 s).
        max_age_seconds: i64 = 86_460,
    }
}

impl Invariant for B05 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("No queued row is older than {} (the platform's expiry sweep fails them).", human_seconds(params.b05.max_age_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Minor;
        const MINUTE: i64 = 60_000;
        const HOUR: i64 = 60 * 60_000;
        let id = META.id;
        vec![v(
            id,
            Minor,
            "4b5c6d7e8f901234",
            "not_expired",
            "execution 4b5c6d7e8f901234 of agent agent-0120 has been queued for 31 h",
            json!({"execution_id": "4b5c6d7e8f901234", "agent": "agent-0120", "age_ms": 31 * HOUR + 5 * MINUTE, "max_age_ms": 86_460_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("max_age_seconds", params.b05.max_age_seconds, 1);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let max_age_ms = input.params.b05.max_age_seconds.saturating_mul(1000);
        input
            .sql
            .executions
            .iter()
            .filter(|row| row.phase == Phase::Queued)
            .filter_map(|row| {
                let age_ms = now.saturating_sub(row.queued_at_ms?);
                (age_ms > max_age_ms).then(|| {
                    input.violation(
                        &META,
                        row.id.as_str(),
                        "not_expired",
                        format!(
                            "execution {} of agent {} has been queued for {} h",
                            row.id,
                            row.agent_name,
                            age_ms / 3_600_000
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
    use crate::testing::{SnapshotBuilder, T0, run};

    const MAX: i64 = 86_460_000;

    #[test]
    fn holds_up_to_the_limit() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .queued("e1", "a", T0 - MAX)
            .build();
        assert!(run("B-05", &snap).is_empty());
    }

    #[test]
    fn fires_past_the_limit() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .queued("e1", "a", T0 - MAX - 1)
            .build();
        let v = run("B-05", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].signal, "not_expired");
    }

    #[test]
    fn only_queued_rows_with_a_known_time_count() {
        let mut b = SnapshotBuilder::new().agent("a").queued("e1", "a", T0);
        b.last_execution().queued_at_ms = None;
        let mut b = b.running("e2", "a", T0 - 60_000);
        b.last_execution().queued_at_ms = Some(T0 - 10 * MAX);
        assert!(run("B-05", &b.build()).is_empty());
    }
}
