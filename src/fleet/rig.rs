//! A self-contained synthetic platform: a temp directory holding a platform database created from
//! the schema, a private `redis-server`, the simulated fleet running on it, and a fault injector
//! with every requested site provisioned. Shared by `canary demo` and the end-to-end tests, so
//! both watch exactly the same platform.

use std::path::{Path, PathBuf};

use crate::config::PlatformConfig;
use crate::fleet::faults::{Injector, Recipe};
use crate::fleet::platform::FleetError;
use crate::fleet::redis_server::RedisServer;
use crate::fleet::sim::{self, Fleet, FleetSpec, FleetStatsSnapshot};

/// A running synthetic platform. Dropping it stops the fleet's thread and kills the server.
#[derive(Debug)]
pub struct Rig {
    dir: tempfile::TempDir,
    redis: RedisServer,
    sqlite_path: PathBuf,
    fleet: Option<Fleet>,
    /// Injects and reverts fault recipes on this platform.
    pub injector: Injector,
}

impl Rig {
    /// Creates the platform, provisions the fleet and the sites of `recipes`, starts the fleet.
    pub async fn start(
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        let dir = tempfile::Builder::new()
            .prefix("canary-fleet-")
            .tempdir()
            .map_err(|e| FleetError::Setup(format!("temp directory: {e}")))?;
        let redis = RedisServer::start().map_err(|e| FleetError::Setup(e.to_string()))?;
        let sqlite_path = dir.path().join("platform.db");
        let plans = sim::plan(spec);
        {
            let mut db = sim::open_db(&sqlite_path, true)?;
            sim::provision(&mut db, spec, &plans, crate::clock::now_ms())?;
        }
        let fleet = Fleet::start(&sqlite_path, &redis.url(), spec, plans).await?;
        let injector = Injector::connect(
            &sqlite_path,
            &redis.url(),
            &spec.prefix,
            Some(fleet.control()),
        )
        .await?;
        injector.provision(recipes)?;
        Ok(Rig {
            dir,
            redis,
            sqlite_path,
            fleet: Some(fleet),
            injector,
        })
    }

    /// The temp directory (platform database; put canary's state database here too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The platform database.
    pub fn sqlite_path(&self) -> &Path {
        &self.sqlite_path
    }

    /// The private Redis.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// A platform configuration pointing canary at this platform (default names).
    pub fn platform_config(&self) -> PlatformConfig {
        PlatformConfig {
            sqlite_path: self.sqlite_path.clone(),
            redis_url: self.redis.url(),
            ..PlatformConfig::default()
        }
    }

    /// The fleet's counters so far.
    pub fn stats(&self) -> FleetStatsSnapshot {
        self.fleet.as_ref().map(Fleet::stats).unwrap_or_default()
    }

    /// Reverts every injected fault and stops the fleet (everything in flight finishes).
    /// Returns the fleet's final counters.
    pub async fn stop(&mut self) -> Result<FleetStatsSnapshot, FleetError> {
        self.injector.revert_all().await?;
        match self.fleet.take() {
            Some(fleet) => fleet.stop().await,
            None => Ok(FleetStatsSnapshot::default()),
        }
    }

    /// Keeps the temp directory on disk (for `--keep`); returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}
