//! Validation: every problem of a loaded [`Config`] at once, each with its dotted key path, so an
//! operator fixes the file in one pass instead of one error per restart.
//!
//! Loading (`load.rs`) already guarantees the shape (known keys, right types); this checks the
//! values: SQL identifiers before they reach a statement, key patterns that must carry their
//! placeholders, status lists that must not overlap, durations and thresholds that must be
//! positive, addresses, and secrets (set once, files present, never echoed).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::platform::{PlatformConfig, is_identifier};
use super::problem::Problem;
use super::{Config, Secret};

/// Every problem in `config`; empty when it is usable.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    platform(&config.platform, &mut out);
    replica_lag_within_grace(config, &mut out);
    state(config, &mut out);
    schedule(config, &mut out);
    blind(config, &mut out);
    alerts(config, &mut out);
    secrets(config, &mut out);
    http(config, &mut out);
    log(config, &mut out);
    invariants(config, &mut out);
    super::custom::validate(config, &mut out);
    out
}

fn push(out: &mut Vec<Problem>, path: impl Into<String>, message: impl Into<String>) {
    out.push(Problem::new(path, message));
}

fn identifier(out: &mut Vec<Problem>, path: &str, name: &str) {
    // Names are spliced (quoted) into SQL; only plain identifiers are allowed there.
    if !is_identifier(name) {
        push(
            out,
            path,
            format!("{name:?} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        );
    }
}

/// Upper bound of `platform.redis_orphan_recheck_delay`.
const MAX_ORPHAN_RECHECK_DELAY: Duration = Duration::from_secs(10);

fn at_least(out: &mut Vec<Problem>, path: &str, value: Duration, min: Duration) {
    if value < min {
        push(
            out,
            path,
            format!(
                "must be at least {} (got {})",
                humantime::format_duration(min),
                humantime::format_duration(value)
            ),
        );
    }
}

/// The Redis ACL user, password file and TLS settings: only what the runtime supports.
fn redis_access(p: &PlatformConfig, out: &mut Vec<Problem>) {
    if p.redis_username
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        push(out, "platform.redis_username", "must not be empty when set");
    }
    if let Some(path) = &p.redis_password_file {
        // `run` reads it at each connection; refuse here what would fail there.
        match super::Secret::from_file(path) {
            Ok(secret) if secret.expose().is_empty() => push(
                out,
                "platform.redis_password_file",
                format!("{} is empty", path.display()),
            ),
            Ok(_) => {}
            Err(e) => push(
                out,
                "platform.redis_password_file",
                format!("{}: {e}", path.display()),
            ),
        }
    }
    let tls = &p.redis_tls;
    let files = [
        ("ca_file", &tls.ca_file),
        ("client_cert_file", &tls.client_cert_file),
        ("client_key_file", &tls.client_key_file),
    ];
    let configured = files.iter().any(|(_, f)| f.is_some()) || tls.insecure_skip_verify;
    let sentinel_tls = p.redis_sentinel.as_ref().is_some_and(|s| s.tls);
    if configured && !p.redis_url.starts_with("rediss://") && !sentinel_tls {
        push(
            out,
            "platform.redis_tls",
            "applies only to a rediss:// redis_url or redis_sentinel.tls: true (TLS); use one or \
             remove redis_tls",
        );
    }
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        push(
            out,
            "platform.redis_tls.client_cert_file",
            "client_cert_file and client_key_file go together (set both or neither)",
        );
    }
    for (key, file) in files {
        if let Some(path) = file
            && let Err(e) = std::fs::metadata(path)
        {
            push(
                out,
                format!("platform.redis_tls.{key}"),
                format!("{}: {e}", path.display()),
            );
        }
    }
}

/// Upper bound of `platform.redis_max_replica_lag` (past it a replica is too stale for S-01 to
/// mean anything, and the cycle would wait that long for a lagging one).
const MAX_REPLICA_LAG: Duration = Duration::from_secs(30);

/// `host:port` with a non-empty host and a port in 1..=65535.
fn host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty() && !host.contains(['/', '@', ' ']) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Sentinel, replica reads and the replica lag bound: only what the runtime does.
fn redis_topology(p: &PlatformConfig, out: &mut Vec<Problem>) {
    use super::platform::RedisReadFrom;
    const TCP_SCHEMES: [&str; 2] = ["redis://", "rediss://"];
    if let Some(s) = &p.redis_sentinel {
        if s.master_name.trim().is_empty() {
            push(
                out,
                "platform.redis_sentinel.master_name",
                "must not be empty",
            );
        }
        if s.sentinels.is_empty() {
            push(
                out,
                "platform.redis_sentinel.sentinels",
                "list at least one sentinel (host:port); three or more in production",
            );
        }
        for (i, addr) in s.sentinels.iter().enumerate() {
            if !host_port(addr) {
                push(
                    out,
                    format!("platform.redis_sentinel.sentinels[{i}]"),
                    format!("{addr:?} is not host:port (a sentinel's address, without a scheme)"),
                );
            }
        }
        if s.username.as_deref().is_some_and(|u| u.trim().is_empty()) {
            push(
                out,
                "platform.redis_sentinel.username",
                "must not be empty when set",
            );
        }
        if let Some(path) = &s.password_file {
            match Secret::from_file(path) {
                Ok(secret) if secret.expose().is_empty() => push(
                    out,
                    "platform.redis_sentinel.password_file",
                    format!("{} is empty", path.display()),
                ),
                Ok(_) => {}
                Err(e) => push(
                    out,
                    "platform.redis_sentinel.password_file",
                    format!("{}: {e}", path.display()),
                ),
            }
        }
        if !TCP_SCHEMES.iter().any(|s| p.redis_url.starts_with(s)) {
            push(
                out,
                "platform.redis_url",
                "with redis_sentinel it must be redis:// or rediss:// (the sentinels name a TCP \
                 host and port; the URL gives the scheme, database and credentials)",
            );
        }
        if p.redis_replica_url.is_some() {
            push(
                out,
                "platform.redis_replica_url",
                "not used with redis_sentinel (the sentinels name the replicas); remove it",
            );
        }
    }
    if let Some(c) = &p.redis_cluster {
        redis_cluster(p, c, out);
    }
    if let Some(d) = &p.docker {
        docker(d, out);
    }
    pull(p, out);
    if let Some(q) = &p.queue_count {
        queue_count(q, out);
    }
    match p.redis_read_from {
        RedisReadFrom::Primary => {
            if p.redis_replica_url.is_some() {
                push(
                    out,
                    "platform.redis_replica_url",
                    "is read only with redis_read_from: replica; set that or remove it",
                );
            }
        }
        RedisReadFrom::Replica => {
            if p.redis_sentinel.is_none() && p.redis_replica_url.is_none() {
                push(
                    out,
                    "platform.redis_read_from",
                    "replica needs a replica: set platform.redis_sentinel (its replicas) or \
                     platform.redis_replica_url",
                );
            }
            if p.redis_sentinel.is_none() && !TCP_SCHEMES.iter().any(|s| p.redis_url.starts_with(s))
            {
                push(
                    out,
                    "platform.redis_url",
                    "with redis_read_from: replica it must be redis:// or rediss://",
                );
            }
        }
    }
    if let Some(url) = &p.redis_replica_url {
        let same_tls = url.starts_with("rediss://") == p.redis_url.starts_with("rediss://");
        if !TCP_SCHEMES.iter().any(|s| url.starts_with(s)) {
            push(
                out,
                "platform.redis_replica_url",
                "must start with redis:// or rediss:// (value not shown: it may hold a password)",
            );
        } else if !same_tls {
            push(
                out,
                "platform.redis_replica_url",
                "must use the same scheme as redis_url (both rediss:// or both redis://): the TLS \
                 settings apply to both",
            );
        }
    }
    at_least(
        out,
        "platform.redis_max_replica_lag",
        p.redis_max_replica_lag,
        MIN_TIMEOUT,
    );
    if p.redis_max_replica_lag > MAX_REPLICA_LAG {
        push(
            out,
            "platform.redis_max_replica_lag",
            format!(
                "must be at most {} (got {})",
                humantime::format_duration(MAX_REPLICA_LAG),
                humantime::format_duration(p.redis_max_replica_lag)
            ),
        );
    }
}

/// Redis Cluster: seeds as `host:port`, a TCP `redis_url` on database 0, and none of the
/// single-node routes (the runtime reads every primary; it has no cluster replica reads).
/// `platform.docker`: a unix socket, a `key=value` label, a process name `ps` can show, a
/// positive timeout, environment variable names.
fn docker(d: &super::platform::DockerConfig, out: &mut Vec<Problem>) {
    match d.endpoint.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => {}
        _ => push(
            out,
            "platform.docker.endpoint",
            format!(
                "{:?} is not unix:///path/to/docker.sock (only a local socket, or a socket \
                 proxy's, is supported)",
                d.endpoint
            ),
        ),
    }
    if !d
        .agent_label
        .split_once('=')
        .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
    {
        push(
            out,
            "platform.docker.agent_label",
            "must be key=value (the label every agent container carries)",
        );
    }
    // The kernel truncates a command name to 15 bytes: a longer name would never match.
    if d.process_name.is_empty() || d.process_name.len() > 15 || d.process_name.contains(' ') {
        push(
            out,
            "platform.docker.process_name",
            "must be a command name of 1 to 15 characters without spaces (ps shows at most 15)",
        );
    }
    if d.timeout.is_zero() {
        push(out, "platform.docker.timeout", "must be positive");
    }
    for (i, name) in d.env_keep.iter().enumerate() {
        if name.is_empty() || name.contains('=') {
            push(
                out,
                format!("platform.docker.env_keep[{i}]"),
                "must be an environment variable name",
            );
        }
    }
}

/// Upper bound of `platform.queue_count.max_agents_per_cycle` (the fleet bound).
const MAX_QUEUE_COUNT_AGENTS: usize = 10_000;

/// `platform.queue_count`: an http(s) URL template with `{agent}` exactly once, a JSON pointer,
/// a readable token file, a positive timeout, bounded concurrency and share of agents. The
/// URL is a secret: messages never quote it.
fn queue_count(q: &super::platform::QueueCountConfig, out: &mut Vec<Problem>) {
    let template = q.url.expose();
    let placeholders = template.matches("{agent}").count();
    if placeholders != 1 {
        push(
            out,
            "platform.queue_count.url",
            format!(
                "must contain {{agent}} exactly once (found {placeholders}; value not shown: it \
                 may hold credentials)"
            ),
        );
    }
    match reqwest::Url::parse(&template.replace("{agent}", "agent")) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        Ok(_) => push(
            out,
            "platform.queue_count.url",
            "must be an http:// or https:// URL with a host (value not shown)",
        ),
        Err(e) => push(
            out,
            "platform.queue_count.url",
            format!("is not a URL: {e} (value not shown)"),
        ),
    }
    if !json_pointer_ok(&q.json_pointer) {
        push(
            out,
            "platform.queue_count.json_pointer",
            format!(
                "{:?} is not a JSON pointer (empty, or `/`-separated tokens where `~` is only \
                 `~0` or `~1`, e.g. /queued or /data/queue/count)",
                q.json_pointer
            ),
        );
    }
    if let Some(path) = &q.token_file {
        match Secret::from_file(path) {
            Ok(token) if token.expose().is_empty() => push(
                out,
                "platform.queue_count.token_file",
                format!("{} is empty", path.display()),
            ),
            Ok(_) => {}
            Err(e) => push(
                out,
                "platform.queue_count.token_file",
                format!("{}: {e}", path.display()),
            ),
        }
    }
    if q.timeout.is_zero() {
        push(out, "platform.queue_count.timeout", "must be positive");
    }
    if !(1..=64).contains(&q.concurrency) {
        push(
            out,
            "platform.queue_count.concurrency",
            "must be between 1 and 64",
        );
    }
    if !(1..=MAX_QUEUE_COUNT_AGENTS).contains(&q.max_agents_per_cycle) {
        push(
            out,
            "platform.queue_count.max_agents_per_cycle",
            format!("must be between 1 and {MAX_QUEUE_COUNT_AGENTS}"),
        );
    }
}

/// RFC 6901: empty (the whole document), or `/`-prefixed tokens in which `~` is followed only by
/// `0` or `1`.
fn json_pointer_ok(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return false;
    };
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// `platform.pull`: pilots need the Docker source (their containers say whether they run in
/// pull mode) and a poll key naming the agent.
fn pull(p: &PlatformConfig, out: &mut Vec<Problem>) {
    let pilots = &p.pull.pilot_agents;
    for (i, name) in pilots.iter().enumerate() {
        if name.trim().is_empty() {
            push(
                out,
                format!("platform.pull.pilot_agents[{i}]"),
                "must be an agent name",
            );
        }
    }
    if !pilots.is_empty() && p.docker.is_none() {
        push(
            out,
            "platform.pull.pilot_agents",
            "pull-mode pilots need platform.docker (their containers' TRINITY_PULL_MODE and \
             TRINITY_MAX_PARALLEL_TASKS are read from it)",
        );
    }
    if !p.keys.pull_poll.contains("{agent}") {
        push(out, "platform.keys.pull_poll", "must contain {agent}");
    }
}

fn redis_cluster(p: &PlatformConfig, c: &super::platform::RedisCluster, out: &mut Vec<Problem>) {
    use super::platform::RedisReadFrom;
    if c.nodes.is_empty() {
        push(
            out,
            "platform.redis_cluster.nodes",
            "list at least one seed node (host:port); several, so a dead seed is not a blind cycle",
        );
    }
    for (i, addr) in c.nodes.iter().enumerate() {
        if !host_port(addr) {
            push(
                out,
                format!("platform.redis_cluster.nodes[{i}]"),
                format!(
                    "{addr:?} is not host:port (scheme, credentials and TLS come from redis_url)"
                ),
            );
        }
    }
    if !["redis://", "rediss://"]
        .iter()
        .any(|s| p.redis_url.starts_with(s))
    {
        push(
            out,
            "platform.redis_url",
            "with redis_cluster it must be redis:// or rediss:// (the cluster names TCP hosts and \
             ports; the URL gives the scheme and credentials)",
        );
    } else if !matches!(url_database(&p.redis_url), "" | "0") {
        push(
            out,
            "platform.redis_url",
            "with redis_cluster the database must be 0 (a cluster has no other)",
        );
    }
    if p.redis_sentinel.is_some() {
        push(
            out,
            "platform.redis_cluster",
            "cannot be combined with redis_sentinel (a cluster fails over by itself); keep one",
        );
    }
    if p.redis_read_from == RedisReadFrom::Replica {
        push(
            out,
            "platform.redis_read_from",
            "replica is not supported with redis_cluster: every primary is read",
        );
    }
}

/// The database part of a `redis://host:port/N` URL (`""` when absent), without parsing the
/// credentials (which may hold `/`): the path after the last `@`, else after the scheme.
fn url_database(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    rest.split_once('/').map_or("", |(_, db)| db)
}

/// A replica read is up to `redis_max_replica_lag` older than the SQL read; S-01's grace must
/// cover that (plus the platform's own few-ms write gap), or a healthy start or finish in the
/// lag window would be a false alarm.
fn replica_lag_within_grace(config: &Config, out: &mut Vec<Problem>) {
    use super::platform::RedisReadFrom;
    let p = &config.platform;
    let grace = config.invariants.s01.grace_seconds;
    if p.redis_read_from == RedisReadFrom::Replica
        && grace.is_finite()
        && p.redis_max_replica_lag.as_secs_f64() >= grace
    {
        push(
            out,
            "platform.redis_max_replica_lag",
            format!(
                "must be below invariants.S-01.grace_seconds ({grace}s) when reading a replica: \
                 a slot view older than the grace turns a healthy start or finish red"
            ),
        );
    }
}

/// Settings that are valid but dangerous: printed by `config validate`, logged at startup.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.platform.redis_tls.insecure_skip_verify {
        out.push(
            "platform.redis_tls.insecure_skip_verify is true: the Redis server's certificate is \
             not verified, so anyone on the path can read the slot data and the password"
                .to_owned(),
        );
    }
    if config.platform.allow_write_role {
        out.push(
            "platform.allow_write_role is true: canary accepts a PostgreSQL role that can write \
             the platform's tables"
                .to_owned(),
        );
    }
    if config.http.status_page.public {
        out.push(
            "http.status_page.public is true: the status page on GET / (subjects and summaries \
             read from the platform) is served to anyone who can reach http.bind, without a token"
                .to_owned(),
        );
    }
    out
}

fn not_empty(out: &mut Vec<Problem>, path: &str, value: &str) {
    if value.is_empty() {
        push(out, path, "must not be empty");
    }
}

const MIN_TIMEOUT: Duration = Duration::from_millis(10);

fn platform(p: &PlatformConfig, out: &mut Vec<Problem>) {
    // The URL may carry a password: the message names the accepted schemes, not the value.
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if !SCHEMES.iter().any(|scheme| p.redis_url.starts_with(scheme)) {
        push(
            out,
            "platform.redis_url",
            "must start with redis://, rediss://, unix:// or redis+unix:// (value not shown: it may hold a password)",
        );
    }
    // Exactly one platform database; the URL file's content is read only to say it is empty.
    let sqlite = !p.sqlite_path.as_os_str().is_empty();
    match (
        sqlite,
        p.database_url.is_some(),
        p.database_url_file.is_some(),
    ) {
        (false, false, false) => push(
            out,
            "platform.sqlite_path",
            "set the platform database: platform.sqlite_path (a SQLite file) or \
             platform.database_url / platform.database_url_file (PostgreSQL)",
        ),
        (true, true, _) | (true, _, true) => push(
            out,
            "platform.database_url",
            "set only one platform database: platform.sqlite_path or \
             platform.database_url / platform.database_url_file, not both",
        ),
        (false, true, true) => push(
            out,
            "platform.database_url",
            "set one of platform.database_url or platform.database_url_file, not both",
        ),
        _ => {}
    }
    if let Some(url) = &p.database_url {
        // The URL may carry a password: the message names the accepted schemes, not the value.
        let url = url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            push(
                out,
                "platform.database_url",
                "must start with postgres:// or postgresql:// (value not shown: it may hold a password)",
            );
        }
    }
    if !super::platform::is_identifier(&p.schema) {
        push(
            out,
            "platform.schema",
            "must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)",
        );
    }
    at_least(
        out,
        "platform.postgres_connect_timeout",
        p.postgres_connect_timeout,
        MIN_TIMEOUT,
    );
    at_least(
        out,
        "platform.postgres_statement_timeout",
        p.postgres_statement_timeout,
        MIN_TIMEOUT,
    );
    at_least(
        out,
        "platform.sqlite_busy_timeout",
        p.sqlite_busy_timeout,
        MIN_TIMEOUT,
    );
    at_least(
        out,
        "platform.redis_connect_timeout",
        p.redis_connect_timeout,
        MIN_TIMEOUT,
    );
    at_least(
        out,
        "platform.redis_response_timeout",
        p.redis_response_timeout,
        MIN_TIMEOUT,
    );
    if p.redis_max_members_per_key < 100 {
        push(
            out,
            "platform.redis_max_members_per_key",
            "must be at least 100",
        );
    }
    redis_access(p, out);
    redis_topology(p, out);
    for (i, path) in p.backlog_metadata_skip.iter().enumerate() {
        if !path.starts_with('/') || path.len() < 2 || path.contains("//") {
            push(
                out,
                format!("platform.backlog_metadata_skip[{i}]"),
                "must be a JSON path like /images/*/data (segments after /, * for any key or index)",
            );
        }
    }
    if p.redis_scan_count == 0 {
        push(out, "platform.redis_scan_count", "must be at least 1");
    }

    let keys = &p.keys;
    if keys.slots.matches("{agent}").count() != 1 {
        push(
            out,
            "platform.keys.slots",
            "must contain {agent} exactly once",
        );
    }
    // Exactly once: S-04 splits the metadata keys it finds back into agent and id.
    for placeholder in ["{agent}", "{execution_id}"] {
        if keys.slot_meta.matches(placeholder).count() != 1 {
            push(
                out,
                "platform.keys.slot_meta",
                format!("must contain {placeholder} exactly once"),
            );
        }
    }
    not_empty(out, "platform.keys.timeout_field", &keys.timeout_field);
    // An empty prefix would make every slot member a sentinel and blind the slot checks.
    not_empty(out, "platform.keys.sentinel_prefix", &keys.sentinel_prefix);
    not_empty(out, "platform.keys.drain_tick", &keys.drain_tick);

    let agents = &p.tables.agents;
    for (column, name) in [
        ("table", &agents.table),
        ("name", &agents.name),
        ("is_system", &agents.is_system),
        ("max_parallel_tasks", &agents.max_parallel_tasks),
        (
            "execution_timeout_seconds",
            &agents.execution_timeout_seconds,
        ),
        ("deleted_at", &agents.deleted_at),
    ] {
        identifier(out, &format!("platform.tables.agents.{column}"), name);
    }
    let executions = &p.tables.executions;
    for (column, name) in [
        ("table", &executions.table),
        ("id", &executions.id),
        ("agent_name", &executions.agent_name),
        ("status", &executions.status),
        ("schedule_id", &executions.schedule_id),
        ("started_at", &executions.started_at),
        ("completed_at", &executions.completed_at),
        ("queued_at", &executions.queued_at),
        ("duration_ms", &executions.duration_ms),
        ("session_id", &executions.session_id),
        ("lease_expires_at", &executions.lease_expires_at),
        ("backlog_metadata", &executions.backlog_metadata),
    ] {
        identifier(out, &format!("platform.tables.executions.{column}"), name);
    }

    let schedules = &p.tables.schedules;
    for (column, name) in [
        ("table", &schedules.table),
        ("id", &schedules.id),
        ("agent_name", &schedules.agent_name),
        ("enabled", &schedules.enabled),
        ("next_run_at", &schedules.next_run_at),
        ("deleted_at", &schedules.deleted_at),
    ] {
        identifier(out, &format!("platform.tables.schedules.{column}"), name);
    }
    let settings = &p.tables.settings;
    for (column, name) in [
        ("table", &settings.table),
        ("key", &settings.key),
        ("value", &settings.value),
    ] {
        identifier(out, &format!("platform.tables.settings.{column}"), name);
    }
    if settings.ceiling_default < 1 {
        push(
            out,
            "platform.tables.settings.ceiling_default",
            "must be at least 1",
        );
    }
    // The delay is spent inside the cycle (only when a stray metadata hash was seen).
    if p.redis_orphan_recheck_delay > MAX_ORPHAN_RECHECK_DELAY {
        push(
            out,
            "platform.redis_orphan_recheck_delay",
            format!(
                "must be at most {} (got {})",
                humantime::format_duration(MAX_ORPHAN_RECHECK_DELAY),
                humantime::format_duration(p.redis_orphan_recheck_delay)
            ),
        );
    }

    statuses(p, out);

    if p.agent_defaults.max_parallel_tasks < 1 {
        push(
            out,
            "platform.agent_defaults.max_parallel_tasks",
            "must be at least 1",
        );
    }
    if p.agent_defaults.execution_timeout_seconds < 1 {
        push(
            out,
            "platform.agent_defaults.execution_timeout_seconds",
            "must be at least 1",
        );
    }

    for (index, entry) in p.cascade.iter().enumerate() {
        let path = format!("platform.cascade[{index}]");
        identifier(out, &format!("{path}.table"), &entry.table);
        identifier(out, &format!("{path}.column"), &entry.column);
        if let Some(filter) = &entry.filter {
            identifier(out, &format!("{path}.filter.column"), &filter.column);
            // `IN ()` matches nothing: the entry would silently never report.
            if filter.is_in.is_empty() && filter.not_in.is_empty() {
                push(
                    out,
                    format!("{path}.filter"),
                    "needs values in `in` or `not_in`",
                );
            }
        }
        for (i, condition) in entry.conditions.iter().enumerate() {
            let at = format!("{path}.where[{i}]");
            identifier(out, &format!("{at}.column"), &condition.column);
            let (min, max) = condition.op.arity();
            let n = condition.values.len();
            if n < min || max.is_some_and(|max| n > max) {
                let wanted = match (min, max) {
                    (0, Some(0)) => "no values".to_owned(),
                    (a, Some(b)) if a == b => format!("exactly {a} value"),
                    (a, _) => format!("at least {a} value(s)"),
                };
                push(
                    out,
                    format!("{at}.values"),
                    format!("this op takes {wanted} (has {n})"),
                );
            }
        }
    }
}

fn statuses(p: &PlatformConfig, out: &mut Vec<Problem>) {
    let s = &p.statuses;
    let lists = [
        ("queued", &s.queued),
        ("running", &s.running),
        ("pending_retry", &s.pending_retry),
        ("terminal", &s.terminal),
    ];
    // The checks classify a row by its status word; running and terminal drive S-01 and E-02.
    for (name, list) in [("running", &s.running), ("terminal", &s.terminal)] {
        if list.is_empty() {
            push(
                out,
                format!("platform.statuses.{name}"),
                "must list at least one status",
            );
        }
    }
    for (i, (name, list)) in lists.iter().enumerate() {
        for (earlier, earlier_list) in &lists[..i] {
            for word in list.iter().filter(|word| earlier_list.contains(word)) {
                push(
                    out,
                    format!("platform.statuses.{name}"),
                    format!("{word:?} is also listed in platform.statuses.{earlier}"),
                );
            }
        }
    }
}

fn state(config: &Config, out: &mut Vec<Problem>) {
    let state = &config.state;
    if state.path.as_os_str().is_empty() {
        push(out, "state.path", "must not be empty");
    }
    if state.retention_days < 1 {
        push(out, "state.retention_days", "must be at least 1");
    }
    at_least(
        out,
        "state.lease_timeout",
        state.lease_timeout,
        Duration::from_secs(1),
    );
    if !(1..=super::MAX_SUBJECTS_PER_INVARIANT).contains(&state.max_subjects_per_invariant) {
        push(
            out,
            "state.max_subjects_per_invariant",
            format!(
                "must be between 1 and {} (the rest is counted, not stored)",
                super::MAX_SUBJECTS_PER_INVARIANT
            ),
        );
    }
}

fn schedule(config: &Config, out: &mut Vec<Problem>) {
    let schedule = &config.schedule;
    at_least(
        out,
        "schedule.interval",
        schedule.interval,
        Duration::from_secs(1),
    );
    // With a fixed interval, jitter beyond it would reorder or merge ticks.
    if schedule.cron.is_none() && schedule.jitter > schedule.interval {
        push(
            out,
            "schedule.jitter",
            format!(
                "must be at most schedule.interval ({}; got {})",
                humantime::format_duration(schedule.interval),
                humantime::format_duration(schedule.jitter)
            ),
        );
    }
    if let Some(cron) = &schedule.cron {
        let fields = cron.split_whitespace().count();
        if fields != 5 {
            push(
                out,
                "schedule.cron",
                format!(
                    "must have 5 whitespace-separated fields (minute hour day-of-month month day-of-week, UTC), found {fields}"
                ),
            );
        } else if let Err(error) =
            crate::timing::Cadence::from_config(schedule.interval, Some(cron))
        {
            // The same parser `canary run` uses, so `config validate` and `run` agree.
            let message = error.to_string();
            let message = message.strip_prefix("schedule.cron: ").unwrap_or(&message);
            push(out, "schedule.cron", message.to_owned());
        }
    }
}

/// `alerts.blind_after` counts consecutive unreadable cycles: 0 would fire on nothing seen.
fn blind(config: &Config, out: &mut Vec<Problem>) {
    if config.alerts.blind_after == 0 {
        push(
            out,
            "alerts.blind_after",
            "must be at least 1 (consecutive unreadable cycles before the blind alert; got 0)",
        );
    }
}

/// Shortest accepted admin token, in characters: 16 random characters (e.g. 8 random bytes,
/// hex-encoded) are 64 bits or more, out of reach of online guessing; a 1-character token is a
/// footgun.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

fn secrets(config: &Config, out: &mut Vec<Problem>) {
    let slack = &config.alerts.slack;
    for (key, url) in secret_pair(
        out,
        "alerts.slack.webhook_url",
        slack.webhook_url.as_ref().map(|s| s.expose()),
        slack.webhook_url_file.as_deref(),
    ) {
        webhook_url(out, &key, url.expose());
    }
    let heartbeat = &config.alerts.heartbeat;
    for (key, url) in secret_pair(
        out,
        "alerts.heartbeat.url",
        heartbeat.url.as_ref().map(|s| s.expose()),
        heartbeat.url_file.as_deref(),
    ) {
        webhook_url(out, &key, url.expose());
    }
    let http = &config.http;
    for (key, token) in secret_pair(
        out,
        "http.admin_token",
        http.admin_token.as_ref().map(|s| s.expose()),
        http.admin_token_file.as_deref(),
    ) {
        let chars = token.expose().chars().count();
        if chars < MIN_ADMIN_TOKEN_CHARS {
            push(
                out,
                key,
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_CHARS} characters (got {chars}; value not shown: it is a secret)"
                ),
            );
        }
    }
}

/// `https://` to any host; `http://` only to a loopback host (a local relay or a test sink), since
/// the URL is a bearer credential that plain HTTP would expose on the network.
fn webhook_url(out: &mut Vec<Problem>, key: &str, url: &str) {
    const HIDDEN: &str = "(value not shown: it is a secret)";
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return;
    }
    if !lower.starts_with("http://") {
        push(
            out,
            key,
            format!("must start with https:// (http:// only to a loopback host) {HIDDEN}"),
        );
        return;
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.host_str().map(str::to_owned));
    let loopback = host.is_some_and(|host| {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if !loopback {
        push(
            out,
            key,
            format!(
                "http:// is accepted only to a loopback host (127.0.0.0/8, ::1, localhost); use https:// {HIDDEN}"
            ),
        );
    }
}

/// A secret is set inline or from a file, not both; it is not empty (a file's content is trimmed,
/// as `run` reads it); a file exists and is readable. Returns each value that could be read, with
/// the key it came from (`…_file` for a file), for the checks on its content.
fn secret_pair(
    out: &mut Vec<Problem>,
    key: &str,
    value: Option<&str>,
    file: Option<&Path>,
) -> Vec<(String, Secret)> {
    let mut found = Vec::new();
    if value.is_some() && file.is_some() {
        push(
            out,
            key,
            format!("set one of {key} or {key}_file, not both"),
        );
    }
    if let Some(value) = value {
        if value.trim().is_empty() {
            push(out, key, "must not be empty");
        } else {
            found.push((key.to_owned(), Secret::new(value)));
        }
    }
    if let Some(file) = file {
        let path = format!("{key}_file");
        // Read here, as `run` reads it, so a typo or an empty file fails `config validate`, not
        // the first alert hours later. Messages name the file, never its content.
        match std::fs::metadata(file) {
            Ok(meta) if meta.is_dir() => {
                push(
                    out,
                    path,
                    format!("{} is a directory, not a file", file.display()),
                );
            }
            Ok(_) => match Secret::from_file(file) {
                Ok(secret) if secret.expose().is_empty() => push(
                    out,
                    path,
                    format!("{} is empty (or only whitespace)", file.display()),
                ),
                Ok(secret) => found.push((path, secret)),
                Err(e) => push(out, path, format!("cannot read {}: {e}", file.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                push(
                    out,
                    path,
                    format!("file does not exist: {}", file.display()),
                );
            }
            Err(e) => push(out, path, format!("cannot access {}: {e}", file.display())),
        }
    }
    found
}

/// Shortest `alerts.renotify_after`: a reminder every cycle is a flood, not a reminder.
const MIN_RENOTIFY_AFTER: Duration = Duration::from_secs(60);

fn alerts(config: &Config, out: &mut Vec<Problem>) {
    let alerts = &config.alerts;
    if alerts.fire_after < 1 {
        push(
            out,
            "alerts.fire_after",
            "must be at least 1 (consecutive red cycles before an alert fires)",
        );
    }
    if let Some(renotify) = alerts.renotify_after {
        at_least(out, "alerts.renotify_after", renotify, MIN_RENOTIFY_AFTER);
    }
    if let Some(instance) = &alerts.instance
        && (instance.trim().is_empty() || instance.chars().count() > 100)
    {
        push(
            out,
            "alerts.instance",
            "must be 1 to 100 characters (or unset for the host name)",
        );
    }
    for (i, w) in alerts.maintenance_windows.iter().enumerate() {
        maintenance_window(config, &format!("alerts.maintenance_windows[{i}]"), w, out);
    }
    if alerts.retry_initial > alerts.retry_max {
        push(
            out,
            "alerts.retry_initial",
            format!(
                "must be at most alerts.retry_max ({}; got {})",
                humantime::format_duration(alerts.retry_max),
                humantime::format_duration(alerts.retry_initial)
            ),
        );
    }
}

/// Whether `id` names something a silence or window can match: a catalog invariant, a custom
/// one, or a blind source (`source:sqlite`, `source:redis`).
pub fn is_silenceable_id(config: &Config, id: &str) -> bool {
    canary_invariants::catalog::find(id).is_some()
        || config.custom_entries().iter().any(|c| c.entry.id == id)
        || canary_invariants::blind::source_of(id).is_some()
}

fn maintenance_window(
    config: &Config,
    path: &str,
    w: &crate::config::MaintenanceWindow,
    out: &mut Vec<Problem>,
) {
    let fields = w.cron.split_whitespace().count();
    if fields != 5 {
        push(
            out,
            format!("{path}.cron"),
            format!(
                "{:?}: expected 5 fields (minute hour day-of-month month day-of-week, UTC), found {fields}",
                w.cron
            ),
        );
    } else if let Err(e) = crate::timing::Cadence::cron(&w.cron) {
        push(
            out,
            format!("{path}.cron"),
            format!(
                "{:?} is not a valid 5-field UTC cron expression: {}",
                w.cron, e.reason
            ),
        );
    }
    if w.duration.is_zero() {
        push(out, format!("{path}.duration"), "must be longer than 0s");
    }
    if w.invariants.is_empty() {
        push(
            out,
            format!("{path}.invariants"),
            "must name at least one invariant id (or source:<name>)",
        );
    }
    for id in &w.invariants {
        if !is_silenceable_id(config, id) {
            push(
                out,
                format!("{path}.invariants"),
                format!(
                    "{id:?} is neither a catalog invariant, a custom invariant, nor \
                     source:sqlite / source:redis"
                ),
            );
        }
    }
    if w.subject.as_deref().is_some_and(|g| g.trim().is_empty()) {
        push(
            out,
            format!("{path}.subject"),
            "must not be empty (omit it to match every subject)",
        );
    }
}

/// Shortest `http.request_timeout`: below it every run-cycle request would be answered 408.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Smallest `http.body_limit_bytes`: room for any admin request body this API accepts.
const MIN_BODY_LIMIT_BYTES: usize = 1024;

fn http(config: &Config, out: &mut Vec<Problem>) {
    at_least(
        out,
        "http.request_timeout",
        config.http.request_timeout,
        MIN_REQUEST_TIMEOUT,
    );
    if config.http.body_limit_bytes < MIN_BODY_LIMIT_BYTES {
        push(
            out,
            "http.body_limit_bytes",
            format!(
                "must be at least {MIN_BODY_LIMIT_BYTES} (got {})",
                config.http.body_limit_bytes
            ),
        );
    }
    if let Err(e) = config.http.bind.parse::<SocketAddr>() {
        push(
            out,
            "http.bind",
            format!(
                "{:?} is not an IP address and port such as 127.0.0.1:9464 ({e})",
                config.http.bind
            ),
        );
    }
}

fn log(config: &Config, out: &mut Vec<Problem>) {
    let level = &config.log.level;
    if level.trim().is_empty() {
        push(
            out,
            "log.level",
            "must not be empty (e.g. info, or canary=debug,info)",
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        push(out, "log.level", format!("not a valid tracing filter: {e}"));
    }
}

/// Each invariant validates its own parameters (in its file of the catalog); here they only get
/// their dotted paths.
fn invariants(config: &Config, out: &mut Vec<Problem>) {
    out.extend(
        canary_invariants::catalog::validate(&config.invariants)
            .into_iter()
            .map(|p| Problem::new(p.path(), p.message)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults plus the one key they leave unset: a platform database.
    fn base() -> Config {
        let mut c = Config::default();
        c.platform.sqlite_path = "/var/lib/platform/platform.db".into();
        c
    }
    use crate::config::Secret;
    use crate::config::platform::{CascadeEntry, ConditionOp, RowCondition, RowFilter};
    use canary_invariants::Severity;

    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn a_public_status_page_is_warned_about() {
        let mut c = Config::default();
        assert!(warnings(&c).is_empty());
        c.http.status_page.public = true;
        let w = warnings(&c);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("http.status_page.public is true"), "{w:?}");
    }

    #[test]
    fn maintenance_windows_and_instance_are_validated() {
        use crate::config::MaintenanceWindow;
        let mut c = base();
        c.alerts.instance = Some(" ".to_owned());
        let ok = MaintenanceWindow {
            cron: "0 2 * * SUN".to_owned(),
            duration: Duration::from_secs(7200),
            invariants: vec!["S-01".to_owned(), "source:redis".to_owned()],
            subject: Some("fleet-*".to_owned()),
            comment: "weekly".to_owned(),
        };
        c.alerts.maintenance_windows = vec![
            ok.clone(),
            MaintenanceWindow {
                cron: "0 2 * *".to_owned(),
                duration: Duration::ZERO,
                invariants: vec!["Z-99".to_owned()],
                subject: Some(String::new()),
                ..ok.clone()
            },
            MaintenanceWindow {
                cron: "61 2 * * *".to_owned(),
                invariants: vec![],
                ..ok
            },
        ];
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "alerts.instance",
                "alerts.maintenance_windows[1].cron",
                "alerts.maintenance_windows[1].duration",
                "alerts.maintenance_windows[1].invariants",
                "alerts.maintenance_windows[1].subject",
                "alerts.maintenance_windows[2].cron",
                "alerts.maintenance_windows[2].invariants",
            ],
            "{problems:?}"
        );
        assert!(problems[3].message.contains("Z-99"), "{problems:?}");
    }

    #[test]
    fn cluster_settings_are_refused_unless_the_runtime_can_use_them() {
        use crate::config::platform::{RedisCluster, RedisReadFrom, RedisSentinel};
        let mut c = base();
        c.platform.redis_url = "rediss://canary:pw-SECRET@ignored:6379/0".to_owned();
        c.platform.redis_cluster = Some(RedisCluster {
            nodes: vec!["10.0.0.1:6379".to_owned(), "[::1]:7000".to_owned()],
        });
        assert!(validate(&c).is_empty(), "{:#?}", validate(&c));
        c.platform.redis_url = "redis://10.0.0.1:6379".to_owned();
        assert!(validate(&c).is_empty(), "{:#?}", validate(&c));

        // A database other than 0, a seed that is not host:port, and the single-node routes.
        c.platform.redis_url = "redis://:pw/SECRET@10.0.0.1:6379/2".to_owned();
        c.platform.redis_cluster = Some(RedisCluster {
            nodes: vec!["redis://10.0.0.1:6379".to_owned()],
        });
        c.platform.redis_sentinel = Some(RedisSentinel {
            master_name: "mymaster".to_owned(),
            sentinels: vec!["10.0.0.1:26379".to_owned()],
            username: None,
            password_file: None,
            tls: false,
        });
        c.platform.redis_read_from = RedisReadFrom::Replica;
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "platform.redis_cluster.nodes[0]",
                "platform.redis_url",
                "platform.redis_cluster",
                "platform.redis_read_from",
            ],
            "{problems:#?}"
        );
        assert!(!format!("{problems:?}").contains("SECRET"));

        let mut c = base();
        c.platform.redis_url = "unix:///run/redis.sock".to_owned();
        c.platform.redis_cluster = Some(RedisCluster { nodes: Vec::new() });
        assert_eq!(
            paths(&validate(&c)),
            ["platform.redis_cluster.nodes", "platform.redis_url"]
        );
        assert_eq!(url_database("redis://u:p/w@h:1/0?x=1"), "0");
        assert_eq!(url_database("redis://h:1"), "");
    }

    #[test]
    fn docker_settings_are_checked() {
        use crate::config::platform::DockerConfig;
        let mut c = base();
        c.platform.docker = Some(DockerConfig::default());
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
        c.platform.docker = Some(DockerConfig {
            endpoint: "tcp://10.0.0.1:2375".to_owned(),
            agent_label: "trinity.platform".to_owned(),
            process_name: "a-process-name-of-16".to_owned(),
            timeout: std::time::Duration::ZERO,
            env_keep: vec!["OK".to_owned(), "A=B".to_owned()],
            ..DockerConfig::default()
        });
        assert_eq!(
            paths(&validate(&c)),
            [
                "platform.docker.endpoint",
                "platform.docker.agent_label",
                "platform.docker.process_name",
                "platform.docker.timeout",
                "platform.docker.env_keep[1]",
            ]
        );
    }

    #[test]
    fn queue_count_settings_are_checked_and_never_quote_the_url() {
        use crate::config::platform::QueueCountConfig;
        let mut c = base();
        let ok = "https://user:pw@backend:8000/api/agents/{agent}/queue?x=1";
        c.platform.queue_count = Some(QueueCountConfig::new(ok));
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
        for pointer in ["", "/", "/a~0b/c~1d/0"] {
            c.platform.queue_count = Some(QueueCountConfig {
                json_pointer: pointer.to_owned(),
                ..QueueCountConfig::new(ok)
            });
            assert!(validate(&c).is_empty(), "{pointer:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty-token");
        std::fs::write(&empty, "\n").unwrap();
        let secret_url = "ftp://user:s3cret-pw@backend/{agent}/{agent}";
        c.platform.queue_count = Some(QueueCountConfig {
            json_pointer: "queued~2".to_owned(),
            token_file: Some(empty),
            timeout: std::time::Duration::ZERO,
            concurrency: 0,
            max_agents_per_cycle: 10_001,
            ..QueueCountConfig::new(secret_url)
        });
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "platform.queue_count.url",
                "platform.queue_count.url",
                "platform.queue_count.json_pointer",
                "platform.queue_count.token_file",
                "platform.queue_count.timeout",
                "platform.queue_count.concurrency",
                "platform.queue_count.max_agents_per_cycle",
            ]
        );
        let text = format!("{problems:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("backend"),
            "{text}"
        );
        c.platform.queue_count = Some(QueueCountConfig {
            token_file: Some(dir.path().join("absent")),
            ..QueueCountConfig::new("http://backend/api/agents/queue")
        });
        assert_eq!(
            paths(&validate(&c)),
            [
                "platform.queue_count.url",
                "platform.queue_count.token_file"
            ]
        );
    }

    #[test]
    fn pull_pilots_need_docker_and_a_poll_key_naming_the_agent() {
        use crate::config::platform::DockerConfig;
        let mut c = base();
        c.platform.pull.pilot_agents = vec!["a".to_owned(), " ".to_owned()];
        c.platform.keys.pull_poll = "agent:pull_poll".to_owned();
        assert_eq!(
            paths(&validate(&c)),
            [
                "platform.pull.pilot_agents[1]",
                "platform.pull.pilot_agents",
                "platform.keys.pull_poll",
            ]
        );
        c.platform.pull.pilot_agents = vec!["a".to_owned()];
        c.platform.keys.pull_poll = "agent:pull_poll:{agent}".to_owned();
        c.platform.docker = Some(DockerConfig::default());
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
    }

    #[test]
    fn sentinel_and_replica_settings_are_refused_unless_the_runtime_can_use_them() {
        use crate::config::platform::{RedisReadFrom, RedisSentinel};
        // A complete Sentinel + replica setup is fine.
        let mut c = base();
        c.platform.redis_sentinel = Some(RedisSentinel {
            master_name: "mymaster".to_owned(),
            sentinels: vec!["10.0.0.1:26379".to_owned(), "[::1]:26379".to_owned()],
            username: None,
            password_file: None,
            tls: false,
        });
        c.platform.redis_read_from = RedisReadFrom::Replica;
        assert!(validate(&c).is_empty(), "{:#?}", validate(&c));

        // Each thing the runtime cannot do is named.
        c.platform.redis_sentinel = Some(RedisSentinel {
            master_name: " ".to_owned(),
            sentinels: vec!["10.0.0.1".to_owned(), "host:0".to_owned()],
            username: Some(String::new()),
            password_file: Some("/nonexistent/sentinel-pw".into()),
            tls: false,
        });
        c.platform.redis_url = "unix:///run/redis.sock".to_owned();
        c.platform.redis_replica_url = Some("redis://:pw-SECRET@10.0.0.6:6379/0".to_owned());
        c.platform.redis_max_replica_lag = Duration::from_secs(31);
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "platform.redis_sentinel.master_name",
                "platform.redis_sentinel.sentinels[0]",
                "platform.redis_sentinel.sentinels[1]",
                "platform.redis_sentinel.username",
                "platform.redis_sentinel.password_file",
                "platform.redis_url",
                "platform.redis_replica_url",
                "platform.redis_max_replica_lag",
                "platform.redis_max_replica_lag",
            ],
            "{problems:#?}"
        );
        assert!(!format!("{problems:?}").contains("pw-SECRET"));

        // The lag bound stays below S-01's grace.
        let mut c = base();
        c.platform.redis_read_from = RedisReadFrom::Replica;
        c.platform.redis_replica_url = Some("redis://10.0.0.6:6379/0".to_owned());
        c.platform.redis_max_replica_lag = Duration::from_secs(3);
        let problems = validate(&c);
        assert_eq!(paths(&problems), ["platform.redis_max_replica_lag"]);
        assert!(
            problems[0].message.contains("grace_seconds (3s)"),
            "{problems:?}"
        );

        // Replica mode needs a replica; a replica URL needs replica mode.
        let mut c = base();
        c.platform.redis_read_from = RedisReadFrom::Replica;
        assert_eq!(paths(&validate(&c)), ["platform.redis_read_from"]);
        let mut c = base();
        c.platform.redis_replica_url = Some("redis://10.0.0.6:6379/0".to_owned());
        assert_eq!(paths(&validate(&c)), ["platform.redis_replica_url"]);
        c.platform.redis_read_from = RedisReadFrom::Replica;
        assert!(validate(&c).is_empty(), "{:#?}", validate(&c));
        c.platform.redis_sentinel = Some(RedisSentinel {
            master_name: "m".to_owned(),
            sentinels: Vec::new(),
            username: None,
            password_file: None,
            tls: false,
        });
        assert_eq!(
            paths(&validate(&c)),
            [
                "platform.redis_sentinel.sentinels",
                "platform.redis_replica_url"
            ]
        );
    }

    #[test]
    fn exactly_one_platform_database_and_a_postgres_url() {
        let mut c = base();
        c.platform.database_url = Some(Secret::new("postgres://u:pw-SECRET@db/p"));
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "platform.database_url");
        assert!(problems[0].message.contains("not both"), "{problems:?}");
        c.platform.sqlite_path = std::path::PathBuf::new();
        assert_eq!(validate(&c), Vec::new());
        c.platform.database_url_file = Some("/etc/canary/url".into());
        assert!(
            validate(&c)[0]
                .message
                .contains("database_url_file, not both")
        );
        c.platform.database_url_file = None;
        c.platform.database_url = Some(Secret::new("mysql://u:pw-SECRET@db/p"));
        c.platform.schema = "public; DROP".to_owned();
        let problems = validate(&c);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["platform.database_url", "platform.schema"]);
        assert!(!format!("{problems:?}").contains("pw-SECRET"));
    }

    #[test]
    fn defaults_are_valid_once_a_database_is_named() {
        assert_eq!(validate(&base()), Vec::new());
        // The built-in defaults name no platform database: that is the one problem.
        let problems = validate(&Config::default());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["platform.sqlite_path"], "{problems:?}");
        assert!(problems[0].message.contains("platform.database_url"));
    }

    #[test]
    fn display_is_path_colon_message() {
        assert_eq!(Problem::new("a.b", "bad").to_string(), "a.b: bad");
    }

    #[test]
    fn collects_every_problem_at_once() {
        let mut c = base();
        c.platform.tables.agents.table = "agents; DROP TABLE x".to_owned();
        c.platform.tables.executions.status = "1status".to_owned();
        c.platform.keys.slots = "slots:{agent}:{agent}".to_owned();
        c.platform.keys.slot_meta = "meta:{agent}".to_owned();
        c.platform.statuses.terminal = vec![];
        c.platform.statuses.queued = vec!["running".to_owned()];
        c.platform.redis_url = "http://:pw@host".to_owned();
        c.platform.redis_connect_timeout = Duration::from_millis(1);
        c.platform.cascade.push(CascadeEntry {
            table: "ok_table".to_owned(),
            column: "bad-col".to_owned(),
            filter: Some(RowFilter {
                column: "x y".to_owned(),
                is_in: vec![],
                not_in: vec![],
            }),
            conditions: vec![
                RowCondition {
                    column: "ok".to_owned(),
                    op: ConditionOp::Eq,
                    values: vec![],
                },
                RowCondition {
                    column: "ok".to_owned(),
                    op: ConditionOp::IsNull,
                    values: vec!["x".to_owned()],
                },
                RowCondition {
                    column: "no;pe".to_owned(),
                    op: ConditionOp::NotIn,
                    values: vec!["a".to_owned(), "b".to_owned()],
                },
            ],
            severity: Severity::Major,
        });
        c.state.retention_days = 0;
        c.schedule.interval = Duration::from_millis(500);
        c.schedule.cron = Some("*/5 * *".to_owned());
        c.http.bind = "localhost".to_owned();
        c.invariants.s01.grace_seconds = -1.0;
        c.invariants.e02.window_seconds = 0;
        c.invariants.e02.retention_seconds = -5;
        c.invariants.s03.buffer_seconds = -1;
        c.invariants.s03.tolerance_seconds = f64::NAN;
        let problems = validate(&c);
        let last = c.platform.cascade.len() - 1;
        let expected = [
            "platform.tables.agents.table".to_owned(),
            "platform.tables.executions.status".to_owned(),
            "platform.keys.slots".to_owned(),
            "platform.keys.slot_meta".to_owned(),
            "platform.statuses.terminal".to_owned(),
            "platform.statuses.running".to_owned(),
            "platform.redis_url".to_owned(),
            "platform.redis_connect_timeout".to_owned(),
            format!("platform.cascade[{last}].column"),
            format!("platform.cascade[{last}].filter.column"),
            format!("platform.cascade[{last}].filter"),
            format!("platform.cascade[{last}].where[0].values"),
            format!("platform.cascade[{last}].where[1].values"),
            format!("platform.cascade[{last}].where[2].column"),
            "state.retention_days".to_owned(),
            "schedule.interval".to_owned(),
            "schedule.cron".to_owned(),
            "http.bind".to_owned(),
            "invariants.S-01.grace_seconds".to_owned(),
            "invariants.E-02.window_seconds".to_owned(),
            "invariants.E-02.retention_seconds".to_owned(),
            "invariants.S-03.buffer_seconds".to_owned(),
            "invariants.S-03.tolerance_seconds".to_owned(),
        ];
        let got = paths(&problems);
        for path in &expected {
            assert!(
                got.contains(&path.as_str()),
                "missing {path} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        // The Redis URL's password is never echoed.
        assert!(
            problems.iter().all(|p| !p.message.contains("pw@")),
            "{problems:#?}"
        );
    }

    #[test]
    fn extended_catalog_settings_are_checked() {
        let mut c = base();
        c.platform.tables.schedules.next_run_at = "next run".to_owned();
        c.platform.redis_orphan_recheck_delay = Duration::from_secs(11);
        c.invariants.s04.grace_seconds = f64::INFINITY;
        c.invariants.e03.window_seconds = 0;
        c.invariants.e05.max_age_seconds = -1;
        c.invariants.e06.max_overdue_seconds = -1;
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "platform.tables.schedules.next_run_at",
                "platform.redis_orphan_recheck_delay",
                "invariants.S-04.grace_seconds",
                "invariants.E-03.window_seconds",
                "invariants.E-05.max_age_seconds",
                "invariants.E-06.max_overdue_seconds",
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn overlapping_status_lists_name_the_word() {
        let mut c = base();
        c.platform.statuses.terminal.push("running".to_owned());
        let problems = validate(&c);
        assert_eq!(paths(&problems), ["platform.statuses.terminal"]);
        assert!(problems[0].message.contains("\"running\""), "{problems:?}");
        assert!(
            problems[0].message.contains("platform.statuses.running"),
            "{problems:?}"
        );
    }

    #[test]
    fn cron_with_five_fields_is_accepted() {
        let mut c = base();
        c.schedule.cron = Some("*/5 * * * *".to_owned());
        assert!(validate(&c).is_empty());
    }

    const HOOK: &str = "hooks.slack.com/services/T000/B000/SECRETSECRET";

    #[test]
    fn secret_problems_never_echo_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = base();
        c.alerts.slack.webhook_url = Some(Secret::new(HOOK));
        c.alerts.slack.webhook_url_file = Some(dir.path().join("no-such-hook"));
        c.http.admin_token = Some(Secret::new("  "));
        c.http.admin_token_file = Some(dir.path().to_path_buf());
        let problems = validate(&c);
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            rendered.iter().all(|p| !p.contains("SECRETSECRET")),
            "{rendered:#?}"
        );
        assert_eq!(
            paths(&problems),
            [
                "alerts.slack.webhook_url",
                "alerts.slack.webhook_url_file",
                "alerts.slack.webhook_url",
                "http.admin_token",
                "http.admin_token",
                "http.admin_token_file",
            ],
            "{rendered:#?}"
        );
        assert!(rendered[0].contains("not both"), "{rendered:#?}");
        assert!(rendered[1].contains("no-such-hook"), "{rendered:#?}");
        assert!(rendered[2].contains("https://"), "{rendered:#?}");
        assert!(rendered[5].contains("directory"), "{rendered:#?}");
    }

    /// `config validate` refuses what `run` (`Config::admin_token`, `Config::webhook_url`)
    /// refuses, naming the key the bad value came from.
    #[test]
    fn validation_refuses_the_secrets_run_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, "  \n\t\n").unwrap();
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        for (file, needle) in [
            (&empty, "empty"),
            (&blank, "empty"),
            (&binary, "cannot read"),
        ] {
            let mut c = base();
            c.alerts.slack.webhook_url_file = Some(file.clone());
            c.http.admin_token_file = Some(file.clone());
            assert!(c.webhook_url().is_err() && c.admin_token().is_err());
            let problems = validate(&c);
            assert_eq!(
                paths(&problems),
                ["alerts.slack.webhook_url_file", "http.admin_token_file"],
                "{problems:#?}"
            );
            assert!(
                problems.iter().all(|p| p.message.contains(needle)),
                "{problems:#?}"
            );
        }
        // Run names the file key too.
        let mut c = base();
        c.http.admin_token_file = Some(blank);
        let err = c.admin_token().unwrap_err().to_string();
        assert!(err.starts_with("http.admin_token_file"), "{err}");
    }

    #[test]
    fn admin_token_has_a_minimum_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "SECRETSECRET123\n").unwrap();
        let mut c = base();
        c.http.admin_token = Some(Secret::new("x"));
        let problems = validate(&c);
        assert_eq!(paths(&problems), ["http.admin_token"]);
        assert!(problems[0].message.contains("at least 16 characters"));
        c.http.admin_token = None;
        c.http.admin_token_file = Some(file.clone());
        let problems = validate(&c);
        assert_eq!(paths(&problems), ["http.admin_token_file"]);
        assert!(!problems[0].message.contains("SECRET"), "{problems:?}");
        std::fs::write(&file, "SECRETSECRET1234\n").unwrap();
        assert_eq!(validate(&c), Vec::new());
    }

    #[test]
    fn plain_http_webhook_only_to_loopback() {
        for (url, ok) in [
            ("https://hooks.slack.com/services/T0/B0/SECRETSECRET", true),
            ("HTTPS://hooks.slack.com/services/T0/B0/SECRETSECRET", true),
            ("http://127.0.0.1:8080/services/SECRETSECRET", true),
            ("http://127.8.0.1/SECRETSECRET", true),
            ("http://[::1]:9/SECRETSECRET", true),
            ("http://localhost:9/SECRETSECRET", true),
            ("http://hooks.slack.com/services/T0/B0/SECRETSECRET", false),
            ("http://10.0.0.1/SECRETSECRET", false),
            ("http://localhost.evil.example/SECRETSECRET", false),
            ("http://127.0.0.1.nip.io/SECRETSECRET", false),
            ("ftp://127.0.0.1/SECRETSECRET", false),
        ] {
            let mut c = base();
            c.alerts.slack.webhook_url = Some(Secret::new(url));
            let problems = validate(&c);
            if ok {
                assert_eq!(problems, Vec::new(), "{url}");
            } else {
                assert_eq!(paths(&problems), ["alerts.slack.webhook_url"], "{url}");
                assert!(problems[0].message.contains("https://"), "{url}");
                assert!(!problems[0].message.contains("SECRET"), "{problems:?}");
            }
        }
    }

    #[test]
    fn footgun_values_are_refused_with_their_range() {
        let mut c = base();
        c.alerts.renotify_after = Some(Duration::ZERO);
        c.alerts.fire_after = 0;
        c.alerts.retry_initial = Duration::from_secs(11 * 60);
        c.http.request_timeout = Duration::ZERO;
        c.http.body_limit_bytes = 0;
        c.schedule.interval = Duration::from_secs(10);
        c.schedule.jitter = Duration::from_secs(11);
        let problems = validate(&c);
        assert_eq!(
            paths(&problems),
            [
                "schedule.jitter",
                "alerts.fire_after",
                "alerts.renotify_after",
                "alerts.retry_initial",
                "http.request_timeout",
                "http.body_limit_bytes",
            ],
            "{problems:#?}"
        );
        for (problem, range) in problems.iter().zip([
            "at most schedule.interval (10s",
            "at least 1",
            "at least 1m",
            "at most alerts.retry_max (10m",
            "at least 1s",
            "at least 1024",
        ]) {
            assert!(problem.message.contains(range), "{problem}");
        }
        // The bounds themselves are accepted; jitter is not compared with a cron schedule.
        c.alerts.renotify_after = Some(MIN_RENOTIFY_AFTER);
        c.alerts.fire_after = 1;
        c.alerts.retry_initial = c.alerts.retry_max;
        c.http.request_timeout = MIN_REQUEST_TIMEOUT;
        c.http.body_limit_bytes = MIN_BODY_LIMIT_BYTES;
        c.schedule.jitter = c.schedule.interval;
        assert_eq!(validate(&c), Vec::new());
        c.schedule.jitter = Duration::from_secs(3600);
        c.schedule.cron = Some("*/5 * * * *".to_owned());
        assert_eq!(validate(&c), Vec::new());
    }

    #[test]
    fn existing_secret_files_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "https://hooks.example/x\n").unwrap();
        let mut c = base();
        c.alerts.slack.webhook_url_file = Some(hook.clone());
        c.http.admin_token_file = Some(hook);
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
    }

    #[test]
    fn bad_log_level_is_reported() {
        let mut c = base();
        c.log.level = "canary=loudest".to_owned();
        assert_eq!(paths(&validate(&c)), ["log.level"]);
        c.log.level = String::new();
        assert_eq!(paths(&validate(&c)), ["log.level"]);
    }

    #[test]
    fn custom_invariant_entries_are_validated() {
        let mut config = base();
        assert!(validate(&config).is_empty());
        config
            .custom_invariants
            .push(crate::config::CustomInvariant {
                id: "S-01".to_owned(),
                name: "shadow".to_owned(),
                tier: canary_invariants::Tier::A,
                severity: canary_invariants::Severity::Major,
                runbook: String::new(),
                sql: "SELECT 1".to_owned(),
                enabled: true,
                row_limit: None,
                timeout: None,
            });
        let problems = validate(&config);
        assert_eq!(paths(&problems), ["custom_invariants[0].id"]);
        assert!(problems[0].message.contains("built-in"), "{problems:?}");
    }

    #[test]
    fn an_unparseable_five_field_cron_is_refused_by_validation() {
        let mut c = base();
        c.schedule.cron = Some("61 * * * *".to_owned());
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "schedule.cron");
        assert!(
            problems[0].message.contains("61 * * * *"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn blind_after_must_be_at_least_one() {
        let mut c = base();
        c.alerts.blind_after = 0;
        let problems = validate(&c);
        assert!(
            problems.iter().any(|p| p
                .to_string()
                .starts_with("alerts.blind_after: must be at least 1")),
            "{problems:?}"
        );
        c.alerts.blind_after = 1;
        assert!(validate(&c).is_empty());
    }

    #[test]
    fn s07_max_age_must_be_positive() {
        let mut c = base();
        c.invariants.s07.max_age_seconds = 0.0;
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "invariants.S-07.max_age_seconds");
    }

    #[test]
    fn lifecycle_thresholds_are_checked() {
        let mut c = base();
        c.invariants.e01.buffer_seconds = -1;
        c.invariants.e01.lease_grace_seconds = -1;
        c.invariants.b05.max_age_seconds = 0;
        c.invariants.g03.tolerance_seconds = f64::NAN;
        let paths: Vec<String> = validate(&c).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "invariants.E-01.buffer_seconds",
                "invariants.E-01.lease_grace_seconds",
                "invariants.B-05.max_age_seconds",
                "invariants.G-03.tolerance_seconds",
            ]
        );
    }
}
