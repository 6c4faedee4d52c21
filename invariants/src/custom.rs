//! Operator-defined SQL invariants (DESIGN §5 "Custom SQL invariants"), the pure half.
//!
//! The daemon runs each configured `SELECT` on its read-only platform connection and carries
//! what came back as data in [`Snapshot::custom`](crate::Snapshot::custom): one
//! [`CustomResult`] per selected custom invariant, holding its spec (id, name, tier, severity)
//! and either the returned rows or why they could not be read. [`judge`] turns one result into
//! an outcome and violations; `evaluate` calls it after the built-in catalog, so the property
//! tests (no panic, determinism under shuffling) cover custom invariants too.
//!
//! Rules:
//! - every returned row is one violation; its columns are the `observed_state` object;
//! - the subject is the row's `subject` column when present and not null (as text), else a
//!   stable derivation of the row itself ([`derived_subject`]): the same row gives the same
//!   subject every cycle, so trends and transitions line up whatever order SQLite returns rows;
//! - the summary is the row's `summary` column when present, else a generic line naming the
//!   invariant;
//! - rows that could not be read (SQLite down, statement rejected, time limit hit) make the
//!   outcome *unknown* with the reason: never red, never green.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::violation::{Outcome, Severity, Tier, Violation};

/// One row: column name → value (SQLite types mapped to JSON by the collector).
pub type CustomRow = BTreeMap<String, Value>;

/// The signal of every custom violation.
pub const CUSTOM_SIGNAL: &str = "custom_row";

/// Longest derived subject kept verbatim; longer ones are cut and suffixed with a hash.
const SUBJECT_MAX: usize = 200;

/// What the collector read for one custom invariant, plus the spec needed to judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomResult {
    /// The operator's id (never a catalog id: configuration validation refuses those).
    pub id: String,
    /// Short human name.
    pub name: String,
    /// A or B.
    pub tier: Tier,
    /// Severity of every violation it reports.
    pub severity: Severity,
    /// The rows the statement returned, or why it could not run (short, secret-free).
    pub rows: Result<Vec<CustomRow>, String>,
    /// The statement returned more rows than its limit; only the first `row_limit` are here.
    #[serde(default)]
    pub truncated: bool,
}

/// The judgement of one custom result.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomJudgement {
    /// Green (no row), red (≥ 1 row) or unknown (rows unreadable).
    pub outcome: Outcome,
    /// One per row, sorted so the output does not depend on row order.
    pub violations: Vec<Violation>,
    /// Why the outcome is unknown.
    pub unknown_reason: Option<String>,
}

/// Judges one custom result. Total: any row shape is accepted.
pub fn judge(result: &CustomResult) -> CustomJudgement {
    let rows = match &result.rows {
        Ok(rows) => rows,
        Err(reason) => {
            return CustomJudgement {
                outcome: Outcome::Unknown,
                violations: Vec::new(),
                unknown_reason: Some(reason.clone()),
            };
        }
    };
    let mut keyed: Vec<(String, Violation)> = rows
        .iter()
        .map(|row| {
            let observed = Value::Object(row.clone().into_iter().collect());
            // Serializing a JSON value cannot fail; the empty fallback only keeps this total.
            let canonical = serde_json::to_string(&observed).unwrap_or_default();
            let violation = Violation {
                invariant_id: result.id.clone(),
                tier: result.tier,
                severity: result.severity,
                subject: subject_of(row, &canonical),
                summary: summary_of(row, &result.name),
                observed_state: observed,
                signal: CUSTOM_SIGNAL.to_owned(),
            };
            (canonical, violation)
        })
        .collect();
    // Full key (the canonical row last), so equal subjects and summaries still sort the same way
    // whatever order the rows came in.
    keyed.sort_by(|(ca, a), (cb, b)| {
        (&a.subject, &a.summary, ca).cmp(&(&b.subject, &b.summary, cb))
    });
    let violations: Vec<Violation> = keyed.into_iter().map(|(_, v)| v).collect();
    let outcome = if violations.is_empty() {
        Outcome::Green
    } else {
        Outcome::Red
    };
    CustomJudgement {
        outcome,
        violations,
        unknown_reason: None,
    }
}

/// The `subject` column as text when present and not null, else [`derived_subject`].
fn subject_of(row: &CustomRow, canonical: &str) -> String {
    match row.get("subject") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => derived_subject(canonical),
        Some(other) => other.to_string(),
    }
}

/// A subject derived from the row's canonical JSON (keys sorted): the JSON itself when short,
/// else its first characters plus a 64-bit FNV-1a hash of the whole, so it stays stable across
/// cycles and distinct for distinct rows.
pub fn derived_subject(canonical: &str) -> String {
    if canonical.chars().count() <= SUBJECT_MAX {
        return canonical.to_owned();
    }
    let mut out: String = canonical.chars().take(SUBJECT_MAX - 20).collect();
    let _ = write!(out, "…#{:016x}", fnv1a64(canonical.as_bytes()));
    out
}

/// 64-bit FNV-1a: tiny, dependency-free and stable across builds and platforms (unlike std's
/// `DefaultHasher`, whose output is not specified).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn summary_of(row: &CustomRow, name: &str) -> String {
    match row.get("summary") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => format!("{name}: the check query returned this row"),
        Some(Value::String(_)) => format!("{name}: the check query returned this row"),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(rows: Result<Vec<CustomRow>, String>) -> CustomResult {
        CustomResult {
            id: "C-01".to_owned(),
            name: "Perm edges live".to_owned(),
            tier: Tier::A,
            severity: Severity::Major,
            rows,
            truncated: false,
        }
    }

    fn row(pairs: &[(&str, Value)]) -> CustomRow {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn no_rows_is_green_and_an_error_is_unknown() {
        let green = judge(&result(Ok(vec![])));
        assert_eq!(green.outcome, Outcome::Green);
        assert!(green.violations.is_empty());
        let unknown = judge(&result(Err("interrupted after 2s".to_owned())));
        assert_eq!(unknown.outcome, Outcome::Unknown);
        assert_eq!(
            unknown.unknown_reason.as_deref(),
            Some("interrupted after 2s")
        );
    }

    #[test]
    fn each_row_is_a_violation_named_by_its_subject_column() {
        let rows = vec![
            row(&[("subject", json!("agent-b")), ("n", json!(2))]),
            row(&[
                ("subject", json!("agent-a")),
                ("summary", json!("3 edges to a deleted agent")),
            ]),
        ];
        let j = judge(&result(Ok(rows)));
        assert_eq!(j.outcome, Outcome::Red);
        let subjects: Vec<_> = j.violations.iter().map(|v| v.subject.as_str()).collect();
        assert_eq!(subjects, ["agent-a", "agent-b"]);
        let first = &j.violations[0];
        assert_eq!(first.summary, "3 edges to a deleted agent");
        assert_eq!(first.invariant_id, "C-01");
        assert_eq!(first.severity, Severity::Major);
        assert_eq!(first.signal, CUSTOM_SIGNAL);
        assert_eq!(
            j.violations[1].summary,
            "Perm edges live: the check query returned this row"
        );
        assert_eq!(j.violations[1].observed_state["n"], json!(2));
    }

    #[test]
    fn derived_subjects_are_stable_and_bounded() {
        let r = row(&[("agent_name", json!("x")), ("id", json!(7))]);
        let j = judge(&result(Ok(vec![r])));
        assert_eq!(j.violations[0].subject, r#"{"agent_name":"x","id":7}"#);
        let long = "y".repeat(500);
        let a = derived_subject(&long);
        assert_eq!(a, derived_subject(&long));
        assert!(a.chars().count() <= SUBJECT_MAX);
        assert_ne!(a, derived_subject(&format!("{long}z")));
        // Non-string subject columns are rendered as JSON text.
        let j = judge(&result(Ok(vec![row(&[("subject", json!(42))])])));
        assert_eq!(j.violations[0].subject, "42");
    }

    #[test]
    fn row_order_does_not_change_the_output() {
        let a = row(&[("subject", json!("s")), ("v", json!(1))]);
        let b = row(&[("subject", json!("s")), ("v", json!(2))]);
        let one = judge(&result(Ok(vec![a.clone(), b.clone()])));
        let two = judge(&result(Ok(vec![b, a])));
        assert_eq!(one, two);
    }
}
