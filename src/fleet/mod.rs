//! The synthetic platform: schema, a simulator that runs a fleet by the platform's protocol
//! (`sim`), fault recipes that break one step each (`faults`: one file per recipe, one registry
//! that the demo, `canary fleet --faults` and the tests iterate), bulk seeding for benches
//! (`seed`), the fleet's Redis connection to one node or a cluster (`redis_conn`), the one database writer for SQLite and PostgreSQL platforms (`platform_db`), a
//! private redis-server and PostgreSQL server, a private Docker Engine (`docker_engine`: the
//! agent containers of `canary demo --docker` and the Docker tests), and the continuous demo.

pub mod demo;
pub mod docker_engine;
pub mod drive;
pub mod faults;
pub mod platform;
pub mod platform_db;
pub mod postgres_server;
pub mod redis_conn;
pub mod redis_server;
pub mod rig;
pub mod seed;
pub mod sim;

use crate::fleet::platform::FleetError;

/// Why `canary demo` or `canary fleet` could not run (what they find is their exit code).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--faults` named something that is not a recipe.
    #[error("{0}")]
    Faults(String),
    /// A step of driving the synthetic platform failed.
    #[error("{step}: {source}")]
    Fleet {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: FleetError,
    },
    /// The configuration (the demo reads its `alerts` section) could not be loaded.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// canary's own state database could not be opened.
    #[error("opening the state database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The Docker engine of `canary demo --docker` could not start or be prepared.
    #[error("docker engine: {0}")]
    Docker(#[from] crate::fleet::docker_engine::DockerEngineError),
    /// The alert deliverer could not start.
    #[error("starting the alert deliverer: {0}")]
    Deliver(#[from] crate::alert::deliver::DeliverError),
}

impl RunError {
    /// A [`RunError::Fleet`] for `step`, for `map_err`.
    pub(crate) fn at(step: &'static str) -> impl FnOnce(FleetError) -> RunError {
        move |source| RunError::Fleet { step, source }
    }
}
