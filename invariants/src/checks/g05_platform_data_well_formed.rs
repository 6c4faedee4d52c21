//! **G-05 Platform data well-formed** — tier A, major; needs SQLite and Redis.
//!
//! Rule: every key, member, score, field and row canary reads is interpretable. The collector
//! carries what it cannot interpret as an [`Anomaly`] with a kind; the kinds that only a platform
//! bug (or a hand edit) produces are findings here, one violation per malformed key or row
//! (subject = the key or row reference, made printable and bounded; signal = the reason code; the
//! raw offending value is never carried, neither in the summary nor in the evidence):
//! `key_not_utf8`, `wrong_type`, `member_not_utf8`, `score_not_finite`, `timeout_not_integer`,
//! `drain_tick_unparseable`, `null_id`, `null_agent`, `null_status`, `not_integer`,
//! `timestamp_unparseable`. Kinds listed in `ignore_kinds` (default none) are not judged.
//!
//! Not judged, because the platform's normal operation or canary's own configuration produces
//! them, not malformed data: `server_error` (a per-command error other than `WRONGTYPE`: access
//! rules, a loading server), `unexpected_reply`, `cascade_column_missing` (schema vs
//! configuration), `custom_truncated` (an operator's row limit), `other`.
//!
//! Unknown: an unreadable source yields no anomalies, so "no anomaly" from it would be a guess.
//! G-05 needs both sources: when either is unavailable it is *unknown* (never green, never
//! resolving an open red), and the blind source is H-01's (and the blind alert's) business.
//!
//! Guards: platform writes that store garbage (a slot key of the wrong type, a non-UTF-8 member,
//! an `inf` score, a row without its id, agent or status, an unreadable timestamp). Every other
//! invariant skips such data rather than guessing, so without this rule it is reported green.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, Problems, invariant_params};
use crate::snapshot::{Anomaly, AnomalyKind, Source};
use crate::violation::{Severity, Tier, Violation};

/// G-05.
#[derive(Debug)]
pub struct G05;

static META: InvariantMeta = InvariantMeta {
    id: "G-05",
    name: "Platform data well-formed",
    tier: Tier::A,
    severity: Severity::Major,
    needs: &[Need::Source(Source::Sqlite), Need::Source(Source::Redis)],
    guards: "Platform writes that store data canary (and every other invariant) cannot \
             interpret: wrong key types, non-UTF-8 members, non-finite scores, rows without \
             id, agent or status, unreadable timestamps.",
    runbook: "Inspect the key or row named in the subject (the reason code says what is wrong \
              with it); find the platform path that wrote it, then repair or remove the value.",
};

invariant_params! {
    /// G-05 parameters.
    pub struct G05Params {
        /// Reason codes not judged (e.g. `timestamp_unparseable` on a platform known to write
        /// odd timestamps); each must be one of the judged codes.
        ignore_kinds: Vec<String> = Vec::new(),
    }
}

/// The anomaly kinds that are malformed platform data, with the words of their summary.
const JUDGED: &[(AnomalyKind, &str)] = &[
    (AnomalyKind::KeyNotUtf8, "key name is not UTF-8"),
    (AnomalyKind::WrongType, "key holds the wrong Redis type"),
    (AnomalyKind::MemberNotUtf8, "slot member is not UTF-8"),
    (AnomalyKind::ScoreNotFinite, "slot score is not a finite unix time"),
    (AnomalyKind::TimeoutNotInteger, "timeout field is not an integer"),
    (AnomalyKind::DrainTickUnparseable, "drain heartbeat is not a unix time"),
    (AnomalyKind::NullId, "row without an id"),
    (AnomalyKind::NullAgent, "row without an agent name"),
    (AnomalyKind::NullStatus, "row without a status"),
    (AnomalyKind::NotInteger, "column is not an integer"),
    (AnomalyKind::TimestampUnparseable, "timestamp cannot be parsed"),
    (
        AnomalyKind::SlotSetTruncated,
        "slot set too large to read whole (only its first members were judged)",
    ),
];

/// The longest subject kept (keys and row references are platform data: bounded).
const MAX_SUBJECT_CHARS: usize = 160;

fn judged(kind: AnomalyKind) -> Option<&'static str> {
    JUDGED
        .iter()
        .find_map(|(k, words)| (*k == kind).then_some(*words))
}

/// The subject as text that is safe to show and store: printable, bounded.
fn safe_subject(anomaly: &Anomaly) -> String {
    let mut out: String = anomaly
        .subject
        .chars()
        .take(MAX_SUBJECT_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if anomaly.subject.chars().nth(MAX_SUBJECT_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl Invariant for G05 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        let codes: Vec<&str> = JUDGED
            .iter()
            .map(|(k, _)| k.code())
            .filter(|c| !params.g05.ignore_kinds.iter().any(|i| i == c))
            .collect();
        let ignored = if params.g05.ignore_kinds.is_empty() {
            String::new()
        } else {
            format!(" ({} not judged)", params.g05.ignore_kinds.join(", "))
        };
        format!(
            "Every slot key, member, score, metadata field and roster, execution or schedule \
             row canary reads can be interpreted; each malformed key or row is one violation \
             with its reason code: {}{ignored}.",
            codes.join(", ")
        )
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use crate::violation::Severity::Major;
        let id = META.id;
        vec![
            v(
                id,
                Major,
                "agent:slots:agent-0042",
                "wrong_type",
                "redis agent:slots:agent-0042: key holds the wrong Redis type",
                json!({"source": "redis", "reasons": ["wrong_type"]}),
            ),
            v(
                id,
                Major,
                "schedule_executions.9f8e7d6c.started_at",
                "timestamp_unparseable",
                "sqlite schedule_executions.9f8e7d6c.started_at: timestamp cannot be parsed",
                json!({"source": "sqlite", "reasons": ["timestamp_unparseable"]}),
            ),
        ]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        for code in &params.g05.ignore_kinds {
            if !JUDGED.iter().any(|(k, _)| k.code() == code) {
                let known: Vec<&str> = JUDGED.iter().map(|(k, _)| k.code()).collect();
                problems.push(
                    "ignore_kinds",
                    format!("unknown reason code {code:?} (one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let ignore = &input.params.g05.ignore_kinds;
        // One violation per malformed key or row: kinds seen on the same subject are merged.
        let mut by_subject: BTreeMap<(Source, String), BTreeSet<AnomalyKind>> = BTreeMap::new();
        for anomaly in &input.snapshot.anomalies {
            if judged(anomaly.kind).is_none() || ignore.iter().any(|c| c == anomaly.kind.code()) {
                continue;
            }
            by_subject
                .entry((anomaly.source, safe_subject(anomaly)))
                .or_default()
                .insert(anomaly.kind);
        }
        by_subject
            .into_iter()
            .filter_map(|((source, subject), kinds)| {
                let first = *kinds.iter().next()?;
                let words = judged(first)?;
                let reasons: Vec<&str> = kinds.iter().map(|k| k.code()).collect();
                Some(input.violation(
                    &META,
                    subject.as_str(),
                    first.code(),
                    format!("{} {subject}: {words}", source.as_str()),
                    json!({"source": source, "reasons": reasons}),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Invariant;
    use crate::snapshot::{AnomalyKind, Source};
    use crate::testing::{SnapshotBuilder, run, run_with};
    use crate::{Memory, Outcome, Params};

    fn with(kind: AnomalyKind, source: Source, subject: &str) -> crate::Snapshot {
        SnapshotBuilder::new()
            .anomaly(source, kind, subject, "note with the raw value \"hello\"")
            .build()
    }

    #[test]
    fn a_clean_snapshot_holds() {
        assert!(run("G-05", &SnapshotBuilder::new().slot("a", "e1", crate::testing::T0).build()).is_empty());
    }

    #[test]
    fn a_wrong_type_slot_key_fires_without_its_value() {
        let v = run("G-05", &with(AnomalyKind::WrongType, Source::Redis, "agent:slots:a"));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "agent:slots:a");
        assert_eq!(v[0].signal, "wrong_type");
        assert_eq!(v[0].severity, crate::Severity::Major);
        let all = format!("{} {}", v[0].summary, v[0].observed_state);
        assert!(!all.contains("hello"), "{all}");
    }

    #[test]
    fn every_judged_kind_fires_and_the_others_do_not() {
        for (kind, _) in super::JUDGED {
            let v = run("G-05", &with(*kind, Source::Sqlite, "t.1.c"));
            assert_eq!(v.len(), 1, "{kind:?}");
            assert_eq!(v[0].signal, kind.code());
        }
        for kind in AnomalyKind::ALL {
            if super::judged(kind).is_none() {
                assert!(run("G-05", &with(kind, Source::Redis, "k")).is_empty(), "{kind:?}");
            }
        }
    }

    #[test]
    fn one_violation_per_key_however_many_members_are_bad() {
        let snap = SnapshotBuilder::new()
            .anomaly(Source::Redis, AnomalyKind::MemberNotUtf8, "agent:slots:a", "x")
            .anomaly(Source::Redis, AnomalyKind::MemberNotUtf8, "agent:slots:a", "y")
            .anomaly(Source::Redis, AnomalyKind::WrongType, "agent:slots:b", "z")
            .build();
        let v = run("G-05", &snap);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn subjects_are_printable_and_bounded() {
        let long = format!("k\u{1b}[31m{}", "x".repeat(500));
        let v = run("G-05", &with(AnomalyKind::KeyNotUtf8, Source::Redis, &long));
        assert_eq!(v.len(), 1);
        assert!(!v[0].subject.chars().any(char::is_control));
        assert!(v[0].subject.chars().count() <= super::MAX_SUBJECT_CHARS + 1);
    }

    #[test]
    fn ignored_kinds_are_not_judged_and_unknown_codes_are_refused() {
        let mut params = Params::default();
        params.g05.ignore_kinds = vec!["timestamp_unparseable".to_owned()];
        let snap = with(AnomalyKind::TimestampUnparseable, Source::Sqlite, "t.1.c");
        assert!(run_with("G-05", &snap, &Memory::default(), &params).is_empty());
        assert!(super::G05.rule(&params).contains("timestamp_unparseable not judged"));
        params.g05.ignore_kinds = vec!["bogus".to_owned()];
        let problems = crate::catalog::validate(&params);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path(), "invariants.G-05.ignore_kinds");
    }

    #[test]
    fn an_unavailable_source_makes_it_unknown() {
        for source in [Source::Redis, Source::Sqlite] {
            let snap = SnapshotBuilder::new()
                .anomaly(Source::Sqlite, AnomalyKind::NullId, "t.id", "x")
                .unavailable(source)
                .build();
            let only = ["G-05".to_owned()];
            let eval = crate::evaluate(
                &snap,
                &Memory::default(),
                &Params::default(),
                crate::Selection::Only(&only),
            );
            assert_eq!(eval.outcomes["G-05"], Outcome::Unknown, "{source:?}");
        }
    }
}
