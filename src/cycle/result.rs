//! The cycle result (DESIGN §8): what one cycle found, in the JSON shape shared by
//! `canary check --format json`, `POST /api/canary/run-cycle`, the text report and `/metrics`.
//!
//! Pure data and its overall verdict. It must not run, store or print anything: the sequencer
//! (`cycle/mod.rs`) fills it, the CLI and the admin API render it.

use std::collections::BTreeMap;

use canary_invariants::{Anomaly, Outcome, SourceUnavailable, Violation};
use serde::Serialize;

use crate::collect::CollectStats;

/// What started a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The schedule loop.
    Schedule,
    /// An admin over HTTP, or `canary check`.
    Manual,
}

impl Trigger {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}
/// A violation as reported, with its state-DB episode id when persisted.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedViolation {
    /// Its episode's id in the state DB (`None` with `--no-persist`): the same id for as long
    /// as the subject stays in violation.
    pub id: Option<i64>,
    /// The violation.
    #[serde(flatten)]
    pub violation: Violation,
}

/// How many violations one invariant found, and how many of them the result shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ViolationCount {
    /// Found this cycle.
    pub total: u64,
    /// Kept as evidence (`violations`, the state DB, Slack's lines come from these).
    pub shown: u64,
}

/// A transition as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedTransition {
    /// Catalog id.
    pub invariant_id: String,
    /// `fired` or `resolved`.
    pub kind: &'static str,
    /// Severity of the incident.
    pub severity: &'static str,
    /// A `renotify_after` reminder of a still-open incident (kind `fired`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
    /// What kept it out of Slack (`silence:<id>`, `window:<n>`); absent when it was announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
}

/// A silenced transition announced by this cycle because nothing covers it any more and Slack
/// was out of date (one message: fired while still red, or resolved).
#[derive(Debug, Clone, Serialize)]
pub struct ReleasedAlert {
    /// Invariant id (or `source:<name>`).
    pub invariant_id: String,
    /// The message sent: `fired` or `resolved`.
    pub kind: &'static str,
}

/// One source's readability ("canary is blind", issue 11 §4), from its `source:<name>` state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceReadability {
    /// `redis`, `sqlite`, ...
    pub source: &'static str,
    /// Read this cycle.
    pub readable: bool,
    /// Consecutive unreadable cycles up to this one (0 when readable).
    pub unreadable_cycles: u32,
    /// The blind alert is open (fired, not yet resolved).
    pub firing: bool,
}

/// The blind section of the cycle result: kept apart from `checks_run`, `outcomes` and
/// `transitions` (a public contract that lists invariants only).
#[derive(Debug, Clone, Serialize)]
pub struct BlindReport {
    /// `alerts.blind_after`: unreadable cycles before the blind alert fires.
    pub blind_after: u32,
    /// Every source read or tried this cycle.
    pub sources: Vec<SourceReadability>,
    /// Blind alerts fired or resolved this cycle (`invariant_id` is `source:<name>`).
    pub transitions: Vec<ReportedTransition>,
}

/// Extra facts about the cycle (an addition to DESIGN §8's result; nothing there is renamed).
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostics {
    /// Why each unknown invariant could not be evaluated.
    pub unknown_reasons: BTreeMap<String, String>,
    /// Odd data seen and carried instead of guessed.
    pub anomalies: Vec<Anomaly>,
    /// Cascade tables absent from the platform database.
    pub skipped_tables: Vec<String>,
    /// SQL statements, Redis round trips and per-source time.
    pub collect: CollectStats,
}

/// The cycle result (DESIGN §8).
#[derive(Debug, Clone, Serialize)]
pub struct CycleResult {
    /// State-DB id (`None` with `--no-persist`).
    pub cycle_id: Option<i64>,
    /// Snapshot instant, RFC 3339 with milliseconds.
    pub taken_at: String,
    /// Wall time of the whole cycle.
    pub duration_ms: f64,
    /// What started it.
    pub trigger: Trigger,
    /// Selected invariants.
    pub checks_run: Vec<String>,
    /// Outcome per selected invariant.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Selected invariants that were not run because a source they need is not configured
    /// (`platform.docker` absent), with the reason; not in `checks_run` nor `outcomes` (an
    /// addition to DESIGN §8: *not configured* is the operator's choice, *unknown* a failure).
    pub not_configured: BTreeMap<String, String>,
    /// Violations found, all invariants together: the full count, whatever the cap.
    pub violation_count: u64,
    /// Per red invariant: how many violations it found and how many are shown in `violations`.
    pub violation_counts: BTreeMap<String, ViolationCount>,
    /// The violations kept as evidence, sorted: at most `state.max_subjects_per_invariant` per
    /// invariant (see `violation_counts` for what was found).
    pub violations: Vec<ReportedViolation>,
    /// Fired/resolved transitions.
    pub transitions: Vec<ReportedTransition>,
    /// Silenced transitions announced this cycle because their silence ended (issue 14).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedAlert>,
    /// Stores that could not be read.
    pub sources_unavailable: Vec<SourceUnavailable>,
    /// Per-source readability and the blind alerts this cycle (an addition to DESIGN §8).
    pub blind: BlindReport,
    /// Extra facts.
    pub diagnostics: Diagnostics,
}

impl CycleResult {
    /// Whether this cycle queued any alert (an invariant's or a blind source's), so the
    /// deliverer is woken now rather than at its next poll.
    pub fn has_transitions(&self) -> bool {
        !self.transitions.is_empty() || !self.blind.transitions.is_empty()
    }

    /// Overall verdict: red if any invariant is red (a definite finding outranks a partial view),
    /// else unknown if any is unknown or a source was unavailable, or if nothing was run because
    /// every selected invariant is not configured (`--invariant R-01` without `platform.docker`
    /// checked nothing: never a green), else green.
    pub fn verdict(&self) -> Outcome {
        if self.outcomes.values().any(|o| *o == Outcome::Red) {
            Outcome::Red
        } else if !self.sources_unavailable.is_empty()
            || self.outcomes.values().any(|o| *o == Outcome::Unknown)
            || (self.checks_run.is_empty() && !self.not_configured.is_empty())
        {
            Outcome::Unknown
        } else {
            Outcome::Green
        }
    }
}
