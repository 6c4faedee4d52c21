//! A temp platform SQLite database built from `tests/fixtures/platform.sql`, with helpers that
//! insert rows the way the platform writes them (text timestamps in several shapes).
//!
//! Every helper opens its own short-lived writable connection, so no handle of the test's is
//! open while canary reads (the platform's own writers are simulated explicitly when a test
//! needs one).

use std::path::{Path, PathBuf};

use canary::config::PlatformConfig;
use chrono::DateTime;
use rusqlite::{Connection, params};

/// The platform schema.
pub const SCHEMA: &str = include_str!("../fixtures/platform.sql");

/// A platform database in its own temp directory (removed on drop).
#[derive(Debug)]
pub struct PlatformDb {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl PlatformDb {
    /// A fresh database with the full fixture schema.
    pub fn create() -> PlatformDb {
        let dir = tempfile::Builder::new()
            .prefix("canary-platform-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("platform.db");
        let db = PlatformDb { dir, path };
        db.exec(SCHEMA);
        db
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the file (and any journal files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A read-write connection, as the platform itself has.
    pub fn writer(&self) -> Connection {
        Connection::open(&self.path).expect("open platform db for writing")
    }

    /// Runs SQL (several statements allowed) through a fresh writer.
    pub fn exec(&self, sql: &str) {
        self.writer().execute_batch(sql).expect("platform db exec");
    }

    /// Inserts roster rows.
    pub fn add_agents(&self, agents: &[AgentRow]) {
        let mut conn = self.writer();
        let tx = conn.transaction().expect("begin");
        for a in agents {
            tx.execute(
                "INSERT INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
                 execution_timeout_seconds, deleted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    a.name,
                    i64::from(a.is_system),
                    a.cap,
                    a.timeout,
                    a.deleted_at
                ],
            )
            .expect("insert agent");
        }
        tx.commit().expect("commit");
    }

    /// Inserts execution rows.
    pub fn add_executions(&self, rows: &[ExecRow]) {
        let mut conn = self.writer();
        let tx = conn.transaction().expect("begin");
        for r in rows {
            tx.execute(
                "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
                 started_at, completed_at, lease_expires_at, claude_session_id, backlog_metadata) \
                 VALUES (?1, 'sched-1', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.id,
                    r.agent,
                    r.status,
                    r.queued_at,
                    r.started_at,
                    r.completed_at,
                    r.lease_expires_at,
                    r.session_id,
                    r.backlog_metadata
                ],
            )
            .expect("insert execution");
        }
        tx.commit().expect("commit");
    }

    /// Inserts `count` rows into an agent-keyed table; `extra` sets one more column
    /// (e.g. `("status", "active")`).
    pub fn add_keyed_rows(
        &self,
        table: &str,
        agent: Option<&str>,
        extra: Option<(&str, &str)>,
        count: usize,
    ) {
        let conn = self.writer();
        let sql = match extra {
            Some((column, _)) => {
                format!("INSERT INTO {table} (agent_name, {column}) VALUES (?1, ?2)")
            }
            None => format!("INSERT INTO {table} (agent_name) VALUES (?1)"),
        };
        for _ in 0..count {
            match extra {
                Some((_, value)) => conn.execute(&sql, params![agent, value]),
                None => conn.execute(&sql, params![agent]),
            }
            .expect("insert keyed row");
        }
    }

    /// A platform config pointing at this database and `redis_url`.
    pub fn config(&self, redis_url: &str) -> PlatformConfig {
        PlatformConfig {
            sqlite_path: self.path.clone(),
            redis_url: redis_url.to_owned(),
            ..PlatformConfig::default()
        }
    }
}

/// One `agent_ownership` row.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub name: String,
    pub is_system: bool,
    pub cap: Option<i64>,
    pub timeout: Option<i64>,
    pub deleted_at: Option<String>,
}

impl AgentRow {
    /// A live, non-system agent with NULL caps (platform defaults apply).
    pub fn new(name: &str) -> AgentRow {
        AgentRow {
            name: name.to_owned(),
            is_system: false,
            cap: None,
            timeout: None,
            deleted_at: None,
        }
    }

    /// With `max_parallel_tasks` and `execution_timeout_seconds`.
    pub fn caps(mut self, cap: i64, timeout: i64) -> AgentRow {
        self.cap = Some(cap);
        self.timeout = Some(timeout);
        self
    }

    /// A system agent.
    pub fn system(mut self) -> AgentRow {
        self.is_system = true;
        self
    }

    /// Soft-deleted at this timestamp text.
    pub fn deleted(mut self, at: &str) -> AgentRow {
        self.deleted_at = Some(at.to_owned());
        self
    }
}

/// One `schedule_executions` row; timestamps are stored exactly as given.
#[derive(Debug, Clone, Default)]
pub struct ExecRow {
    pub id: String,
    pub agent: String,
    pub status: String,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub lease_expires_at: Option<String>,
    pub session_id: Option<String>,
    pub backlog_metadata: Option<String>,
}

impl ExecRow {
    /// A row with no timestamps.
    pub fn new(id: &str, agent: &str, status: &str) -> ExecRow {
        ExecRow {
            id: id.to_owned(),
            agent: agent.to_owned(),
            status: status.to_owned(),
            ..ExecRow::default()
        }
    }

    pub fn queued_at(mut self, t: &str) -> ExecRow {
        self.queued_at = Some(t.to_owned());
        self
    }

    pub fn started_at(mut self, t: &str) -> ExecRow {
        self.started_at = Some(t.to_owned());
        self
    }

    pub fn completed_at(mut self, t: &str) -> ExecRow {
        self.completed_at = Some(t.to_owned());
        self
    }

    pub fn leased_until(mut self, t: &str) -> ExecRow {
        self.lease_expires_at = Some(t.to_owned());
        self
    }

    pub fn session(mut self, id: &str) -> ExecRow {
        self.session_id = Some(id.to_owned());
        self
    }

    pub fn metadata(mut self, text: &str) -> ExecRow {
        self.backlog_metadata = Some(text.to_owned());
        self
    }
}

/// ISO-8601 with microseconds and `Z`, as the platform's Python writes it.
pub fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("valid ms")
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// SQLite's `datetime('now')` shape (UTC, second precision).
pub fn sqlite_datetime(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("valid ms")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
