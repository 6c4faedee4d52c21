//! `canary check` end to end: the real binary against a private `redis-server` and a platform
//! database built from the fixture schema. Every fault recipe of the registry
//! (`canary::fleet::faults::RECIPES`, the same vocabulary as `canary demo` and `tests/fleet.rs`)
//! is injected into the real stores: red with the recipe's signal and severity and exit 1,
//! revert, green and exit 0 ([`recipe_fires_then_resolves`]). Beside it, cases no recipe covers
//! or that assert more than a recipe run can (evidence, severity splits, restarts, cross-process
//! memory), some table-driven ([`Fault`]). Plus the failure modes: a killed Redis, a missing
//! optional column or table, a missing cascade table, garbage in Redis, a broken config, a held
//! lease.

use std::path::{Path, PathBuf};
use std::process::Command;

use canary::clock::now_ms;
use canary::fleet::faults::{self, Injector, RECIPES, Recipe};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::store::StateDb;
use redis::AsyncCommands;
use serde_json::Value;

use crate::support::cli::violations_of;

const TIMEOUT: i64 = 600;

struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    platform: Platform,
    now: i64,
}

impl Env {
    /// A healthy platform: three agents with two running executions each, a finished one each and
    /// a schedule due in an hour each, an idle agent with a tag, and a soft-deleted agent with
    /// retained rows.
    async fn healthy() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("platform.db");
        platform::create_db(&db).expect("platform schema");
        let mut platform = Platform::connect(&db, &redis.url())
            .await
            .expect("connect platform");
        let now = now_ms();
        for a in ["agent-a", "agent-b", "agent-c"] {
            platform.add_agent(a, 3, 900).unwrap();
            for e in 0..2 {
                platform
                    .start(a, &format!("{a}-run-{e}"), TIMEOUT, now - 120_000)
                    .await
                    .unwrap();
            }
            platform
                .add_finished(a, &format!("{a}-done"), "success", now - 60_000)
                .unwrap();
            platform
                .sqlite()
                .unwrap()
                .execute(
                    "INSERT INTO agent_schedules (id, agent_name, enabled, next_run_at) \
                     VALUES (?1, ?2, 1, ?3)",
                    rusqlite::params![format!("{a}-sched"), a, platform::iso(now + 3_600_000)],
                )
                .unwrap();
        }
        platform.add_agent("agent-idle", 3, 900).unwrap();
        platform.add_tag("agent-idle", "x").unwrap();
        platform.add_agent("agent-old", 3, 900).unwrap();
        platform.add_tag("agent-old", "legacy").unwrap();
        platform
            .soft_delete_agent("agent-old", now - 86_400_000)
            .unwrap();
        platform
            .add_sentinel("agent-a", "drain-1", now)
            .await
            .unwrap();
        Env {
            dir,
            redis,
            platform,
            now,
        }
    }

    fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("canary.yaml");
        let yaml = format!(
            // S-07 at 120 s: the fleet's own fresh sentinel must never age into a finding on a
            // slow machine while a test runs its cycles.
            "platform:\n  sqlite_path: {}\n  redis_url: {}\nstate:\n  path: {}\n\
             invariants:\n  S-07:\n    max_age_seconds: 120\n",
            self.dir.path().join("platform.db").display(),
            self.redis.url(),
            self.state_path().display()
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    /// The configuration recipe runs use: S-07 at 20 s (the recipe's sentinel is 30 s old, this
    /// environment's own fresh one must not age into a finding during the run) and H-01
    /// confirmed after 1 s (its default is one 5 min interval).
    fn recipe_config_path(&self) -> PathBuf {
        let base = std::fs::read_to_string(self.config_path()).expect("read config");
        let yaml = base.replace(
            "    max_age_seconds: 120\n",
            "    max_age_seconds: 20\n  H-01:\n    confirm_after_seconds: 1\n",
        );
        assert_ne!(yaml, base, "the S-07 override moved");
        let path = self.dir.path().join("recipe.yaml");
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// Runs `canary check --format json` with extra args; returns (exit code, result JSON).
    fn check(&self, extra: &[&str]) -> (i32, Value) {
        let (code, stdout, stderr) = run_canary(&self.config_path(), extra);
        let json = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
        (code, json)
    }
}

fn run_canary(config: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["check", "--format", "json", "--config"])
        .arg(config)
        .args(extra)
        .env_remove("CANARY_CONFIG")
        .output()
        .expect("run canary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn outcome<'a>(result: &'a Value, id: &str) -> &'a str {
    result["outcomes"][id].as_str().unwrap_or("absent")
}

fn transitions(result: &Value) -> Vec<(String, String)> {
    result["transitions"]
        .as_array()
        .expect("transitions array")
        .iter()
        .map(|t| {
            (
                t["invariant_id"].as_str().unwrap().to_owned(),
                t["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(id: &str, kind: &str) -> (String, String) {
    (id.to_owned(), kind.to_owned())
}

#[tokio::test]
async fn healthy_fleet_is_green_and_exit_0() {
    let env = Env::healthy().await;
    let (code, result) = env.check(&[]);
    assert_eq!(code, 0, "{result:#}");
    for id in canary_invariants::catalog::core_ids() {
        assert_eq!(outcome(&result, id), "green", "{id}: {result:#}");
    }
    // No platform.docker nor platform.queue_count here: R-01 and B-01 are not configured (not
    // run), which is not unknown.
    assert_eq!(outcome(&result, "R-01"), "absent");
    assert_eq!(outcome(&result, "B-01"), "absent");
    assert_eq!(
        result["not_configured"]["R-01"],
        "source docker not configured"
    );
    assert_eq!(
        result["not_configured"]["B-01"],
        "source queue_count not configured"
    );
    assert_eq!(result["sources_unavailable"], Value::Array(vec![]));
    assert!(result["cycle_id"].as_i64().is_some());
}

#[tokio::test]
async fn s01_leaked_slot_fires_then_resolves() {
    let mut env = Env::healthy().await;
    env.check(&[]);
    // Finished a minute ago: a release only a few ms behind its terminal commit is S-01's
    // finish race (graced), a leak is one that outlives the grace.
    env.platform
        .finish_row("agent-b-run-0", "success", env.now - 60_000)
        .unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1, "{red:#}");
    let v = violations_of(&red, "S-01");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-b");
    assert_eq!(v[0]["observed_state"]["in_redis_only"][0], "agent-b-run-0");
    assert!(
        v[0]["id"].as_i64().is_some(),
        "persisted violation has a row id"
    );
    assert_eq!(transitions(&red), [pair("S-01", "fired")]);

    let (_, still) = env.check(&[]);
    assert!(
        transitions(&still).is_empty(),
        "a continuing red fires nothing, even across restarts"
    );

    env.platform
        .release_slot("agent-b", "agent-b-run-0")
        .await
        .unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    assert_eq!(transitions(&green), [pair("S-01", "resolved")]);
}

#[tokio::test]
async fn s01_running_row_without_slot() {
    let env = Env::healthy().await;
    env.platform
        .sqlite()
        .unwrap()
        .execute(
            "INSERT INTO schedule_executions (id, agent_name, status, started_at) \
             VALUES ('orphan-run', 'agent-c', 'running', ?1)",
            [platform::iso(env.now - 30_000)],
        )
        .unwrap();
    let (code, red) = env.check(&["--invariant", "S-01"]);
    assert_eq!(code, 1);
    assert_eq!(red["checks_run"], serde_json::json!(["S-01"]));
    let v = violations_of(&red, "S-01");
    assert_eq!(v[0]["signal"], "in_sql_only");
    assert_eq!(v[0]["observed_state"]["in_sql_only"][0], "orphan-run");
}

#[tokio::test]
async fn e02_reversal_fires_then_resolves() {
    let env = Env::healthy().await;
    let (code, _) = env.check(&[]);
    assert_eq!(code, 0, "first cycle remembers the finished rows");
    // pending_retry, not queued: a queued row beside a free slot would rightly fire B-02 too.
    env.platform
        .set_status("agent-a-done", "pending_retry")
        .unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1);
    let v = violations_of(&red, "E-02");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-a-done");
    assert_eq!(v[0]["observed_state"]["previous_status"], "success");
    assert_eq!(v[0]["observed_state"]["current_status"], "pending_retry");

    env.platform.set_status("agent-a-done", "success").unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    assert_eq!(transitions(&green), [pair("E-02", "resolved")]);
}

#[tokio::test]
async fn l03_orphans_fire_with_severity_split_then_resolve() {
    let mut env = Env::healthy().await;
    env.platform.delete_roster_row("agent-idle").unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1);
    let v = violations_of(&red, "L-03");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-idle");
    assert_eq!(v[0]["severity"], "major");
    assert_eq!(v[0]["observed_state"]["tables"]["agent_tags"], 1);

    // A slot key of an absent agent is live orchestration: critical.
    env.platform
        .add_sentinel("agent-idle", "drain-9", env.now)
        .await
        .unwrap();
    let (_, red) = env.check(&["--invariant", "L-03"]);
    assert_eq!(violations_of(&red, "L-03")[0]["severity"], "critical");

    let key = env.platform.slots_key("agent-idle");
    let _: i64 = env.platform.redis().del(&key).await.unwrap();
    env.platform.add_agent("agent-idle", 3, 900).unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    assert_eq!(transitions(&green), [pair("L-03", "resolved")]);
}

#[tokio::test]
async fn s03_short_ttl_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("s03-short-ttl")).await;
}

#[tokio::test]
async fn s03_hours_old_slot_with_correct_ttl_is_green() {
    let mut env = Env::healthy().await;
    // A two-hour task dispatched two hours ago, on an agent allowed two hours (so E-01 agrees):
    // 300 s of its 7 500 s TTL left.
    env.platform.add_agent("agent-long", 3, 7200).unwrap();
    env.platform
        .start("agent-long", "long-run", 7200, env.now - 7_200_000)
        .await
        .unwrap();
    env.platform
        .expire_meta("agent-long", "long-run", 300)
        .await
        .unwrap();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 0, "{result:#}");
}

#[tokio::test]
async fn s02_overbooking_fires_then_resolves() {
    let mut env = Env::healthy().await;
    // Two more executions on agent-a (cap 3, already running 2): rows and slots agree (S-01
    // green), but four slots exceed the cap.
    for id in ["agent-a-extra-0", "agent-a-extra-1"] {
        env.platform
            .start("agent-a", id, TIMEOUT, env.now - 30_000)
            .await
            .unwrap();
    }
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&red, "S-01"), "green", "{red:#}");
    let v = violations_of(&red, "S-02");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-a");
    assert_eq!(v[0]["observed_state"]["slot_count"], 4);
    assert_eq!(v[0]["observed_state"]["max_parallel_tasks"], 3);

    env.platform
        .finish("agent-a", "agent-a-extra-1", "success", now_ms())
        .await
        .unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    assert_eq!(transitions(&green), [pair("S-02", "resolved")]);
}

#[tokio::test]
async fn s07_stale_sentinel_fires_minor_then_resolves() {
    let mut env = Env::healthy().await;
    env.platform
        .add_sentinel("agent-b", "drain-stuck", env.now - 600_000)
        .await
        .unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1);
    let v = violations_of(&red, "S-07");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-b:drain-stuck");
    assert_eq!(v[0]["severity"], "minor");
    for id in ["S-01", "S-02", "S-03", "L-03"] {
        assert_eq!(
            outcome(&red, id),
            "green",
            "a sentinel is not an execution: {id}"
        );
    }

    let key = env.platform.slots_key("agent-b");
    let _: i64 = env
        .platform
        .redis()
        .zrem(&key, "drain-stuck")
        .await
        .unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    assert_eq!(transitions(&green), [pair("S-07", "resolved")]);
}

#[tokio::test]
async fn e01_stale_running_row_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("e01-stuck-running")).await;
}

#[tokio::test]
async fn g03_b05_b02_fire_on_real_rows_then_resolve() {
    let env = Env::healthy().await;
    let db = env.platform.sqlite().unwrap();
    // Completed a minute before it started (a writer on a skewed clock).
    db.execute(
        "UPDATE schedule_executions SET started_at = ?1 WHERE id = 'agent-b-done'",
        [platform::iso(env.now)],
    )
    .unwrap();
    // Queued two days ago and never expired by the platform.
    db.execute(
        "INSERT INTO schedule_executions (id, agent_name, status, queued_at, backlog_metadata) \
         VALUES ('old-queued', 'agent-a', 'queued', ?1, '{}')",
        [platform::sqlite_datetime(env.now - 2 * 86_400_000)],
    )
    .unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        violations_of(&red, "G-03")[0]["subject"],
        "agent-b-done",
        "{red:#}"
    );
    assert_eq!(
        violations_of(&red, "B-05")[0]["subject"],
        "old-queued",
        "{red:#}"
    );
    // The same old queued row waits while agent-a has a free slot and no drain heartbeat was
    // ever written: B-02 too. A fresh heartbeat (the sweep is alive) excuses it.
    let b02 = violations_of(&red, "B-02");
    assert_eq!(b02[0]["subject"], "agent-a", "{red:#}");
    assert!(b02[0]["observed_state"]["drain_tick_age_ms"].is_null());
    let mut redis = redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis
        .set("canary:drain_tick_at", now_ms() / 1000)
        .await
        .unwrap();
    let (code, excused) = env.check(&[]);
    assert_eq!(code, 1, "G-03 and B-05 still red");
    assert_eq!(transitions(&excused), [pair("B-02", "resolved")]);

    db.execute(
        "UPDATE schedule_executions SET started_at = ?1 WHERE id = 'agent-b-done'",
        [platform::iso(env.now - 120_000)],
    )
    .unwrap();
    db.execute(
        "UPDATE schedule_executions SET status = 'failed', completed_at = ?1 WHERE id = 'old-queued'",
        [platform::iso(env.now)],
    )
    .unwrap();
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{green:#}");
    let mut resolved = transitions(&green);
    resolved.sort();
    assert_eq!(
        resolved,
        [pair("B-05", "resolved"), pair("G-03", "resolved")]
    );
}

#[tokio::test]
async fn h01_blind_roster_is_confirmed_across_processes_then_resolves() {
    let env = Env::healthy().await;
    let config = env.dir.path().join("h01.yaml");
    let base = std::fs::read_to_string(env.config_path()).unwrap();
    let yaml = base.replace(
        "invariants:\n",
        "invariants:\n  H-01:\n    confirm_after_seconds: 1\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let check = |extra: &[&str]| {
        let (_, stdout, stderr) = run_canary(&config, extra);
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
    };
    // The roster emptied (as after pointing canary at the wrong copy of the database) while
    // the fleet's slot keys live on.
    env.platform
        .sqlite()
        .unwrap()
        .execute_batch("DELETE FROM agent_ownership")
        .unwrap();
    let first = check(&["--invariant", "H-01"]);
    assert_eq!(
        outcome(&first, "H-01"),
        "green",
        "not confirmed yet: {first:#}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    // A new process: the suspicion came back from the state database.
    let confirmed = check(&["--invariant", "H-01"]);
    let v = violations_of(&confirmed, "H-01");
    assert_eq!(v.len(), 1, "{confirmed:#}");
    assert_eq!(v[0]["signal"], "roster_empty_unverifiable");
    assert_eq!(v[0]["severity"], "major");

    for agent in ["agent-a", "agent-b", "agent-c", "agent-idle"] {
        env.platform.add_agent(agent, 3, 900).unwrap();
    }
    let healed = check(&["--invariant", "H-01"]);
    assert_eq!(transitions(&healed), [pair("H-01", "resolved")]);
}

#[tokio::test]
async fn killed_redis_gives_unknown_and_exit_2_while_e02_is_still_judged() {
    let mut env = Env::healthy().await;
    env.check(&[]);
    env.redis.kill();
    let started = std::time::Instant::now();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 2, "{result:#}");
    assert!(
        started.elapsed().as_secs() < 10,
        "a dead Redis must fail fast"
    );
    for id in ["S-01", "S-02", "S-03", "S-04", "S-07", "L-03"] {
        assert_eq!(outcome(&result, id), "unknown", "{id}");
    }
    assert_eq!(outcome(&result, "E-02"), "green");
    let unavailable = &result["sources_unavailable"][0];
    assert_eq!(unavailable["source"], "redis");
    let error = unavailable["error"].as_str().unwrap();
    assert!(!error.contains("redis://"), "no URL in errors: {error}");
    assert!(
        transitions(&result).is_empty(),
        "unknown neither fires nor resolves"
    );
}

#[tokio::test]
async fn missing_optional_column_degrades_only_what_needs_it() {
    let env = Env::healthy().await;
    env.platform
        .sqlite()
        .unwrap()
        .execute_batch(
            "DROP INDEX idx_executions_completed; \
             ALTER TABLE schedule_executions DROP COLUMN completed_at",
        )
        .unwrap();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 2, "{result:#}");
    assert_eq!(outcome(&result, "E-02"), "unknown");
    for id in ["G-03", "E-03"] {
        assert_eq!(
            outcome(&result, id),
            "unknown",
            "{id} needs completed_at too"
        );
    }
    for id in ["S-01", "S-03", "L-03", "E-01", "B-05"] {
        assert_eq!(outcome(&result, id), "green", "{id}: {result:#}");
    }
    assert!(result["sources_unavailable"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn missing_session_column_and_schedules_table_make_e05_e06_unknown() {
    let env = Env::healthy().await;
    env.platform
        .sqlite()
        .unwrap()
        .execute_batch(
            "ALTER TABLE schedule_executions DROP COLUMN claude_session_id;
             DROP TABLE agent_schedules;",
        )
        .unwrap();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 2, "{result:#}");
    for id in ["E-05", "E-06"] {
        assert_eq!(outcome(&result, id), "unknown", "{id}: {result:#}");
    }
    for id in ["S-01", "S-04", "E-01", "E-03", "E-04", "G-04", "L-03"] {
        assert_eq!(outcome(&result, id), "green", "{id}: {result:#}");
    }
    assert!(result["sources_unavailable"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn missing_cascade_table_is_skipped_and_noted() {
    let env = Env::healthy().await;
    env.platform
        .sqlite()
        .unwrap()
        .execute_batch("DROP TABLE agent_reports")
        .unwrap();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(
        result["diagnostics"]["skipped_tables"],
        serde_json::json!(["agent_reports"])
    );
}

#[tokio::test]
async fn garbage_in_redis_is_a_g05_finding_not_a_crash() {
    let mut env = Env::healthy().await;
    let key = env.platform.slots_key("agent-idle");
    let _: () = env
        .platform
        .redis()
        .set(&key, "not a sorted set")
        .await
        .unwrap();
    let meta = env.platform.meta_key("agent-a", "agent-a-run-0");
    let _: () = env
        .platform
        .redis()
        .hset(&meta, "timeout_seconds", "soon")
        .await
        .unwrap();
    let (code, result) = env.check(&[]);
    // Malformed platform data is a finding (G-05, major): red, exit 1, and only G-05 is red.
    assert_eq!(code, 1, "{result:#}");
    let red: Vec<&str> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["invariant_id"].as_str().unwrap())
        .collect();
    assert!(red.iter().all(|id| *id == "G-05"), "{result:#}");
    let g05: Vec<(String, String)> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["subject"].as_str().unwrap().to_owned(),
                v["signal"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        g05.contains(&(key.clone(), "wrong_type".to_owned())),
        "{result:#}"
    );
    assert!(
        g05.contains(&(
            format!("{meta} timeout_seconds"),
            "timeout_not_integer".to_owned()
        )),
        "{result:#}"
    );
    // The raw value is never part of the finding.
    assert!(
        !result["violations"].to_string().contains("soon"),
        "{result:#}"
    );
    let anomalies = result["diagnostics"]["anomalies"].as_array().unwrap();
    assert!(anomalies.len() >= 2, "{result:#}");
    // Each planted value is reported where it was found (a bare count could be met by any two
    // unrelated anomalies).
    let subjects: Vec<&str> = anomalies
        .iter()
        .map(|a| a["subject"].as_str().unwrap())
        .collect();
    for planted in [key, format!("{meta} timeout_seconds")] {
        assert!(
            subjects.contains(&planted.as_str()),
            "{planted}: {result:#}"
        );
    }
    assert!(result["sources_unavailable"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn no_persist_writes_nothing() {
    let env = Env::healthy().await;
    let (code, result) = env.check(&["--no-persist"]);
    assert_eq!(code, 0);
    assert!(result["cycle_id"].is_null());
    assert!(!env.state_path().exists(), "no state database created");
}

#[tokio::test]
async fn no_persist_reads_memory_but_leaves_the_state_database_untouched() {
    let env = Env::healthy().await;
    env.check(&[]);
    env.platform.set_status("agent-b-done", "running").unwrap();
    let before = std::fs::read(env.state_path()).unwrap();
    let (code, result) = env.check(&["--no-persist", "--invariant", "E-02"]);
    assert_eq!(
        code, 1,
        "remembered terminal rows come from the state database: {result:#}"
    );
    assert_eq!(
        transitions(&result),
        [pair("E-02", "fired")],
        "computed, not recorded"
    );
    assert_eq!(std::fs::read(env.state_path()).unwrap(), before);
}

/// `canary violations` with `args`; returns (exit code, stdout, stderr).
fn run_violations(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["violations", "--config"])
        .arg(config)
        .args(args)
        .env_remove("CANARY_CONFIG")
        .output()
        .expect("run canary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn read_commands_never_create_state() {
    let env = Env::healthy().await;
    let typo = env.dir.path().join("sub").join("stat.db");
    let (code, stdout, stderr) = run_violations(
        &env.config_path(),
        &["--state-path", typo.to_str().unwrap()],
    );
    assert_eq!(
        code, 3,
        "a missing state database is a failure: {stdout}{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("stat.db"), "names the path: {stderr}");
    assert!(
        !typo.exists() && !typo.parent().unwrap().exists(),
        "nothing created"
    );

    // An existing database is read, and left byte-for-byte as it was.
    assert_eq!(env.check(&[]).0, 0);
    env.platform
        .set_status("agent-a-done", "pending_retry")
        .unwrap();
    let (code, red) = env.check(&[]);
    assert_eq!(code, 1, "{red:#}");
    let before = std::fs::read(env.state_path()).unwrap();
    let (code, stdout, stderr) = run_violations(&env.config_path(), &["--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert!(json["total"].as_u64().unwrap() >= 1, "{json:#}");
    assert_eq!(std::fs::read(env.state_path()).unwrap(), before);
}

/// The test's directory mounted read-only in a private mount namespace (`unshare -rm`, no root
/// needed), then `canary <args>` run there: a read-only file system is named as such.
#[tokio::test]
async fn a_read_only_file_system_says_read_only() {
    // Never skipped: without `unshare` (util-linux) or namespaces this test fails and says so.
    let probe = Command::new("unshare").args(["-rm", "true"]).status();
    assert!(
        probe.as_ref().is_ok_and(|s| s.success()),
        "`unshare -rm true` failed ({probe:?}): this test needs util-linux's unshare \
         (apt-get install util-linux) and user + mount namespaces"
    );
    let env = Env::healthy().await;
    assert_eq!(env.check(&[]).0, 0);
    let dir = env.dir.path().display().to_string();
    let config = env.config_path().display().to_string();
    let bin = env!("CARGO_BIN_EXE_canary");
    for command in [
        format!("{bin} check --config {config}"),
        format!("{bin} violations --config {config}"),
        format!("{bin} check --config {config} --state-path {dir}/new/state.db"),
    ] {
        let script =
            format!("mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} && exec {command}");
        let out = Command::new("unshare")
            .args(["-rm", "sh", "-c", &script])
            .env_remove("CANARY_CONFIG")
            .output()
            .expect("run unshare");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command}: {stderr}");
        assert!(
            stderr.contains("read-only file system"),
            "{command}: {stderr}"
        );
    }
    assert!(!env.dir.path().join("new").exists());
}

#[tokio::test]
async fn a_held_lease_means_cycle_in_progress() {
    let env = Env::healthy().await;
    let db = StateDb::open(&env.state_path()).unwrap();
    assert!(
        db.try_acquire_lease("other-process", now_ms(), 60_000)
            .unwrap()
            .is_some()
    );
    let (code, _, stderr) = run_canary(&env.config_path(), &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cycle in progress"), "{stderr}");
    assert!(
        stderr.contains("lease held by other-process for "),
        "names the holder and its age: {stderr}"
    );
}

#[tokio::test]
async fn broken_config_exits_78_naming_the_key() {
    let env = Env::healthy().await;
    let path = env.dir.path().join("bad.yaml");
    std::fs::write(&path, "platform:\n  sqlite_paht: /x\n").unwrap();
    let (code, _, stderr) = run_canary(&path, &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("sqlite_paht"), "{stderr}");
}

#[tokio::test]
async fn unknown_invariant_id_is_named() {
    let env = Env::healthy().await;
    let (code, _, stderr) = run_canary(&env.config_path(), &["--invariant", "X-99"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("X-99"), "{stderr}");
}

/// The recipe of the fault registry called `name`.
fn recipe(name: &str) -> &'static dyn Recipe {
    faults::find(name).unwrap_or_else(|| panic!("no recipe {name} in the fault registry"))
}

/// One recipe of the fault registry through `canary check` on the healthy platform: green, exit
/// 0 → inject → red within the recipe's bound with exactly one violation of its invariant (its
/// signal and severity, about its site), exit 1, exactly one `fired` → revert → green, exit 0,
/// exactly one `resolved`. Every assertion names the recipe.
async fn recipe_fires_then_resolves(recipe: &'static dyn Recipe) {
    let meta = recipe.meta();
    let inv = meta.invariant;
    let tag = format!("[{} → {inv}]", meta.name);
    let mut env = Env::healthy().await;
    let config = env.recipe_config_path();
    // The platform's drain sweep is alive, as in the simulated fleet the recipes are written
    // for (B-05's waiting row is excused by a fresh heartbeat, not judged by B-02's slot arm).
    let _: () = env
        .platform
        .redis()
        .set("canary:drain_tick_at", now_ms() / 1000)
        .await
        .unwrap();
    let mut injector = Injector::connect(
        &env.dir.path().join("platform.db"),
        &env.redis.url(),
        "site-",
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{tag} injector: {e}"));
    let site = injector.site(recipe);
    let check = |extra: &[&str]| {
        let (code, stdout, stderr) = run_canary(&config, extra);
        let json: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{tag} not JSON ({e}): {stdout}\nstderr: {stderr}"));
        (code, json)
    };

    // Sites exist before the first cycle (E-02's recipe reverses a row a cycle has seen).
    injector
        .provision(&[recipe])
        .unwrap_or_else(|e| panic!("{tag} provision: {e}"));
    let (code, first) = check(&[]);
    assert_eq!(code, 0, "{tag} healthy first: {first:#}");

    let what = injector.inject(recipe).await;
    let what = what.unwrap_or_else(|e| panic!("{tag} inject: {e}"));
    let mut detected = None;
    for n in 1..=meta.cycles_to_detect {
        if n > 1 {
            // H-01: the suspicion must have lasted its confirmation interval (1 s here).
            std::thread::sleep(std::time::Duration::from_millis(1_100));
        }
        let (code, result) = check(&[]);
        if outcome(&result, inv) == "red" {
            detected = Some((n, code, result));
            break;
        }
        assert!(
            transitions(&result).is_empty(),
            "{tag} cycle {n} after the injection ({what}): {result:#}"
        );
    }
    let (n, code, red) = detected.unwrap_or_else(|| {
        panic!(
            "{tag} not red within {} cycle(s) of: {what}",
            meta.cycles_to_detect
        )
    });
    let expected_n = if meta.cycles_to_detect > 1 { 2 } else { 1 };
    assert_eq!(n, expected_n, "{tag} detected on cycle {n}");
    assert_eq!(code, 1, "{tag} {red:#}");
    let v = violations_of(&red, inv);
    assert_eq!(v.len(), 1, "{tag} one broken thing, one violation: {red:#}");
    assert_eq!(v[0]["signal"], meta.signal, "{tag} {red:#}");
    assert_eq!(
        v[0]["severity"],
        serde_json::to_value(meta.severity).unwrap(),
        "{tag} {red:#}"
    );
    if meta.platform_wide.is_none() {
        let subject = v[0]["subject"].as_str().unwrap_or_default();
        assert!(
            subject.contains(&site),
            "{tag} the violation is about the site {site}: {red:#}"
        );
    }
    assert_eq!(
        transitions(&red),
        [pair(inv, "fired")],
        "{tag} one broken thing, one alert: {red:#}"
    );

    let repaired = injector.revert(recipe).await;
    repaired.unwrap_or_else(|e| panic!("{tag} revert: {e}"));
    let (code, green) = check(&[]);
    assert_eq!(code, 0, "{tag} {green:#}");
    assert_eq!(transitions(&green), [pair(inv, "resolved")], "{tag}");
}

/// Every recipe of the registry, so a recipe added there is run here without naming it; except
/// those needing a Docker engine (run on a private one in tests/docker.rs) and those whose
/// invariant needs another optional source this platform does not have (B-01's drift lives in
/// the simulator's queue accessor: proved by `fleet::b01_accessor_drift` and `queue_count::*`).
#[tokio::test]
async fn every_recipe_of_the_registry_fires_then_resolves() {
    for recipe in RECIPES.iter().filter(|r| !r.meta().needs_docker) {
        if !canary_invariants::catalog::core_ids().any(|id| id == recipe.meta().invariant) {
            continue;
        }
        recipe_fires_then_resolves(*recipe).await;
    }
}

/// A fault no recipe covers (another signal of the invariant, or evidence a recipe run does not
/// check): what breaks, what must turn red, and how to heal it.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The metadata hash of a running slot is gone (TTL expired, or never written).
    S04MemberWithoutMeta,
    /// An enqueue path forgot the backlog metadata.
    E04NoMetadata,
    /// A credential pasted into a queued request.
    G04Secret,
}

/// A credential-shaped token (not a real one) used by the G-04 fault.
const SECRET: &str = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789";

impl Fault {
    /// (invariant, subject, signal, severity) expected once the fault is in place.
    fn expected(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Fault::S04MemberWithoutMeta => {
                ("S-04", "agent-b-run-0", "member_without_meta", "critical")
            }
            Fault::E04NoMetadata => ("E-04", "q-1", "backlog_metadata_null", "major"),
            Fault::G04Secret => ("G-04", "q-secret", "credential_in_metadata", "critical"),
        }
    }

    async fn apply(self, env: &mut Env) {
        let db = env.platform.sqlite().unwrap();
        match self {
            Fault::S04MemberWithoutMeta => {
                let meta = env.platform.meta_key("agent-b", "agent-b-run-0");
                let _: i64 = env.platform.redis().del(&meta).await.unwrap();
            }
            Fault::E04NoMetadata => {
                db.execute(
                    "INSERT INTO schedule_executions (id, agent_name, status, queued_at) \
                     VALUES ('q-1', 'agent-a', 'queued', ?1)",
                    [platform::iso(now_ms())],
                )
                .unwrap();
            }
            Fault::G04Secret => {
                db.execute(
                    "INSERT INTO schedule_executions (id, agent_name, status, queued_at, \
                     backlog_metadata) VALUES ('q-secret', 'agent-c', 'queued', ?1, ?2)",
                    [
                        platform::iso(now_ms()),
                        format!(r#"{{"message": "deploy", "env": {{"GH_TOKEN": "{SECRET}"}}}}"#),
                    ],
                )
                .unwrap();
            }
        }
    }

    async fn revert(self, env: &mut Env) {
        let db = env.platform.sqlite().unwrap();
        match self {
            Fault::S04MemberWithoutMeta => {
                // Re-acquiring rewrites the hash with the platform's TTL, at the same score.
                env.platform
                    .acquire_slot("agent-b", "agent-b-run-0", TIMEOUT, env.now - 120_000)
                    .await
                    .unwrap();
            }
            Fault::E04NoMetadata => {
                db.execute(
                    "UPDATE schedule_executions SET backlog_metadata = '{\"message\": \"hi\"}' \
                     WHERE id = 'q-1'",
                    [],
                )
                .unwrap();
            }
            Fault::G04Secret => {
                db.execute(
                    "UPDATE schedule_executions SET backlog_metadata = '{\"message\": \"deploy\"}' \
                     WHERE id = 'q-secret'",
                    [],
                )
                .unwrap();
            }
        }
    }
}

/// Healthy and green → fault → red with the right subject, signal and severity, exit 1, exactly
/// one `fired` → revert → green, exit 0, exactly one `resolved`.
async fn fault_fires_then_resolves(fault: Fault) {
    let (id, subject, signal, severity) = fault.expected();
    let mut env = Env::healthy().await;
    let (code, first) = env.check(&[]);
    assert_eq!(code, 0, "{fault:?}: healthy first: {first:#}");

    fault.apply(&mut env).await;
    let (code, stdout, stderr) = run_canary(&env.config_path(), &[]);
    let red: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 1, "{fault:?}: {red:#}");
    let v = violations_of(&red, id);
    assert_eq!(v.len(), 1, "{fault:?}: {red:#}");
    assert_eq!(v[0]["subject"], subject, "{fault:?}");
    assert_eq!(v[0]["signal"], signal, "{fault:?}");
    assert_eq!(v[0]["severity"], severity, "{fault:?}");
    assert_eq!(
        transitions(&red),
        [pair(id, "fired")],
        "{fault:?}: one broken thing, one alert: {red:#}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(SECRET), "{fault:?}: secret leaked");
    }

    fault.revert(&mut env).await;
    let (code, green) = env.check(&[]);
    assert_eq!(code, 0, "{fault:?}: {green:#}");
    assert_eq!(transitions(&green), [pair(id, "resolved")], "{fault:?}");
}

#[tokio::test]
async fn s04_stray_metadata_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("s04-orphan-meta")).await;
}

#[tokio::test]
async fn s04_member_without_metadata_fires_once_not_also_s03() {
    fault_fires_then_resolves(Fault::S04MemberWithoutMeta).await;
}

#[tokio::test]
async fn e03_terminal_row_without_completed_at_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("e03-no-completed-at")).await;
}

#[tokio::test]
async fn e04_queued_row_without_metadata_fires_then_resolves() {
    fault_fires_then_resolves(Fault::E04NoMetadata).await;
}

#[tokio::test]
async fn e05_running_row_without_session_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("e05-no-session")).await;
}

#[tokio::test]
async fn e06_overdue_schedule_fires_then_resolves() {
    recipe_fires_then_resolves(recipe("e06-overdue-schedule")).await;
}

#[tokio::test]
async fn g04_credential_fires_by_pattern_name_and_never_leaks_the_text() {
    fault_fires_then_resolves(Fault::G04Secret).await;
    // Nor is it anywhere in canary's own state (violations, outbox payloads).
    let mut env = Env::healthy().await;
    Fault::G04Secret.apply(&mut env).await;
    let (_, red) = env.check(&[]);
    assert_eq!(
        violations_of(&red, "G-04")[0]["observed_state"]["patterns"],
        serde_json::json!(["github_fine_grained_pat"])
    );
    let needle = SECRET.as_bytes();
    for suffix in ["", "-wal", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", env.state_path().display()));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "secret found in {}",
            path.display()
        );
    }
}

/// `canary invariants` renders each rule with the configured thresholds, not the defaults.
#[tokio::test]
async fn the_catalog_listing_shows_the_configured_thresholds() {
    let env = Env::healthy().await;
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["invariants", "--config"])
        .arg(env.config_path())
        .env_remove("CANARY_CONFIG")
        .output()
        .expect("run canary");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("A drain sentinel in a slot set lives less than 120 s."),
        "{text}"
    );
    assert!(!text.contains("less than 10 s"), "{text}");
}

/// Malformed SQL rows are G-05 findings on a real database: a cap that is not an integer and
/// an unparseable timestamp each give one violation naming the row and column, with its reason code, never the
/// value; the exit code says red.
#[tokio::test]
async fn malformed_rows_are_g05_findings() {
    let env = Env::healthy().await;
    env.platform
        .sqlite()
        .unwrap()
        .execute_batch(
            "UPDATE agent_ownership SET max_parallel_tasks = 'many' WHERE agent_name = 'agent-a';
             INSERT INTO agent_schedules (id, agent_name, enabled, next_run_at) \
             VALUES ('bad-sched', 'agent-a', 1, 'next tuesday');",
        )
        .unwrap();
    let (code, result) = env.check(&[]);
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(outcome(&result, "G-05"), "red", "{result:#}");
    let mut found: Vec<(String, String)> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["invariant_id"], "G-05", "{result:#}");
            (
                v["subject"].as_str().unwrap().to_owned(),
                v["signal"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "agent_ownership.agent-a.max_parallel_tasks".to_owned(),
                "not_integer".to_owned()
            ),
            (
                "agent_schedules.bad-sched.next_run_at".to_owned(),
                "timestamp_unparseable".to_owned()
            ),
        ],
        "{result:#}"
    );
    let shown = result["violations"].to_string();
    assert!(
        !shown.contains("tuesday") && !shown.contains("many"),
        "{result:#}"
    );
}
