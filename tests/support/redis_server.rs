//! A private `redis-server` per test, plus a plain synchronous client to arrange data with.
//!
//! Tests never skip when `redis-server` is missing: starting fails with the install hint.

use canary::fleet::redis_server::RedisServer;

/// Starts a private server; panics with the harness's message (install hint or log tail).
pub fn start() -> RedisServer {
    match RedisServer::start() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A synchronous connection for arranging data and reading `INFO`.
pub fn connect(server: &RedisServer) -> redis::Connection {
    let client = redis::Client::open(server.url()).expect("redis url");
    client
        .get_connection()
        .expect("connect to the test redis-server")
}

/// `calls` of one command from `INFO commandstats` (0 when never called).
pub fn command_calls(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls is a number"))
}
