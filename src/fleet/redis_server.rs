//! A private `redis-server` process on a free loopback port, for the demo and the tests.
//!
//! No persistence, a temp working directory, and the process is killed when the handle drops,
//! so a crashed test or demo never leaves a server holding a port it is reusing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server gets to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Port races with other processes are rare but possible (the port is free when picked, then
/// released before the server binds it); a new port is tried this many times.
const START_ATTEMPTS: usize = 3;

/// Why a private `redis-server` could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// `redis-server` is not installed.
    #[error(
        "redis-server not found on PATH: install it with `apt-get install redis-server` \
         (Debian/Ubuntu) or `brew install redis`"
    )]
    NotFound,
    /// The temp directory or a free port could not be had, or the process could not be spawned.
    #[error("starting redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// The process started but never answered `PING`.
    #[error("redis-server did not become ready: {reason}; log tail:\n{log_tail}")]
    NotReady {
        /// What happened (exited with a status, or timed out).
        reason: String,
        /// The last lines of its log file.
        log_tail: String,
    },
}

/// A running private `redis-server`. Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Extra `redis-server` arguments (TLS port and files, ACL users), kept for a restart.
    extra: Vec<String>,
}

impl RedisServer {
    /// Spawns `redis-server` on a free 127.0.0.1 port and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer, RedisServerError> {
        RedisServer::start_with(|_| Vec::new())
    }

    /// [`RedisServer::start`] with extra arguments, built from the server's temp directory
    /// (where the caller may have to put files first: certificates, ACL files). The plain port
    /// stays open for the readiness `PING` (a TLS port or ACL users come on top of it).
    pub fn start_with(
        extra: impl Fn(&Path) -> Vec<String>,
    ) -> Result<RedisServer, RedisServerError> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match RedisServer::start_once(&extra) {
                Ok(server) => return Ok(server),
                Err(RedisServerError::NotFound) => return Err(RedisServerError::NotFound),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RedisServerError::NotReady {
            reason: "no attempt made".to_owned(),
            log_tail: String::new(),
        }))
    }

    fn start_once(extra: &impl Fn(&Path) -> Vec<String>) -> Result<RedisServer, RedisServerError> {
        let dir = tempfile::Builder::new().prefix("canary-redis-").tempdir()?;
        let port = free_port()?;
        let extra = extra(dir.path());
        let child = spawn(port, dir.path(), &extra)?;
        let mut server = RedisServer {
            child: Some(child),
            port,
            dir,
            extra,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`], or kills it first),
    /// with an empty data set, and waits until it answers `PING` (outage-then-recovery tests).
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        self.child = Some(spawn(self.port, self.dir.path(), &self.extra)?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), RedisServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.not_ready(format!("no PONG within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_ready(&self, reason: String) -> RedisServerError {
        RedisServerError::NotReady {
            reason,
            log_tail: self.log_tail(20),
        }
    }

    /// The last `lines` lines of the server's log (empty when there is none yet).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let skip = all.len().saturating_sub(lines);
        all.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server now (outage tests); idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already-exited children make kill fail; waiting reaps them either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// The server's temp directory (log, and whatever files the caller put there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A free loopback port (for a TLS port next to the plain one, say).
pub fn free_loopback_port() -> std::io::Result<u16> {
    free_port()
}

/// Spawns `redis-server` on `port` with its files (log, no persistence) in `dir`.
fn spawn(port: u16, dir: &Path, extra: &[String]) -> Result<Child, RedisServerError> {
    let spawned = Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RedisServerError::NotFound),
        Err(e) => Err(e.into()),
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// A raw RESP `PING`: no client library needed to know the server is up.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) => buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_has_the_install_hint() {
        let msg = RedisServerError::NotFound.to_string();
        assert!(msg.contains("redis-server not found on PATH"));
        assert!(msg.contains("apt-get install redis-server"));
        assert!(msg.contains("brew install redis"));
    }
}
