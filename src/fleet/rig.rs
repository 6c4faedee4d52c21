//! A self-contained synthetic platform: a temp directory holding a platform database created from
//! the schema (a SQLite file, or a database on a private PostgreSQL server), a private
//! `redis-server` (or a private Redis Cluster the caller started), the simulated fleet running on it,
//! the platform's queued-count endpoint (`sim::QueueAccessor`), and a fault injector with every
//! requested site provisioned. With a Docker engine ([`Rig::start_with_docker`]) the sites of the
//! recipes that need one run agent containers there, and the pull-mode pilots among them get pull
//! workers' claim attempts (their poll key stamped every second). Shared by `canary demo` and
//! the end-to-end tests, so both watch exactly the same platform. It must not touch any store
//! it did not start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use crate::config::platform::{
    DockerConfig, PullConfig, QueueCountConfig, RedisCluster, RedisKeys,
};
use crate::config::{PlatformConfig, Secret};
use crate::fleet::docker_engine::{DockerClient, DockerEngine};
use crate::fleet::faults::{self, Injector, Recipe};
use crate::fleet::platform::{FleetError, RedisTarget};
use crate::fleet::platform_db::{PG_TYPED_SCHEMA, PlatformTarget};
use crate::fleet::postgres_server::{PostgresServer, PostgresServerError};
use crate::fleet::redis_server::RedisServer;
use crate::fleet::sim::{self, Fleet, FleetSpec, FleetStatsSnapshot, QueueAccessor};

/// Which database engine the rig's platform runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// A SQLite file in the rig's temp directory.
    #[default]
    Sqlite,
    /// A private PostgreSQL server, with the text-timestamp schema (`platform.pg.sql`).
    Postgres,
    /// A private PostgreSQL server, with `timestamptz` and `boolean` columns
    /// (`platform.pg-typed.sql`).
    PostgresTyped,
}

/// Where the rig's platform database lives.
#[derive(Debug)]
enum Store {
    Sqlite(PathBuf),
    Postgres {
        /// Possibly shared with other rigs (a test group's server); stopped with the last.
        server: Arc<PostgresServer>,
        /// This rig's database on it.
        db: String,
        /// This rig's watcher role (roles are cluster-wide, so one per rig).
        role: String,
        /// The superuser's URL: the fleet and the injector write through it.
        url: String,
        /// A read-only role's URL: canary watches through it (it refuses a role that can
        /// write, as it should on a real platform).
        watch_url: String,
    },
}

/// The role canary watches a rig's PostgreSQL platform as (`_<n>` per rig): login, `SELECT`
/// only.
const WATCHER_ROLE: &str = "canary_watcher";

/// A running synthetic platform. Dropping it stops the fleet's thread and the servers.
#[derive(Debug)]
pub struct Rig {
    // Field order is drop order: the fleet and the injector close their connections before the
    // servers stop, and the servers stop before their directory goes.
    fleet: Option<Fleet>,
    /// The platform's queued-count endpoint (B-01), over the same database.
    accessor: QueueAccessor,
    /// Injects and reverts fault recipes on this platform.
    pub injector: Injector,
    /// The pilots' pull workers (their claim attempts), stopped before the servers.
    pull_workers: Option<PullWorkers>,
    /// The Docker engine the agent containers run on (a private one is stopped on drop).
    docker: Option<RigDocker>,
    /// The rig's own `redis-server` (`None` on a cluster the caller started and keeps).
    redis: Option<RedisServer>,
    /// Where the fleet writes and canary reads.
    redis_target: RedisTarget,
    /// The pull-mode pilots (sites of pilot recipes, with an engine).
    pilots: Vec<String>,
    store: Store,
    dir: tempfile::TempDir,
}

impl Rig {
    /// Creates a SQLite platform, provisions the fleet and the sites of `recipes`, starts the
    /// fleet.
    pub async fn start(
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        Rig::start_on(Backend::Sqlite, spec, recipes).await
    }

    /// [`Rig::start`] on `backend` (PostgreSQL: a private server of its own).
    pub async fn start_on(
        backend: Backend,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        match backend {
            Backend::Sqlite => Rig::start_inner(None, None, spec, recipes, None).await,
            Backend::Postgres | Backend::PostgresTyped => {
                let server =
                    PostgresServer::start().map_err(|e| FleetError::Setup(e.to_string()))?;
                let typed = backend == Backend::PostgresTyped;
                Rig::start_on_postgres(Arc::new(server), typed, spec, recipes).await
            }
        }
    }

    /// [`Rig::start_on`] with a Docker engine: the sites of `recipes` that need one run their
    /// agent containers there, the pilots among them are `platform.pull.pilot_agents` with pull
    /// workers polling, and [`Rig::platform_config`] names `platform.docker`.
    pub async fn start_with_docker(
        backend: Backend,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
        docker: RigDocker,
    ) -> Result<Rig, FleetError> {
        match backend {
            Backend::Sqlite => Rig::start_inner(None, None, spec, recipes, Some(docker)).await,
            Backend::Postgres | Backend::PostgresTyped => {
                let server =
                    PostgresServer::start().map_err(|e| FleetError::Setup(e.to_string()))?;
                let typed = backend == Backend::PostgresTyped;
                let postgres = Some((Arc::new(server), typed));
                Rig::start_inner(postgres, None, spec, recipes, Some(docker)).await
            }
        }
    }

    /// [`Rig::start`] with the platform in a new database on a running PostgreSQL `server`
    /// (shared by a group of tests: each rig has its own database and watcher role). `typed`:
    /// `timestamptz`/`boolean` columns (`platform.pg-typed.sql`), else text timestamps.
    pub async fn start_on_postgres(
        server: Arc<PostgresServer>,
        typed: bool,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        Rig::start_inner(Some((server, typed)), None, spec, recipes, None).await
    }

    /// [`Rig::start`] (SQLite) on a `redis` server the caller started, with the options under
    /// test (a TLS port, ACL users): the fleet writes through its plain port as the default
    /// user, and the watcher's configuration is the caller's to adjust.
    pub async fn start_with_redis(
        redis: RedisServer,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        Rig::start_inner(None, Some(redis), spec, recipes, None).await
    }

    /// [`Rig::start`] (SQLite) on a Redis Cluster the caller started and keeps running (its
    /// seed nodes, `host:port`): the fleet writes through the cluster's slot routing and
    /// [`Rig::platform_config`] names `platform.redis_cluster`.
    pub async fn start_with_cluster(
        seeds: Vec<String>,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> Result<Rig, FleetError> {
        Rig::start_inner_on(None, RedisTarget::Cluster(seeds), None, spec, recipes, None).await
    }

    async fn start_inner(
        postgres: Option<(Arc<PostgresServer>, bool)>,
        redis: Option<RedisServer>,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
        docker: Option<RigDocker>,
    ) -> Result<Rig, FleetError> {
        let redis = match redis {
            Some(redis) => redis,
            None => RedisServer::start().map_err(|e| FleetError::Setup(e.to_string()))?,
        };
        let target = RedisTarget::Node(redis.url());
        Rig::start_inner_on(postgres, target, Some(redis), spec, recipes, docker).await
    }

    async fn start_inner_on(
        postgres: Option<(Arc<PostgresServer>, bool)>,
        redis_target: RedisTarget,
        redis: Option<RedisServer>,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
        docker: Option<RigDocker>,
    ) -> Result<Rig, FleetError> {
        static RIGS: AtomicU64 = AtomicU64::new(1);
        let setup = |e: PostgresServerError| FleetError::Setup(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("canary-fleet-")
            .tempdir()
            .map_err(|e| FleetError::Setup(format!("temp directory: {e}")))?;
        let n = RIGS.fetch_add(1, Ordering::Relaxed);
        let store = match postgres {
            None => Store::Sqlite(dir.path().join("platform.db")),
            Some((server, typed)) => {
                let db = format!("platform_{n}");
                let url = server.create_database(&db).map_err(setup)?;
                if typed {
                    server.admin_batch(&db, PG_TYPED_SCHEMA).map_err(setup)?;
                }
                let role = format!("{WATCHER_ROLE}_{n}");
                Store::Postgres {
                    watch_url: url.replacen(
                        "postgres://postgres@",
                        &format!("postgres://{role}@"),
                        1,
                    ),
                    server,
                    db,
                    role,
                    url,
                }
            }
        };
        let target = match &store {
            Store::Sqlite(path) => PlatformTarget::Sqlite(path.clone()),
            Store::Postgres { url, .. } => PlatformTarget::postgres(url.clone()),
        };
        let plans = sim::plan(spec);
        {
            // The typed schema is already there; `init` only adds what is absent.
            let mut db = sim::open_db(&target, true)?;
            sim::provision(&mut db, spec, &plans, crate::clock::now_ms())?;
        }
        if let Store::Postgres {
            server, db, role, ..
        } = &store
        {
            // Least privilege, as canary's README asks of a real platform: read every table,
            // write none (the default privileges cover tables a fault might create later).
            server
                .admin_batch(
                    db,
                    &format!(
                        "CREATE ROLE {role} LOGIN; \
                         GRANT CONNECT ON DATABASE {db} TO {role}; \
                         GRANT USAGE ON SCHEMA public TO {role}; \
                         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; \
                         ALTER DEFAULT PRIVILEGES IN SCHEMA public \
                         GRANT SELECT ON TABLES TO {role};"
                    ),
                )
                .map_err(setup)?;
        }
        let fleet = Fleet::start(&target, &redis_target, spec, plans).await?;
        let accessor = QueueAccessor::start(&target, fleet.control())?;
        let mut injector =
            Injector::connect(&target, &redis_target, &spec.prefix, Some(fleet.control())).await?;
        if let Some(docker) = &docker {
            injector = injector.with_docker(docker.client().clone());
        }
        injector.provision(recipes)?;
        let pilots = if docker.is_some() {
            faults::pilots(&spec.prefix, recipes)
        } else {
            Vec::new()
        };
        let pull_workers = if pilots.is_empty() {
            None
        } else {
            Some(PullWorkers::start(&redis_target, pilots.clone()).await?)
        };
        Ok(Rig {
            fleet: Some(fleet),
            accessor,
            injector,
            pull_workers,
            docker,
            pilots,
            redis,
            redis_target,
            store,
            dir,
        })
    }

    /// The temp directory (platform database; put canary's state database here too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite platform database (an empty path on PostgreSQL).
    pub fn sqlite_path(&self) -> &Path {
        match &self.store {
            Store::Sqlite(path) => path,
            Store::Postgres { .. } => Path::new(""),
        }
    }

    /// The PostgreSQL platform database's URL (`None` on SQLite).
    pub fn database_url(&self) -> Option<&str> {
        match &self.store {
            Store::Sqlite(_) => None,
            Store::Postgres { url, .. } => Some(url),
        }
    }

    /// The URL canary watches the PostgreSQL platform through: a role that may only `SELECT`
    /// (`None` on SQLite).
    pub fn watch_url(&self) -> Option<&str> {
        match &self.store {
            Store::Sqlite(_) => None,
            Store::Postgres { watch_url, .. } => Some(watch_url),
        }
    }

    /// The private PostgreSQL server (`None` on SQLite).
    pub fn postgres(&self) -> Option<&PostgresServer> {
        match &self.store {
            Store::Sqlite(_) => None,
            Store::Postgres { server, .. } => Some(server.as_ref()),
        }
    }

    /// The platform database, as the fleet writer names it.
    pub fn target(&self) -> PlatformTarget {
        match &self.store {
            Store::Sqlite(path) => PlatformTarget::Sqlite(path.clone()),
            Store::Postgres { url, .. } => PlatformTarget::postgres(url.clone()),
        }
    }

    /// The private Redis's URL (on a cluster: its first seed's).
    pub fn redis_url(&self) -> String {
        match &self.redis_target {
            RedisTarget::Node(url) => url.clone(),
            RedisTarget::Cluster(seeds) => {
                format!("redis://{}", seeds.first().map_or("", String::as_str))
            }
        }
    }

    /// The rig's own `redis-server` (`None` on a cluster the caller started).
    pub fn redis_server(&self) -> Option<&RedisServer> {
        self.redis.as_ref()
    }

    /// Where the fleet writes (one node or a cluster).
    pub fn redis_target(&self) -> &RedisTarget {
        &self.redis_target
    }

    /// The URL template of the platform's queued-count endpoint (`{agent}` in place).
    pub fn queue_count_url(&self) -> String {
        self.accessor.url_template()
    }

    /// A platform configuration pointing canary at this platform (default names), its
    /// queued-count endpoint included (B-01).
    pub fn platform_config(&self) -> PlatformConfig {
        PlatformConfig {
            queue_count: Some(QueueCountConfig::new(self.queue_count_url())),
            sqlite_path: self.sqlite_path().to_path_buf(),
            database_url: self.watch_url().map(Secret::new),
            redis_url: self.redis_url(),
            redis_cluster: match &self.redis_target {
                RedisTarget::Node(_) => None,
                RedisTarget::Cluster(seeds) => Some(RedisCluster {
                    nodes: seeds.clone(),
                }),
            },
            docker: self.docker.as_ref().map(|d| DockerConfig {
                endpoint: d.client().endpoint().to_owned(),
                // The demo's engine runs beside a busy fleet on a small machine.
                timeout: Duration::from_secs(5),
                ..DockerConfig::default()
            }),
            pull: PullConfig {
                pilot_agents: self.pilots.clone(),
            },
            ..PlatformConfig::default()
        }
    }

    /// The Docker engine the agent containers run on (`None` without one).
    pub fn docker(&self) -> Option<&DockerClient> {
        self.docker.as_ref().map(RigDocker::client)
    }

    /// The fleet's counters so far.
    pub fn stats(&self) -> FleetStatsSnapshot {
        self.fleet.as_ref().map(Fleet::stats).unwrap_or_default()
    }

    /// Reverts every injected fault and stops the fleet (everything in flight finishes).
    /// Returns the fleet's final counters.
    pub async fn stop(&mut self) -> Result<FleetStatsSnapshot, FleetError> {
        self.injector.revert_all().await?;
        // The pilots' workers stop with the fleet.
        self.pull_workers.take();
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

/// The Docker engine a rig's agent containers run on.
#[derive(Debug)]
pub enum RigDocker {
    /// A private `dockerd` the rig stops when it drops.
    Private(DockerEngine),
    /// An engine someone else runs (`--docker-endpoint`): the rig removes the containers it
    /// created when it drops, nothing else.
    External(DockerClient),
}

impl RigDocker {
    /// The client of the engine.
    pub fn client(&self) -> &DockerClient {
        match self {
            RigDocker::Private(engine) => engine.client(),
            RigDocker::External(client) => client,
        }
    }
}

/// The pilots' pull workers, as far as canary can see them: a claim attempt per pilot every
/// second (`agent:pull_poll:{agent}` = unix seconds). They claim nothing: the sites' queues are
/// the recipes' business.
#[derive(Debug)]
struct PullWorkers {
    task: tokio::task::JoinHandle<()>,
}

impl PullWorkers {
    async fn start(target: &RedisTarget, pilots: Vec<String>) -> Result<PullWorkers, FleetError> {
        let mut redis = crate::fleet::platform::connect_redis(target.clone()).await?;
        let template = RedisKeys::default().pull_poll;
        let keys: Vec<String> = pilots
            .iter()
            .map(|p| template.replace("{agent}", p))
            .collect();
        // The first attempt before the first cycle: a pilot is never judged without one.
        stamp(&mut redis, &keys).await?;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // A failed stamp is retried next second (the reconnecting connection heals).
                let _ = stamp(&mut redis, &keys).await;
            }
        });
        Ok(PullWorkers { task })
    }
}

async fn stamp(
    redis: &mut crate::fleet::redis_conn::RedisConn,
    keys: &[String],
) -> Result<(), FleetError> {
    let now = crate::clock::now_ms() / 1000;
    for key in keys {
        redis::cmd("SET")
            .arg(key)
            .arg(now)
            .query_async::<()>(&mut *redis)
            .await?;
    }
    Ok(())
}

impl Drop for PullWorkers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for RigDocker {
    fn drop(&mut self) {
        // A private engine removes everything itself; on an external one, only what the rig made.
        if let RigDocker::External(client) = self {
            let _ = client.remove_fleet_containers();
        }
    }
}
