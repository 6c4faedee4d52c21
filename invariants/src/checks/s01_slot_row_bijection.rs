//! **S-01 Slot–row bijection** — tier A, critical; needs Redis and SQLite.
//!
//! Rule: for every roster agent (soft-deleted ones included), the members of its slot set minus
//! drain sentinels equal the ids of its `running` rows minus leased rows (pull-claimed rows are
//! owned by the lease reaper and never hold a slot). Reported per agent as `in_redis_only`
//! (a slot with no running row: a leaked slot, capacity silently lost) and `in_sql_only`
//! (a running row with no slot: overbooking, the check-then-set race).
//!
//! Threshold: `grace_seconds` (3). The platform commits SQL and ZADDs a few ms apart, so an
//! `in_sql_only` id whose `started_at` is within the grace of `taken_at`, and an `in_redis_only`
//! id whose slot score is, are not reported; a real leak persists into the next cycle. Ids whose
//! timestamp is unknown (NULL or unparseable) get no grace.
//!
//! The finish race gets the same grace: the platform commits the terminal row, then releases the
//! slot a few ms later, so an `in_redis_only` id whose row is terminal with a `completed_at`
//! within the grace is not reported either. The collector makes the SQL view this check judges
//! never older than the slot-set view: its SQL read runs beside the slot-set read, and every
//! running row it returned without a slot (past the grace) is read again after the slot sets
//! (the daemon's `collect::sql::recheck`). So a finish caught mid-way always shows this way,
//! never as a running row without a slot. The fleet soak found this: without it a busy fleet
//! raised a false S-01 about once per 200 cycles.
//!
//! Agents absent from the roster are L-03's business, not this invariant's.

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::lookup::{self, LookupMap, LookupSet};
use crate::params::{Params, Problems, human_seconds_f, invariant_params, seconds_to_ms};
use crate::snapshot::{Millis, Phase, Source};
use crate::violation::{Severity, Tier, Violation};

/// S-01.
#[derive(Debug)]
pub struct S01;

static META: InvariantMeta = InvariantMeta {
    id: "S-01",
    name: "Slot–row bijection",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Redis), Need::Source(Source::Sqlite)],
    guards: "Slots never released after the row went terminal (capacity leak) and running rows \
             without a slot (check-then-set overbooking).",
    runbook: "in_redis_only: check the release path for that execution (ZREM after the terminal \
              write); in_sql_only: check the acquire path and whether two dispatchers raced.",
};

invariant_params! {
    /// S-01 parameters.
    pub struct S01Params {
        /// Ids younger than this (by `started_at` or slot score) are not reported: the platform
    /// commits SQL and ZADDs a few ms apart.
        grace_seconds: f64 = 3.0,
    }
}

impl Invariant for S01 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("For every roster agent, its slot set (minus drain sentinels) equals its running, \
                 non-leased execution rows (ids younger than {} are not judged).",
                human_seconds_f(params.s01.grace_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![
            v(
                id,
                Critical,
                "agent-0042",
                "in_redis_only",
                "agent agent-0042: 1 slot(s) without a running row, 0 running row(s) without a slot",
                json!({"agent": "agent-0042", "in_redis_only": ["9f1c2e7a4b6d8e01"], "in_sql_only": [], "slot_count": 2, "running_rows": 1}),
            ),
            v(
                id,
                Critical,
                "agent-0107",
                "in_sql_only",
                "agent agent-0107: 0 slot(s) without a running row, 1 running row(s) without a slot",
                json!({"agent": "agent-0107", "in_redis_only": [], "in_sql_only": ["3a5b7c9d1e2f4a6b"], "slot_count": 0, "running_rows": 1}),
            ),
        ]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.non_negative("grace_seconds", params.s01.grace_seconds);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let grace_ms = seconds_to_ms(input.params.s01.grace_seconds);
        let within_grace =
            |at: Option<Millis>| at.is_some_and(|at| now.saturating_sub(at) < grace_ms);

        // Roster name → a dense number, so the claims below sort by an integer first and compare
        // ids only within one agent. A name listed twice is one agent.
        let mut roster: LookupMap<&str, usize> = lookup::map(input.sql.agents.len());
        let mut names: Vec<&str> = Vec::with_capacity(input.sql.agents.len());
        for agent in &input.sql.agents {
            roster.entry(agent.name.as_str()).or_insert_with(|| {
                names.push(agent.name.as_str());
                names.len() - 1
            });
        }

        // Sized for every slot member and every row (an upper bound): growing it by doubling
        // copied the whole list a dozen times at 10 000 agents.
        let members: usize = input.redis.slot_sets.iter().map(|s| s.members.len()).sum();
        let mut claims: Vec<Claim<'_>> =
            Vec::with_capacity(members.saturating_add(input.sql.executions.len()));
        for set in &input.redis.slot_sets {
            let Some(&agent) = roster.get(set.agent_name.as_str()) else {
                continue;
            };
            for member in set.members.iter().filter(|m| !m.sentinel) {
                claims.push(Claim {
                    agent,
                    id: member.member.as_str(),
                    side: Side::Redis,
                    seq: claims.len(),
                    at: member.acquired_at_ms,
                });
            }
        }
        for row in &input.sql.executions {
            // An illegible lease is no lease (see `Execution`): such a row must hold a slot.
            if row.phase != Phase::Running || row.legible_lease().is_some() {
                continue;
            }
            let Some(&agent) = roster.get(row.agent_name.as_str()) else {
                continue;
            };
            claims.push(Claim {
                agent,
                id: row.id.as_str(),
                side: Side::Sql,
                seq: claims.len(),
                at: row.started_at_ms,
            });
        }
        let claims = grouped(claims, names.len());

        // The finish race: the terminal commit lands a few ms before the slot's release. Only
        // built when a slot is about to be reported (rare), since most cycles have none.
        let mut just_finished: Option<LookupSet<&str>> = None;
        let mut violations = Vec::new();
        for agent_claims in claims.chunk_by(|a, b| a.agent == b.agent) {
            let mut tally = Tally::default();
            for id_claims in agent_claims.chunk_by(|a, b| a.id == b.id) {
                // Runs are sorted by side then input order: the last claim of a side is its own.
                let last = |side: Side| id_claims.iter().rev().find(|c| c.side == side);
                let (redis, sql) = (last(Side::Redis), last(Side::Sql));
                tally.slot_count += usize::from(redis.is_some());
                tally.running_rows += usize::from(sql.is_some());
                match (redis, sql) {
                    (Some(slot), None) if !within_grace(slot.at) => {
                        let finished = just_finished.get_or_insert_with(|| {
                            recently_finished(input, &within_grace)
                        });
                        if !finished.contains(slot.id) {
                            tally.redis_only.push(slot.id);
                        }
                    }
                    (None, Some(row)) if !within_grace(row.at) => tally.sql_only.push(row.id),
                    _ => {}
                }
            }
            let Some(first) = agent_claims.first() else {
                continue;
            };
            let Some(&agent) = names.get(first.agent) else {
                continue;
            };
            if let Some(v) = tally.violation(input, agent) {
                violations.push(v);
            }
        }
        // Agents in name order, as before the index (evaluate sorts anyway; tests read this).
        violations.sort_by(|a, b| a.subject.cmp(&b.subject));
        violations
    }
}

/// Which store claims an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Redis,
    Sql,
}

/// One id claimed by a slot member (Redis) or a running row (SQL) of a roster agent.
#[derive(Debug, Clone, Copy)]
struct Claim<'a> {
    /// The agent's number in the roster index.
    agent: usize,
    id: &'a str,
    side: Side,
    /// Position in input order (the tie-break that keeps the last claim of a side).
    seq: usize,
    /// The timestamp that grants grace, if known.
    at: Option<Millis>,
}

/// The claims grouped by agent, and within an agent sorted by id, then side, then input order
/// (so an id claimed twice on one side keeps its last timestamp, what inserting into a map in
/// input order kept). Grouping is a counting sort on the agent's number (linear, stable): a
/// comparison sort of the whole list was most of S-01's cost at 10 000 agents, while an agent's
/// own group is a handful of claims.
fn grouped(claims: Vec<Claim<'_>>, agents: usize) -> Vec<Claim<'_>> {
    // Where each agent's group starts, then (while placing) where its next claim goes.
    let mut next = vec![0usize; agents];
    for claim in &claims {
        if let Some(n) = next.get_mut(claim.agent) {
            *n += 1;
        }
    }
    let mut start = 0;
    for n in &mut next {
        let count = *n;
        *n = start;
        start += count;
    }
    let mut placed: Vec<Option<Claim<'_>>> = vec![None; claims.len()];
    for claim in claims {
        if let Some(at) = next.get_mut(claim.agent) {
            if let Some(slot) = placed.get_mut(*at) {
                *slot = Some(claim);
            }
            *at += 1;
        }
    }
    let mut out: Vec<Claim<'_>> = placed.into_iter().flatten().collect();
    for group in out.chunk_by_mut(|a, b| a.agent == b.agent) {
        group.sort_unstable_by(|a, b| (a.id, a.side, a.seq).cmp(&(b.id, b.side, b.seq)));
    }
    out
}

/// One agent's side of the comparison.
#[derive(Debug, Default)]
struct Tally<'a> {
    redis_only: Vec<&'a str>,
    sql_only: Vec<&'a str>,
    slot_count: usize,
    running_rows: usize,
}

impl Tally<'_> {
    fn violation(&self, input: &Input<'_>, agent: &str) -> Option<Violation> {
        let signal = match (self.redis_only.is_empty(), self.sql_only.is_empty()) {
            (true, true) => return None,
            (false, true) => "in_redis_only",
            (true, false) => "in_sql_only",
            (false, false) => "in_redis_only_and_in_sql_only",
        };
        let summary = format!(
            "agent {agent}: {} slot(s) without a running row, {} running row(s) without a slot",
            self.redis_only.len(),
            self.sql_only.len()
        );
        Some(input.violation(
            &META,
            agent,
            signal,
            summary,
            json!({
                "agent": agent,
                "in_redis_only": self.redis_only,
                "in_sql_only": self.sql_only,
                "slot_count": self.slot_count,
                "running_rows": self.running_rows,
            }),
        ))
    }
}

/// Ids of terminal rows (any agent) completed within the grace.
fn recently_finished<'a>(
    input: &Input<'a>,
    within_grace: &impl Fn(Option<Millis>) -> bool,
) -> LookupSet<&'a str> {
    let mut out = lookup::set(0);
    for row in &input.sql.executions {
        if row.phase.is_terminal() && within_grace(row.completed_at_ms) {
            out.insert(row.id.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::testing::{SnapshotBuilder, T0, run};

    const AGO: i64 = 60_000;

    #[test]
    fn holds_when_slots_match_running_rows() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - AGO)
            .slot("a", "e1", T0 - AGO)
            .build();
        assert!(run("S-01", &snap).is_empty());
    }

    #[test]
    fn fires_on_a_leaked_slot() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .slot("a", "e1", T0 - AGO)
            .build();
        let v = run("S-01", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "a");
        assert_eq!(v[0].signal, "in_redis_only");
        assert_eq!(v[0].observed_state["in_redis_only"][0], "e1");
    }

    #[test]
    fn fires_on_a_running_row_without_slot() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - AGO)
            .build();
        let v = run("S-01", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "in_sql_only");
        assert_eq!(v[0].observed_state["in_sql_only"][0], "e1");
    }

    #[test]
    fn one_violation_per_agent_with_both_directions() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - AGO)
            .slot("a", "e2", T0 - AGO)
            .build();
        let v = run("S-01", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "in_redis_only_and_in_sql_only");
    }

    #[test]
    fn drain_sentinels_are_not_executions() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .sentinel("a", "drain-1", T0 - 1_000)
            .build();
        assert!(run("S-01", &snap).is_empty());
    }

    #[test]
    fn leased_rows_never_hold_a_slot() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e1", "a", T0 - AGO)
            .build();
        assert!(run("S-01", &snap).is_empty());
    }

    /// An empty or unparseable lease is no lease (see `snapshot::Execution`): the row is a push
    /// row and must hold a slot.
    #[test]
    fn an_illegible_lease_is_no_lease() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .leased_running("e1", "a", T0 - AGO);
        b.last_execution().lease_expires_at_ms = None;
        let v = run("S-01", &b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].subject, "a");
    }

    #[test]
    fn grace_covers_fresh_ids_in_both_directions() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - 2_000)
            .slot("a", "e2", T0 - 2_500)
            .build();
        assert!(run("S-01", &snap).is_empty());
    }

    #[test]
    fn grace_ends_at_three_seconds() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .running("e1", "a", T0 - 3_000)
            .slot("a", "e2", T0 - 3_000)
            .build();
        assert_eq!(
            run("S-01", &snap)[0].signal,
            "in_redis_only_and_in_sql_only"
        );
    }

    #[test]
    fn ids_without_timestamp_get_no_grace() {
        let mut b = SnapshotBuilder::new().agent("a").running("e1", "a", T0);
        b.last_execution().started_at_ms = None;
        let snap = b.build();
        assert_eq!(run("S-01", &snap)[0].signal, "in_sql_only");
    }

    #[test]
    fn soft_deleted_agents_are_still_checked() {
        let snap = SnapshotBuilder::new()
            .deleted_agent("a")
            .slot("a", "e1", T0 - AGO)
            .build();
        assert_eq!(run("S-01", &snap).len(), 1);
    }

    #[test]
    fn agents_absent_from_roster_are_left_to_l03() {
        let snap = SnapshotBuilder::new()
            .running("e1", "ghost", T0 - AGO)
            .slot("ghost", "e2", T0 - AGO)
            .build();
        assert!(run("S-01", &snap).is_empty());
    }

    #[test]
    fn a_release_just_behind_its_terminal_commit_gets_the_grace() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0 - 2_000)
            .slot("a", "e1", T0 - AGO)
            .build();
        assert!(run("S-01", &snap).is_empty());
        let late = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0 - 3_000)
            .slot("a", "e1", T0 - AGO)
            .build();
        assert_eq!(run("S-01", &late)[0].signal, "in_redis_only");
        let mut unknown = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0);
        unknown.last_execution().completed_at_ms = None;
        let unknown = unknown.slot("a", "e1", T0 - AGO).build();
        assert_eq!(run("S-01", &unknown).len(), 1, "no completed_at, no grace");
    }

    #[test]
    fn terminal_and_queued_rows_do_not_count_as_holding_a_slot() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0 - AGO)
            .queued("e2", "a", T0 - AGO)
            .slot("a", "e1", T0 - AGO)
            .build();
        let v = run("S-01", &snap);
        assert_eq!(v[0].signal, "in_redis_only");
    }
}
