//! The Docker source (`platform.docker`): the running agent containers and, per container, its
//! start time, the environment variables named in configuration and the agent process's zombies.
//!
//! - [`client`]: the read-only Engine API wrapper (listing, inspect, the one fixed `ps` exec);
//! - [`ps`]: `ps -eo stat,pid,comm` output → zombie pids (pure).
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
pub mod ps;

use std::sync::Arc;

use canary_invariants::{Container, DockerState, Processes};
use tokio::sync::Semaphore;

use crate::collect::timestamp::parse_timestamp_ms;
use crate::config::platform::DockerConfig;
use client::{DockerError, Listed, ReadOnlyDocker};

/// Containers read at once (inspect + exec each): enough to hide the engine's latency, few
/// enough not to load a busy engine.
const CONCURRENCY: usize = 8;

/// Reads the Docker source. `Err` only when the engine cannot be reached or the listing fails.
pub async fn read(cfg: &DockerConfig) -> Result<DockerState, DockerError> {
    let engine = ReadOnlyDocker::connect(&cfg.endpoint, cfg.timeout).await?;
    let listed = engine.running_agents(&cfg.agent_label).await?;
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let reads = listed.into_iter().map(|entry| {
        let engine = engine.clone();
        let limit = Arc::clone(&limit);
        async move {
            // A closed semaphore cannot happen (it is never closed); read regardless.
            let _permit = limit.acquire().await.ok();
            read_container(&engine, cfg, entry).await
        }
    });
    let containers = futures_util::future::join_all(reads).await;
    Ok(DockerState { containers })
}

/// One container: inspect, then `ps`. Either failing leaves it listed as unreadable.
async fn read_container(engine: &ReadOnlyDocker, cfg: &DockerConfig, entry: Listed) -> Container {
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
        processes: Processes::Unreadable {
            reason: String::new(),
        },
    };
    match engine.inspect(&container.id, &cfg.env_keep).await {
        Ok(inspected) => {
            container.started_at_ms = inspected.started_at.as_deref().and_then(parse_timestamp_ms);
            container.env = inspected.env;
        }
        Err(e) => {
            container.processes = Processes::Unreadable {
                reason: e.to_string(),
            };
            return container;
        }
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
    container
}
