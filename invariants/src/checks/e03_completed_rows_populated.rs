//! **E-03 Completed rows populated** — tier A, major; needs SQLite (with `started_at` and
//! `completed_at`).
//!
//! Rule: a terminal row (`success`, `failed`, `cancelled`: every configured terminal word except
//! `exempt_statuses`, by default `skipped`, whose rows never ran) started within the last
//! `window_seconds` (1800) has a `completed_at`.
//!
//! Only a NULL `completed_at` is reported (`completed_at_null`). An unparseable one is already an
//! anomaly and the row is not judged here: the value exists, it is just not readable. Rows whose
//! `started_at` is unknown are not judged (the window cannot be applied). The collector reads
//! terminal rows without `completed_at` by their start, over the larger of this window and
//! E-02's, so every row this rule can judge is in the snapshot.
//!
//! Guards: finish paths that write the terminal status but not the completion time (E-02, G-03,
//! durations and reports silently skip such rows).

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-03.
#[derive(Debug)]
pub struct E03;

static META: InvariantMeta = InvariantMeta {
    id: "E-03",
    name: "Completed rows populated",
    tier: Tier::A,
    severity: Severity::Major,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecStartedAt),
        Need::Field(Field::ExecCompletedAt),
    ],
    guards: "Finish paths that write the terminal status but not the completion time, which \
             E-02, G-03 and duration reports then silently skip.",
    runbook: "Find the code path that set this status (the row's agent and status say which \
              worker): every terminal write must set completed_at in the same UPDATE.",
};

invariant_params! {
    /// E-03 parameters.
    pub struct E03Params {
        /// Terminal rows started within this window are judged (the collector reads terminal rows
    /// of the larger of this and E-02's window).
        window_seconds: i64 = 1800,
        /// Terminal status words that legitimately have no `completed_at` (the row never ran).
        exempt_statuses: Vec<String> = vec!["skipped".to_owned()],
    }
}

impl Invariant for E03 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        {
            let p = &params.e03;
            let exempt = if p.exempt_statuses.is_empty() {
                String::new()
            } else {
                format!(" ({} rows never ran and are exempt)", p.exempt_statuses.join(", "))
            };
            format!("A terminal row started within the last {} has a completed_at{exempt}.", human_seconds(p.window_seconds))
        }
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Major;
        const MINUTE: i64 = 60_000;
        let id = META.id;
        vec![v(
            id,
            Major,
            "1e2f3a4b5c6d7e8f",
            "completed_at_null",
            "execution 1e2f3a4b5c6d7e8f of agent agent-0077 is failed without a completed_at",
            json!({"execution_id": "1e2f3a4b5c6d7e8f", "agent": "agent-0077", "status": "failed", "started_at_ms": t0 - 12 * MINUTE}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("window_seconds", params.e03.window_seconds, 1);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let p = &input.params.e03;
        let window_ms = p.window_seconds.saturating_mul(1000);
        input
            .sql
            .executions
            .iter()
            .filter(|row| row.phase == Phase::Terminal && !row.completed_at_set)
            .filter(|row| !p.exempt_statuses.contains(&row.status))
            .filter_map(|row| {
                let started_at = row.started_at_ms?;
                let age_ms = now.saturating_sub(started_at);
                (age_ms <= window_ms).then(|| {
                    input.violation(
                        &META,
                        row.id.as_str(),
                        "completed_at_null",
                        format!(
                            "execution {} of agent {} is {} without a completed_at",
                            row.id, row.agent_name, row.status
                        ),
                        json!({
                            "execution_id": row.id,
                            "agent": row.agent_name,
                            "status": row.status,
                            "started_at_ms": started_at,
                        }),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::params::Params;
    use crate::snapshot::{Field, Phase};
    use crate::testing::{SnapshotBuilder, T0, run, run_with};

    const WINDOW: i64 = 1_800_000;

    /// A terminal row with `status`, started at `started_at`, without `completed_at`.
    fn unfinished(status: &str, started_at: i64) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", status, T0);
        let row = b.last_execution();
        row.started_at_ms = Some(started_at);
        row.completed_at_ms = None;
        row.completed_at_set = false;
        b
    }

    #[test]
    fn populated_rows_hold() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0 - 1_000)
            .terminal("e2", "a", "failed", T0 - 1_000)
            .build();
        assert!(run("E-03", &snap).is_empty());
    }

    #[test]
    fn fires_for_success_failed_and_cancelled() {
        for status in ["success", "failed", "cancelled"] {
            let v = run("E-03", &unfinished(status, T0 - 60_000).build());
            assert_eq!(v.len(), 1, "{status}");
            assert_eq!(v[0].subject, "e1");
            assert_eq!(v[0].signal, "completed_at_null");
            assert_eq!(v[0].observed_state["status"], status);
        }
    }

    #[test]
    fn skipped_rows_are_exempt_and_configurable() {
        let snap = unfinished("skipped", T0 - 60_000).build();
        assert!(run("E-03", &snap).is_empty());
        let mut params = Params::default();
        params.e03.exempt_statuses = vec![];
        assert_eq!(
            run_with("E-03", &snap, &Default::default(), &params).len(),
            1
        );
    }

    #[test]
    fn only_rows_started_within_the_window() {
        assert_eq!(
            run("E-03", &unfinished("failed", T0 - WINDOW).build()).len(),
            1
        );
        assert!(run("E-03", &unfinished("failed", T0 - WINDOW - 1).build()).is_empty());
    }

    #[test]
    fn unparseable_completed_at_and_unknown_start_are_not_judged() {
        let mut b = unfinished("failed", T0 - 60_000);
        b.last_execution().completed_at_set = true; // present but unparseable
        assert!(run("E-03", &b.build()).is_empty());
        let mut b = unfinished("failed", T0);
        b.last_execution().started_at_ms = None;
        assert!(run("E-03", &b.build()).is_empty());
    }

    #[test]
    fn non_terminal_rows_are_not_judged() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - 60_000)
            .with_status("e2", "a", "completed", Phase::Other)
            .build();
        assert!(run("E-03", &snap).is_empty());
    }

    #[test]
    fn unknown_without_either_column() {
        for field in [Field::ExecCompletedAt, Field::ExecStartedAt] {
            let snap = SnapshotBuilder::new().missing_field(field).build();
            let only = ["E-03".to_owned()];
            let eval = crate::evaluate(
                &snap,
                &Default::default(),
                &Default::default(),
                crate::Selection::Only(&only),
            );
            assert_eq!(eval.outcomes["E-03"], crate::Outcome::Unknown, "{field:?}");
        }
    }
}
