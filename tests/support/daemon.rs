//! A real `canary run` process: spawned from the built binary with a config file, its stderr
//! captured to a file (printed when a test fails), stopped with a real SIGTERM, killed on drop
//! so a failing test never leaves a daemon behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `canary run`.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `canary run --config <config>`; stderr goes to `<dir>/daemon.log`.
    pub fn start(config: &Path, dir: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let stderr = File::create(&log).expect("daemon log file");
        let child = Command::new(env!("CARGO_BIN_EXE_canary"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("CANARY_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn canary run");
        Daemon { child, log }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill(1)`: no signal crate needed for one call).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL (a crash, an OOM kill) and reaps the process.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL canary run");
        self.child.wait().expect("reap canary run");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, at most `deadline`; panics (with the log) past it.
    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < deadline,
                "canary run still running after {deadline:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `ready()` holds, at most `deadline`; panics (with the log) past it.
    pub fn wait_for(&mut self, deadline: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "canary run exited ({status}) before {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port that was free a moment ago (bind :0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
