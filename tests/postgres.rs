//! The PostgreSQL platform's write side, on a real private server (`support::postgres`):
//!
//! - the server starts, answers, and leaves no process or directory behind when dropped;
//! - both PostgreSQL fixtures apply (text timestamps; `timestamptz` + `boolean`);
//! - `canary fleet --seed-only --database-url … --init` seeds rows (text schema), and the seeder
//!   fills the typed schema too; `canary fleet --database-url` runs a fleet with faults on the
//!   typed schema and leaves it consistent;
//! - the simulated fleet runs on both schemas without a write error;
//! - every fault recipe injects and reverts on both schemas (the E-02 reversal is checked in the
//!   rows), so each recipe's SQL is valid PostgreSQL against either column typing.
//!
//! Detection on PostgreSQL (the table-driven suite of `tests/fleet.rs`) needs the read side.

use std::process::Command;
use std::time::Duration;

use canary::fleet::faults::{self, RECIPES, Recipe};
use canary::fleet::platform_db::PlatformTarget;
use canary::fleet::rig::{Backend, Rig};
use canary::fleet::seed::{SeedSpec, seed};
use canary::fleet::sim::FleetSpec;

use crate::support::postgres::{self as pg, Fixture};
use crate::support::redis_server;

#[test]
fn the_server_starts_answers_and_leaves_nothing_behind() {
    let server = pg::start();
    let pid = server
        .postmaster_pid()
        .expect("postmaster.pid names the server");
    assert!(pg::process_exists(pid), "postmaster {pid} is not running");
    let dir = server.dir().to_path_buf();
    let one: i32 = pg::with_client(&server.url(), |c| {
        c.query_one("SELECT 1", &[]).expect("SELECT 1").get(0)
    });
    assert_eq!(one, 1);
    assert!(server.url().starts_with("postgres://postgres@127.0.0.1:"));
    assert_ne!(server.port(), 5432, "never the system PostgreSQL's port");
    drop(server);
    // The postmaster is gone (its backends go with it) and so is the temp directory.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pg::process_exists(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !pg::process_exists(pid),
        "postmaster {pid} outlived the handle"
    );
    assert!(!dir.exists(), "{} outlived the handle", dir.display());
}

#[test]
fn both_fixtures_apply_with_their_column_types() {
    let server = pg::shared();
    for (fixture, started_at, enabled) in [
        (Fixture::Text, "text", "bigint"),
        (Fixture::Typed, "timestamp with time zone", "boolean"),
    ] {
        let url = pg::database(&server, fixture);
        let (tables, started, flag): (i64, String, String) = pg::with_client(&url, |c| {
            let tables = c
                .query_one(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                    &[],
                )
                .expect("tables")
                .get(0);
            let type_of = |c: &mut ::postgres::Client, table: &str, column: &str| -> String {
                c.query_one(
                    "SELECT data_type FROM information_schema.columns \
                     WHERE table_name = $1 AND column_name = $2",
                    &[&table, &column],
                )
                .expect("column")
                .get(0)
            };
            let started = type_of(c, "schedule_executions", "started_at");
            let flag = type_of(c, "agent_schedules", "enabled");
            (tables, started, flag)
        });
        let sqlite = include_str!("fixtures/platform.sql");
        let in_sqlite = |what: &str| sqlite.matches(what).count() as i64;
        assert_eq!(
            tables,
            in_sqlite("CREATE TABLE"),
            "{fixture:?}: every table of platform.sql"
        );
        assert_eq!(started, started_at, "{fixture:?}");
        assert_eq!(flag, enabled, "{fixture:?}");
        // The indexes came along too.
        assert_eq!(
            pg::count(
                &url,
                "pg_indexes WHERE schemaname = 'public' AND indexname LIKE 'idx_%'"
            ),
            in_sqlite("CREATE INDEX"),
            "{fixture:?}"
        );
    }
}

#[test]
fn fleet_seed_only_with_init_seeds_a_postgres_platform() {
    let server = pg::shared();
    let redis = redis_server::start();
    let url = pg::database(&server, Fixture::Empty);
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["fleet", "--seed-only", "--init", "--database-url", &url])
        .args(["--redis-url", &redis.url()])
        .args(["--agents", "20", "--rows", "3000", "--slots", "40"])
        .args(["--cascade-rows", "700"])
        .output()
        .expect("run canary fleet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(&url) && !stderr.contains(&url),
        "the URL is never printed"
    );
    assert_eq!(pg::count(&url, "agent_ownership"), 20);
    assert_eq!(pg::count(&url, "schedule_executions"), 3000);
    assert_eq!(
        pg::count(
            &url,
            "schedule_executions WHERE status = 'running' AND lease_expires_at IS NULL"
        ),
        40
    );
    let cascade: i64 = [
        "agent_schedules",
        "agent_sharing",
        "agent_skills",
        "agent_tags",
        "agent_shared_files",
        "agent_public_links",
        "agent_reports",
        "chat_sessions",
        "operator_queue",
        "access_requests",
        "mcp_api_keys",
    ]
    .iter()
    .map(|t| pg::count(&url, t))
    .sum();
    assert_eq!(cascade, 700);
}

#[test]
fn fleet_drives_a_postgres_platform_and_leaves_it_consistent() {
    let server = pg::shared();
    let redis = redis_server::start();
    let url = pg::database(&server, Fixture::Typed);
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["fleet", "--init", "--database-url", &url])
        .args(["--redis-url", &redis.url()])
        .args(["--agents", "4", "--rate", "600", "--duration", "4s"])
        .args(["--faults", "e02-reversal,l03-orphan", "--fault-after", "1s"])
        .output()
        .expect("run canary fleet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(&url) && !stderr.contains(&url),
        "the URL is never printed"
    );
    assert!(stdout.contains("inject e02-reversal"), "{stdout}");
    assert!(
        stdout.contains("reverted: e02-reversal, l03-orphan"),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 write errors"), "{stdout}");
    assert!(pg::count(&url, "schedule_executions") > 0);
    // Reverted and drained: nothing open, the reversed row is terminal again.
    assert_eq!(
        pg::count(
            &url,
            "schedule_executions WHERE status IN ('queued', 'running')"
        ),
        0
    );
    assert_eq!(
        pg::count(&url, "schedule_executions WHERE status = 'pending_retry'"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeder_fills_the_typed_schema() {
    let server = pg::shared();
    let redis = redis_server::start();
    let url = pg::database(&server, Fixture::Typed);
    let spec = SeedSpec {
        agents: 10,
        rows: 2_500,
        slots: 20,
        cascade_rows: 300,
    };
    let report = seed(
        PlatformTarget::postgres(url.clone()),
        &redis.url(),
        &spec,
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("seeding: {e}"));
    assert_eq!(report.cascade_rows, 300);
    assert_eq!(pg::count(&url, "schedule_executions"), 2_500);
    // Text in every platform shape became instants: nothing lands in the future or at epoch.
    assert_eq!(
        pg::count(
            &url,
            "schedule_executions WHERE queued_at < now() - interval '60 days' \
             OR queued_at > now() + interval '1 hour'"
        ),
        0
    );
    assert!(pg::count(&url, "agent_schedules WHERE NOT enabled") > 0);
}

/// Runs the fleet for a moment on `backend` (a server of the rig's own, as in the demo): rows
/// are written, no write fails.
async fn fleet_runs_cleanly_on(backend: Backend) {
    let spec = FleetSpec {
        agents: 6,
        rate_per_min: 600.0,
        ..FleetSpec::default()
    };
    let mut rig = Rig::start_on(backend, &spec, &[])
        .await
        .unwrap_or_else(|e| panic!("starting the {backend:?} platform: {e}"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = rig.stop().await.expect("stopping the fleet");
    assert_eq!(stats.errors, 0, "{backend:?}: {stats}");
    assert!(
        stats.queued > 0 && stats.started > 0,
        "{backend:?}: {stats}"
    );
    let url = rig.database_url().expect("a postgres rig").to_owned();
    let rows = pg::count(&url, "schedule_executions");
    assert!(rows > 0, "{backend:?}: no execution rows");
    // Stopping left nothing open.
    assert_eq!(
        pg::count(
            &url,
            "schedule_executions WHERE status IN ('queued', 'running') AND agent_name LIKE 'fleet-%'"
        ),
        0,
        "{backend:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_on_the_text_schema() {
    fleet_runs_cleanly_on(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_on_the_typed_schema() {
    fleet_runs_cleanly_on(Backend::PostgresTyped).await;
}

/// Injects and reverts every recipe that needs no Docker engine, one at a time, on `backend`.
async fn every_recipe_injects_and_reverts_on(backend: Backend) {
    let spec = FleetSpec {
        agents: 3,
        rate_per_min: 60.0,
        ..FleetSpec::default()
    };
    let typed = backend == Backend::PostgresTyped;
    // The container recipes need a Docker engine: tests/docker.rs runs them on a private one.
    let recipes: Vec<&'static dyn Recipe> = RECIPES
        .iter()
        .copied()
        .filter(|r| !r.meta().needs_docker)
        .collect();
    let mut rig = Rig::start_on_postgres(pg::shared(), typed, &spec, &recipes)
        .await
        .unwrap_or_else(|e| panic!("starting the {backend:?} platform: {e}"));
    let url = rig.database_url().expect("a postgres rig").to_owned();
    let e02 = faults::find("e02-reversal").expect("the E-02 recipe");
    let e02_row = format!(
        "schedule_executions WHERE id = '{}-done'",
        rig.injector.site(e02)
    );
    for recipe in &recipes {
        let name = recipe.meta().name;
        let what = rig
            .injector
            .inject(*recipe)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: injecting {name}: {e}"));
        assert!(!what.is_empty(), "{name}");
        if name == "e02-reversal" {
            assert_eq!(
                pg::count(&url, &format!("{e02_row} AND status = 'pending_retry'")),
                1
            );
        }
        rig.injector
            .revert(*recipe)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: reverting {name}: {e}"));
        if name == "e02-reversal" {
            assert_eq!(
                pg::count(&url, &format!("{e02_row} AND status = 'success'")),
                1
            );
        }
    }
    let stats = rig.stop().await.expect("stopping the fleet");
    assert_eq!(stats.errors, 0, "{backend:?}: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipe_injects_and_reverts_on_the_text_schema() {
    every_recipe_injects_and_reverts_on(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipe_injects_and_reverts_on_the_typed_schema() {
    every_recipe_injects_and_reverts_on(Backend::PostgresTyped).await;
}
