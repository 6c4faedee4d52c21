//! A private PostgreSQL server per test group, and a fresh database per test on it.
//!
//! Tests never skip when PostgreSQL is missing: starting fails with the install command. One
//! server ([`shared`]: initdb and a start cost most of a second) serves the tests that run at the
//! same time; each test gets its own database (`t_<n>`, or the rig's `platform_<n>`) with a
//! platform fixture applied, so tests never see each other's rows. The server stops when the
//! last test holding it ends: nothing outlives the test binary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use canary::fleet::platform_db::{PG_SCHEMA, PG_TYPED_SCHEMA};
use canary::fleet::postgres_server::PostgresServer;

/// Which PostgreSQL fixture a test database gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// None: an empty database.
    Empty,
    /// `tests/fixtures/platform.pg.sql` (text timestamps, integer flags).
    Text,
    /// `tests/fixtures/platform.pg-typed.sql` (`timestamptz`, `boolean`).
    Typed,
}

/// Starts a private server; panics with the harness's message (install hint or log tail).
pub fn start() -> PostgresServer {
    match PostgresServer::start() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// The test group's server: the running one if a test still holds it, else a new one.
pub fn shared() -> Arc<PostgresServer> {
    static SHARED: Mutex<Weak<PostgresServer>> = Mutex::new(Weak::new());
    // Held while starting, so tests arriving together wait for one server instead of racing.
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(server) = slot.upgrade() {
        return server;
    }
    let server = Arc::new(start());
    *slot = Arc::downgrade(&server);
    server
}

/// A fresh database `t_<n>` on `server` with `fixture` applied; its URL.
pub fn database(server: &PostgresServer, fixture: Fixture) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let url = server
        .create_database(&name)
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    let schema = match fixture {
        Fixture::Empty => None,
        Fixture::Text => Some(PG_SCHEMA),
        Fixture::Typed => Some(PG_TYPED_SCHEMA),
    };
    if let Some(sql) = schema {
        server
            .admin_batch(&name, sql)
            .unwrap_or_else(|e| panic!("applying the fixture to {name}: {e}"));
    }
    url
}

/// Runs `f` with a sync client on `url`, on a thread of its own (the sync client starts its own
/// runtime, which must not happen on a thread driving async tests).
pub fn with_client<T: Send>(url: &str, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client =
                postgres::Client::connect(url, postgres::NoTls).expect("connect to the test db");
            f(&mut client)
        })
        .join()
        .expect("postgres client thread")
    })
}

/// `SELECT count(*) FROM <table>` (+ an optional `WHERE`).
pub fn count(url: &str, table_and_where: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table_and_where}");
    with_client(url, move |c| {
        c.query_one(sql.as_str(), &[]).expect("count").get(0)
    })
}

/// Whether a process with this pid exists (`/proc/<pid>`).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
