//! What an invariant is: its static description ([`InvariantMeta`]), what it reads ([`Input`])
//! and the [`Invariant`] trait each check implements in its own file under `checks/`. The list
//! of them, [`CATALOG`], is `checks/mod.rs`: adding an invariant = one file + one line there.

use serde::Serialize;

use crate::memory::Memory;
use crate::params::{Params, Problems};
use crate::snapshot::{DockerState, Field, RedisState, Snapshot, Source, SqlState};
use crate::violation::{Severity, Tier, Violation};

/// Something an invariant cannot be judged without. If it is missing, the outcome is *unknown*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// A store must have been read.
    Source(Source),
    /// An optional column must exist.
    Field(Field),
}

/// Static description of an invariant.
#[derive(Debug, Serialize)]
pub struct InvariantMeta {
    /// Catalog id, e.g. `S-01`.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// A or B.
    pub tier: Tier,
    /// Default severity (a config override or a per-subject split may change it).
    pub severity: Severity,
    /// What it cannot be judged without.
    pub needs: &'static [Need],
    /// The bug class it guards against.
    pub guards: &'static str,
    /// What an operator should look at first when it fires.
    pub runbook: &'static str,
}

/// What a check reads. Sources that were unavailable appear as empty states, but a check is only
/// run when everything in its `needs` is present, so it never mistakes "unread" for "empty".
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The whole snapshot (for `taken_at_ms` and anomalies).
    pub snapshot: &'a Snapshot,
    /// The SQLite part.
    pub sql: &'a SqlState,
    /// The Redis part.
    pub redis: &'a RedisState,
    /// The Docker part (empty when not read).
    pub docker: &'a DockerState,
    /// Memory from the previous cycle.
    pub memory: &'a Memory,
    /// Thresholds.
    pub params: &'a Params,
}

impl<'a> Input<'a> {
    /// Builds the input view of a snapshot.
    pub fn new(snapshot: &'a Snapshot, memory: &'a Memory, params: &'a Params) -> Input<'a> {
        Input {
            snapshot,
            sql: snapshot.sql.as_ref().unwrap_or(&EMPTY_SQL),
            redis: snapshot.redis.as_ref().unwrap_or(&EMPTY_REDIS),
            docker: snapshot.docker.as_ref().unwrap_or(&EMPTY_DOCKER),
            memory,
            params,
        }
    }

    /// The snapshot's "now".
    pub fn now_ms(&self) -> i64 {
        self.snapshot.taken_at_ms
    }

    /// The severity to report for `meta`'s violations, honouring a configured override.
    pub fn severity(&self, meta: &InvariantMeta) -> Severity {
        self.params
            .severity_override(meta.id)
            .unwrap_or(meta.severity)
    }

    /// A violation of `meta` with its tier and (overridable) default severity.
    pub fn violation(
        &self,
        meta: &InvariantMeta,
        subject: impl Into<String>,
        signal: &str,
        summary: String,
        observed_state: serde_json::Value,
    ) -> Violation {
        Violation {
            invariant_id: meta.id.to_owned(),
            tier: meta.tier,
            severity: self.severity(meta),
            subject: subject.into(),
            summary,
            observed_state,
            signal: signal.to_owned(),
        }
    }
}

static EMPTY_SQL: SqlState = SqlState::EMPTY;
static EMPTY_REDIS: RedisState = RedisState::EMPTY;
static EMPTY_DOCKER: DockerState = DockerState {
    containers: Vec::new(),
};

/// One invariant: pure, deterministic, total (never panics on odd data).
pub trait Invariant: Sync + Send {
    /// Static description.
    fn meta(&self) -> &'static InvariantMeta;

    /// The rule, one or two sentences, with the thresholds of `params` (the effective ones, so
    /// an operator's override shows in `canary invariants` and the API).
    fn rule(&self, params: &Params) -> String;

    /// Realistic violations of this invariant, shaped exactly like the ones its check builds
    /// (subject, signal, summary wording, evidence keys), around the instant `t0`. They feed the
    /// reviewed Slack snapshots (`tests/slack_payloads.rs`), so an invariant's file also holds
    /// what its alert looks like.
    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation>;

    /// Reports every problem with this invariant's parameters in `params`. Most thresholds
    /// only need to be finite and in range; the default has nothing to check.
    fn validate(&self, _params: &Params, _problems: &mut Problems<'_>) {}

    /// The violations in this snapshot (any order; `evaluate` sorts).
    fn check(&self, input: &Input<'_>) -> Vec<Violation>;

    /// Why part of what this invariant judges could not be read this cycle (one container of
    /// many), when it found nothing: the outcome is then *unknown* with this reason instead of
    /// green. `None` (the default) when everything it needs was read.
    fn unreadable(&self, _input: &Input<'_>) -> Option<String> {
        None
    }

    /// Updates cross-cycle memory after a successful evaluation. Most invariants remember nothing.
    fn remember(&self, _input: &Input<'_>, _next: &mut Memory) {}
}

pub use crate::checks::CATALOG;

/// Looks an invariant up by id.
pub fn find(id: &str) -> Option<&'static dyn Invariant> {
    CATALOG.iter().copied().find(|inv| inv.meta().id == id)
}

/// The ids of every invariant in the catalog.
pub fn ids() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|inv| inv.meta().id)
}

/// Whether the invariant `id` needs `source` (false for an unknown id).
pub fn needs_source(id: &str, source: Source) -> bool {
    find(id).is_some_and(|inv| inv.meta().needs.contains(&Need::Source(source)))
}

/// The catalog ids whose invariants run without `source` (what a platform without Docker
/// evaluates), in catalog order.
pub fn ids_without(source: Source) -> impl Iterator<Item = &'static str> {
    ids().filter(move |id| !needs_source(id, source))
}

/// The catalog ids whose invariants need no optional source (Docker, the queue accessor): what
/// a platform configured with its database and Redis alone evaluates, in catalog order.
pub fn core_ids() -> impl Iterator<Item = &'static str> {
    ids().filter(|id| {
        !Source::OPTIONAL
            .iter()
            .any(|source| needs_source(id, *source))
    })
}

/// One catalog entry as the CLI and the API show it: the static description plus the rule text
/// rendered with the effective parameters.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The static description.
    #[serde(flatten)]
    pub meta: &'static InvariantMeta,
    /// The rule with the effective thresholds.
    pub rule: String,
}

impl Entry {
    /// The entry of `invariant` under `params`.
    pub fn new(invariant: &dyn Invariant, params: &Params) -> Entry {
        Entry {
            meta: invariant.meta(),
            rule: invariant.rule(params),
        }
    }
}

/// Every problem with the invariants' parameters, in catalog order.
pub fn validate(params: &Params) -> Vec<crate::params::ParamProblem> {
    let mut out = Vec::new();
    for inv in CATALOG {
        inv.validate(params, &mut Problems::new(inv.meta().id, &mut out));
    }
    out
}
