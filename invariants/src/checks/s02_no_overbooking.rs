//! **S-02 No overbooking** — tier A, critical; needs Redis and SQLite (the roster's caps).
//!
//! Rule: for every roster agent, the number of members of its slot set, drain sentinels
//! excluded, is at most its `max_parallel_tasks` (NULL in the platform → 3, applied by the
//! collector). Agents absent from the roster are L-03's business. The collector reads an
//! over-cap agent's roster row again after the slot sets, so a cap raised and then used between
//! its SQL read and its slot read is judged by its new value (the daemon's
//! `collect::sql::recheck`).
//!
//! Guards: the check-then-set race of two dispatchers that both saw a free slot and both ZADDed
//! (the acquire path must be atomic: a Lua script or WATCH/MULTI), and a cap lowered while the
//! agent was busy (worth knowing, even if it drains by itself).

use serde_json::json;

use crate::params::{Params, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::snapshot::Source;
use crate::violation::{Severity, Tier, Violation};

/// S-02.
#[derive(Debug)]
pub struct S02;

static META: InvariantMeta = InvariantMeta {
    id: "S-02",
    name: "No overbooking",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Redis), Need::Source(Source::Sqlite)],
    guards: "Check-then-set races in slot acquisition (two dispatchers both saw a free slot).",
    runbook: "Make the acquire path atomic (one Lua script or WATCH/MULTI around ZCARD + ZADD); \
              check whether the cap was lowered while the agent was busy.",
};

invariant_params! {
    /// S-02 parameters.
    pub struct S02Params {
    }
}

/// Members listed in the evidence, at most (the count is always exact).
const LISTED: usize = 20;

impl Invariant for S02 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, _params: &Params) -> String {
        "Every roster agent holds at most max_parallel_tasks slots (drain sentinels excluded).".to_owned()
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
            "agent-0013",
            "over_capacity",
            "agent agent-0013 holds 4 slots but its cap is 3",
            json!({"agent": "agent-0013", "slot_count": 4, "max_parallel_tasks": 3, "members": ["0b1c2d3e4f5a6b7c", "1c2d3e4f5a6b7c8d", "2d3e4f5a6b7c8d9e", "3e4f5a6b7c8d9e0f"]}),
        )]
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let caps = input.sql.strictest_per_agent(|a| a.max_parallel_tasks);
        input
            .redis
            .slot_sets
            .iter()
            .filter_map(|set| {
                let cap = caps.get(set.agent_name.as_str())?;
                let held = set.members.iter().filter(|m| !m.sentinel).count();
                let count = i64::try_from(held).unwrap_or(i64::MAX);
                if count <= cap {
                    return None;
                }
                // Listed only for a set over its cap: most sets are within it.
                let mut members: Vec<&str> = set
                    .members
                    .iter()
                    .filter(|m| !m.sentinel)
                    .map(|m| m.member.as_str())
                    .collect();
                members.sort_unstable();
                members.truncate(LISTED);
                Some(input.violation(
                    &META,
                    set.agent_name.as_str(),
                    "over_capacity",
                    format!(
                        "agent {} holds {count} slots but its cap is {cap}",
                        set.agent_name
                    ),
                    json!({
                        "agent": set.agent_name,
                        "slot_count": count,
                        "max_parallel_tasks": cap,
                        "members": members,
                    }),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{SnapshotBuilder, T0, run};

    fn with_slots(cap: i64, n: usize) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new().agent_with("a", cap, 900);
        for i in 0..n {
            let id = format!("e{i}");
            b = b.running(&id, "a", T0 - 60_000).slot("a", &id, T0 - 60_000);
        }
        b
    }

    #[test]
    fn holds_at_the_cap() {
        assert!(run("S-02", &with_slots(3, 3).build()).is_empty());
    }

    #[test]
    fn fires_above_the_cap() {
        let v = run("S-02", &with_slots(3, 4).build());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "a");
        assert_eq!(v[0].signal, "over_capacity");
        assert_eq!(v[0].observed_state["slot_count"], 4);
        assert_eq!(v[0].observed_state["max_parallel_tasks"], 3);
    }

    /// A lowered concurrency ceiling (the reference's #506) must not page for slots acquired
    /// under the stored cap: S-02 judges the stored cap, unlike B-02.
    #[test]
    fn the_concurrency_ceiling_does_not_lower_the_cap() {
        let mut snap = with_slots(5, 5).build();
        if let Some(sql) = snap.sql.as_mut() {
            sql.max_parallel_tasks_ceiling = Some(2);
        }
        assert!(run("S-02", &snap).is_empty());
        let mut snap = with_slots(5, 6).build();
        if let Some(sql) = snap.sql.as_mut() {
            sql.max_parallel_tasks_ceiling = Some(2);
        }
        let v = run("S-02", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].observed_state["max_parallel_tasks"], 5);
    }

    #[test]
    fn drain_sentinels_do_not_count() {
        let snap = with_slots(2, 2).sentinel("a", "drain-1", T0).build();
        assert!(run("S-02", &snap).is_empty());
    }

    #[test]
    fn agents_absent_from_the_roster_are_left_to_l03() {
        let snap = SnapshotBuilder::new()
            .slot("ghost", "e1", T0)
            .slot("ghost", "e2", T0)
            .slot("ghost", "e3", T0)
            .slot("ghost", "e4", T0)
            .build();
        assert!(run("S-02", &snap).is_empty());
    }

    #[test]
    fn evidence_lists_at_most_twenty_members_but_counts_all() {
        let v = run("S-02", &with_slots(1, 30).build());
        assert_eq!(v[0].observed_state["slot_count"], 30);
        assert_eq!(
            v[0].observed_state["members"].as_array().map(Vec::len),
            Some(20)
        );
    }
}
