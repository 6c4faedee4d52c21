//! [`CycleRunner`]: the single-flight entry point every trigger goes through (the schedule loop,
//! `POST /api/canary/run-cycle`). Within the process a `try_lock` on the state database handle
//! makes a concurrent trigger fail fast with [`CycleError::InProgress`] instead of queueing;
//! across processes the lease row in the state DB (taken by `cycle::run_cycle`) does the same.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::schedule::cycle::{self, CycleError, CycleRequest, CycleResult};
use crate::store::StateDb;

/// Shared handle that runs at most one cycle at a time.
#[derive(Debug, Clone)]
pub struct CycleRunner {
    config: Arc<Config>,
    db: Arc<Mutex<StateDb>>,
}

impl CycleRunner {
    /// Wraps an open state database.
    pub fn new(config: Arc<Config>, db: StateDb) -> CycleRunner {
        CycleRunner {
            config,
            db: Arc::new(Mutex::new(db)),
        }
    }

    /// The configuration cycles run with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one cycle now, or fails at once with [`CycleError::InProgress`] if one is running
    /// (here or, through the lease, in another process).
    pub async fn run(&self, request: &CycleRequest) -> Result<CycleResult, CycleError> {
        if let Some(ids) = &request.only {
            cycle::validate_ids(ids)?;
        }
        let mut db = self.db.try_lock().map_err(|_| CycleError::InProgress)?;
        cycle::run_cycle(&self.config, &mut db, request).await
    }

    /// Runs `f` with the state database when no cycle holds it, waiting for one that does.
    /// For short reads (history queries, readiness); never hold it across slow work.
    pub async fn with_db<T>(&self, f: impl FnOnce(&mut StateDb) -> T) -> T {
        let mut db = self.db.lock().await;
        f(&mut db)
    }
}
