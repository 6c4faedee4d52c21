//! [`CycleRunner`]: the single-flight entry point every trigger goes through (the schedule loop,
//! `POST /api/canary/run-cycle`). Within the process a `try_lock` on the state database handle
//! makes a concurrent trigger fail fast with [`CycleError::InProgress`] instead of queueing;
//! across processes the lease row in the state DB (taken by `cycle::run_cycle`) does the same.
//!
//! Everything that is not a cycle (API reads, probes, `/metrics`, retention) goes through
//! [`CycleRunner::with_db`]. Given a second connection ([`CycleRunner::with_side_connection`]),
//! that work never waits for a running cycle: WAL lets it read while the cycle writes, and only
//! a write of its own (a readiness write probe, a prune batch) queues briefly behind the cycle's
//! one short write transaction.
//!
//! Both connections are [`SharedDb`]s, so no state-DB call made here blocks a tokio worker. The
//! single flight is a separate async gate held for the whole cycle (the connection itself is
//! only locked for each blocking call).

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::cycle::{self, CycleError, CycleRequest, CycleResult};
use crate::store::{SharedDb, StateDb, StoreError};

/// Shared handle that runs at most one cycle at a time.
#[derive(Debug, Clone)]
pub struct CycleRunner {
    config: Arc<Config>,
    db: SharedDb,
    /// Held for the whole of a cycle (and of non-cycle work on the cycle's connection).
    gate: Arc<Mutex<()>>,
    /// Second connection for non-cycle work; `None` = share the cycle's (and wait for it).
    side: Option<SharedDb>,
}

impl CycleRunner {
    /// Wraps an open state database.
    pub fn new(config: Arc<Config>, db: StateDb) -> CycleRunner {
        CycleRunner {
            config,
            db: SharedDb::new(db),
            gate: Arc::new(Mutex::new(())),
            side: None,
        }
    }

    /// Uses `side` (another connection to the same state DB) for [`CycleRunner::with_db`], so
    /// API reads, probes and retention never wait behind a running cycle.
    pub fn with_side_connection(mut self, side: StateDb) -> CycleRunner {
        self.side = Some(SharedDb::new(side));
        self
    }

    /// The configuration cycles run with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one cycle now, or fails at once with [`CycleError::InProgress`] if one is running
    /// (here or, through the lease, in another process).
    pub async fn run(&self, request: &CycleRequest) -> Result<CycleResult, CycleError> {
        if let Some(ids) = &request.only {
            cycle::validate_ids(&self.config, ids)?;
        }
        let _flight = self
            .gate
            .try_lock()
            .map_err(|_| CycleError::InProgress(None))?;
        cycle::run_cycle(&self.config, &self.db, request).await
    }

    /// Runs `f` with the state database on the blocking pool: on the side connection when there
    /// is one, otherwise on the cycle's connection once no cycle holds it. For short work
    /// (history queries, readiness, one prune batch); never hold it across slow work.
    pub async fn with_db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut StateDb) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.side {
            Some(side) => side.call(f).await,
            None => {
                let _flight = self.gate.lock().await;
                self.db.call(f).await
            }
        }
    }

    /// Like [`CycleRunner::with_db`], but gives up (`None`) when the connection is not free
    /// within `wait` because a cycle holds it. Only that wait is bounded: once `f` runs it runs
    /// to the end (its own SQLite busy timeout bounds it), so its answer — e.g. "not writable"
    /// from a readiness probe — is never replaced by "busy".
    pub async fn with_db_within<T, F>(
        &self,
        wait: std::time::Duration,
        f: F,
    ) -> Option<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut StateDb) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.side {
            Some(side) => Some(side.call(f).await),
            None => {
                let _flight = tokio::time::timeout(wait, self.gate.lock()).await.ok()?;
                Some(self.db.call(f).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cycle::Trigger;

    fn runner() -> CycleRunner {
        CycleRunner::new(
            Arc::new(Config::default()),
            StateDb::open_in_memory().unwrap(),
        )
    }

    #[tokio::test]
    async fn a_running_cycle_turns_away_another_and_holds_the_shared_connection() {
        let runner = runner();
        // Stand-in for a cycle in flight: the gate a running cycle holds.
        let flight = runner.gate.try_lock().unwrap();
        let request = CycleRequest {
            trigger: Trigger::Manual,
            only: None,
        };
        assert!(matches!(
            runner.run(&request).await,
            Err(CycleError::InProgress(None))
        ));
        let busy = runner
            .with_db_within(Duration::from_millis(20), |db| db.last_cycle())
            .await;
        assert!(
            busy.is_none(),
            "the probe should give up while the cycle runs"
        );
        drop(flight);
        let free = runner
            .with_db_within(Duration::from_millis(20), |db| db.last_cycle())
            .await;
        assert!(free.unwrap().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_side_connection_never_waits_for_the_cycle() {
        let runner = runner().with_side_connection(StateDb::open_in_memory().unwrap());
        let _flight = runner.gate.try_lock().unwrap();
        let read = runner.with_db(|db| db.last_cycle()).await;
        assert!(read.unwrap().is_none());
    }
}
