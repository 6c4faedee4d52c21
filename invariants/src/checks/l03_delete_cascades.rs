//! **L-03 Delete cascades** — tier A; needs SQLite and Redis.
//!
//! Rule: no row of an agent-keyed table (the configured cascade list: sharing, schedules, skills,
//! tags, files, links, reports, non-terminal executions, active chat sessions, pending operator
//! queue and access requests, agent-scoped API keys) references an agent absent from the roster,
//! and no slot key exists for such an agent. Soft-deleted agents are in the roster: their child rows
//! legitimately remain until purge. The collector reads a slot-set agent absent from the roster
//! again after the slot sets, so an agent created and claimed between its SQL read and its slot
//! read is judged as listed (the daemon's `collect::sql::recheck`).
//!
//! Severity: critical when live orchestration is involved (non-terminal execution rows, a slot
//! key: per the cascade list's severities), major otherwise; a configured override replaces both.
//! One violation per absent agent, listing every table with its row count.
//!
//! Guards: an agent delete that forgot a table, or raced a dispatcher that re-created a row or a
//! slot after the delete. The SQL side is an anti-join done by the collector.

use std::collections::BTreeMap;

use serde_json::json;

use crate::params::{Params, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::lookup::{self, LookupSet};
use crate::snapshot::Source;
use crate::violation::{Severity, Tier, Violation};

/// L-03.
#[derive(Debug)]
pub struct L03;

static META: InvariantMeta = InvariantMeta {
    id: "L-03",
    name: "Delete cascades",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Sqlite), Need::Source(Source::Redis)],
    guards: "Agent deletes that miss a table, or race a dispatcher that re-creates rows or slots.",
    runbook: "Compare the listed tables with the platform's delete routine; purge the orphans \
              (and the slot key) once the missing step is fixed.",
};

invariant_params! {
    /// L-03 parameters.
    pub struct L03Params {
    }
}

#[derive(Default)]
struct Orphan<'a> {
    tables: BTreeMap<&'a str, u64>,
    slot_key: bool,
    severity: Option<Severity>,
}

impl Invariant for L03 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, _params: &Params) -> String {
        "No agent-keyed row and no slot key references an agent absent from the roster.".to_owned()
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
            "agent-0666",
            "orphan_rows_and_slot_key",
            "agent agent-0666 is not in the roster but 5 row(s) in 2 table(s) and its slot key still reference it",
            json!({"agent": "agent-0666", "tables": {"agent_sharing": 2, "agent_tags": 3}, "slot_key": true}),
        )]
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let mut roster: LookupSet<&str> = lookup::set(input.sql.agents.len());
        roster.extend(input.sql.agents.iter().map(|a| a.name.as_str()));
        let mut orphans: BTreeMap<&str, Orphan<'_>> = BTreeMap::new();
        for rows in input
            .sql
            .orphans
            .iter()
            .filter(|o| !roster.contains(o.agent_name.as_str()))
        {
            let o = orphans.entry(rows.agent_name.as_str()).or_default();
            let count = o.tables.entry(rows.table.as_str()).or_default();
            *count = count.saturating_add(rows.rows);
            o.severity = o.severity.max(Some(rows.severity));
        }
        for set in input
            .redis
            .slot_sets
            .iter()
            .filter(|s| !roster.contains(s.agent_name.as_str()))
        {
            let o = orphans.entry(set.agent_name.as_str()).or_default();
            o.slot_key = true;
            o.severity = Some(Severity::Critical);
        }

        let severity_override = input.params.severity_override(META.id);
        orphans
            .into_iter()
            .map(|(agent, o)| {
                let rows = o
                    .tables
                    .values()
                    .fold(0u64, |acc, n| acc.saturating_add(*n));
                let signal = match (o.tables.is_empty(), o.slot_key) {
                    (false, false) => "orphan_rows",
                    (true, true) => "orphan_slot_key",
                    _ => "orphan_rows_and_slot_key",
                };
                let mut v = input.violation(
                    &META,
                    agent,
                    signal,
                    format!(
                        "agent {agent} is not in the roster but {rows} row(s) in {} table(s){} \
                         still reference it",
                        o.tables.len(),
                        if o.slot_key { " and its slot key" } else { "" }
                    ),
                    json!({ "agent": agent, "tables": o.tables, "slot_key": o.slot_key }),
                );
                v.severity = severity_override.or(o.severity).unwrap_or(META.severity);
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::params::Params;
    use crate::snapshot::Source;
    use crate::testing::{SnapshotBuilder, T0, run, run_with};
    use crate::violation::Severity;

    #[test]
    fn holds_when_every_reference_is_known() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .slot("a", "e1", T0)
            .running("e1", "a", T0)
            .build();
        assert!(run("L-03", &snap).is_empty());
    }

    #[test]
    fn orphan_rows_in_plain_tables_are_major() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .orphan("agent_tags", "gone", 2, Severity::Major)
            .orphan("agent_sharing", "gone", 1, Severity::Major)
            .build();
        let v = run("L-03", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "gone");
        assert_eq!(v[0].severity, Severity::Major);
        assert_eq!(v[0].signal, "orphan_rows");
        assert_eq!(v[0].observed_state["tables"]["agent_tags"], 2);
    }

    #[test]
    fn live_execution_rows_make_it_critical() {
        let snap = SnapshotBuilder::new()
            .orphan("agent_tags", "gone", 1, Severity::Major)
            .orphan("schedule_executions", "gone", 1, Severity::Critical)
            .build();
        assert_eq!(run("L-03", &snap)[0].severity, Severity::Critical);
    }

    #[test]
    fn slot_key_of_an_absent_agent_is_critical() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .slot("gone", "e1", T0)
            .build();
        let v = run("L-03", &snap);
        assert_eq!(v[0].signal, "orphan_slot_key");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].observed_state["slot_key"], true);
    }

    #[test]
    fn soft_deleted_agents_are_known() {
        let snap = SnapshotBuilder::new()
            .deleted_agent("old")
            .orphan("agent_tags", "old", 3, Severity::Major)
            .slot("old", "e1", T0)
            .build();
        assert!(run("L-03", &snap).is_empty());
    }

    #[test]
    fn severity_override_replaces_the_split() {
        let mut params = Params::default();
        params.l03.severity = Some(Severity::Minor);
        let snap = SnapshotBuilder::new().slot("gone", "e1", T0).build();
        let v = run_with("L-03", &snap, &Default::default(), &params);
        assert_eq!(v[0].severity, Severity::Minor);
    }

    #[test]
    fn unknown_when_redis_is_down() {
        let snap = SnapshotBuilder::new()
            .unavailable(Source::Redis)
            .orphan("agent_tags", "gone", 1, Severity::Major)
            .build();
        let only = ["L-03".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Params::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["L-03"], crate::Outcome::Unknown);
    }
}
