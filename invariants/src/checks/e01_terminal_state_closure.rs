//! **E-01 Terminal-state closure** — tier B, critical; needs SQLite (with `started_at`).
//!
//! Rule: no `running` row is older than its agent's `execution_timeout_seconds + buffer_seconds`
//! (300): by then the platform's timeout handling should have made it terminal. Leased rows
//! (claimed by a pull worker) are excused while their lease is live or expired less than
//! `lease_grace_seconds` (600) ago, the lease reaper's window. Rows whose `started_at` is unknown
//! are not judged; an empty or unparseable lease is no lease (the row is judged by its start,
//! `lease_illegible` in its evidence; see `snapshot::Execution`); rows of agents absent from the
//! roster are L-03's business.
//!
//! Guards: executions that never close (a worker died, the timeout sweep skipped them), which
//! hold slots forever and starve the agent; and a lease reaper that stopped reaping.

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-01.
#[derive(Debug)]
pub struct E01;

static META: InvariantMeta = InvariantMeta {
    id: "E-01",
    name: "Terminal-state closure",
    tier: Tier::B,
    severity: Severity::Critical,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecStartedAt),
    ],
    guards: "Executions that never close (dead worker, skipped timeout sweep) and a lease reaper \
             that stopped reaping.",
    runbook: "Check the platform's timeout sweep and worker health for that agent; for leased \
              rows, check the lease reaper. Close the row (and release its slot) once understood.",
};

invariant_params! {
    /// E-01 parameters.
    pub struct E01Params {
        /// Added to the agent's execution timeout before a running row counts as stale.
        buffer_seconds: i64 = 300,
        /// Leased rows are excused until their lease has been expired this long (the reaper's window).
        lease_grace_seconds: i64 = 600,
    }
}

impl Invariant for E01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("No running row is older than its agent's execution_timeout_seconds + {} (leased \
                 rows: until {} after their lease expired).",
                human_seconds(params.e01.buffer_seconds), human_seconds(params.e01.lease_grace_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![v(
            id,
            Critical,
            "9c0d1e2f3a4b5c6d",
            "not_closed",
            "execution 9c0d1e2f3a4b5c6d of agent agent-0034 has been running for 4210 s (limit 3900 s)",
            json!({"execution_id": "9c0d1e2f3a4b5c6d", "agent": "agent-0034", "age_ms": 4_210_000, "limit_ms": 3_900_000, "leased": false, "lease_expires_at_ms": null}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("buffer_seconds", params.e01.buffer_seconds, 0);
        problems.seconds_at_least("lease_grace_seconds", params.e01.lease_grace_seconds, 0);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let p = &input.params.e01;
        let timeouts = input
            .sql
            .strictest_per_agent(|a| a.execution_timeout_seconds);
        let lease_grace_ms = p.lease_grace_seconds.saturating_mul(1000);
        input
            .sql
            .executions
            .iter()
            .filter(|row| row.phase == Phase::Running)
            .filter_map(|row| {
                let timeout = timeouts.get(row.agent_name.as_str())?;
                let started_at = row.started_at_ms?;
                let limit_ms = timeout
                    .saturating_add(p.buffer_seconds)
                    .saturating_mul(1000);
                let age_ms = now.saturating_sub(started_at);
                if age_ms <= limit_ms {
                    return None;
                }
                // An illegible lease is no lease (see `Execution`): judged as a plain row.
                let lease = row.legible_lease();
                if let Some(expires_at) = lease {
                    let expired_for_ms = now.saturating_sub(expires_at);
                    if expired_for_ms < lease_grace_ms {
                        return None;
                    }
                }
                Some(input.violation(
                    &META,
                    row.id.as_str(),
                    if lease.is_some() {
                        "lease_not_reaped"
                    } else {
                        "not_closed"
                    },
                    format!(
                        "execution {} of agent {} has been running for {} s (limit {} s)",
                        row.id,
                        row.agent_name,
                        age_ms / 1000,
                        limit_ms / 1000
                    ),
                    json!({
                        "execution_id": row.id,
                        "agent": row.agent_name,
                        "age_ms": age_ms,
                        "limit_ms": limit_ms,
                        "leased": lease.is_some(),
                        "lease_expires_at_ms": row.lease_expires_at_ms,
                        "lease_illegible": row.leased && lease.is_none(),
                    }),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::Field;
    use crate::testing::{SnapshotBuilder, T0, run};

    const LIMIT: i64 = (900 + 300) * 1000;

    #[test]
    fn holds_within_timeout_plus_buffer() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - LIMIT)
            .build();
        assert!(run("E-01", &snap).is_empty());
    }

    #[test]
    fn fires_past_timeout_plus_buffer() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - LIMIT - 1)
            .build();
        let v = run("E-01", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].signal, "not_closed");
    }

    #[test]
    fn uses_the_agents_own_timeout() {
        let snap = SnapshotBuilder::new()
            .agent_with("slow", 3, 7200)
            .running("e1", "slow", T0 - 2 * 3_600_000)
            .build();
        assert!(run("E-01", &snap).is_empty());
    }

    #[test]
    fn leased_rows_get_the_reaper_window() {
        let old = T0 - LIMIT - 3_600_000;
        let lease = |expired_ago: i64| {
            let mut b = SnapshotBuilder::new()
                .agent("a")
                .leased_running("e1", "a", old);
            b.last_execution().lease_expires_at_ms = Some(T0 - expired_ago);
            b.build()
        };
        assert!(run("E-01", &lease(-60_000)).is_empty(), "live lease");
        assert!(run("E-01", &lease(599_999)).is_empty(), "reaper window");
        let v = run("E-01", &lease(600_000));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "lease_not_reaped");
    }

    #[test]
    fn unknown_times_and_absent_agents_are_not_judged() {
        let mut b = SnapshotBuilder::new().agent("a").running("e1", "a", T0);
        b.last_execution().started_at_ms = None;
        let snap = b.running("e3", "ghost", T0 - 10 * LIMIT).build();
        assert!(run("E-01", &snap).is_empty());
    }

    /// An empty or unparseable lease fails open: the row is judged as an unleased one.
    #[test]
    fn an_illegible_lease_is_no_lease() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e2", "a", T0 - LIMIT - 1);
        b.last_execution().lease_expires_at_ms = None;
        let v = run("E-01", &b.build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "not_closed");
        assert_eq!(v[0].observed_state["lease_illegible"], true);
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e2", "a", T0 - LIMIT);
        b.last_execution().lease_expires_at_ms = None;
        assert!(run("E-01", &b.build()).is_empty(), "within the limit");
    }

    #[test]
    fn unknown_without_started_at_column() {
        let snap = SnapshotBuilder::new()
            .missing_field(Field::ExecStartedAt)
            .build();
        let only = ["E-01".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Default::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["E-01"], crate::Outcome::Unknown);
    }
}
