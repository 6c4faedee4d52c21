//! The recipes' workbench: the platform's stores, the running simulator's controls, the Docker
//! engine the agent containers run on (when there is one), and the protocol steps several
//! recipes share (a running row, a queued row, a claim, the healthy acquire, finish and release,
//! a back-dated terminal write, a site's agent container), each written exactly as the platform
//! writes it so a recipe can break one step and do every other one right.
//!
//! It must not know any recipe: what to break and when lives in the recipe's own file.

use std::sync::Arc;

use crate::fleet::platform_db::params;

use crate::clock::now_ms;
use crate::fleet::docker_engine::{DockerClient, DockerEngineError};
use crate::fleet::faults::RecipeMeta;
use crate::fleet::platform::{FleetError, Platform, SLOT_TTL_BUFFER_SECONDS};
use crate::fleet::sim::{Control, Shape, stamp};

/// Per-execution timeout the sites dispatch with (below the sites' 900 s agent cap, on purpose).
pub(super) const SITE_EXEC_TIMEOUT: i64 = 600;

/// Pull workers per pilot container (`TRINITY_MAX_PARALLEL_TASKS`).
pub const PILOT_WORKERS: i64 = 2;

/// The container name of `agent` (`platform.docker.name_prefix`'s default + the agent).
pub fn container_of(agent: &str) -> String {
    format!("agent-{agent}")
}

/// The stores a recipe writes to, and the shared protocol steps.
pub struct Bench {
    pub(super) platform: Platform,
    prefix: String,
    pub(super) control: Option<Arc<Control>>,
    pub(super) docker: Option<DockerClient>,
    seq: u64,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Bench {
    pub(super) fn new(platform: Platform, prefix: &str, control: Option<Arc<Control>>) -> Bench {
        Bench {
            platform,
            prefix: prefix.to_owned(),
            control,
            docker: None,
            seq: 0,
        }
    }

    fn docker_client(&self) -> Result<DockerClient, FleetError> {
        self.docker.clone().ok_or_else(|| {
            FleetError::Setup("this recipe needs a Docker engine (canary demo --docker)".to_owned())
        })
    }

    /// `site`'s agent container, fresh (any earlier one removed): Docker's init as PID 1,
    /// `--network none`; a pilot's runs in pull mode with [`PILOT_WORKERS`] workers.
    pub(super) fn agent_container(&self, site: &str, pilot: bool) -> Result<(), FleetError> {
        let docker = self.docker_client()?;
        let name = container_of(site);
        let workers = format!("TRINITY_MAX_PARALLEL_TASKS={PILOT_WORKERS}");
        let env: Vec<&str> = if pilot {
            vec!["TRINITY_PULL_MODE=1", workers.as_str()]
        } else {
            Vec::new()
        };
        docker.remove(&[name.as_str()]).map_err(docker_error)?;
        docker.fleet_agent(&name, &env).map_err(docker_error)?;
        Ok(())
    }

    /// Runs `step` with the Docker client on a blocking thread (the `docker` CLI waits for the
    /// engine; the watcher's cycles must not wait behind it). The future holds the client, not
    /// the bench (whose stores are not `Sync`).
    pub(super) fn docker<T: Send + 'static>(
        &self,
        step: impl FnOnce(&DockerClient) -> Result<T, DockerEngineError> + Send + 'static,
    ) -> impl Future<Output = Result<T, FleetError>> + Send + 'static {
        let docker = self.docker_client();
        async move {
            let docker = docker?;
            tokio::task::spawn_blocking(move || step(&docker))
                .await
                .map_err(|e| FleetError::Setup(format!("docker step: {e}")))?
                .map_err(docker_error)
        }
    }

    /// The site agents' name prefix.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates the site agent when absent; whether it was just created.
    pub(super) fn add_site(&self, site: &str, meta: &RecipeMeta) -> Result<bool, FleetError> {
        Ok(self.platform.db().execute(
            "INSERT INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![site, false, meta.site_cap, meta.site_timeout],
        )? == 1)
    }

    /// Writes `completed_at = now` (the platform's usual ISO shape) on each execution: the
    /// repair of every recipe that broke or skewed that column.
    pub(super) fn complete_now(&self, ids: &[String]) -> Result<(), FleetError> {
        let now = stamp(now_ms(), Shape::IsoZ);
        for id in ids {
            self.platform.set_completed_at(id, &now)?;
        }
        Ok(())
    }

    /// A fresh execution id on `site`.
    pub(super) fn next_id(&mut self, site: &str) -> String {
        self.seq += 1;
        format!("{site}-{:x}-{}", now_ms(), self.seq)
    }

    /// A running row, then its slot (the healthy claim, or with `ttl` overriding timeout + 300).
    pub(super) async fn start(
        &mut self,
        site: &str,
        id: &str,
        started: i64,
        with_session: bool,
        timeout: i64,
        ttl: Option<i64>,
    ) -> Result<(), FleetError> {
        self.row_running(site, id, started, with_session)?;
        self.acquire(site, id, started, timeout, ttl).await
    }

    /// A `running` row started at `started` (with or without its session id), no slot yet.
    pub(super) fn row_running(
        &self,
        site: &str,
        id: &str,
        started: i64,
        with_session: bool,
    ) -> Result<(), FleetError> {
        let session = with_session.then(|| format!("session-{id}"));
        self.platform.db().execute(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
             started_at, claude_session_id, triggered_by, backlog_metadata) \
             VALUES (?1, NULL, ?2, 'running', ?3, ?4, ?5, 'fault', ?6)",
            params![
                id,
                site,
                stamp(started - 1_000, Shape::IsoOffset(120)),
                stamp(started, Shape::IsoZ),
                session,
                ok_metadata(site)
            ],
        )?;
        Ok(())
    }

    /// A `queued` row (ISO `Z` timestamp) with `metadata`.
    pub(super) fn row_queued(
        &self,
        site: &str,
        id: &str,
        queued: i64,
        metadata: &str,
    ) -> Result<(), FleetError> {
        self.row_queued_shaped(site, id, queued, Shape::IsoZ, metadata)
    }

    /// A `queued` row with its `queued_at` in `shape`.
    pub(super) fn row_queued_shaped(
        &self,
        site: &str,
        id: &str,
        queued: i64,
        shape: Shape,
        metadata: &str,
    ) -> Result<(), FleetError> {
        self.platform.db().execute(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
             triggered_by, backlog_metadata) VALUES (?1, NULL, ?2, 'queued', ?3, 'fault', ?4)",
            params![id, site, stamp(queued, shape), metadata],
        )?;
        Ok(())
    }

    /// A queued row claimed: running now, with a session, then its slot.
    pub(super) async fn claim(&mut self, site: &str, id: &str) -> Result<(), FleetError> {
        let now = now_ms();
        self.platform.db().execute(
            "UPDATE schedule_executions SET status = 'running', started_at = ?2, \
             claude_session_id = ?3 WHERE id = ?1",
            params![id, stamp(now, Shape::IsoZ), format!("session-{id}")],
        )?;
        self.acquire(site, id, now, SITE_EXEC_TIMEOUT, None).await
    }

    /// The slot: ZADD at `score_ms`, metadata hash with `timeout`, EXPIRE (`ttl`, else the
    /// platform's timeout + 300), in one transaction.
    pub(super) async fn acquire(
        &mut self,
        site: &str,
        id: &str,
        score_ms: i64,
        timeout: i64,
        ttl: Option<i64>,
    ) -> Result<(), FleetError> {
        let slots = self.platform.slots_key(site);
        let meta = self.platform.meta_key(site, id);
        crate::fleet::platform::acquire_with_ttl(
            self.platform.redis(),
            &slots,
            &meta,
            id,
            timeout,
            score_ms,
            ttl.unwrap_or(timeout + SLOT_TTL_BUFFER_SECONDS),
        )
        .await
    }

    /// The healthy release: ZREM + DEL.
    pub(super) async fn release(&mut self, site: &str, id: &str) -> Result<(), FleetError> {
        self.platform.release_slot(site, id).await
    }

    /// The terminal write: `status`, `completed_at` (in `shape`, or NULL) and `duration_ms`.
    pub(super) fn terminal(
        &self,
        id: &str,
        status: &str,
        completed: Option<i64>,
        shape: Shape,
    ) -> Result<(), FleetError> {
        let now = now_ms();
        let db = self.platform.db();
        let duration = db.dialect().elapsed_ms("started_at", "?4");
        db.execute(
            &format!(
                "UPDATE schedule_executions SET status = ?2, completed_at = ?3, \
                 duration_ms = {duration} WHERE id = ?1"
            ),
            params![
                id,
                status,
                completed.map(|ms| stamp(ms, shape)),
                stamp(now, Shape::IsoNaive)
            ],
        )?;
        Ok(())
    }

    /// The healthy finish: terminal row (completed now), then ZREM + DEL.
    pub(super) async fn finish(
        &mut self,
        site: &str,
        id: &str,
        status: &str,
    ) -> Result<(), FleetError> {
        self.terminal(id, status, Some(now_ms()), Shape::IsoZ)?;
        self.release(site, id).await
    }

    /// What the platform's dispatch does to waiting rows: each claimed, then run to success.
    pub(super) async fn dispatch(&mut self, site: &str, ids: &[String]) -> Result<(), FleetError> {
        for id in ids {
            self.claim(site, id).await?;
            self.finish(site, id, "success").await?;
        }
        Ok(())
    }

    /// The repair of a queued row's metadata: valid metadata written, the row cancelled now.
    pub(super) fn cancel_with_ok_metadata(&self, site: &str, id: &str) -> Result<(), FleetError> {
        self.platform.db().execute(
            "UPDATE schedule_executions SET backlog_metadata = ?2, \
             status = 'cancelled', completed_at = ?3 WHERE id = ?1",
            params![id, ok_metadata(site), stamp(now_ms(), Shape::IsoZ)],
        )?;
        Ok(())
    }

    /// Sets the drain heartbeat (`canary:drain_tick_at`) to `at_ms`.
    pub(super) async fn set_drain_tick(&mut self, at_ms: i64) -> Result<(), FleetError> {
        let tick = format!("{:.3}", at_ms as f64 / 1000.0);
        let key = crate::config::platform::RedisKeys::default().drain_tick;
        redis::cmd("SET")
            .arg(&key)
            .arg(tick)
            .query_async::<()>(self.platform.redis())
            .await?;
        Ok(())
    }
}

fn docker_error(e: DockerEngineError) -> FleetError {
    FleetError::Setup(format!("docker: {e}"))
}

/// Valid backlog metadata without secrets.
pub(super) fn ok_metadata(site: &str) -> String {
    serde_json::json!({ "schedule_id": format!("sched-{site}"), "trigger": "fault-site" })
        .to_string()
}
