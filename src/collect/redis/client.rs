//! The read-only Redis clients, each listing every command it can send (there is no generic
//! command method, so canary cannot write to the platform's Redis by accident), counting its
//! round trips and describing driver errors without the URL or its credentials:
//!
//! - [`ReadOnlyRedis`], a data node: `PING`, `SCAN`, pipelines of `ZRANGE` / `PTTL` / `HGET` /
//!   `GET` ([`ReadBatch`]; in a cluster, `ASKING` before each command of a pipeline that follows
//!   an ASK redirect), `INFO replication` (replica reads only) and `CLUSTER SLOTS` (cluster
//!   reads only);
//! - [`ReadOnlySentinel`], a sentinel: `SENTINEL get-master-addr-by-name` and
//!   `SENTINEL replicas`, nothing else.
//!
//! It must not interpret slot replies (see `reply`), know the platform's keys (see `keys`) nor
//! decide which node to read (see `route`).

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, Value};

use crate::config::Secret;
use crate::config::platform::{PlatformConfig, redact_url};

/// A data node or sentinel address as the sentinels report it (`host:port`; not a secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct NodeAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host:port` (`[v6]:port` too).
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
        (!host.is_empty()).then(|| NodeAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<NodeAddr> for String {
    fn from(addr: NodeAddr) -> String {
        addr.to_string()
    }
}

/// The driver's client for `cfg`: the URL's connection info, then the ACL user and the password
/// file (which win over the URL's), then TLS: `rediss://` verifies the server against the
/// system roots or `redis_tls.ca_file`, with an optional client certificate; only an explicit
/// `insecure_skip_verify` turns verification off. The password read from its file is added to
/// the scrubber, so no error can echo it.
///
/// `base_url` is `redis_url` or `redis_replica_url`; `at` (an address from the sentinels)
/// replaces its host and port.
fn build_client(
    cfg: &PlatformConfig,
    base_url: &str,
    at: Option<&NodeAddr>,
    scrubber: &mut Scrubber,
) -> Result<Client, RedisSourceError> {
    use redis::{ConnectionAddr, IntoConnectionInfo};

    let tls = &cfg.redis_tls;
    let is_tls = base_url.starts_with("rediss://");
    // The driver reads "skip verification" off the URL's fragment.
    let url = if is_tls && tls.insecure_skip_verify && !base_url.contains('#') {
        format!("{base_url}#insecure")
    } else {
        base_url.to_owned()
    };
    let mut info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| scrubber.describe("redis_url", &e))?;
    if let Some(at) = at {
        let addr = match info.addr().clone() {
            ConnectionAddr::Tcp(_, _) => ConnectionAddr::Tcp(at.host.clone(), at.port),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: at.host.clone(),
                port: at.port,
                insecure,
                tls_params,
            },
            _ => {
                return Err(RedisSourceError::Connection(
                    "redis_url: a node named by the sentinels needs a redis:// or rediss:// URL"
                        .to_owned(),
                ));
            }
        };
        info = info.set_addr(addr);
    }
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &cfg.redis_username {
        settings = settings.set_username(user);
    }
    if let Some(path) = &cfg.redis_password_file {
        let password = Secret::from_file(path).map_err(|e| {
            RedisSourceError::Connection(format!(
                "platform.redis_password_file {}: {e}",
                path.display()
            ))
        })?;
        scrubber.add(password.expose());
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings);
    if !is_tls {
        return Client::open(info).map_err(|e| scrubber.describe("redis_url", &e));
    }
    tls_client(info, tls, scrubber)
}

/// The driver's client for a TLS connection `info` with `tls`'s CA and client certificate
/// (none: the system roots and no client certificate).
fn tls_client(
    info: redis::ConnectionInfo,
    tls: &crate::config::platform::RedisTls,
    scrubber: &mut Scrubber,
) -> Result<Client, RedisSourceError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            RedisSourceError::Connection(format!(
                "platform.redis_tls.{key} {}: {e}",
                path.display()
            ))
        })
    };
    let files = tls.ca_file.is_some() || tls.client_cert_file.is_some();
    if !files {
        return Client::open(info).map_err(|e| scrubber.describe("redis_tls", &e));
    }
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("client_cert_file", cert)?,
            client_key: read("client_key_file", key)?,
        }),
        _ => None,
    };
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| scrubber.describe("redis_tls", &e))
}

/// Why the Redis source could not be read. Messages never contain the URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSourceError {
    /// The configured key patterns cannot be used.
    #[error("invalid key pattern: {0}")]
    Pattern(String),
    /// Connecting or talking to Redis failed.
    #[error("{0}")]
    Connection(String),
    /// Redis answered something a read command never answers (a protocol-level surprise).
    #[error("unexpected reply to {0}")]
    Protocol(&'static str),
}

/// Removes the URL and its credentials from driver error text.
#[derive(Clone)]
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// Scrubs only what is added to it (a sentinel connection: no URL).
    fn bare() -> Scrubber {
        Scrubber {
            secrets: Vec::new(),
        }
    }

    fn new(url: &str) -> Scrubber {
        let mut secrets = vec![url.to_owned(), redact_url(url)];
        let after_scheme = url
            .find("://")
            .and_then(|i| url.get(i + 3..))
            .unwrap_or(url);
        let host_and_rest = match after_scheme.rsplit_once('@') {
            Some((userinfo, rest)) => {
                secrets.push(userinfo.to_owned());
                secrets.extend(userinfo.split(':').map(str::to_owned));
                rest
            }
            None => after_scheme,
        };
        secrets.push(
            host_and_rest
                .split('/')
                .next()
                .unwrap_or(host_and_rest)
                .to_owned(),
        );
        secrets.retain(|s| s.len() >= 3);
        // Longest first, so a URL is removed whole before its parts are looked for.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber { secrets }
    }

    /// Also removes `secret` (a password read from a file) from every message.
    fn add(&mut self, secret: &str) {
        if secret.len() >= 3 {
            self.secrets.push(secret.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        // Anything URL-shaped left over (a driver echoing a normalised form) goes too.
        let words: Vec<String> = out
            .split(' ')
            .map(|w| {
                if w.contains("://") {
                    "<redacted>".to_owned()
                } else {
                    w.to_owned()
                }
            })
            .collect();
        let joined = words.join(" ");
        match joined.char_indices().nth(160) {
            Some((at, _)) => format!("{}…", joined.get(..at).unwrap_or(&joined)),
            None => joined,
        }
    }

    /// A short, secret-free description of a driver error.
    fn describe(&self, context: &str, e: &redis::RedisError) -> RedisSourceError {
        let what = if e.is_connection_refusal() {
            "connection refused".to_owned()
        } else if e.is_timeout() {
            "timed out".to_owned()
        } else if e.kind() == ErrorKind::AuthenticationFailed {
            "authentication failed".to_owned()
        } else if e.kind() == ErrorKind::InvalidClientConfig {
            "invalid redis_url".to_owned()
        } else if e.is_connection_dropped() {
            "connection lost".to_owned()
        } else if let Some(code) = e.code() {
            format!("server error {}", self.scrub(code))
        } else {
            self.scrub(&e.to_string())
        };
        RedisSourceError::Connection(format!("{context}: {what}"))
    }
}

/// A Redis connection that can only read, and counts its round trips.
///
/// There is deliberately no generic command method: every command it can send is listed here,
/// so canary cannot write to the platform's Redis by accident.
pub struct ReadOnlyRedis {
    conn: MultiplexedConnection,
    scrubber: Scrubber,
    round_trips: u32,
}

impl fmt::Debug for ReadOnlyRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlyRedis")
            .field("round_trips", &self.round_trips)
            .finish()
    }
}

impl ReadOnlyRedis {
    /// Connects to the platform's Redis as configured (URL, ACL user, password file, TLS) with
    /// explicit connect and response timeouts, so a dead Redis fails fast.
    pub async fn connect(cfg: &PlatformConfig) -> Result<ReadOnlyRedis, RedisSourceError> {
        Self::connect_node(cfg, &cfg.redis_url, None).await
    }

    /// Connects to a data node with `cfg`'s credentials and TLS settings: `base_url`
    /// (`redis_url` or `redis_replica_url`), at `at` instead of the URL's host and port when
    /// the sentinels named the node.
    pub async fn connect_node(
        cfg: &PlatformConfig,
        base_url: &str,
        at: Option<&NodeAddr>,
    ) -> Result<ReadOnlyRedis, RedisSourceError> {
        let mut scrubber = Scrubber::new(base_url);
        let client = build_client(cfg, base_url, at, &mut scrubber)?;
        Self::connect_client(
            client,
            scrubber,
            cfg.redis_connect_timeout,
            cfg.redis_response_timeout,
        )
        .await
    }

    /// Connects to `url` alone (no ACL user, password file or TLS files): the tests' entry.
    pub async fn connect_url(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<ReadOnlyRedis, RedisSourceError> {
        let scrubber = Scrubber::new(url);
        let client = Client::open(url).map_err(|e| scrubber.describe("redis_url", &e))?;
        Self::connect_client(client, scrubber, connect_timeout, response_timeout).await
    }

    async fn connect_client(
        client: Client,
        scrubber: Scrubber,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<ReadOnlyRedis, RedisSourceError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        // The driver's own timeout covers the handshake; this outer one is a backstop in case a
        // step of it is not covered.
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(connect_timeout + response_timeout, attempt).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(scrubber.describe("connect", &e)),
            Err(_) => {
                return Err(RedisSourceError::Connection(
                    "connect: timed out".to_owned(),
                ));
            }
        };
        Ok(ReadOnlyRedis {
            conn,
            scrubber,
            round_trips: 0,
        })
    }

    /// Round trips made so far (each `SCAN` page, `PING`, `INFO` or pipeline is one), counted
    /// from [`ReadOnlyRedis::count_from`]'s start.
    pub fn round_trips(&self) -> u32 {
        self.round_trips
    }

    /// Sets the count to `n`: the round trips spent finding this node (asking the sentinels,
    /// `INFO replication` on either node, this one's included), so the collection's count is
    /// one number and nothing is counted twice.
    pub fn count_from(&mut self, n: u32) {
        self.round_trips = n;
    }

    /// `INFO replication`, parsed (replica reads only; the ACL then needs `+info`).
    pub async fn info_replication(&mut self) -> Result<ReplicationInfo, RedisSourceError> {
        self.round_trips += 1;
        let reply: Value = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("INFO replication", &e))?;
        let text = match reply {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::VerbatimString { text, .. } => text,
            Value::SimpleString(s) => s,
            _ => return Err(RedisSourceError::Protocol("INFO replication")),
        };
        Ok(ReplicationInfo::parse(&text))
    }

    /// `PING`.
    pub async fn ping(&mut self) -> Result<(), RedisSourceError> {
        self.round_trips += 1;
        let reply: Value = redis::cmd("PING")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("PING", &e))?;
        match reply {
            Value::SimpleString(_) | Value::Okay | Value::BulkString(_) => Ok(()),
            _ => Err(RedisSourceError::Protocol("PING")),
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count` page: the next cursor and raw key bytes.
    pub async fn scan_page(
        &mut self,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<(u64, Vec<Vec<u8>>), RedisSourceError> {
        self.round_trips += 1;
        let reply: Value = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("SCAN", &e))?;
        let Value::Array(parts) = reply else {
            return Err(RedisSourceError::Protocol("SCAN"));
        };
        let mut parts = parts.into_iter();
        let (Some(cursor), Some(Value::Array(keys))) = (parts.next(), parts.next()) else {
            return Err(RedisSourceError::Protocol("SCAN"));
        };
        let cursor = match cursor {
            Value::BulkString(b) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
        .ok_or(RedisSourceError::Protocol("SCAN"))?;
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Value::BulkString(b) => Some(b),
                Value::SimpleString(s) => Some(s.into_bytes()),
                _ => None,
            })
            .collect();
        Ok((cursor, keys))
    }

    /// Every key matching `pattern`, in SCAN's order; SCAN may return a key twice, so the caller
    /// sorts and deduplicates what it keeps (`sort_dedup`), when it needs it (the slot keys at
    /// once, the tens of thousands of metadata keys later, off the path the SQL read waits on).
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: u32,
    ) -> Result<Vec<Vec<u8>>, RedisSourceError> {
        let mut keys = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.scan_page(cursor, pattern, count).await?;
            keys.extend(page);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Sends a batch of read commands as one pipeline (one round trip). Per-command server
    /// errors (e.g. `WRONGTYPE`, a cluster's `MOVED`) come back in place as
    /// [`Value::ServerError`]; only a connection-level failure is an `Err`.
    pub async fn run(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        self.run_pipeline(batch, false).await
    }

    /// [`ReadOnlyRedis::run`] with `ASKING` before each command (one round trip): following a
    /// cluster's ASK redirect.
    pub async fn run_asking(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        self.run_pipeline(batch, true).await
    }

    async fn run_pipeline(
        &mut self,
        batch: &ReadBatch,
        asking: bool,
    ) -> Result<Vec<Value>, RedisSourceError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.round_trips += 1;
        let replies: Vec<Value> = if asking {
            batch.pipeline_asking().query_async(&mut self.conn).await
        } else {
            batch.pipeline().query_async(&mut self.conn).await
        }
        .map_err(|e| self.scrubber.describe("pipeline", &e))?;
        if replies.len() != batch.len() {
            return Err(RedisSourceError::Protocol("pipeline"));
        }
        Ok(replies)
    }

    /// `CLUSTER SLOTS` (one round trip): the raw reply, parsed by `cluster` (the ACL then needs
    /// `+cluster|slots`).
    pub async fn cluster_slots(&mut self) -> Result<Value, RedisSourceError> {
        self.round_trips += 1;
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("CLUSTER SLOTS", &e))
    }
}

/// Sorts `keys` and drops repeats: the set SCAN pages add up to, in order (one sort of the
/// whole list rather than a tree insert per key).
pub(super) fn sort_dedup<T: Ord>(keys: &mut Vec<T>) {
    keys.sort_unstable();
    keys.dedup();
}

/// The fields of `INFO replication` canary uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// `role`: `master` or `slave`.
    pub role: String,
    /// `master_replid`: the replication history this node is in (a replica shares its
    /// primary's).
    pub master_replid: String,
    /// `master_repl_offset`: on a primary, how far its replication stream has got.
    pub master_repl_offset: Option<i64>,
    /// `slave_repl_offset` (replica): how much of that stream it has processed.
    pub slave_repl_offset: Option<i64>,
    /// `master_link_status` (replica): `up` or `down`.
    pub master_link_status: Option<String>,
    /// `master_last_io_seconds_ago` (replica; -1 while the link is down).
    pub master_last_io_seconds_ago: Option<i64>,
    /// `master_host:master_port` (replica).
    pub master: Option<String>,
}

impl ReplicationInfo {
    /// Parses `key:value` lines; unknown and malformed lines are ignored.
    pub fn parse(text: &str) -> ReplicationInfo {
        let mut info = ReplicationInfo::default();
        let (mut host, mut port) = (None, None);
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let number = || value.parse::<i64>().ok();
            match key {
                "role" => info.role = value.to_owned(),
                "master_replid" => info.master_replid = value.to_owned(),
                "master_repl_offset" => info.master_repl_offset = number(),
                "slave_repl_offset" => info.slave_repl_offset = number(),
                "master_link_status" => info.master_link_status = Some(value.to_owned()),
                "master_last_io_seconds_ago" => info.master_last_io_seconds_ago = number(),
                "master_host" => host = Some(value.to_owned()),
                "master_port" => port = Some(value.to_owned()),
                _ => {}
            }
        }
        if let (Some(host), Some(port)) = (host, port) {
            info.master = Some(format!("{host}:{port}"));
        }
        info
    }
}

/// A connection to one sentinel that can only ask where a master and its replicas are
/// (`SENTINEL get-master-addr-by-name`, `SENTINEL replicas`), and counts its round trips.
pub struct ReadOnlySentinel {
    conn: MultiplexedConnection,
    scrubber: Scrubber,
    round_trips: u32,
}

impl fmt::Debug for ReadOnlySentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlySentinel")
            .field("round_trips", &self.round_trips)
            .finish()
    }
}

/// A replica as a sentinel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelReplica {
    /// Its address.
    pub addr: NodeAddr,
    /// `flags` (e.g. `slave`, `slave,s_down`, `slave,disconnected`).
    pub flags: String,
    /// `master-link-status` (`ok` or `err`).
    pub master_link_status: String,
}

impl SentinelReplica {
    /// The sentinel sees it up and linked to its primary.
    pub fn healthy(&self) -> bool {
        let bad = ["s_down", "o_down", "disconnected"];
        self.master_link_status == "ok" && !self.flags.split(',').any(|f| bad.contains(&f))
    }
}

impl ReadOnlySentinel {
    /// Connects to the sentinel at `addr` (plain TCP, or TLS verified with `tls` when given)
    /// with the sentinels' ACL user and password (`password`, already read from its file, is
    /// scrubbed from every message).
    pub async fn connect(
        addr: &NodeAddr,
        username: Option<&str>,
        password: Option<&str>,
        tls: Option<&crate::config::platform::RedisTls>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<ReadOnlySentinel, RedisSourceError> {
        let mut scrubber = Scrubber::bare();
        if let Some(password) = password {
            scrubber.add(password);
        }
        use redis::IntoConnectionInfo;
        let at = match tls {
            None => redis::ConnectionAddr::Tcp(addr.host.clone(), addr.port),
            Some(tls) => redis::ConnectionAddr::TcpTls {
                host: addr.host.clone(),
                port: addr.port,
                insecure: tls.insecure_skip_verify,
                tls_params: None,
            },
        };
        let info = at
            .into_connection_info()
            .map_err(|e| scrubber.describe("sentinel", &e))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = username {
            settings = settings.set_username(user);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        let client = match tls {
            None => Client::open(info).map_err(|e| scrubber.describe("sentinel", &e))?,
            Some(tls) => tls_client(info, tls, &mut scrubber)?,
        };
        let redis =
            ReadOnlyRedis::connect_client(client, scrubber, connect_timeout, response_timeout)
                .await?;
        Ok(ReadOnlySentinel {
            conn: redis.conn,
            scrubber: redis.scrubber,
            round_trips: 0,
        })
    }

    /// Round trips made so far.
    pub fn round_trips(&self) -> u32 {
        self.round_trips
    }

    /// One round trip: `SENTINEL get-master-addr-by-name <name>`, and with `replicas` also
    /// `SENTINEL replicas <name>` in the same pipeline. `Ok(None)` when the sentinel does not
    /// know the name.
    pub async fn master(
        &mut self,
        name: &str,
        replicas: bool,
    ) -> Result<Option<(NodeAddr, Vec<SentinelReplica>)>, RedisSourceError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name);
        if replicas {
            pipe.cmd("SENTINEL").arg("replicas").arg(name);
        }
        self.round_trips += 1;
        let replies: Vec<Value> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("SENTINEL", &e))?;
        let mut replies = replies.into_iter();
        let master = match replies.next() {
            Some(Value::Nil) => return Ok(None),
            Some(Value::Array(parts)) => {
                let parts: Vec<String> = parts.into_iter().filter_map(text).collect();
                match parts.as_slice() {
                    [host, port] => NodeAddr::parse(&format!("{host}:{port}")),
                    _ => None,
                }
            }
            _ => None,
        }
        .ok_or(RedisSourceError::Protocol(
            "SENTINEL get-master-addr-by-name",
        ))?;
        let listed = match replies.next() {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries.into_iter().filter_map(replica).collect(),
            Some(_) => return Err(RedisSourceError::Protocol("SENTINEL replicas")),
        };
        Ok(Some((master, listed)))
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// One entry of `SENTINEL replicas`: a flat field/value list (RESP2) or a map (RESP3).
fn replica(entry: Value) -> Option<SentinelReplica> {
    let pairs: Vec<(String, String)> = match entry {
        Value::Array(items) => {
            let items: Vec<String> = items.into_iter().filter_map(text).collect();
            items
                .chunks(2)
                .filter_map(|c| match c {
                    [k, v] => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect()
        }
        Value::Map(items) => items
            .into_iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => return None,
    };
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    Some(SentinelReplica {
        addr: NodeAddr::parse(&format!("{}:{}", get("ip")?, get("port")?))?,
        flags: get("flags").unwrap_or_default(),
        master_link_status: get("master-link-status").unwrap_or_default(),
    })
}

/// A pipeline builder restricted to read commands.
///
/// Each command is encoded once, as it is queued, into the driver's own command type (sized up
/// front: one buffer for its bytes and one for its argument bounds), so sending the batch is one
/// pass over ready bytes. The key stays the first argument, so a cluster read can split the batch
/// by hash slot (see `cluster`).
pub struct ReadBatch {
    pipe: Pipeline,
}

impl fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBatch")
            .field("len", &self.pipe.len())
            .finish()
    }
}

impl Default for ReadBatch {
    fn default() -> Self {
        ReadBatch::new()
    }
}

/// The key of a queued read (its first argument after the name): the hash slot it decides is
/// the node a cluster read sends it to.
pub(super) fn command_key(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().nth(1) {
        Some(redis::Arg::Simple(key)) => key,
        _ => &[],
    }
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> ReadBatch {
        ReadBatch::with_capacity(0)
    }

    /// An empty batch with room for `commands` reads: the large batches (a read per slot set,
    /// two per slot member) know their size, and growing a vector of 60 000 commands step by
    /// step copies it a dozen times.
    pub fn with_capacity(commands: usize) -> ReadBatch {
        let mut pipe = redis::Pipeline::with_capacity(commands);
        // Per-command errors (`WRONGTYPE`, a cluster's `MOVED`) come back in place.
        pipe.ignore_errors();
        ReadBatch { pipe }
    }

    /// Commands queued so far.
    pub fn len(&self) -> usize {
        self.pipe.len()
    }

    /// No command queued.
    pub fn is_empty(&self) -> bool {
        self.pipe.is_empty()
    }

    /// A command `name key …` with room for `more` further arguments of `more_bytes` bytes in
    /// all; `name` is one of the read commands below (the only callers), so nothing else can be
    /// built.
    fn start(name: &'static str, key: &[u8], more: usize, more_bytes: usize) -> Cmd {
        let mut cmd = Cmd::with_capacity(2 + more, name.len() + key.len() + more_bytes);
        cmd.arg(name).arg(key);
        cmd
    }

    fn push(&mut self, cmd: Cmd) -> usize {
        self.pipe.add_command(cmd);
        self.pipe.len() - 1
    }

    /// The queued commands (a cluster read regroups them per node).
    pub(super) fn commands(&self) -> impl Iterator<Item = &Cmd> {
        self.pipe.cmd_iter()
    }

    /// A batch of `cmds` (one node's share of a cluster batch).
    pub(super) fn of<'a>(cmds: impl IntoIterator<Item = &'a Cmd>) -> ReadBatch {
        let cmds = cmds.into_iter();
        let mut batch = ReadBatch::with_capacity(cmds.size_hint().0);
        for cmd in cmds {
            batch.pipe.add_command(cmd.clone());
        }
        batch
    }

    /// The driver pipeline, as queued.
    fn pipeline(&self) -> &Pipeline {
        &self.pipe
    }

    /// The driver pipeline with `ASKING` before each command (a cluster's ASK redirect during a
    /// reshard: the target serves the key only for the next command); only the commands' own
    /// replies are kept.
    fn pipeline_asking(&self) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in self.pipe.cmd_iter() {
            pipe.cmd("ASKING").ignore();
            pipe.add_command(c.clone());
        }
        pipe
    }

    /// `ZRANGE key 0 -1 WITHSCORES`; returns the reply's index.
    pub fn zrange_withscores(&mut self, key: &[u8]) -> usize {
        let mut cmd = Self::start("ZRANGE", key, 3, 14);
        cmd.arg("0").arg("-1").arg("WITHSCORES");
        self.push(cmd)
    }

    /// `ZRANGE key 0 n-1 WITHSCORES` (the `n` lowest scores); returns the reply's index.
    pub fn zrange_withscores_first(&mut self, key: &[u8], n: u32) -> usize {
        let mut cmd = Self::start("ZRANGE", key, 3, 21);
        // The stop index goes out as its decimal text, as a string argument would.
        cmd.arg("0").arg(n.saturating_sub(1)).arg("WITHSCORES");
        self.push(cmd)
    }

    /// `ZSCORE key member`; returns the reply's index.
    pub fn zscore(&mut self, key: &[u8], member: &[u8]) -> usize {
        let mut cmd = Self::start("ZSCORE", key, 1, member.len());
        cmd.arg(member);
        self.push(cmd)
    }

    /// `ZCARD key`; returns the reply's index.
    pub fn zcard(&mut self, key: &[u8]) -> usize {
        self.push(Self::start("ZCARD", key, 0, 0))
    }

    /// `PTTL key`; returns the reply's index.
    pub fn pttl(&mut self, key: &[u8]) -> usize {
        self.push(Self::start("PTTL", key, 0, 0))
    }

    /// `HGET key field`; returns the reply's index.
    pub fn hget(&mut self, key: &[u8], field: &[u8]) -> usize {
        let mut cmd = Self::start("HGET", key, 1, field.len());
        cmd.arg(field);
        self.push(cmd)
    }

    /// `GET key`; returns the reply's index.
    pub fn get(&mut self, key: &[u8]) -> usize {
        self.push(Self::start("GET", key, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_malformed_url_is_reported_without_echoing_it() {
        let url = "redis://:pa55word@[::1:6379/0";
        let err = ReadOnlyRedis::connect_url(url, Duration::from_secs(1), Duration::from_secs(1))
            .await
            .expect_err("malformed URL");
        let text = err.to_string();
        assert!(text.starts_with("redis_url: "), "{text}");
        assert!(
            !text.contains("pa55word") && !text.contains("[::1"),
            "{text}"
        );
    }

    #[test]
    fn replication_info_and_addresses_parse() {
        let info = ReplicationInfo::parse(
            "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6380\r\n\
             master_link_status:up\r\nmaster_last_io_seconds_ago:3\r\nslave_repl_offset:1234\r\n\
             master_replid:abc\r\nmaster_repl_offset:1234\r\n",
        );
        assert_eq!(info.role, "slave");
        assert_eq!(info.master.as_deref(), Some("127.0.0.1:6380"));
        assert_eq!(info.master_link_status.as_deref(), Some("up"));
        assert_eq!(info.master_last_io_seconds_ago, Some(3));
        assert_eq!(info.slave_repl_offset, Some(1234));
        assert_eq!(info.master_replid, "abc");
        assert_eq!(
            NodeAddr::parse("[::1]:26379").map(|a| a.to_string()),
            Some("[::1]:26379".to_owned())
        );
        assert_eq!(NodeAddr::parse("host:0"), None);
        assert_eq!(NodeAddr::parse("host"), None);
        let flat = |pairs: &[&str]| {
            Value::Array(
                pairs
                    .iter()
                    .map(|p| Value::BulkString(p.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let up = replica(flat(&[
            "ip",
            "10.0.0.2",
            "port",
            "6379",
            "flags",
            "slave",
            "master-link-status",
            "ok",
        ]))
        .expect("parsed");
        assert!(up.healthy());
        let down = replica(flat(&[
            "ip",
            "10.0.0.3",
            "port",
            "6379",
            "flags",
            "slave,s_down",
            "master-link-status",
            "ok",
        ]))
        .expect("parsed");
        assert!(!down.healthy());
    }

    #[test]
    fn scrubber_removes_url_and_password() {
        let s = Scrubber::new("redis://user:hunter22@10.1.2.3:6380/0");
        let out =
            s.scrub("failed redis://user:hunter22@10.1.2.3:6380/0 pw hunter22 at 10.1.2.3:6380");
        assert!(!out.contains("hunter22"), "{out}");
        assert!(!out.contains("10.1.2.3:6380"), "{out}");
        assert!(!out.contains("redis://"), "{out}");
    }
}
