//! The read-only Redis client: a connection wrapper whose only commands are reads (there is no
//! generic command method, so canary cannot write to the platform's Redis by accident), which
//! counts its round trips and describes driver errors without the URL or its credentials.
//!
//! It must not interpret replies (see `reply`) nor know the platform's keys (see `keys`).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, Pipeline, Value};

use crate::config::Secret;
use crate::config::platform::{PlatformConfig, redact_url};

/// The driver's client for `cfg`: the URL's connection info, then the ACL user and the password
/// file (which win over the URL's), then TLS: `rediss://` verifies the server against the
/// system roots or `redis_tls.ca_file`, with an optional client certificate; only an explicit
/// `insecure_skip_verify` turns verification off. The password read from its file is added to
/// the scrubber, so no error can echo it.
fn build_client(cfg: &PlatformConfig, scrubber: &mut Scrubber) -> Result<Client, RedisSourceError> {
    use redis::IntoConnectionInfo;

    let tls = &cfg.redis_tls;
    let is_tls = cfg.redis_url.starts_with("rediss://");
    // The driver reads "skip verification" off the URL's fragment.
    let url = if is_tls && tls.insecure_skip_verify && !cfg.redis_url.contains('#') {
        format!("{}#insecure", cfg.redis_url)
    } else {
        cfg.redis_url.clone()
    };
    let mut info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| scrubber.describe("redis_url", &e))?;
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
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            RedisSourceError::Connection(format!(
                "platform.redis_tls.{key} {}: {e}",
                path.display()
            ))
        })
    };
    let files = tls.ca_file.is_some() || tls.client_cert_file.is_some();
    if !is_tls || !files {
        return Client::open(info).map_err(|e| scrubber.describe("redis_url", &e));
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
        let url = cfg.redis_url.as_str();
        let mut scrubber = Scrubber::new(url);
        let client = build_client(cfg, &mut scrubber)?;
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

    /// Round trips made so far (each `SCAN` page, `PING` or pipeline is one).
    pub fn round_trips(&self) -> u32 {
        self.round_trips
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

    /// Every key matching `pattern`, deduplicated (SCAN may return a key twice).
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: u32,
    ) -> Result<BTreeSet<Vec<u8>>, RedisSourceError> {
        let mut keys = BTreeSet::new();
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
    /// errors (e.g. `WRONGTYPE`) come back in place as [`Value::ServerError`]; only a
    /// connection-level failure is an `Err`.
    pub async fn run(&mut self, batch: &ReadBatch) -> Result<Vec<Value>, RedisSourceError> {
        if batch.len == 0 {
            return Ok(Vec::new());
        }
        self.round_trips += 1;
        let replies: Vec<Value> = batch
            .pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.scrubber.describe("pipeline", &e))?;
        if replies.len() != batch.len {
            return Err(RedisSourceError::Protocol("pipeline"));
        }
        Ok(replies)
    }
}

/// A pipeline builder restricted to read commands.
pub struct ReadBatch {
    pipe: Pipeline,
    len: usize,
}

impl fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBatch").field("len", &self.len).finish()
    }
}

impl Default for ReadBatch {
    fn default() -> Self {
        ReadBatch::new()
    }
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> ReadBatch {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        ReadBatch { pipe, len: 0 }
    }

    /// Commands queued so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No command queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, name: &str, args: &[&[u8]]) -> usize {
        let cmd = self.pipe.cmd(name);
        for arg in args {
            cmd.arg(*arg);
        }
        self.len += 1;
        self.len - 1
    }

    /// `ZRANGE key 0 -1 WITHSCORES`; returns the reply's index.
    pub fn zrange_withscores(&mut self, key: &[u8]) -> usize {
        self.push("ZRANGE", &[key, b"0", b"-1", b"WITHSCORES"])
    }

    /// `ZRANGE key 0 n-1 WITHSCORES` (the `n` lowest scores); returns the reply's index.
    pub fn zrange_withscores_first(&mut self, key: &[u8], n: u32) -> usize {
        let stop = n.saturating_sub(1).to_string();
        self.push("ZRANGE", &[key, b"0", stop.as_bytes(), b"WITHSCORES"])
    }

    /// `ZSCORE key member`; returns the reply's index.
    pub fn zscore(&mut self, key: &[u8], member: &[u8]) -> usize {
        self.push("ZSCORE", &[key, member])
    }

    /// `ZCARD key`; returns the reply's index.
    pub fn zcard(&mut self, key: &[u8]) -> usize {
        self.push("ZCARD", &[key])
    }

    /// `PTTL key`; returns the reply's index.
    pub fn pttl(&mut self, key: &[u8]) -> usize {
        self.push("PTTL", &[key])
    }

    /// `HGET key field`; returns the reply's index.
    pub fn hget(&mut self, key: &[u8], field: &[u8]) -> usize {
        self.push("HGET", &[key, field])
    }

    /// `GET key`; returns the reply's index.
    pub fn get(&mut self, key: &[u8]) -> usize {
        self.push("GET", &[key])
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
    fn scrubber_removes_url_and_password() {
        let s = Scrubber::new("redis://user:hunter22@10.1.2.3:6380/0");
        let out =
            s.scrub("failed redis://user:hunter22@10.1.2.3:6380/0 pw hunter22 at 10.1.2.3:6380");
        assert!(!out.contains("hunter22"), "{out}");
        assert!(!out.contains("10.1.2.3:6380"), "{out}");
        assert!(!out.contains("redis://"), "{out}");
    }
}
