//! Bounded state (issue 11 §1) on real stores: the `canary check` binary against a private
//! `redis-server` and a platform database from the fixture schema, measuring the state file.
//!
//! - a flood of 100 000 leaked slot members: the cycle result counts all of them, keeps 100 as
//!   evidence, and every cycle after the first grows the state file by at most 100 kB;
//! - a cycle where nothing changed rewrites no episode;
//! - an episode opens, persists over several cycles as one row, is left open by a cycle that
//!   could not evaluate its invariant (unknown), closes when fixed and reopens as a new one.
//!
//! Timing and RSS are not asserted here (see `benches/RESULTS.md` and `scripts/flood.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use canary::clock::now_ms;
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use redis::AsyncCommands;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    _platform: Platform,
}

impl Env {
    /// One healthy agent with one running execution.
    async fn healthy() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("platform.db");
        platform::create_db(&db).expect("platform schema");
        let mut platform = Platform::connect(&db, &redis.url())
            .await
            .expect("connect platform");
        let now = now_ms();
        platform.add_agent("agent-a", 3, 900).unwrap();
        platform
            .start("agent-a", "agent-a-run-0", 600, now - 60_000)
            .await
            .unwrap();
        Env {
            dir,
            redis,
            _platform: platform,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// The configuration, with Redis at `redis_url` (a generous response timeout: a debug build
    /// under load reads 100 000 members slowly).
    fn config_with(&self, name: &str, redis_url: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let yaml = format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {redis_url}\n  \
             redis_response_timeout: 60s\n  redis_orphan_recheck_delay: 100ms\n\
             state:\n  path: {}\n",
            self.dir.path().join("platform.db").display(),
            self.state_path().display()
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn config(&self) -> PathBuf {
        self.config_with("canary.yaml", &self.redis.url())
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// `canary check --format json`: (exit code, result).
fn check(config: &Path) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["check", "--format", "json", "--config"])
        .arg(config)
        .env_remove("CANARY_CONFIG")
        .output()
        .expect("run canary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The state file's size in bytes with its WAL checkpointed into it (what the cycle left on disk).
fn state_bytes(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    std::fs::metadata(path).unwrap().len() + std::fs::metadata(&wal).map_or(0, |m| m.len())
}

fn query_i64(path: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// S-04's episodes: (id, subject, closed_at, evidence_cycle_id), in id order.
fn s04_episodes(path: &Path) -> Vec<(i64, String, Option<i64>, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, subject, closed_at, evidence_cycle_id FROM violation_episodes
             WHERE invariant_id = 'S-04' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const LEAKED: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_100k_leaked_members_are_all_counted_and_grow_state_by_little() {
    let env = Env::healthy().await;
    let mut r = env.redis().await;
    // Leaked an hour ago (past S-04's grace), 10 000 members per ZADD.
    let score = (now_ms() - 3_600_000) as f64 / 1000.0;
    for start in (0..LEAKED).step_by(10_000) {
        let members: Vec<(f64, String)> = (start..(start + 10_000).min(LEAKED))
            .map(|i| (score, format!("leaked-{i:06}")))
            .collect();
        sorted_set(&mut r, "ZADD", "agent:slots:agent-a", &members).await;
    }
    let config = env.config();
    let state = env.state_path();
    let mut sizes = Vec::new();
    for cycle in 1..=3 {
        let (code, result) = check(&config);
        assert_eq!(code, 1, "cycle {cycle}: red");
        let s04 = &result["violation_counts"]["S-04"];
        assert_eq!(
            s04["total"], LEAKED,
            "cycle {cycle}: every leaked member counted"
        );
        assert_eq!(s04["shown"], 100, "cycle {cycle}: the default cap");
        assert!(
            result["violation_count"].as_u64().unwrap() >= LEAKED as u64,
            "{}",
            result["violation_count"]
        );
        let shown_s04 = result["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["invariant_id"] == "S-04")
            .count();
        assert_eq!(shown_s04, 100);
        sizes.push(state_bytes(&state));
    }
    for pair in sizes.windows(2) {
        let growth = pair[1].saturating_sub(pair[0]);
        assert!(
            growth <= 100_000,
            "state grew {growth} bytes in a cycle after the first: {sizes:?}"
        );
    }
    // The full count is stored per cycle, the evidence once per episode.
    assert_eq!(
        query_i64(
            &state,
            "SELECT violations FROM cycle_invariants WHERE invariant_id = 'S-04'
             ORDER BY cycle_id DESC LIMIT 1"
        ),
        LEAKED as i64
    );
    assert_eq!(s04_episodes(&state).len(), 100);
    assert_eq!(
        query_i64(
            &state,
            "SELECT COUNT(*) FROM cycles WHERE violation_count >= 100000"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_open_persist_survive_unknown_close_and_reopen() {
    let env = Env::healthy().await;
    let mut r = env.redis().await;
    let config = env.config();
    let state = env.state_path();
    // A stray metadata hash without expiry: S-04 meta_without_member, evidence that does not
    // change from cycle to cycle.
    let stray = "agent:slot:agent-a:stray-1";
    let _: i64 = r.hset(stray, "timeout_seconds", 600).await.unwrap();

    let (code, first) = check(&config);
    assert_eq!(code, 1, "{first}");
    let episodes = s04_episodes(&state);
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    let (id, subject, closed, evidence_cycle) = episodes[0].clone();
    assert_eq!((subject.as_str(), closed), ("stray-1", None));
    let cited = first["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["invariant_id"] == "S-04")
        .unwrap()["id"]
        .as_i64();
    assert_eq!(cited, Some(id), "the cycle result cites the episode");

    // Nothing changed: the same row, its evidence not rewritten.
    let before = state_bytes(&state);
    for _ in 0..3 {
        let (code, _) = check(&config);
        assert_eq!(code, 1);
    }
    assert_eq!(
        s04_episodes(&state),
        vec![(id, "stray-1".to_owned(), None, evidence_cycle)],
        "one row over four cycles, evidence untouched"
    );
    let growth = state_bytes(&state).saturating_sub(before);
    assert!(
        growth <= 3 * 4096,
        "three unchanged cycles grew the state by {growth} bytes"
    );

    // Redis unreadable: S-04 unknown, which closes nothing.
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let blind = env.config_with("blind.yaml", &dead);
    let (code, result) = check(&blind);
    assert_eq!(code, 2, "{result}");
    assert_eq!(result["outcomes"]["S-04"], "unknown");
    assert_eq!(s04_episodes(&state)[0].2, None, "unknown does not close");

    // Fixed: the episode closes, with its span.
    let _: i64 = r.del(stray).await.unwrap();
    let (code, result) = check(&config);
    assert_eq!(result["outcomes"]["S-04"], "green", "{result}");
    assert_eq!(code, 0, "{result}");
    let closed = s04_episodes(&state);
    assert_eq!(closed.len(), 1);
    assert!(closed[0].2.is_some(), "closed: {closed:?}");
    assert_eq!(
        query_i64(
            &state,
            &format!("SELECT cycles FROM violation_episodes WHERE id = {id}")
        ),
        4,
        "red in four cycles (the unknown one does not count)"
    );

    // Back again: a new episode, the old one stays closed.
    let _: i64 = r.hset(stray, "timeout_seconds", 600).await.unwrap();
    let (code, _) = check(&config);
    assert_eq!(code, 1);
    let episodes = s04_episodes(&state);
    assert_eq!(episodes.len(), 2, "{episodes:?}");
    assert!(episodes[0].2.is_some());
    assert_eq!(episodes[1].2, None);
    assert_ne!(episodes[1].0, id);

    // `canary violations` lists both, newest first, with their status.
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args([
            "violations",
            "--format",
            "json",
            "--invariant",
            "S-04",
            "--config",
        ])
        .arg(&config)
        .env_remove("CANARY_CONFIG")
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["total"], 2, "{listed}");
    assert_eq!(listed["violations"][0]["status"], "open");
    assert_eq!(listed["violations"][1]["status"], "closed");
    assert_eq!(listed["violations"][1]["cycles"], 4);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cmd key args` on a sorted set of the test's Redis (`ZADD`, `ZREM`; the count is not used).
async fn sorted_set(
    r: &mut redis::aio::MultiplexedConnection,
    cmd: &str,
    key: &str,
    args: impl redis::ToRedisArgs,
) {
    let _: i64 = redis::cmd(cmd)
        .arg(key)
        .arg(args)
        .query_async(r)
        .await
        .unwrap();
}

/// One key cannot make memory unbounded: a slot set larger than
/// `platform.redis_max_members_per_key` is read up to it, G-05 reports the truncation with the
/// set's full size, and the hash of a real member beyond the read is not invented into a stray.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_a_huge_slot_set_is_read_up_to_the_cap_and_reported() {
    let env = Env::healthy().await;
    let mut r = env.redis().await;
    // 150 leaked members scored before the real running one (which has its metadata hash).
    let score = (now_ms() - 3_600_000) as f64 / 1000.0;
    let members: Vec<(f64, String)> = (0..150)
        .map(|i| (score, format!("leaked-{i:03}")))
        .collect();
    sorted_set(&mut r, "ZADD", "agent:slots:agent-a", &members).await;
    let base = std::fs::read_to_string(env.config()).unwrap();
    let capped = env.dir.path().join("capped.yaml");
    std::fs::write(
        &capped,
        base.replace(
            "  redis_response_timeout: 60s\n",
            "  redis_response_timeout: 60s\n  redis_max_members_per_key: 100\n",
        ),
    )
    .unwrap();
    let (code, result) = check(&capped);
    assert_eq!(code, 1, "{result}");
    assert_eq!(result["violation_counts"]["S-04"]["total"], 100, "{result}");
    let g05: Vec<&Value> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["invariant_id"] == "G-05")
        .collect();
    assert_eq!(g05.len(), 1, "{g05:?}");
    assert_eq!(g05[0]["signal"], "slot_set_truncated");
    assert_eq!(g05[0]["subject"], "agent:slots:agent-a");
    let notes = result["diagnostics"]["anomalies"].to_string();
    assert!(
        notes.contains("151 members; the first 100"),
        "the full size is reported: {notes}"
    );
    let strays: Vec<&Value> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["signal"] == "meta_without_member")
        .collect();
    assert!(
        strays.is_empty(),
        "an unread member's hash is not a stray: {strays:?}"
    );
    // Without the cap the same platform is read whole.
    let (_, result) = check(&env.config());
    assert_eq!(result["violation_counts"]["S-04"]["total"], 150, "{result}");
    assert_eq!(result["outcomes"]["G-05"], "green", "{result}");

    // At the cap exactly the set is whole; one more member and it is not.
    let extra: Vec<String> = (99..150).map(|i| format!("leaked-{i:03}")).collect();
    sorted_set(&mut r, "ZREM", "agent:slots:agent-a", &extra).await;
    let (_, result) = check(&capped);
    assert_eq!(result["violation_counts"]["S-04"]["total"], 99, "{result}");
    assert_eq!(
        result["outcomes"]["G-05"], "green",
        "100 members, cap 100: {result}"
    );
    sorted_set(&mut r, "ZADD", "agent:slots:agent-a", (score, "leaked-099")).await;
    let (_, result) = check(&capped);
    assert_eq!(result["outcomes"]["G-05"], "red", "{result}");
    let notes = result["diagnostics"]["anomalies"].to_string();
    assert!(notes.contains("101 members; the first 100"), "{notes}");
}
