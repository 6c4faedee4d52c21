//! Equivalence of the hash-indexed checks with the ordered-map versions they replaced (issue 15
//! item 3): S-01, S-04 and E-02 (check and remember) were rewritten for speed, and their old
//! code is kept here, verbatim but for the violation constructor, as the reference. On hostile
//! snapshots with repeated agent names, repeated ids (on one side, on both sides, across slot
//! sets), sentinels, leases and timestamps around every grace, the catalog's answer and the
//! reference's must be the same violations in the same order, and E-02 the same next memory.
//! Unlike `properties.rs`, ids and slot sets are *not* made unique: which duplicate wins is
//! exactly what an index can change.

use std::collections::{BTreeMap, BTreeSet};

use canary_invariants::{
    Agent, Execution, Input, KeyTtl, Memory, MetaKey, Params, Phase, RedisState, SeenTerminal,
    Selection, Severity, SlotMember, SlotMeta, SlotSet, Snapshot, SqlState, Violation, evaluate,
};
use proptest::prelude::*;

const NAMES: &[&str] = &["a", "b", "c", ""];
const IDS: &[&str] = &["e1", "e2", "e3", "e4", "drain-1"];
const T0: i64 = 1_768_384_800_000;

/// What a violation says, without the catalog metadata the reference cannot name.
type Said = (String, String, String, serde_json::Value, Severity);

fn said(v: &Violation) -> Said {
    (
        v.subject.clone(),
        v.signal.clone(),
        v.summary.clone(),
        v.observed_state.clone(),
        v.severity,
    )
}

fn catalog(id: &str, snapshot: &Snapshot, memory: &Memory, params: &Params) -> Vec<Said> {
    let only = [id.to_owned()];
    evaluate(snapshot, memory, params, Selection::Only(&only))
        .violations
        .iter()
        .map(said)
        .collect()
}

/// The evaluation order: sorted by subject, signal, summary (stable, like `evaluate`).
fn sorted(mut out: Vec<Said>) -> Vec<Said> {
    out.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    out
}

fn within(now: i64, grace_ms: i64, at: Option<i64>) -> bool {
    at.is_some_and(|at| now.saturating_sub(at) < grace_ms)
}

/// S-01 before issue 15 item 3: one ordered map per agent on each side.
fn reference_s01(input: &Input<'_>) -> Vec<Said> {
    type IdsByAgent<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Option<i64>>>;
    let now = input.now_ms();
    let grace_ms = (input.params.s01.grace_seconds * 1000.0) as i64;
    let within_grace = |at: Option<i64>| within(now, grace_ms, at);
    let roster: BTreeSet<&str> = input.sql.agents.iter().map(|a| a.name.as_str()).collect();
    let mut in_redis: IdsByAgent<'_> = BTreeMap::new();
    for set in &input.redis.slot_sets {
        if !roster.contains(set.agent_name.as_str()) {
            continue;
        }
        let ids = in_redis.entry(set.agent_name.as_str()).or_default();
        for member in set.members.iter().filter(|m| !m.sentinel) {
            ids.insert(member.member.as_str(), member.acquired_at_ms);
        }
    }
    let mut in_sql: IdsByAgent<'_> = BTreeMap::new();
    for row in &input.sql.executions {
        if row.phase == Phase::Running
            && row.legible_lease().is_none()
            && roster.contains(row.agent_name.as_str())
        {
            in_sql
                .entry(row.agent_name.as_str())
                .or_default()
                .insert(row.id.as_str(), row.started_at_ms);
        }
    }
    let just_finished: BTreeSet<&str> = input
        .sql
        .executions
        .iter()
        .filter(|row| row.phase.is_terminal() && within_grace(row.completed_at_ms))
        .map(|row| row.id.as_str())
        .collect();
    let agents: BTreeSet<&str> = in_redis.keys().chain(in_sql.keys()).copied().collect();
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for agent in agents {
        let redis_ids = in_redis.get(agent).unwrap_or(&empty);
        let sql_ids = in_sql.get(agent).unwrap_or(&empty);
        let redis_only: Vec<&str> = redis_ids
            .iter()
            .filter(|(id, at)| {
                !sql_ids.contains_key(*id) && !within_grace(**at) && !just_finished.contains(*id)
            })
            .map(|(id, _)| *id)
            .collect();
        let sql_only: Vec<&str> = sql_ids
            .iter()
            .filter(|(id, at)| !redis_ids.contains_key(*id) && !within_grace(**at))
            .map(|(id, _)| *id)
            .collect();
        if redis_only.is_empty() && sql_only.is_empty() {
            continue;
        }
        let signal = match (redis_only.is_empty(), sql_only.is_empty()) {
            (false, true) => "in_redis_only",
            (true, false) => "in_sql_only",
            _ => "in_redis_only_and_in_sql_only",
        };
        out.push((
            agent.to_owned(),
            signal.to_owned(),
            format!(
                "agent {agent}: {} slot(s) without a running row, {} running row(s) without a slot",
                redis_only.len(),
                sql_only.len()
            ),
            serde_json::json!({
                "agent": agent,
                "in_redis_only": redis_only,
                "in_sql_only": sql_only,
                "slot_count": redis_ids.len(),
                "running_rows": sql_ids.len(),
            }),
            Severity::Critical,
        ));
    }
    out
}

/// S-04 before issue 15 item 3: ordered sets of (agent, id) pairs.
fn reference_s04(input: &Input<'_>) -> Vec<Said> {
    let now = input.now_ms();
    let grace_ms = (input.params.s04.grace_seconds * 1000.0) as i64;
    let mut out = Vec::new();
    let mut members: BTreeSet<(&str, &str)> = BTreeSet::new();
    for set in &input.redis.slot_sets {
        for member in &set.members {
            members.insert((set.agent_name.as_str(), member.member.as_str()));
        }
    }
    let hashes: BTreeSet<(&str, &str)> = input
        .redis
        .meta_keys
        .iter()
        .map(|k| (k.agent_name.as_str(), k.execution_id.as_str()))
        .collect();
    let mut reported: BTreeSet<(&str, &str)> = BTreeSet::new();
    for set in &input.redis.slot_sets {
        for member in set.members.iter().filter(|m| !m.sentinel) {
            let Some(meta) = member.meta else { continue };
            if meta.ttl != KeyTtl::Missing {
                continue;
            }
            let key = (set.agent_name.as_str(), member.member.as_str());
            if hashes.contains(&key) || !reported.insert(key) {
                continue;
            }
            if within(now, grace_ms, member.acquired_at_ms) {
                continue;
            }
            out.push((
                member.member.clone(),
                "member_without_meta".to_owned(),
                format!(
                    "slot {} of agent {} has no metadata hash",
                    member.member, set.agent_name
                ),
                serde_json::json!({
                    "agent": set.agent_name,
                    "execution_id": member.member,
                    "acquired_at_ms": member.acquired_at_ms,
                    "age_ms": member.acquired_at_ms.map(|at| now.saturating_sub(at)),
                }),
                Severity::Critical,
            ));
        }
    }
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut stray: Vec<_> = input
        .redis
        .meta_keys
        .iter()
        .filter(|k| !members.contains(&(k.agent_name.as_str(), k.execution_id.as_str())))
        .collect();
    stray.sort();
    for key in stray {
        if !seen.insert((key.agent_name.as_str(), key.execution_id.as_str())) {
            continue;
        }
        let ttl = match key.orphan_ttl {
            Some(KeyTtl::Remaining(ms)) => serde_json::json!(ms),
            Some(KeyTtl::NoExpiry) => serde_json::json!("no_expiry"),
            Some(KeyTtl::Missing) | None => serde_json::Value::Null,
        };
        out.push((
            key.execution_id.clone(),
            "meta_without_member".to_owned(),
            format!(
                "metadata hash of {} (agent {}) has no slot member{}",
                key.execution_id,
                key.agent_name,
                if key.orphan_ttl == Some(KeyTtl::NoExpiry) {
                    " and never expires"
                } else {
                    ""
                }
            ),
            serde_json::json!({
                "agent": key.agent_name,
                "execution_id": key.execution_id,
                "ttl_ms": ttl,
            }),
            Severity::Major,
        ));
    }
    out
}

/// E-02's check before issue 15 item 3: one ordered-map lookup per non-terminal row.
fn reference_e02_check(input: &Input<'_>) -> Vec<Said> {
    input
        .sql
        .executions
        .iter()
        .filter(|row| !row.phase.is_terminal())
        .filter_map(|row| {
            let seen = input.memory.seen_terminal.get(row.id.as_str())?;
            Some((
                row.id.clone(),
                "reversal".to_owned(),
                format!(
                    "execution {} of agent {} went from {} back to {}",
                    row.id, row.agent_name, seen.status, row.status
                ),
                serde_json::json!({
                    "execution_id": row.id,
                    "agent": row.agent_name,
                    "previous_status": seen.status,
                    "current_status": row.status,
                    "seen_terminal_at_ms": seen.seen_at_ms,
                }),
                Severity::Critical,
            ))
        })
        .collect()
}

/// E-02's remember before issue 15 item 3.
fn reference_e02_remember(input: &Input<'_>, next: &mut Memory) {
    let now = input.now_ms();
    let window_ms = input.params.e02.window_seconds.saturating_mul(1000);
    let retention_ms = input.params.e02.retention_seconds.saturating_mul(1000);
    next.seen_terminal
        .retain(|_, seen| now.saturating_sub(seen.seen_at_ms) <= retention_ms);
    for row in input
        .sql
        .executions
        .iter()
        .filter(|row| row.phase.is_terminal())
    {
        let Some(completed_at) = row.completed_at_ms else {
            continue;
        };
        if now.saturating_sub(completed_at) > window_ms {
            continue;
        }
        if next.seen_terminal.contains_key(row.id.as_str()) {
            continue;
        }
        next.seen_terminal.insert(
            row.id.as_str().into(),
            SeenTerminal {
                status: row.status.as_str().into(),
                seen_at_ms: now,
            },
        );
    }
}

/// Timestamps around every grace and window (3 s, 30 min, 1 h), plus unknown ones.
fn ts() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::sample::select(
            &[0, 1_000, 2_999, 3_000, 3_001, 60_000, 1_800_000, 1_800_001, 3_600_001][..]
        )
        .prop_map(|ago| Some(T0 - ago)),
        1 => any::<i64>().prop_map(Some),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        4 => Just(Phase::Running),
        3 => Just(Phase::Terminal),
        1 => Just(Phase::Queued),
        1 => Just(Phase::Other),
    ]
}

fn name() -> impl Strategy<Value = String> {
    proptest::sample::select(NAMES).prop_map(str::to_owned)
}

fn id() -> impl Strategy<Value = String> {
    proptest::sample::select(IDS).prop_map(str::to_owned)
}

fn execution() -> impl Strategy<Value = Execution> {
    (
        id(),
        name(),
        phase(),
        ts(),
        ts(),
        (any::<bool>(), ts()),
        proptest::sample::select(&["success", "failed", "running"][..]),
    )
        .prop_map(
            |(id, agent_name, phase, started, completed, (leased, lease), status)| Execution {
                id,
                agent_name,
                status: status.to_owned(),
                phase,
                started_at_ms: started,
                completed_at_ms: completed,
                queued_at_ms: started,
                leased,
                lease_expires_at_ms: lease,
                completed_at_set: completed.is_some(),
                queued_at_set: started.is_some(),
                has_session: true,
                backlog: None,
            },
        )
}

fn member() -> impl Strategy<Value = SlotMember> {
    (
        id(),
        ts(),
        prop_oneof![Just(KeyTtl::Missing), Just(KeyTtl::Remaining(60_000))],
    )
        .prop_map(|(member, acquired, ttl)| {
            let sentinel = member.starts_with("drain-");
            SlotMember {
                member,
                acquired_at_ms: acquired,
                sentinel,
                meta: (!sentinel).then_some(SlotMeta {
                    ttl,
                    timeout_seconds: Some(900),
                    ttl_read_at_ms: T0,
                }),
            }
        })
}

fn slot_set() -> impl Strategy<Value = SlotSet> {
    (name(), proptest::collection::vec(member(), 0..5)).prop_map(|(agent_name, members)| SlotSet {
        agent_name,
        members,
    })
}

fn meta_key() -> impl Strategy<Value = MetaKey> {
    (
        name(),
        id(),
        proptest::option::of(prop_oneof![
            Just(KeyTtl::Missing),
            Just(KeyTtl::NoExpiry),
            Just(KeyTtl::Remaining(5_000)),
        ]),
    )
        .prop_map(|(agent_name, execution_id, orphan_ttl)| MetaKey {
            agent_name,
            execution_id,
            orphan_ttl,
        })
}

prop_compose! {
    fn snapshot()(
        agents in proptest::collection::vec(name(), 0..6),
        executions in proptest::collection::vec(execution(), 0..14),
        sets in proptest::collection::vec(slot_set(), 0..6),
        meta_keys in proptest::collection::vec(meta_key(), 0..8),
    ) -> Snapshot {
        Snapshot {
            taken_at_ms: T0,
            sql: Some(SqlState {
                agents: agents
                    .into_iter()
                    .map(|name| Agent {
                        name,
                        is_system: false,
                        max_parallel_tasks: 3,
                        execution_timeout_seconds: 900,
                        deleted: false,
                    })
                    .collect(),
                executions,
                ..SqlState::default()
            }),
            redis: Some(RedisState {
                slot_sets: sets,
                meta_keys,
                ..RedisState::default()
            }),
            ..Snapshot::default()
        }
    }
}

prop_compose! {
    fn memory()(
        entries in proptest::collection::btree_map(
            id(),
            (proptest::sample::select(&["success", "failed"][..]), ts()),
            0..5,
        ),
    ) -> Memory {
        Memory {
            seen_terminal: entries
                .into_iter()
                .map(|(id, (status, seen))| {
                    (id.into(), SeenTerminal { status: status.into(), seen_at_ms: seen.unwrap_or(T0) })
                })
                .collect(),
            ..Memory::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn s01_is_the_ordered_map_version(s in snapshot()) {
        let (m, p) = (Memory::default(), Params::default());
        let input = Input::new(&s, &m, &p);
        prop_assert_eq!(catalog("S-01", &s, &m, &p), sorted(reference_s01(&input)));
    }

    #[test]
    fn s04_is_the_ordered_set_version(s in snapshot()) {
        let (m, p) = (Memory::default(), Params::default());
        let input = Input::new(&s, &m, &p);
        prop_assert_eq!(catalog("S-04", &s, &m, &p), sorted(reference_s04(&input)));
    }

    #[test]
    fn e02_is_the_ordered_map_version(s in snapshot(), m in memory()) {
        e02_matches_the_reference(&s, &m)?;
    }

    /// The same with the rows in the collector's order (sorted by id, duplicates kept in input
    /// order), where E-02 walks the ordered memory instead of hashing it.
    #[test]
    fn e02_on_rows_sorted_by_id_is_the_ordered_map_version(s in snapshot(), m in memory()) {
        let mut s = s;
        if let Some(sql) = s.sql.as_mut() {
            sql.executions.sort_by(|a, b| a.id.cmp(&b.id));
        }
        e02_matches_the_reference(&s, &m)?;
    }
}

/// E-02's violations and next memory are the old ordered-map version's.
fn e02_matches_the_reference(s: &Snapshot, m: &Memory) -> Result<(), TestCaseError> {
    let p = Params::default();
    let input = Input::new(s, m, &p);
    prop_assert_eq!(
        catalog("E-02", s, m, &p),
        sorted(reference_e02_check(&input))
    );
    let mut expected = m.clone();
    reference_e02_remember(&input, &mut expected);
    let only = ["E-02".to_owned()];
    prop_assert_eq!(evaluate(s, m, &p, Selection::Only(&only)).memory, expected);
    Ok(())
}
