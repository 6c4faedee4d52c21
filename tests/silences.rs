//! Silences and maintenance windows end to end (issue 14): real cycles over a real platform
//! (SQLite file + private redis-server), a real state database, the real deliverer posting to a
//! local webhook receiver. Two custom SQL invariants read two flag tables the test fills, so each
//! test decides exactly which subjects are red. Also the `canary silence` CLI round trip.
//!
//! What is asserted is what reaches Slack (POSTs counted after the outbox drained) and what is
//! stored (transitions with `silenced_by`, outbox rows), never the planner's own view.

use std::path::PathBuf;
use std::time::Duration;

use canary::alert::Deliverer;
use canary::config::{Config, Secret};
use canary::cycle::{CycleRequest, CycleResult, Trigger, run_cycle};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::store::{NewSilence, SharedDb, StateDb};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::webhook::{Received, Webhook};

const INSTANCE: &str = "canary-test-eu";

struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    _platform: Platform,
    hook: Webhook,
    config: Config,
    db: SharedDb,
    cancel: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Env {
    /// A green one-agent platform, two flag tables behind custom invariants C-01 (critical) and
    /// C-02 (major), a webhook and a running deliverer. `extra_alerts` is spliced under `alerts:`.
    async fn start(extra_alerts: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let platform_db = dir.path().join("platform.db");
        platform::create_db(&platform_db).unwrap();
        let platform = Platform::connect(&platform_db, &redis.url()).await.unwrap();
        platform.add_agent("agent-a", 3, 900).unwrap();
        rusqlite::Connection::open(&platform_db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE flags_one (subject TEXT NOT NULL);
                 CREATE TABLE flags_two (subject TEXT NOT NULL);",
            )
            .unwrap();
        let hook = Webhook::start(vec![]).await;
        let yaml = format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {}\nstate:\n  path: {}\n\
             alerts:\n  instance: {INSTANCE}\n  slack:\n    webhook_url: \"{}\"\n    min_interval: 10ms\n{extra_alerts}\
             custom_invariants:\n\
             \x20 - id: C-01\n    name: Flagged one\n    severity: critical\n\
             \x20   sql: SELECT subject, 'flagged ' || subject AS summary FROM flags_one\n\
             \x20 - id: C-02\n    name: Flagged two\n    severity: major\n\
             \x20   sql: SELECT subject, 'flagged ' || subject AS summary FROM flags_two\n",
            platform_db.display(),
            redis.url(),
            dir.path().join("state.db").display(),
            hook.url(),
        );
        let path = dir.path().join("canary.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = canary::config::load_from(Some(&path), &[], &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let problems = canary::config::validate(&config);
        assert!(problems.is_empty(), "{problems:?}");
        let db = SharedDb::new(StateDb::open(&config.state.path).unwrap());
        let deliverer = Deliverer::new(
            &config.state.path,
            config
                .webhook_url()
                .unwrap()
                .map(|s| Secret::new(s.expose())),
            config.alerts.clone(),
        )
        .unwrap()
        .with_poll_interval(Duration::from_millis(50));
        let cancel = CancellationToken::new();
        tokio::spawn(deliverer.run(cancel.clone()));
        Env {
            dir,
            redis,
            _platform: platform,
            hook,
            config,
            db,
            cancel,
        }
    }

    fn platform_db(&self) -> PathBuf {
        self.dir.path().join("platform.db")
    }

    /// Replaces the red subjects of `table` (`flags_one` = C-01, `flags_two` = C-02).
    fn flag(&self, table: &str, subjects: &[&str]) {
        let conn = rusqlite::Connection::open(self.platform_db()).unwrap();
        conn.execute(&format!("DELETE FROM {table}"), []).unwrap();
        for s in subjects {
            conn.execute(&format!("INSERT INTO {table} (subject) VALUES (?1)"), [s])
                .unwrap();
        }
    }

    async fn cycle(&self) -> CycleResult {
        let request = CycleRequest {
            trigger: Trigger::Manual,
            only: None,
        };
        run_cycle(&self.config, &self.db, &request).await.unwrap()
    }

    async fn silence(&self, ids: &[&str], subject: Option<&str>, for_ms: i64) -> i64 {
        let now = canary::clock::now_ms();
        let new = NewSilence {
            invariant_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            subject_glob: subject.map(str::to_owned),
            starts_at_ms: now,
            ends_at_ms: now + for_ms,
            author: "test".to_owned(),
            comment: "maintenance".to_owned(),
        };
        self.db
            .call(move |db| db.add_silence(&new, now))
            .await
            .unwrap()
            .id
    }

    /// Waits until every outbox row is delivered, then returns every POST received so far.
    async fn drained_posts(&self) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = self.config.state.path.clone();
        loop {
            let pending: i64 = rusqlite::Connection::open(&state)
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM alert_outbox WHERE delivered_at IS NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            if pending == 0 {
                return self.hook.received();
            }
            assert!(
                Instant::now() < deadline,
                "{pending} outbox rows never delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `(invariant, kind, silenced_by, released)` of every stored transition, oldest first.
    fn transitions(&self) -> Vec<(String, String, Option<String>, bool)> {
        let conn = rusqlite::Connection::open(&self.config.state.path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT invariant_id, kind, silenced_by, released_at IS NOT NULL
                 FROM transitions ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// The posts about `id` (the text starts `<emoji> <id> …`).
fn about<'a>(posts: &'a [Received], id: &str) -> Vec<&'a Received> {
    posts
        .iter()
        .filter(|p| p.body["text"].as_str().unwrap_or("").split(' ').nth(1) == Some(id))
        .collect()
}

fn text(p: &Received) -> &str {
    p.body["text"].as_str().unwrap_or("")
}

/// The violation ids a message names in its context (`… violation ids 3, 4 (…)`).
fn named_ids(p: &Received) -> Vec<i64> {
    let body = p.body.to_string();
    let Some(start) = body.find("violation id") else {
        return Vec::new();
    };
    let rest = &body[start..];
    let rest = rest
        .trim_start_matches("violation ids")
        .trim_start_matches("violation id");
    let list = rest.split('(').next().unwrap_or("");
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// A silence on C-01 for subjects `fleet-*` mutes C-01 while every red subject matches, and
/// nothing else: C-02, red in the same cycle, reaches Slack, naming its instance and its violation
/// id (which the API's store lookup resolves). When a subject outside the glob turns red, the
/// silence no longer covers C-01: ONE fired message is sent then, noting the silence.
#[tokio::test]
async fn a_silence_mutes_exactly_what_it_matches() {
    let env = Env::start("").await;
    let silence = env.silence(&["C-01"], Some("fleet-*"), 3_600_000).await;
    env.flag("flags_one", &["fleet-1", "fleet-2"]);
    env.flag("flags_two", &["x"]);

    let first = env.cycle().await;
    let kinds: Vec<(&str, Option<&str>)> = first
        .transitions
        .iter()
        .map(|t| (t.invariant_id.as_str(), t.silenced_by.as_deref()))
        .collect();
    let by = format!("silence:{silence}");
    assert_eq!(kinds, [("C-01", Some(by.as_str())), ("C-02", None)]);
    env.hook.wait_for(1, Duration::from_secs(10)).await;
    let posts = env.drained_posts().await;
    assert_eq!(about(&posts, "C-01").len(), 0, "silenced");
    let c02 = about(&posts, "C-02");
    assert_eq!(c02.len(), 1, "{posts:?}");
    assert!(
        text(c02[0]).ends_with(&format!("canary {INSTANCE}")),
        "{}",
        text(c02[0])
    );
    let ids = named_ids(c02[0]);
    assert_eq!(ids.len(), 1, "{}", c02[0].body);
    let id = ids[0];
    let stored = env
        .db
        .call(move |db| db.violation(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.invariant_id.as_str(), stored.subject.as_str()),
        ("C-02", "x")
    );

    // Still inside the silence, nothing changes: nothing is sent.
    env.cycle().await;
    assert_eq!(env.drained_posts().await.len(), 1);

    // A red subject outside the glob: the silence no longer covers C-01 → one fired message.
    env.flag("flags_one", &["fleet-1", "prod-1"]);
    let third = env.cycle().await;
    assert!(third.transitions.is_empty(), "{:?}", third.transitions);
    assert_eq!(third.released.len(), 1, "{:?}", third.released);
    env.hook.wait_for(2, Duration::from_secs(10)).await;
    let posts = env.drained_posts().await;
    let c01 = about(&posts, "C-01");
    assert_eq!(c01.len(), 1, "{posts:?}");
    assert!(text(c01[0]).contains("fired"), "{}", text(c01[0]));
    assert!(c01[0].body.to_string().contains(&by), "{}", c01[0].body);
    assert_eq!(
        named_ids(c01[0]).len(),
        2,
        "both red subjects: {}",
        c01[0].body
    );
    env.cycle().await;
    assert_eq!(env.drained_posts().await.len(), 2, "released once");
}

/// A fire and its resolve both inside the silence: recorded (silenced), nothing ever sent, not
/// even after the silence is expired early.
#[tokio::test]
async fn fire_and_resolve_inside_a_silence_send_nothing() {
    let env = Env::start("").await;
    let silence = env.silence(&["C-01"], None, 3_600_000).await;
    env.flag("flags_one", &["a"]);
    env.cycle().await;
    env.flag("flags_one", &[]);
    env.cycle().await;
    let expired = env
        .db
        .call(move |db| db.expire_silence(silence, canary::clock::now_ms()))
        .await
        .unwrap();
    assert!(
        matches!(expired, canary::store::Expired::Expired(_)),
        "{expired:?}"
    );
    env.cycle().await;
    env.cycle().await;
    let by = Some(format!("silence:{silence}"));
    assert_eq!(
        env.transitions(),
        [
            ("C-01".to_owned(), "fired".to_owned(), by.clone(), false),
            ("C-01".to_owned(), "resolved".to_owned(), by, false),
        ]
    );
    // Give the deliverer a chance to send anything it (wrongly) had.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(env.drained_posts().await.is_empty());
}

/// A fire inside a silence that is still red when the silence ends: ONE fired message, queued by
/// the first cycle after the end; later red cycles add nothing; the resolve is then sent as usual.
#[tokio::test]
async fn a_fire_still_red_when_the_silence_ends_is_sent_once_after_the_end() {
    let env = Env::start("").await;
    let silence = env.silence(&["C-01"], None, 1_500).await;
    env.flag("flags_one", &["a"]);
    let first = env.cycle().await;
    assert_eq!(
        first.transitions[0].silenced_by,
        Some(format!("silence:{silence}"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.drained_posts().await.is_empty(),
        "nothing while silenced"
    );

    // Past the end.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = env.cycle().await;
    assert_eq!(after.released.len(), 1, "{:?}", after.released);
    assert_eq!(after.released[0].kind, "fired");
    let noted: Option<i64> = rusqlite::Connection::open(&env.config.state.path)
        .unwrap()
        .query_row(
            "SELECT end_noted_at FROM silences WHERE id = ?1",
            [silence],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        noted.is_some(),
        "the end was noted (and logged) by that cycle"
    );
    env.hook.wait_for(1, Duration::from_secs(10)).await;
    env.cycle().await;
    env.cycle().await;
    let posts = env.drained_posts().await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(text(&posts[0]).contains("C-01") && text(&posts[0]).contains("fired"));
    assert!(
        posts[0]
            .body
            .to_string()
            .contains("still red now that it is over"),
        "{}",
        posts[0].body
    );

    env.flag("flags_one", &[]);
    let resolved = env.cycle().await;
    assert_eq!(resolved.transitions[0].kind, "resolved");
    assert_eq!(resolved.transitions[0].silenced_by, None);
    env.hook.wait_for(2, Duration::from_secs(10)).await;
    let posts = env.drained_posts().await;
    assert_eq!(posts.len(), 2);
    assert!(text(&posts[1]).contains("resolved"), "{}", text(&posts[1]));
}

/// Slack heard "fired", then the resolve fell inside a silence: it is recorded silenced, and the
/// first cycle after the silence sends ONE resolved message (Slack would otherwise show it red
/// forever); nothing more after that.
#[tokio::test]
async fn a_resolve_silenced_after_an_announced_fire_is_sent_once_after_the_end() {
    let env = Env::start("").await;
    env.flag("flags_one", &["a"]);
    let fired = env.cycle().await;
    assert_eq!(fired.transitions[0].silenced_by, None);
    env.hook.wait_for(1, Duration::from_secs(10)).await;
    let silence = env.silence(&["C-01"], None, 1_500).await;
    env.flag("flags_one", &[]);
    let resolved = env.cycle().await;
    assert_eq!(
        resolved.transitions[0].silenced_by,
        Some(format!("silence:{silence}"))
    );
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let after = env.cycle().await;
    assert_eq!(after.released.len(), 1, "{:?}", after.released);
    assert_eq!(after.released[0].kind, "resolved");
    env.hook.wait_for(2, Duration::from_secs(10)).await;
    env.cycle().await;
    let posts = env.drained_posts().await;
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(text(&posts[1]).contains("resolved"), "{}", text(&posts[1]));
    assert!(
        posts[1]
            .body
            .to_string()
            .contains("resolved while silenced"),
        "{}",
        posts[1].body
    );
    let t = env.transitions();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[1].1.as_str(), t[1].3),
        ("resolved", true),
        "released: {t:?}"
    );
}

/// `alerts.maintenance_windows`: a window whose cron ticks every minute for an hour is open now
/// and mutes C-01 (`window:0`); one that opens on 1 January at midnight for a minute is closed,
/// so C-02 alerts.
#[tokio::test]
async fn a_maintenance_window_mutes_by_cron() {
    let env = Env::start(
        "  maintenance_windows:\n\
         \x20   - cron: \"* * * * *\"\n      duration: 1h\n      invariants: [C-01]\n      comment: always\n\
         \x20   - cron: \"0 0 1 1 *\"\n      duration: 1m\n      invariants: [C-02]\n      comment: new year\n",
    )
    .await;
    env.flag("flags_one", &["a"]);
    env.flag("flags_two", &["b"]);
    let r = env.cycle().await;
    let kinds: Vec<(&str, Option<&str>)> = r
        .transitions
        .iter()
        .map(|t| (t.invariant_id.as_str(), t.silenced_by.as_deref()))
        .collect();
    assert_eq!(kinds, [("C-01", Some("window:0")), ("C-02", None)]);
    env.hook.wait_for(1, Duration::from_secs(10)).await;
    let posts = env.drained_posts().await;
    assert_eq!(posts.len(), 1);
    assert_eq!(about(&posts, "C-02").len(), 1);
}

/// A blind source is silenced only by a matcher naming `source:<name>`: a silence on every
/// invariant of the test leaves "canary is blind" alone. (Checked on the cycle's decisions, with
/// `blind_after: 1` so one unreadable cycle fires.)
#[tokio::test]
async fn a_blind_source_needs_its_own_matcher() {
    let mut env = Env::start("  blind_after: 1\n").await;
    env.silence(&["C-01", "C-02", "S-01"], None, 3_600_000)
        .await;
    env.redis.kill();
    let r = env.cycle().await;
    let blind: Vec<(&str, Option<&str>)> = r
        .blind
        .transitions
        .iter()
        .map(|t| (t.invariant_id.as_str(), t.silenced_by.as_deref()))
        .collect();
    assert_eq!(blind, [("source:redis", None)]);
    env.hook.wait_for(1, Duration::from_secs(10)).await;
}

fn canary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(args)
        .env_remove("CANARY_CONFIG")
        .env("USER", "operator-jane")
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `canary silence add / list / expire` against a real state file: the author defaults to the
/// OS user, JSON round-trips, expire ends it, unknown ids and a missing comment are refused.
#[test]
fn the_silence_cli_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let state_arg = state.display().to_string();
    let s = ["--state-path", state_arg.as_str()];
    let add = json_of(&canary(
        &[
            &[
                "silence",
                "add",
                "--invariant",
                "S-01",
                "--invariant",
                "source:redis",
            ][..],
            &[
                "--subject",
                "fleet-*",
                "--for",
                "2h",
                "--comment",
                "db migration",
            ],
            &["--format", "json"],
            &s,
        ]
        .concat(),
    ));
    assert_eq!(
        add["invariant_ids"],
        serde_json::json!(["S-01", "source:redis"])
    );
    assert_eq!(add["subject"], "fleet-*");
    assert_eq!(add["author"], "operator-jane");
    assert_eq!(add["state"], "active");
    assert_eq!(
        add["ends_at_ms"].as_i64().unwrap() - add["starts_at_ms"].as_i64().unwrap(),
        7_200_000
    );
    let id = add["id"].as_i64().unwrap().to_string();

    let list = json_of(&canary(
        &[&["silence", "list", "--format", "json"][..], &s].concat(),
    ));
    assert_eq!(list["silences"][0]["id"], add["id"]);
    let text = canary(&[&["silence", "list"][..], &s].concat());
    assert!(String::from_utf8_lossy(&text.stdout).contains("db migration"));

    let expired = json_of(&canary(
        &[
            &["silence", "expire", id.as_str(), "--format", "json"][..],
            &s,
        ]
        .concat(),
    ));
    assert_eq!(expired["state"], "expired");
    let list = json_of(&canary(
        &[&["silence", "list", "--format", "json"][..], &s].concat(),
    ));
    assert_eq!(list["silences"], serde_json::json!([]));
    let all = json_of(&canary(
        &[&["silence", "list", "--all", "--format", "json"][..], &s].concat(),
    ));
    assert_eq!(all["silences"].as_array().unwrap().len(), 1);

    let bad = canary(
        &[
            &[
                "silence",
                "add",
                "--invariant",
                "Z-99",
                "--for",
                "1h",
                "--comment",
                "x",
            ][..],
            &s,
        ]
        .concat(),
    );
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Z-99"));
    let missing = canary(&[&["silence", "expire", "999"][..], &s].concat());
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("999"));
}
