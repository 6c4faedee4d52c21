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

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::cycle::{self, CycleError, CycleRequest, CycleResult};
use crate::store::StateDb;

/// Shared handle that runs at most one cycle at a time.
#[derive(Debug, Clone)]
pub struct CycleRunner {
    config: Arc<Config>,
    db: Arc<Mutex<StateDb>>,
    /// Second connection for non-cycle work; `None` = share the cycle's (and wait for it).
    side: Option<Arc<Mutex<StateDb>>>,
}

impl CycleRunner {
    /// Wraps an open state database.
    pub fn new(config: Arc<Config>, db: StateDb) -> CycleRunner {
        CycleRunner {
            config,
            db: Arc::new(Mutex::new(db)),
            side: None,
        }
    }

    /// Uses `side` (another connection to the same state DB) for [`CycleRunner::with_db`], so
    /// API reads, probes and retention never wait behind a running cycle.
    pub fn with_side_connection(mut self, side: StateDb) -> CycleRunner {
        self.side = Some(Arc::new(Mutex::new(side)));
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
        let mut db = self.db.try_lock().map_err(|_| CycleError::InProgress)?;
        cycle::run_cycle(&self.config, &mut db, request).await
    }

    /// Runs `f` with the state database: on the side connection when there is one, otherwise
    /// on the cycle's connection once no cycle holds it. For short work (history queries,
    /// readiness, one prune batch); never hold it across slow work.
    pub async fn with_db<T>(&self, f: impl FnOnce(&mut StateDb) -> T) -> T {
        let mut db = self.side.as_ref().unwrap_or(&self.db).lock().await;
        f(&mut db)
    }
}
