//! A private PostgreSQL server on a free loopback port, for `canary demo --platform postgres`
//! and the tests: the sibling of [`crate::fleet::redis_server`].
//!
//! It owns one temp directory (data directory, unix socket directory, logs), a cluster made by
//! `initdb` there, and one `postgres` child process, stopped (`pg_ctl stop -m immediate`, then
//! killed if it lingers) when the handle drops. PostgreSQL refuses to run as root, so when canary
//! runs as root (CI, containers) every binary runs as the unprivileged `postgres` OS user through
//! `runuser`, and the temp directory is handed to that user. It must never touch any other
//! cluster (a system PostgreSQL on 5432 is none of its business): it only ever talks to the port
//! it picked and the data directory it created.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server gets to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server gets before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A port picked free can be taken before the server binds it; a new port is tried this often.
const START_ATTEMPTS: usize = 3;
/// The superuser `initdb` creates (trust authentication, loopback only).
const SUPERUSER: &str = "postgres";
/// The OS user the binaries run as when canary runs as root.
const OS_USER: &str = "postgres";

/// Why a private PostgreSQL could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PostgresServerError {
    /// `initdb`/`pg_ctl`/`postgres` are not installed.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in \
         /usr/lib/postgresql/*/bin: install them with `apt-get install postgresql` \
         (Debian/Ubuntu) or `brew install postgresql`"
    )]
    NotFound,
    /// Running as root, but there is no unprivileged `postgres` OS user to run the server as.
    #[error(
        "running as root, and PostgreSQL refuses root: no `postgres` OS user to run it as \
         (`apt-get install postgresql` creates it)"
    )]
    NoOsUser,
    /// The temp directory or a free port could not be had, or a process could not be spawned.
    #[error("starting postgresql: {0}")]
    Io(#[from] std::io::Error),
    /// `initdb` failed.
    #[error("initdb failed ({status}); log tail:\n{log_tail}")]
    Initdb {
        /// Its exit status.
        status: String,
        /// The last lines of its output.
        log_tail: String,
    },
    /// The server started but never accepted connections.
    #[error("postgres did not become ready: {reason}; log tail:\n{log_tail}")]
    NotReady {
        /// What happened (exited with a status, or timed out).
        reason: String,
        /// The last lines of its log file.
        log_tail: String,
    },
    /// An administrative statement (creating a database) failed.
    #[error("postgres admin statement: {0}")]
    Admin(String),
}

/// Where the binaries are, and who runs them.
#[derive(Debug, Clone)]
struct Binaries {
    dir: PathBuf,
    /// `(uid, gid)` of the `postgres` OS user when running as root.
    run_as: Option<(u32, u32)>,
}

impl Binaries {
    /// A command running `tool` from the binaries' directory, as the `postgres` user if needed.
    fn command(&self, tool: &str) -> Command {
        let program = self.dir.join(tool);
        match self.run_as {
            Some(_) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", OS_USER, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

/// A running private PostgreSQL. Stopped on drop.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bins: Binaries,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates a cluster in a temp directory and starts `postgres` on a free 127.0.0.1 port;
    /// returns once it accepts connections.
    pub fn start() -> Result<PostgresServer, PostgresServerError> {
        let bins = find_binaries()?;
        let dir = tempfile::Builder::new().prefix("canary-pg-").tempdir()?;
        if let Some((uid, gid)) = bins.run_as {
            // The server's files must belong to the user it runs as.
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        std::fs::create_dir(dir.path().join("sock"))?;
        if let Some((uid, gid)) = bins.run_as {
            std::os::unix::fs::chown(dir.path().join("sock"), Some(uid), Some(gid))?;
        }
        initdb(&bins, dir.path())?;
        let mut server = PostgresServer {
            child: None,
            port: 0,
            bins,
            dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(PostgresServerError::NotReady {
            reason: "no attempt made".to_owned(),
            log_tail: String::new(),
        }))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn spawn_and_wait(&mut self) -> Result<(), PostgresServerError> {
        let log = File::create(self.log_path())?;
        let log_err = log.try_clone()?;
        let child = self
            .bins
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir())
            // Loopback only; a throw-away cluster needs no durability.
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), PostgresServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.accepting() {
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
                self.stop();
                return Err(self.not_ready(format!("not ready within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster says `ready` in its pid file (PostgreSQL 10+) and the port answers.
    fn accepting(&self) -> bool {
        let pid_file =
            std::fs::read_to_string(self.data_dir().join("postmaster.pid")).unwrap_or_default();
        let ready = pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        ready && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }

    fn not_ready(&self, reason: String) -> PostgresServerError {
        PostgresServerError::NotReady {
            reason,
            log_tail: self.log_tail(20),
        }
    }

    /// The last `lines` lines of the server's log (empty when there is none yet).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication: no password).
    pub fn url(&self) -> String {
        self.admin_url("postgres")
    }

    /// The superuser's URL for database `db`.
    pub fn admin_url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id, while it runs (read from its pid file).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Runs `sql` (one or more statements, no results) as the superuser on database `db`.
    ///
    /// The sync client starts its own runtime, which must not happen on a thread that drives
    /// async tasks, so it runs on a short-lived thread of its own (callable from anywhere).
    pub fn admin_batch(&self, db: &str, sql: &str) -> Result<(), PostgresServerError> {
        let url = self.admin_url(db);
        let sql = sql.to_owned();
        let run = move || -> Result<(), postgres::Error> {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
            client.batch_execute(&sql)
        };
        std::thread::scope(|s| s.spawn(run).join())
            .map_err(|_| PostgresServerError::Admin("the admin thread panicked".to_owned()))?
            .map_err(|e| PostgresServerError::Admin(e.to_string()))
    }

    /// Creates database `name` (a plain identifier) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, PostgresServerError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(PostgresServerError::Admin(format!(
                "database name {name:?} must be lowercase letters, digits and _"
            )));
        }
        self.admin_batch("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.admin_url(name))
    }

    /// Stops the server now (fast, no checkpoint: the cluster is thrown away); idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // pg_ctl signals the postmaster itself (the child may be runuser, which would not
            // pass a kill on), and the postmaster takes its backends down with it.
            let _ = self
                .bins
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "10"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts the stopped server again on the same port and data (a platform database that comes
    /// back after an outage); returns once it accepts connections.
    pub fn restart(&mut self) -> Result<(), PostgresServerError> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Makes the server re-read its configuration files (`pg_ctl reload`: a signal, so it works
    /// even when `pg_hba.conf` no longer admits the superuser over TCP).
    pub fn reload(&self) -> Result<(), PostgresServerError> {
        let status = self
            .bins
            .command("pg_ctl")
            .arg("reload")
            .arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(PostgresServerError::Admin(format!(
                "pg_ctl reload: {status}"
            )))
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The temp directory (data and socket directories, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `initdb` into `dir/data`: trust authentication for the `postgres` superuser, UTF-8, C locale.
fn initdb(bins: &Binaries, dir: &Path) -> Result<(), PostgresServerError> {
    let log_path = dir.join("initdb.log");
    let log = File::create(&log_path)?;
    let status = bins
        .command("initdb")
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        // Durability buys nothing for a throw-away cluster; skipping fsync saves seconds.
        .arg("--no-sync")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PostgresServerError::NotFound);
        }
        Err(e) => return Err(e.into()),
    };
    if !status.success() {
        return Err(PostgresServerError::Initdb {
            status: status.to_string(),
            log_tail: tail(&log_path, 20),
        });
    }
    Ok(())
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: on PATH, else the highest version
/// under `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them off PATH). As root, also the
/// `postgres` OS user to run them as.
fn find_binaries() -> Result<Binaries, PostgresServerError> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| complete(d));
    let dir = match on_path {
        Some(d) => d,
        None => highest_versioned_dir(Path::new("/usr/lib/postgresql"))
            .filter(|d| complete(d))
            .ok_or(PostgresServerError::NotFound)?,
    };
    let run_as = if running_as_root() {
        Some(os_user(OS_USER).ok_or(PostgresServerError::NoOsUser)?)
    } else {
        None
    };
    Ok(Binaries { dir, run_as })
}

/// `<root>/<highest numeric version>/bin`.
fn highest_versioned_dir(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key: Vec<u64> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((key, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// Whether this process's effective uid is 0 (read from `/proc`; no libc call needed).
fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// `(uid, gid)` of OS user `name`, from `/etc/passwd`.
fn os_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of a file (empty when it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_has_the_install_hint() {
        let msg = PostgresServerError::NotFound.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("/usr/lib/postgresql/*/bin"), "{msg}");
    }

    #[test]
    fn the_highest_version_wins() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "13", "notaversion"] {
            std::fs::create_dir_all(dir.path().join(v).join("bin")).unwrap();
        }
        assert_eq!(
            highest_versioned_dir(dir.path()),
            Some(dir.path().join("15").join("bin"))
        );
    }
}
