//! Operator-defined SQL invariants end to end: the real `canary` binary against a platform
//! database built from the fixture schema and a private `redis-server`. A custom check fires
//! (red, subject from its column, exit 1, Slack payload with the configured name and runbook)
//! and resolves; writes, duplicate and built-in ids are refused at validation (exit 78); a
//! runaway query is interrupted within its limit while the other invariants are still judged;
//! the row limit truncates; entries load from a directory of files; the shipped examples
//! validate against the fixture schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canary::config::{Overrides, load_from, validate};
use canary::fleet::redis_server::RedisServer;
use rusqlite::Connection;
use serde_json::Value;

use crate::support::cli::{canary, violations_of};

use crate::support::platform_db::{AgentRow, PlatformDb};

/// The example-style check: sharing edges of soft-deleted agents, one row per agent.
const SHARING: &str = "  - id: C-01
    name: Sharing edges point at live agents
    severity: critical
    runbook: Remove the agent_sharing rows of the deleted agent.
    sql: |
      SELECT s.agent_name AS subject, count(*) AS edges
      FROM agent_sharing AS s
      JOIN agent_ownership AS a ON a.agent_name = s.agent_name
      WHERE a.deleted_at IS NOT NULL
      GROUP BY s.agent_name
";

struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    platform: PlatformDb,
}

impl Env {
    /// Two live agents and one soft-deleted one, no executions, empty Redis: every built-in
    /// invariant is green.
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let platform = PlatformDb::create();
        platform.add_agents(&[
            AgentRow::new("agent-a"),
            AgentRow::new("agent-b"),
            AgentRow::new("agent-old").deleted("2026-01-01T00:00:00Z"),
        ]);
        Env {
            dir,
            redis,
            platform,
        }
    }

    /// Writes a config with `extra` YAML appended; returns its path.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let yaml = format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {}\nstate:\n  path: {}\n\
             alerts:\n  slack:\n    webhook_url: \"https://hooks.example.invalid/services/T/B/x\"\n{extra}",
            self.platform.path().display(),
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

/// `canary check --format json --config <config> <extra>`: (exit code, result JSON, stderr).
fn check(config: &Path, extra: &[&str]) -> (i32, Value, String) {
    let config = config.display().to_string();
    let mut args = vec!["check", "--format", "json", "--config", &config];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = canary(&args);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, json, stderr)
}

fn validate_cmd(config: &Path) -> (i32, String, String) {
    let config = config.display().to_string();
    canary(&["config", "validate", "--config", &config])
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

const BUILT_IN: [&str; 4] = ["S-01", "E-02", "L-03", "S-03"];

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_invariant_fires_and_resolves_with_its_own_slack_meta() {
    let env = Env::new();
    let config = env.config("canary.yaml", &format!("custom_invariants:\n{SHARING}"));
    let (code, green, stderr) = check(&config, &[]);
    assert_eq!(code, 0, "{green:#}\n{stderr}");
    assert_eq!(outcome(&green, "C-01"), "green");
    assert!(
        green["checks_run"]
            .as_array()
            .unwrap()
            .contains(&"C-01".into())
    );

    env.platform.exec(
        "INSERT INTO agent_sharing (agent_name, shared_with_email) VALUES \
         ('agent-old', 'x@example.com'), ('agent-old', 'y@example.com'), \
         ('agent-a', 'z@example.com')",
    );
    let (code, red, _) = check(&config, &[]);
    assert_eq!(code, 1, "{red:#}");
    assert_eq!(outcome(&red, "C-01"), "red");
    for id in BUILT_IN {
        assert_eq!(outcome(&red, id), "green", "{id}: {red:#}");
    }
    let v = violations_of(&red, "C-01");
    assert_eq!(v.len(), 1, "{red:#}");
    assert_eq!(v[0]["subject"], "agent-old");
    assert_eq!(v[0]["severity"], "critical");
    assert_eq!(v[0]["tier"], "A");
    assert_eq!(v[0]["observed_state"]["edges"], 2);
    assert!(v[0]["id"].as_i64().is_some(), "persisted");
    assert_eq!(transitions(&red), [("C-01".to_owned(), "fired".to_owned())]);

    // `--invariant` accepts a custom id and runs only it.
    let (code, only, _) = check(&config, &["--invariant", "C-01", "--no-persist"]);
    assert_eq!(code, 1);
    assert_eq!(only["checks_run"], serde_json::json!(["C-01"]));

    env.platform
        .exec("DELETE FROM agent_sharing WHERE agent_name = 'agent-old'");
    let (code, resolved, _) = check(&config, &[]);
    assert_eq!(code, 0, "{resolved:#}");
    assert_eq!(
        transitions(&resolved),
        [("C-01".to_owned(), "resolved".to_owned())]
    );

    let state = Connection::open(env.state_path()).unwrap();
    let kinds: Vec<String> = state
        .prepare("SELECT kind FROM transitions WHERE invariant_id = 'C-01' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["fired", "resolved"]);
    let payloads: Vec<String> = state
        .prepare(
            "SELECT o.payload FROM alert_outbox o JOIN transitions t ON t.id = o.transition_id \
             WHERE t.invariant_id = 'C-01' ORDER BY o.id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(payloads.len(), 2);
    assert!(
        payloads[0].contains("C-01 Sharing edges point at live agents fired"),
        "{}",
        payloads[0]
    );
    assert!(
        payloads[0].contains("Remove the agent_sharing rows of the deleted agent."),
        "{}",
        payloads[0]
    );
    assert!(payloads[0].contains("agent-old"), "{}", payloads[0]);
    assert!(
        payloads[1].contains("Sharing edges point at live agents resolved"),
        "{}",
        payloads[1]
    );
}

#[test]
fn writes_are_refused_at_validation_by_sqlite_with_exit_78() {
    let env = Env::new();
    let writes = [
        "DELETE FROM agent_sharing",
        "UPDATE agent_ownership SET deleted_at = NULL",
        "INSERT INTO agent_tags (agent_name, tag) VALUES ('agent-a', 'x')",
        "CREATE TABLE canary_was_here (x)",
        "DROP TABLE agent_tags",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA writable_schema = 1",
        "SELECT 1; DELETE FROM agent_sharing",
    ];
    for (i, sql) in writes.iter().enumerate() {
        let entry = format!(
            "custom_invariants:\n  - id: custom.write_{i}\n    name: sneaky\n    sql: \"{sql}\"\n"
        );
        let config = env.config(&format!("write-{i}.yaml"), &entry);
        let (code, stdout, stderr) = validate_cmd(&config);
        assert_eq!(code, 78, "{sql}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "custom_invariants[0].sql: custom.write_{i} (sneaky)"
            )),
            "{sql}: {stderr}"
        );
        assert!(
            stderr.contains("not read-only")
                || stderr.contains("exactly one statement")
                || stderr.contains("must be a SELECT"),
            "{sql}: {stderr}"
        );
        assert!(!stderr.contains("hooks.example.invalid"), "{stderr}");
        // `check` refuses the same configuration before touching anything.
        let (code, _, _) = canary(&["check", "--config", &config.display().to_string()]);
        assert_eq!(code, 78, "{sql}");
    }
    let conn = Connection::open(env.platform.path()).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('canary_was_here', 'agent_tags')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "nothing was created or dropped");
    let deleted: i64 = conn
        .query_row(
            "SELECT count(*) FROM agent_ownership WHERE deleted_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(deleted, 1);
}

#[test]
fn duplicate_builtin_and_malformed_ids_are_refused() {
    let env = Env::new();
    let dir = env.dir.path().join("invariants.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("dup.yaml"),
        "id: C-01\nname: again\nsql: SELECT 1 AS x\n",
    )
    .unwrap();
    let extra = format!(
        "custom_invariants_dir: invariants.d\ncustom_invariants:\n{SHARING}\
         \n  - id: S-01\n    name: shadow\n    sql: SELECT 1\n\
         \n  - id: E-99\n    name: future\n    sql: SELECT 1\n\
         \n  - id: 1bad id\n    name: bad\n    sql: SELECT 1\n\
         \n  - id: C-02\n    name: empty\n    sql: \"  \"\n"
    );
    let config = env.config("ids.yaml", &extra);
    let (code, _, stderr) = validate_cmd(&config);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "dup.yaml[0].id: duplicate id \"C-01\": already used by custom_invariants[0]"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("custom_invariants[1].id: \"S-01\" is the id of the built-in invariant S-01"),
        "{stderr}"
    );
    assert!(
        stderr.contains("custom_invariants[2].id: \"E-99\" has the shape of a built-in id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("custom_invariants[3].id: \"1bad id\" is not a valid custom invariant id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("custom_invariants[4].sql: C-02: sql is empty"),
        "{stderr}"
    );

    // An unknown key in an entry is a load error naming the entry and the key.
    let config = env.config(
        "unknown.yaml",
        "custom_invariants:\n  - id: C-01\n    name: x\n    sql: SELECT 1\n    sqll: SELECT 2\n",
    );
    let (code, _, stderr) = validate_cmd(&config);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("custom_invariants[0].sqll: unknown field"),
        "{stderr}"
    );

    // An id that is neither built-in nor configured is refused by `check --invariant`.
    let config = env.config("ok.yaml", &format!("custom_invariants:\n{SHARING}"));
    let (code, _, stderr) = canary(&[
        "check",
        "--config",
        &config.display().to_string(),
        "--invariant",
        "C-99",
    ]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("C-99"), "{stderr}");
}

#[test]
fn a_runaway_query_is_interrupted_and_only_its_invariant_is_unknown() {
    let env = Env::new();
    let extra = format!(
        "custom_invariants:\n{SHARING}\
         \n  - id: C-slow\n    name: counts to a billion\n    timeout: 300ms\n    sql: >-\n      \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)\n      \
         SELECT x AS subject FROM c WHERE x = 1000000000\n"
    );
    let config = env.config("slow.yaml", &extra);
    let started = Instant::now();
    let (code, result, stderr) = check(&config, &[]);
    let took = started.elapsed();
    // The cycle itself (collect, custom statements, evaluate) stays within the
    // statement's limit plus 1 s; the process as a whole (startup on a busy test machine
    // included) gets some slack on top.
    let cycle_ms = result["duration_ms"].as_f64().unwrap();
    assert!(cycle_ms < 300.0 + 1000.0, "cycle took {cycle_ms} ms");
    assert!(took < Duration::from_secs(5), "process took {took:?}");
    assert_eq!(code, 2, "unknown, nothing red: {result:#}\n{stderr}");
    assert_eq!(outcome(&result, "C-slow"), "unknown");
    let reason = result["diagnostics"]["unknown_reasons"]["C-slow"]
        .as_str()
        .unwrap();
    assert!(reason.contains("time limit of 300ms"), "{reason}");
    assert_eq!(outcome(&result, "C-01"), "green");
    for id in BUILT_IN {
        assert_eq!(outcome(&result, id), "green", "{id}: {result:#}");
    }
    assert!(result["sources_unavailable"].as_array().unwrap().is_empty());
}

#[test]
fn the_row_limit_truncates_and_says_so() {
    let env = Env::new();
    let extra = "custom_limits:\n  row_limit: 2\ncustom_invariants:\n  - id: custom.live_agents\n    \
                 name: every live agent\n    severity: minor\n    sql: >-\n      \
                 SELECT agent_name FROM agent_ownership ORDER BY agent_name\n  \
                 - id: custom.one\n    name: one row\n    row_limit: 1\n    \
                 sql: SELECT 'x' AS subject, x'00ff' AS raw, 1.5 AS score, NULL AS none_here\n";
    let config = env.config("limit.yaml", extra);
    let (code, result, _) = check(&config, &["--no-persist"]);
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(violations_of(&result, "custom.live_agents").len(), 2);
    let anomalies = result["diagnostics"]["anomalies"].as_array().unwrap();
    let truncated: Vec<&Value> = anomalies
        .iter()
        .filter(|a| a["note"].as_str().unwrap_or("").contains("truncated"))
        .collect();
    assert_eq!(truncated.len(), 1, "{anomalies:?}");
    assert_eq!(
        truncated[0]["subject"],
        "custom invariant custom.live_agents"
    );
    // Derived subject: the row's JSON (no `subject` column).
    let subjects: Vec<&str> = violations_of(&result, "custom.live_agents")
        .iter()
        .map(|v| v["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [r#"{"agent_name":"agent-a"}"#, r#"{"agent_name":"agent-b"}"#,]
    );
    let one = violations_of(&result, "custom.one");
    assert_eq!(one.len(), 1);
    assert_eq!(
        one[0]["observed_state"],
        serde_json::json!({"subject": "x", "raw": {"blob_bytes": 2, "hex": "00ff"}, "score": 1.5, "none_here": null})
    );
    assert_eq!(
        one[0]["summary"],
        "one row: the check query returned this row"
    );
}

#[test]
fn entries_load_from_a_directory_of_files() {
    let env = Env::new();
    let dir = env.dir.path().join("checks.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("10-one.yaml"),
        "id: C-20\nname: deleted agents\ntier: B\nseverity: minor\n\
         sql: SELECT agent_name AS subject FROM agent_ownership WHERE deleted_at IS NOT NULL\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-list.yml"),
        "- id: C-21\n  name: nothing\n  sql: SELECT 1 AS x WHERE 0\n\
         - id: C-22\n  name: disabled\n  enabled: false\n  sql: SELECT 1 AS x\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.txt"), "not yaml, ignored").unwrap();
    std::fs::write(dir.join(".swap.yaml"), "garbage: [").unwrap();
    let config = env.config("dir.yaml", "custom_invariants_dir: checks.d\n");
    let (code, _, stderr) = validate_cmd(&config);
    assert_eq!(code, 0, "{stderr}");

    let (code, result, _) = check(&config, &["--no-persist"]);
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(outcome(&result, "C-20"), "red");
    assert_eq!(violations_of(&result, "C-20")[0]["subject"], "agent-old");
    assert_eq!(violations_of(&result, "C-20")[0]["tier"], "B");
    assert_eq!(outcome(&result, "C-21"), "green");
    assert_eq!(
        outcome(&result, "C-22"),
        "absent",
        "disabled: not run by default"
    );
    let (_, asked, _) = check(&config, &["--no-persist", "--invariant", "C-22"]);
    assert_eq!(outcome(&asked, "C-22"), "red");

    // The listing shows them after the catalog, marked custom.
    let (code, stdout, _) = canary(&[
        "invariants",
        "--format",
        "json",
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    let custom: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["custom"] == true)
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(custom, ["C-20", "C-21", "C-22"]);
    let (_, text, _) = canary(&["invariants", "--config", &config.display().to_string()]);
    assert!(
        text.contains("C-20  deleted agents (tier B, minor, custom)"),
        "{text}"
    );
    // The text report of a check names custom invariants like built-in ones.
    let config_arg = config.display().to_string();
    let (_, text, _) = canary(&["check", "--no-persist", "--config", &config_arg]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("C-20"))
        .unwrap_or_else(|| panic!("no C-20 line: {text}"));
    assert!(line.contains("deleted agents"), "{text}");
    assert!(text.contains("Slot–row bijection"), "{text}");

    // A file that is not valid is a load error naming the file.
    std::fs::write(dir.join("30-bad.yaml"), "id: C-23\nname: x\n").unwrap();
    let (code, _, stderr) = validate_cmd(&config);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("30-bad.yaml[0]: missing field `sql`"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_platform_db_is_a_warning_at_validation_and_unknown_at_run_time() {
    let env = Env::new();
    let missing = env.dir.path().join("nope.db");
    let config = env.config("missing.yaml", &format!("custom_invariants:\n{SHARING}"));
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        &env.platform.path().display().to_string(),
        &missing.display().to_string(),
    );
    std::fs::write(&config, config_text).unwrap();
    let (code, _, stderr) = validate_cmd(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("custom invariant SQL was not checked"),
        "{stderr}"
    );
    let (code, result, _) = check(&config, &["--no-persist"]);
    assert_eq!(code, 2, "{result:#}");
    assert_eq!(outcome(&result, "C-01"), "unknown");
    assert_eq!(
        result["diagnostics"]["unknown_reasons"]["C-01"],
        "source sqlite unavailable"
    );
}

/// Every shipped `custom-*.yaml` example validates, SQL included, against the fixture schema,
/// and runs green on a clean platform.
#[test]
fn shipped_custom_examples_validate_against_the_fixture_schema() {
    let env = Env::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("custom-") && name.ends_with(".yaml")) {
            continue;
        }
        let flags = Overrides::new()
            .with(
                "platform.sqlite_path",
                env.platform.path().display().to_string(),
            )
            .with("platform.redis_url", env.redis.url())
            .with("state.path", env.state_path().display().to_string());
        let config = load_from(Some(&path), &[], &flags).unwrap_or_else(|e| panic!("{name}: {e}"));
        // `custom-names.yaml` is about custom table names, not custom invariants.
        if config.custom_entries().is_empty() {
            continue;
        }
        // Pure validation, then the statements against the fixture schema (as the CLI does).
        let mut problems = validate(&config);
        problems.extend(canary::collect::preflight(&config));
        assert!(problems.is_empty(), "{name}: {problems:?}");
        seen += 1;
    }
    assert!(
        seen >= 2,
        "expected the custom examples in {}",
        examples.display()
    );
}

/// The admin API: `run-cycle` accepts a custom id (and names an unknown one), `invariants` and
/// `status` list custom invariants after the catalog, marked custom.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_knows_custom_invariants() {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    let env = Env::new();
    env.platform
        .exec("INSERT INTO agent_sharing (agent_name) VALUES ('agent-old')");
    let path = env.config(
        "http.yaml",
        &format!("http:\n  admin_token: tok-0123456789abcdef\ncustom_invariants:\n{SHARING}"),
    );
    let config = load_from(Some(&path), &[], &Overrides::new()).unwrap();
    let db = canary::store::StateDb::open(&config.state.path).unwrap();
    let runner = canary::schedule::runner::CycleRunner::new(std::sync::Arc::new(config), db);
    let app = canary::http::router(canary::http::AppState::from_config(runner).unwrap());
    let send = |method: Method, uri: &str, body: &str| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer tok-0123456789abcdef")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, json)
        }
    };

    let (status, result) = send(
        Method::POST,
        "/api/canary/run-cycle",
        r#"{"invariant_ids": ["C-01"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result:#}");
    assert_eq!(result["outcomes"], serde_json::json!({"C-01": "red"}));

    let (status, body) = send(
        Method::POST,
        "/api/canary/run-cycle",
        r#"{"invariant_ids": ["C-99"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    assert!(body.to_string().contains("C-99"), "{body:#}");

    let (status, listed) = send(Method::GET, "/api/canary/invariants", "").await;
    assert_eq!(status, StatusCode::OK);
    let entry = listed["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "C-01")
        .expect("C-01 listed");
    assert_eq!(entry["custom"], true);
    assert_eq!(entry["name"], "Sharing edges point at live agents");
    assert_eq!(entry["severity"], "critical");

    let (status, statuses) = send(Method::GET, "/api/canary/status", "").await;
    assert_eq!(status, StatusCode::OK);
    let line = statuses["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["invariant_id"] == "C-01")
        .expect("C-01 in status");
    assert_eq!(line["state"], "red");
    assert_eq!(line["custom"], true);
    assert_eq!(line["last_violation"]["subject"], "agent-old");
}
