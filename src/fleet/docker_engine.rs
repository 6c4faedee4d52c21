//! A private Docker Engine for the demo and the tests: `dockerd --bridge=none --iptables=false
//! --ip-masq=false` with its data root, exec root, pid file and socket in a temp dir (dockerd
//! starts its own containerd under the exec root), stopped on drop. A tiny image is imported from
//! the `busybox-static` binary (`docker import`, no registry); containers run with
//! `--network none`.
//!
//! The image's `/bin/claude` is a script that exits at once: started in the background by a shell
//! that then `exec`s `sleep`, it becomes a zombie named `claude` that nobody reaps (`sleep` never
//! waits for children). [`DockerClient::agent_with_zombie`] runs exactly that as PID 1;
//! [`DockerClient::make_zombie`] does it inside a running container (the fleet's R-01 recipe),
//! and [`DockerClient::reap_zombies`] kills that parent so the container's init reaps the zombie.
//!
//! This is the *platform's* side (it creates, stops and removes containers): canary's read-only
//! Docker source is `crate::collect::docker`, which must never use this module. Missing
//! `dockerd`, `docker` or `busybox`, or not running as root, is an error naming the install
//! command, never a silent skip.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image every fleet and test container runs.
pub const IMAGE: &str = "canary-test-busybox:1";

/// The same image without `ps`: the fixed exec fails in its containers (a sick container).
pub const IMAGE_WITHOUT_PS: &str = "canary-test-busybox:no-ps";

/// The install hint of the binaries this harness needs.
pub const INSTALL: &str = "apt-get install -y docker.io busybox-static";

/// The label agent containers carry (`platform.docker.agent_label`'s default).
pub const AGENT_LABEL: &str = "trinity.platform=agent";

/// The label of the containers the fleet creates (so it removes only those from an engine it
/// does not own).
pub const FLEET_LABEL: &str = "canary.fleet=1";

/// Where a zombie-making shell writes its pid (so the revert can kill that parent).
const ZOMBIE_PARENT_FILE: &str = "/zombie-parent";

/// How long a fresh engine gets to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the private engine could not start, or a `docker` command failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerEngineError {
    /// A binary the harness needs is not installed.
    #[error("{binary} not found on PATH: install it with `{INSTALL}` (Debian/Ubuntu)")]
    NotFound {
        /// `dockerd`, `docker` or `busybox`.
        binary: &'static str,
    },
    /// dockerd needs root (it mounts, creates namespaces and cgroups).
    #[error(
        "a private dockerd needs root (running as uid {uid}): run as root, or point \
         --docker-endpoint at a running engine"
    )]
    NotRoot {
        /// The effective uid.
        uid: u32,
    },
    /// A temp file or process could not be had.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The engine exited or never answered.
    #[error("dockerd did not become ready: {reason}; log tail:\n{log_tail}")]
    NotReady {
        /// What happened.
        reason: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A `docker` client command failed.
    #[error("docker {args}: {stderr}")]
    Command {
        /// The arguments (never an environment value: the fleet passes none that is secret).
        args: String,
        /// The client's error output.
        stderr: String,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DockerEngineError {
    move |source| DockerEngineError::Io { what, source }
}

/// The `docker` client pointed at one engine (cheap to clone; the recipes run it on a blocking
/// thread).
#[derive(Debug, Clone)]
pub struct DockerClient {
    endpoint: String,
}

/// A running private `dockerd`, stopped (its containers removed first) on drop.
#[derive(Debug)]
pub struct DockerEngine {
    client: DockerClient,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn which(binary: &'static str) -> Result<PathBuf, DockerEngineError> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(binary))
                .find(|p| p.is_file())
        })
        .ok_or(DockerEngineError::NotFound { binary })
}

/// Fails unless this process runs as root (the owner of `/proc/self` is the effective uid).
fn require_root() -> Result<(), DockerEngineError> {
    let uid = std::fs::metadata("/proc/self")
        .map_err(io("reading /proc/self"))?
        .uid();
    if uid == 0 {
        Ok(())
    } else {
        Err(DockerEngineError::NotRoot { uid })
    }
}

impl DockerEngine {
    /// Starts the engine and imports [`IMAGE`] and [`IMAGE_WITHOUT_PS`]; an error names the
    /// install command when a binary is missing.
    pub fn start() -> Result<DockerEngine, DockerEngineError> {
        for binary in ["dockerd", "docker", "busybox"] {
            which(binary)?;
        }
        require_root()?;
        let dir = tempfile::Builder::new()
            .prefix("canary-dockerd-")
            .tempdir()
            .map_err(io("temp directory"))?;
        let path = |name: &str| dir.path().join(name);
        let log = std::fs::File::create(path("dockerd.log")).map_err(io("dockerd log"))?;
        let child = Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg("--shutdown-timeout=1")
            .arg(format!("--data-root={}", path("data").display()))
            .arg(format!("--exec-root={}", path("exec").display()))
            .arg(format!("--pidfile={}", path("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", path("docker.sock").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("dockerd log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("spawning dockerd"))?;
        let mut engine = DockerEngine {
            client: DockerClient {
                endpoint: format!("unix://{}", path("docker.sock").display()),
            },
            child: Some(child),
            dir,
        };
        engine.wait_ready()?;
        let root = engine.dir.path().join("rootfs");
        engine.client.import_images(&root)?;
        Ok(engine)
    }

    /// `unix:///…/docker.sock`, for `platform.docker.endpoint`.
    pub fn endpoint(&self) -> String {
        self.client.endpoint.clone()
    }

    /// The `docker` client for this engine.
    pub fn client(&self) -> &DockerClient {
        &self.client
    }

    /// The engine's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_ready(&mut self) -> Result<(), DockerEngineError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let socket = self.dir.path().join("docker.sock");
        loop {
            if socket.exists()
                && self
                    .client
                    .docker(&["version", "--format", "{{.Server.Version}}"])
                    .is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(DockerEngineError::NotReady {
                    reason: format!("dockerd exited with {status}"),
                    log_tail: self.log_tail(),
                });
            }
            if Instant::now() > deadline {
                return Err(DockerEngineError::NotReady {
                    reason: format!("no answer within {} s", READY_TIMEOUT.as_secs()),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl std::ops::Deref for DockerEngine {
    type Target = DockerClient;

    fn deref(&self) -> &DockerClient {
        &self.client
    }
}

impl DockerClient {
    /// A client for an engine someone else runs (`unix:///path/to/docker.sock`).
    pub fn for_endpoint(endpoint: &str) -> DockerClient {
        DockerClient {
            endpoint: endpoint.to_owned(),
        }
    }

    /// The engine's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("--host").arg(&self.endpoint).args(args);
        cmd
    }

    /// Runs the `docker` client against this engine; its trimmed output.
    pub fn docker(&self, args: &[&str]) -> Result<String, DockerEngineError> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DockerEngineError::NotFound { binary: "docker" },
                _ => DockerEngineError::Io {
                    what: "running docker",
                    source: e,
                },
            })?;
        if !out.status.success() {
            return Err(DockerEngineError::Command {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A root file system of busybox-static and the `claude` script, imported as [`IMAGE`] and
    /// (without `ps`) [`IMAGE_WITHOUT_PS`]. Idempotent: an image already there is kept.
    pub fn import_images(&self, root: &Path) -> Result<(), DockerEngineError> {
        if self.docker(&["image", "inspect", IMAGE]).is_ok()
            && self.docker(&["image", "inspect", IMAGE_WITHOUT_PS]).is_ok()
        {
            return Ok(());
        }
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).map_err(io("image root file system"))?;
        let busybox = which("busybox")?;
        std::fs::copy(&busybox, bin.join("busybox")).map_err(io("copying busybox"))?;
        for applet in ["sh", "ps", "sleep", "cat", "env", "true", "kill"] {
            let link = bin.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link).map_err(io("applet link"))?;
            }
        }
        write_exec(&bin.join("claude"), "#!/bin/sh\nexit 0\n")?;
        self.import(root, IMAGE, &[])?;
        self.import(root, IMAGE_WITHOUT_PS, &["--exclude=./bin/ps"])
    }

    fn import(&self, root: &Path, tag: &str, tar_args: &[&str]) -> Result<(), DockerEngineError> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(tar_args)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io("spawning tar"))?;
        let stdin = tar.stdout.take().map_or_else(Stdio::null, Stdio::from);
        let out = self
            .command(&["import", "-", tag])
            .stdin(stdin)
            .output()
            .map_err(io("docker import"))?;
        let tarred = tar.wait().map_err(io("tar"))?;
        if !tarred.success() || !out.status.success() {
            return Err(DockerEngineError::Command {
                args: format!("import - {tag}"),
                stderr: format!(
                    "{} (tar {tarred})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// Runs a detached container `name` (`--network none`) of [`IMAGE`] with `labels`, `env`
    /// and a shell `script` as its command; returns its id.
    pub fn run(
        &self,
        name: &str,
        labels: &[&str],
        env: &[&str],
        script: &str,
    ) -> Result<String, DockerEngineError> {
        self.run_with(IMAGE, false, name, labels, env, script)
    }

    /// [`DockerClient::run`] with another image.
    pub fn run_image(
        &self,
        image: &str,
        name: &str,
        labels: &[&str],
        env: &[&str],
        script: &str,
    ) -> Result<String, DockerEngineError> {
        self.run_with(image, false, name, labels, env, script)
    }

    /// [`DockerClient::run`]; `init`: Docker's init (`docker-init`) is PID 1, so orphans are
    /// reaped as on a platform whose agent process has a proper parent.
    fn run_with(
        &self,
        image: &str,
        init: bool,
        name: &str,
        labels: &[&str],
        env: &[&str],
        script: &str,
    ) -> Result<String, DockerEngineError> {
        let mut args: Vec<&str> = vec!["run", "-d", "--network", "none", "--name", name];
        if init {
            args.push("--init");
        }
        for l in labels {
            args.extend(["--label", *l]);
        }
        for e in env {
            args.extend(["--env", *e]);
        }
        args.extend([image, "/bin/sh", "-c", script]);
        self.docker(&args)
    }

    /// An agent container (`trinity.platform=agent`) whose PID 1 is `sleep` after starting
    /// `claude` in the background: a zombie `claude` within a moment (waited for).
    pub fn agent_with_zombie(&self, name: &str, env: &[&str]) -> Result<String, DockerEngineError> {
        let id = self.run(
            name,
            &[AGENT_LABEL],
            env,
            "/bin/claude & exec /bin/sleep 100000",
        )?;
        self.wait_for_zombie(name, true)?;
        Ok(id)
    }

    /// A healthy agent container: `sleep` as PID 1, no zombie.
    pub fn healthy_agent(&self, name: &str, env: &[&str]) -> Result<String, DockerEngineError> {
        self.run(name, &[AGENT_LABEL], env, "exec /bin/sleep 100000")
    }

    /// A fleet agent container: Docker's init as PID 1 (which reaps orphans), `sleep` under it.
    pub fn fleet_agent(&self, name: &str, env: &[&str]) -> Result<String, DockerEngineError> {
        self.run_with(
            IMAGE,
            true,
            name,
            &[AGENT_LABEL, FLEET_LABEL],
            env,
            "exec /bin/sleep 100000",
        )
    }

    /// Removes every container [`DockerClient::fleet_agent`] created on this engine.
    pub fn remove_fleet_containers(&self) -> Result<(), DockerEngineError> {
        let ids = self.docker(&["ps", "-aq", "--filter", &format!("label={FLEET_LABEL}")])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        self.docker(&args).map(drop)
    }

    /// Inside the running container `name`: a shell writes its pid, starts `claude` in the
    /// background and `exec`s `sleep`, which never reaps it: a persisting zombie `claude`
    /// (waited for).
    pub fn make_zombie(&self, name: &str) -> Result<(), DockerEngineError> {
        let script =
            format!("echo $$ > {ZOMBIE_PARENT_FILE}; /bin/claude & exec /bin/sleep 100000");
        self.docker(&["exec", "-d", name, "/bin/sh", "-c", &script])?;
        self.wait_for_zombie(name, true)
    }

    /// Kills the parent [`DockerClient::make_zombie`] started: the zombie is reparented to the
    /// container's init, which reaps it (waited for).
    pub fn reap_zombies(&self, name: &str) -> Result<(), DockerEngineError> {
        let script = format!("kill $(cat {ZOMBIE_PARENT_FILE}) && rm {ZOMBIE_PARENT_FILE}");
        self.docker(&["exec", name, "/bin/sh", "-c", &script])?;
        self.wait_for_zombie(name, false)
    }

    /// Waits until `ps` in `name` shows a `Z` `claude` (`present`), or none: proves the fixture,
    /// not canary.
    pub fn wait_for_zombie(&self, name: &str, present: bool) -> Result<(), DockerEngineError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ps = self.docker(&["exec", name, "ps", "-eo", "stat,pid,comm"])?;
            let found = ps
                .lines()
                .any(|l| l.starts_with('Z') && l.trim_end().ends_with(" claude"));
            if found == present {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DockerEngineError::Command {
                    args: format!("exec {name} ps"),
                    stderr: format!(
                        "{} zombie claude after 10 s:\n{ps}",
                        if present { "no" } else { "still a" }
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Removes containers by name or id, whether running or not (absent ones are fine).
    pub fn remove(&self, names: &[&str]) -> Result<(), DockerEngineError> {
        for name in names {
            let exists = self
                .docker(&["ps", "-aq", "--filter", &format!("name=^/{name}$")])?
                .lines()
                .next()
                .is_some();
            if exists {
                self.docker(&["rm", "-f", name])?;
            }
        }
        Ok(())
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // Remove the containers first (fast: SIGKILL), then stop the engine (and its containerd).
        if let Ok(ids) = self.client.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.client.docker(&args);
            }
        }
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_exec(path: &Path, text: &str) -> Result<(), DockerEngineError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(io("writing the claude script"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod of the claude script"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_or_user_names_the_fix() {
        let missing = DockerEngineError::NotFound { binary: "dockerd" }.to_string();
        assert!(
            missing.contains("dockerd") && missing.contains(INSTALL),
            "{missing}"
        );
        let user = DockerEngineError::NotRoot { uid: 1000 }.to_string();
        assert!(user.contains("root") && user.contains("1000"), "{user}");
    }
}
