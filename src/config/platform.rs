//! `platform:` — where the watched platform's stores are and how its data is named.
//!
//! Every key pattern, table, column and status word is configuration (DESIGN §4) with the
//! reference platform's names as defaults, so canary can watch any platform built on the same
//! pattern. Identifiers are validated (`[A-Za-z_][A-Za-z0-9_]*`) before they reach SQL.

use std::path::PathBuf;
use std::time::Duration;

use canary_invariants::Severity;
use serde::{Deserialize, Serialize};

use super::Secret;

/// Which database the platform keeps its rows in, resolved from `sqlite_path` /
/// `database_url` / `database_url_file`.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformDatabase {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server (the URL is a secret).
    Postgres(Secret),
}

/// Why the platform database is not configured (a configuration problem, exit 78).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseChoiceError {
    /// Neither key is set.
    #[error(
        "set the platform database: platform.sqlite_path (a SQLite file) or platform.database_url / platform.database_url_file (PostgreSQL)"
    )]
    Neither,
    /// Both are set.
    #[error(
        "set only one platform database: platform.sqlite_path or platform.database_url / platform.database_url_file, not both"
    )]
    Both,
    /// The URL and its file are both set.
    #[error("set one of platform.database_url or platform.database_url_file, not both")]
    UrlAndFile,
    /// The URL file cannot be read (the message names the file, never its content).
    #[error("platform.database_url_file {path}: {reason}")]
    UrlFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The URL (from either key) is empty.
    #[error("platform.database_url is empty")]
    EmptyUrl,
}

impl PlatformConfig {
    /// The configured platform database. Reads `database_url_file` when that is the source.
    pub fn database(&self) -> Result<PlatformDatabase, DatabaseChoiceError> {
        let sqlite = !self.sqlite_path.as_os_str().is_empty();
        let url = match (&self.database_url, &self.database_url_file) {
            (Some(_), Some(_)) => return Err(DatabaseChoiceError::UrlAndFile),
            (Some(url), None) => Some(url.clone()),
            (None, Some(path)) => {
                Some(
                    Secret::from_file(path).map_err(|e| DatabaseChoiceError::UrlFile {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?,
                )
            }
            (None, None) => None,
        };
        match (sqlite, url) {
            (true, None) => Ok(PlatformDatabase::Sqlite(self.sqlite_path.clone())),
            (false, Some(url)) if url.expose().trim().is_empty() => {
                Err(DatabaseChoiceError::EmptyUrl)
            }
            (false, Some(url)) => Ok(PlatformDatabase::Postgres(url)),
            (true, Some(_)) => Err(DatabaseChoiceError::Both),
            (false, None) => Err(DatabaseChoiceError::Neither),
        }
    }

    /// The platform database is PostgreSQL (whether or not its URL can be read).
    pub fn is_postgres(&self) -> bool {
        self.database_url.is_some() || self.database_url_file.is_some()
    }
}

/// The watched platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// The platform's SQLite file; opened read-only. Exactly one of this and `database_url`
    /// (or `database_url_file`) is set.
    pub sqlite_path: PathBuf,
    /// The platform's PostgreSQL (`postgres://user@host:5432/db?sslmode=verify-full`). A secret
    /// (it may hold a password): never logged, redacted in `config show`.
    pub database_url: Option<Secret>,
    /// A file holding `database_url` (read at each connection, so a rotated password is picked
    /// up without a restart).
    pub database_url_file: Option<PathBuf>,
    /// PostgreSQL schema the platform's tables live in (the session's `search_path`).
    pub schema: String,
    /// PEM file of the CA(s) that sign the PostgreSQL server's certificate; the system roots
    /// when unset.
    pub postgres_ca_file: Option<PathBuf>,
    /// Accept a PostgreSQL role that can write the watched tables (or is a superuser). Off: such
    /// a role is refused (exit 78), because a read-only transaction does not stop every side
    /// effect; the role is the real guard.
    pub allow_write_role: bool,
    /// PostgreSQL connect timeout (a dead server must fail fast, not after a TCP timeout).
    #[serde(with = "humantime_serde")]
    pub postgres_connect_timeout: Duration,
    /// Server-side `statement_timeout` (and `lock_timeout`) of canary's PostgreSQL session.
    #[serde(with = "humantime_serde")]
    pub postgres_statement_timeout: Duration,
    /// The platform's Redis. May carry a password: shown redacted.
    pub redis_url: String,
    /// Redis ACL user (Redis 6+); overrides a user in `redis_url`.
    pub redis_username: Option<String>,
    /// A file holding the Redis password (a secret, read at each connection); overrides a
    /// password in `redis_url`.
    pub redis_password_file: Option<PathBuf>,
    /// TLS settings for a `rediss://` URL (certificate verification is always on unless
    /// `insecure_skip_verify`).
    pub redis_tls: RedisTls,
    /// Redis Sentinel: ask these sentinels for the current primary at every cycle (so a
    /// failover is followed without a restart). Absent = off: `redis_url` names the node.
    /// With it, `redis_url` still gives the scheme, database, credentials and TLS of the data
    /// node; only its host and port come from the sentinels.
    pub redis_sentinel: Option<RedisSentinel>,
    /// Redis Cluster: ask these seed nodes for the slot map (`CLUSTER SLOTS`) at every cycle,
    /// SCAN every primary and pipeline each read to the node owning its key's hash slot.
    /// Absent = off. `redis_url` still gives the scheme, credentials and TLS of every node
    /// (database 0: a cluster has no other); only host and port come from the cluster.
    pub redis_cluster: Option<RedisCluster>,
    /// The Docker Engine running the agent containers (R-01, H-01's critical arm). Absent = the
    /// Docker source is off and the invariants that need it are *not configured* (not run).
    pub docker: Option<DockerConfig>,
    /// Which node the slot data is read from: `primary` (default) or `replica` (a replica
    /// from the sentinels, or `redis_replica_url`), read only when it has caught up with the
    /// primary within `redis_max_replica_lag`; otherwise the primary is read that cycle.
    pub redis_read_from: RedisReadFrom,
    /// The replica to read without Sentinel (`redis_read_from: replica`). May carry a password:
    /// shown redacted. The ACL user, password file and TLS settings apply to it too.
    pub redis_replica_url: Option<String>,
    /// How far behind the primary a replica may be and still be read: the replica must reach
    /// the primary's replication offset (read at the start of the cycle) within this time.
    #[serde(with = "humantime_serde")]
    pub redis_max_replica_lag: Duration,
    /// How long a read waits for a platform write lock before the source counts as unavailable.
    #[serde(with = "humantime_serde")]
    pub sqlite_busy_timeout: Duration,
    /// Redis connect timeout (a dead Redis must fail fast).
    #[serde(with = "humantime_serde")]
    pub redis_connect_timeout: Duration,
    /// Redis per-response timeout.
    #[serde(with = "humantime_serde")]
    pub redis_response_timeout: Duration,
    /// `COUNT` hint for `SCAN` (large: fewer round trips).
    pub redis_scan_count: u32,
    /// Members read from one slot set (the lowest scores first). A larger set is read up to this
    /// many and reported as a `slot_set_truncated` anomaly (G-05) with its full size: one key
    /// cannot make a cycle's memory unbounded.
    pub redis_max_members_per_key: u32,
    /// A slot metadata hash whose member was absent is re-read after this delay and reported
    /// (S-04) only if it still exists: release does ZREM, then DEL a few ms later. Spent only in
    /// cycles that saw such a hash.
    #[serde(with = "humantime_serde")]
    pub redis_orphan_recheck_delay: Duration,
    /// Redis key patterns.
    pub keys: RedisKeys,
    /// Table and column names.
    pub tables: Tables,
    /// Status words of `schedule_executions.status`.
    pub statuses: Statuses,
    /// Values used when an agent's column is NULL.
    pub agent_defaults: AgentDefaults,
    /// Agent-keyed tables scanned for rows left behind by a delete (L-03).
    pub cascade: Vec<CascadeEntry>,
    /// Paths in a queued row's `backlog_metadata` JSON removed before the credential scan
    /// (G-04): `/images/*/data` (base64 vision input matches `AIza` by chance; the reference's
    /// #3114). `*` is any key or index.
    pub backlog_metadata_skip: Vec<String>,
    /// Pull mode: the pilot agents served by pull workers instead of slots (B-08, B-02's pull
    /// arm). Needs `platform.docker` (the containers say whether they run in pull mode).
    pub pull: PullConfig,
    /// The platform's own per-agent queued-count endpoint (B-01). Absent = the `queue_count`
    /// source is off and B-01 is *not configured* (not run).
    pub queue_count: Option<QueueCountConfig>,
}

/// `platform.queue_count`: where the platform reports an agent's queued count over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueCountConfig {
    /// URL template with `{agent}` exactly once (replaced by the percent-encoded agent name),
    /// `http://` or `https://`. A secret like the database URL (it may embed credentials):
    /// never logged, redacted in `config show`, errors name the agent, not the URL.
    pub url: Secret,
    /// JSON pointer (RFC 6901) to the count in the response body: a non-negative integer.
    #[serde(default = "default_json_pointer")]
    pub json_pointer: String,
    /// A file holding a bearer token, sent as `Authorization: Bearer …` (read at each cycle, so
    /// a rotated token is picked up without a restart).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Bound of each request (connect included).
    #[serde(default = "default_queue_count_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight at once.
    #[serde(default = "default_queue_count_concurrency")]
    pub concurrency: usize,
    /// Agents asked per cycle, at most: every live agent with queued rows first, then a share
    /// of the others that rotates from cycle to cycle, so every live agent is asked within
    /// `ceil(agents / max_agents_per_cycle)` cycles while a cycle's cost stays bounded.
    #[serde(default = "default_queue_count_max_agents")]
    pub max_agents_per_cycle: usize,
}

fn default_json_pointer() -> String {
    "/queued".to_owned()
}

fn default_queue_count_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_queue_count_concurrency() -> usize {
    8
}

fn default_queue_count_max_agents() -> usize {
    200
}

impl QueueCountConfig {
    /// A configuration for `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> QueueCountConfig {
        QueueCountConfig {
            url: Secret::new(url),
            json_pointer: default_json_pointer(),
            token_file: None,
            timeout: default_queue_count_timeout(),
            concurrency: default_queue_count_concurrency(),
            max_agents_per_cycle: default_queue_count_max_agents(),
        }
    }
}

/// `platform.pull`: which agents are pull-mode pilots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    /// Agent names served by pull workers (the reference's `PULL_MODE_PILOT_AGENTS`). Their
    /// containers' `TRINITY_PULL_MODE` and `TRINITY_MAX_PARALLEL_TASKS` are kept from inspect
    /// without naming them in `docker.env_keep`; their `keys.pull_poll` key is read. Empty: no
    /// pilots.
    pub pilot_agents: Vec<String>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            sqlite_path: PathBuf::new(),
            database_url: None,
            database_url_file: None,
            schema: "public".to_owned(),
            postgres_ca_file: None,
            allow_write_role: false,
            postgres_connect_timeout: Duration::from_secs(2),
            postgres_statement_timeout: Duration::from_secs(10),
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            redis_username: None,
            redis_password_file: None,
            redis_tls: RedisTls::default(),
            redis_sentinel: None,
            redis_cluster: None,
            docker: None,
            redis_read_from: RedisReadFrom::Primary,
            redis_replica_url: None,
            redis_max_replica_lag: Duration::from_secs(1),
            sqlite_busy_timeout: Duration::from_secs(2),
            redis_connect_timeout: Duration::from_secs(1),
            redis_response_timeout: Duration::from_secs(2),
            redis_scan_count: 5000,
            redis_max_members_per_key: 150_000,
            redis_orphan_recheck_delay: Duration::from_secs(1),
            keys: RedisKeys::default(),
            tables: Tables::default(),
            statuses: Statuses::default(),
            agent_defaults: AgentDefaults::default(),
            cascade: default_cascade(),
            backlog_metadata_skip: vec!["/images/*/data".to_owned()],
            pull: PullConfig::default(),
            queue_count: None,
        }
    }
}

/// TLS for `rediss://`: the CA to verify the server with (system roots when unset), an optional
/// client certificate (mutual TLS), and the explicit escape hatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTls {
    /// PEM file of the CA(s) that sign the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `client_key_file`), for servers that require one.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Dangerous (a man in the middle reads the slot data and
    /// the password); `config validate` warns.
    pub insecure_skip_verify: bool,
}

/// Redis Sentinel discovery (`platform.redis_sentinel`). The sentinels are reached over plain
/// TCP, or over TLS with `tls: true` (verified with `platform.redis_tls`, the data nodes' own
/// settings: one deployment, one CA); `username` / `password_file` authenticate to the
/// sentinels (a sentinel's own `requirepass` / ACL), not to the data nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSentinel {
    /// The monitored master's name (`sentinel monitor <name> …`).
    pub master_name: String,
    /// Sentinel addresses, `host:port`, asked in this order until one answers.
    pub sentinels: Vec<String>,
    /// ACL user on the sentinels.
    #[serde(default)]
    pub username: Option<String>,
    /// Reach the sentinels over TLS (their `tls-port`), with `platform.redis_tls`'s CA, client
    /// certificate and `insecure_skip_verify`.
    #[serde(default)]
    pub tls: bool,
    /// A file holding the sentinels' password (a secret, read at each cycle).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Redis Cluster discovery (`platform.redis_cluster`): seed nodes, `host:port`, reached with
/// `redis_url`'s scheme, credentials and TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCluster {
    /// Seed nodes (`host:port`), asked in this order for the slot map until one answers. Any
    /// node of the cluster will do; list more than one so a dead seed is not a blind cycle.
    pub nodes: Vec<String>,
}

/// `platform.docker`: where the Docker Engine API is and how agent containers are recognised.
/// Every key has a default, so `docker: {}` turns the source on with the reference's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The Engine API socket, `unix:///path` (a socket proxy's socket works the same).
    pub endpoint: String,
    /// `key=value` label of the agent containers (the listing filter).
    pub agent_label: String,
    /// The agent's name is the container name without this prefix.
    pub name_prefix: String,
    /// The agent process's command name (`comm`, at most 15 characters): its zombies are R-01's.
    pub process_name: String,
    /// Bound of each Engine API call (listing, inspect, exec).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How zombies are found: `exec` (one fixed `ps -eo stat,pid,comm` per agent container) or
    /// `host_proc` (the host's `/proc`, when canary shares the host PID namespace).
    pub zombie_source: ZombieSource,
    /// Environment variables kept from each container's inspect; every other one (secrets
    /// included) is dropped on read, never logged nor stored.
    pub env_keep: Vec<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            endpoint: "unix:///var/run/docker.sock".to_owned(),
            agent_label: "trinity.platform=agent".to_owned(),
            name_prefix: "agent-".to_owned(),
            process_name: "claude".to_owned(),
            timeout: Duration::from_secs(2),
            zombie_source: ZombieSource::Exec,
            env_keep: Vec::new(),
        }
    }
}

/// `platform.docker.zombie_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ZombieSource {
    /// `ps -eo stat,pid,comm` run in each agent container through the Engine API's exec.
    #[default]
    Exec,
    /// The host's `/proc` (canary shares the host PID namespace): a `Z` process named
    /// `process_name` whose parent's cgroup names the container. No exec is issued.
    HostProc,
}

/// `platform.redis_read_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisReadFrom {
    /// The primary (the sentinels' master, or `redis_url`).
    #[default]
    Primary,
    /// A caught-up replica, else the primary.
    Replica,
}

/// Redis key patterns. `{agent}` and `{execution_id}` are placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisKeys {
    /// Per-agent slot sorted set.
    pub slots: String,
    /// Per-slot metadata hash.
    pub slot_meta: String,
    /// Field of the metadata hash holding the execution's timeout.
    pub timeout_field: String,
    /// Members starting with this are drain sentinels, not executions.
    pub sentinel_prefix: String,
    /// Heartbeat of the platform's capacity-maintenance sweep (unix seconds).
    pub drain_tick: String,
    /// Per pilot agent: the unix time (seconds) of its pull workers' last claim attempt
    /// (`{agent}` is replaced by the pilot's name).
    pub pull_poll: String,
}

impl Default for RedisKeys {
    fn default() -> Self {
        RedisKeys {
            slots: "agent:slots:{agent}".to_owned(),
            slot_meta: "agent:slot:{agent}:{execution_id}".to_owned(),
            timeout_field: "timeout_seconds".to_owned(),
            sentinel_prefix: "drain-".to_owned(),
            drain_tick: "canary:drain_tick_at".to_owned(),
            pull_poll: "agent:pull_poll:{agent}".to_owned(),
        }
    }
}

/// Table and column names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tables {
    /// The roster.
    pub agents: AgentsTable,
    /// Execution rows.
    pub executions: ExecutionsTable,
    /// Schedules (E-06).
    pub schedules: SchedulesTable,
    /// Platform-wide settings (the concurrency ceiling B-02 clamps caps with).
    pub settings: SettingsTable,
}

/// The platform's key/value settings table and the concurrency ceiling in it (the reference's
/// #506). A missing table means no ceiling; a table without the key means `ceiling_default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsTable {
    /// Table name.
    pub table: String,
    /// Column holding the setting's name.
    pub key: String,
    /// Column holding its value.
    pub value: String,
    /// The setting that caps every agent's `max_parallel_tasks`.
    pub ceiling_key: String,
    /// The ceiling when the table exists but the setting does not (the platform's default).
    pub ceiling_default: i64,
}

impl Default for SettingsTable {
    fn default() -> Self {
        SettingsTable {
            table: "system_settings".to_owned(),
            key: "key".to_owned(),
            value: "value".to_owned(),
            ceiling_key: "max_parallel_tasks_ceiling".to_owned(),
            ceiling_default: 10,
        }
    }
}

/// `agent_ownership` and its columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsTable {
    /// Table name.
    pub table: String,
    /// Agent name (required).
    pub name: String,
    /// Optional.
    pub is_system: String,
    /// Optional; NULL → `agent_defaults.max_parallel_tasks`.
    pub max_parallel_tasks: String,
    /// Optional; NULL → `agent_defaults.execution_timeout_seconds`.
    pub execution_timeout_seconds: String,
    /// Optional; non-NULL = soft-deleted (still known).
    pub deleted_at: String,
}

impl Default for AgentsTable {
    fn default() -> Self {
        AgentsTable {
            table: "agent_ownership".to_owned(),
            name: "agent_name".to_owned(),
            is_system: "is_system".to_owned(),
            max_parallel_tasks: "max_parallel_tasks".to_owned(),
            execution_timeout_seconds: "execution_timeout_seconds".to_owned(),
            deleted_at: "deleted_at".to_owned(),
        }
    }
}

/// `schedule_executions` and its columns. `id`, `agent_name` and `status` are required; the rest
/// are optional (older schemas) and their absence degrades only the checks that need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionsTable {
    /// Table name.
    pub table: String,
    /// Required.
    pub id: String,
    /// Required.
    pub agent_name: String,
    /// Required.
    pub status: String,
    /// Optional.
    pub schedule_id: String,
    /// Optional.
    pub started_at: String,
    /// Optional.
    pub completed_at: String,
    /// Optional.
    pub queued_at: String,
    /// Optional.
    pub duration_ms: String,
    /// Optional.
    pub session_id: String,
    /// Optional; non-NULL on a running row = claimed by a pull worker.
    pub lease_expires_at: String,
    /// Optional.
    pub backlog_metadata: String,
}

impl Default for ExecutionsTable {
    fn default() -> Self {
        ExecutionsTable {
            table: "schedule_executions".to_owned(),
            id: "id".to_owned(),
            agent_name: "agent_name".to_owned(),
            status: "status".to_owned(),
            schedule_id: "schedule_id".to_owned(),
            started_at: "started_at".to_owned(),
            completed_at: "completed_at".to_owned(),
            queued_at: "queued_at".to_owned(),
            duration_ms: "duration_ms".to_owned(),
            session_id: "claude_session_id".to_owned(),
            lease_expires_at: "lease_expires_at".to_owned(),
            backlog_metadata: "backlog_metadata".to_owned(),
        }
    }
}

/// `agent_schedules` and its columns. Without the table (or one of `id`, `agent_name`,
/// `enabled`, `next_run_at`) E-06 is unknown; without `deleted_at` no schedule counts as deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesTable {
    /// Table name.
    pub table: String,
    /// Required for E-06.
    pub id: String,
    /// Required for E-06.
    pub agent_name: String,
    /// Required for E-06; truthy = enabled.
    pub enabled: String,
    /// Required for E-06; when the schedule should next run.
    pub next_run_at: String,
    /// Optional; non-NULL = soft-deleted.
    pub deleted_at: String,
}

impl Default for SchedulesTable {
    fn default() -> Self {
        SchedulesTable {
            table: "agent_schedules".to_owned(),
            id: "id".to_owned(),
            agent_name: "agent_name".to_owned(),
            enabled: "enabled".to_owned(),
            next_run_at: "next_run_at".to_owned(),
            deleted_at: "deleted_at".to_owned(),
        }
    }
}

/// Status words. A word in none of these lists is treated as non-terminal ("other").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Statuses {
    /// Waiting for a slot.
    pub queued: Vec<String>,
    /// Holding a slot or lease.
    pub running: Vec<String>,
    /// Waiting for a retry.
    pub pending_retry: Vec<String>,
    /// Finished. Never `completed` or `timeout` on the reference platform: a wrong terminal set
    /// silently blinds E-02.
    pub terminal: Vec<String>,
}

impl Default for Statuses {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Statuses {
            queued: words(&["queued"]),
            running: words(&["running"]),
            pending_retry: words(&["pending_retry"]),
            terminal: words(&["success", "failed", "cancelled", "skipped"]),
        }
    }
}

/// Values the platform uses when an agent column is NULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentDefaults {
    /// `max_parallel_tasks` NULL → this.
    pub max_parallel_tasks: i64,
    /// `execution_timeout_seconds` NULL → this.
    pub execution_timeout_seconds: i64,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        AgentDefaults {
            max_parallel_tasks: 3,
            execution_timeout_seconds: 900,
        }
    }
}

/// One agent-keyed table of the delete-cascade scan list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeEntry {
    /// Table name.
    pub table: String,
    /// Column holding the agent name.
    #[serde(default = "default_agent_column")]
    pub column: String,
    /// Only rows matching this filter count.
    #[serde(default)]
    pub filter: Option<RowFilter>,
    /// More conditions, all of which a row must also meet to count (`=`, `!=`, `in`,
    /// `not_in`, `is_null`, `is_not_null`); values are bound, never spliced.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RowCondition>,
    /// Severity of orphaned rows in this table.
    pub severity: Severity,
}

/// One condition of a cascade entry's `where` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowCondition {
    /// Column to test.
    pub column: String,
    /// The comparison.
    pub op: ConditionOp,
    /// Its operands: one for `=` / `!=`, at least one for `in` / `not_in`, none for the NULL
    /// tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A comparison of [`RowCondition`]. `!=` and `not_in` keep NULLs (a NULL is in no list), as
/// `filter.not_in` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionOp {
    /// `column = value`.
    #[serde(rename = "=")]
    Eq,
    /// `column IS NULL OR column <> value`.
    #[serde(rename = "!=")]
    Ne,
    /// `column IN (values)`.
    #[serde(rename = "in")]
    In,
    /// `column IS NULL OR column NOT IN (values)`.
    #[serde(rename = "not_in")]
    NotIn,
    /// `column IS NULL`.
    #[serde(rename = "is_null")]
    IsNull,
    /// `column IS NOT NULL`.
    #[serde(rename = "is_not_null")]
    IsNotNull,
}

impl ConditionOp {
    /// How many values the comparison takes: `(min, max)`.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            ConditionOp::Eq | ConditionOp::Ne => (1, Some(1)),
            ConditionOp::In | ConditionOp::NotIn => (1, None),
            ConditionOp::IsNull | ConditionOp::IsNotNull => (0, Some(0)),
        }
    }
}

/// A row filter: `column IN (...)` or `column NOT IN (...)`; values are bound, never spliced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    /// Column to test.
    pub column: String,
    /// Keep rows whose column is one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Vec::is_empty")]
    pub is_in: Vec<String>,
    /// Keep rows whose column is none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_in: Vec<String>,
}

fn default_agent_column() -> String {
    "agent_name".to_owned()
}

fn default_cascade() -> Vec<CascadeEntry> {
    let entry = |table: &str, filter: Option<RowFilter>, severity| CascadeEntry {
        table: table.to_owned(),
        column: default_agent_column(),
        filter,
        conditions: Vec::new(),
        severity,
    };
    let only = |column: &str, value: &str| {
        Some(RowFilter {
            column: column.to_owned(),
            is_in: vec![value.to_owned()],
            not_in: vec![],
        })
    };
    let plain = [
        "agent_sharing",
        "agent_schedules",
        "agent_skills",
        "agent_tags",
        "agent_shared_files",
        "agent_public_links",
        "agent_reports",
    ];
    let mut list: Vec<CascadeEntry> = plain
        .iter()
        .map(|t| entry(t, None, Severity::Major))
        .collect();
    list.push(entry(
        "schedule_executions",
        Some(RowFilter {
            column: "status".to_owned(),
            is_in: vec![],
            not_in: Statuses::default().terminal,
        }),
        Severity::Critical,
    ));
    list.push(entry(
        "chat_sessions",
        only("status", "active"),
        Severity::Major,
    ));
    // The platform's alarm sentinel hosts queue operator work under reserved names (a leading
    // `_` can never be an agent's): never orphans (the reference's list).
    let mut operator_queue = entry("operator_queue", only("status", "pending"), Severity::Major);
    operator_queue.conditions.push(RowCondition {
        column: default_agent_column(),
        op: ConditionOp::NotIn,
        values: [
            "_retention-guard",
            "_db-backup",
            "_log-archive",
            "_sub-headroom",
        ]
        .map(str::to_owned)
        .to_vec(),
    });
    list.push(operator_queue);
    list.push(entry(
        "access_requests",
        only("status", "pending"),
        Severity::Major,
    ));
    list.push(entry(
        "mcp_api_keys",
        only("scope", "agent"),
        Severity::Major,
    ));
    list
}

/// `true` when `s` is a plain SQL identifier (safe to splice after quoting).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Redis URL with any password replaced by `***`, for display.
///
/// ```
/// use canary::config::platform::redact_url;
/// assert_eq!(redact_url("redis://:hunter2@10.0.0.5:6379/0"), "redis://***@10.0.0.5:6379/0");
/// assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
