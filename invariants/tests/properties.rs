//! Property tests of the pure crate: evaluation is total (never panics on arbitrary, hostile
//! snapshots and params), deterministic under input shuffling, and the transition diff is
//! idempotent. Failing cases are kept in `proptest-regressions/` and committed.

use std::collections::{BTreeMap, BTreeSet};

use canary_invariants::transitions::diff;
use canary_invariants::{
    Agent, Backlog, BacklogJson, Container, CustomResult, DockerState, Execution, Field,
    Hysteresis, KeyTtl, Memory, MetaKey, OrphanRows, Outcome, Params, Phase, PidDwell, Processes,
    RedisState, Schedule, SeenTerminal, Selection, Severity, SlotMember, SlotMeta, SlotSet,
    Snapshot, SqlState, Tier, Verdict, ZombieDwell, evaluate,
};
use proptest::prelude::*;
use proptest::sample::subsequence;

const NAMES: &[&str] = &["a", "b", "c", "d", ""];
const IDS: &[&str] = &["e1", "e2", "e3", "e4", "e5", "drain-1", "42", "\u{1F600}"];
const T0: i64 = 1_768_384_800_000;

fn any_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (T0 - 10_000_000..T0 + 10_000).boxed(),
        1 => Just(i64::MIN).boxed(),
        1 => Just(i64::MAX).boxed(),
        1 => any::<i64>().boxed(),
    ]
}

fn any_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Queued),
        Just(Phase::Running),
        Just(Phase::PendingRetry),
        Just(Phase::Terminal),
        Just(Phase::Other),
    ]
}

fn any_severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Minor),
        Just(Severity::Major),
        Just(Severity::Critical)
    ]
}

fn name() -> impl Strategy<Value = String> {
    proptest::sample::select(NAMES).prop_map(str::to_owned)
}

fn id() -> impl Strategy<Value = String> {
    proptest::sample::select(IDS).prop_map(str::to_owned)
}

fn agent() -> impl Strategy<Value = Agent> {
    (
        name(),
        any::<bool>(),
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(|(name, is_system, cap, timeout, deleted)| Agent {
            name,
            is_system,
            max_parallel_tasks: cap,
            execution_timeout_seconds: timeout,
            deleted,
        })
}

fn execution() -> impl Strategy<Value = Execution> {
    (
        id(),
        name(),
        any_phase(),
        proptest::option::of(any_ts()),
        proptest::option::of(any_ts()),
        any::<bool>(),
        any::<[bool; 3]>(),
        proptest::option::of(backlog()),
    )
        .prop_map(
            |(id, agent_name, phase, started, completed, leased, flags, backlog)| Execution {
                id,
                agent_name,
                status: format!("{phase:?}").to_lowercase(),
                phase,
                started_at_ms: started,
                completed_at_ms: completed,
                queued_at_ms: started,
                leased,
                lease_expires_at_ms: None,
                completed_at_set: flags[0],
                queued_at_set: flags[1],
                has_session: flags[2],
                backlog,
            },
        )
}

fn backlog() -> impl Strategy<Value = Backlog> {
    (
        prop_oneof![
            Just(BacklogJson::Null),
            Just(BacklogJson::Invalid),
            Just(BacklogJson::Valid)
        ],
        subsequence(
            vec!["openai", "github_pat", "github_pat", "aws_access_key"],
            0..=4,
        ),
    )
        .prop_map(|(json, patterns)| Backlog {
            json,
            secret_patterns: patterns.into_iter().map(str::to_owned).collect(),
        })
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        id(),
        name(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any_ts()),
    )
        .prop_map(|(id, agent_name, enabled, deleted, next)| Schedule {
            id,
            agent_name,
            enabled,
            deleted,
            next_run_at_ms: next,
        })
}

fn meta_key() -> impl Strategy<Value = MetaKey> {
    (name(), id(), proptest::option::of(ttl())).prop_map(
        |(agent_name, execution_id, orphan_ttl)| MetaKey {
            agent_name,
            execution_id,
            orphan_ttl,
        },
    )
}

fn ttl() -> impl Strategy<Value = KeyTtl> {
    prop_oneof![
        Just(KeyTtl::Missing),
        Just(KeyTtl::NoExpiry),
        any::<i64>().prop_map(KeyTtl::Remaining)
    ]
}

fn member() -> impl Strategy<Value = SlotMember> {
    (
        id(),
        proptest::option::of(any_ts()),
        ttl(),
        proptest::option::of(any::<i64>()),
        any_ts(),
    )
        .prop_map(|(member, acquired, ttl, timeout, read_at)| {
            let sentinel = member.starts_with("drain-");
            SlotMember {
                member,
                acquired_at_ms: acquired,
                sentinel,
                meta: (!sentinel).then_some(SlotMeta {
                    ttl,
                    timeout_seconds: timeout,
                    ttl_read_at_ms: read_at,
                }),
            }
        })
}

fn slot_set() -> impl Strategy<Value = SlotSet> {
    (name(), proptest::collection::vec(member(), 0..6)).prop_map(|(agent_name, mut members)| {
        let mut seen = BTreeSet::new();
        members.retain(|m| seen.insert(m.member.clone()));
        SlotSet {
            agent_name,
            members,
        }
    })
}

fn orphan() -> impl Strategy<Value = OrphanRows> {
    (
        proptest::sample::select(&["t1", "t2"][..]),
        name(),
        any::<u64>(),
        any_severity(),
    )
        .prop_map(|(table, agent_name, rows, severity)| OrphanRows {
            table: table.to_owned(),
            agent_name,
            rows,
            severity,
        })
}

/// A running agent container: few ids (so memory and snapshot overlap), odd start times, zombie
/// pids that repeat across cases, or an unreadable process list.
fn container() -> impl Strategy<Value = Container> {
    let processes = prop_oneof![
        proptest::collection::vec(1u32..6, 0..4).prop_map(|mut zombies| {
            zombies.sort_unstable();
            zombies.dedup();
            Processes::Read { zombies }
        }),
        Just(Processes::Unreadable {
            reason: "ps failed".to_owned()
        }),
    ];
    (0u8..4, name(), proptest::option::of(any_ts()), processes).prop_map(
        |(n, agent, started_at_ms, processes)| Container {
            id: format!("c{n}"),
            name: format!("agent-{agent}"),
            agent,
            started_at_ms,
            env: BTreeMap::new(),
            inspected: true,
            processes,
        },
    )
}

prop_compose! {
    fn snapshot()(
        taken_at in any_ts(),
        agents in proptest::collection::vec(agent(), 0..6),
        executions in proptest::collection::vec(execution(), 0..12),
        sets in proptest::collection::vec(slot_set(), 0..5),
        orphans in proptest::collection::vec(orphan(), 0..4),
        missing in subsequence(
            vec![
                Field::ExecCompletedAt,
                Field::ExecStartedAt,
                Field::ExecSessionId,
                Field::ExecBacklogMetadata,
                Field::Schedules,
            ],
            0..=5,
        ),
        schedules in proptest::collection::vec(schedule(), 0..5),
        meta_keys in proptest::collection::vec(meta_key(), 0..6),
        sql_up in prop::bool::weighted(0.9),
        redis_up in prop::bool::weighted(0.9),
        drain in proptest::option::of(any_ts()),
        ceiling in proptest::option::of(-2i64..12),
        custom in proptest::collection::vec(custom_result(), 0..4),
        containers in proptest::collection::vec(container(), 0..4),
        docker_up in prop::bool::weighted(0.8),
        queue in proptest::collection::btree_map(name(), queue_count(), 0..4),
        queue_up in prop::bool::weighted(0.8),
    ) -> Snapshot {
        // Container ids are unique in a listing.
        let mut seen = BTreeSet::new();
        let containers: Vec<_> = containers.into_iter().filter(|c| seen.insert(c.id.clone())).collect();
        // Ids are unique per table and slot keys per agent in the real stores.
        let mut seen = BTreeSet::new();
        let executions: Vec<_> = executions.into_iter().filter(|e| seen.insert(e.id.clone())).collect();
        let mut seen = BTreeSet::new();
        let sets: Vec<_> = sets.into_iter().filter(|s| seen.insert(s.agent_name.clone())).collect();
        let mut seen = BTreeSet::new();
        let schedules: Vec<_> = schedules.into_iter().filter(|s| seen.insert(s.id.clone())).collect();
        Snapshot {
            taken_at_ms: taken_at,
            sql: sql_up.then(|| SqlState {
                agents,
                executions,
                orphans,
                missing_fields: missing.into_iter().collect(),
                skipped_tables: vec![],
                schedules,
                max_parallel_tasks_ceiling: ceiling,
            }),
            redis: redis_up.then_some(RedisState {
                slot_sets: sets,
                drain_tick_at_ms: drain,
                meta_keys,
                pull_polls: Default::default(),
            }),
            sources_unavailable: vec![],
            anomalies: vec![],
            custom,
            docker: docker_up.then_some(DockerState { containers }),
            not_configured: vec![],
            pilot_agents: vec![],
            queue_counts: queue_up.then_some(canary_invariants::QueueCountState {
                live_agents: queue.len() as u64,
                agents: queue,
            }),
        }
    }
}

/// A queue-accessor answer: any counts (equal or not), moved queues, failures.
fn queue_count() -> impl Strategy<Value = canary_invariants::QueueCount> {
    use canary_invariants::QueueCount;
    prop_oneof![
        (
            0u64..5,
            0u64..5,
            proptest::collection::vec(name(), 0..3),
            any::<bool>()
        )
            .prop_map(|(reported, read, ids, reread)| QueueCount::Read {
                reported,
                read,
                ids,
                reread,
            }),
        (0u64..5, 0u64..5, 0u64..5).prop_map(|(reported, before, after)| QueueCount::Unsettled {
            reported,
            before,
            after,
        }),
        name().prop_map(|reason| QueueCount::Unreadable { reason }),
    ]
}

/// A custom invariant's result: ids may repeat or shadow a catalog id, rows have odd shapes.
fn custom_result() -> impl Strategy<Value = CustomResult> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        name().prop_map(serde_json::Value::from),
        id().prop_map(serde_json::Value::from),
    ];
    let column = proptest::sample::select(&["subject", "summary", "agent_name", "n", ""][..]);
    let row = proptest::collection::btree_map(column.prop_map(str::to_owned), value, 0..4);
    (
        proptest::sample::select(&["C-01", "C-02", "custom.x", "S-01"][..]),
        any_severity(),
        any::<bool>(),
        prop_oneof![
            4 => proptest::collection::vec(row, 0..5).prop_map(Ok),
            1 => Just(Err("interrupted".to_owned())),
        ],
        any::<bool>(),
    )
        .prop_map(|(id, severity, tier_a, rows, truncated)| CustomResult {
            id: id.to_owned(),
            name: "custom".to_owned(),
            tier: if tier_a { Tier::A } else { Tier::B },
            severity,
            rows,
            truncated,
        })
}

prop_compose! {
    fn memory()(
        entries in proptest::collection::btree_map(id(), (name(), any_ts()), 0..5),
        zombies in proptest::collection::btree_map(0u8..4, (proptest::option::of(any_ts()), any_ts(), any_ts()), 0..3),
    ) -> Memory {
        Memory {
            seen_terminal: entries
                .into_iter()
                .map(|(id, (status, seen_at_ms))| (id.into(), SeenTerminal { status: status.into(), seen_at_ms }))
                .collect(),
            blind_suspected_since_ms: None,
            zombies: zombies
                .into_iter()
                .map(|(n, (started_at_ms, first_seen_ms, last_seen_ms))| {
                    let pids = BTreeMap::from([(2u32, PidDwell { first_seen_ms, last_seen_ms })]);
                    (format!("c{n}"), ZombieDwell { agent: "a".to_owned(), started_at_ms, first_count: 1, pids })
                })
                .collect(),
        }
    }
}

prop_compose! {
    fn params()(
        grace in prop_oneof![Just(3.0), any::<f64>()],
        window in prop_oneof![Just(1800), any::<i64>()],
        retention in prop_oneof![Just(3600), any::<i64>()],
        buffer in prop_oneof![Just(300), any::<i64>()],
        tolerance in prop_oneof![Just(1.0), any::<f64>()],
        bound in prop_oneof![Just(60), Just(3600), any::<i64>()],
    ) -> Params {
        let mut p = Params::default();
        p.s01.grace_seconds = grace;
        p.e02.window_seconds = window;
        p.e02.retention_seconds = retention;
        p.s03.buffer_seconds = buffer;
        p.s03.tolerance_seconds = tolerance;
        p.s04.grace_seconds = grace;
        p.e03.window_seconds = window;
        p.e05.max_age_seconds = bound;
        p.e06.max_overdue_seconds = bound;
        p
    }
}

fn reversed(mut snap: Snapshot) -> Snapshot {
    snap.custom.reverse();
    for result in &mut snap.custom {
        if let Ok(rows) = result.rows.as_mut() {
            rows.reverse();
        }
    }
    if let Some(sql) = snap.sql.as_mut() {
        sql.agents.reverse();
        sql.executions.reverse();
        sql.orphans.reverse();
        sql.schedules.reverse();
    }
    if let Some(docker) = snap.docker.as_mut() {
        docker.containers.reverse();
    }
    if let Some(redis) = snap.redis.as_mut() {
        redis.slot_sets.reverse();
        redis.meta_keys.reverse();
        for set in &mut redis.slot_sets {
            set.members.reverse();
        }
    }
    snap
}

fn rotated(mut snap: Snapshot, by: usize) -> Snapshot {
    fn rot<T>(v: &mut [T], by: usize) {
        if !v.is_empty() {
            let n = by % v.len();
            v.rotate_left(n);
        }
    }
    rot(&mut snap.custom, by);
    for result in &mut snap.custom {
        if let Ok(rows) = result.rows.as_mut() {
            rot(rows, by + 2);
        }
    }
    if let Some(sql) = snap.sql.as_mut() {
        rot(&mut sql.agents, by);
        rot(&mut sql.executions, by);
        rot(&mut sql.orphans, by);
        rot(&mut sql.schedules, by);
    }
    if let Some(redis) = snap.redis.as_mut() {
        rot(&mut redis.slot_sets, by);
        rot(&mut redis.meta_keys, by + 3);
        for set in &mut redis.slot_sets {
            rot(&mut set.members, by + 1);
        }
    }
    snap
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_never_panics_and_is_consistent(s in snapshot(), m in memory(), p in params()) {
        let eval = evaluate(&s, &m, &p, Selection::AllEnabled);
        for (id, outcome) in &eval.outcomes {
            let count = eval.violations.iter().filter(|v| &v.invariant_id == id).count();
            match outcome {
                Outcome::Red => prop_assert!(count > 0),
                Outcome::Green | Outcome::Unknown => prop_assert_eq!(count, 0),
            }
        }
    }

    #[test]
    fn shuffling_input_never_changes_the_result(
        s in snapshot(), m in memory(), p in params(), by in 0usize..7
    ) {
        let base = evaluate(&s, &m, &p, Selection::AllEnabled);
        prop_assert_eq!(&base, &evaluate(&reversed(s.clone()), &m, &p, Selection::AllEnabled));
        prop_assert_eq!(&base, &evaluate(&rotated(s, by), &m, &p, Selection::AllEnabled));
    }

    #[test]
    fn same_snapshot_twice_gives_the_same_answer(s in snapshot(), m in memory()) {
        let p = Params::default();
        prop_assert_eq!(
            evaluate(&s, &m, &p, Selection::AllEnabled),
            evaluate(&s, &m, &p, Selection::AllEnabled)
        );
    }

    #[test]
    fn diffing_a_state_with_itself_yields_no_transition(
        outcomes in proptest::collection::vec(
            prop_oneof![Just(Outcome::Green), Just(Outcome::Red), Just(Outcome::Unknown)], 1..12),
        fire_after in 1u32..4,
        resolve_after in 1u32..4,
    ) {
        let h = Hysteresis { fire_after, resolve_after, renotify_after_ms: None };
        let mut states = BTreeMap::new();
        let mut open = false;
        for (i, outcome) in outcomes.iter().enumerate() {
            let verdicts = BTreeMap::from([(
                "S-01".to_owned(),
                Verdict { outcome: *outcome, severity: Some(Severity::Critical) },
            )]);
            let (next, ts) = diff(&states, &verdicts, i as i64, h);
            // Alternation: fired only when closed, resolved only when open.
            for t in &ts {
                match t.kind {
                    canary_invariants::TransitionKind::Fired => prop_assert!(!open),
                    canary_invariants::TransitionKind::Resolved => prop_assert!(open),
                }
                open = !open;
            }
            states = next.into_iter().map(|s| (s.invariant_id.clone(), s)).collect();
            // Re-applying the state's own outcome once it has settled changes nothing.
            if states["S-01"].consecutive >= fire_after.max(resolve_after) {
                let same = BTreeMap::from([(
                    "S-01".to_owned(),
                    Verdict { outcome: states["S-01"].state, severity: Some(Severity::Critical) },
                )]);
                let (_, again) = diff(&states, &same, i as i64, h);
                prop_assert!(again.is_empty());
            }
        }
    }
}
