//! The Docker source against a real, private `dockerd` (`support::docker`): the listing by label,
//! the environment kept to the named variables (a secret in a container's environment appears in
//! no snapshot, output or state database), zombies found by the fixed `ps` exec, one sick
//! container unknown without blinding the rest, an unreachable socket unavailable; then R-01 and
//! H-01's critical arm end to end through `canary check` (red → one fired → revert → one
//! resolved), and Docker left out of the configuration reported as *not configured*; then the
//! fleet's container recipes (R-01's zombie, B-08's stopped pilot, B-02's pull arm) end to end
//! on the simulated fleet with their sites' containers on the private engine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use canary::collect::docker;
use canary::config::platform::{DockerConfig, ZombieSource};
use canary::fleet::faults::{self, RECIPES};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::fleet::rig::{Backend, Rig, RigDocker};
use canary_invariants::Processes;
use serde_json::Value;

use crate::support::docker::IMAGE_WITHOUT_PS;
use crate::support::fleet::FleetEnv;

/// A value only ever present in a container's environment.
const SECRET: &str = "sk-live-canary-must-never-store-this";

fn docker_config(endpoint: &str) -> DockerConfig {
    DockerConfig {
        endpoint: endpoint.to_owned(),
        env_keep: vec!["TRINITY_PULL_MODE".to_owned()],
        timeout: Duration::from_secs(5),
        ..DockerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_lists_agents_keeps_only_named_env_and_finds_zombies() {
    let engine = crate::support::docker::start();
    let secret_env = format!("PLATFORM_API_KEY={SECRET}");
    let env = [secret_env.as_str(), "TRINITY_PULL_MODE=true"];
    let zombie_id = engine.agent_with_zombie("agent-z", &env).expect("docker");
    engine.healthy_agent("agent-ok", &env).expect("docker");
    engine
        .run("unrelated", &[], &env, "exec /bin/sleep 100000")
        .expect("docker");
    let stopped = engine.healthy_agent("agent-stopped", &env).expect("docker");
    engine
        .docker(&["stop", "-t", "0", &stopped])
        .expect("docker");
    engine
        .run_image(
            IMAGE_WITHOUT_PS,
            "agent-sick",
            &["trinity.platform=agent"],
            &env,
            "exec /bin/sleep 100000",
        )
        .expect("docker");

    let state = docker::read(&docker_config(&engine.endpoint()), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", engine.log()));
    let mut agents: Vec<&str> = state.containers.iter().map(|c| c.agent.as_str()).collect();
    agents.sort_unstable();
    assert_eq!(agents, ["ok", "sick", "z"], "running agent containers only");
    let by = |agent: &str| {
        state
            .containers
            .iter()
            .find(|c| c.agent == agent)
            .expect("listed")
    };
    let z = by("z");
    assert_eq!(z.id, zombie_id);
    assert_eq!(z.name, "agent-z");
    assert!(z.started_at_ms.is_some(), "State.StartedAt parsed");
    match &z.processes {
        Processes::Read { zombies } => assert_eq!(zombies.len(), 1, "{zombies:?}"),
        other => panic!("agent-z unreadable: {other:?}"),
    }
    assert_eq!(
        by("ok").processes,
        Processes::Read {
            zombies: Vec::new()
        }
    );
    match &by("sick").processes {
        Processes::Unreadable { reason } => assert!(reason.contains("exec ps"), "{reason}"),
        other => panic!("a container without ps must be unreadable, got {other:?}"),
    }
    for c in &state.containers {
        let names: Vec<&str> = c.env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["TRINITY_PULL_MODE"],
            "only env_keep survives the read"
        );
    }
    let debug = format!("{state:?}");
    let json = serde_json::to_string(&state).expect("json");
    assert!(!debug.contains(SECRET) && !json.contains(SECRET));
    assert!(!debug.contains("PLATFORM_API_KEY"));

    // zombie_source: host_proc (this test shares the host PID namespace with the engine): the
    // same zombie, found by its parent's cgroup, with no exec (so a container without ps reads).
    let cfg = DockerConfig {
        zombie_source: ZombieSource::HostProc,
        ..docker_config(&engine.endpoint())
    };
    let state = docker::read(&cfg, &[]).await.expect("read via /proc");
    let zombies = |agent: &str| match &state
        .containers
        .iter()
        .find(|c| c.agent == agent)
        .expect("listed")
        .processes
    {
        Processes::Read { zombies } => zombies.len(),
        other => panic!("{agent} unreadable via /proc: {other:?}"),
    };
    assert_eq!((zombies("z"), zombies("ok"), zombies("sick")), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_socket_is_an_error_not_an_empty_fleet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("unix://{}", dir.path().join("missing.sock").display());
    let error = docker::read(&docker_config(&endpoint), &[])
        .await
        .expect_err("no engine there");
    assert_eq!(error.call, "connect");
    // A socket file nobody listens on (a dead engine) is just as unavailable.
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let error = docker::read(&docker_config(&format!("unix://{}", path.display())), &[])
        .await
        .expect_err("dead engine");
    assert_eq!(error.call, "connect");
}

/// A platform (SQLite + private Redis) and a state DB in a temp dir, for `canary check`.
struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    _platform: Platform,
}

impl Env {
    async fn new(roster: &[&str]) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("platform.db");
        platform::create_db(&db).expect("platform schema");
        let platform = Platform::connect(&db, &redis.url())
            .await
            .expect("connect platform");
        for agent in roster {
            platform.add_agent(agent, 3, 900).expect("agent");
        }
        Env {
            dir,
            redis,
            _platform: platform,
        }
    }

    /// A config with `docker` (a YAML block under `platform:`, or empty for none) and `extra`
    /// top-level YAML.
    fn config(&self, docker: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("canary.yaml");
        let yaml = format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {}\n{docker}state:\n  path: {}\n{extra}",
            self.dir.path().join("platform.db").display(),
            self.redis.url(),
            self.state_path().display()
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }
}

fn docker_block(endpoint: &str) -> String {
    format!(
        "  docker:\n    endpoint: {endpoint}\n    timeout: 5s\n    env_keep: [TRINITY_PULL_MODE]\n"
    )
}

fn check(config: &Path, extra: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["check", "--format", "json", "--config"])
        .arg(config)
        .args(extra)
        .env_remove("CANARY_CONFIG")
        .output()
        .expect("run canary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn transitions(result: &Value) -> Vec<(String, String, String)> {
    result["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["invariant_id"].as_str().unwrap_or_default().to_owned(),
                t["kind"].as_str().unwrap_or_default().to_owned(),
                t["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r01_fires_once_on_a_persisting_zombie_and_resolves_once_when_it_is_gone() {
    let engine = crate::support::docker::start();
    let env = Env::new(&["z", "ok"]).await;
    let secret_env = format!("PLATFORM_API_KEY={SECRET}");
    engine
        .agent_with_zombie("agent-z", &[secret_env.as_str()])
        .expect("docker");
    engine
        .healthy_agent("agent-ok", &[secret_env.as_str()])
        .expect("docker");
    let config = env.config(
        &docker_block(&engine.endpoint()),
        "invariants:\n  R-01:\n    dwell_seconds: 2\n",
    );
    let only = ["--invariant", "R-01"];

    // First sighting: a zombie the runtime may be about to reap; green.
    let (code, first, stderr) = check(&config, &only);
    assert_eq!(code, 0, "{first}\n{stderr}");
    assert_eq!(first["outcomes"]["R-01"], "green");
    // Version + listing, then per container an inspect and the exec's create/start/inspect.
    assert_eq!(first["diagnostics"]["collect"]["docker_calls"], 2 + 2 * 4);
    std::thread::sleep(Duration::from_millis(2_100));
    let (code, red, _) = check(&config, &only);
    assert_eq!(code, 1, "{red}");
    assert_eq!(red["outcomes"]["R-01"], "red");
    assert_eq!(
        transitions(&red),
        [("R-01".into(), "fired".into(), "critical".into())]
    );
    let violations = red["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 1, "one violation per container");
    assert_eq!(violations[0]["subject"], "agent-z");
    assert_eq!(violations[0]["signal"], "zombie_persisting");
    assert!(violations[0]["observed_state"]["held_for_seconds"].as_i64() >= Some(2));
    // Still red: no second alert.
    let (code, still, _) = check(&config, &only);
    assert_eq!(code, 1);
    assert!(transitions(&still).is_empty(), "{still}");

    // Revert: the leaking container is replaced by a healthy one.
    engine.docker(&["rm", "-f", "agent-z"]).expect("docker");
    engine.healthy_agent("agent-z", &[]).expect("docker");
    let (code, green, _) = check(&config, &only);
    assert_eq!(code, 0, "{green}");
    assert_eq!(
        transitions(&green),
        [("R-01".into(), "resolved".into(), "critical".into())]
    );
    let state = std::fs::read(env.state_path()).expect("state db");
    let wal = std::fs::read(env.dir.path().join("state.db-wal")).unwrap_or_default();
    for bytes in [&state, &wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "a container's secret reached the state database"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_agent_containers_contradict_an_empty_roster_critically() {
    let engine = crate::support::docker::start();
    let env = Env::new(&[]).await;
    engine.healthy_agent("agent-a", &[]).expect("docker");
    engine.healthy_agent("agent-b", &[]).expect("docker");
    let config = env.config(
        &docker_block(&engine.endpoint()),
        "invariants:\n  H-01:\n    confirm_after_seconds: 1\n",
    );
    let only = ["--invariant", "H-01"];
    let (code, first, stderr) = check(&config, &only);
    assert_eq!(
        code, 0,
        "suspicion starts, not yet confirmed: {first}\n{stderr}"
    );
    std::thread::sleep(Duration::from_millis(1_100));
    let (code, red, _) = check(&config, &only);
    assert_eq!(code, 1, "{red}");
    let v = &red["violations"][0];
    assert_eq!(v["signal"], "roster_empty_contradicted");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["observed_state"]["agent_containers"], 2);
    assert_eq!(
        v["observed_state"]["evidence"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        transitions(&red),
        [("H-01".into(), "fired".into(), "critical".into())]
    );
    // The containers go: a genuinely empty fleet, resolved once.
    engine
        .docker(&["rm", "-f", "agent-a", "agent-b"])
        .expect("docker");
    let (code, green, _) = check(&config, &only);
    assert_eq!(code, 0, "{green}");
    assert_eq!(
        transitions(&green),
        [("H-01".into(), "resolved".into(), "critical".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_is_unknown_and_absent_is_not_configured() {
    let env = Env::new(&["a"]).await;
    let missing = format!("unix://{}", env.dir.path().join("no.sock").display());
    let config = env.config(&docker_block(&missing), "");
    let (code, result, stderr) = check(&config, &[]);
    assert_eq!(code, 2, "unknown: {result}\n{stderr}");
    assert_eq!(result["outcomes"]["R-01"], "unknown");
    assert_eq!(result["sources_unavailable"][0]["source"], "docker");
    // Only B-01 (platform.queue_count is not configured here), never R-01.
    let not_configured: Vec<&String> = result["not_configured"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(not_configured, ["B-01"], "{result}");
    let blind: Vec<&str> = result["blind"]["sources"]
        .as_array()
        .expect("blind sources")
        .iter()
        .filter(|s| s["readable"] == false)
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert_eq!(blind, ["docker"], "the blind machinery covers docker");

    // Without platform.docker: R-01 is not run, and says why; the cycle is green.
    let config = env.config("", "");
    let (code, result, stderr) = check(&config, &[]);
    assert_eq!(code, 0, "{result}\n{stderr}");
    assert!(result["outcomes"].get("R-01").is_none());
    assert!(
        !result["checks_run"]
            .as_array()
            .expect("checks_run")
            .iter()
            .any(|id| id == "R-01")
    );
    assert_eq!(
        result["not_configured"]["R-01"],
        "source docker not configured"
    );
    assert!(
        result["sources_unavailable"]
            .as_array()
            .expect("list")
            .is_empty()
    );
}

/// Sets (or deletes, with `None`) a pilot's `agent:pull_poll:{agent}` key, as its workers do.
fn set_poll(redis_url: &str, agent: &str, unix_seconds: Option<i64>) {
    let mut r = redis::Client::open(redis_url)
        .expect("redis url")
        .get_connection()
        .expect("redis connection");
    let key = format!("agent:pull_poll:{agent}");
    match unix_seconds {
        Some(at) => redis::cmd("SET").arg(&key).arg(at).exec(&mut r),
        None => redis::cmd("DEL").arg(&key).exec(&mut r),
    }
    .expect("write the poll key");
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b08_pull_workers_silent_fire_once_and_resolve_once_when_they_poll_again() {
    let engine = crate::support::docker::start();
    let env = Env::new(&["p", "ok"]).await;
    let secret_env = format!("PLATFORM_API_KEY={SECRET}");
    let pull_env = [
        secret_env.as_str(),
        "TRINITY_PULL_MODE=1",
        "TRINITY_MAX_PARALLEL_TASKS=2",
    ];
    engine.healthy_agent("agent-p", &pull_env).expect("docker");
    engine.healthy_agent("agent-ok", &pull_env).expect("docker");

    // The pilot keeps its two pull-mode variables without env_keep naming them; a non-pilot
    // keeps nothing (env_keep is empty), and the secret never survives.
    let cfg = DockerConfig {
        endpoint: engine.endpoint(),
        timeout: Duration::from_secs(5),
        ..DockerConfig::default()
    };
    let state = docker::read(&cfg, &["p".to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", engine.log()));
    let env_of = |agent: &str| {
        state
            .containers
            .iter()
            .find(|c| c.agent == agent)
            .map(|c| c.env.clone())
            .expect("container")
    };
    let pilot_env: Vec<(String, String)> = env_of("p").into_iter().collect();
    assert_eq!(
        pilot_env,
        [
            ("TRINITY_MAX_PARALLEL_TASKS".to_owned(), "2".to_owned()),
            ("TRINITY_PULL_MODE".to_owned(), "1".to_owned()),
        ]
    );
    assert!(env_of("ok").is_empty(), "a non-pilot keeps only env_keep");

    let docker = format!(
        "  docker:\n    endpoint: {}\n    timeout: 5s\n  pull:\n    pilot_agents: [p]\n",
        engine.endpoint()
    );
    let config = env.config(&docker, "invariants:\n  B-08:\n    silent_seconds: 2\n");
    let only = ["--invariant", "B-08"];

    // Polling now: green.
    set_poll(&env.redis.url(), "p", Some(unix_now()));
    let (code, first, stderr) = check(&config, &only);
    assert_eq!(code, 0, "{first}\n{stderr}");
    assert_eq!(first["outcomes"]["B-08"], "green");

    // The workers stop polling: the key is stale, the container older than the threshold.
    set_poll(&env.redis.url(), "p", Some(unix_now() - 600));
    std::thread::sleep(Duration::from_millis(3_100));
    let (code, red, _) = check(&config, &only);
    assert_eq!(code, 1, "{red}");
    assert_eq!(red["outcomes"]["B-08"], "red");
    assert_eq!(
        transitions(&red),
        [("B-08".into(), "fired".into(), "major".into())]
    );
    let violations = red["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 1, "{red}");
    assert_eq!(violations[0]["subject"], "p");
    assert_eq!(violations[0]["signal"], "workers_silent");
    assert_eq!(violations[0]["observed_state"]["idle"], 2);
    // Still red: no second alert.
    let (code, still, _) = check(&config, &only);
    assert_eq!(code, 1);
    assert!(transitions(&still).is_empty(), "{still}");

    // Fix: the workers poll again.
    set_poll(&env.redis.url(), "p", Some(unix_now()));
    let (code, green, _) = check(&config, &only);
    assert_eq!(code, 0, "{green}");
    assert_eq!(
        transitions(&green),
        [("B-08".into(), "resolved".into(), "major".into())]
    );

    // The pilot's container stops: workers_missing.
    engine.docker(&["rm", "-f", "agent-p"]).expect("docker");
    let (code, missing, _) = check(&config, &only);
    assert_eq!(code, 1, "{missing}");
    assert_eq!(missing["violations"][0]["signal"], "workers_missing");
    let state = std::fs::read(env.state_path()).expect("state db");
    let wal = std::fs::read(env.dir.path().join("state.db-wal")).unwrap_or_default();
    for bytes in [&state, &wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "a container's secret reached the state database"
        );
    }
}

/// A container recipe of the fault registry (`canary::fleet::faults`, `needs_docker`) on the
/// simulated fleet with its site's agent container on a private dockerd, watched by the daemon's
/// sequencer with alerts to a real webhook: baseline green → inject → red → exactly one fired
/// → revert → green → exactly one resolved, nothing else (tests/fleet.rs's `detect_with`).
async fn detect_on_docker(name: &str) {
    let engine = crate::support::docker::start();
    let recipe = crate::fleet::recipe_named(name);
    let rig = Rig::start_with_docker(
        Backend::Sqlite,
        &crate::fleet::recipe_fleet_spec(),
        &[recipe],
        RigDocker::Private(engine),
    )
    .await
    .unwrap_or_else(|e| panic!("[{name}] starting the platform with docker: {e}"));
    let env = FleetEnv::watch(rig, |_| {}).await;
    crate::fleet::detect_with(name, env, "docker").await;
}

/// One test per container recipe, named after it; a container recipe missing from the list
/// fails `every_container_recipe_has_a_test_here`.
macro_rules! container_recipe_tests {
    ($($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                detect_on_docker(&stringify!($test).replace('_', "-")).await;
            }
        )*

        #[test]
        fn every_container_recipe_has_a_test_here() {
            let tested = [$(stringify!($test).replace('_', "-")),*];
            for r in RECIPES.iter().filter(|r| r.meta().needs_docker) {
                let name = r.meta().name;
                assert!(tested.iter().any(|t| t == name), "container recipe {name} has no test");
            }
            for name in &tested {
                let needs = faults::find(name).map(|r| r.meta().needs_docker);
                assert_eq!(needs, Some(true), "test {name} names no container recipe");
            }
        }
    };
}

container_recipe_tests! {
    r01_zombie,
    b08_workers_missing,
    b02_pull_queued,
}

/// Without an engine the container recipes are refused by name, never run half-way.
#[tokio::test]
async fn a_container_recipe_without_an_engine_is_refused() {
    let recipe = crate::fleet::recipe_named("r01-zombie");
    let error = Rig::start(&crate::fleet::recipe_fleet_spec(), &[recipe])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("needs a Docker engine"), "{error}");
}
