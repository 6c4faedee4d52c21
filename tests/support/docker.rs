//! A private Docker Engine per test: `dockerd --bridge=none --iptables=false --ip-masq=false`
//! with its data root, exec root, pid file and socket in a temp dir (dockerd starts its own
//! containerd under the exec root), stopped on drop. A tiny image is imported from the
//! `busybox-static` binary (`docker import`, no registry); containers run with `--network none`.
//!
//! The image's `/bin/claude` is a script that exits at once: started in the background by a shell
//! that then `exec`s `sleep` as PID 1, it becomes a zombie named `claude` that nobody reaps
//! (`sleep` never waits for children). `agent_with_zombie` runs exactly that.
//!
//! Fails (never skips) when `dockerd`, `docker` or `busybox` is missing, with the install hint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image every test container runs.
pub const IMAGE: &str = "canary-test-busybox:1";

/// The same image without `ps`: the fixed exec fails in its containers (a sick container).
pub const IMAGE_WITHOUT_PS: &str = "canary-test-busybox:no-ps";

/// The install hint of the binaries this harness needs.
pub const INSTALL: &str = "apt-get install -y docker.io busybox-static";

/// A running private `dockerd`.
#[derive(Debug)]
pub struct DockerEngine {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn require(binary: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()));
    assert!(
        found,
        "{binary} not found on PATH: install it with `{INSTALL}` (Debian/Ubuntu)"
    );
}

impl DockerEngine {
    /// Starts the engine and imports [`IMAGE`]; panics (with the install hint) when a binary
    /// is missing or the engine does not answer within 60 s.
    pub fn start() -> DockerEngine {
        for binary in ["dockerd", "docker", "busybox"] {
            require(binary);
        }
        let dir = tempfile::Builder::new()
            .prefix("canary-dockerd-")
            .tempdir()
            .expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        let log = std::fs::File::create(path("dockerd.log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg("--shutdown-timeout=1")
            .arg(format!("--data-root={}", path("data").display()))
            .arg(format!("--exec-root={}", path("exec").display()))
            .arg(format!("--pidfile={}", path("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", path("docker.sock").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dockerd failed to start ({e}): install it with `{INSTALL}`")
            });
        let mut engine = DockerEngine {
            dir,
            child: Some(child),
        };
        engine.wait_ready();
        engine.import_image();
        engine
    }

    /// `unix:///…/docker.sock`, for `platform.docker.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The engine's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.socket().exists() {
                let out = self.docker_output(&["version", "--format", "{{.Server.Version}}"]);
                if out.status.success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("dockerd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A root file system of busybox-static and the `claude` script, imported as [`IMAGE`].
    fn import_image(&self) {
        let root = self.dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        let busybox = which("busybox");
        std::fs::copy(&busybox, bin.join("busybox")).expect("copy busybox");
        for applet in ["sh", "ps", "sleep", "cat", "env", "true"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
        write_exec(&bin.join("claude"), "#!/bin/sh\nexit 0\n");
        self.import(&root, IMAGE, &[]);
        self.import(&root, IMAGE_WITHOUT_PS, &["--exclude=./bin/ps"]);
    }

    fn import(&self, root: &Path, tag: &str, tar_args: &[&str]) {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(tar_args)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let out = self
            .docker_command(&["import", "-", tag])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import");
        assert!(
            tar.wait().expect("tar").success(),
            "tar of the rootfs failed"
        );
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("--host").arg(self.endpoint()).args(args);
        cmd
    }

    fn docker_output(&self, args: &[&str]) -> std::process::Output {
        self.docker_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker client")
    }

    /// Runs the `docker` client against this engine; panics with its stderr on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a detached container `name` (`--network none`) of [`IMAGE`] with `labels`, `env`
    /// and a shell `script` as its command; returns its id.
    pub fn run(&self, name: &str, labels: &[&str], env: &[&str], script: &str) -> String {
        self.run_image(IMAGE, name, labels, env, script)
    }

    /// [`DockerEngine::run`] with another image.
    pub fn run_image(
        &self,
        image: &str,
        name: &str,
        labels: &[&str],
        env: &[&str],
        script: &str,
    ) -> String {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--network".into(),
            "none".into(),
            "--name".into(),
            name.into(),
        ];
        for l in labels {
            args.push("--label".into());
            args.push((*l).into());
        }
        for e in env {
            args.push("--env".into());
            args.push((*e).into());
        }
        args.extend([image.into(), "/bin/sh".into(), "-c".into(), script.into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&refs)
    }

    /// An agent container (`trinity.platform=agent`) whose PID 1 is `sleep` after starting
    /// `claude` in the background: a zombie `claude` within a moment.
    pub fn agent_with_zombie(&self, name: &str, env: &[&str]) -> String {
        let id = self.run(
            name,
            &["trinity.platform=agent"],
            env,
            "/bin/claude & exec /bin/sleep 100000",
        );
        self.wait_for_zombie(name);
        id
    }

    /// A healthy agent container: `sleep` as PID 1, no zombie.
    pub fn healthy_agent(&self, name: &str, env: &[&str]) -> String {
        self.run(
            name,
            &["trinity.platform=agent"],
            env,
            "exec /bin/sleep 100000",
        )
    }

    /// Waits until `ps` in `name` shows a `Z` `claude` (proves the fixture, not canary).
    pub fn wait_for_zombie(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ps = self.docker(&["exec", name, "ps", "-eo", "stat,pid,comm"]);
            if ps
                .lines()
                .any(|l| l.starts_with('Z') && l.trim_end().ends_with(" claude"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no zombie claude in {name}:\n{ps}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // Remove the containers first (fast: SIGKILL), then stop the engine (and its containerd).
        let ids = self.docker_output(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker_output(&args);
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

fn which(binary: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(binary))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{binary} not found on PATH: install it with `{INSTALL}`"))
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
