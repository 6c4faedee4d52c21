//! Writing a cycle ([`StateDb::record_cycle`]: one transaction for the cycle row, the
//! per-invariant violation counts, the violation episodes that changed, the new invariant states,
//! the transitions, their outbox rows and the memory diff) and loading what the next cycle starts
//! from ([`StateDb::load_states`], [`StateDb::load_memory`]).
//!
//! Violations are stored as episodes (migration 0003): what a cycle writes grows with what
//! changed, not with how much is red. Per cycle it inserts an episode for each new (invariant,
//! subject), rewrites an open episode's evidence only when it differs from what is stored, and
//! closes the open episodes whose subject is gone — only for invariants this cycle evaluated
//! (unknown closes nothing) and only when their evidence was complete (a capped invariant cannot
//! tell "gone" from "not shown"). It must not decide what is a violation nor cap anything itself:
//! the caller passes the (capped) evidence and the full counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use canary_invariants::{
    InvariantState, Memory, Millis, Outcome, PidDwell, SeenTerminal, Severity, SourceUnavailable,
    Transition, TransitionKind, Violation, ZombieDwell,
};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::codec;
use super::error::{JsonContext, SqlContext};
use super::silences::{self, Pending, Silence};
use super::{StateDb, StoreError};

/// `memory_flags` key holding [`Memory::blind_suspected_since_ms`].
pub(crate) const FLAG_H01_BLIND_SINCE: &str = "h01.blind_suspected_since";

/// Everything one cycle writes. Borrowed so the sequencer keeps ownership of its data.
#[derive(Debug, Clone, Copy)]
pub struct CycleRecord<'a> {
    /// Wall clock when the cycle started.
    pub started_at_ms: Millis,
    /// Wall clock when the cycle finished (also the outbox rows' `created_at`).
    pub finished_at_ms: Millis,
    /// Measured duration (monotonic clock), for the cycle result.
    pub duration_ms: f64,
    /// What started the cycle: `schedule`, `manual`, `api`, ...
    pub trigger: &'a str,
    /// The invariant ids evaluated (selected) this cycle.
    pub checks_run: &'a [String],
    /// Per-invariant outcome of this cycle.
    pub outcomes: &'a BTreeMap<String, Outcome>,
    /// Sources that could not be read.
    pub sources_unavailable: &'a [SourceUnavailable],
    /// The snapshot's time: an episode's first sighting, its evidence time, its closing time.
    pub taken_at_ms: Millis,
    /// This cycle's violations kept as evidence (capped per invariant by the caller), sorted,
    /// in the order their episode ids are returned.
    pub violations: &'a [Violation],
    /// The full violation count of every red invariant (before any cap). An invariant whose
    /// count exceeds its evidence in `violations` was capped.
    pub violation_counts: &'a BTreeMap<String, u64>,
    /// The worst severity of every red invariant (from the full list).
    pub severities: &'a BTreeMap<String, Severity>,
    /// New states of the invariants evaluated this cycle (others stay untouched).
    pub states: &'a [InvariantState],
    /// Fired/resolved transitions, in the order their ids are returned.
    pub transitions: &'a [Transition],
    /// One alert payload per transition (same order), or empty for "no outbox rows" (silent
    /// sink, `check --no-alert` style callers). Ignored when `planner` is set.
    pub outbox_payloads: &'a [serde_json::Value],
    /// Decides, inside the transaction, which transitions are silenced and builds the outbox
    /// payloads once the episode ids are known (the cycle's way; `outbox_payloads` is for callers
    /// without silences).
    pub planner: Option<AlertPlanner<'a>>,
    /// The memory this cycle started from: exactly what [`StateDb::load_memory`] returned. Only
    /// the difference to `next_memory` is written.
    pub previous_memory: &'a Memory,
    /// The memory the invariants returned.
    pub next_memory: &'a Memory,
}

/// The full count and worst severity per invariant of an UNCAPPED violation list, for callers
/// that keep every violation as evidence (tests, tools); the cycle takes both from the evaluation.
pub fn tally(violations: &[Violation]) -> (BTreeMap<String, u64>, BTreeMap<String, Severity>) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut worst: BTreeMap<String, Severity> = BTreeMap::new();
    for v in violations {
        *counts.entry(v.invariant_id.clone()).or_insert(0) += 1;
        let w = worst.entry(v.invariant_id.clone()).or_insert(v.severity);
        *w = (*w).max(v.severity);
    }
    (counts, worst)
}

/// Row ids assigned by [`StateDb::record_cycle`], and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCycle {
    /// The `cycles` row.
    pub cycle_id: i64,
    /// The episode of each violation, in input order (several violations of one subject share
    /// their episode).
    pub violation_ids: Vec<i64>,
    /// One per transition, in input order.
    pub transition_ids: Vec<i64>,
    /// Episode rows written: opened, evidence rewritten, closed.
    pub episodes: EpisodeWrites,
    /// Silenced and released alerts, silences that ended.
    pub alerts: RecordedAlerts,
}

/// What the planner is given, read inside the cycle's transaction.
#[derive(Debug)]
pub struct AlertContext<'a> {
    /// The episode of each violation of the record (same order as `CycleRecord::violations`).
    pub violation_ids: &'a [i64],
    /// Per invariant, the episodes this cycle closed.
    pub closed: &'a ClosedByInvariant,
    /// The silences active at the snapshot time.
    pub silences: &'a [Silence],
    /// Ids whose latest transition a silence kept out of Slack and that was not released.
    pub pending: &'a BTreeMap<String, Pending>,
}

/// Per invariant, the episodes a cycle closed.
pub type ClosedByInvariant = BTreeMap<String, Vec<ClosedEpisode>>;

/// An episode closed by this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedEpisode {
    /// Episode id.
    pub id: i64,
    /// Its subject.
    pub subject: String,
}

/// What to do with each transition, and which pending silenced transitions to release now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPlan {
    /// One per transition of the record (same order).
    pub transitions: Vec<PlannedAlert>,
    /// Silenced transitions announced now that nothing covers them any more.
    pub releases: Vec<Release>,
}

/// One transition's fate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannedAlert {
    /// What covered it (`silence:<id>`, `window:<n>`); `None` = announced.
    pub silenced_by: Option<String>,
    /// Its outbox payload (announced and a webhook configured).
    pub payload: Option<serde_json::Value>,
}

/// A pending silenced transition announced now.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The silenced transition (its outbox row is created now).
    pub transition_id: i64,
    /// Its invariant (or `source:<name>`).
    pub invariant_id: String,
    /// The message's kind (what Slack must now hear).
    pub kind: TransitionKind,
    /// The payload (`None`: silent sink, only marked released).
    pub payload: Option<serde_json::Value>,
}

/// The planner: called once, inside the transaction, after the episodes are written.
#[derive(Clone, Copy)]
pub struct AlertPlanner<'a>(pub &'a dyn Fn(&AlertContext<'_>) -> AlertPlan);

impl std::fmt::Debug for AlertPlanner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertPlanner")
    }
}

/// What the cycle's alerting wrote besides the transitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedAlerts {
    /// Per transition (same order): what silenced it, if anything.
    pub silenced_by: Vec<Option<String>>,
    /// `(invariant id, kind, transition id)` of each release.
    pub released: Vec<(String, TransitionKind, i64)>,
    /// Silences this cycle is the first to see over (their end is logged by the caller).
    pub silences_ended: Vec<Silence>,
}

/// Episode rows one cycle wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpisodeWrites {
    /// New episodes.
    pub opened: u64,
    /// Open episodes whose evidence changed.
    pub updated: u64,
    /// Episodes closed (subject gone from an evaluated invariant).
    pub closed: u64,
}

/// JSON texts encoded before the write transaction, so the write lock is held only for SQL.
struct Encoded {
    checks_run: String,
    outcomes: String,
    sources_unavailable: String,
    observed_states: Vec<String>,
    payloads: Vec<String>,
}

impl Encoded {
    fn new(rec: &CycleRecord<'_>) -> Result<Encoded, StoreError> {
        const OP: &str = "record_cycle: encode";
        Ok(Encoded {
            checks_run: serde_json::to_string(rec.checks_run).json_ctx(OP)?,
            outcomes: serde_json::to_string(rec.outcomes).json_ctx(OP)?,
            sources_unavailable: serde_json::to_string(rec.sources_unavailable).json_ctx(OP)?,
            observed_states: rec
                .violations
                .iter()
                .map(|v| serde_json::to_string(&v.observed_state))
                .collect::<Result<_, _>>()
                .json_ctx(OP)?,
            payloads: rec
                .outbox_payloads
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<_, _>>()
                .json_ctx(OP)?,
        })
    }
}

impl StateDb {
    /// Writes one cycle atomically: either everything in `rec` is stored or nothing is.
    pub fn record_cycle(&mut self, rec: &CycleRecord<'_>) -> Result<RecordedCycle, StoreError> {
        if !rec.outbox_payloads.is_empty() && rec.outbox_payloads.len() != rec.transitions.len() {
            return Err(StoreError::Invalid {
                op: "record_cycle",
                reason: format!(
                    "{} outbox payloads for {} transitions (must be equal, or no payloads)",
                    rec.outbox_payloads.len(),
                    rec.transitions.len()
                ),
            });
        }
        let started = Instant::now();
        let enc = Encoded::new(rec)?;
        let total: u64 = rec.violation_counts.values().sum();
        let violation_count = i64::try_from(total).unwrap_or(i64::MAX);

        // IMMEDIATE: take the write lock up front (waiting on the busy timeout) instead of
        // failing on a lock upgrade after half the inserts.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("record_cycle: begin")?;

        tx.execute(
            r#"INSERT INTO cycles (started_at, finished_at, duration_ms, taken_at, "trigger",
                                   checks_run, outcomes, sources_unavailable, violation_count)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"#,
            params![
                rec.started_at_ms,
                rec.finished_at_ms,
                rec.duration_ms,
                rec.taken_at_ms,
                rec.trigger,
                enc.checks_run,
                enc.outcomes,
                enc.sources_unavailable,
                violation_count,
            ],
        )
        .ctx("record_cycle: insert cycle")?;
        let cycle_id = tx.last_insert_rowid();

        write_counts(&tx, cycle_id, rec)?;
        let (violation_ids, episodes, closed) =
            write_episodes(&tx, cycle_id, rec, &enc.observed_states)?;

        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO invariant_states (invariant_id, state, since, consecutive, firing,
                                                   severity, last_fired_at, last_resolved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (invariant_id) DO UPDATE SET
                         state = excluded.state,
                         since = excluded.since,
                         consecutive = excluded.consecutive,
                         firing = excluded.firing,
                         severity = excluded.severity,
                         last_fired_at = excluded.last_fired_at,
                         last_resolved_at = excluded.last_resolved_at",
                )
                .ctx("record_cycle: prepare state upsert")?;
            for s in rec.states {
                stmt.execute(params![
                    s.invariant_id,
                    s.state.as_str(),
                    s.since_ms,
                    s.consecutive,
                    s.firing,
                    s.severity.map(|x| x.as_str()),
                    s.last_fired_at_ms,
                    s.last_resolved_at_ms,
                ])
                .ctx("record_cycle: upsert invariant state")?;
            }
        }

        let silences_ended = silences::note_ended(&tx, rec.taken_at_ms)?;
        let plan = match rec.planner {
            None => None,
            Some(planner) => {
                let active = silences::active_at(&tx, rec.taken_at_ms)?;
                let pending = silences::pending(&tx)?;
                let plan = (planner.0)(&AlertContext {
                    violation_ids: &violation_ids,
                    closed: &closed,
                    silences: &active,
                    pending: &pending,
                });
                if plan.transitions.len() != rec.transitions.len() {
                    return Err(StoreError::Invalid {
                        op: "record_cycle",
                        reason: format!(
                            "{} planned alerts for {} transitions",
                            plan.transitions.len(),
                            rec.transitions.len()
                        ),
                    });
                }
                Some(plan)
            }
        };
        let silenced_by: Vec<Option<String>> = match &plan {
            Some(plan) => plan
                .transitions
                .iter()
                .map(|p| p.silenced_by.clone())
                .collect(),
            None => vec![None; rec.transitions.len()],
        };

        let mut transition_ids = Vec::with_capacity(rec.transitions.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO transitions (cycle_id, invariant_id, kind, severity, at, previous_at,
                                              silenced_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .ctx("record_cycle: prepare transition insert")?;
            for (t, by) in rec.transitions.iter().zip(&silenced_by) {
                let id = stmt
                    .insert(params![
                        cycle_id,
                        t.invariant_id,
                        t.kind.as_str(),
                        t.severity.as_str(),
                        t.at_ms,
                        t.previous_at_ms,
                        by,
                    ])
                    .ctx("record_cycle: insert transition")?;
                transition_ids.push(id);
            }
        }

        // Which transition gets which outbox payload: the plan's (silenced ones get none), or
        // the caller's list.
        let planned_payloads: Vec<(i64, String)> = match &plan {
            Some(plan) => {
                let mut out = Vec::new();
                for (id, p) in transition_ids.iter().zip(&plan.transitions) {
                    if let (None, Some(payload)) = (&p.silenced_by, &p.payload) {
                        out.push((
                            *id,
                            serde_json::to_string(payload).json_ctx("record_cycle: encode")?,
                        ));
                    }
                }
                for r in &plan.releases {
                    if let Some(payload) = &r.payload {
                        out.push((
                            r.transition_id,
                            serde_json::to_string(payload).json_ctx("record_cycle: encode")?,
                        ));
                    }
                }
                out
            }
            None => transition_ids
                .iter()
                .copied()
                .zip(enc.payloads.iter().cloned())
                .collect(),
        };
        let mut released = Vec::new();
        if let Some(plan) = &plan {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE transitions SET released_at = ?2
                     WHERE id = ?1 AND silenced_by IS NOT NULL AND released_at IS NULL",
                )
                .ctx("record_cycle: prepare release")?;
            for r in &plan.releases {
                let n = stmt
                    .execute(params![r.transition_id, rec.taken_at_ms])
                    .ctx("record_cycle: release silenced transition")?;
                if n != 1 {
                    return Err(StoreError::Invalid {
                        op: "record_cycle",
                        reason: format!(
                            "transition {} is not a pending silenced one",
                            r.transition_id
                        ),
                    });
                }
                released.push((r.invariant_id.clone(), r.kind, r.transition_id));
            }
        }

        if !planned_payloads.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO alert_outbox (transition_id, payload, created_at, attempts,
                                               next_attempt_at)
                     VALUES (?1, ?2, ?3, 0, ?3)",
                )
                .ctx("record_cycle: prepare outbox insert")?;
            for (transition_id, payload) in &planned_payloads {
                stmt.execute(params![transition_id, payload, rec.finished_at_ms])
                    .ctx("record_cycle: insert outbox row")?;
            }
        }

        let memory_writes = write_memory_diff(&tx, rec.previous_memory, rec.next_memory)?;

        tx.commit().ctx("record_cycle: commit")?;
        tracing::debug!(
            cycle.id = cycle_id,
            violations = total,
            evidence = violation_ids.len(),
            episodes.opened = episodes.opened,
            episodes.updated = episodes.updated,
            episodes.closed = episodes.closed,
            states = rec.states.len(),
            transitions = transition_ids.len(),
            outbox = planned_payloads.len(),
            memory_writes,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "cycle recorded"
        );
        Ok(RecordedCycle {
            cycle_id,
            violation_ids,
            transition_ids,
            episodes,
            alerts: RecordedAlerts {
                silenced_by,
                released,
                silences_ended,
            },
        })
    }

    /// Every persisted per-invariant state, by id.
    pub fn load_states(&self) -> Result<BTreeMap<String, InvariantState>, StoreError> {
        const OP: &str = "load_states";
        type Raw = (
            String,
            String,
            i64,
            i64,
            bool,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT invariant_id, state, since, consecutive, firing, severity,
                        last_fired_at, last_resolved_at
                 FROM invariant_states",
            )
            .ctx(OP)?;
        let raws = stmt
            .query_map([], |r| -> rusqlite::Result<Raw> {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .ctx(OP)?
            .collect::<Result<Vec<Raw>, _>>()
            .ctx(OP)?;
        let mut out = BTreeMap::new();
        for (invariant_id, state, since_ms, consecutive, firing, severity, fired, resolved) in raws
        {
            let state = InvariantState {
                state: codec::parse_outcome(OP, "invariant_states.state", &state)?,
                since_ms,
                consecutive: codec::to_u32(OP, "invariant_states.consecutive", consecutive)?,
                firing,
                severity: severity
                    .map(|s| codec::parse_severity(OP, "invariant_states.severity", &s))
                    .transpose()?,
                last_fired_at_ms: fired,
                last_resolved_at_ms: resolved,
                invariant_id: invariant_id.clone(),
            };
            out.insert(invariant_id, state);
        }
        Ok(out)
    }

    /// The cross-cycle memory as the last recorded cycle left it.
    pub fn load_memory(&self) -> Result<Memory, StoreError> {
        const OP: &str = "load_memory";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT execution_id, status, seen_at FROM memory_seen_terminal")
            .ctx(OP)?;
        let seen_terminal = stmt
            .query_map([], |r| {
                Ok((
                    Arc::<str>::from(r.get::<_, String>(0)?),
                    SeenTerminal {
                        status: r.get::<_, String>(1)?.into(),
                        seen_at_ms: r.get(2)?,
                    },
                ))
            })
            .ctx(OP)?
            .collect::<Result<BTreeMap<_, _>, _>>()
            .ctx(OP)?;
        let blind_suspected_since_ms = self
            .conn
            .query_row(
                "SELECT value FROM memory_flags WHERE key = ?1",
                [FLAG_H01_BLIND_SINCE],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ctx(OP)?;
        let zombies = load_zombies(&self.conn)?;
        Ok(Memory {
            seen_terminal,
            blind_suspected_since_ms,
            zombies,
        })
    }
}

/// R-01's dwell memory: one `memory_zombies` row per (container, pid), grouped back by container.
fn load_zombies(conn: &rusqlite::Connection) -> Result<BTreeMap<String, ZombieDwell>, StoreError> {
    const OP: &str = "load_memory";
    let mut stmt = conn
        .prepare_cached(
            "SELECT container_id, started_at, pid, agent, first_count, first_seen, last_seen
             FROM memory_zombies ORDER BY container_id, pid",
        )
        .ctx(OP)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                PidDwell {
                    first_seen_ms: r.get(5)?,
                    last_seen_ms: r.get(6)?,
                },
            ))
        })
        .ctx(OP)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(OP)?;
    let mut out: BTreeMap<String, ZombieDwell> = BTreeMap::new();
    for (container, started_at_ms, pid, agent, first_count, seen) in rows {
        let pid = codec::to_u32(OP, "memory_zombies.pid", pid)?;
        let first_count = codec::to_u32(OP, "memory_zombies.first_count", first_count)?;
        out.entry(container)
            .or_insert_with(|| ZombieDwell {
                agent,
                started_at_ms,
                first_count,
                pids: BTreeMap::new(),
            })
            .pids
            .insert(pid, seen);
    }
    Ok(out)
}

/// Writes R-01's dwell memory where it changed: rows of pids gone are deleted, new or moved ones
/// upserted. Returns the rows written.
fn write_zombies_diff(
    tx: &rusqlite::Transaction<'_>,
    previous: &BTreeMap<String, ZombieDwell>,
    next: &BTreeMap<String, ZombieDwell>,
) -> Result<usize, StoreError> {
    let mut writes = 0;
    let row = |dwells: &BTreeMap<String, ZombieDwell>, container: &str, pid: u32| {
        dwells
            .get(container)
            .and_then(|d| d.pids.get(&pid).map(|seen| (d, *seen)))
            .map(|(d, seen)| (d.agent.clone(), d.started_at_ms, d.first_count, seen))
    };
    let mut delete = tx
        .prepare_cached("DELETE FROM memory_zombies WHERE container_id = ?1 AND pid = ?2")
        .ctx("record_cycle: prepare zombie delete")?;
    for (container, dwell) in previous {
        for pid in dwell.pids.keys() {
            if row(next, container, *pid).is_none() {
                delete
                    .execute(params![container, pid])
                    .ctx("record_cycle: delete zombie entry")?;
                writes += 1;
            }
        }
    }
    let mut upsert = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO memory_zombies
                 (container_id, started_at, pid, agent, first_count, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .ctx("record_cycle: prepare zombie upsert")?;
    for (container, dwell) in next {
        for pid in dwell.pids.keys() {
            let now = row(next, container, *pid);
            if now == row(previous, container, *pid) {
                continue;
            }
            if let Some((agent, started_at, first_count, seen)) = now {
                upsert
                    .execute(params![
                        container,
                        started_at,
                        pid,
                        agent,
                        first_count,
                        seen.first_seen_ms,
                        seen.last_seen_ms
                    ])
                    .ctx("record_cycle: upsert zombie entry")?;
                writes += 1;
            }
        }
    }
    Ok(writes)
}

/// One `cycle_invariants` row per red invariant: its full count, the evidence kept, its worst
/// severity. The count is what reports and stats read, so a cap never shrinks it.
fn write_counts(
    tx: &rusqlite::Transaction<'_>,
    cycle_id: i64,
    rec: &CycleRecord<'_>,
) -> Result<(), StoreError> {
    const OP: &str = "record_cycle: insert cycle_invariants";
    let mut shown: BTreeMap<&str, u64> = BTreeMap::new();
    let mut worst_shown: BTreeMap<&str, Severity> = BTreeMap::new();
    for v in rec.violations {
        *shown.entry(v.invariant_id.as_str()).or_insert(0) += 1;
        let worst = worst_shown
            .entry(v.invariant_id.as_str())
            .or_insert(v.severity);
        *worst = (*worst).max(v.severity);
    }
    for (id, n) in &shown {
        if rec.violation_counts.get(*id).copied().unwrap_or(0) < *n {
            return Err(StoreError::Invalid {
                op: "record_cycle",
                reason: format!("{id}: more violations kept as evidence than counted"),
            });
        }
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO cycle_invariants (cycle_id, invariant_id, severity, violations, stored)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx(OP)?;
    for (id, count) in rec.violation_counts.iter().filter(|(_, n)| **n > 0) {
        let severity = rec
            .severities
            .get(id)
            .or_else(|| worst_shown.get(id.as_str()))
            .ok_or_else(|| StoreError::Invalid {
                op: "record_cycle",
                reason: format!("{id}: {count} violations counted but no severity"),
            })?;
        stmt.execute(params![
            cycle_id,
            id,
            severity.as_str(),
            codec::sat_i64(*count),
            codec::sat_i64(shown.get(id.as_str()).copied().unwrap_or(0)),
        ])
        .ctx(OP)?;
    }
    Ok(())
}

/// An open episode as stored: its id, first cycle and the evidence to compare with.
struct OpenEpisode {
    id: i64,
    first_cycle_id: i64,
    tier: String,
    severity: String,
    summary: String,
    observed_state: String,
    signal: String,
}

/// Opens, updates and closes episodes (see the module doc). Returns each violation's episode id
/// (input order) and what was written.
fn write_episodes(
    tx: &rusqlite::Transaction<'_>,
    cycle_id: i64,
    rec: &CycleRecord<'_>,
    observed_states: &[String],
) -> Result<(Vec<i64>, EpisodeWrites, ClosedByInvariant), StoreError> {
    // Only the invariants judged this cycle can close episodes: an unknown or unselected
    // invariant's open episodes are left exactly as they are.
    let evaluated: BTreeSet<&str> = rec
        .outcomes
        .iter()
        .filter(|(_, o)| **o != Outcome::Unknown)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut open: HashMap<(String, String), OpenEpisode> = HashMap::new();
    {
        const OP: &str = "record_cycle: load open episodes";
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, invariant_id, subject, first_cycle_id, tier, severity, summary,
                        observed_state, signal
                 FROM violation_episodes WHERE closed_at IS NULL",
            )
            .ctx(OP)?;
        let mut rows = stmt.query([]).ctx(OP)?;
        while let Some(r) = rows.next().ctx(OP)? {
            let invariant_id: String = r.get(1).ctx(OP)?;
            let episode = OpenEpisode {
                id: r.get(0).ctx(OP)?,
                first_cycle_id: r.get(3).ctx(OP)?,
                tier: r.get(4).ctx(OP)?,
                severity: r.get(5).ctx(OP)?,
                summary: r.get(6).ctx(OP)?,
                observed_state: r.get(7).ctx(OP)?,
                signal: r.get(8).ctx(OP)?,
            };
            open.insert((invariant_id, r.get(2).ctx(OP)?), episode);
        }
    }

    let mut writes = EpisodeWrites::default();
    let mut ids = Vec::with_capacity(rec.violations.len());
    // (invariant, subject) → episode id, for the subjects found this cycle.
    let mut seen: HashMap<(&str, &str), i64> = HashMap::new();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO violation_episodes (invariant_id, subject, first_cycle_id,
                     first_seen, evidence_cycle_id, evidence_at, tier, severity, summary,
                     observed_state, signal)
                 VALUES (?1, ?2, ?3, ?4, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .ctx("record_cycle: prepare episode insert")?;
        let mut update = tx
            .prepare_cached(
                "UPDATE violation_episodes SET evidence_cycle_id = ?2, evidence_at = ?3,
                     tier = ?4, severity = ?5, summary = ?6, observed_state = ?7, signal = ?8
                 WHERE id = ?1",
            )
            .ctx("record_cycle: prepare episode update")?;
        for (v, observed) in rec.violations.iter().zip(observed_states) {
            let key = (v.invariant_id.as_str(), v.subject.as_str());
            // Several violations of one subject (different signals) share one episode; the
            // first in sorted order carries the evidence, the others still count.
            if let Some(id) = seen.get(&key) {
                ids.push(*id);
                continue;
            }
            let tier = codec::tier_str(v.tier);
            let id = match open.get(&(v.invariant_id.clone(), v.subject.clone())) {
                Some(e) => {
                    // Compare, don't rewrite: an unchanged episode costs no write at all.
                    let same = e.tier == tier
                        && e.severity == v.severity.as_str()
                        && e.summary == v.summary
                        && e.observed_state == *observed
                        && e.signal == v.signal;
                    if !same {
                        update
                            .execute(params![
                                e.id,
                                cycle_id,
                                rec.taken_at_ms,
                                tier,
                                v.severity.as_str(),
                                v.summary,
                                observed,
                                v.signal,
                            ])
                            .ctx("record_cycle: update episode evidence")?;
                        writes.updated += 1;
                    }
                    e.id
                }
                None => {
                    let id = insert
                        .insert(params![
                            v.invariant_id,
                            v.subject,
                            cycle_id,
                            rec.taken_at_ms,
                            tier,
                            v.severity.as_str(),
                            v.summary,
                            observed,
                            v.signal,
                        ])
                        .ctx("record_cycle: insert episode")?;
                    writes.opened += 1;
                    id
                }
            };
            seen.insert(key, id);
            ids.push(id);
        }
    }

    // Closing needs complete evidence: an invariant whose count exceeds what was kept may still
    // violate on a subject that was merely not shown.
    let complete = |id: &str| {
        let counted = rec.violation_counts.get(id).copied().unwrap_or(0);
        let kept = rec
            .violations
            .iter()
            .filter(|v| v.invariant_id == id)
            .count();
        counted <= u64::try_from(kept).unwrap_or(u64::MAX)
    };
    let completeness: BTreeMap<&str, bool> =
        evaluated.iter().map(|id| (*id, complete(id))).collect();
    let mut close = tx
        .prepare_cached(
            "UPDATE violation_episodes SET
                 closed_cycle_id = ?2,
                 closed_at = ?3,
                 last_cycle_id = COALESCE(
                     (SELECT MAX(ci.cycle_id) FROM cycle_invariants ci
                       WHERE ci.invariant_id = ?4 AND ci.cycle_id >= ?5 AND ci.cycle_id < ?2),
                     evidence_cycle_id),
                 last_seen = COALESCE(
                     (SELECT c.taken_at FROM cycle_invariants ci JOIN cycles c ON c.id = ci.cycle_id
                       WHERE ci.invariant_id = ?4 AND ci.cycle_id >= ?5 AND ci.cycle_id < ?2
                       ORDER BY ci.cycle_id DESC LIMIT 1),
                     evidence_at),
                 cycles = MAX(1, (SELECT COUNT(*) FROM cycle_invariants ci
                       WHERE ci.invariant_id = ?4 AND ci.cycle_id >= ?5 AND ci.cycle_id < ?2))
             WHERE id = ?1",
        )
        .ctx("record_cycle: prepare episode close")?;
    // Sorted, so the write order (and so the file) is deterministic.
    let mut gone: Vec<(&(String, String), &OpenEpisode)> = open
        .iter()
        .filter(|((inv, subject), _)| {
            completeness.get(inv.as_str()).copied().unwrap_or(false)
                && !seen.contains_key(&(inv.as_str(), subject.as_str()))
        })
        .collect();
    gone.sort_by_key(|(_, e)| e.id);
    let mut closed: BTreeMap<String, Vec<ClosedEpisode>> = BTreeMap::new();
    for ((inv, subject), e) in gone {
        closed.entry(inv.clone()).or_default().push(ClosedEpisode {
            id: e.id,
            subject: subject.clone(),
        });
        close
            .execute(params![
                e.id,
                cycle_id,
                rec.taken_at_ms,
                inv,
                e.first_cycle_id
            ])
            .ctx("record_cycle: close episode")?;
        writes.closed += 1;
    }
    Ok((ids, writes, closed))
}

/// Writes `next - previous`: deletes dropped execution ids, upserts new or changed ones, sets or
/// clears the H-01 flag. E-02's map holds up to an hour of terminal executions, so rewriting it
/// whole every cycle would cost thousands of writes for a handful of changes. Returns the number
/// of rows written, for the debug log.
fn write_memory_diff(
    tx: &rusqlite::Transaction<'_>,
    previous: &Memory,
    next: &Memory,
) -> Result<usize, StoreError> {
    let mut writes = 0;
    {
        let mut delete = tx
            .prepare_cached("DELETE FROM memory_seen_terminal WHERE execution_id = ?1")
            .ctx("record_cycle: prepare memory delete")?;
        for id in previous
            .seen_terminal
            .keys()
            .filter(|id| !next.seen_terminal.contains_key(*id))
        {
            delete
                .execute([id])
                .ctx("record_cycle: delete memory entry")?;
            writes += 1;
        }
    }
    {
        let mut upsert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO memory_seen_terminal (execution_id, status, seen_at)
                 VALUES (?1, ?2, ?3)",
            )
            .ctx("record_cycle: prepare memory upsert")?;
        for (id, seen) in &next.seen_terminal {
            if previous.seen_terminal.get(id) != Some(seen) {
                upsert
                    .execute(params![id, seen.status, seen.seen_at_ms])
                    .ctx("record_cycle: upsert memory entry")?;
                writes += 1;
            }
        }
    }
    if previous.blind_suspected_since_ms != next.blind_suspected_since_ms {
        match next.blind_suspected_since_ms {
            Some(ms) => tx.execute(
                "INSERT OR REPLACE INTO memory_flags (key, value) VALUES (?1, ?2)",
                params![FLAG_H01_BLIND_SINCE, ms],
            ),
            None => tx.execute(
                "DELETE FROM memory_flags WHERE key = ?1",
                [FLAG_H01_BLIND_SINCE],
            ),
        }
        .ctx("record_cycle: write H-01 flag")?;
        writes += 1;
    }
    writes += write_zombies_diff(tx, &previous.zombies, &next.zombies)?;
    Ok(writes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use canary_invariants::{Severity, Source, Tier, TransitionKind};
    use serde_json::json;

    pub(crate) fn violation(id: &str, subject: &str, severity: Severity) -> Violation {
        Violation {
            invariant_id: id.to_owned(),
            tier: Tier::A,
            severity,
            subject: subject.to_owned(),
            summary: format!("{id} broken for {subject}"),
            observed_state: json!({ "subject": subject, "n": 1 }),
            signal: "sig".to_owned(),
        }
    }

    pub(crate) fn state(id: &str, outcome: Outcome, firing: bool, at: Millis) -> InvariantState {
        InvariantState {
            invariant_id: id.to_owned(),
            state: outcome,
            since_ms: at,
            consecutive: 1,
            firing,
            severity: firing.then_some(Severity::Critical),
            last_fired_at_ms: firing.then_some(at),
            last_resolved_at_ms: None,
        }
    }

    pub(crate) fn fired(id: &str, at: Millis) -> Transition {
        Transition {
            invariant_id: id.to_owned(),
            kind: TransitionKind::Fired,
            severity: Severity::Critical,
            at_ms: at,
            previous_at_ms: None,
            reminder: false,
        }
    }

    /// Records one cycle at `at` with the given violations, states, transitions (one payload
    /// each) and memory change.
    pub(crate) fn record(
        db: &mut StateDb,
        at: Millis,
        violations: &[Violation],
        states: &[InvariantState],
        transitions: &[Transition],
        previous: &Memory,
        next: &Memory,
    ) -> Result<RecordedCycle, StoreError> {
        let outcomes: BTreeMap<String, Outcome> = states
            .iter()
            .map(|s| (s.invariant_id.clone(), s.state))
            .collect();
        let checks: Vec<String> = outcomes.keys().cloned().collect();
        let payloads: Vec<serde_json::Value> = transitions
            .iter()
            .map(|t| json!({ "text": t.invariant_id }))
            .collect();
        let unavailable = [SourceUnavailable {
            source: Source::Redis,
            error: "refused".into(),
        }];
        let (counts, severities) = tally(violations);
        db.record_cycle(&CycleRecord {
            started_at_ms: at - 10,
            finished_at_ms: at + 10,
            duration_ms: 20.5,
            trigger: "test",
            checks_run: &checks,
            outcomes: &outcomes,
            sources_unavailable: &unavailable,
            taken_at_ms: at,
            violations,
            violation_counts: &counts,
            severities: &severities,
            states,
            transitions,
            outbox_payloads: &payloads,
            planner: None,
            previous_memory: previous,
            next_memory: next,
        })
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

    fn count(db: &StateDb, table: &str) -> i64 {
        db.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn round_trip_ids_states_transitions_outbox() {
        let mut db = StateDb::open_in_memory().unwrap();
        let vs = [
            violation("S-01", "a", Severity::Critical),
            violation("S-01", "b", Severity::Major),
        ];
        let states = [
            state("S-01", Outcome::Red, true, 1000),
            state("E-02", Outcome::Green, false, 1000),
        ];
        let ts = [fired("S-01", 1000)];
        let empty = Memory::default();
        let rec = record(&mut db, 1000, &vs, &states, &ts, &empty, &empty).unwrap();
        assert_eq!(rec.violation_ids.len(), 2);
        assert!(rec.violation_ids[0] < rec.violation_ids[1]);
        assert_eq!(rec.transition_ids.len(), 1);
        let loaded = db.load_states().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded["S-01"], states[0]);
        assert_eq!(loaded["E-02"], states[1]);
        assert_eq!(count(&db, "alert_outbox"), 1);
        let (next_attempt, created, attempts): (i64, i64, i64) = db
            .conn
            .query_row(
                "SELECT next_attempt_at, created_at, attempts FROM alert_outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((next_attempt, created, attempts), (1010, 1010, 0));

        // A later cycle updates one state and leaves the other untouched.
        let next = [state("S-01", Outcome::Green, false, 2000)];
        record(&mut db, 2000, &[], &next, &[], &empty, &empty).unwrap();
        let loaded = db.load_states().unwrap();
        assert_eq!(loaded["S-01"], next[0]);
        assert_eq!(loaded["E-02"], states[1]);
    }

    #[test]
    fn payload_count_mismatch_writes_nothing() {
        let mut db = StateDb::open_in_memory().unwrap();
        let empty = Memory::default();
        let outcomes = BTreeMap::new();
        let ts = [fired("S-01", 1), fired("S-02", 1)];
        let payloads = [json!({})];
        let err = db
            .record_cycle(&CycleRecord {
                started_at_ms: 0,
                finished_at_ms: 1,
                duration_ms: 1.0,
                trigger: "test",
                checks_run: &[],
                outcomes: &outcomes,
                sources_unavailable: &[],
                taken_at_ms: 1,
                violations: &[],
                violation_counts: &BTreeMap::new(),
                severities: &BTreeMap::new(),
                states: &[],
                transitions: &ts,
                outbox_payloads: &payloads,
                planner: None,
                previous_memory: &empty,
                next_memory: &empty,
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }));
        assert_eq!(count(&db, "cycles"), 0);
    }

    #[test]
    fn no_payloads_means_no_outbox_rows() {
        let mut db = StateDb::open_in_memory().unwrap();
        let empty = Memory::default();
        let outcomes = BTreeMap::new();
        let ts = [fired("S-01", 1)];
        let rec = db
            .record_cycle(&CycleRecord {
                started_at_ms: 0,
                finished_at_ms: 1,
                duration_ms: 1.0,
                trigger: "test",
                checks_run: &[],
                outcomes: &outcomes,
                sources_unavailable: &[],
                taken_at_ms: 1,
                violations: &[],
                violation_counts: &BTreeMap::new(),
                severities: &BTreeMap::new(),
                states: &[],
                transitions: &ts,
                outbox_payloads: &[],
                planner: None,
                previous_memory: &empty,
                next_memory: &empty,
            })
            .unwrap();
        assert_eq!(rec.transition_ids.len(), 1);
        assert_eq!(count(&db, "transitions"), 1);
        assert_eq!(count(&db, "alert_outbox"), 0);
    }

    #[test]
    fn memory_diff_adds_changes_removes_and_flags() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m0 = Memory::default();
        let m1 = memory(&[("x1", "success", 10), ("x2", "failed", 11)], Some(5));
        record(&mut db, 100, &[], &[], &[], &m0, &m1).unwrap();
        assert_eq!(db.load_memory().unwrap(), m1);

        let m2 = memory(&[("x2", "cancelled", 20), ("x3", "skipped", 21)], None);
        record(&mut db, 200, &[], &[], &[], &m1, &m2).unwrap();
        assert_eq!(db.load_memory().unwrap(), m2);
        assert_eq!(count(&db, "memory_flags"), 0);

        // Unchanged memory writes nothing (an id unknown to `previous` would otherwise appear).
        record(&mut db, 300, &[], &[], &[], &m2, &m2).unwrap();
        assert_eq!(db.load_memory().unwrap(), m2);
    }

    #[test]
    fn failure_mid_transaction_rolls_everything_back() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m0 = Memory::default();
        let s0 = [state("S-01", Outcome::Green, false, 1)];
        record(&mut db, 1, &[], &s0, &[], &m0, &m0).unwrap();
        // The last write of record_cycle (the memory diff) fails: all earlier writes must vanish.
        db.conn
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON memory_seen_terminal
                 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        let m1 = memory(&[("x", "success", 1)], Some(1));
        let err = record(
            &mut db,
            2,
            &[violation("S-01", "a", Severity::Critical)],
            &[state("S-01", Outcome::Red, true, 2)],
            &[fired("S-01", 2)],
            &m0,
            &m1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        assert_eq!(count(&db, "cycles"), 1);
        assert_eq!(count(&db, "violation_episodes"), 0);
        assert_eq!(count(&db, "transitions"), 0);
        assert_eq!(count(&db, "alert_outbox"), 0);
        assert_eq!(db.load_states().unwrap()["S-01"], s0[0]);
        assert_eq!(db.load_memory().unwrap(), m0);
        // The connection is still usable afterwards.
        db.conn.execute_batch("DROP TRIGGER boom").unwrap();
        record(&mut db, 3, &[], &[], &[], &m0, &m1).unwrap();
        assert_eq!(db.load_memory().unwrap(), m1);
    }

    #[test]
    fn corrupt_state_is_reported_not_guessed() {
        let db = StateDb::open_in_memory().unwrap();
        // Bypass the CHECK constraint the way a hand edit of an older schema could.
        db.conn
            .execute_batch("PRAGMA ignore_check_constraints = ON")
            .unwrap();
        db.conn
            .execute(
                "INSERT INTO invariant_states VALUES ('S-01', 'purple', 0, 1, 0, NULL, NULL, NULL)",
                [],
            )
            .unwrap();
        let err = db.load_states().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    column: "invariant_states.state",
                    ..
                }
            ),
            "{err}"
        );
    }

    fn episodes(db: &StateDb) -> Vec<(i64, String, Option<i64>)> {
        let mut stmt = db
            .conn
            .prepare("SELECT id, subject, closed_at FROM violation_episodes ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_episode_persists_as_one_row_closes_and_reopens_as_a_new_one() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        let red = [state("S-04", Outcome::Red, true, 1)];
        let v = [violation("S-04", "x", Severity::Critical)];
        let first = record(&mut db, 1000, &v, &red, &[], &m, &m).unwrap();
        assert_eq!(first.episodes.opened, 1);
        for at in 2..=5 {
            let r = record(&mut db, at * 1000, &v, &red, &[], &m, &m).unwrap();
            assert_eq!(r.violation_ids, first.violation_ids, "the same episode");
            assert_eq!(
                r.episodes,
                EpisodeWrites::default(),
                "unchanged: nothing written"
            );
        }
        assert_eq!(episodes(&db).len(), 1);
        // Fixed: green closes it.
        let green = [state("S-04", Outcome::Green, false, 6000)];
        let r = record(&mut db, 6000, &[], &green, &[], &m, &m).unwrap();
        assert_eq!(r.episodes.closed, 1);
        let (cycles, last_seen): (i64, i64) = db
            .conn
            .query_row(
                "SELECT cycles, last_seen FROM violation_episodes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((cycles, last_seen), (5, 5000));
        // Back: a new episode, the old one stays closed.
        let r = record(&mut db, 7000, &v, &red, &[], &m, &m).unwrap();
        assert_eq!(r.episodes.opened, 1);
        assert_ne!(r.violation_ids, first.violation_ids);
        let eps = episodes(&db);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].2, Some(6000));
        assert_eq!(eps[1].2, None);
    }

    #[test]
    fn unknown_closes_nothing_and_changed_evidence_is_rewritten_once() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        let red = [state("S-04", Outcome::Red, true, 1)];
        let v = [violation("S-04", "x", Severity::Critical)];
        record(&mut db, 1000, &v, &red, &[], &m, &m).unwrap();
        let unknown = [state("S-04", Outcome::Unknown, true, 1)];
        let r = record(&mut db, 2000, &[], &unknown, &[], &m, &m).unwrap();
        assert_eq!(r.episodes, EpisodeWrites::default());
        assert_eq!(episodes(&db)[0].2, None, "unknown never closes");
        // A subject that changes its evidence: one update, then nothing while it stays so.
        let mut changed = violation("S-04", "x", Severity::Critical);
        changed.summary = "worse".into();
        let r = record(&mut db, 3000, &[changed.clone()], &red, &[], &m, &m).unwrap();
        assert_eq!(r.episodes.updated, 1);
        let r = record(&mut db, 4000, &[changed], &red, &[], &m, &m).unwrap();
        assert_eq!(r.episodes, EpisodeWrites::default());
        let (summary, at): (String, i64) = db
            .conn
            .query_row(
                "SELECT summary, evidence_at FROM violation_episodes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((summary.as_str(), at), ("worse", 3000));
    }

    #[test]
    fn capped_evidence_keeps_the_count_and_closes_nothing_it_cannot_see() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        let red = [state("S-04", Outcome::Red, true, 1)];
        let all = [
            violation("S-04", "b", Severity::Critical),
            violation("S-04", "c", Severity::Critical),
        ];
        record(&mut db, 1000, &all, &red, &[], &m, &m).unwrap();
        // Next cycle: 1 000 violations, only "a" kept as evidence. "b" and "c" may well be
        // among the 999 not shown: they stay open.
        let shown = [violation("S-04", "a", Severity::Critical)];
        let outcomes: BTreeMap<String, Outcome> = [("S-04".to_owned(), Outcome::Red)].into();
        let counts: BTreeMap<String, u64> = [("S-04".to_owned(), 1000)].into();
        let severities: BTreeMap<String, Severity> =
            [("S-04".to_owned(), Severity::Critical)].into();
        let rec = db
            .record_cycle(&CycleRecord {
                started_at_ms: 2000,
                finished_at_ms: 2001,
                duration_ms: 1.0,
                trigger: "test",
                checks_run: &["S-04".to_owned()],
                outcomes: &outcomes,
                sources_unavailable: &[],
                taken_at_ms: 2000,
                violations: &shown,
                violation_counts: &counts,
                severities: &severities,
                states: &red,
                transitions: &[],
                outbox_payloads: &[],
                planner: None,
                previous_memory: &m,
                next_memory: &m,
            })
            .unwrap();
        assert_eq!(rec.episodes.closed, 0);
        assert_eq!(rec.episodes.opened, 1);
        let (n, stored): (i64, i64) = db
            .conn
            .query_row(
                "SELECT violations, stored FROM cycle_invariants WHERE cycle_id = ?1",
                [rec.cycle_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, stored), (1000, 1));
        let total: i64 = db
            .conn
            .query_row(
                "SELECT violation_count FROM cycles WHERE id = ?1",
                [rec.cycle_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(total, 1000);
        assert!(episodes(&db).iter().all(|e| e.2.is_none()));
    }

    /// Records one cycle at `at` whose alerts are decided by `planner`.
    fn record_planned(
        db: &mut StateDb,
        at: Millis,
        transitions: &[Transition],
        planner: &dyn Fn(&AlertContext<'_>) -> AlertPlan,
    ) -> Result<RecordedCycle, StoreError> {
        let m = Memory::default();
        db.record_cycle(&CycleRecord {
            started_at_ms: at,
            finished_at_ms: at + 1,
            duration_ms: 1.0,
            trigger: "test",
            checks_run: &[],
            outcomes: &BTreeMap::new(),
            sources_unavailable: &[],
            taken_at_ms: at,
            violations: &[],
            violation_counts: &BTreeMap::new(),
            severities: &BTreeMap::new(),
            states: &[],
            transitions,
            outbox_payloads: &[],
            planner: Some(AlertPlanner(planner)),
            previous_memory: &m,
            next_memory: &m,
        })
    }

    /// The planner's decisions are written in the cycle's transaction: a silenced transition has
    /// no outbox row and is pending; a release gives it its row and ends the pending state; and a
    /// failure anywhere in the transaction undoes the release and the noted silence end too, so
    /// the next cycle decides again (nothing lost, nothing sent twice).
    #[test]
    fn planned_silences_and_releases_commit_with_the_cycle() {
        let mut db = StateDb::open_in_memory().unwrap();
        let silence = db
            .add_silence(
                &crate::store::NewSilence {
                    invariant_ids: vec!["S-01".into()],
                    subject_glob: None,
                    starts_at_ms: 0,
                    ends_at_ms: 2000,
                    author: "a".into(),
                    comment: "c".into(),
                },
                0,
            )
            .unwrap();
        let silence_plan = |ctx: &AlertContext<'_>| {
            assert_eq!(ctx.silences.len(), 1, "active at 1000");
            AlertPlan {
                transitions: vec![PlannedAlert {
                    silenced_by: Some(format!("silence:{}", silence.id)),
                    payload: Some(json!({"text": "never sent"})),
                }],
                releases: vec![],
            }
        };
        let first = record_planned(&mut db, 1000, &[fired("S-01", 1000)], &silence_plan).unwrap();
        assert_eq!(count(&db, "alert_outbox"), 0, "silenced: no row");
        let by = format!("silence:{}", silence.id);
        assert_eq!(first.alerts.silenced_by, vec![Some(by.clone())]);

        let release_plan = |ctx: &AlertContext<'_>| {
            assert!(ctx.silences.is_empty(), "over at 3000");
            let p = &ctx.pending["S-01"];
            assert_eq!(
                (p.kind, p.announced_firing, p.silenced_by.as_str()),
                (TransitionKind::Fired, false, by.as_str())
            );
            AlertPlan {
                transitions: vec![],
                releases: vec![Release {
                    transition_id: p.transition_id,
                    invariant_id: "S-01".into(),
                    kind: TransitionKind::Fired,
                    payload: Some(json!({"text": "fired after the silence"})),
                }],
            }
        };
        // A failure later in the same transaction: nothing of the release survives.
        db.conn
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON alert_outbox
                 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        assert!(record_planned(&mut db, 3000, &[], &release_plan).is_err());
        assert_eq!(count(&db, "alert_outbox"), 0);
        let noted: Option<i64> = db
            .conn
            .query_row("SELECT end_noted_at FROM silences", [], |r| r.get(0))
            .unwrap();
        assert_eq!(noted, None, "the end is noted with the cycle or not at all");
        db.conn.execute_batch("DROP TRIGGER boom").unwrap();

        let second = record_planned(&mut db, 3000, &[], &release_plan).unwrap();
        assert_eq!(second.alerts.silences_ended.len(), 1);
        assert_eq!(second.alerts.released.len(), 1);
        assert_eq!(count(&db, "alert_outbox"), 1);
        let tx = db.conn.transaction().unwrap();
        assert!(silences::pending(&tx).unwrap().is_empty(), "released once");
    }
}
