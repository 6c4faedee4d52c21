//! **G-03 Clock sanity** — tier A, minor; needs SQLite (with `started_at` and `completed_at`).
//!
//! Rule: an execution never completes before it started: `started_at ≤ completed_at +
//! tolerance_seconds` (1). Judged on the rows the collector reads (every non-terminal row and
//! the recently completed ones); rows with an unknown time are not judged.
//!
//! Guards: clock skew between platform hosts and writers that stamp times in different zones
//! (a naive local time beside a UTC one), which silently distort every duration and window.

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, Problems, human_seconds_f, invariant_params, seconds_to_ms};
use crate::snapshot::{Field, Source};
use crate::violation::{Severity, Tier, Violation};

/// G-03.
#[derive(Debug)]
pub struct G03;

static META: InvariantMeta = InvariantMeta {
    id: "G-03",
    name: "Clock sanity",
    tier: Tier::A,
    severity: Severity::Minor,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecStartedAt),
        Need::Field(Field::ExecCompletedAt),
    ],
    guards: "Clock skew between hosts and time-zone mix-ups between writers.",
    runbook: "Compare the clocks (NTP) of the hosts that write started_at and completed_at, and \
              check that both writers store UTC.",
};

invariant_params! {
    /// G-03 parameters.
    pub struct G03Params {
        /// `started_at` may exceed `completed_at` by this much (rounding between writers).
        tolerance_seconds: f64 = 1.0,
    }
}

impl Invariant for G03 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("An execution's started_at is not after its completed_at ({} tolerance).", human_seconds_f(params.g03.tolerance_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Minor;
        let id = META.id;
        vec![v(
            id,
            Minor,
            "5c6d7e8f90123456",
            "completed_before_started",
            "execution 5c6d7e8f90123456 of agent agent-0047 completed 4500 ms before it started",
            json!({"execution_id": "5c6d7e8f90123456", "agent": "agent-0047", "started_at_ms": t0 - 60_000, "completed_at_ms": t0 - 64_500}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.non_negative("tolerance_seconds", params.g03.tolerance_seconds);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let tolerance_ms = seconds_to_ms(input.params.g03.tolerance_seconds);
        input
            .sql
            .executions
            .iter()
            .filter_map(|row| {
                let (started, completed) = (row.started_at_ms?, row.completed_at_ms?);
                let ahead_ms = started.saturating_sub(completed);
                (ahead_ms > tolerance_ms).then(|| {
                    input.violation(
                        &META,
                        row.id.as_str(),
                        "completed_before_started",
                        format!(
                            "execution {} of agent {} completed {} ms before it started",
                            row.id, row.agent_name, ahead_ms
                        ),
                        json!({
                            "execution_id": row.id,
                            "agent": row.agent_name,
                            "started_at_ms": started,
                            "completed_at_ms": completed,
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

    fn finished(started: i64, completed: i64) -> crate::Snapshot {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", completed);
        b.last_execution().started_at_ms = Some(started);
        b.build()
    }

    #[test]
    fn holds_in_order_and_within_tolerance() {
        assert!(run("G-03", &finished(T0 - 1_000, T0)).is_empty());
        assert!(run("G-03", &finished(T0 + 1_000, T0)).is_empty());
    }

    #[test]
    fn fires_beyond_tolerance() {
        let v = run("G-03", &finished(T0 + 1_001, T0));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "completed_before_started");
        assert_eq!(v[0].severity, crate::Severity::Minor);
    }

    #[test]
    fn unknown_times_are_not_judged() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0);
        b.last_execution().started_at_ms = None;
        assert!(run("G-03", &b.build()).is_empty());
    }
}
