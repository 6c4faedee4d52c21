//! End-to-end detection: the simulated fleet (`canary::fleet::sim`) on a real `redis-server` and
//! a real SQLite file or a real private PostgreSQL, watched by the daemon's sequencer, alerts
//! delivered to a real local webhook.
//!
//! - One test per fault recipe (`canary::fleet::faults`) and backend (SQLite; `on_postgres::`
//!   the PostgreSQL twin schema with text timestamps; `on_postgres_typed::` `timestamptz` and
//!   `boolean` columns): baseline green → inject → red within
//!   the recipe's bound (one cycle; H-01: its confirmation interval) → exactly one `fired` alert
//!   at the webhook → revert → green → exactly one `resolved` alert, and no other transition.
//! - A clean-churn soak: a busy fleet, hundreds of executions a minute with every race window of
//!   the protocol open, watched for ≥ 200 back-to-back cycles: zero violations (on SQLite, and on
//!   PostgreSQL with `timestamptz`/`boolean` columns).

use std::time::{Duration, Instant};

use canary::fleet::faults::{self, RECIPES, Recipe};
use canary::fleet::rig::Backend;
use canary::fleet::sim::FleetSpec;
use canary_invariants::catalog;

use crate::support::fleet::{FleetEnv, alert_of, describe, red, transitions};

/// The fleet around each recipe: a few agents churning slowly, long executions (slots stay
/// live), so the recipe's site is one busy platform's corner rather than an empty database.
fn recipe_fleet() -> FleetSpec {
    FleetSpec {
        agents: 4,
        rate_per_min: 60.0,
        utilization: 0.9,
        ..FleetSpec::default()
    }
}

/// Runs one recipe end to end on `backend`; every assertion names the recipe.
async fn detect(name: &str, backend: Backend) {
    let recipe = recipe_named(name);
    let env = FleetEnv::start_on(backend, &recipe_fleet(), &[recipe]).await;
    detect_with(name, env, &format!("{backend:?}")).await;
}

/// The registry's recipe `name` (panics naming it when absent).
pub(crate) fn recipe_named(name: &str) -> &'static dyn Recipe {
    faults::find(name).unwrap_or_else(|| panic!("no recipe {name}"))
}

/// The fleet a recipe runs in (for callers that start their own rig).
pub(crate) fn recipe_fleet_spec() -> FleetSpec {
    recipe_fleet()
}

/// Runs recipe `name` end to end on a started `env` (its rig provisioned for the recipe):
/// baseline green → inject → red, one fired alert → revert → green, one resolved alert.
/// `on` names the setup in every assertion.
pub(crate) async fn detect_with(name: &str, mut env: FleetEnv, on: &str) {
    let recipe = recipe_named(name);
    let meta = recipe.meta();
    assert!(
        catalog::find(meta.invariant).is_some(),
        "[{name}] {} is not in the catalog",
        meta.invariant
    );
    let inv = meta.invariant;
    let tag = format!("[{name} → {inv} on {on}]");

    let baseline = env.cycle().await;
    assert!(
        red(&baseline).is_empty() && baseline.sources_unavailable.is_empty(),
        "{tag} baseline not green:\n{}",
        describe(&baseline)
    );

    let what = env.rig.injector.inject(recipe).await;
    let what = what.unwrap_or_else(|e| panic!("{tag} inject: {e}"));
    let mut detected = None;
    for n in 1..=meta.cycles_to_detect {
        if n > 1 {
            // H-01: the suspicion must have lasted its confirmation interval (1 s here).
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let result = env.cycle().await;
        let fired = transitions(&result);
        if red(&result).contains(&inv.to_owned()) {
            assert_eq!(
                fired,
                vec![(inv.to_owned(), "fired".to_owned())],
                "{tag} the red cycle must fire exactly this invariant ({what}):\n{}",
                describe(&result)
            );
            for v in result.violations.iter().map(|v| &v.violation) {
                if v.invariant_id == inv {
                    assert_eq!(
                        (v.signal.as_str(), v.severity),
                        (meta.signal, meta.severity),
                        "{tag} the recipe's signal and severity ({what}):\n{}",
                        describe(&result)
                    );
                }
            }
            detected = Some(n);
            break;
        }
        assert!(
            fired.is_empty(),
            "{tag} cycle {n} after the injection: unexpected transitions {fired:?}:\n{}",
            describe(&result)
        );
    }
    let n = detected.unwrap_or_else(|| {
        panic!(
            "{tag} not red within {} cycle(s) of: {what}",
            meta.cycles_to_detect
        )
    });
    let expected_n = if meta.cycles_to_detect > 1 { 2 } else { 1 };
    assert_eq!(n, expected_n, "{tag} detected on cycle {n}");
    let alerts = env.alerts(1, Duration::from_secs(10)).await;
    assert_eq!(alerts.len(), 1, "{tag} one fired alert");
    assert_eq!(
        alert_of(&alerts[0]),
        (inv.to_owned(), "fired".to_owned()),
        "{tag}"
    );

    let repaired = env.rig.injector.revert(recipe).await;
    repaired.unwrap_or_else(|e| panic!("{tag} revert: {e}"));
    let green = env.cycle().await;
    assert!(
        red(&green).is_empty() && green.sources_unavailable.is_empty(),
        "{tag} not green after the revert:\n{}",
        describe(&green)
    );
    assert_eq!(
        transitions(&green),
        vec![(inv.to_owned(), "resolved".to_owned())],
        "{tag} the revert must resolve exactly this invariant"
    );
    let alerts = env.alerts(2, Duration::from_secs(10)).await;
    assert_eq!(
        alert_of(&alerts[1]),
        (inv.to_owned(), "resolved".to_owned()),
        "{tag}"
    );

    let after = env.cycle().await;
    assert!(
        transitions(&after).is_empty() && red(&after).is_empty(),
        "{tag} a later cycle changed something:\n{}",
        describe(&after)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.hook.received().len(),
        2,
        "{tag} exactly two alerts in all"
    );
    let stats = env.stop().await;
    assert_eq!(stats.errors, 0, "{tag} fleet write errors: {stats}");
}

/// One test per recipe and backend, named after it (`s01_leak` runs `s01-leak` on SQLite,
/// `on_postgres::s01_leak` and `on_postgres_typed::s01_leak` on PostgreSQL): the list is the only place a recipe is named here,
/// and a recipe of the registry missing from it fails
/// `every_recipe_has_a_test_and_every_invariant_a_recipe`.
macro_rules! recipe_tests {
    ($($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                detect(&stringify!($test).replace('_', "-"), Backend::Sqlite).await;
            }
        )*

        /// The same suite on a private PostgreSQL (`platform.pg.sql`: text timestamps), watched
        /// through a role that may only `SELECT`.
        mod on_postgres {
            use canary::fleet::rig::Backend;

            $(
                #[tokio::test]
                async fn $test() {
                    super::detect(&stringify!($test).replace('_', "-"), Backend::Postgres).await;
                }
            )*
        }

        /// The same suite on a private PostgreSQL with `timestamptz` and `boolean` columns
        /// (`platform.pg-typed.sql`).
        mod on_postgres_typed {
            use canary::fleet::rig::Backend;

            $(
                #[tokio::test]
                async fn $test() {
                    let name = stringify!($test).replace('_', "-");
                    super::detect(&name, Backend::PostgresTyped).await;
                }
            )*
        }

        #[test]
        fn every_recipe_has_a_test_and_every_invariant_a_recipe() {
            let tested = [$(stringify!($test).replace('_', "-")),*];
            // Recipes that need a Docker engine: proved on a private dockerd in tests/docker.rs
            // (`every_container_recipe_has_a_test_there`).
            for r in RECIPES.iter().filter(|r| !r.meta().needs_docker) {
                let name = r.meta().name;
                assert!(tested.iter().any(|t| t == name), "recipe {name} has no test");
            }
            for name in &tested {
                assert!(faults::find(name).is_some(), "test {name} names no recipe");
            }
            for id in catalog::ids() {
                assert!(
                    faults::for_invariant(id).next().is_some(),
                    "invariant {id} has no fault recipe"
                );
            }
            for r in RECIPES {
                assert!(
                    catalog::find(r.meta().invariant).is_some(),
                    "recipe {} names {}, which is not in the catalog",
                    r.meta().name,
                    r.meta().invariant
                );
            }
        }
    };
}

recipe_tests! {
    s01_leak,
    s02_overbook,
    s03_short_ttl,
    s04_orphan_meta,
    s07_stuck_sentinel,
    e01_stuck_running,
    e02_reversal,
    e03_no_completed_at,
    e04_bad_metadata,
    e05_no_session,
    e06_overdue_schedule,
    b01_accessor_drift,
    b02_queued_idle,
    b05_stale_queued,
    g03_clock_skew,
    g04_leaked_secret,
    g05_malformed_slot,
    h01_blind,
    l03_orphan,
}

/// ≥ 200 back-to-back cycles over a busy fleet with every race window open: claims in both
/// orders (slot first and row first, a few ms apart), finishes, pull-claimed leases reaped,
/// drain sentinels, queues, the heartbeat, every timestamp shape. Nothing may be red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_churn_soak_has_zero_violations() {
    soak(Backend::Sqlite).await;
}

/// The soak on PostgreSQL with `timestamptz` and `boolean` columns (the recipe suite covers the
/// text-timestamp schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_churn_soak_has_zero_violations_on_postgres_typed() {
    soak(Backend::PostgresTyped).await;
}

#[allow(clippy::print_stderr, reason = "the soak reports its counts")]
async fn soak(backend: Backend) {
    const CYCLES: usize = 220;
    let spec = FleetSpec {
        agents: 30,
        rate_per_min: 1500.0,
        utilization: 0.8,
        lease_share: 0.15,
        sweep_every: Duration::from_millis(500),
        seed: 7,
        ..FleetSpec::default()
    };
    let env = FleetEnv::start_on(backend, &spec, &[]).await;
    let started = Instant::now();
    let mut findings: Vec<String> = Vec::new();
    let mut unknown = 0;
    let mut slowest_ms: f64 = 0.0;
    // Cycles during which the fleet wrote (a fire, a claim or finish half, a lease, a sentinel):
    // the collection interleaved with the protocol's writes.
    let mut interleaved = 0;
    // B-01: requests to the simulated queue accessor (one per agent, plus one per re-read).
    let mut queue_requests: u64 = 0;
    for n in 1..=CYCLES {
        let before = env.rig.stats();
        let result = env.cycle().await;
        if env.rig.stats() != before {
            interleaved += 1;
        }
        slowest_ms = slowest_ms.max(result.duration_ms);
        queue_requests += u64::from(result.diagnostics.collect.queue_count_requests);
        if !result.sources_unavailable.is_empty() {
            unknown += 1;
        }
        if !result.violations.is_empty() {
            findings.push(format!("cycle {n}:\n{}", describe(&result)));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let elapsed = started.elapsed();
    let stats = env.stop().await;
    eprintln!(
        "soak on {backend:?}: {CYCLES} cycles in {:.1} s ({interleaved} interleaved with fleet writes, slowest \
         {slowest_ms:.0} ms, {unknown} with a source unavailable, {queue_requests} queue-count \
         requests), {} violation cycle(s); fleet: {stats}",
        elapsed.as_secs_f64(),
        findings.len()
    );
    assert!(
        interleaved >= CYCLES / 4,
        "too few cycles overlapped the fleet's writes: {interleaved}"
    );
    assert!(
        stats.started >= 100 && stats.leased >= 10 && stats.sentinels >= 20,
        "the fleet was not busy enough: {stats}"
    );
    assert!(
        stats.redis_first_claims > 0 && stats.redis_first_claims < stats.started,
        "claims must happen in both orders: {stats}"
    );
    assert_eq!(stats.errors, 0, "fleet write errors: {stats}");
    assert_eq!(unknown, 0, "cycles with a source unavailable");
    assert!(
        findings.is_empty(),
        "{} of {CYCLES} cycles found violations in a healthy fleet:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

/// `canary fleet` outlives a Redis restart (issue 11 §6): its connections reconnect, a fault
/// injected after the restart lands on the new server, and Ctrl-C (SIGINT) still reverts it
/// and stops the fleet cleanly.
#[test]
fn the_fleet_outlives_a_redis_restart_and_reverts_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut redis = crate::support::redis_server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("platform.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["fleet", "--init", "--sqlite-path"])
        .arg(&db)
        .args(["--redis-url", &redis.url()])
        .args(["--agents", "4", "--rate", "300"])
        .args(["--faults", "s01-leak", "--fault-after", "4s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn canary fleet");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut output = Vec::new();
    let mut wait_for = |needle: &str, within: Duration| -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match seen.recv_timeout(left) {
                Ok(line) => {
                    output.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no {needle:?} within {within:?}; output:\n{}",
            output.join("\n")
        );
    };
    wait_for("fleet: 4 agents", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1_000));
    // An empty server on the same port: what a restart without persistence looks like.
    redis.restart().expect("restart redis");

    // The fault is injected after the restart, through the reconnected injector.
    let injected = wait_for("inject s01-leak", Duration::from_secs(20));
    assert!(!injected.contains("failed"), "{injected}");
    // "… inject s01-leak (S-01): <site>: execution <id> finished 30 s ago, …"
    let detail = injected.split("(S-01): ").nth(1).expect("detail");
    let site = detail.split(':').next().expect("site").to_owned();
    let id = detail
        .split("execution ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("id")
        .to_owned();
    let mut conn = crate::support::redis_server::connect(&redis);
    let key = format!("agent:slots:{site}");
    let leaked: Option<f64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg(&id)
        .query(&mut conn)
        .expect("ZSCORE");
    assert!(leaked.is_some(), "the leak is on the restarted server");
    // The simulator writes to the new server too.
    std::thread::sleep(Duration::from_secs(2));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("agent:slots:*")
        .query(&mut conn)
        .expect("KEYS");
    assert!(keys.iter().any(|k| *k != key), "{keys:?}");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let reverted = wait_for("reverted: s01-leak", Duration::from_secs(30));
    assert!(reverted.contains("s01-leak"));
    wait_for(
        "stopped (platform left consistent)",
        Duration::from_secs(30),
    );
    let exit = child.wait().expect("wait");
    reader.join().expect("reader");
    assert!(exit.code().is_some(), "exited, not killed: {exit:?}");
    let after: Option<f64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg(&id)
        .query(&mut conn)
        .expect("ZSCORE");
    assert_eq!(after, None, "the revert released the leaked slot");
}
