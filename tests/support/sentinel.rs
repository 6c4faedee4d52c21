//! A Redis Sentinel deployment per test: a primary and a replica (`--replicaof`) from the
//! [`RedisServer`] harness, and three sentinels (`redis-server sentinel.conf --sentinel`, the
//! file generated in each one's temp dir, free loopback ports, a `requirepass`), every process
//! killed on drop; [`Deployment::start_tls`] gives each sentinel a TLS port too (the test CA's
//! server certificate). Fails (never skips) when `redis-server` is missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canary::fleet::redis_server::{RedisServer, free_loopback_port};

use crate::support::tls::TestPki;

/// The monitored master's name.
pub const MASTER: &str = "canarymaster";

/// One sentinel process.
#[derive(Debug)]
pub struct Sentinel {
    child: Option<Child>,
    port: u16,
    /// Its TLS port, when started with one.
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(primary_port: u16, password: &str, pki: Option<&TestPki>) -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("canary-sentinel-")
            .tempdir()
            .expect("temp dir");
        let port = free_loopback_port().expect("free port");
        let conf = dir.path().join("sentinel.conf");
        // A TLS port beside the plain one (the harness and the sentinels' gossip use the plain
        // one); clients need not present a certificate.
        let tls_port = pki.map(|_| free_loopback_port().expect("free port"));
        let tls_conf = match (pki, tls_port) {
            (Some(pki), Some(tls_port)) => {
                for (name, text) in [
                    ("ca.crt", &pki.ca),
                    ("server.crt", &pki.server_cert),
                    ("server.key", &pki.server_key),
                ] {
                    std::fs::write(dir.path().join(name), text).expect("write pki");
                }
                format!(
                    "tls-port {tls_port}
tls-cert-file {d}/server.crt
tls-key-file {d}/server.key
                     tls-ca-cert-file {d}/ca.crt
tls-auth-clients no
",
                    d = dir.path().display()
                )
            }
            _ => String::new(),
        };
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 2000\n\
                 sentinel failover-timeout {MASTER} 10000\n\
                 requirepass {password}\nsentinel sentinel-pass {password}\n{tls_conf}",
                dir = dir.path().display()
            ),
        )
        .expect("sentinel.conf");
        let child = match Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{}",
                canary::fleet::redis_server::RedisServerError::NotFound
            ),
            Err(e) => panic!("spawning redis-server --sentinel: {e}"),
        };
        let mut sentinel = Sentinel {
            child: Some(child),
            port,
            tls_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !authed_ping(port, password) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(sentinel.dir.path().join("sentinel.log"))
                    .unwrap_or_default();
                sentinel.kill();
                panic!("sentinel on {port} never answered; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `localhost:TLS_PORT` (the name the test certificate is valid for).
    pub fn tls_addr(&self) -> String {
        format!(
            "localhost:{}",
            self.tls_port.expect("a sentinel started with TLS")
        )
    }

    /// Kills it now; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.kill();
    }
}

fn authed_ping(port: u16, password: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(format!("AUTH {password}\r\nPING\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(5).any(|w| w == b"+PONG") {
            return true;
        }
    }
    false
}

/// Primary, replica and three sentinels.
#[derive(Debug)]
pub struct Deployment {
    /// The node that starts as the primary.
    pub primary: RedisServer,
    /// The node that starts as its replica.
    pub replica: RedisServer,
    /// The sentinels, in the order canary is configured to ask them.
    pub sentinels: Vec<Sentinel>,
    /// The sentinels' password.
    pub password: String,
}

impl Deployment {
    /// Starts everything and waits until the sentinels see the replica, linked.
    pub fn start(password: &str) -> Deployment {
        Deployment::start_with(password, None)
    }

    /// [`Deployment::start`] with a TLS port on every sentinel, serving `pki`'s certificate.
    pub fn start_tls(password: &str, pki: &TestPki) -> Deployment {
        Deployment::start_with(password, Some(pki))
    }

    fn start_with(password: &str, pki: Option<&TestPki>) -> Deployment {
        let primary = super::redis_server::start();
        let replica = replica_of(&primary);
        let sentinels = (0..3)
            .map(|_| Sentinel::start(primary.port(), password, pki))
            .collect();
        let d = Deployment {
            primary,
            replica,
            sentinels,
            password: password.to_owned(),
        };
        d.wait_for(
            Duration::from_secs(20),
            "sentinels see the linked replica",
            |d| d.sentinels.iter().all(|s| d.replica_known(s)),
        );
        d
    }

    /// `sentinels: [...]` as YAML flow.
    pub fn sentinels_yaml(&self) -> String {
        let addrs: Vec<String> = self.sentinels.iter().map(Sentinel::addr).collect();
        format!("[{}]", addrs.join(", "))
    }

    fn conn(&self, s: &Sentinel) -> Option<redis::Connection> {
        let url = format!("redis://:{}@127.0.0.1:{}", self.password, s.port);
        let client = redis::Client::open(url).ok()?;
        client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    fn replica_known(&self, s: &Sentinel) -> bool {
        let Some(mut conn) = self.conn(s) else {
            return false;
        };
        let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(MASTER)
            .query(&mut conn)
            .unwrap_or_default();
        replicas.iter().any(|r| {
            r.get("master-link-status").map(String::as_str) == Some("ok")
                && r.get("flags").is_some_and(|f| !f.contains("down"))
        })
    }

    /// The master's port as a live sentinel `s` reports it.
    pub fn master_port_seen_by(&self, s: &Sentinel) -> Option<u16> {
        let mut conn = self.conn(s)?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query(&mut conn)
            .ok()?;
        Some(port)
    }

    /// Polls `ok` until it holds; panics with `what` after `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, ok: impl Fn(&Deployment) -> bool) {
        let deadline = Instant::now() + limit;
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `SENTINEL FAILOVER`, then waits until every live sentinel names the old replica and
    /// the old primary replicates from it, caught up.
    pub fn failover(&self) {
        let first = self
            .sentinels
            .iter()
            .find(|s| s.alive())
            .expect("a live sentinel");
        let mut conn = self.conn(first).expect("sentinel connection");
        let _: redis::Value = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
        let new = self.replica.port();
        self.wait_for(
            Duration::from_secs(30),
            "sentinels name the new primary",
            |d| {
                d.sentinels
                    .iter()
                    .filter(|s| s.alive())
                    .all(|s| d.master_port_seen_by(s) == Some(new))
            },
        );
        self.wait_for(
            Duration::from_secs(30),
            "the old primary replicates from the new one",
            |d| {
                let info = info_replication(&d.primary);
                info.contains("role:slave")
                    && info.contains(&format!("master_port:{new}"))
                    && info.contains("master_link_status:up")
            },
        );
    }
}

/// A replica of `primary`, linked and caught up.
pub fn replica_of(primary: &RedisServer) -> RedisServer {
    replica_of_with(primary, Vec::new())
}

/// [`replica_of`] with extra server arguments (ACL users).
pub fn replica_of_with(primary: &RedisServer, extra: Vec<String>) -> RedisServer {
    let port = primary.port();
    let replica = RedisServer::start_with(|_| {
        let mut args = vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            port.to_string(),
        ];
        args.extend(extra.iter().cloned());
        args
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !info_replication(&replica).contains("master_link_status:up") {
        assert!(Instant::now() < deadline, "replica never linked");
        std::thread::sleep(Duration::from_millis(50));
    }
    replica
}

/// `INFO replication` of a test server (empty when it cannot be asked).
pub fn info_replication(server: &RedisServer) -> String {
    let mut conn = super::redis_server::connect(server);
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap_or_default()
}
