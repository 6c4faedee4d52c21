//! **E-04 Queued rows have metadata** — tier A, major; needs SQLite (with `queued_at` and
//! `backlog_metadata`).
//!
//! Rule: every `queued` row has a `queued_at` and a `backlog_metadata` that is valid JSON. One
//! violation per row; its `observed_state.reasons` lists every reason code that applies, in this
//! order, and the signal is the first: `queued_at_null`, `backlog_metadata_null`,
//! `backlog_metadata_invalid_json`. Only reason codes are reported, never the metadata: the
//! collector decides NULL / invalid / valid and the text never enters the snapshot.
//!
//! An unparseable `queued_at` is not NULL: it is an anomaly, and not reported here. A queued row
//! the collector could not classify (no backlog facts) is not judged on its metadata.
//!
//! Guards: enqueue paths that skip a field the dispatcher needs (B-05 cannot expire a row without
//! `queued_at`; the dispatcher cannot replay a request without its metadata).

use serde_json::json;

use crate::params::{Params, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{BacklogJson, Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-04.
#[derive(Debug)]
pub struct E04;

static META: InvariantMeta = InvariantMeta {
    id: "E-04",
    name: "Queued rows have metadata",
    tier: Tier::A,
    severity: Severity::Major,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecQueuedAt),
        Need::Field(Field::ExecBacklogMetadata),
    ],
    guards: "Enqueue paths that skip a field: rows the expiry sweep cannot age and the \
             dispatcher cannot replay.",
    runbook: "Check the platform's enqueue path for this agent: it must set queued_at and \
              serialise the request into backlog_metadata with a JSON encoder.",
};

invariant_params! {
    /// E-04 parameters.
    pub struct E04Params {
    }
}

impl Invariant for E04 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, _params: &Params) -> String {
        "Every queued row has a queued_at and valid-JSON backlog_metadata (reported as a reason \
           code, never the metadata).".to_owned()
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
            "2f3a4b5c6d7e8f90",
            "queued_at_null",
            "queued execution 2f3a4b5c6d7e8f90 of agent agent-0009: queued_at_null, backlog_metadata_null",
            json!({"execution_id": "2f3a4b5c6d7e8f90", "agent": "agent-0009", "reasons": ["queued_at_null", "backlog_metadata_null"]}),
        )]
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        input
            .sql
            .executions
            .iter()
            .filter(|row| row.phase == Phase::Queued)
            .filter_map(|row| {
                let mut reasons: Vec<&'static str> = Vec::new();
                if !row.queued_at_set {
                    reasons.push("queued_at_null");
                }
                match row.backlog.as_ref().map(|b| b.json) {
                    Some(BacklogJson::Null) => reasons.push("backlog_metadata_null"),
                    Some(BacklogJson::Invalid) => reasons.push("backlog_metadata_invalid_json"),
                    Some(BacklogJson::Valid) | None => {}
                }
                let signal = *reasons.first()?;
                Some(input.violation(
                    &META,
                    row.id.as_str(),
                    signal,
                    format!(
                        "queued execution {} of agent {}: {}",
                        row.id,
                        row.agent_name,
                        reasons.join(", ")
                    ),
                    json!({
                        "execution_id": row.id,
                        "agent": row.agent_name,
                        "reasons": reasons,
                    }),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::{Backlog, BacklogJson, Field};
    use crate::testing::{SnapshotBuilder, T0, run};

    fn queued(json: BacklogJson, queued_at_set: bool) -> crate::Snapshot {
        let mut b = SnapshotBuilder::new().agent("a").queued("e1", "a", T0);
        let row = b.last_execution();
        row.backlog = Some(Backlog {
            json,
            secret_patterns: vec![],
        });
        row.queued_at_set = queued_at_set;
        if !queued_at_set {
            row.queued_at_ms = None;
        }
        b.build()
    }

    #[test]
    fn a_complete_queued_row_holds() {
        assert!(run("E-04", &queued(BacklogJson::Valid, true)).is_empty());
    }

    #[test]
    fn each_reason_fires_with_its_code() {
        for (json, set, signal) in [
            (BacklogJson::Valid, false, "queued_at_null"),
            (BacklogJson::Null, true, "backlog_metadata_null"),
            (BacklogJson::Invalid, true, "backlog_metadata_invalid_json"),
        ] {
            let v = run("E-04", &queued(json, set));
            assert_eq!(v.len(), 1, "{signal}");
            assert_eq!(v[0].subject, "e1");
            assert_eq!(v[0].signal, signal);
        }
    }

    #[test]
    fn several_reasons_are_one_violation_listing_all() {
        let v = run("E-04", &queued(BacklogJson::Invalid, false));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "queued_at_null");
        assert_eq!(
            v[0].observed_state["reasons"],
            serde_json::json!(["queued_at_null", "backlog_metadata_invalid_json"])
        );
    }

    #[test]
    fn unparseable_queued_at_and_unclassified_metadata_are_not_reported() {
        let mut b = SnapshotBuilder::new().agent("a").queued("e1", "a", T0);
        let row = b.last_execution();
        row.queued_at_ms = None; // unparseable: present, an anomaly already
        row.backlog = None;
        assert!(run("E-04", &b.build()).is_empty());
    }

    #[test]
    fn only_queued_rows_are_judged() {
        let mut b = SnapshotBuilder::new().agent("a").running("e1", "a", T0);
        b.last_execution().backlog = Some(Backlog {
            json: BacklogJson::Null,
            secret_patterns: vec![],
        });
        assert!(run("E-04", &b.build()).is_empty());
    }

    #[test]
    fn unknown_without_either_column() {
        for field in [Field::ExecQueuedAt, Field::ExecBacklogMetadata] {
            let snap = SnapshotBuilder::new().missing_field(field).build();
            let only = ["E-04".to_owned()];
            let eval = crate::evaluate(
                &snap,
                &Default::default(),
                &Default::default(),
                crate::Selection::Only(&only),
            );
            assert_eq!(eval.outcomes["E-04"], crate::Outcome::Unknown, "{field:?}");
        }
    }
}
