//! State database on real files: migration and re-open, `record_cycle` round trip and
//! atomicity, persistence across restarts, the cross-process lease, retention and the history
//! queries. Several `StateDb` handles on one file stand in for several processes.

// Marks the module as test code for clippy's `allow-unwrap-in-tests` (its helpers are not
// `#[test]` functions); it is compiled only into the test binary anyway.
#![cfg(test)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use canary::store::{CycleRecord, RecordedCycle, StateDb, StoreError, ViolationQuery};
use canary_invariants::{
    InvariantState, Memory, Millis, Outcome, PidDwell, SeenTerminal, Severity, Source,
    SourceUnavailable, Tier, Transition, TransitionKind, Violation, ZombieDwell,
};
use serde_json::json;

// ---- helpers (kept here: tests/support belongs to the harness owners) ----

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.db");
    (dir, path)
}

fn violation(id: &str, subject: &str, severity: Severity) -> Violation {
    Violation {
        invariant_id: id.to_owned(),
        tier: if id.starts_with('B') {
            Tier::B
        } else {
            Tier::A
        },
        severity,
        subject: subject.to_owned(),
        summary: format!("{id}: {subject} is broken"),
        observed_state: json!({ "subject": subject, "in_redis_only": ["e1", "e2"], "nested": { "n": 3 } }),
        signal: "in_redis_only".to_owned(),
    }
}

fn state(id: &str, outcome: Outcome, since: Millis, firing: bool) -> InvariantState {
    InvariantState {
        invariant_id: id.to_owned(),
        state: outcome,
        since_ms: since,
        consecutive: 2,
        firing,
        severity: firing.then_some(Severity::Major),
        last_fired_at_ms: firing.then_some(since),
        last_resolved_at_ms: Some(since - 60_000),
    }
}

fn transition(id: &str, kind: TransitionKind, at: Millis) -> Transition {
    Transition {
        invariant_id: id.to_owned(),
        kind,
        severity: Severity::Critical,
        at_ms: at,
        previous_at_ms: Some(at - 5_000),
        reminder: false,
    }
}

fn memory(entries: &[(&str, &str, Millis)], blind: Option<Millis>) -> Memory {
    Memory {
        seen_terminal: entries
            .iter()
            .map(|(id, status, at)| {
                (
                    (*id).into(),
                    SeenTerminal {
                        status: (*status).into(),
                        seen_at_ms: *at,
                    },
                )
            })
            .collect(),
        blind_suspected_since_ms: blind,
        zombies: BTreeMap::new(),
    }
}

/// One container's R-01 dwell: id, start time, first count, [(pid, first seen, last seen)].
type ZombieEntry<'a> = (&'a str, Option<Millis>, u32, &'a [(u32, Millis, Millis)]);

/// R-01 memory built from [`ZombieEntry`]s.
fn zombies(entries: &[ZombieEntry<'_>]) -> Memory {
    Memory {
        zombies: entries
            .iter()
            .map(|(id, started_at_ms, first_count, pids)| {
                let pids = pids
                    .iter()
                    .map(|(pid, first_seen_ms, last_seen_ms)| {
                        (
                            *pid,
                            PidDwell {
                                first_seen_ms: *first_seen_ms,
                                last_seen_ms: *last_seen_ms,
                            },
                        )
                    })
                    .collect();
                let dwell = ZombieDwell {
                    agent: format!("agent-of-{id}"),
                    started_at_ms: *started_at_ms,
                    first_count: *first_count,
                    pids,
                };
                ((*id).to_owned(), dwell)
            })
            .collect(),
        ..Memory::default()
    }
}

fn all_rows(db: &StateDb) -> Vec<canary::store::StoredViolation> {
    db.violations(&ViolationQuery {
        limit: 1_000,
        ..Default::default()
    })
    .unwrap()
    .0
}

/// One cycle's inputs, owned, so tests can build them and then borrow a `CycleRecord`.
struct Cycle {
    at: Millis,
    violations: Vec<Violation>,
    states: Vec<InvariantState>,
    transitions: Vec<Transition>,
    with_outbox: bool,
    previous: Memory,
    next: Memory,
}

impl Cycle {
    fn at(at: Millis) -> Cycle {
        Cycle {
            at,
            violations: vec![],
            states: vec![],
            transitions: vec![],
            with_outbox: true,
            previous: Memory::default(),
            next: Memory::default(),
        }
    }

    fn record(&self, db: &mut StateDb) -> Result<RecordedCycle, StoreError> {
        let outcomes: BTreeMap<String, Outcome> = self
            .states
            .iter()
            .map(|s| (s.invariant_id.clone(), s.state))
            .collect();
        let checks: Vec<String> = outcomes.keys().cloned().collect();
        let payloads: Vec<serde_json::Value> = if self.with_outbox {
            self.transitions
                .iter()
                .map(|t| json!({ "text": format!("{} {}", t.invariant_id, t.kind.as_str()) }))
                .collect()
        } else {
            vec![]
        };
        let unavailable = if self.states.iter().any(|s| s.state == Outcome::Unknown) {
            vec![SourceUnavailable {
                source: Source::Redis,
                error: "connection refused".into(),
            }]
        } else {
            vec![]
        };
        let (counts, severities) = canary::store::tally(&self.violations);
        db.record_cycle(&CycleRecord {
            started_at_ms: self.at - 100,
            finished_at_ms: self.at + 50,
            duration_ms: 150.25,
            trigger: "schedule",
            checks_run: &checks,
            outcomes: &outcomes,
            sources_unavailable: &unavailable,
            taken_at_ms: self.at,
            violations: &self.violations,
            violation_counts: &counts,
            severities: &severities,
            states: &self.states,
            transitions: &self.transitions,
            outbox_payloads: &payloads,
            planner: None,
            previous_memory: &self.previous,
            next_memory: &self.next,
        })
    }
}

/// A raw connection on the same file, for assertions and for planting failures.
fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

fn count(path: &Path, table: &str) -> i64 {
    raw(path)
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

// ---- tests ----

#[test]
fn store_migrates_a_fresh_file_and_reopening_is_idempotent() {
    let (_dir, path) = temp_db();
    let db = StateDb::open(&path).unwrap();
    assert!(path.exists(), "parent directories and the file are created");
    assert_eq!(db.schema_version().unwrap(), 5);
    drop(db);

    let tables: Vec<String> = raw(&path)
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for expected in [
        "alert_outbox",
        "cycle_lease",
        "cycles",
        "invariant_states",
        "memory_flags",
        "memory_seen_terminal",
        "transitions",
        "violation_episodes",
        "cycle_invariants",
        "silences",
        "memory_zombies",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "missing table {expected}: {tables:?}"
        );
    }
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL is persistent in the file");

    let mut db = StateDb::open(&path).unwrap();
    let mut c = Cycle::at(1_000);
    c.states = vec![state("S-01", Outcome::Green, 1_000, false)];
    c.record(&mut db).unwrap();
    drop(db);
    // Re-opening an up-to-date file neither fails nor touches the data.
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), 5);
    assert_eq!(db.load_states().unwrap().len(), 1);
    assert_eq!(count(&path, "cycles"), 1);
}

#[test]
fn r01_zombie_dwell_round_trips_and_is_written_as_a_diff() {
    let (_dir, path) = temp_db();
    let mut db = StateDb::open(&path).unwrap();
    let m1 = zombies(&[
        ("c1", Some(100), 2, &[(7, 1_000, 1_000), (9, 1_000, 1_000)]),
        ("c2", None, 1, &[(3, 1_000, 1_000)]),
    ]);
    let mut c1 = Cycle::at(1_000);
    c1.next = m1.clone();
    c1.record(&mut db).unwrap();
    assert_eq!(db.load_memory().unwrap(), m1);
    assert_eq!(count(&path, "memory_zombies"), 3);

    // c1's pid 7 moves (first seen kept), pid 9 is gone; c2 restarted (new start time) and
    // starts over; c3 appears.
    let m2 = zombies(&[
        ("c1", Some(100), 2, &[(7, 1_000, 2_000)]),
        ("c2", Some(1_500), 1, &[(3, 2_000, 2_000)]),
        ("c3", Some(5), 1, &[(4, 2_000, 2_000)]),
    ]);
    let mut c2 = Cycle::at(2_000);
    c2.previous = m1;
    c2.next = m2.clone();
    c2.record(&mut db).unwrap();
    assert_eq!(db.load_memory().unwrap(), m2);
    assert_eq!(count(&path, "memory_zombies"), 3);

    let mut c3 = Cycle::at(3_000);
    c3.previous = m2;
    c3.next = Memory::default();
    c3.record(&mut db).unwrap();
    assert_eq!(db.load_memory().unwrap(), Memory::default());
    assert_eq!(count(&path, "memory_zombies"), 0);
}

#[test]
fn store_record_cycle_round_trip() {
    let (_dir, path) = temp_db();
    let mut db = StateDb::open(&path).unwrap();

    let m1 = memory(
        &[
            ("x1", "success", 900),
            ("x2", "failed", 950),
            ("x3", "cancelled", 990),
        ],
        None,
    );
    let mut c1 = Cycle::at(1_000);
    c1.violations = vec![
        violation("S-01", "agent-a", Severity::Critical),
        violation("S-01", "agent-b", Severity::Critical),
        violation("B-02", "agent-c", Severity::Major),
    ];
    c1.states = vec![
        state("S-01", Outcome::Red, 1_000, true),
        state("B-02", Outcome::Red, 1_000, true),
        state("E-02", Outcome::Green, 500, false),
        state("S-03", Outcome::Unknown, 1_000, false),
    ];
    c1.transitions = vec![
        transition("B-02", TransitionKind::Fired, 1_000),
        transition("S-01", TransitionKind::Fired, 1_000),
    ];
    c1.next = m1.clone();
    let r1 = c1.record(&mut db).unwrap();

    // Ids come back in input order and point at exactly the input rows.
    assert_eq!(r1.violation_ids.len(), 3);
    assert!(r1.violation_ids.windows(2).all(|w| w[0] < w[1]));
    for (id, v) in r1.violation_ids.iter().zip(&c1.violations) {
        let stored = db.violation(*id).unwrap().unwrap();
        assert_eq!(stored.to_violation(), *v);
        assert_eq!((stored.cycle_id, stored.taken_at_ms), (r1.cycle_id, 1_000));
    }
    assert_eq!(r1.transition_ids.len(), 2);

    let states = db.load_states().unwrap();
    assert_eq!(states.values().cloned().collect::<Vec<_>>().len(), 4);
    for s in &c1.states {
        assert_eq!(&states[&s.invariant_id], s);
    }

    // One outbox row per transition, due immediately, in transition order.
    let due = db.due_outbox(1_050, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(
        due.iter().map(|r| r.transition_id).collect::<Vec<_>>(),
        r1.transition_ids,
        "outbox rows reference the returned transition ids"
    );
    assert_eq!(due[0].payload, json!({ "text": "B-02 fired" }));
    assert_eq!(
        (
            due[0].created_at_ms,
            due[0].next_attempt_at_ms,
            due[0].attempts
        ),
        (1_050, 1_050, 0)
    );
    assert_eq!(db.outbox_depth().unwrap().pending, 2);

    let cycle = db.last_cycle().unwrap().unwrap();
    assert_eq!(cycle.id, r1.cycle_id);
    assert_eq!(
        (cycle.started_at_ms, cycle.finished_at_ms, cycle.taken_at_ms),
        (900, 1_050, 1_000)
    );
    assert_eq!(cycle.duration_ms, 150.25);
    assert_eq!(cycle.trigger, "schedule");
    assert_eq!(cycle.violation_count, 3);
    assert_eq!(cycle.checks_run, ["B-02", "E-02", "S-01", "S-03"]);
    assert_eq!(cycle.outcomes["S-03"], Outcome::Unknown);
    assert_eq!(cycle.sources_unavailable[0].source, Source::Redis);
    assert_eq!(db.load_memory().unwrap(), m1);

    // Second cycle: memory entries added (x4), changed (x2), removed (x1), H-01 flag set;
    // a restricted cycle touching only S-01 leaves the other states alone.
    let m2 = memory(
        &[
            ("x2", "skipped", 1_990),
            ("x3", "cancelled", 990),
            ("x4", "success", 2_000),
        ],
        Some(2_000),
    );
    let mut c2 = Cycle::at(2_000);
    c2.states = vec![state("S-01", Outcome::Green, 2_000, false)];
    c2.transitions = vec![transition("S-01", TransitionKind::Resolved, 2_000)];
    c2.previous = m1.clone();
    c2.next = m2.clone();
    let r2 = c2.record(&mut db).unwrap();
    assert!(r2.cycle_id > r1.cycle_id);
    assert_eq!(db.load_memory().unwrap(), m2);
    let states = db.load_states().unwrap();
    assert_eq!(states["S-01"], c2.states[0]);
    assert_eq!(states["B-02"], c1.states[1]);
    assert_eq!(states["E-02"], c1.states[2]);
    assert_eq!(count(&path, "transitions"), 3);
    assert_eq!(count(&path, "alert_outbox"), 3);

    // Third cycle: flag cleared, map emptied; no outbox requested → transitions only.
    let mut c3 = Cycle::at(3_000);
    c3.transitions = vec![transition("E-02", TransitionKind::Fired, 3_000)];
    c3.with_outbox = false;
    c3.previous = m2;
    c3.next = Memory::default();
    c3.record(&mut db).unwrap();
    assert_eq!(db.load_memory().unwrap(), Memory::default());
    assert_eq!(count(&path, "transitions"), 4);
    assert_eq!(count(&path, "alert_outbox"), 3);
    assert_eq!(count(&path, "memory_flags"), 0);
}

#[test]
fn store_failed_record_cycle_writes_nothing() {
    let (_dir, path) = temp_db();
    let mut db = StateDb::open(&path).unwrap();
    let m1 = memory(&[("x1", "success", 900)], Some(800));
    let mut c1 = Cycle::at(1_000);
    c1.states = vec![
        state("S-01", Outcome::Green, 1_000, false),
        state("E-02", Outcome::Green, 1_000, false),
    ];
    c1.next = m1.clone();
    c1.record(&mut db).unwrap();
    let states_before = db.load_states().unwrap();

    // A second process plants a failure: the third violation insert aborts, after the cycle row
    // and two violations have been written inside the transaction.
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER fail_violation BEFORE INSERT ON violation_episodes
             WHEN NEW.subject = 'boom' BEGIN SELECT RAISE(ABORT, 'planted failure'); END;",
        )
        .unwrap();
    let mut c2 = Cycle::at(2_000);
    c2.violations = vec![
        violation("S-01", "a", Severity::Critical),
        violation("S-01", "b", Severity::Critical),
        violation("S-01", "boom", Severity::Critical),
    ];
    c2.states = vec![state("S-01", Outcome::Red, 2_000, true)];
    c2.transitions = vec![transition("S-01", TransitionKind::Fired, 2_000)];
    c2.previous = m1.clone();
    c2.next = memory(&[("x9", "failed", 2_000)], None);
    let err = c2.record(&mut db).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sqlite {
                op: "record_cycle: insert episode",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("planted failure"), "{err}");

    assert_eq!(count(&path, "cycles"), 1);
    assert_eq!(count(&path, "violation_episodes"), 0);
    assert_eq!(count(&path, "transitions"), 0);
    assert_eq!(count(&path, "alert_outbox"), 0);
    assert_eq!(db.load_states().unwrap(), states_before);
    assert_eq!(db.load_memory().unwrap(), m1);

    // A failure at the outbox step (after states and transitions) rolls back just as fully.
    raw(&path)
        .execute_batch(
            "DROP TRIGGER fail_violation;
             CREATE TRIGGER fail_outbox BEFORE INSERT ON alert_outbox
             BEGIN SELECT RAISE(ABORT, 'planted outbox failure'); END;",
        )
        .unwrap();
    c2.violations.truncate(2);
    let err = c2.record(&mut db).unwrap_err();
    assert!(err.to_string().contains("outbox"), "{err}");
    assert_eq!(count(&path, "cycles"), 1);
    assert_eq!(count(&path, "violation_episodes"), 0);
    assert_eq!(count(&path, "transitions"), 0);
    assert_eq!(db.load_states().unwrap(), states_before);
    assert_eq!(db.load_memory().unwrap(), m1);

    // Once the fault is gone the same handle records normally.
    raw(&path)
        .execute_batch("DROP TRIGGER fail_outbox")
        .unwrap();
    c2.record(&mut db).unwrap();
    assert_eq!(count(&path, "cycles"), 2);
    assert_eq!(db.load_states().unwrap()["S-01"], c2.states[0]);
}

#[test]
fn store_state_and_memory_survive_a_restart() {
    let (_dir, path) = temp_db();
    let m = memory(&[("e-1", "success", 10), ("e-2", "failed", 20)], Some(30));
    let (states, memory_before, cycle_before) = {
        let mut db = StateDb::open(&path).unwrap();
        let mut c = Cycle::at(5_000);
        c.violations = vec![violation("S-01", "a", Severity::Critical)];
        c.states = vec![
            state("S-01", Outcome::Red, 4_000, true),
            state("E-02", Outcome::Green, 3_000, false),
            state("H-01", Outcome::Unknown, 5_000, false),
        ];
        c.transitions = vec![transition("S-01", TransitionKind::Fired, 5_000)];
        c.next = m.clone();
        c.record(&mut db).unwrap();
        (
            db.load_states().unwrap(),
            db.load_memory().unwrap(),
            db.last_cycle().unwrap(),
        )
    };
    assert_eq!(memory_before, m);

    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.load_states().unwrap(), states);
    assert_eq!(db.load_memory().unwrap(), memory_before);
    assert_eq!(db.last_cycle().unwrap(), cycle_before);
    assert_eq!(db.outbox_depth().unwrap().pending, 1);
}

#[test]
fn store_lease_is_single_flight_across_handles() {
    let (_dir, path) = temp_db();
    let daemon = StateDb::open(&path).unwrap();
    let check = StateDb::open(&path).unwrap();
    let ttl = 60_000;

    let held = daemon
        .try_acquire_lease("daemon", 1_000, ttl)
        .unwrap()
        .unwrap();
    assert_eq!(held.expires_at_ms, 61_000);
    // The other "process" sees a cycle in progress, until the lease expires.
    assert!(
        check
            .try_acquire_lease("check", 2_000, ttl)
            .unwrap()
            .is_none()
    );
    assert!(
        check
            .try_acquire_lease("check", 61_000, ttl)
            .unwrap()
            .is_none()
    );
    let taken = check
        .try_acquire_lease("check", 61_001, ttl)
        .unwrap()
        .unwrap();
    assert_eq!(taken.holder, "check");
    // The crashed-and-back holder cannot release or renew what it lost.
    assert!(!daemon.release_lease("daemon").unwrap());
    assert!(
        daemon
            .try_acquire_lease("daemon", 62_000, ttl)
            .unwrap()
            .is_none()
    );
    // After release the other handle acquires at once.
    assert!(check.release_lease("check").unwrap());
    assert!(
        daemon
            .try_acquire_lease("daemon", 62_001, ttl)
            .unwrap()
            .is_some()
    );
    assert_eq!(check.current_lease().unwrap().unwrap().holder, "daemon");
}

#[test]
fn store_lease_race_has_exactly_one_winner() {
    let (_dir, path) = temp_db();
    drop(StateDb::open(&path).unwrap());
    let contenders = 6;
    let barrier = Arc::new(Barrier::new(contenders));
    let handles: Vec<_> = (0..contenders)
        .map(|i| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let db = StateDb::open(&path).unwrap();
                barrier.wait();
                db.try_acquire_lease(&format!("p{i}"), 1_000, 60_000)
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let winners = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}

#[test]
fn store_prune_removes_old_cycles_and_their_violations_only() {
    let (_dir, path) = temp_db();
    let mut db = StateDb::open(&path).unwrap();
    let day = 86_400_000;
    let mut last_memory = Memory::default();
    for d in 1..=10 {
        let mut c = Cycle::at(d * day);
        c.violations = vec![
            violation("S-01", "a", Severity::Critical),
            violation("E-06", "s", Severity::Major),
        ];
        c.states = vec![state("S-01", Outcome::Red, day, d == 1)];
        if d == 1 {
            c.transitions = vec![transition("S-01", TransitionKind::Fired, day)];
        }
        c.previous = last_memory.clone();
        c.next = memory(&[("x", "success", d * day)], None);
        last_memory = c.next.clone();
        c.record(&mut db).unwrap();
    }
    let states = db.load_states().unwrap();

    // Keep days 6..=10 (each cycle starts 100 ms before its snapshot).
    // Both episodes are still open (S-01 red all along; E-06 never evaluated): never pruned.
    let stats = db.prune_in_batches(6 * day - 100, 2).unwrap();
    assert_eq!((stats.cycles, stats.violations), (5, 0));
    assert_eq!(count(&path, "cycles"), 5);
    assert_eq!(count(&path, "cycle_invariants"), 10);
    let (rest, total) = db
        .violations(&ViolationQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(total, 2);
    assert!(
        rest.iter()
            .all(|v| v.status == "open" && v.first_seen_ms == day)
    );
    // S-01's open episode counts the retained red cycles only.
    let s01 = rest.iter().find(|v| v.invariant_id == "S-01").unwrap();
    assert_eq!((s01.cycles, s01.last_seen_ms), (5, 10 * day));
    // Current data and alerts are untouched: the day-1 alert is still pending.
    assert_eq!(db.load_states().unwrap(), states);
    assert_eq!(db.load_memory().unwrap(), last_memory);
    assert_eq!(count(&path, "transitions"), 1);
    let due = db.due_outbox(i64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].invariant_id, "S-01");
    // Idempotent.
    assert_eq!(db.prune(6 * day - 100).unwrap().cycles, 0);
}

#[test]
fn store_violation_queries_filter_and_page() {
    let (_dir, path) = temp_db();
    let mut db = StateDb::open(&path).unwrap();
    // t = 1000: S-01 ×3 critical, E-04 ×1 major; t = 2000: S-01 ×1, S-07 ×2 minor; t = 3000: E-04 ×1.
    let plan: [(Millis, Vec<Violation>); 3] = [
        (
            1_000,
            vec![
                violation("S-01", "a1", Severity::Critical),
                violation("S-01", "a2", Severity::Critical),
                violation("S-01", "a3", Severity::Critical),
                violation("E-04", "q1", Severity::Major),
            ],
        ),
        (
            2_000,
            vec![
                violation("S-01", "a1", Severity::Critical),
                violation("S-07", "d1", Severity::Minor),
                violation("S-07", "d2", Severity::Minor),
            ],
        ),
        (3_000, vec![violation("E-04", "q2", Severity::Major)]),
    ];
    // Each cycle evaluates all three: an invariant without violations is green, which closes
    // its open episodes; a subject gone from a red invariant closes too.
    for (at, vs) in &plan {
        let mut c = Cycle::at(*at);
        c.violations = vs.clone();
        c.states = ["E-04", "S-01", "S-07"]
            .iter()
            .map(|id| {
                let red = vs.iter().any(|v| v.invariant_id == *id);
                let outcome = if red { Outcome::Red } else { Outcome::Green };
                state(id, outcome, *at, red)
            })
            .collect();
        c.record(&mut db).unwrap();
    }
    let q = |f: &dyn Fn(&mut ViolationQuery)| {
        let mut query = ViolationQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut query);
        let (page, total) = db.violations(&query).unwrap();
        (
            page.iter().map(|v| v.subject.clone()).collect::<Vec<_>>(),
            total,
        )
    };

    // One row per episode: a1 (red at 1000 and 2000) is one row, not two.
    let (all, total) = q(&|_| {});
    assert_eq!(total, 7);
    assert_eq!(
        all,
        ["q2", "d2", "d1", "q1", "a3", "a2", "a1"],
        "newest first sighting first"
    );

    assert_eq!(q(&|x| x.invariant_id = Some("S-01".into())).1, 3);
    assert_eq!(q(&|x| x.invariant_id = Some("nope".into())), (vec![], 0));
    assert_eq!(
        q(&|x| x.severity = Some(Severity::Minor)),
        (vec!["d2".into(), "d1".into()], 2)
    );
    assert_eq!(q(&|x| x.since_ms = Some(2_000)).1, 4);
    assert_eq!(q(&|x| x.until_ms = Some(2_000)).1, 4);
    assert_eq!(
        q(&|x| {
            x.since_ms = Some(2_000);
            x.until_ms = Some(3_000);
        })
        .1,
        3
    );
    assert_eq!(
        q(&|x| {
            x.invariant_id = Some("E-04".into());
            x.severity = Some(Severity::Major);
            x.since_ms = Some(1_500);
        }),
        (vec!["q2".into()], 1)
    );

    // Pagination: pages tile the result, the total stays the full count.
    let mut seen = Vec::new();
    for page_no in 0..3 {
        let (page, total) = q(&|x| {
            x.limit = 3;
            x.offset = page_no * 3;
        });
        assert_eq!(total, 7);
        assert!(page.len() <= 3);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert_eq!(q(&|x| x.offset = 7), (vec![], 7));
    assert_eq!(q(&|x| x.limit = 0), (vec![], 7));

    let stats = db.violation_stats(None).unwrap();
    let by_key: BTreeMap<(String, Severity), (u64, Millis, Millis)> = stats
        .into_iter()
        .map(|s| {
            (
                (s.invariant_id, s.severity),
                (s.count, s.first_seen_ms, s.last_seen_ms),
            )
        })
        .collect();
    assert_eq!(
        by_key[&("S-01".into(), Severity::Critical)],
        (4, 1_000, 2_000)
    );
    assert_eq!(by_key[&("E-04".into(), Severity::Major)], (2, 1_000, 3_000));
    assert_eq!(by_key[&("S-07".into(), Severity::Minor)], (2, 2_000, 2_000));
    assert_eq!(db.violation_stats(Some(2_500)).unwrap().len(), 1);

    let last = db.last_violation_per_invariant().unwrap();
    assert_eq!(
        last["S-01"].subject, "a3",
        "the most recently opened episode"
    );
    assert_eq!(last["S-01"].closed_at_ms, Some(2_000));
    let a1 = all_rows(&db)
        .into_iter()
        .find(|v| v.subject == "a1")
        .unwrap();
    assert_eq!(
        (
            a1.first_seen_ms,
            a1.last_seen_ms,
            a1.cycles,
            a1.closed_at_ms
        ),
        (1_000, 2_000, 2, Some(3_000)),
        "one episode over two red cycles, closed when S-01 turned green"
    );
    assert_eq!(last["E-04"].subject, "q2");
    assert_eq!(last["S-07"].subject, "d2");
}

/// A schema-2 file (one `violations` row per cycle and subject) is converted by migration 0003:
/// per-cycle counts, one episode per (invariant, subject), open only when still red.
#[test]
fn store_migration_converts_violation_rows_into_episodes() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = raw(&path);
        conn.execute_batch(include_str!("../migrations/0001_initial.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../migrations/0002_deliverer_lease.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        // Cycle 1: S-01 red on a, b. Cycle 2: S-01 red on a; E-02 red on x. Cycle 3: S-01 red
        // on a, E-02 green.
        let cycle = |id: i64, outcomes: &str, n: i64| {
            conn.execute(
                r#"INSERT INTO cycles VALUES (?1, ?2, ?2, 1.0, ?2, 'schedule', '[]', ?3, '[]', ?4)"#,
                rusqlite::params![id, id * 1000, outcomes, n],
            )
            .unwrap();
        };
        let row = |cycle: i64, inv: &str, subject: &str| {
            conn.execute(
                "INSERT INTO violations (cycle_id, invariant_id, tier, severity, subject, summary,
                                         observed_state, signal, taken_at)
                 VALUES (?1, ?2, 'A', 'critical', ?3, 'old', '{}', 'sig', ?4)",
                rusqlite::params![cycle, inv, subject, cycle * 1000],
            )
            .unwrap();
        };
        cycle(1, r#"{"S-01":"red","E-02":"green"}"#, 2);
        row(1, "S-01", "a");
        row(1, "S-01", "b");
        cycle(2, r#"{"S-01":"red","E-02":"red"}"#, 2);
        row(2, "S-01", "a");
        row(2, "E-02", "x");
        cycle(3, r#"{"S-01":"red","E-02":"green"}"#, 1);
        row(3, "S-01", "a");
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), 5);
    assert_eq!(count(&path, "cycle_invariants"), 4);
    let rows = all_rows(&db);
    let got: BTreeMap<&str, (&str, Millis, Millis, u64, Option<Millis>)> = rows
        .iter()
        .map(|v| {
            (
                v.subject.as_str(),
                (
                    v.status,
                    v.first_seen_ms,
                    v.last_seen_ms,
                    v.cycles,
                    v.closed_at_ms,
                ),
            )
        })
        .collect();
    assert_eq!(got["a"], ("open", 1_000, 3_000, 3, None));
    assert_eq!(got["b"], ("closed", 1_000, 1_000, 1, Some(2_000)));
    assert_eq!(got["x"], ("closed", 2_000, 2_000, 1, Some(3_000)));
    assert_eq!(got.len(), 3);
    let stats = db.violation_stats(None).unwrap();
    let s01 = stats.iter().find(|s| s.invariant_id == "S-01").unwrap();
    assert_eq!((s01.count, s01.cycles), (4, 3));
    // The converted file records new cycles like any other.
    drop(db);
    let mut db = StateDb::open(&path).unwrap();
    let mut c = Cycle::at(4_000);
    c.violations = vec![violation("S-01", "a", Severity::Critical)];
    c.states = vec![state("S-01", Outcome::Red, 4_000, true)];
    let r = c.record(&mut db).unwrap();
    assert_eq!(r.episodes.opened, 0, "a's migrated episode continues");
    assert_eq!(count(&path, "violation_episodes"), 3);
}
