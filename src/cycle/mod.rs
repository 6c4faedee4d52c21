//! One cycle: the only sequencer. It takes the cross-process lease, loads the previous states and
//! memory, collects a snapshot, evaluates the selected invariants, diffs transitions and records
//! everything in one state-DB transaction, then releases the lease. The result is the cycle
//! result of DESIGN §8 shared by `canary check --format json` and the admin API.
//!
//! - `mod.rs` (this file): the order of the steps ([`run_cycle`], [`run_dry`]);
//! - [`result`]: the cycle result and its JSON shape;
//! - `alerts`: which transitions silences cover, and the Slack payloads queued with the rest
//!   (decided inside the record's transaction).
//!
//! It must not decide anything itself: judgement lives in `canary-invariants`, storage in `store`,
//! and *when* a cycle runs is the triggers' business (`schedule`, `http`, `cli`).

use std::collections::BTreeMap;
use std::time::Instant;

use canary_invariants::{
    Evaluation, Hysteresis, InvariantState, Memory, Outcome, Selection, SourceUnavailable,
    Transition, TransitionKind, Verdict, blind, evaluate_capped, transitions,
};

use crate::clock::{format_ms, now_ms};
use crate::collect;
use crate::config::Config;
use crate::registry::Registry;
use crate::store::{AlertPlanner, CycleRecord, RecordedAlerts, SharedDb, StoreError, holder};

mod alerts;
pub mod result;

pub use result::{
    BlindReport, CycleResult, Diagnostics, ReleasedAlert, ReportedTransition, ReportedViolation,
    SourceReadability, Trigger, ViolationCount,
};

use alerts::Planning;

/// Errors that stop a cycle (source failures do not: they become `sources_unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Another cycle holds the lease: `None` when it is this process's own runner (its
    /// single-flight gate), otherwise the lease as found.
    #[error("cycle in progress{}", held_by_suffix(.0.as_ref()))]
    InProgress(Option<HeldBy>),
    /// Invariant ids neither in the catalog nor configured as custom invariants.
    #[error("unknown invariant id(s): {}", .0.join(", "))]
    UnknownInvariants(Vec<String>),
    /// The state database failed.
    #[error("state database: {0}")]
    Store(#[from] StoreError),
}

/// Who holds the cycle lease a cycle could not take, for the skip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// The holder text (host, pid, process start: see `store::holder`).
    pub holder: String,
    /// How long it has held the lease, ms.
    pub age_ms: i64,
    /// Whether the holder is this very process (e.g. an admin-triggered cycle).
    pub this_process: bool,
}

/// ` (lease held by <holder> for <age> ms)`, or nothing for this process's own gate.
fn held_by_suffix(held: Option<&HeldBy>) -> String {
    held.map_or_else(String::new, |h| {
        format!(" (lease held by {} for {} ms)", h.holder, h.age_ms)
    })
}

/// How to run one cycle.
#[derive(Debug, Clone)]
pub struct CycleRequest {
    /// What started it.
    pub trigger: Trigger,
    /// Restrict to these ids (validated against the catalog); `None` = every enabled invariant.
    pub only: Option<Vec<String>>,
}

/// Rejects ids that are neither in the catalog nor custom invariants of `config`, naming them.
pub fn validate_ids(config: &Config, ids: &[String]) -> Result<(), CycleError> {
    let unknown: Vec<String> = Registry::new(config)
        .unknown(ids)
        .into_iter()
        .cloned()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(CycleError::UnknownInvariants(unknown))
    }
}

/// Runs one cycle and records it in `db` (one transaction), holding the cross-process lease.
/// Every state-DB step runs on the blocking pool through [`SharedDb`].
pub async fn run_cycle(
    config: &Config,
    db: &SharedDb,
    request: &CycleRequest,
) -> Result<CycleResult, CycleError> {
    if let Some(ids) = &request.only {
        validate_ids(config, ids)?;
    }
    let holder = holder::holder_text("cycle");
    let lease_ttl_ms = i64::try_from(config.state.lease_timeout.as_millis()).unwrap_or(i64::MAX);
    let (taker, now) = (holder.clone(), now_ms());
    let lease = db
        .call(move |db| db.try_acquire_lease(&taker, now, lease_ttl_ms))
        .await?;
    if lease.is_none() {
        // Diagnostics only: the row may have changed since; it still names who was there.
        let found = db.call(|db| db.current_lease()).await?;
        let now = now_ms();
        return Err(CycleError::InProgress(found.map(|l| HeldBy {
            this_process: holder::is_this_process(&l.holder),
            age_ms: now.saturating_sub(l.acquired_at_ms),
            holder: l.holder,
        })));
    }
    let result = {
        let work = run_leased(config, db, request);
        tokio::pin!(work);
        // Renewed while the cycle works (a slow source, a long custom statement), so
        // `lease_timeout` bounds only how long a crashed holder on another host blocks.
        let every =
            std::time::Duration::from_millis(u64::try_from(lease_ttl_ms / 3).unwrap_or(1).max(1));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => renew_lease(db, &holder, lease_ttl_ms).await,
            }
        }
    };
    // Releasing is best effort: an unreleased lease expires after `lease_timeout`.
    let released = db.call(move |db| db.release_lease(&holder)).await;
    if let Err(error) = released {
        tracing::warn!(error = %error, "could not release the cycle lease");
    }
    result
}

/// Extends the cycle lease while the cycle works. Best effort: a failed or lost renewal is
/// logged at WARN and the cycle carries on (it records in one transaction either way).
async fn renew_lease(db: &SharedDb, holder: &str, ttl_ms: i64) {
    let (taker, now) = (holder.to_owned(), now_ms());
    match db
        .call(move |db| db.try_acquire_lease(&taker, now, ttl_ms))
        .await
    {
        Ok(Some(_)) => tracing::debug!(lease.holder = holder, "cycle lease renewed"),
        Ok(None) => tracing::warn!(
            lease.holder = holder,
            "cycle lease lost to another holder while the cycle ran"
        ),
        Err(error) => tracing::warn!(error = %error, "could not renew the cycle lease"),
    }
}

/// Runs one cycle without writing anything (`canary check --no-persist`): previous states and
/// memory come from `db` when given, transitions are computed but not recorded.
pub async fn run_dry(
    config: &Config,
    db: Option<&SharedDb>,
    request: &CycleRequest,
) -> Result<CycleResult, CycleError> {
    if let Some(ids) = &request.only {
        validate_ids(config, ids)?;
    }
    let (previous, memory) = match db {
        Some(db) => load_previous(db).await?,
        None => (BTreeMap::new(), Memory::default()),
    };
    let staged = stage(config, request, &previous, &memory).await;
    Ok(staged.into_result(None, &[], None))
}

/// The previous states and memory, read in one blocking call.
async fn load_previous(
    db: &SharedDb,
) -> Result<(BTreeMap<String, canary_invariants::InvariantState>, Memory), StoreError> {
    db.call(|db| Ok((db.load_states()?, db.load_memory()?)))
        .await
}

async fn run_leased(
    config: &Config,
    db: &SharedDb,
    request: &CycleRequest,
) -> Result<CycleResult, CycleError> {
    let (previous, memory) = load_previous(db).await?;
    let staged = stage(config, request, &previous, &memory).await;
    let finished_at_ms = now_ms();
    // Invariants first, then the blind sources: states, transitions and planned alerts stay
    // aligned, and all of them go into the one transaction. Which transitions a silence covers,
    // and the payloads (which name the episode ids), are decided inside it.
    let planning = Planning::new(config, staged.taken_at_ms);
    let states: Vec<InvariantState> = staged
        .states
        .iter()
        .chain(&staged.blind.states)
        .cloned()
        .collect();
    let all_transitions: Vec<Transition> = staged
        .transitions
        .iter()
        .chain(&staged.blind.transitions)
        .cloned()
        .collect();
    let trigger = request.trigger.as_str();
    // The record moves to the blocking pool with everything it borrows, and comes back with it.
    let (staged, recorded) = db
        .call(move |db| {
            let plan = |ctx: &crate::store::AlertContext<'_>| planning.plan(&staged, ctx);
            let recorded = db.record_cycle(&CycleRecord {
                started_at_ms: staged.taken_at_ms,
                finished_at_ms,
                duration_ms: staged.duration_ms,
                trigger,
                checks_run: &staged.eval.checks_run,
                outcomes: &staged.eval.outcomes,
                sources_unavailable: &staged.sources_unavailable,
                taken_at_ms: staged.taken_at_ms,
                violations: &staged.eval.violations,
                violation_counts: &staged.eval.violation_counts,
                severities: &staged.eval.severities,
                states: &states,
                transitions: &all_transitions,
                outbox_payloads: &[],
                planner: Some(AlertPlanner(&plan)),
                previous_memory: &memory,
                next_memory: &staged.eval.memory,
            })?;
            Ok((staged, recorded))
        })
        .await?;
    let silenced_by = &recorded.alerts.silenced_by;
    for (i, t) in staged.transitions.iter().enumerate() {
        let by = silenced_by.get(i).cloned().flatten();
        tracing::info!(
            invariant.id = %t.invariant_id,
            invariant.severity = t.severity.as_str(),
            transition.kind = t.kind.as_str(),
            transition.reminder = t.reminder,
            alert.silenced_by = by.as_deref(),
            cycle.id = recorded.cycle_id,
            "invariant {}", t.kind.as_str()
        );
    }
    log_silences(&recorded.alerts, recorded.cycle_id);
    for (i, t) in staged.blind.transitions.iter().enumerate() {
        let by = silenced_by
            .get(staged.transitions.len() + i)
            .cloned()
            .flatten();
        let source = t
            .invariant_id
            .strip_prefix(blind::ID_PREFIX)
            .unwrap_or(&t.invariant_id);
        let message = match t.kind {
            TransitionKind::Fired => "canary blind: source unreadable",
            TransitionKind::Resolved => "canary can see again: source readable",
        };
        tracing::info!(
            source,
            transition.kind = t.kind.as_str(),
            transition.reminder = t.reminder,
            blind_after = config.alerts.blind_after,
            alert.silenced_by = by.as_deref(),
            cycle.id = recorded.cycle_id,
            "{message}"
        );
    }
    let ids: Vec<Option<i64>> = recorded.violation_ids.iter().copied().map(Some).collect();
    Ok(staged.into_result(Some(recorded.cycle_id), &ids, Some(&recorded.alerts)))
}

/// The silence changes a cycle saw (their ends) and the silenced alerts it released, at INFO:
/// each is logged once, by the cycle that committed it.
fn log_silences(alerts: &RecordedAlerts, cycle_id: i64) {
    for s in &alerts.silences_ended {
        tracing::info!(
            silence.id = s.id,
            silence.invariants = %s.invariant_ids.join(","),
            silence.subject = s.subject.as_deref(),
            silence.author = %s.author,
            ends_at = %s.ends_at,
            cycle.id = cycle_id,
            "silence ended"
        );
    }
    for (id, kind, transition_id) in &alerts.released {
        tracing::info!(
            invariant.id = %id,
            transition.kind = kind.as_str(),
            transition.id = transition_id,
            cycle.id = cycle_id,
            "silenced alert released: nothing covers it any more and slack is out of date"
        );
    }
}

/// Everything a cycle computes before it is written.
struct Staged {
    taken_at_ms: i64,
    duration_ms: f64,
    trigger: Trigger,
    eval: Evaluation,
    states: Vec<canary_invariants::InvariantState>,
    transitions: Vec<Transition>,
    sources_unavailable: Vec<SourceUnavailable>,
    blind: StagedBlind,
    diagnostics: Diagnostics,
}

/// The blind sources' part of a cycle: their `source:<name>` states, transitions, and for each
/// transition the state it left (a resolved message says how long the source was unreadable).
struct StagedBlind {
    blind_after: u32,
    states: Vec<InvariantState>,
    transitions: Vec<Transition>,
    left: Vec<Option<InvariantState>>,
}

/// Runs the sources' readability through the same diff as the invariants, with `blind_after`
/// as its `fire_after` (see `canary_invariants::blind`).
fn stage_blind(
    config: &Config,
    snapshot: &canary_invariants::Snapshot,
    previous: &BTreeMap<String, InvariantState>,
    taken_at_ms: i64,
) -> StagedBlind {
    let renotify = hysteresis(config).renotify_after_ms;
    let (states, transitions) = transitions::diff(
        previous,
        &blind::verdicts(snapshot),
        taken_at_ms,
        blind::hysteresis(config.alerts.blind_after, renotify),
    );
    let left = transitions
        .iter()
        .map(|t| previous.get(&t.invariant_id).cloned())
        .collect();
    StagedBlind {
        blind_after: config.alerts.blind_after.max(1),
        states,
        transitions,
        left,
    }
}

async fn stage(
    config: &Config,
    request: &CycleRequest,
    previous: &BTreeMap<String, canary_invariants::InvariantState>,
    memory: &Memory,
) -> Staged {
    let started = Instant::now();
    let taken_at_ms = now_ms();
    let collected = collect::collect(config, request.only.as_deref(), taken_at_ms).await;
    let snapshot = collected.snapshot;
    let selection = match &request.only {
        Some(ids) => Selection::Only(ids),
        None => Selection::AllEnabled,
    };
    // Evidence is capped during evaluation, before anything is stored, reported or alerted on:
    // the counts, outcomes and severities come from the full lists, so the cap hides no finding.
    let eval = evaluate_capped(
        &snapshot,
        memory,
        &config.invariants,
        selection,
        usize::try_from(config.state.max_subjects_per_invariant).unwrap_or(usize::MAX),
    );
    let verdicts: BTreeMap<String, Verdict> = eval
        .outcomes
        .iter()
        .map(|(id, outcome)| {
            let severity = eval.severities.get(id).copied();
            (
                id.clone(),
                Verdict {
                    outcome: *outcome,
                    severity,
                },
            )
        })
        .collect();
    let (states, transitions) =
        transitions::diff(previous, &verdicts, taken_at_ms, hysteresis(config));
    let blind = stage_blind(config, &snapshot, previous, taken_at_ms);
    for source in &snapshot.sources_unavailable {
        tracing::warn!(source = source.source.as_str(), error = %source.error, "source unavailable");
    }
    let diagnostics = Diagnostics {
        unknown_reasons: eval.unknown_reasons.clone(),
        anomalies: snapshot.anomalies.clone(),
        skipped_tables: snapshot
            .sql
            .as_ref()
            .map(|s| s.skipped_tables.clone())
            .unwrap_or_default(),
        collect: collected.stats,
    };
    Staged {
        taken_at_ms,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        trigger: request.trigger,
        eval,
        states,
        transitions,
        sources_unavailable: snapshot.sources_unavailable,
        blind,
        diagnostics,
    }
}

impl Staged {
    fn into_result(
        self,
        cycle_id: Option<i64>,
        violation_ids: &[Option<i64>],
        alerts: Option<&RecordedAlerts>,
    ) -> CycleResult {
        let by = |i: usize| alerts.and_then(|a| a.silenced_by.get(i).cloned().flatten());
        let n = self.transitions.len();
        let violation_counts = self
            .eval
            .violation_counts
            .iter()
            .map(|(id, total)| {
                (
                    id.clone(),
                    ViolationCount {
                        total: *total,
                        shown: self.eval.shown(id),
                    },
                )
            })
            .collect();
        let violations = self
            .eval
            .violations
            .into_iter()
            .enumerate()
            .map(|(i, violation)| ReportedViolation {
                id: violation_ids.get(i).copied().flatten(),
                violation,
            })
            .collect();
        CycleResult {
            cycle_id,
            taken_at: format_ms(self.taken_at_ms),
            duration_ms: self.duration_ms,
            trigger: self.trigger,
            checks_run: self.eval.checks_run,
            outcomes: self.eval.outcomes,
            not_configured: self.eval.not_configured,
            violation_count: self.eval.violation_counts.values().sum(),
            violation_counts,
            violations,
            transitions: self
                .transitions
                .iter()
                .enumerate()
                .map(|(i, t)| reported(t, by(i)))
                .collect(),
            released: alerts
                .map(|a| {
                    a.released
                        .iter()
                        .map(|(id, kind, _)| ReleasedAlert {
                            invariant_id: id.clone(),
                            kind: kind.as_str(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            sources_unavailable: self.sources_unavailable,
            blind: BlindReport {
                blind_after: self.blind.blind_after,
                sources: self
                    .blind
                    .states
                    .iter()
                    .filter_map(|s| {
                        let source = blind::source_of(&s.invariant_id)?;
                        let unreadable = s.state == Outcome::Red;
                        Some(SourceReadability {
                            source: source.as_str(),
                            readable: !unreadable,
                            unreadable_cycles: if unreadable { s.consecutive } else { 0 },
                            firing: s.firing,
                        })
                    })
                    .collect(),
                transitions: self
                    .blind
                    .transitions
                    .iter()
                    .enumerate()
                    .map(|(i, t)| reported(t, by(n + i)))
                    .collect(),
            },
            diagnostics: self.diagnostics,
        }
    }
}

fn reported(t: &Transition, silenced_by: Option<String>) -> ReportedTransition {
    ReportedTransition {
        invariant_id: t.invariant_id.clone(),
        kind: t.kind.as_str(),
        severity: t.severity.as_str(),
        reminder: t.reminder,
        silenced_by,
    }
}

fn hysteresis(config: &Config) -> Hysteresis {
    Hysteresis {
        fire_after: config.alerts.fire_after.max(1),
        resolve_after: config.alerts.resolve_after.max(1),
        renotify_after_ms: config
            .alerts
            .renotify_after
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    }
}
