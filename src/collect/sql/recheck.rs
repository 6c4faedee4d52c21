//! The recheck after the slot read: the few SQL facts the Redis slot sets contradict, read again
//! in a read transaction opened after the slot sets were read.
//!
//! The main SQL read runs beside the Redis slot-set read instead of after it (it no longer waits
//! ~70 ms at L for the slot sets), so its view may be older than the slot view by up to the
//! length of a collection. Only three findings compare a SQL fact with a slot set without a
//! grace that covers that gap, and each is named here before any invariant sees the snapshot:
//! - a `running` row (not leased, past S-01's grace) without a slot in its agent's set: a finish
//!   caught between its terminal commit and its `ZREM` when the row was read before the commit
//!   (S-01's `in_sql_only`);
//! - a slot set of an agent absent from the roster: an agent created, then claimed, between the
//!   two reads (L-03's slot-key arm);
//! - a slot set holding more slots than its agent's cap: a cap raised, then used, between the two
//!   reads (S-02).
//!
//! [`Suspects::of`] lists them; [`recheck`] re-reads exactly those rows (by id) and agents (by
//! name) on a fresh read-only connection; [`apply`] puts the fresh rows and agents in place of
//! the old ones. The fresh view is never older than the slot view, as when SQLite was read after
//! Redis: a finished row now shows as terminal (S-01's finish race, graced by its
//! `completed_at`), a new agent as listed, a raised cap as raised; a real leak, orphan or
//! overbooking is read again and stays. A healthy cycle has no suspect and runs nothing.
//!
//! It must not judge anything (the lists are S-01's, S-02's and L-03's candidates, not
//! findings), read anything else, nor write: the connection is read-only and `query_only`
//! (SQLite) or in a read-only transaction (PostgreSQL).

use std::collections::{BTreeSet, HashSet};

use canary_invariants::{Agent, Anomaly, Execution, Phase, RedisState, SqlState};

use super::error::SqlError;
use super::executions::read_by_id;
use super::reader::{Reader, StatementPlan};
use super::roster::read_roster;
use super::{read_schema, read_transaction};
use crate::config::platform::PlatformConfig;

/// Ids or names per statement (keeps every parameter list short on both engines).
const CHUNK: usize = 500;

/// What the slot sets contradict in the SQL read: re-read after the slot read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspects {
    /// Ids of running rows (not leased, of roster agents, older than S-01's grace or of unknown
    /// age) that no slot set holds. Sorted, distinct.
    pub ids: Vec<String>,
    /// Names of agents with a slot set but absent from the roster, or holding more slots
    /// (drain sentinels excluded) than their cap. Sorted, distinct.
    pub agents: Vec<String>,
}

impl Suspects {
    /// The suspects of one snapshot taken at `taken_at_ms`; rows whose `started_at` lies within
    /// `grace_ms` of it are S-01's to ignore, so they are not suspects either.
    pub fn of(sql: &SqlState, redis: &RedisState, taken_at_ms: i64, grace_ms: i64) -> Suspects {
        // Asked, never walked (the lists below come out of ordered sets): hashed, since at
        // 10 000 agents this runs on the cycle's critical path after the SQL read. `caps` is
        // also the roster (every roster agent has a cap).
        let caps = sql.strictest_per_agent(|a| a.max_parallel_tasks);
        let held: HashSet<(&str, &str)> = redis
            .slot_sets
            .iter()
            .flat_map(|set| {
                set.members
                    .iter()
                    .filter(|m| !m.sentinel)
                    .map(|m| (set.agent_name.as_str(), m.member.as_str()))
            })
            .collect();
        let young =
            |at: Option<i64>| at.is_some_and(|at| taken_at_ms.saturating_sub(at) < grace_ms);
        let ids: BTreeSet<&str> = sql
            .executions
            .iter()
            .filter(|row| {
                row.phase == Phase::Running
                    && row.legible_lease().is_none()
                    && !young(row.started_at_ms)
                    && caps.contains(row.agent_name.as_str())
                    && !held.contains(&(row.agent_name.as_str(), row.id.as_str()))
            })
            .map(|row| row.id.as_str())
            .collect();
        let agents: BTreeSet<&str> = redis
            .slot_sets
            .iter()
            .filter(|set| match caps.get(set.agent_name.as_str()) {
                None => true,
                Some(cap) => {
                    let held = set.members.iter().filter(|m| !m.sentinel).count();
                    i64::try_from(held).unwrap_or(i64::MAX) > cap
                }
            })
            .map(|set| set.agent_name.as_str())
            .collect();
        Suspects {
            ids: ids.into_iter().map(str::to_owned).collect(),
            agents: agents.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Nothing to re-read.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.agents.is_empty()
    }

    /// How many ids and names are re-read.
    pub fn len(&self) -> usize {
        self.ids.len() + self.agents.len()
    }
}

/// What the recheck read: every row with a suspect id (any status), the suspect agents that
/// exist now, and the anomalies seen in them.
#[derive(Debug, Default)]
pub struct Rechecked {
    executions: Vec<Execution>,
    agents: Vec<Agent>,
    anomalies: Vec<Anomaly>,
}

/// Re-reads `suspects` in one read transaction on a fresh connection (SQLite or PostgreSQL, as
/// configured). Returns the outcome and the statements it ran (pragmas and the transaction
/// bracket included, as the main read counts them).
pub fn recheck(cfg: &PlatformConfig, suspects: &Suspects) -> (Result<Rechecked, SqlError>, u32) {
    let read = read_transaction(cfg, false, |r| read(r, cfg, suspects));
    (read.result, read.statements)
}

/// [`recheck`], also asking the database for the plan of every query it runs (the plan tests,
/// as `sql::collect_explained` for the main read; not counted in the statements).
pub fn recheck_explained(
    cfg: &PlatformConfig,
    suspects: &Suspects,
) -> (Result<Rechecked, SqlError>, Vec<StatementPlan>) {
    let read = read_transaction(cfg, true, |r| read(r, cfg, suspects));
    (read.result, read.plans)
}

fn read(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    suspects: &Suspects,
) -> Result<Rechecked, SqlError> {
    // The schema again (the main read's may be gone with its connection): the same columns are
    // selected, so the fresh rows are parsed exactly as the old ones were.
    let schema = read_schema(r, cfg)?;
    let mut out = Rechecked::default();
    if !suspects.ids.is_empty() {
        out.executions = read_by_id(
            r,
            cfg,
            &schema.executions,
            &suspects.ids,
            CHUNK,
            &mut out.anomalies,
        )?;
    }
    for names in suspects.agents.chunks(CHUNK) {
        let roster = read_roster(
            r,
            cfg,
            &schema.agents,
            false,
            Some(names),
            &mut out.anomalies,
        )?;
        out.agents.extend(roster.agents);
    }
    Ok(out)
}

/// Puts the recheck's view in place of the main read's: every row with a suspect id, and every
/// roster entry with a suspect name, is replaced by what was read now under that key (nothing
/// when it was deleted since). Orders are kept (rows by id, agents by name). Returns the
/// anomalies seen in the re-read values, for the caller to merge.
pub fn apply(sql: &mut SqlState, suspects: &Suspects, rechecked: Rechecked) -> Vec<Anomaly> {
    let Rechecked {
        executions,
        agents,
        anomalies,
    } = rechecked;
    if !suspects.ids.is_empty() {
        let ids: BTreeSet<&str> = suspects.ids.iter().map(String::as_str).collect();
        sql.executions.retain(|row| !ids.contains(row.id.as_str()));
        sql.executions.extend(executions);
        // Stable: rows with equal ids keep their order, as in the main read.
        sql.executions.sort_by(|a, b| a.id.cmp(&b.id));
    }
    if !suspects.agents.is_empty() {
        let names: BTreeSet<&str> = suspects.agents.iter().map(String::as_str).collect();
        sql.agents.retain(|a| !names.contains(a.name.as_str()));
        sql.agents.extend(agents);
        sql.agents.sort_by(|x, y| x.name.cmp(&y.name));
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use canary_invariants::testing::{SnapshotBuilder, T0};
    use canary_invariants::{Phase, Snapshot};

    use super::*;

    const GRACE: i64 = 3_000;

    fn states(snapshot: &Snapshot) -> (&SqlState, &RedisState) {
        (
            snapshot.sql.as_ref().expect("sql"),
            snapshot.redis.as_ref().expect("redis"),
        )
    }

    fn suspects(snapshot: &Snapshot) -> Suspects {
        let (sql, redis) = states(snapshot);
        Suspects::of(sql, redis, snapshot.taken_at_ms, GRACE)
    }

    #[test]
    fn a_healthy_snapshot_has_no_suspect() {
        let snapshot = SnapshotBuilder::new()
            .agent("a")
            .running("r1", "a", T0 - 60_000)
            .slot("a", "r1", T0 - 60_000)
            .leased_running("pulled", "a", T0 - 60_000)
            .terminal("done", "a", "success", T0 - 1_000)
            .sentinel("a", "drain-1", T0 - 1_000)
            .build();
        let found = suspects(&snapshot);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(found.len(), 0);
    }

    #[test]
    fn only_what_s01_s02_and_l03_would_report_is_suspect() {
        let snapshot = SnapshotBuilder::new()
            .agent("a")
            .agent("b")
            // Past the grace, no slot: suspect (also when its slot sits in another agent's set).
            .running("old", "a", T0 - 60_000)
            .running("elsewhere", "a", T0 - 60_000)
            .slot("b", "elsewhere", T0 - 60_000)
            // No start time: S-01 gives it no grace, so neither does the recheck.
            .execution(Execution {
                started_at_ms: None,
                ..SnapshotBuilder::new()
                    .running("unknown-age", "b", T0)
                    .build()
                    .sql
                    .expect("sql")
                    .executions[0]
                    .clone()
            })
            // Within the grace, leased, of an agent off the roster, or only a sentinel: not.
            .running("young", "a", T0 - GRACE + 1)
            .leased_running("pulled", "a", T0 - 60_000)
            .running("ghost-row", "ghost", T0 - 60_000)
            .slot("ghost", "ghost-row", T0 - 60_000)
            .sentinel("late", "drain-1", T0 - 1_000)
            .running("drain-1", "late", T0 - 60_000)
            // Over its cap (sentinels not counted), and at its cap: only the first.
            .agent_with("busy", 1, 600)
            .running("busy-1", "busy", T0 - 60_000)
            .slot("busy", "busy-1", T0 - 60_000)
            .slot("busy", "busy-2", T0 - 60_000)
            .agent_with("full", 1, 600)
            .running("full-1", "full", T0 - 60_000)
            .slot("full", "full-1", T0 - 60_000)
            .sentinel("full", "drain-2", T0 - 1_000)
            .build();
        let found = suspects(&snapshot);
        assert_eq!(found.ids, ["elsewhere", "old", "unknown-age"]);
        assert_eq!(found.agents, ["busy", "ghost", "late"]);
        assert_eq!(found.len(), 6);
    }

    #[test]
    fn apply_puts_the_fresh_view_in_place() {
        let snapshot = SnapshotBuilder::new()
            .agent("b")
            .agent("d")
            .agent_with("raised", 1, 600)
            .slot("raised", "r-1", T0 - 60_000)
            .slot("raised", "r-2", T0 - 100)
            .running("finished", "b", T0 - 60_000)
            .running("leaked", "b", T0 - 60_000)
            .running("purged", "b", T0 - 60_000)
            .running("zz-kept", "b", T0 - 60_000)
            .slot("b", "zz-kept", T0 - 60_000)
            .slot("new", "n-1", T0 - 100)
            .slot("nowhere", "x-1", T0 - 100)
            .build();
        let found = suspects(&snapshot);
        assert_eq!(found.ids, ["finished", "leaked", "purged"]);
        assert_eq!(found.agents, ["new", "nowhere", "raised"]);
        let fresh = SnapshotBuilder::new()
            .agent_with("new", 2, 600)
            .agent_with("raised", 4, 600)
            .terminal("finished", "b", "success", T0 - 10)
            .running("leaked", "b", T0 - 60_000)
            .build();
        let fresh = fresh.sql.expect("sql");
        let mut sql = snapshot.sql.clone().expect("sql");
        let anomalies = apply(
            &mut sql,
            &found,
            Rechecked {
                executions: fresh.executions,
                agents: fresh.agents,
                anomalies: Vec::new(),
            },
        );
        assert!(anomalies.is_empty());
        let rows: Vec<(&str, Phase)> = sql
            .executions
            .iter()
            .map(|r| (r.id.as_str(), r.phase))
            .collect();
        assert_eq!(
            rows,
            [
                ("finished", Phase::Terminal),
                ("leaked", Phase::Running),
                ("zz-kept", Phase::Running)
            ],
            "the finished row is terminal now, the deleted one gone, the others as read"
        );
        let agents: Vec<(&str, i64)> = sql
            .agents
            .iter()
            .map(|a| (a.name.as_str(), a.max_parallel_tasks))
            .collect();
        assert_eq!(
            agents,
            [("b", 3), ("d", 3), ("new", 2), ("raised", 4)],
            "the new agent joins the roster and the raised cap replaces the old, in name order"
        );
    }
}
