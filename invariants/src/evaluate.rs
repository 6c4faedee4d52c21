//! `evaluate`: runs the selected invariants over one snapshot. Pure and deterministic: the same
//! snapshot, memory and params give the same outcomes, the same (sorted) violations and the same
//! next memory, whatever the order of the snapshot's vectors.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{self, CATALOG, Input, Invariant, Need};
use crate::custom::{self, CustomResult};
use crate::memory::Memory;
use crate::params::Params;
use crate::snapshot::{Snapshot, Source};
use crate::violation::{Outcome, Severity, Violation};

/// Which invariants a cycle runs.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every enabled invariant.
    AllEnabled,
    /// Exactly these ids (already validated against the catalog; unknown ids are ignored here).
    Only(&'a [String]),
}

impl Selection<'_> {
    fn includes(&self, id: &str, params: &Params) -> bool {
        match self {
            Selection::AllEnabled => params.enabled(id),
            Selection::Only(ids) => ids.iter().any(|wanted| wanted == id),
        }
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Ids of the invariants that were selected (evaluated or unknown), in id order.
    pub checks_run: Vec<String>,
    /// Outcome per selected invariant.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Highest violation severity per red invariant.
    pub severities: BTreeMap<String, Severity>,
    /// Why each unknown invariant could not be evaluated.
    pub unknown_reasons: BTreeMap<String, String>,
    /// Invariants not run because a source they need is not configured (`platform.docker`
    /// absent), with the reason. They are not in `checks_run` nor `outcomes`: *not configured*
    /// is a choice of the operator, *unknown* is a failure to read.
    pub not_configured: BTreeMap<String, String>,
    /// Every violation, sorted by invariant id, subject, signal; after
    /// [`Evaluation::cap_violations`] only the first `max` of each invariant.
    pub violations: Vec<Violation>,
    /// How many violations each red invariant found: the full count, kept when
    /// [`Evaluation::cap_violations`] drops evidence (so a cap never changes what is reported).
    pub violation_counts: BTreeMap<String, u64>,
    /// Memory to carry into the next cycle. Entries owned by invariants that were not evaluated
    /// this cycle are carried over untouched.
    pub memory: Memory,
}

/// Runs the selected invariants over `snapshot`, keeping every violation.
pub fn evaluate(
    snapshot: &Snapshot,
    memory: &Memory,
    params: &Params,
    selection: Selection<'_>,
) -> Evaluation {
    evaluate_capped(snapshot, memory, params, selection, usize::MAX)
}

/// [`evaluate`] keeping at most `max_per_invariant` violations of each invariant as evidence
/// (the first in sorted order; [`Evaluation::violation_counts`] keeps the full counts). Each
/// invariant's list is capped as soon as it is checked, so a flood on one invariant is held in
/// memory once, not once per invariant on top of all the others.
pub fn evaluate_capped(
    snapshot: &Snapshot,
    memory: &Memory,
    params: &Params,
    selection: Selection<'_>,
    max_per_invariant: usize,
) -> Evaluation {
    let input = Input::new(snapshot, memory, params);
    let mut next_memory = memory.clone();
    let mut eval = Evaluation {
        checks_run: Vec::new(),
        outcomes: BTreeMap::new(),
        severities: BTreeMap::new(),
        unknown_reasons: BTreeMap::new(),
        not_configured: BTreeMap::new(),
        violations: Vec::new(),
        violation_counts: BTreeMap::new(),
        memory: Memory::default(),
    };

    for invariant in CATALOG.iter().copied() {
        let meta = invariant.meta();
        if !selection.includes(meta.id, params) {
            continue;
        }
        if let Some(source) = unconfigured_need(invariant, snapshot) {
            eval.not_configured.insert(
                meta.id.to_owned(),
                format!("source {} not configured", source.as_str()),
            );
            continue;
        }
        eval.checks_run.push(meta.id.to_owned());
        if let Some(reason) = missing_need(invariant, snapshot) {
            eval.outcomes.insert(meta.id.to_owned(), Outcome::Unknown);
            eval.unknown_reasons.insert(meta.id.to_owned(), reason);
            continue;
        }
        let found = invariant.check(&input);
        invariant.remember(&input, &mut next_memory);
        // A definite finding outranks a partial view; without one, a partly unreadable source
        // (one sick container) is unknown, never a silent green.
        let outcome = if !found.is_empty() {
            Outcome::Red
        } else if let Some(reason) = invariant.unreadable(&input) {
            eval.unknown_reasons.insert(meta.id.to_owned(), reason);
            Outcome::Unknown
        } else {
            Outcome::Green
        };
        if let Some(worst) = found.iter().map(|v| v.severity).max() {
            eval.severities.insert(meta.id.to_owned(), worst);
        }
        eval.outcomes.insert(meta.id.to_owned(), outcome);
        keep(&mut eval, found, max_per_invariant);
    }
    evaluate_custom(snapshot, selection, &mut eval, max_per_invariant);

    eval.checks_run.sort();
    eval.violations
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    eval.memory = next_memory;
    eval
}

/// Counts one invariant's violations, then keeps the first `max` in sorted order.
fn keep(eval: &mut Evaluation, mut found: Vec<Violation>, max: usize) {
    if found.is_empty() {
        return;
    }
    // A check may (wrongly) report under another id; count each under its own.
    for v in &found {
        *eval
            .violation_counts
            .entry(v.invariant_id.clone())
            .or_insert(0) += 1;
    }
    if found.len() > max {
        found.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        found.truncate(max);
        found.shrink_to_fit();
    }
    eval.violations.append(&mut found);
}

impl Evaluation {
    /// Keeps the first `max` violations of each invariant (in the sorted order, so the choice is
    /// deterministic) and drops the rest of the evidence. Counts, outcomes and severities were
    /// taken from the full list and stay as they are: a cap hides evidence, never a finding.
    pub fn cap_violations(&mut self, max: usize) {
        let mut kept: BTreeMap<String, usize> = BTreeMap::new();
        self.violations.retain(|v| {
            let n = kept.entry(v.invariant_id.clone()).or_insert(0);
            *n += 1;
            *n <= max
        });
    }

    /// Violations found this cycle, all invariants together (the full count, not the shown one).
    pub fn violation_total(&self) -> u64 {
        self.violation_counts.values().sum()
    }

    /// How many violations of `invariant_id` are kept as evidence (at most the count).
    pub fn shown(&self, invariant_id: &str) -> u64 {
        let n = self
            .violations
            .iter()
            .filter(|v| v.invariant_id == invariant_id)
            .count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// Judges the operator-defined SQL invariants carried in the snapshot (see [`crate::custom`]).
/// The collector only runs enabled (or explicitly asked-for) ones, so `AllEnabled` takes every
/// result present. An id that is also a catalog id is ignored (the built-in one was judged above);
/// an id present twice is unknown, whatever the order of the entries.
fn evaluate_custom(
    snapshot: &Snapshot,
    selection: Selection<'_>,
    eval: &mut Evaluation,
    max_per_invariant: usize,
) {
    let mut by_id: BTreeMap<&str, Vec<&CustomResult>> = BTreeMap::new();
    for result in &snapshot.custom {
        by_id.entry(result.id.as_str()).or_default().push(result);
    }
    for (id, results) in by_id {
        let included = match selection {
            Selection::AllEnabled => true,
            Selection::Only(ids) => ids.iter().any(|wanted| wanted == id),
        };
        if !included || catalog::find(id).is_some() {
            continue;
        }
        eval.checks_run.push(id.to_owned());
        let unknown = |eval: &mut Evaluation, reason: String| {
            eval.outcomes.insert(id.to_owned(), Outcome::Unknown);
            eval.unknown_reasons.insert(id.to_owned(), reason);
        };
        let [result] = results.as_slice() else {
            unknown(
                eval,
                "custom invariant id appears more than once".to_owned(),
            );
            continue;
        };
        if !snapshot.has(Source::Sqlite) {
            unknown(
                eval,
                format!("source {} unavailable", Source::Sqlite.as_str()),
            );
            continue;
        }
        let mut judged = custom::judge(result);
        if let Some(reason) = judged.unknown_reason {
            unknown(eval, reason);
            continue;
        }
        if let Some(worst) = judged.violations.iter().map(|v| v.severity).max() {
            eval.severities.insert(id.to_owned(), worst);
        }
        eval.outcomes.insert(id.to_owned(), judged.outcome);
        keep(
            eval,
            std::mem::take(&mut judged.violations),
            max_per_invariant,
        );
    }
}

/// The first source an invariant needs that the configuration leaves out.
fn unconfigured_need(invariant: &dyn Invariant, snapshot: &Snapshot) -> Option<Source> {
    invariant.meta().needs.iter().find_map(|need| match need {
        Need::Source(source) if snapshot.is_not_configured(*source) => Some(*source),
        _ => None,
    })
}

/// The first unmet need of an invariant, as a human reason.
fn missing_need(invariant: &dyn Invariant, snapshot: &Snapshot) -> Option<String> {
    invariant.meta().needs.iter().find_map(|need| match need {
        Need::Source(source) if !snapshot.has(*source) => {
            Some(format!("source {} unavailable", source.as_str()))
        }
        Need::Field(field) => snapshot
            .sql
            .as_ref()
            .filter(|sql| sql.missing_fields.contains(field))
            .map(|_| format!("column for {field:?} missing from the platform schema")),
        Need::Source(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Source;
    use crate::testing::{SnapshotBuilder, T0};

    #[test]
    fn every_catalog_entry_is_evaluated_by_default() {
        let eval = evaluate(
            &SnapshotBuilder::new().build(),
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        let mut every_id: Vec<&str> = catalog::ids().collect();
        every_id.sort_unstable();
        assert_eq!(eval.checks_run, every_id);
        assert!(eval.outcomes.values().all(|o| *o == Outcome::Green));
    }

    #[test]
    fn a_dead_source_makes_its_dependents_unknown_never_green() {
        let snap = SnapshotBuilder::new().unavailable(Source::Redis).build();
        let eval = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        assert_eq!(eval.outcomes["S-01"], Outcome::Unknown);
        assert_eq!(eval.outcomes["S-03"], Outcome::Unknown);
        assert_eq!(eval.outcomes["L-03"], Outcome::Unknown);
        assert_eq!(eval.outcomes["E-02"], Outcome::Green);
        assert_eq!(eval.unknown_reasons["S-01"], "source redis unavailable");
    }

    #[test]
    fn disabled_invariants_do_not_run_unless_asked_for() {
        let mut params = Params::default();
        params.s03.enabled = false;
        let snap = SnapshotBuilder::new().build();
        let all = evaluate(&snap, &Memory::default(), &params, Selection::AllEnabled);
        assert!(!all.outcomes.contains_key("S-03"));
        let only = ["S-03".to_owned()];
        let asked = evaluate(&snap, &Memory::default(), &params, Selection::Only(&only));
        assert_eq!(asked.checks_run, ["S-03"]);
    }

    fn custom(id: &str, rows: Result<Vec<crate::CustomRow>, String>) -> CustomResult {
        CustomResult {
            id: id.to_owned(),
            name: "custom".to_owned(),
            tier: crate::Tier::B,
            severity: Severity::Minor,
            rows,
            truncated: false,
        }
    }

    #[test]
    fn custom_results_are_judged_beside_the_catalog() {
        let row: crate::CustomRow = [("subject".to_owned(), serde_json::json!("x"))].into();
        let mut snap = SnapshotBuilder::new().build();
        snap.custom = vec![
            custom("C-02", Err("interrupted after 2s".to_owned())),
            custom("C-01", Ok(vec![row])),
            custom("C-03", Ok(vec![])),
            custom("S-01", Ok(vec![])),
        ];
        let eval = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        assert_eq!(eval.outcomes["C-01"], Outcome::Red);
        assert_eq!(eval.severities["C-01"], Severity::Minor);
        assert_eq!(eval.outcomes["C-02"], Outcome::Unknown);
        assert_eq!(eval.unknown_reasons["C-02"], "interrupted after 2s");
        assert_eq!(eval.outcomes["C-03"], Outcome::Green);
        assert_eq!(
            eval.outcomes["S-01"],
            Outcome::Green,
            "a catalog id stays built-in"
        );
        assert!(eval.checks_run.contains(&"C-01".to_owned()));
        let only = ["C-03".to_owned()];
        let asked = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::Only(&only),
        );
        assert_eq!(asked.checks_run, ["C-03"]);

        let blind = SnapshotBuilder::new().unavailable(Source::Sqlite).build();
        let blind = Snapshot {
            custom: snap.custom.clone(),
            ..blind
        };
        let eval = evaluate(
            &blind,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        assert_eq!(eval.outcomes["C-01"], Outcome::Unknown);
        assert_eq!(eval.unknown_reasons["C-01"], "source sqlite unavailable");
    }

    #[test]
    fn red_outcome_reports_the_worst_severity() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .orphan("agent_tags", "gone", 1, Severity::Major)
            .slot("a", "e1", T0 - 60_000)
            .build();
        let eval = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        assert_eq!(eval.outcomes["L-03"], Outcome::Red);
        assert_eq!(eval.severities["L-03"], Severity::Major);
        assert_eq!(eval.severities["S-01"], Severity::Critical);
        let ids: Vec<_> = eval
            .violations
            .iter()
            .map(|v| v.invariant_id.as_str())
            .collect();
        assert_eq!(ids, ["L-03", "S-01"], "sorted by invariant id");
    }

    #[test]
    fn cap_keeps_the_first_subjects_and_every_count() {
        let mut b = SnapshotBuilder::new().agent("a");
        for i in 0..7 {
            b = b.slot_without_meta("a", &format!("e{i}"), Some(T0 - 60_000));
        }
        let snap = b.build();
        let mut eval = evaluate(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
        );
        let before: Vec<Violation> = eval.violations.clone();
        let red: Vec<String> = eval.violation_counts.keys().cloned().collect();
        assert!(!red.is_empty());
        let total = eval.violation_total();
        assert_eq!(total, u64::try_from(before.len()).unwrap());
        eval.cap_violations(2);
        for id in &red {
            let kept: Vec<&Violation> = eval
                .violations
                .iter()
                .filter(|v| &v.invariant_id == id)
                .collect();
            let first: Vec<&Violation> = before
                .iter()
                .filter(|v| &v.invariant_id == id)
                .take(2)
                .collect();
            assert_eq!(kept, first, "{id}: the first two in sorted order");
            assert_eq!(eval.shown(id), u64::try_from(kept.len()).unwrap());
        }
        assert_eq!(
            eval.violation_counts["S-04"], 7,
            "the count survives the cap"
        );
        assert_eq!(eval.violation_total(), total);
        assert_eq!(eval.shown("S-04"), 2);
        assert_eq!(eval.outcomes["S-04"], Outcome::Red);
        // Capping while evaluating gives exactly the same result.
        let capped = evaluate_capped(
            &snap,
            &Memory::default(),
            &Params::default(),
            Selection::AllEnabled,
            2,
        );
        assert_eq!(capped, eval);
    }
}
