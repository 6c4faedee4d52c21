//! The PostgreSQL platform's read side, through the real `canary check` binary against a private
//! server (`support::postgres`) and a private Redis, nothing mocked:
//!
//! - a seeded healthy platform is green on both PostgreSQL fixtures (text timestamps; and
//!   `timestamptz` + `boolean`) and on SQLite, with the same rows read and the same constant
//!   statement count (PostgreSQL has no `query_only` pragma: one statement fewer);
//! - least privilege: a superuser or a role that can write a watched table is refused (exit 78)
//!   with the `GRANT SELECT` lines it needs, unless `platform.allow_write_role`;
//! - degraded: a stopped server (unknown, exit 2, no password in any output, then recovers), a
//!   wrong password (unknown, neither password shown), a
//!   lock held past the statement timeout, a missing optional column, a missing cascade table, a
//!   missing executions table;
//! - TLS: `sslmode=verify-full` with `platform.postgres_ca_file` reads over TLS (the server
//!   refuses plain TCP), and the system roots, which do not know the test CA, are refused;
//! - custom SQL: rows become violations; a write (data-modifying `WITH`, a second statement, a
//!   bare `DELETE`) is refused at validation and never reaches the rows; a runaway statement is
//!   cancelled by the server and only its entry is unknown.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use canary::fleet::platform_db::PlatformTarget;
use canary::fleet::postgres_server::PostgresServer;
use canary::fleet::seed::{SeedSpec, seed};
use serde_json::Value;

use crate::support::cli::{canary, violations_of};

use crate::support::postgres::{self as pg, Fixture};
use crate::support::redis_server;

/// A small healthy dataset (seeding is the slow part of these tests).
const SMALL: SeedSpec = SeedSpec {
    agents: 20,
    rows: 600,
    slots: 30,
    cascade_rows: 200,
};

/// A platform database, a Redis and a temp dir for configs and state.
struct Env {
    dir: tempfile::TempDir,
    redis: canary::fleet::redis_server::RedisServer,
    /// The superuser's URL of the test database.
    admin_url: String,
    /// A read-only role's URL (with a password that must never show).
    url: String,
    /// That role's name.
    role: String,
}

impl Env {
    /// A fresh database with `fixture`, a read-only role on it, and `spec` seeded (if any).
    async fn new(server: &PostgresServer, fixture: Fixture, spec: Option<SeedSpec>) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = redis_server::start();
        let admin_url = pg::database(server, fixture);
        let db = admin_url.rsplit('/').next().expect("db name").to_owned();
        let role = format!("ro_{db}");
        server
            .admin_batch(
                &db,
                &format!(
                    "CREATE ROLE {role} LOGIN PASSWORD 's3cret-pw'; \
                     GRANT USAGE ON SCHEMA public TO {role}; \
                     GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
                ),
            )
            .expect("read-only role");
        if let Some(spec) = spec {
            seed(
                PlatformTarget::postgres(admin_url.clone()),
                &redis.url(),
                &spec,
                false,
            )
            .await
            .expect("seed");
        }
        let url = format!(
            "postgres://{role}:s3cret-pw@127.0.0.1:{}/{db}?sslmode=disable",
            server.port()
        );
        Env {
            dir,
            redis,
            admin_url,
            url,
            role,
        }
    }

    /// A config watching this platform, with `extra` YAML under `platform:` and at top level.
    fn config(&self, name: &str, platform_extra: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let yaml = format!(
            "platform:\n  database_url: \"{}\"\n  redis_url: {}\n{platform_extra}\
             state:\n  path: {}\n{extra}",
            self.url,
            self.redis.url(),
            self.dir.path().join("state.db").display()
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    /// Runs SQL as the superuser.
    fn admin(&self, sql: &str) {
        let sql = sql.to_owned();
        pg::with_client(&self.admin_url, move |c| {
            c.batch_execute(&sql).expect("admin sql")
        });
    }
}

/// `canary check --format json --config <config>`: exit code, the result (`Null` when the
/// configuration was refused), stderr.
fn check(config: &Path) -> (i32, Value, String) {
    let config = config.display().to_string();
    let (code, stdout, stderr) = canary(&["check", "--format", "json", "--config", &config]);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, json, stderr)
}

fn outcome<'a>(result: &'a Value, id: &str) -> &'a str {
    result["outcomes"][id].as_str().unwrap_or("absent")
}

fn statements(result: &Value) -> u64 {
    result["diagnostics"]["collect"]["sql_statements"]
        .as_u64()
        .expect("statement count")
}

/// Why the SQL source was unavailable (the cycle's first `sources_unavailable` entry).
fn sql_reason(result: &Value) -> &str {
    result["sources_unavailable"][0]["error"]
        .as_str()
        .expect("a reason")
}

/// Every built-in outcome, for messages.
fn outcomes(result: &Value) -> String {
    result["outcomes"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_platform_is_green_on_both_postgres_schemas_with_sqlites_statement_count() {
    let server = pg::start();
    // SQLite first, same dataset size: the reference for what is read and what it costs.
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_redis = redis_server::start();
    let db = dir.path().join("platform.db");
    seed(db.as_path(), &sqlite_redis.url(), &SMALL, false)
        .await
        .expect("seed sqlite");
    let config = dir.path().join("sqlite.yaml");
    std::fs::write(
        &config,
        format!(
            "platform:\n  sqlite_path: {}\n  redis_url: {}\nstate:\n  path: {}\n",
            db.display(),
            sqlite_redis.url(),
            dir.path().join("state.db").display()
        ),
    )
    .expect("config");
    let (code, sqlite, stderr) = check(&config);
    assert_eq!(code, 0, "SQLite: {}\n{stderr}", outcomes(&sqlite));

    for fixture in [Fixture::Text, Fixture::Typed] {
        let env = Env::new(&server, fixture, Some(SMALL)).await;
        let (code, result, stderr) = check(&env.config("c.yaml", "", ""));
        assert_eq!(code, 0, "{fixture:?}: {}\n{stderr}", outcomes(&result));
        assert_eq!(
            result["outcomes"], sqlite["outcomes"],
            "{fixture:?}: same verdicts as SQLite"
        );
        assert_eq!(result["sources_unavailable"], serde_json::json!([]));
        assert_eq!(
            result["diagnostics"]["anomalies"],
            serde_json::json!([]),
            "{fixture:?}: every column type parses"
        );
        assert_eq!(
            statements(&result) + 1,
            statements(&sqlite),
            "{fixture:?}: the same statements, minus SQLite's query_only pragma"
        );
        assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_capable_role_is_refused_with_the_grants_it_needs() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, None).await;
    let db = env.admin_url.rsplit('/').next().expect("db").to_owned();
    let owner = format!("rw_{db}");
    env.admin(&format!(
        "CREATE ROLE {owner} LOGIN; GRANT USAGE ON SCHEMA public TO {owner}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {owner}; \
         GRANT INSERT, DELETE ON agent_tags TO {owner};"
    ));
    let as_owner = env.dir.path().join("owner.yaml");
    let yaml = std::fs::read_to_string(env.config("base.yaml", "", "")).expect("read");
    std::fs::write(
        &as_owner,
        yaml.replace(
            &env.url,
            &format!(
                "postgres://{owner}@127.0.0.1:{}/{db}?sslmode=disable",
                server.port()
            ),
        ),
    )
    .expect("write");
    let (code, _, stderr) = check(&as_owner);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "role \"{owner}\" can write agent_tags (INSERT, DELETE)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("GRANT USAGE ON SCHEMA public TO canary;"),
        "{stderr}"
    );
    assert!(
        stderr.contains("GRANT SELECT ON public.access_requests, public.agent_ownership"),
        "{stderr}"
    );
    let (code, _, stderr) = canary(&[
        "config",
        "validate",
        "--config",
        &as_owner.display().to_string(),
    ]);
    assert_eq!(code, 78, "config validate refuses it too: {stderr}");

    // The superuser: refused, then accepted when the operator says so.
    let superuser = env.dir.path().join("super.yaml");
    std::fs::write(&superuser, yaml.replace(&env.url, &env.admin_url)).expect("write");
    let (code, _, stderr) = check(&superuser);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("is a superuser"), "{stderr}");
    let accepted = env.config("accepted.yaml", "  allow_write_role: true\n", "");
    std::fs::write(
        &accepted,
        std::fs::read_to_string(&accepted)
            .expect("read")
            .replace(&env.url, &env.admin_url),
    )
    .expect("write");
    let (code, result, stderr) = check(&accepted);
    assert_eq!(code, 0, "{}\n{stderr}", outcomes(&result));

    // The role the README tells operators to create is one canary accepts.
    let readme = include_str!("../README.md");
    let grants = readme
        .split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's role block");
    env.admin(
        &grants
            .replace("'…'", "'pw'")
            .replace("DATABASE platform", &format!("DATABASE {db}")),
    );
    let as_canary = env.dir.path().join("canary-role.yaml");
    std::fs::write(
        &as_canary,
        yaml.replace(
            &env.url,
            &format!(
                "postgres://canary:pw@127.0.0.1:{}/{db}?sslmode=disable",
                server.port()
            ),
        ),
    )
    .expect("write");
    let (code, result, stderr) = check(&as_canary);
    assert_eq!(
        code,
        0,
        "the README's role: {}\n{stderr}",
        outcomes(&result)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unknown_never_green_and_recovers() {
    let mut server = pg::start();
    let env = Env::new(&server, Fixture::Text, Some(SMALL)).await;
    let config = env.config("c.yaml", "", "");
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 0, "{}\n{stderr}", outcomes(&result));

    server.stop();
    let started = std::time::Instant::now();
    let (code, result, stderr) = check(&config);
    assert_eq!(
        code,
        2,
        "unknown, not green: {}\n{stderr}",
        outcomes(&result)
    );
    assert!(started.elapsed() < Duration::from_secs(10), "fails fast");
    let reason = sql_reason(&result);
    assert_eq!(result["sources_unavailable"][0]["source"], "sqlite");
    assert!(reason.starts_with("postgres: cannot connect"), "{reason}");
    assert_eq!(outcome(&result, "S-01"), "unknown");
    assert_eq!(outcome(&result, "L-03"), "unknown");
    let everything = format!("{result}{stderr}");
    assert!(!everything.contains("s3cret-pw"), "{everything}");

    server.restart().expect("restart");
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 0, "recovered: {}\n{stderr}", outcomes(&result));

    // An authentication failure: the server now asks canary's role for its password, and the
    // URL carries a wrong one. Unknown, and neither password shows anywhere.
    let role = env.role.clone();
    let hba_path = server.dir().join("data/pg_hba.conf");
    let hba = std::fs::read_to_string(&hba_path).expect("hba");
    std::fs::write(
        &hba_path,
        format!("host all {role} 127.0.0.1/32 scram-sha-256\n{hba}"),
    )
    .expect("write hba");
    server.reload().expect("reload");
    std::thread::sleep(Duration::from_millis(300));
    let wrong = env.dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&config)
            .expect("read")
            .replace("s3cret-pw", "wr0ng-pw-XYZ"),
    )
    .expect("write");
    let (code, result, stderr) = check(&wrong);
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    let reason = sql_reason(&result);
    assert!(
        reason.contains("password authentication failed"),
        "{reason}"
    );
    let everything = format!("{result}{stderr}");
    assert!(!everything.contains("wr0ng-pw-XYZ"), "{everything}");
    assert!(!everything.contains("s3cret-pw"), "{everything}");
    // The right password still works under the stricter rule.
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 0, "{}\n{stderr}", outcomes(&result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_statement_timeout_is_unknown() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, Some(SMALL)).await;
    let config = env.config("c.yaml", "  postgres_statement_timeout: 300ms\n", "");
    // A migration holding the executions table: canary's read waits, then gives up.
    let (locked, wait_locked) = mpsc::channel();
    let (release, wait_release) = mpsc::channel::<()>();
    let admin_url = env.admin_url.clone();
    let holder = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect");
        let mut tx = client.transaction().expect("begin");
        tx.batch_execute("LOCK TABLE schedule_executions IN ACCESS EXCLUSIVE MODE")
            .expect("lock");
        locked.send(()).expect("signal");
        let _ = wait_release.recv_timeout(Duration::from_secs(30));
        tx.rollback().expect("rollback");
    });
    wait_locked
        .recv_timeout(Duration::from_secs(10))
        .expect("locked");
    let (code, result, stderr) = check(&config);
    release.send(()).expect("release");
    holder.join().expect("holder");
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    let reason = sql_reason(&result);
    // Whichever of lock_timeout and statement_timeout (both 300 ms) the server reports first.
    assert!(
        reason.contains("reading executions")
            && (reason.contains("statement timeout") || reason.contains("lock timeout")),
        "{reason}"
    );
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 0, "{}\n{stderr}", outcomes(&result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_columns_and_tables_degrade_as_on_sqlite() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Typed, Some(SMALL)).await;
    let config = env.config("c.yaml", "", "");
    env.admin(
        "ALTER TABLE schedule_executions DROP COLUMN claude_session_id; DROP TABLE agent_tags;",
    );
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    assert_eq!(
        outcome(&result, "E-05"),
        "unknown",
        "needs the session column"
    );
    assert_eq!(outcome(&result, "S-01"), "green");
    assert_eq!(outcome(&result, "L-03"), "green");
    assert_eq!(
        result["diagnostics"]["skipped_tables"],
        serde_json::json!(["agent_tags"])
    );

    env.admin("DROP TABLE schedule_executions;");
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    let reason = sql_reason(&result);
    assert_eq!(reason, "table schedule_executions not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_sql_runs_read_only_and_writes_are_refused_at_validation() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, None).await;
    env.admin(
        "INSERT INTO agent_ownership (agent_name, deleted_at) VALUES ('live', NULL), ('old', '2026-01-01'); \
         INSERT INTO agent_sharing (agent_name, shared_with_email) VALUES ('old', 'a@example.com');",
    );
    let custom = |id: &str, sql: &str, extra: &str| {
        format!(
            "  - id: {id}\n    name: check {id}\n    severity: major\n{extra}    sql: |\n      {sql}\n"
        )
    };
    let good = custom(
        "C-01",
        "SELECT s.agent_name AS subject, count(*) AS edges, true AS flag, now() AS seen \
         FROM agent_sharing AS s JOIN agent_ownership AS a ON a.agent_name = s.agent_name \
         WHERE a.deleted_at IS NOT NULL GROUP BY s.agent_name;",
        "",
    );
    let slow = custom(
        "C-02",
        "SELECT pg_sleep(5) AS slept",
        "    timeout: 300ms\n",
    );
    let config = env.config("c.yaml", "", &format!("custom_invariants:\n{good}{slow}"));
    let (code, result, stderr) = check(&config);
    assert_eq!(
        code,
        1,
        "red wins over unknown: {}\n{stderr}",
        outcomes(&result)
    );
    assert_eq!(outcome(&result, "C-01"), "red");
    assert_eq!(outcome(&result, "C-02"), "unknown");
    let violation = result["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .find(|v| v["invariant_id"] == "C-01")
        .expect("C-01 violation");
    assert_eq!(violation["subject"], "old");
    assert_eq!(violation["observed_state"]["edges"], 1);
    assert_eq!(violation["observed_state"]["flag"], true);

    for (sql, expected) in [
        (
            "WITH gone AS (DELETE FROM agent_sharing RETURNING agent_name) SELECT agent_name FROM gone",
            "not read-only",
        ),
        (
            "SELECT agent_name FROM agent_sharing; DELETE FROM agent_sharing",
            "exactly one statement",
        ),
        ("DELETE FROM agent_sharing", "must be a SELECT"),
        ("SELECT nope FROM agent_sharing", "does not prepare"),
    ] {
        let config = env.config(
            "bad.yaml",
            "",
            &format!("custom_invariants:\n{}", custom("C-09", sql, "")),
        );
        let (code, _, stderr) = check(&config);
        assert_eq!(code, 78, "{sql}: {stderr}");
        assert!(stderr.contains(expected), "{sql}: {stderr}");
    }
    assert_eq!(
        pg::count(&env.admin_url, "agent_sharing"),
        1,
        "nothing was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_reads_over_tls_and_refuses_an_unknown_ca() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, None).await;
    let pki = crate::support::tls::pki();
    let (ca, cert, key) = (pki.ca, pki.server_cert, pki.server_key);
    // The server's files belong to the user it runs as (the temp dir's owner).
    let owner = std::fs::metadata(server.dir()).expect("dir").uid();
    let write = |name: &str, text: &str, mode: u32| {
        let path = server.dir().join(name);
        std::fs::write(&path, text).expect("write");
        std::os::unix::fs::chown(&path, Some(owner), None).expect("chown");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let cert_path = write("server.crt", &cert, 0o644);
    let key_path = write("server.key", &key, 0o600);
    let ca_path = env.dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).expect("ca file");
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_path.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_path.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        env.admin(&sql);
    }
    // From now on TCP connections must be encrypted (the admin's own, unencrypted, would fail).
    let hba = std::fs::read_to_string(server.dir().join("data/pg_hba.conf")).expect("hba");
    let hba = format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{hba}");
    write("data/pg_hba.conf", &hba, 0o600);
    // Reloaded by signal: an unencrypted admin connection would already be refused.
    server.reload().expect("reload");
    std::thread::sleep(Duration::from_millis(500));

    let tls_url = env
        .url
        .replace("sslmode=disable", "sslmode=verify-full")
        .replace("127.0.0.1", "localhost");
    let base = std::fs::read_to_string(env.config("base.yaml", "", "")).expect("read");
    let with_ca = env.dir.path().join("tls.yaml");
    std::fs::write(
        &with_ca,
        base.replace(&env.url, &tls_url).replace(
            "platform:\n",
            &format!("platform:\n  postgres_ca_file: {}\n", ca_path.display()),
        ),
    )
    .expect("write");
    let (code, result, stderr) = check(&with_ca);
    assert_eq!(code, 0, "verified TLS: {}\n{stderr}", outcomes(&result));

    // Plain TCP is now refused by the server: the success above was encrypted.
    let (code, result, _) = check(&env.config("plain.yaml", "", ""));
    assert_eq!(code, 2, "{}", outcomes(&result));

    // The system roots do not know this CA: refused, unknown, never green.
    let system_roots = env.dir.path().join("roots.yaml");
    std::fs::write(&system_roots, base.replace(&env.url, &tls_url)).expect("write");
    let (code, result, stderr) = check(&system_roots);
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    let reason = sql_reason(&result);
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(!format!("{result}{stderr}").contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuid_ids_and_names_of_mixed_types_read_and_join_as_text() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Empty, None).await;
    // A schema as deployed elsewhere: varchar roster names, uuid execution ids, naive
    // `timestamp`s, an integer-keyed cascade table whose agent column is `varchar`, and one whose
    // agent column is `text` (`=` between varchar and text works; the uuid/text join would not).
    env.admin(
        "CREATE TABLE agent_ownership (agent_name varchar(64) PRIMARY KEY, is_system boolean, \
           max_parallel_tasks integer, execution_timeout_seconds integer, deleted_at timestamp); \
         CREATE TABLE schedule_executions (id uuid PRIMARY KEY, schedule_id uuid, agent_name text, \
           status varchar(32), queued_at timestamp, started_at timestamp, completed_at timestamp, \
           duration_ms bigint, claude_session_id text, lease_expires_at timestamp, backlog_metadata jsonb); \
         CREATE TABLE agent_tags (id serial PRIMARY KEY, agent_name varchar(64)); \
         CREATE TABLE agent_skills (id bigserial PRIMARY KEY, agent_name text); \
         INSERT INTO agent_ownership VALUES ('alpha', false, 2, 900, NULL); \
         INSERT INTO schedule_executions (id, agent_name, status, started_at, claude_session_id) VALUES \
           ('6f1c2d3e-0000-4000-8000-000000000001', 'ghost', 'running', now() at time zone 'utc', 's'); \
         INSERT INTO schedule_executions (id, agent_name, status) VALUES \
           ('6f1c2d3e-0000-4000-8000-000000000002', 'alpha', 'queued'); \
         INSERT INTO schedule_executions (id, agent_name, status, started_at, claude_session_id) VALUES \
           ('6f1c2d3e-0000-4000-8000-000000000004', 'alpha', 'running', \
            now() at time zone 'utc' - interval '1 hour', 's'); \
         INSERT INTO agent_tags (agent_name) VALUES ('ghost'), ('alpha'), (E'odd\\tname\\\\x\\n'); \
         INSERT INTO agent_skills (agent_name) VALUES ('ghost');",
    );
    // Rows are streamed as `COPY … TO STDOUT` text: a tab, a backslash and a newline inside a
    // value arrive escaped and must read back as written (a name, and JSON that stays valid).
    env.admin(
        "INSERT INTO schedule_executions (id, agent_name, status, queued_at, backlog_metadata) \
         VALUES ('6f1c2d3e-0000-4000-8000-000000000003', 'alpha', 'queued', \
         now() at time zone 'utc', E'{\"prompt\": \"line\\\\none\\\\t\\\\\\\\ end\"}')",
    );
    env.admin(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
        env.role
    ));
    let (code, result, stderr) = check(&env.config("c.yaml", "", ""));
    assert_eq!(code, 1, "{}\n{stderr}", outcomes(&result));
    assert_eq!(result["sources_unavailable"], serde_json::json!([]));
    let l03 = violations_of(&result, "L-03");
    assert_eq!(l03.len(), 2, "{l03:?}");
    assert_eq!(l03[0]["subject"], "ghost");
    assert_eq!(l03[0]["severity"], "critical", "a live execution row");
    assert_eq!(l03[1]["subject"], "odd\tname\\x\n");
    let tables = l03[0]["observed_state"].to_string();
    for table in ["agent_tags", "agent_skills", "schedule_executions"] {
        assert!(tables.contains(table), "{table}: {tables}");
    }
    // E-04 names the queued row (no queued_at, no metadata) by its uuid, carried as text.
    let e04 = violations_of(&result, "E-04");
    assert_eq!(e04.len(), 1, "{e04:?}");
    assert_eq!(e04[0]["subject"], "6f1c2d3e-0000-4000-8000-000000000002");
    // A running row without a slot is re-read by its uuid after the slot read (bound as text,
    // read as the column's type) and, still running, reported.
    assert_eq!(result["diagnostics"]["collect"]["sql_rechecked"], 1);
    let s01 = violations_of(&result, "S-01");
    assert_eq!(s01.len(), 1, "{s01:?}");
    assert_eq!(
        s01[0]["observed_state"]["in_sql_only"],
        serde_json::json!(["6f1c2d3e-0000-4000-8000-000000000004"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_role_cannot_read_is_skipped_or_named() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, Some(SMALL)).await;
    let role = env.role.clone();
    let config = env.config("c.yaml", "", "");
    env.admin(&format!(
        "REVOKE SELECT ON agent_tags, system_settings FROM {role}"
    ));
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 0, "{}\n{stderr}", outcomes(&result));
    assert_eq!(
        result["diagnostics"]["skipped_tables"],
        serde_json::json!(["agent_tags"])
    );
    env.admin(&format!("REVOKE SELECT ON schedule_executions FROM {role}"));
    let (code, result, stderr) = check(&config);
    assert_eq!(code, 2, "{}\n{stderr}", outcomes(&result));
    let reason = sql_reason(&result);
    assert_eq!(
        reason,
        "no SELECT privilege on table schedule_executions (grant it to canary's role)"
    );
}

/// The recent-terminal window on text timestamps reads what SQLite reads: every non-terminal
/// row, and the terminal rows completed (or, without `completed_at`, started) within the window
/// or holding a value the database cannot place (fetched for Rust to parse), whatever the
/// shape; UTC shapes are cut at the exact cutoff, other shapes by a superset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_window_reads_the_same_rows_as_sqlite() {
    let server = pg::start();
    let env = Env::new(&server, Fixture::Text, None).await;
    let now_ms: i64 = 1_768_384_800_000; // 2026-01-14T10:00:00Z
    let window_ms = 30 * 60_000;
    // Rows far from the window's edge (the reader's slack is 5 min), in every shape.
    let rows = [
        ("queued", "queued", None, None),
        ("running", "running", Some("2026-01-01 10:00:00"), None),
        ("odd-status", "completed", None, Some("2026-01-01 10:00:00")),
        ("recent", "success", None, Some("2026-01-14T09:50:00Z")),
        (
            "recent-frac",
            "success",
            None,
            Some("2026-01-14T09:50:00.123456Z"),
        ),
        ("recent-spaced", "failed", None, Some("2026-01-14 09:45:00")),
        (
            "recent-offset",
            "failed",
            None,
            Some("2026-01-14T11:50:00+02:00"),
        ),
        ("old", "success", None, Some("2026-01-01 10:00:00")),
        ("old-z", "success", None, Some("2026-01-14T08:00:00Z")),
        ("old-spaced", "cancelled", None, Some("2026-01-14 08:00:00")),
        ("epoch-text", "cancelled", None, Some("1768384000")),
        ("garbage", "success", None, Some("yesterday")),
        (
            "no-completion-recent-start",
            "success",
            Some("2026-01-14T09:50:00Z"),
            None,
        ),
        (
            "no-completion-old-start",
            "skipped",
            Some("2026-01-01 10:00:00"),
            None,
        ),
    ];
    for (id, status, started, completed) in rows {
        let sql = format!(
            "INSERT INTO schedule_executions (id, agent_name, status, started_at, completed_at) \
             VALUES ('{id}', 'a', '{status}', {}, {})",
            started.map_or("NULL".to_owned(), |s| format!("'{s}'")),
            completed.map_or("NULL".to_owned(), |s| format!("'{s}'")),
        );
        env.admin(&sql);
    }
    let cfg = canary::config::PlatformConfig {
        sqlite_path: PathBuf::new(),
        database_url: Some(canary::config::Secret::new(env.url.clone())),
        redis_url: env.redis.url(),
        ..canary::config::PlatformConfig::default()
    };
    let collected = canary::collect::builtin(&cfg, window_ms, now_ms).await;
    let sql = collected
        .snapshot
        .sql
        .unwrap_or_else(|| panic!("{:?}", collected.snapshot.sources_unavailable));
    let mut ids: Vec<String> = sql.executions.into_iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "epoch-text",
            "garbage",
            "no-completion-recent-start",
            "odd-status",
            "queued",
            "recent",
            "recent-frac",
            "recent-offset",
            "recent-spaced",
            "running",
        ]
    );
}
