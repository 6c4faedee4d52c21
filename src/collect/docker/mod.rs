//! The Docker source (`platform.docker`): the running agent containers and, per container, its
//! start time, the environment variables named in configuration and the agent process's zombies.
//!
//! - [`client`]: the read-only Engine API wrapper (listing, inspect, the one fixed `ps` exec);
//! - [`ps`]: `ps -eo stat,pid,comm` output → zombie pids (pure);
//! - [`host_proc`]: `zombie_source: host_proc`, the zombies from the host's `/proc` instead of
//!   an exec (pids are then host pids).
//!
//! Failure is per container where possible: the listing failing (socket unreachable, engine
//! down) makes the whole source unavailable (its invariants *unknown*); one container whose
//! inspect or exec fails is listed with [`Processes::Unreadable`] and the others are judged. A
//! container's presence is recorded before anything else is read from it (H-01 evidence even
//! when the rest fails).
//!
//! It must not judge anything, log (the cycle logs an unavailable source once), keep any
//! environment variable it was not told to keep, or call the engine except through `client`.

pub mod client;
pub mod host_proc;
pub mod ps;

use std::sync::Arc;

use canary_invariants::snapshot::{MAX_PARALLEL_ENV, PULL_MODE_ENV};
use canary_invariants::{Container, DockerState, Processes};
use tokio::sync::Semaphore;

use crate::collect::timestamp::parse_timestamp_ms;
use crate::config::platform::{DockerConfig, ZombieSource};
use client::{DockerError, Listed, ReadOnlyDocker};

/// Containers read at once (inspect + exec each): enough to hide the engine's latency, few
/// enough not to load a busy engine.
const CONCURRENCY: usize = 8;

/// What one Docker read found and cost.
#[derive(Debug, Clone)]
pub struct DockerRead {
    /// The state, or why the engine could not be read (the source is then unavailable).
    pub result: Result<DockerState, DockerError>,
    /// Engine API requests sent: 2 (version, listing) + per container 1 inspect (+ 3 for the
    /// exec). Unlike Redis and SQL this grows with the containers: the Engine API has no batch
    /// inspect or exec.
    pub calls: u32,
}

/// Reads the Docker source. `Err` only when the engine cannot be reached or the listing fails.
/// `pilots` (`platform.pull.pilot_agents`): their containers also keep the two pull-mode
/// variables.
pub async fn read(cfg: &DockerConfig, pilots: &[String]) -> Result<DockerState, DockerError> {
    read_counted(cfg, pilots).await.result
}

/// [`read`] with its request count.
pub async fn read_counted(cfg: &DockerConfig, pilots: &[String]) -> DockerRead {
    let engine = match ReadOnlyDocker::connect(&cfg.endpoint, cfg.timeout).await {
        Ok(engine) => engine,
        Err(e) => {
            return DockerRead {
                result: Err(e),
                calls: 1,
            };
        }
    };
    let result = read_with(&engine, cfg, pilots).await;
    DockerRead {
        result,
        calls: engine.calls(),
    }
}

async fn read_with(
    engine: &ReadOnlyDocker,
    cfg: &DockerConfig,
    pilots: &[String],
) -> Result<DockerState, DockerError> {
    let listed = engine.running_agents(&cfg.agent_label).await?;
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let reads = listed.into_iter().map(|entry| {
        let engine = engine.clone();
        let limit = Arc::clone(&limit);
        async move {
            // A closed semaphore cannot happen (it is never closed); read regardless.
            let _permit = limit.acquire().await.ok();
            read_container(&engine, cfg, pilots, entry).await
        }
    });
    let read = futures_util::future::join_all(reads).await;
    let mut containers: Vec<Container> = Vec::with_capacity(read.len());
    let mut inspected: Vec<bool> = Vec::with_capacity(read.len());
    for (container, ok) in read {
        containers.push(container);
        inspected.push(ok);
    }
    if cfg.zombie_source == ZombieSource::HostProc {
        from_host_proc(cfg, &mut containers, &inspected).await;
    }
    Ok(DockerState { containers })
}

/// Fills the processes of every inspected container from the host's `/proc` (on a blocking
/// thread: it reads a file per process). `/proc` unreadable → every container unreadable.
async fn from_host_proc(cfg: &DockerConfig, containers: &mut [Container], inspected: &[bool]) {
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let name = cfg.process_name.clone();
    let found = tokio::task::spawn_blocking(move || {
        host_proc::zombies_by_container(std::path::Path::new("/proc"), &name, &ids)
    })
    .await
    .unwrap_or_else(|_| Err("internal error: /proc reader task failed".to_owned()));
    for (container, inspected) in containers.iter_mut().zip(inspected) {
        // A container whose inspect failed stays unreadable with that reason.
        if !inspected {
            continue;
        }
        container.processes = match &found {
            Ok(by_id) => Processes::Read {
                zombies: by_id.get(&container.id).cloned().unwrap_or_default(),
            },
            Err(reason) => Processes::Unreadable {
                reason: reason.clone(),
            },
        };
    }
}

/// One container: inspect, then `ps` (with `zombie_source: exec`). Either failing leaves it
/// listed as unreadable. The flag says whether the inspect succeeded.
async fn read_container(
    engine: &ReadOnlyDocker,
    cfg: &DockerConfig,
    pilots: &[String],
    entry: Listed,
) -> (Container, bool) {
    let agent = entry
        .name
        .strip_prefix(cfg.name_prefix.as_str())
        .unwrap_or(&entry.name)
        .to_owned();
    let mut container = Container {
        id: entry.id,
        name: entry.name,
        agent,
        started_at_ms: None,
        env: Default::default(),
        inspected: false,
        processes: Processes::Unreadable {
            reason: "not read".to_owned(),
        },
    };
    // A pilot's pull-mode variables are kept without the operator naming them (B-08, B-02's
    // pull arm); nothing else is added, and never for other agents.
    let mut keep = cfg.env_keep.clone();
    if pilots.contains(&container.agent) {
        for name in [PULL_MODE_ENV, MAX_PARALLEL_ENV] {
            if !keep.iter().any(|k| k == name) {
                keep.push(name.to_owned());
            }
        }
    }
    match engine.inspect(&container.id, &keep).await {
        Ok(inspected) => {
            container.started_at_ms = inspected.started_at.as_deref().and_then(parse_timestamp_ms);
            container.env = inspected.env;
            container.inspected = true;
        }
        Err(e) => {
            container.processes = Processes::Unreadable {
                reason: e.to_string(),
            };
            return (container, false);
        }
    }
    if cfg.zombie_source == ZombieSource::HostProc {
        // Filled from /proc for all containers at once (see `from_host_proc`).
        return (container, true);
    }
    container.processes = match engine.ps(&container.id).await {
        Ok(output) => match ps::zombies(&output, &cfg.process_name) {
            Ok(zombies) => Processes::Read { zombies },
            Err(reason) => Processes::Unreadable { reason },
        },
        Err(e) => Processes::Unreadable {
            reason: e.to_string(),
        },
    };
    (container, true)
}
