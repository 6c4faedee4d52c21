//! **G-04 No credentials in backlog metadata** — tier A, critical; needs SQLite (with
//! `backlog_metadata`).
//!
//! Rule: no `queued` row's `backlog_metadata` contains a credential: a token starting with one
//! of the known secret prefixes (`sk-`, `sk_live_`, `ghp_`, `gho_`, `ghs_`, `ghu_`,
//! `github_pat_`, `xoxb-`, `xoxp-`, `AKIA`, `AIza`), word-boundary anchored (at the start of the
//! text or after a character that is not a letter, digit or `_`) and followed by at least 16
//! token characters (`A–Z a–z 0–9 _ -`), so prose such as "the sk- prefix" or "task-runner"
//! does not match while every real key format (all 16 characters or longer after the prefix)
//! does.
//!
//! The scan runs in the collector (daemon side), so the metadata text never enters the
//! snapshot: this check sees only the names of the patterns that matched, and reports the
//! pattern names and the row id, never the matched text. One violation per row.
//!
//! Guards: callers that put API keys or tokens in a request that then sits, readable, in the
//! platform database (and its backups) for as long as the row is queued.

use serde_json::json;

use crate::params::{Params, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::{Field, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// G-04.
#[derive(Debug)]
pub struct G04;

static META: InvariantMeta = InvariantMeta {
    id: "G-04",
    name: "No credentials in backlog metadata",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecBacklogMetadata),
    ],
    guards: "Credentials pasted into requests that then sit readable in the platform database \
             and its backups.",
    runbook: "Treat the credential as leaked: rotate it with its issuer, then scrub the row's \
              backlog_metadata and find the caller that put it there (the row's agent and \
              schedule say which). The pattern name says which issuer.",
};

invariant_params! {
    /// G-04 parameters.
    pub struct G04Params {
    }
}

impl Invariant for G04 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, _params: &Params) -> String {
        "No queued row's backlog_metadata contains a token with a known secret prefix (sk-, \
           ghp_, github_pat_, xoxb-, AKIA, AIza, ...); only the pattern name is reported.".to_owned()
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
            "6d7e8f9012345678",
            "credential_in_metadata",
            "queued execution 6d7e8f9012345678 of agent agent-0031 carries a credential in its backlog metadata (aws_access_key, github_pat)",
            json!({"execution_id": "6d7e8f9012345678", "agent": "agent-0031", "patterns": ["aws_access_key", "github_pat"]}),
        )]
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        input
            .sql
            .executions
            .iter()
            .filter(|row| row.phase == Phase::Queued)
            .filter_map(|row| {
                let backlog = row.backlog.as_ref()?;
                if backlog.secret_patterns.is_empty() {
                    return None;
                }
                let mut patterns: Vec<&str> =
                    backlog.secret_patterns.iter().map(String::as_str).collect();
                patterns.sort_unstable();
                patterns.dedup();
                Some(input.violation(
                    &META,
                    row.id.as_str(),
                    "credential_in_metadata",
                    format!(
                        "queued execution {} of agent {} carries a credential in its backlog \
                         metadata ({})",
                        row.id,
                        row.agent_name,
                        patterns.join(", ")
                    ),
                    json!({
                        "execution_id": row.id,
                        "agent": row.agent_name,
                        "patterns": patterns,
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
    use crate::violation::Severity;

    fn with_patterns(patterns: &[&str]) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new().agent("a").queued("e1", "a", T0);
        b.last_execution().backlog = Some(Backlog {
            json: BacklogJson::Valid,
            secret_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        });
        b
    }

    #[test]
    fn clean_metadata_holds() {
        assert!(run("G-04", &with_patterns(&[]).build()).is_empty());
    }

    #[test]
    fn fires_critical_with_pattern_names_only() {
        let v = run(
            "G-04",
            &with_patterns(&["github_pat", "aws_access_key", "github_pat"]).build(),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].signal, "credential_in_metadata");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(
            v[0].observed_state["patterns"],
            serde_json::json!(["aws_access_key", "github_pat"])
        );
    }

    #[test]
    fn only_queued_rows_are_judged() {
        let mut b = SnapshotBuilder::new().agent("a").running("e1", "a", T0);
        b.last_execution().backlog = Some(Backlog {
            json: BacklogJson::Valid,
            secret_patterns: vec!["openai".to_owned()],
        });
        assert!(run("G-04", &b.build()).is_empty());
    }

    #[test]
    fn unknown_without_the_metadata_column() {
        let snap = SnapshotBuilder::new()
            .missing_field(Field::ExecBacklogMetadata)
            .build();
        let only = ["G-04".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Default::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["G-04"], crate::Outcome::Unknown);
    }
}
