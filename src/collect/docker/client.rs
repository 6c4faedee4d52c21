//! The read-only Docker Engine client: [`ReadOnlyDocker`] holds the engine connection privately
//! and offers exactly three calls, so canary cannot create, stop, kill or change anything by
//! accident:
//!
//! - [`ReadOnlyDocker::running_agents`]: `GET /containers/json` filtered by the agent label
//!   (running containers only);
//! - [`ReadOnlyDocker::inspect`]: `GET /containers/{id}/json`, returning the start time and only
//!   the environment variables asked for (the rest, secrets included, is dropped here, before the
//!   response leaves this function);
//! - [`ReadOnlyDocker::ps`]: one exec of the fixed command [`PS_COMMAND`] (create, start with
//!   attached output, inspect for the exit code). There is no way to pass another command.
//!
//! Each call is bounded by `platform.docker.timeout`. Errors name the call and the engine's
//! answer, never an environment value. It must not parse `ps` output (see `ps`) nor build the
//! snapshot (see `mod.rs`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::StreamExt;

/// The only command canary ever runs in a container (the reference's, DESIGN §4).
pub const PS_COMMAND: [&str; 3] = ["ps", "-eo", "stat,pid,comm"];

/// Bound of the `ps` output read (a container with a huge process table is unreadable, not a
/// memory hazard).
const MAX_PS_OUTPUT: usize = 4 * 1024 * 1024;

/// Why a Docker call failed: the call and a secret-free reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("docker {call}: {reason}")]
pub struct DockerError {
    /// `connect`, `list containers`, `inspect`, `exec ps`.
    pub call: &'static str,
    /// What went wrong.
    pub reason: String,
}

fn failed(call: &'static str, error: &bollard::errors::Error) -> DockerError {
    let reason = match error {
        // serde's message may quote the offending value, and an inspect answer holds the
        // container's environment: say where it broke, never what it held.
        bollard::errors::Error::JsonDataError { column, .. } => {
            format!("the engine's answer is not the expected JSON (column {column})")
        }
        bollard::errors::Error::JsonSerdeError { err } => format!(
            "the engine's answer is not the expected JSON (line {}, column {})",
            err.line(),
            err.column()
        ),
        other => other.to_string(),
    };
    DockerError { call, reason }
}

/// A running agent container as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Full container id.
    pub id: String,
    /// Its name without Docker's leading `/`.
    pub name: String,
}

/// What canary keeps from a container's inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `State.StartedAt` when a non-empty string.
    pub started_at: Option<String>,
    /// The environment variables named in `env_keep`, nothing else.
    pub env: BTreeMap<String, String>,
}

/// The read-only Engine API client (see the module docs for its three calls).
#[derive(Debug, Clone)]
pub struct ReadOnlyDocker {
    engine: Docker,
    timeout: Duration,
    /// Engine API requests sent (shared by clones), for the cycle's cost counters.
    calls: Arc<AtomicU32>,
}

impl ReadOnlyDocker {
    /// Connects to `endpoint` (`unix:///…`) and agrees on an API version with the engine (one
    /// `GET /version`: an old engine answers an older version, a new one drops old versions).
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<ReadOnlyDocker, DockerError> {
        let seconds = timeout.as_secs().max(1);
        let engine = Docker::connect_with_unix(endpoint, seconds, API_DEFAULT_VERSION)
            .map_err(|e| failed("connect", &e))?;
        let engine = bounded("connect", timeout, engine.negotiate_version()).await?;
        Ok(ReadOnlyDocker {
            engine,
            timeout,
            calls: Arc::new(AtomicU32::new(1)),
        })
    }

    /// Engine API requests sent so far (the version negotiation included).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self, n: u32) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// The running containers carrying `label` (`key=value`), sorted by id.
    pub async fn running_agents(&self, label: &str) -> Result<Vec<Listed>, DockerError> {
        const CALL: &str = "list containers";
        let filters: HashMap<&str, Vec<&str>> =
            HashMap::from([("label", vec![label]), ("status", vec!["running"])]);
        self.count(1);
        let options = ListContainersOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        let listed = bounded(
            CALL,
            self.timeout,
            self.engine.list_containers(Some(options)),
        )
        .await?;
        let mut out: Vec<Listed> = listed
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|names| names.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_else(|| id.clone());
                Some(Listed { id, name })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The start time and the `keep` environment variables of container `id`.
    pub async fn inspect(&self, id: &str, keep: &[String]) -> Result<Inspected, DockerError> {
        const CALL: &str = "inspect";
        self.count(1);
        let response = bounded(
            CALL,
            self.timeout,
            self.engine
                .inspect_container(id, None::<InspectContainerOptions>),
        )
        .await?;
        let started_at = response
            .state
            .and_then(|s| s.started_at)
            .filter(|s| !s.trim().is_empty());
        // The full environment holds the platform's secrets: only the named variables survive
        // this statement; the response (and every other value) is dropped with it.
        let env = response
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                keep.iter()
                    .any(|k| k == name)
                    .then(|| (name.to_owned(), value.to_owned()))
            })
            .collect();
        Ok(Inspected { started_at, env })
    }

    /// Runs [`PS_COMMAND`] in container `id` and returns its standard output. A non-zero exit
    /// or output on standard error is an error (the container's `ps` is unusable).
    pub async fn ps(&self, id: &str) -> Result<String, DockerError> {
        const CALL: &str = "exec ps";
        // Create, start, inspect: three requests per container.
        self.count(3);
        let timeout = self.timeout;
        let run = async {
            let created = self
                .engine
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(PS_COMMAND.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..CreateExecOptions::default()
                    },
                )
                .await
                .map_err(|e| failed(CALL, &e))?;
            let started = self
                .engine
                .start_exec(&created.id, None)
                .await
                .map_err(|e| failed(CALL, &e))?;
            let StartExecResults::Attached { mut output, .. } = started else {
                return Err(DockerError {
                    call: CALL,
                    reason: "the engine detached the exec".to_owned(),
                });
            };
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| failed(CALL, &e))? {
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => {
                        stdout.extend_from_slice(&message);
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message);
                    }
                    bollard::container::LogOutput::StdIn { .. } => {}
                }
                if stdout.len() + stderr.len() > MAX_PS_OUTPUT {
                    return Err(DockerError {
                        call: CALL,
                        reason: "ps output too large".to_owned(),
                    });
                }
            }
            let exit = self
                .engine
                .inspect_exec(&created.id)
                .await
                .map_err(|e| failed(CALL, &e))?
                .exit_code;
            if exit != Some(0) {
                let said = String::from_utf8_lossy(&stderr);
                let said: String = said.trim().chars().take(200).collect();
                return Err(DockerError {
                    call: CALL,
                    reason: format!(
                        "ps exited with {} ({said})",
                        exit.map_or_else(|| "no status".to_owned(), |c| c.to_string())
                    ),
                });
            }
            String::from_utf8(stdout).map_err(|_| DockerError {
                call: CALL,
                reason: "ps output is not UTF-8".to_owned(),
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(CALL, timeout)),
        }
    }
}

fn timed_out(call: &'static str, timeout: Duration) -> DockerError {
    DockerError {
        call,
        reason: format!("no answer within {} ms", timeout.as_millis()),
    }
}

/// Awaits one engine call for at most `timeout`.
async fn bounded<T>(
    call: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, DockerError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|e| failed(call, &e)),
        Err(_) => Err(timed_out(call, timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_answer() {
        let Err(serde) = serde_json::from_str::<Vec<u32>>(r#"["PLATFORM_API_KEY=sk-live-x"]"#)
        else {
            panic!("must not parse");
        };
        assert!(
            serde.to_string().contains("sk-live-x"),
            "serde quotes values"
        );
        let data = bollard::errors::Error::JsonDataError {
            message: serde.to_string(),
            column: serde.column(),
        };
        let serde = bollard::errors::Error::JsonSerdeError { err: serde };
        for error in [data, serde] {
            let said = failed("inspect", &error).to_string();
            assert!(!said.contains("sk-live-x"), "{said}");
            assert!(
                said.starts_with("docker inspect: the engine's answer is not"),
                "{said}"
            );
        }
    }
}
