//! A synthetic platform's stores, written the way the reference platform writes them: an
//! execution starts with a `running` row, then a slot (ZADD) and its metadata hash with an expiry
//! of `timeout + 300` s; it finishes with a terminal row, then ZREM and DEL. Used by `canary demo`
//! and the integration tests to build healthy fleets and to break exactly one step (a fault).
//!
//! This is the only code in canary that writes to a platform's stores, and it only ever targets
//! stores it created itself (a temp database and a private `redis-server`).

use std::path::Path;

use redis::AsyncCommands;
use rusqlite::Connection;

use crate::config::platform::RedisKeys;
use crate::fleet::platform_db::{PlatformDb, PlatformTarget, params};

/// The platform schema (every table and column canary reads), as in the test fixture.
pub const SCHEMA: &str = include_str!("../../tests/fixtures/platform.sql");

/// The fleet's Redis connection: one node through a `ConnectionManager`, which reconnects by
/// itself after the server restarts (a command in flight during the outage fails and is counted
/// as a write error; the next ones go through), so a long `canary fleet` run outlives a Redis
/// restart and can still revert its faults on Ctrl-C; or a Redis Cluster (`redis_conn`).
pub use crate::fleet::redis_conn::{RedisConn, RedisTarget};

/// Opens a [`RedisConn`] on `target` (a URL, or a [`RedisTarget::Cluster`]): a few quick
/// reconnection attempts, then each command fails fast while the server is away instead of
/// hanging the simulator.
pub async fn connect_redis(target: impl Into<RedisTarget>) -> Result<RedisConn, FleetError> {
    crate::fleet::redis_conn::connect(target).await
}

/// Slot TTL buffer the platform adds to an execution's timeout.
pub const SLOT_TTL_BUFFER_SECONDS: i64 = 300;

/// Errors while writing the synthetic platform.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// SQLite failed.
    #[error("platform database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL failed: the client's error with its causes, flattened (the client's own
    /// message is a bare "db error"; the server's words are in its source). Neither ever
    /// carries the connection URL.
    #[error("platform database (postgres): {0}")]
    Postgres(String),
    /// Redis failed.
    #[error("platform redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The simulator or a fault could not run (thread, runtime, or a precondition).
    #[error("fleet: {0}")]
    Setup(String),
}

impl From<postgres::Error> for FleetError {
    fn from(e: postgres::Error) -> FleetError {
        if let Some(db) = e.as_db_error() {
            return FleetError::Postgres(db.to_string());
        }
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        FleetError::Postgres(text)
    }
}

/// Writable handles on a synthetic platform.
pub struct Platform {
    db: PlatformDb,
    redis: RedisConn,
    keys: RedisKeys,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").finish_non_exhaustive()
    }
}

/// Creates a platform database with the full schema.
pub fn create_db(path: &Path) -> Result<(), FleetError> {
    let db = Connection::open(path)?;
    db.execute_batch(SCHEMA)?;
    Ok(())
}

/// ISO-8601 with `Z` and microseconds, the platform's usual shape.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// SQLite's `datetime('now')` shape, which the platform also writes.
pub fn sqlite_datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The Redis half of the platform's claim, atomic: ZADD the slot (score = unix seconds), HSET its
/// `timeout_seconds`, EXPIRE it after `timeout + 300`.
pub async fn acquire(
    redis: &mut RedisConn,
    slots_key: &str,
    meta_key: &str,
    id: &str,
    timeout_seconds: i64,
    at_ms: i64,
) -> Result<(), FleetError> {
    acquire_with_ttl(
        redis,
        slots_key,
        meta_key,
        id,
        timeout_seconds,
        at_ms,
        timeout_seconds + SLOT_TTL_BUFFER_SECONDS,
    )
    .await
}

/// [`acquire`] with the metadata's TTL given (a fault writes a short one). One `MULTI`/`EXEC`
/// on one node. On a cluster the slot set and the metadata hash usually live in different
/// slots, which no transaction can span (`CROSSSLOT`), so it is what a platform on a cluster
/// does: ZADD, then HSET + EXPIRE as one transaction on the hash's node (S-04's grace covers
/// the gap between the two, as it covers the platform's own).
pub async fn acquire_with_ttl(
    redis: &mut RedisConn,
    slots_key: &str,
    meta_key: &str,
    id: &str,
    timeout_seconds: i64,
    at_ms: i64,
    ttl_seconds: i64,
) -> Result<(), FleetError> {
    let score = at_ms as f64 / 1000.0;
    if redis.is_cluster() {
        let _: i64 = redis.zadd(slots_key, id, score).await?;
        redis::pipe()
            .atomic()
            .hset(meta_key, "timeout_seconds", timeout_seconds)
            .ignore()
            .expire(meta_key, ttl_seconds)
            .ignore()
            .query_async::<()>(redis)
            .await?;
        return Ok(());
    }
    redis::pipe()
        .atomic()
        .zadd(slots_key, id, score)
        .ignore()
        .hset(meta_key, "timeout_seconds", timeout_seconds)
        .ignore()
        .expire(meta_key, ttl_seconds)
        .ignore()
        .query_async::<()>(redis)
        .await?;
    Ok(())
}

/// The Redis half of the platform's finish, atomic: ZREM + DEL (on a cluster ZREM, then DEL:
/// two slots, see [`acquire_with_ttl`]).
pub async fn release(
    redis: &mut RedisConn,
    slots_key: &str,
    meta_key: &str,
    id: &str,
) -> Result<(), FleetError> {
    if redis.is_cluster() {
        let _: i64 = redis.zrem(slots_key, id).await?;
        let _: i64 = redis.del(meta_key).await?;
        return Ok(());
    }
    redis::pipe()
        .atomic()
        .zrem(slots_key, id)
        .ignore()
        .del(meta_key)
        .ignore()
        .query_async::<()>(redis)
        .await?;
    Ok(())
}

impl Platform {
    /// Opens a platform database (a SQLite path, or a [`PlatformTarget`]) created with
    /// [`create_db`] or `--init`, and its Redis (a URL, or a [`RedisTarget::Cluster`]).
    pub async fn connect(
        target: impl Into<PlatformTarget>,
        redis: impl Into<RedisTarget>,
    ) -> Result<Platform, FleetError> {
        let db = PlatformDb::open(&target.into(), false)?;
        let redis = connect_redis(redis).await?;
        Ok(Platform {
            db,
            redis,
            keys: RedisKeys::default(),
        })
    }

    /// The platform database.
    pub fn db(&self) -> &PlatformDb {
        &self.db
    }

    /// The SQLite connection, for test-specific edits (`None` on PostgreSQL).
    pub fn sqlite(&self) -> Option<&Connection> {
        self.db.sqlite()
    }

    /// The Redis connection, for test-specific edits.
    pub fn redis(&mut self) -> &mut RedisConn {
        &mut self.redis
    }

    /// `agent:slots:{agent}`.
    pub fn slots_key(&self, agent: &str) -> String {
        self.keys.slots.replace("{agent}", agent)
    }

    /// `agent:slot:{agent}:{execution_id}`.
    pub fn meta_key(&self, agent: &str, id: &str) -> String {
        self.keys
            .slot_meta
            .replace("{agent}", agent)
            .replace("{execution_id}", id)
    }

    /// Adds a live agent.
    pub fn add_agent(&self, name: &str, cap: i64, timeout_seconds: i64) -> Result<(), FleetError> {
        self.db.execute(
            "INSERT INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds) VALUES (?1, ?2, ?3, ?4)",
            params![name, false, cap, timeout_seconds],
        )?;
        Ok(())
    }

    /// Soft-deletes an agent (its child rows legitimately remain).
    pub fn soft_delete_agent(&self, name: &str, at_ms: i64) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE agent_ownership SET deleted_at = ?2 WHERE agent_name = ?1",
            params![name, iso(at_ms)],
        )?;
        Ok(())
    }

    /// Hard-deletes the roster row only (the L-03 fault: the cascade step is skipped).
    pub fn delete_roster_row(&self, name: &str) -> Result<(), FleetError> {
        self.db.execute(
            "DELETE FROM agent_ownership WHERE agent_name = ?1",
            params![name],
        )?;
        Ok(())
    }

    /// Tags an agent (an agent-keyed row).
    pub fn add_tag(&self, agent: &str, tag: &str) -> Result<(), FleetError> {
        self.db.execute(
            "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, ?2)",
            params![agent, tag],
        )?;
        Ok(())
    }

    /// Starts an execution: `running` row (with the agent session's id, as the platform records
    /// at dispatch), then slot and metadata with `timeout + 300` s TTL.
    pub async fn start(
        &mut self,
        agent: &str,
        id: &str,
        timeout_seconds: i64,
        at_ms: i64,
    ) -> Result<(), FleetError> {
        self.db.execute(
            "INSERT INTO schedule_executions (id, agent_name, schedule_id, status, queued_at, \
             started_at, claude_session_id) VALUES (?1, ?2, 'sched-1', 'running', ?3, ?3, \
             'session-' || ?1)",
            params![id, agent, iso(at_ms)],
        )?;
        self.acquire_slot(agent, id, timeout_seconds, at_ms).await
    }

    /// The Redis half of a start: ZADD the slot and write its metadata with the platform's TTL.
    pub async fn acquire_slot(
        &mut self,
        agent: &str,
        id: &str,
        timeout_seconds: i64,
        at_ms: i64,
    ) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        acquire(&mut self.redis, &slots, &meta, id, timeout_seconds, at_ms).await
    }

    /// Finishes an execution: terminal row, then ZREM and DEL.
    pub async fn finish(
        &mut self,
        agent: &str,
        id: &str,
        status: &str,
        at_ms: i64,
    ) -> Result<(), FleetError> {
        self.finish_row(id, status, at_ms)?;
        self.release_slot(agent, id).await
    }

    /// The SQL half of a finish (the S-01 leak fault stops here).
    pub fn finish_row(&self, id: &str, status: &str, at_ms: i64) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE schedule_executions SET status = ?2, completed_at = ?3 WHERE id = ?1",
            params![id, status, sqlite_datetime(at_ms)],
        )?;
        Ok(())
    }

    /// The Redis half of a finish.
    pub async fn release_slot(&mut self, agent: &str, id: &str) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        release(&mut self.redis, &slots, &meta, id).await
    }

    /// Inserts an already finished execution.
    pub fn add_finished(
        &self,
        agent: &str,
        id: &str,
        status: &str,
        completed_at_ms: i64,
    ) -> Result<(), FleetError> {
        self.db.execute(
            "INSERT INTO schedule_executions (id, agent_name, schedule_id, status, queued_at, \
             started_at, completed_at, duration_ms) VALUES (?1, ?2, 'sched-1', ?3, ?4, ?4, ?5, 60000)",
            params![id, agent, status, iso(completed_at_ms - 60_000), sqlite_datetime(completed_at_ms)],
        )?;
        Ok(())
    }

    /// Overwrites an execution's status (the E-02 fault: a stale writer).
    pub fn set_status(&self, id: &str, status: &str) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE schedule_executions SET status = ?2 WHERE id = ?1",
            params![id, status],
        )?;
        Ok(())
    }

    /// Overwrites a row's `completed_at` with an already formatted timestamp.
    pub fn set_completed_at(&self, id: &str, completed_at: &str) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE schedule_executions SET completed_at = ?2 WHERE id = ?1",
            params![id, completed_at],
        )?;
        Ok(())
    }

    /// Re-applies an expiry to a slot's metadata (the S-03 fault uses a short one).
    pub async fn expire_meta(
        &mut self,
        agent: &str,
        id: &str,
        seconds: i64,
    ) -> Result<(), FleetError> {
        let meta = self.meta_key(agent, id);
        let _: bool = self.redis.expire(&meta, seconds).await?;
        Ok(())
    }

    /// Places a drain sentinel.
    pub async fn add_sentinel(
        &mut self,
        agent: &str,
        name: &str,
        at_ms: i64,
    ) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let _: i64 = self.redis.zadd(&slots, name, at_ms as f64 / 1000.0).await?;
        Ok(())
    }
}
