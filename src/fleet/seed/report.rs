//! What [`super::seed`] wrote and how long it took, and its human summary. No store access.

use std::time::Duration;

/// What `seed` wrote and how long it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeedReport {
    /// Roster rows.
    pub agents: usize,
    /// Of which soft-deleted.
    pub deleted_agents: usize,
    /// Execution rows in total.
    pub rows: usize,
    /// `running` rows holding a slot (= slot-set members).
    pub running: usize,
    /// `running` rows claimed by a pull worker (leased, never in the slot set).
    pub leased: usize,
    /// `queued` rows (only on agents whose slots are full).
    pub queued: usize,
    /// `pending_retry` rows.
    pub pending_retry: usize,
    /// Terminal rows, and how many of them completed recently.
    pub terminal: usize,
    /// Terminal rows completed within the last 15 minutes.
    pub recent_terminal: usize,
    /// Slot-set members written to Redis.
    pub slots: usize,
    /// Redis commands sent.
    pub redis_commands: usize,
    /// Redis pipelines sent (on a cluster, one per owning node per batch).
    pub redis_round_trips: usize,
    /// Rows written to the cascade tables.
    pub cascade_rows: usize,
    /// The SQL half's engine (`SQLite`, `PostgreSQL`).
    pub database: &'static str,
    /// Wall time of the SQL half (either engine; the name predates PostgreSQL).
    pub sqlite_elapsed: Duration,
    /// Wall time of the Redis half.
    pub redis_elapsed: Duration,
    /// Total wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "seeded in {:.2} s ({} {:.2} s, Redis {:.2} s, concurrently)",
            secs,
            if self.database.is_empty() {
                "SQL"
            } else {
                self.database
            },
            self.sqlite_elapsed.as_secs_f64(),
            self.redis_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  agents:        {} ({} soft-deleted)",
            self.agents, self.deleted_agents
        )?;
        writeln!(
            f,
            "  executions:    {} ({:.0} rows/s): {} running, {} leased, {} queued, {} pending_retry, \
             {} terminal ({} completed in the last 15 min)",
            self.rows,
            self.rows as f64 / secs,
            self.running,
            self.leased,
            self.queued,
            self.pending_retry,
            self.terminal,
            self.recent_terminal
        )?;
        writeln!(
            f,
            "  slots:         {} ({} Redis commands in {} pipelines)",
            self.slots, self.redis_commands, self.redis_round_trips
        )?;
        write!(f, "  cascade rows:  {}", self.cascade_rows)?;
        Ok(())
    }
}
