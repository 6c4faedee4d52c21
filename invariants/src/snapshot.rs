//! The snapshot: plain data describing both platform stores at one instant.
//!
//! The collector (daemon side) fills it; the invariants read it. Everything here is already parsed
//! and normalised (timestamps are unix milliseconds, statuses are classified into a [`Phase`]), so
//! no invariant ever parses a string or compares timestamps as text. Nothing here reads a clock:
//! `taken_at_ms` is the one "now" every invariant uses.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::lookup::{self, LookupMap};
use crate::violation::Severity;

/// Unix time in milliseconds.
pub type Millis = i64;

/// A store canary reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The platform's SQLite database.
    Sqlite,
    /// The platform's Redis.
    Redis,
    /// The Docker Engine running the agents' containers (optional: `platform.docker`).
    Docker,
    /// The platform's own per-agent queued-count endpoint (optional: `platform.queue_count`).
    #[serde(rename = "queue_count")]
    QueueCount,
}

impl Source {
    /// The sources a configuration may leave out (their invariants are then *not configured*).
    pub const OPTIONAL: [Source; 2] = [Source::Docker, Source::QueueCount];

    /// Lowercase name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sqlite => "sqlite",
            Source::Redis => "redis",
            Source::Docker => "docker",
            Source::QueueCount => "queue_count",
        }
    }
}

/// A source that could not be read this cycle, with a short, secret-free reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUnavailable {
    /// Which store.
    pub source: Source,
    /// Short reason (never contains credentials or URLs).
    pub error: String,
}

/// Something odd the collector saw and carried along instead of guessing (garbage score,
/// unparseable timestamp, wrong key type, ...). Anomalies never make a source unavailable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Anomaly {
    /// Where it was seen.
    pub source: Source,
    /// What kind of oddity (a stable reason code; G-05 judges by it). Absent in older
    /// serialized snapshots.
    #[serde(default)]
    pub kind: AnomalyKind,
    /// The key, row or column concerned.
    pub subject: String,
    /// What was wrong, in a few words.
    pub note: String,
}

/// The kinds of [`Anomaly`]: what the collector could not interpret, as a stable reason code.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A slot or metadata key whose name is not UTF-8.
    KeyNotUtf8,
    /// A key of the wrong Redis type (`WRONGTYPE`).
    WrongType,
    /// A slot member that is not UTF-8.
    MemberNotUtf8,
    /// A slot score that is not a finite unix time (`inf`, `-1e18`, ...).
    ScoreNotFinite,
    /// A metadata hash's timeout field that is not an integer.
    TimeoutNotInteger,
    /// The drain heartbeat key holds something that is not a unix time.
    DrainTickUnparseable,
    /// A row without its id.
    NullId,
    /// A row without its agent name.
    NullAgent,
    /// A row without its status.
    NullStatus,
    /// A column that must hold an integer does not.
    NotInteger,
    /// A timestamp column holding something that is not a timestamp.
    TimestampUnparseable,
    /// Redis answered a per-command error other than `WRONGTYPE` (access, load, ...).
    ServerError,
    /// Redis answered a reply of an unexpected shape.
    UnexpectedReply,
    /// A cascade table lacks a configured column (configuration or schema, not data).
    CascadeColumnMissing,
    /// A custom SQL invariant returned more rows than its limit (configuration, not data).
    CustomTruncated,
    /// A slot set larger than canary reads from one key: only its first members were judged.
    SlotSetTruncated,
    /// Anything else (and anomalies serialized before kinds existed).
    #[default]
    Other,
}

impl AnomalyKind {
    /// Every kind, in declaration order.
    pub const ALL: [AnomalyKind; 17] = [
        AnomalyKind::KeyNotUtf8,
        AnomalyKind::WrongType,
        AnomalyKind::MemberNotUtf8,
        AnomalyKind::ScoreNotFinite,
        AnomalyKind::TimeoutNotInteger,
        AnomalyKind::DrainTickUnparseable,
        AnomalyKind::NullId,
        AnomalyKind::NullAgent,
        AnomalyKind::NullStatus,
        AnomalyKind::NotInteger,
        AnomalyKind::TimestampUnparseable,
        AnomalyKind::ServerError,
        AnomalyKind::UnexpectedReply,
        AnomalyKind::CascadeColumnMissing,
        AnomalyKind::CustomTruncated,
        AnomalyKind::SlotSetTruncated,
        AnomalyKind::Other,
    ];

    /// The reason code (as serialized): `wrong_type`, `null_id`, ...
    pub fn code(self) -> &'static str {
        match self {
            AnomalyKind::KeyNotUtf8 => "key_not_utf8",
            AnomalyKind::WrongType => "wrong_type",
            AnomalyKind::MemberNotUtf8 => "member_not_utf8",
            AnomalyKind::ScoreNotFinite => "score_not_finite",
            AnomalyKind::TimeoutNotInteger => "timeout_not_integer",
            AnomalyKind::DrainTickUnparseable => "drain_tick_unparseable",
            AnomalyKind::NullId => "null_id",
            AnomalyKind::NullAgent => "null_agent",
            AnomalyKind::NullStatus => "null_status",
            AnomalyKind::NotInteger => "not_integer",
            AnomalyKind::TimestampUnparseable => "timestamp_unparseable",
            AnomalyKind::ServerError => "server_error",
            AnomalyKind::UnexpectedReply => "unexpected_reply",
            AnomalyKind::CascadeColumnMissing => "cascade_column_missing",
            AnomalyKind::CustomTruncated => "custom_truncated",
            AnomalyKind::SlotSetTruncated => "slot_set_truncated",
            AnomalyKind::Other => "other",
        }
    }
}

/// Optional platform columns (and the schedules table). Older schemas may lack them; the
/// collector lists the absent ones in [`SqlState::missing_fields`] and invariants that need one
/// become *unknown* instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `schedule_executions.started_at`
    ExecStartedAt,
    /// `schedule_executions.completed_at`
    ExecCompletedAt,
    /// `schedule_executions.queued_at`
    ExecQueuedAt,
    /// `schedule_executions.lease_expires_at`
    ExecLeaseExpiresAt,
    /// `schedule_executions.duration_ms`
    ExecDurationMs,
    /// `schedule_executions.claude_session_id`
    ExecSessionId,
    /// `schedule_executions.backlog_metadata`
    ExecBacklogMetadata,
    /// `schedule_executions.schedule_id`
    ExecScheduleId,
    /// `agent_ownership.max_parallel_tasks`
    AgentMaxParallelTasks,
    /// `agent_ownership.execution_timeout_seconds`
    AgentExecutionTimeout,
    /// `agent_ownership.deleted_at`
    AgentDeletedAt,
    /// `agent_ownership.is_system`
    AgentIsSystem,
    /// The `agent_schedules` table with its `id`, `agent_name`, `enabled` and `next_run_at`
    /// columns (a table absent from the database, or lacking one of those, is listed here).
    Schedules,
    /// `agent_schedules.deleted_at` (without it no schedule counts as soft-deleted).
    ScheduleDeletedAt,
}

impl Field {
    /// The column (or table) in the default platform schema, for documentation and messages.
    pub fn default_name(self) -> &'static str {
        match self {
            Field::ExecStartedAt => "schedule_executions.started_at",
            Field::ExecCompletedAt => "schedule_executions.completed_at",
            Field::ExecQueuedAt => "schedule_executions.queued_at",
            Field::ExecLeaseExpiresAt => "schedule_executions.lease_expires_at",
            Field::ExecDurationMs => "schedule_executions.duration_ms",
            Field::ExecSessionId => "schedule_executions.claude_session_id",
            Field::ExecBacklogMetadata => "schedule_executions.backlog_metadata",
            Field::ExecScheduleId => "schedule_executions.schedule_id",
            Field::AgentMaxParallelTasks => "agent_ownership.max_parallel_tasks",
            Field::AgentExecutionTimeout => "agent_ownership.execution_timeout_seconds",
            Field::AgentDeletedAt => "agent_ownership.deleted_at",
            Field::AgentIsSystem => "agent_ownership.is_system",
            Field::Schedules => "table agent_schedules",
            Field::ScheduleDeletedAt => "agent_schedules.deleted_at",
        }
    }
}

/// Everything read from one store-consistent view of the platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The instant the snapshot was started: the "now" of every invariant.
    pub taken_at_ms: Millis,
    /// SQLite part; `None` when SQLite could not be read (see `sources_unavailable`).
    pub sql: Option<SqlState>,
    /// Redis part; `None` when Redis could not be read (see `sources_unavailable`).
    pub redis: Option<RedisState>,
    /// Stores that could not be read, with reasons.
    pub sources_unavailable: Vec<SourceUnavailable>,
    /// Odd data carried instead of guessed.
    pub anomalies: Vec<Anomaly>,
    /// What the operator-defined SQL invariants returned (one entry per selected custom
    /// invariant; see [`crate::custom`]). Absent in older serialized snapshots.
    #[serde(default)]
    pub custom: Vec<crate::custom::CustomResult>,
    /// Docker part; `None` when Docker could not be read (listed in `sources_unavailable`) or is
    /// not configured (listed in `not_configured`).
    #[serde(default)]
    pub docker: Option<DockerState>,
    /// Optional sources the configuration does not name: their invariants are *not configured*
    /// (not run), which is different from *unknown* (configured but unreadable).
    #[serde(default)]
    pub not_configured: Vec<Source>,
    /// The pilot agents served by pull workers instead of slots (`platform.pull.pilot_agents`,
    /// sorted): B-08 judges them, B-02 judges them by its pull arm. Empty = no pilots.
    #[serde(default)]
    pub pilot_agents: Vec<String>,
    /// The platform's reported queued counts (B-01); `None` when the endpoint could not be read
    /// for any agent (listed in `sources_unavailable`), is not configured (`not_configured`), or
    /// was not asked because the SQL read failed (B-01 is then unknown through SQL).
    #[serde(default)]
    pub queue_counts: Option<QueueCountState>,
}

impl Snapshot {
    /// Whether `agent` is a pull-mode pilot.
    pub fn is_pilot(&self, agent: &str) -> bool {
        self.pilot_agents.iter().any(|p| p == agent)
    }
}

impl Snapshot {
    /// Whether a source was read successfully this cycle.
    pub fn has(&self, source: Source) -> bool {
        match source {
            Source::Sqlite => self.sql.is_some(),
            Source::Redis => self.redis.is_some(),
            Source::Docker => self.docker.is_some(),
            Source::QueueCount => self.queue_counts.is_some(),
        }
    }

    /// Whether the configuration leaves `source` out (so its invariants are not run).
    pub fn is_not_configured(&self, source: Source) -> bool {
        self.not_configured.contains(&source)
    }
}

/// The queue-accessor side of a snapshot: per agent asked this cycle, the platform's reported
/// queued count beside the queued rows canary read. The collector has already re-read every
/// mismatch once (endpoint and SQL), so a [`QueueCount::Read`] whose counts differ is a
/// mismatch that survived its re-read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueCountState {
    /// Per agent asked (a bounded, rotating share of the live roster: see the collector).
    pub agents: BTreeMap<String, QueueCount>,
    /// Live roster agents this cycle could have asked (the rotation covers them over cycles).
    pub live_agents: u64,
}

/// One agent's reported count, or why it could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QueueCount {
    /// Both sides read; after a re-read when the first pair differed.
    Read {
        /// The platform's accessor said this many rows are queued.
        reported: u64,
        /// canary read this many queued rows.
        read: u64,
        /// canary's queued ids (sorted, at most [`QueueCount::MAX_IDS`]), kept only when the
        /// counts differ (the evidence); empty otherwise.
        ids: Vec<String>,
        /// The first pair differed and this is the re-read pair.
        reread: bool,
    },
    /// The agent's queue moved while its mismatch was re-read (the two SQL reads around the
    /// endpoint's answer differ and the answer lies outside them): not judged this cycle, which
    /// is neither green evidence nor a failure.
    Unsettled {
        /// What the endpoint said at the re-read.
        reported: u64,
        /// The queued rows read just before it.
        before: u64,
        /// The queued rows read just after it.
        after: u64,
    },
    /// The endpoint (or the re-read) failed for this agent: it is *unknown*, never green.
    Unreadable {
        /// The failure class (timeout, HTTP status, not JSON, pointer missing, not a
        /// non-negative integer, ...), never the URL.
        reason: String,
    },
}

impl QueueCount {
    /// How many of canary's queued ids a mismatch carries as evidence.
    pub const MAX_IDS: usize = 20;
}

/// The Docker side of a snapshot: the running agent containers (listed by label) and, per
/// container, what could be read from it. Only the environment variables named in configuration
/// are here; the collector drops the rest on read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerState {
    /// Running agent containers, sorted by id.
    pub containers: Vec<Container>,
}

/// One running agent container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The engine's container id (full, 64 hex digits).
    pub id: String,
    /// The container name, without Docker's leading `/`.
    pub name: String,
    /// The agent it serves: the name without the configured prefix (`agent-`).
    pub agent: String,
    /// `State.StartedAt` from inspect (`None` when absent, unparseable or not inspected): the
    /// generation marker of R-01's dwell (a restart is a new pid namespace).
    pub started_at_ms: Option<Millis>,
    /// The environment variables named in `platform.docker.env_keep` (plus, for a pull-mode
    /// pilot, `TRINITY_PULL_MODE` and `TRINITY_MAX_PARALLEL_TASKS`), nothing else.
    pub env: BTreeMap<String, String>,
    /// Whether inspect succeeded, so `env` and `started_at_ms` are what the engine said; `false`
    /// means they are unknown (B-08 then does not judge the container's mode). Absent in older
    /// serialized snapshots (read as `true`).
    #[serde(default = "inspected_default")]
    pub inspected: bool,
    /// The processes of interest, or why they could not be read.
    pub processes: Processes,
}

fn inspected_default() -> bool {
    true
}

/// The container variable saying the agent is served by pull workers.
pub const PULL_MODE_ENV: &str = "TRINITY_PULL_MODE";
/// The container variable holding a pull agent's worker count.
pub const MAX_PARALLEL_ENV: &str = "TRINITY_MAX_PARALLEL_TASKS";

impl Container {
    /// Whether the container runs in pull mode: `TRINITY_PULL_MODE` trimmed and lower-cased is
    /// `1` or `true` (the issue's `1` and the reference's `true`; anything else is push).
    pub fn pull_mode(&self) -> bool {
        self.env
            .get(PULL_MODE_ENV)
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "1" || v == "true")
    }

    /// The pull worker pool: `TRINITY_MAX_PARALLEL_TASKS` clamped to 1–32; absent or
    /// unparseable → 3 (the platform's default, as the reference reads it).
    pub fn max_parallel_tasks(&self) -> i64 {
        self.env
            .get(MAX_PARALLEL_ENV)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(3, |n| n.clamp(1, 32))
    }
}

/// What the fixed `ps -eo stat,pid,comm` showed in one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum Processes {
    /// Read: the pids in state `Z` whose command is the configured process name (sorted).
    Read {
        /// Zombie pids.
        zombies: Vec<u32>,
    },
    /// Not read (inspect or exec failed, output not `stat pid comm` lines): that container is
    /// *unreadable*, never "no zombies".
    Unreadable {
        /// Short, secret-free reason.
        reason: String,
    },
}

/// The SQLite side of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqlState {
    /// The roster: every agent row, soft-deleted ones included (they are still *known*).
    pub agents: Vec<Agent>,
    /// Every non-terminal execution row, plus terminal rows completed within the recent window,
    /// or started within it without a `completed_at` (the collector pre-filters with a slack;
    /// invariants apply exact windows themselves).
    pub executions: Vec<Execution>,
    /// Rows in agent-keyed tables whose agent is absent from the roster (anti-join results),
    /// aggregated per table and agent.
    pub orphans: Vec<OrphanRows>,
    /// Optional columns absent from this schema.
    pub missing_fields: BTreeSet<Field>,
    /// Cascade tables absent from this database (skipped, reported in diagnostics).
    pub skipped_tables: Vec<String>,
    /// The `agent_schedules` rows E-06 can judge (empty when the table is absent: see
    /// [`Field::Schedules`] in `missing_fields`). The daemon's collector reads every row but
    /// keeps only the enabled, not soft-deleted ones due at least E-06's `max_overdue_seconds`
    /// before `taken_at_ms`; a snapshot built by hand may hold any rows (E-06 filters again).
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// The platform-wide concurrency ceiling (`system_settings.max_parallel_tasks_ceiling`,
    /// the reference's #506) that clamps every agent's cap; `None` when the platform has no
    /// settings table (no ceiling).
    #[serde(default)]
    pub max_parallel_tasks_ceiling: Option<i64>,
}

impl Execution {
    /// The lease's expiry when the row carries a legible lease; `None` for no lease and for an
    /// illegible one (see the type's docs).
    pub fn legible_lease(&self) -> Option<Millis> {
        if self.leased {
            self.lease_expires_at_ms
        } else {
            None
        }
    }
}

impl SqlState {
    /// Per roster agent, the smallest value of `field` (its cap, its timeout). The roster's key
    /// is the agent name, but snapshots are untrusted: should a name appear twice, the strictest
    /// value counts, whatever the row order.
    pub fn strictest_per_agent(&self, field: impl Fn(&Agent) -> i64) -> PerAgent<'_> {
        let mut out = lookup::map(self.agents.len());
        for agent in &self.agents {
            let value = field(agent);
            out.entry(agent.name.as_str())
                .and_modify(|v: &mut i64| *v = (*v).min(value))
                .or_insert(value);
        }
        PerAgent(out)
    }

    /// An empty SQL state (used when the source is unavailable, so checks never see `None`).
    pub const EMPTY: SqlState = SqlState {
        agents: Vec::new(),
        executions: Vec::new(),
        orphans: Vec::new(),
        missing_fields: BTreeSet::new(),
        skipped_tables: Vec::new(),
        schedules: Vec::new(),
        max_parallel_tasks_ceiling: None,
    };
}

/// One value per roster agent, looked up by name ([`SqlState::strictest_per_agent`]). A lookup,
/// not a list: it has no order to iterate in (checks walk the snapshot and ask it).
#[derive(Debug, Clone)]
pub struct PerAgent<'a>(LookupMap<&'a str, i64>);

impl PerAgent<'_> {
    /// The value of `agent`; `None` when it is not in the roster.
    pub fn get(&self, agent: &str) -> Option<i64> {
        self.0.get(agent).copied()
    }

    /// Whether `agent` is in the roster.
    pub fn contains(&self, agent: &str) -> bool {
        self.0.contains_key(agent)
    }
}

/// One roster row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `agent_name`.
    pub name: String,
    /// `is_system`.
    pub is_system: bool,
    /// `max_parallel_tasks` (NULL → 3, applied by the collector).
    pub max_parallel_tasks: i64,
    /// `execution_timeout_seconds` (NULL → 900, applied by the collector).
    pub execution_timeout_seconds: i64,
    /// `deleted_at` is set (soft-deleted; still known).
    pub deleted: bool,
}

/// Lifecycle phase of an execution row, classified from the configured status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a slot.
    Queued,
    /// Holding a slot (or a lease).
    Running,
    /// Waiting to be retried.
    PendingRetry,
    /// Finished: success, failed, cancelled or skipped.
    Terminal,
    /// A status word in none of the configured sets (still non-terminal for E-02).
    Other,
}

impl Phase {
    /// Terminal phases never go back.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Terminal)
    }
}

/// One `schedule_executions` row, as far as invariants need it.
///
/// **A lease that cannot be read is no lease.** A row is treated as pull-claimed (excused from
/// holding a slot by S-01, from having a session by E-05, and given the reaper's window by E-01)
/// only when its `lease_expires_at` is legible ([`Execution::legible_lease`]). An empty or
/// unparseable lease fails open, as the reference does (#1990): the row is judged like any
/// running row, and G-05 reports the unparseable value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// `id` (integers are carried as their decimal text).
    pub id: String,
    /// `agent_name`.
    pub agent_name: String,
    /// The raw status word.
    pub status: String,
    /// The classified phase.
    pub phase: Phase,
    /// `started_at`, parsed; `None` when NULL, unparseable or the column is missing.
    pub started_at_ms: Option<Millis>,
    /// `completed_at`, parsed.
    pub completed_at_ms: Option<Millis>,
    /// `queued_at`, parsed.
    pub queued_at_ms: Option<Millis>,
    /// `lease_expires_at` is non-NULL: the row was claimed by a pull worker and never holds a slot.
    pub leased: bool,
    /// `lease_expires_at`, parsed.
    pub lease_expires_at_ms: Option<Millis>,
    /// `completed_at` is non-NULL, even if unparseable (E-03 reports NULLs, not garbage).
    #[serde(default)]
    pub completed_at_set: bool,
    /// `queued_at` is non-NULL, even if unparseable (E-04 reports NULLs, not garbage).
    #[serde(default)]
    pub queued_at_set: bool,
    /// `claude_session_id` is non-NULL and not empty. The id itself is never carried.
    #[serde(default)]
    pub has_session: bool,
    /// Facts about `backlog_metadata`, computed by the collector for queued rows only; `None`
    /// for other rows or when the column is missing. The metadata text itself is never carried.
    #[serde(default)]
    pub backlog: Option<Backlog>,
}

/// What the collector found in a queued row's `backlog_metadata`, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// NULL, invalid JSON or valid JSON.
    pub json: BacklogJson,
    /// Names of the credential patterns found in the text (e.g. `github_pat`), sorted, never the
    /// matched text.
    pub secret_patterns: Vec<String>,
}

/// The shape of a `backlog_metadata` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BacklogJson {
    /// The column is NULL.
    Null,
    /// Present but not valid JSON.
    Invalid,
    /// Valid JSON.
    Valid,
}

/// One `agent_schedules` row, as far as invariants need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// `id` (integers are carried as their decimal text).
    pub id: String,
    /// `agent_name`.
    pub agent_name: String,
    /// `enabled` is truthy.
    pub enabled: bool,
    /// `deleted_at` is set (soft-deleted).
    pub deleted: bool,
    /// `next_run_at`, parsed; `None` when NULL or unparseable (see anomalies).
    pub next_run_at_ms: Option<Millis>,
}

/// Rows of one agent-keyed table pointing at one agent that is absent from the roster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrphanRows {
    /// The table.
    pub table: String,
    /// The absent agent the rows reference.
    pub agent_name: String,
    /// How many rows.
    pub rows: u64,
    /// Severity configured for this table (critical for live orchestration rows, major otherwise).
    pub severity: Severity,
}

/// The Redis side of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisState {
    /// One entry per `agent:slots:{agent}` key found by SCAN.
    pub slot_sets: Vec<SlotSet>,
    /// `canary:drain_tick_at`, parsed; `None` when never written (or garbage: see anomalies).
    pub drain_tick_at_ms: Option<Millis>,
    /// Every slot metadata hash (`agent:slot:{agent}:{execution_id}`) found by SCAN, in any
    /// order. A key whose member was absent when the slot sets were read is re-read after a
    /// short delay and kept only if it still exists (release does ZREM, then DEL, a few ms
    /// apart); such keys carry the TTL of that re-read.
    #[serde(default)]
    pub meta_keys: Vec<MetaKey>,
    /// Per pilot agent whose `agent:pull_poll:{agent}` key was read: the last claim attempt of
    /// its pull workers (unix ms), `None` when never written. A pilot absent from the map could
    /// not be read (garbage or an error: see anomalies) and is not judged on it.
    #[serde(default)]
    pub pull_polls: BTreeMap<String, Option<Millis>>,
}

/// A slot metadata hash found in Redis.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetaKey {
    /// The `{agent}` part of the key.
    pub agent_name: String,
    /// The `{execution_id}` part of the key.
    pub execution_id: String,
    /// The hash's TTL when it was re-read as a possible orphan; `None` when it was not re-read
    /// (its member was present).
    pub orphan_ttl: Option<KeyTtl>,
}

impl RedisState {
    /// An empty Redis state (used when the source is unavailable, so checks never see `None`).
    pub const EMPTY: RedisState = RedisState {
        slot_sets: Vec::new(),
        drain_tick_at_ms: None,
        meta_keys: Vec::new(),
        pull_polls: BTreeMap::new(),
    };
}

/// One agent's slot sorted set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSet {
    /// The `{agent}` part of the key.
    pub agent_name: String,
    /// Members in the order Redis returned them.
    pub members: Vec<SlotMember>,
}

/// One member of a slot sorted set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotMember {
    /// The member: an execution id, or a drain sentinel.
    pub member: String,
    /// The score (slot acquisition time) in unix ms; `None` when the score was not a finite number.
    pub acquired_at_ms: Option<Millis>,
    /// Starts with the drain-sentinel prefix (`drain-`): not an execution.
    pub sentinel: bool,
    /// The metadata hash as read; `None` for sentinels (their metadata is not read).
    pub meta: Option<SlotMeta>,
}

/// What was read about a slot's metadata hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMeta {
    /// The hash's TTL.
    pub ttl: KeyTtl,
    /// `timeout_seconds` field; `None` when absent or not an integer (see anomalies).
    pub timeout_seconds: Option<i64>,
    /// The instant the TTL was read (S-03 measures the slot's age at this instant, not at `taken_at`).
    pub ttl_read_at_ms: Millis,
}

/// A key's time to live, from `PTTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "ms")]
pub enum KeyTtl {
    /// `-2`: the key does not exist.
    Missing,
    /// `-1`: the key exists without an expiry.
    NoExpiry,
    /// Remaining time to live in milliseconds.
    Remaining(i64),
}

impl KeyTtl {
    /// Classifies a raw `PTTL` reply.
    pub fn from_pttl(pttl: i64) -> KeyTtl {
        match pttl {
            -2 => KeyTtl::Missing,
            -1 => KeyTtl::NoExpiry,
            ms => KeyTtl::Remaining(ms.max(0)),
        }
    }
}
