//! The shipped monitoring assets: `config/prometheus/canary-rules.yml` (alerting rules, with
//! their unit tests in `canary-rules.test.yml`) and `config/grafana/canary-dashboard.json`.
//!
//! - Every `canary_*` metric that a rule's `expr` or a dashboard query names must exist in the
//!   `/metrics` output of a real daemon (the in-process router over a private `redis-server` and
//!   a platform SQLite file) after a cycle that leaves every labelled family with a series.
//! - The rules pass the real `promtool check rules` and `promtool test rules` (Debian package
//!   `prometheus`; when it is missing the test fails with the install hint, it never skips).
//! - The dashboard is importable JSON: a `${DS_PROMETHEUS}` input, a schema version, every panel
//!   with at least one query on that data source; every rule has `for:`, a severity, a summary
//!   and a runbook that points at an existing README heading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use canary::clock::now_ms;
use canary::config::{Config, Secret};
use canary::fleet::platform::{self, Platform};
use canary::fleet::redis_server::RedisServer;
use canary::http::{self, AppState};
use canary::schedule::runner::CycleRunner;
use canary::store::StateDb;
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "tok-monitoring-0123456789abcdef";
const INSTALL_HINT: &str = "promtool not found: install it with `apt-get install prometheus` \
                            (Debian/Ubuntu; .ci/run does this)";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn rules_path() -> PathBuf {
    repo_path("config/prometheus/canary-rules.yml")
}

fn dashboard() -> Value {
    let path = repo_path("config/grafana/canary-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The rules file as a JSON value (YAML is parsed with the crate's own YAML reader).
fn rules() -> Value {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// Every alerting rule, as (alert name, rule object).
fn alert_rules() -> Vec<(String, Value)> {
    let rules = rules();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups: a list") {
        for rule in group["rules"].as_array().expect("rules: a list") {
            let name = rule["alert"]
                .as_str()
                .expect("alerting rules only")
                .to_owned();
            out.push((name, rule.clone()));
        }
    }
    assert!(!out.is_empty(), "no rules in {}", rules_path().display());
    out
}

/// Every PromQL query the dashboard runs: panel targets and the template variables' queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels: a list") {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        if let Some(query) = query {
            out.push((format!("variable {}", var["name"]), query.to_owned()));
        }
    }
    out
}

/// The metric names a PromQL expression mentions, by a deliberately small tokenizer (not a
/// PromQL parser): string literals (`"…"`, `'…'`, `` `…` ``, with backslash escapes) are
/// skipped, so label values never count; the rest is split into identifiers
/// (`[A-Za-z_:][A-Za-z0-9_:]*`), and those matching `canary_[a-z_]+` are metric names. Numbers,
/// durations (`[15m]`), functions, keywords and label names are not `canary_`-prefixed, so they
/// drop out. Names stay as written (`canary_cycles_total`, `…_bucket`): [`Exported::resolve`]
/// maps them back to their family.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                while let Some(s) = chars.next() {
                    if s == '\\' && quote != '`' {
                        chars.next();
                    } else if s == quote {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let mut ident = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == ':' {
                        ident.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let is_metric = ident.strip_prefix("canary_").is_some_and(|rest| {
                    !rest.is_empty() && rest.chars().all(|r| r.is_ascii_lowercase() || r == '_')
                });
                if is_metric {
                    names.insert(ident);
                }
            }
            c if c.is_ascii_digit() => {
                // A number or a duration (`15m`, `1e3`): its letters are not an identifier.
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.')
                {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    names
}

/// What a `/metrics` page exports: families with their type (`# TYPE` lines), and the sample
/// names that carry at least one series.
struct Exported {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exported {
    fn parse(text: &str) -> Exported {
        let mut families = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Exported { families, samples }
    }

    /// The family a name written in PromQL belongs to, checked against the family's type: a
    /// counter is queried as `…_total`, a histogram as `…_bucket`/`…_sum`/`…_count`, a gauge by
    /// its own name. `Err` says what is wrong.
    fn resolve(&self, name: &str) -> Result<String, String> {
        if let Some(kind) = self.families.get(name) {
            return match kind.as_str() {
                "gauge" => Ok(name.to_owned()),
                other => Err(format!("{name} is a {other}: query a suffixed series")),
            };
        }
        let suffixed = [
            ("_total", "counter"),
            ("_bucket", "histogram"),
            ("_sum", "histogram"),
            ("_count", "histogram"),
        ];
        for (suffix, wanted) in suffixed {
            if let Some(family) = name.strip_suffix(suffix)
                && let Some(kind) = self.families.get(family)
            {
                return if kind == wanted {
                    Ok(family.to_owned())
                } else {
                    Err(format!("{name}: {family} is a {kind}, not a {wanted}"))
                };
            }
        }
        Err(format!("{name} is not exported"))
    }
}

/// A daemon's HTTP API in process over a private Redis and a platform SQLite file with three
/// agents, and an idle one whose slot key is a string (G-05 red: a violation, so every labelled family
/// has a series after one cycle). Returns the `/metrics` text after that cycle.
async fn metrics_after_one_cycle() -> String {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("platform.db");
    platform::create_db(&db).unwrap();
    let mut platform = Platform::connect(&db, &redis.url()).await.unwrap();
    let now = now_ms();
    for a in ["agent-a", "agent-b", "agent-c"] {
        platform.add_agent(a, 3, 900).unwrap();
        platform
            .start(a, &format!("{a}-run-0"), 600, now - 120_000)
            .await
            .unwrap();
    }
    platform.add_agent("agent-idle", 3, 900).unwrap();
    let key = platform.slots_key("agent-idle");
    redis::cmd("SET")
        .arg(&key)
        .arg("not a set")
        .query_async::<()>(platform.redis())
        .await
        .unwrap();

    let mut config = Config::default();
    config.platform.sqlite_path = db;
    config.platform.redis_url = redis.url();
    config.state.path = dir.path().join("state.db");
    config.http.admin_token = Some(Secret::new(TOKEN));
    let state_db = StateDb::open(&config.state.path).unwrap();
    let runner = CycleRunner::new(Arc::new(config), state_db);
    let app = http::router(AppState::from_config(runner).unwrap());

    let call = |method: Method, uri: &str| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let (status, body) = call(Method::POST, "/api/canary/run-cycle").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, text) = call(Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.lines()
            .any(|l| l == "canary_invariant_state{invariant=\"G-05\"} 1"),
        "the setup should turn G-05 red:\n{text}"
    );
    text
}

#[test]
fn the_tokenizer_finds_metric_names_and_nothing_else() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(canary_cycle_duration_seconds_bucket{instance=~"canary_fake.*"}[30m])))
           / on(instance) canary_outbox_pending > 1e3 and absent(up{job='canary_x'}) or canary_a:b"#,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "canary_cycle_duration_seconds_bucket",
            "canary_outbox_pending"
        ]
    );
    assert!(promql_metric_names(r#"up{job="canary"} == 0"#).is_empty());
}

#[tokio::test]
async fn every_metric_in_the_rules_and_the_dashboard_is_exported() {
    let text = metrics_after_one_cycle().await;
    let exported = Exported::parse(&text);

    let mut queries: Vec<(String, String)> = alert_rules()
        .into_iter()
        .map(|(name, rule)| {
            let expr = rule["expr"].as_str().expect("expr: a string").to_owned();
            (format!("rule {name}"), expr)
        })
        .collect();
    let dashboard = dashboard();
    let dashboard_queries = dashboard_exprs(&dashboard);
    assert!(!dashboard_queries.is_empty());
    for (place, expr) in &dashboard_queries {
        assert!(
            !promql_metric_names(expr).is_empty(),
            "{place} queries no canary metric: {expr}"
        );
    }
    queries.extend(dashboard_queries);

    let mut used = BTreeSet::new();
    for (place, expr) in &queries {
        for name in promql_metric_names(expr) {
            if let Err(why) = exported.resolve(&name) {
                panic!("{place}: {why}\nexpr: {expr}\n/metrics:\n{text}");
            }
            assert!(
                exported.samples.contains(&name),
                "{place}: {name} has no series after a red cycle\n/metrics:\n{text}"
            );
            used.insert(name);
        }
    }
    // The assets cover what the brief names; a renamed metric would otherwise drop out silently.
    for name in [
        "canary_last_cycle_timestamp_seconds",
        "canary_source_unavailable_total",
        "canary_alerts_total",
        "canary_cycle_duration_seconds_bucket",
        "canary_invariant_state",
        "canary_violations_total",
        "canary_outbox_pending",
        "canary_outbox_abandoned",
        "canary_platform_anomalies",
        "canary_cycles_total",
    ] {
        assert!(used.contains(name), "{name} is used by no rule or panel");
    }
}

#[test]
fn the_dashboard_is_importable_and_every_panel_has_a_query() {
    let d = dashboard();
    for key in [
        "__inputs",
        "panels",
        "schemaVersion",
        "templating",
        "time",
        "title",
        "uid",
    ] {
        assert!(d.get(key).is_some(), "dashboard lacks {key}");
    }
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let inputs = d["__inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input: {inputs:?}"
    );
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("numeric id")),
            "duplicate id: {title}"
        );
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no target");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {title:?}: a target without expr"
            );
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
    }
}

/// GitHub's heading anchors: lowercase, spaces to `-`, punctuation other than `-`/`_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_rule_has_for_severity_summary_and_a_runbook_in_the_readme() {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for (name, rule) in alert_rules() {
        assert!(rule["for"].as_str().is_some(), "{name}: no for:");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{name}: no summary"
        );
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let target = runbook
            .strip_prefix("README.md#")
            .unwrap_or_else(|| panic!("{name}: runbook {runbook} is not a README section"));
        assert!(
            anchors.contains(target),
            "{name}: README has no heading for #{target}"
        );
    }
}

/// Runs `promtool` with `args`; a missing binary fails the test with the install hint.
fn promtool(args: &[&str]) -> String {
    let output = match Command::new("promtool").args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("promtool {args:?}: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let rules = rules_path();
    let text = promtool(&["check", "rules", rules.to_str().unwrap()]);
    let count = alert_rules().len();
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "{text}"
    );
    let tests = repo_path("config/prometheus/canary-rules.test.yml");
    let text = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The dashboard's panel queries are valid PromQL: promtool has no offline query checker, so
/// each one becomes a recording rule in a temp file that `promtool check rules` parses.
/// (`$instance` sits inside a label matcher's string, so the queries parse as they are; the
/// template variable's `label_values(…)` is Grafana syntax, not PromQL, and is left out.)
#[test]
fn promtool_parses_every_dashboard_query() {
    let d = dashboard();
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for (place, expr) in dashboard_exprs(&d) {
        if !place.starts_with("panel ") {
            continue;
        }
        count += 1;
        // A JSON string is a valid YAML scalar: no escaping rules of our own.
        let quoted = serde_json::to_string(&expr).unwrap();
        yaml.push_str(&format!(
            "      - record: dashboard:query_{count}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &yaml).unwrap();
    let text = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "{text}\n{yaml}"
    );
}
