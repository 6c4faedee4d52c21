//! Layering: defaults → YAML file → environment → flags.
//!
//! The file, the `CANARY__…` environment variables and the flag overrides are merged as one
//! `serde_json::Value` tree, which is then deserialized once into [`Config`]. Defaults are never
//! serialized into that tree: a key that is absent (or null) is filled by the structs' serde
//! `default` attributes. That keeps secrets out of the tree (a `Secret` serializes as
//! `[redacted]`, which would otherwise become the "default" value) and makes the struct
//! definitions the single source of default values.
//!
//! Environment mapping (DESIGN §8): `CANARY__SECTION__KEY[__SUBKEY…]`. The prefix is stripped,
//! the rest is split on `__` and every segment is lower-cased. Under `invariants` the id segment
//! is upper-cased with `_` turned into `-`, because `S-01` is not a valid shell variable name:
//! `CANARY__INVARIANTS__S_01__GRACE_SECONDS=5` sets `invariants.S-01.grace_seconds`.
//! `CANARY_CONFIG` (single underscore) names the file when no `--config` path is given.
//!
//! Values from the environment and from flags are read as YAML scalars (`5` → number,
//! `true` → boolean, `30s` stays a string, empty → unset), except for keys whose type is a
//! string (paths, names, URLs, secrets), which are taken verbatim so `/srv/0755` or a numeric
//! token survive. Values starting with `[`, `{`, `"` or `'` are parsed as YAML flow values, so a
//! whole list can be set: `CANARY__PLATFORM__STATUSES__TERMINAL='[success, failed]'`.
//!
//! Secrets (`alerts.slack.webhook_url`, `http.admin_token`) never appear in an error: messages
//! about them, about their parent sections and about anything set from the environment are
//! rewritten so they name the key but not the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::custom::{CustomInvariant, DirEntry};
use super::platform::redact_url;
use super::{Config, Problem, Secret, validate};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CANARY__";

/// Environment variable naming the config file when no path is given.
pub const CONFIG_ENV: &str = "CANARY_CONFIG";

/// Dotted paths of the secret keys: their values never appear in errors.
const SECRET_PATHS: [&str; 5] = [
    "alerts.slack.webhook_url",
    "alerts.heartbeat.url",
    "http.admin_token",
    "platform.database_url",
    "platform.queue_count.url",
];

/// Optional string-typed keys. Their default is `None`, so the serialized default tree cannot
/// tell that they are strings; they are listed here so their values are taken verbatim.
const OPTIONAL_STRING_PATHS: [&str; 20] = [
    "alerts.heartbeat.url",
    "alerts.heartbeat.url_file",
    "custom_invariants_dir",
    "platform.redis_replica_url",
    "platform.redis_sentinel.master_name",
    "platform.redis_sentinel.username",
    "platform.redis_sentinel.password_file",
    "platform.redis_username",
    "platform.redis_password_file",
    "platform.redis_tls.ca_file",
    "platform.redis_tls.client_cert_file",
    "platform.redis_tls.client_key_file",
    "platform.database_url",
    "platform.database_url_file",
    "platform.postgres_ca_file",
    "schedule.cron",
    "alerts.slack.webhook_url",
    "alerts.slack.webhook_url_file",
    "http.admin_token",
    "http.admin_token_file",
];

/// Loading errors. No variant carries a secret's value or an environment variable's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid YAML.
    #[error("{}: invalid YAML{}: {message}", path.display(), at_line(*line, *column))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: u64,
        /// 1-based column, 0 when unknown.
        column: u64,
        /// The parser's message (withheld when the line holds a secret).
        message: String,
    },
    /// A `CANARY__…` environment variable could not be applied. Names the variable, never its
    /// value (it may be a secret).
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A flag override could not be applied.
    #[error("override {path}: {reason}")]
    Override {
        /// The dotted path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The merged configuration does not fit the `Config` tree: unknown key, wrong type, bad
    /// value. `path` is the full dotted key path (`platform.keys.slotz`), empty for the root.
    #[error("{}", invalid_text(path, message, origin.as_deref()))]
    Invalid {
        /// Dotted key path; list items as `[i]` (`platform.cascade[2].severity`).
        path: String,
        /// What is wrong (never a secret's value).
        message: String,
        /// Where the offending value came from, when not from the file
        /// (`environment variable CANARY__…` or `override …`).
        origin: Option<String>,
    },
    /// A secret file (`*_file`) could not be read.
    #[error("{key}_file {}: {source}", path.display())]
    SecretFile {
        /// The secret's key (`alerts.slack.webhook_url`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (never the content).
        #[source]
        source: std::io::Error,
    },
    /// Both a secret and its `*_file` are set.
    #[error("set one of {key} or {key}_file, not both")]
    SecretConflict {
        /// The secret's key.
        key: &'static str,
    },
    /// A secret resolved to an empty string.
    #[error("{key}: the secret is empty")]
    EmptySecret {
        /// The key it came from (`http.admin_token_file` for a file).
        key: &'static str,
    },
    /// The configuration loaded but failed validation (see [`load_validated`]).
    #[error("{}", problems_text(.0))]
    Problems(Vec<Problem>),
}

fn at_line(line: u64, column: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line}, column {column}")
    }
}

fn invalid_text(path: &str, message: &str, origin: Option<&str>) -> String {
    let origin = origin.map(|o| format!(" (set by {o})")).unwrap_or_default();
    if path.is_empty() {
        format!("{message}{origin}")
    } else {
        format!("{path}: {message}{origin}")
    }
}

fn problems_text(problems: &[Problem]) -> String {
    let mut text = format!("{} configuration problem(s):", problems.len());
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

/// Flag overrides: (dotted path, value) pairs applied after the environment, in order.
///
/// Paths are the YAML keys joined by `.` (`platform.sqlite_path`, `invariants.S-01.enabled`);
/// values are read like environment values (see the module docs).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    values: Vec<(String, String)>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Overrides {
        Overrides::default()
    }

    /// Adds an override; later ones win.
    pub fn set(&mut self, path: impl Into<String>, value: impl Into<String>) -> &mut Overrides {
        self.values.push((path.into(), value.into()));
        self
    }

    /// Builder form of [`Overrides::set`].
    #[must_use]
    pub fn with(mut self, path: impl Into<String>, value: impl Into<String>) -> Overrides {
        self.set(path, value);
        self
    }

    /// The pairs, in application order.
    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }

    /// `true` when there is nothing to override.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

// Hand-written so a secret passed as a flag value never reaches a log line via `{:?}`.
impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(path, _)| path))
            .finish()
    }
}

/// Loads the configuration: defaults, then the YAML file (`path`, else `$CANARY_CONFIG`, else
/// none), then `CANARY__…` environment variables, then `overrides`. Does not validate: call
/// [`validate`] (or use [`load_validated`]).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env = process_env()?;
    load_from(path, &env, overrides)
}

/// [`load`] followed by [`validate`]; every problem is returned at once. Pure like [`validate`]:
/// custom statements are not prepared against the platform database (that preflight is
/// `collect::preflight`, which the CLI runs after validating).
pub fn load_validated(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let config = load(path, overrides)?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Problems(problems))
    }
}

/// The documented default configuration (`canary config example`).
pub fn example() -> &'static str {
    include_str!("../../config/canary.yaml")
}

/// The effective configuration as YAML (`canary config show`): secrets print as `[redacted]`
/// (their `Serialize`), the Redis URL's password as `***`.
pub fn show(config: &Config) -> String {
    let mut shown = config.clone();
    shown.platform.redis_url = redact_url(&shown.platform.redis_url);
    shown.platform.redis_replica_url = shown.platform.redis_replica_url.as_deref().map(redact_url);
    match serde_saphyr::to_string(&shown) {
        Ok(text) => text,
        // Serializing plain structs does not fail; if it ever does, say so rather than panic.
        Err(e) => format!("# cannot render the configuration: {e}\n"),
    }
}

impl Config {
    /// The Slack webhook URL from `webhook_url` or `webhook_url_file`; `None` when neither is
    /// set (silent sink).
    pub fn webhook_url(&self) -> Result<Option<Secret>, ConfigError> {
        let slack = &self.alerts.slack;
        resolve_secret(
            ("alerts.slack.webhook_url", "alerts.slack.webhook_url_file"),
            slack.webhook_url.as_ref(),
            slack.webhook_url_file.as_deref(),
        )
    }

    /// The heartbeat URL from `alerts.heartbeat.url` or `url_file`; `None` when neither is set
    /// (no dead man's switch).
    pub fn heartbeat_url(&self) -> Result<Option<Secret>, ConfigError> {
        let heartbeat = &self.alerts.heartbeat;
        resolve_secret(
            ("alerts.heartbeat.url", "alerts.heartbeat.url_file"),
            heartbeat.url.as_ref(),
            heartbeat.url_file.as_deref(),
        )
    }

    /// The admin token from `admin_token` or `admin_token_file`; `None` when neither is set
    /// (admin routes then fail closed).
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        resolve_secret(
            ("http.admin_token", "http.admin_token_file"),
            self.http.admin_token.as_ref(),
            self.http.admin_token_file.as_deref(),
        )
    }
}

/// `keys` are the inline key and its `_file` key; an empty secret names the one it came from.
fn resolve_secret(
    (key, file_key): (&'static str, &'static str),
    value: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let (secret, from) = match (value, file) {
        (None, None) => return Ok(None),
        // Picking one silently would hide a half-finished migration from value to file.
        (Some(_), Some(_)) => return Err(ConfigError::SecretConflict { key }),
        (Some(value), None) => (value.clone(), key),
        (None, Some(path)) => {
            let secret = Secret::from_file(path).map_err(|source| ConfigError::SecretFile {
                key,
                path: path.to_path_buf(),
                source,
            })?;
            (secret, file_key)
        }
    };
    if secret.expose().trim().is_empty() {
        return Err(ConfigError::EmptySecret { key: from });
    }
    Ok(Some(secret))
}

/// The process's `CANARY__…` and `CANARY_CONFIG` variables. Only these are read, so an unrelated
/// non-UTF-8 variable cannot fail the load.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name != CONFIG_ENV && !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            name: name.to_owned(),
            reason: "value is not valid UTF-8".to_owned(),
        })?;
        env.push((name.to_owned(), value));
    }
    Ok(env)
}

/// Where a value in the merged tree came from (for error messages).
type Origins = Vec<(Vec<String>, String)>;

/// [`load`] with the environment passed in (`(name, value)` pairs; only `CANARY_CONFIG` and
/// `CANARY__…` are read), so tests never touch the process environment.
pub fn load_from(
    path: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let from_env = || {
        env.iter()
            .find(|(name, value)| name == CONFIG_ENV && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    };
    let file = path.map(Path::to_path_buf).or_else(from_env);
    let mut tree = match &file {
        Some(file) => read_file(file)?,
        None => Value::Object(Map::new()),
    };
    let template = template();
    let mut origins: Origins = Vec::new();

    // Sorted so that two spellings of one key (`S_01` / `S-01`) resolve the same way every run.
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let env_error = |reason: String| ConfigError::Env {
            name: name.clone(),
            reason,
        };
        let segments = env_segments(name).map_err(env_error)?;
        let value = parse_value(&segments, raw, &template).map_err(env_error)?;
        set_path(&mut tree, &segments, value).map_err(env_error)?;
        origins.push((segments, format!("environment variable {name}")));
    }
    for (dotted, raw) in overrides.values() {
        let flag_error = |reason: String| ConfigError::Override {
            path: dotted.clone(),
            reason,
        };
        let segments = flag_segments(dotted).map_err(flag_error)?;
        let value = parse_value(&segments, raw, &template).map_err(flag_error)?;
        set_path(&mut tree, &segments, value).map_err(flag_error)?;
        origins.push((segments, format!("override {dotted}")));
    }

    prune_nulls(&mut tree);
    normalize(&mut tree, &template, &mut Vec::new())?;
    let mut config = deserialize(tree, &origins)?;
    load_custom_dir(&mut config, file.as_deref())?;
    Ok(config)
}

/// Reads `custom_invariants_dir` (if set) into `config.custom_from_dir` (the entry format is
/// described in `custom.rs`; loading it lives here so `custom.rs` needs nothing from loading).
/// `config_file` is the file the configuration came from, for resolving a relative directory.
fn load_custom_dir(config: &mut Config, config_file: Option<&Path>) -> Result<(), ConfigError> {
    let Some(dir) = config.custom_invariants_dir.clone() else {
        return Ok(());
    };
    let dir = match config_file.and_then(Path::parent) {
        Some(base) if dir.is_relative() => base.join(dir),
        _ => dir,
    };
    let read_error = |source| ConfigError::Read {
        path: dir.clone(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for item in std::fs::read_dir(&dir).map_err(read_error)? {
        let path = item.map_err(read_error)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut loaded = Vec::new();
    for file in files {
        loaded.extend(read_entries(&file)?);
    }
    config.custom_from_dir = loaded;
    Ok(())
}

fn read_entries(file: &Path) -> Result<Vec<DirEntry>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let value: Value = serde_saphyr::from_str_with_options(&text, yaml_options())
        .map_err(|e| syntax_error(file, &text, &e))?;
    let items = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(ConfigError::Invalid {
                path: file.display().to_string(),
                message: format!(
                    "expected one custom invariant (a mapping) or a list of them, found {}",
                    match other {
                        Value::Bool(_) => "a boolean",
                        Value::Number(_) => "a number",
                        _ => "a string",
                    }
                ),
                origin: None,
            });
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let entry: CustomInvariant =
                serde_path_to_error::deserialize(item).map_err(|error| {
                    let inner = error.path().to_string();
                    let path = if inner == "." {
                        format!("{}[{index}]", file.display())
                    } else {
                        format!("{}[{index}].{inner}", file.display())
                    };
                    ConfigError::Invalid {
                        path,
                        message: error.into_inner().to_string(),
                        origin: None,
                    }
                })?;
            Ok(DirEntry {
                file: file.to_path_buf(),
                index,
                entry,
            })
        })
        .collect()
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.1 booleans would turn a status word or name such as `y`, `no` or `off` into a
    // boolean before the typed structs see it.
    options.strict_booleans = true;
    // Keep `0755`-style spellings as written (they are names or paths, never octal here).
    options.leading_zero_numbers_as_strings = true;
    // A snippet would quote the source line, which may hold a secret.
    options.with_snippet = false;
    options
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_saphyr::from_str_with_options(&text, yaml_options())
        .map_err(|e| syntax_error(path, &text, &e))?;
    match value {
        // An empty file (or one holding only comments) is an empty configuration.
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        other => Err(ConfigError::Invalid {
            path: String::new(),
            message: format!(
                "{}: the config file must be a mapping of sections (platform, state, …), found {}",
                path.display(),
                kind(&other)
            ),
            origin: None,
        }),
    }
}

fn syntax_error(path: &Path, text: &str, error: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = error.without_snippet().to_string();
    // The location is reported separately; drop the parser's own copy of it.
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_owned();
    }
    // A hint for the library's caller, not for the person editing the file.
    if let Some((head, _)) = message.split_once(", set DuplicateKeyPolicy") {
        message = head.to_owned();
    }
    let line_text = usize::try_from(line)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|n| text.lines().nth(n))
        .unwrap_or_default();
    // Parser messages may quote the offending token; on a secret's line that could be the secret.
    let secret_keys = SECRET_PATHS.iter().filter_map(|p| p.rsplit('.').next());
    if secret_keys.into_iter().any(|key| line_text.contains(key)) {
        message = "syntax error on a line holding a secret (details withheld)".to_owned();
    }
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// `Config::default()` as a value tree, used only as a type map: which keys hold strings (so
/// env/flag values for them stay verbatim and YAML numbers are turned back into strings), which
/// hold mappings. Never merged into the configuration itself.
fn template() -> Value {
    // Cannot fail for these plain structs; an empty template only disables the type hints.
    let mut template =
        serde_json::to_value(Config::default()).unwrap_or_else(|_| Value::Object(Map::new()));
    for path in OPTIONAL_STRING_PATHS {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        // The parents are sections that always exist in the default tree.
        let _ = set_path(&mut template, &segments, Value::String(String::new()));
    }
    template
}

fn env_segments(name: &str) -> Result<Vec<String>, String> {
    let rest = name.strip_prefix(ENV_PREFIX).unwrap_or(name);
    let mut segments = Vec::new();
    for segment in rest.split("__") {
        if segment.is_empty() {
            return Err("empty key segment (keys are separated by exactly `__`)".to_owned());
        }
        segments.push(segment.to_ascii_lowercase());
    }
    normalize_invariant_id(&mut segments);
    Ok(segments)
}

fn flag_segments(dotted: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    for segment in dotted.split('.') {
        if segment.is_empty() {
            return Err("empty key segment (keys are separated by `.`)".to_owned());
        }
        segments.push(segment.to_owned());
    }
    normalize_invariant_id(&mut segments);
    Ok(segments)
}

/// `invariants.s_01` → `invariants.S-01` (catalog ids are upper case with a dash).
fn normalize_invariant_id(segments: &mut [String]) {
    if let [section, id, ..] = segments
        && section == "invariants"
    {
        *id = id.to_ascii_uppercase().replace('_', "-");
    }
}

/// Reads an env/flag value. Errors never include the value.
fn parse_value(segments: &[String], raw: &str, template: &Value) -> Result<Value, String> {
    if raw.trim().is_empty() {
        // Empty means "unset": the null is pruned after merging, so the key takes its default
        // even when the file set it (`CANARY__SCHEDULE__CRON=` turns cron off).
        return Ok(Value::Null);
    }
    if matches!(lookup(template, segments), Some(Value::String(_))) {
        return Ok(Value::String(raw.to_owned()));
    }
    infer_scalar(raw)
}

/// YAML 1.2 core-schema resolution of a plain scalar, plus flow values for `[`, `{`, `"`, `'`.
fn infer_scalar(raw: &str) -> Result<Value, String> {
    let text = raw.trim();
    match text {
        "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if text.starts_with(['[', '{', '"', '\'']) {
        return serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|e| {
            let column = e.location().map_or(0, |l| l.column());
            format!("not a valid YAML flow value (column {column})")
        });
    }
    if is_yaml_int(text) {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    if is_yaml_float(text)
        && let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return Ok(Value::Number(n));
    }
    Ok(Value::String(text.to_owned()))
}

/// `[-+]?[0-9]+` without redundant leading zeros (those stay strings, like in the file).
fn is_yaml_int(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` with a `.` or an exponent.
fn is_yaml_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(frac) => all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok && (frac.is_some() || exponent.is_some())
}

fn lookup<'a>(tree: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(tree, |node, segment| node.as_object()?.get(segment))
}

/// Sets `segments` in `tree`, creating missing (or null) mappings on the way.
fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = segments.split_last() else {
        return Err("empty key path".to_owned());
    };
    let mut node = tree;
    for (depth, segment) in parents.iter().enumerate() {
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            return Err(not_a_mapping(&segments[..depth], node));
        };
        node = map.entry(segment.clone()).or_insert(Value::Null);
    }
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        other => Err(not_a_mapping(parents, other)),
    }
}

fn not_a_mapping(segments: &[String], node: &Value) -> String {
    format!(
        "{} is {}, not a mapping of keys",
        segments.join("."),
        kind(node)
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Removes null-valued keys: `key:` with no value means "use the default", and a section whose
/// keys are all commented out (`invariants:`) is an empty section rather than a type error.
/// Every optional key defaults to `None`, so dropping an explicit null never changes a value.
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, child| !child.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Walks the merged tree beside the type template: numbers and booleans where a string is
/// expected become strings (`table: 2024` is the name `2024`, as a typed YAML reader would
/// take it), and a list where a section is expected is an error (serde would otherwise accept
/// a list as a struct's fields by position).
fn normalize(
    value: &mut Value,
    template: &Value,
    path: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match (template, value) {
        (Value::Object(fields), Value::Object(map)) => {
            for (key, child) in map.iter_mut() {
                if let Some(field) = fields.get(key) {
                    path.push(key.clone());
                    normalize(child, field, path)?;
                    path.pop();
                }
            }
        }
        (Value::Object(_), value @ Value::Array(_)) => {
            return Err(ConfigError::Invalid {
                path: display_path(path),
                message: format!("expected a mapping of keys, found {}", kind(value)),
                origin: None,
            });
        }
        (Value::Array(examples), Value::Array(items)) => {
            let element = examples.iter().fold(Value::Null, |mut acc, example| {
                merge_template(&mut acc, example);
                acc
            });
            for (index, item) in items.iter_mut().enumerate() {
                path.push(format!("[{index}]"));
                normalize(item, &element, path)?;
                path.pop();
            }
        }
        (Value::String(_), value @ (Value::Number(_) | Value::Bool(_))) => {
            *value = Value::String(value.to_string());
        }
        _ => {}
    }
    Ok(())
}

/// Union of list-element templates (the default cascade's entries differ in which optional
/// keys they set).
fn merge_template(acc: &mut Value, other: &Value) {
    match (acc, other) {
        (Value::Object(acc), Value::Object(other)) => {
            for (key, value) in other {
                merge_template(acc.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (acc @ Value::Null, other) => *acc = other.clone(),
        _ => {}
    }
}

fn display_path(segments: &[String]) -> String {
    let mut text = String::new();
    for segment in segments {
        if !text.is_empty() && !segment.starts_with('[') {
            text.push('.');
        }
        text.push_str(segment);
    }
    text
}

fn deserialize(tree: Value, origins: &Origins) -> Result<Config, ConfigError> {
    // Kept for scrubbing: the deserializer consumes the tree.
    let secret_values: Vec<String> = SECRET_PATHS
        .iter()
        .filter_map(|path| {
            let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
            lookup(&tree, &segments)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|value| !value.is_empty())
        .collect();
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let path = match error.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        let message = error.into_inner().to_string();
        let origin = origin_of(&path, origins);
        let message = if touches_secret(&path) || origin.is_some() {
            withhold_value(&message)
        } else {
            message
        };
        // Last line of defence: a secret's exact text never survives into a message.
        let message = secret_values
            .iter()
            .fold(message, |message, secret| message.replace(secret, "***"));
        ConfigError::Invalid {
            path,
            message,
            origin,
        }
    })
}

/// The origin of the value at `path`: the last env/flag that set it, one of its ancestors (a
/// whole list set at once) or one of its descendants (an unknown key created by the variable).
fn origin_of(path: &str, origins: &Origins) -> Option<String> {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    origins.iter().rev().find_map(|(segments, origin)| {
        let set = segments.join(".");
        (within(path, &set) || within(&set, path)).then(|| origin.clone())
    })
}

/// `true` when `path` is a secret, inside one, or one of its ancestors (the root included):
/// an error there may quote the secret (`alerts.slack: invalid type: string "https://…"`).
fn touches_secret(path: &str) -> bool {
    let related = |a: &str, b: &str| {
        a.is_empty() || a == b || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('.'))
    };
    SECRET_PATHS
        .iter()
        .any(|secret| related(path, secret) || related(secret, path))
}

/// Rewrites a serde message so it keeps what was expected but not the value that was found.
/// Messages that quote only key names (`unknown field`, `missing field`) are kept.
fn withhold_value(message: &str) -> String {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return message.to_owned();
    }
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("invalid value (not shown), expected {expected}"),
        None => "invalid value (not shown)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use canary_invariants::Severity;

    use super::*;

    fn yaml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_yaml(
        text: &str,
        vars: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file = yaml_file(text);
        load_from(Some(file.path()), &env(vars), overrides)
    }

    fn invalid(result: Result<Config, ConfigError>) -> (String, String, Option<String>) {
        match result {
            Err(ConfigError::Invalid {
                path,
                message,
                origin,
            }) => (path, message, origin),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn repo_file(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
    }

    #[test]
    fn no_file_no_env_is_default() {
        let config = load_from(None, &[], &Overrides::new()).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn empty_file_is_default() {
        assert_eq!(
            load_yaml("", &[], &Overrides::new()).unwrap(),
            Config::default()
        );
        assert_eq!(
            load_yaml("# nothing\n", &[], &Overrides::new()).unwrap(),
            Config::default()
        );
        // A section with every key commented out is an empty section.
        assert_eq!(
            load_yaml("invariants:\nstate:\n", &[], &Overrides::new()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn precedence_file_then_env_then_flags_scalar() {
        let text = "state:\n  retention_days: 7\n";
        let only_file = load_yaml(text, &[], &Overrides::new()).unwrap();
        assert_eq!(only_file.state.retention_days, 7);

        let vars = [("CANARY__STATE__RETENTION_DAYS", "14")];
        let with_env = load_yaml(text, &vars, &Overrides::new()).unwrap();
        assert_eq!(with_env.state.retention_days, 14);

        let flags = Overrides::new().with("state.retention_days", "21");
        let with_flag = load_yaml(text, &vars, &flags).unwrap();
        assert_eq!(with_flag.state.retention_days, 21);
        // Untouched keys keep their defaults.
        assert_eq!(with_flag.state.path, Config::default().state.path);
    }

    #[test]
    fn precedence_file_then_env_then_flags_nested() {
        let text = "platform:\n  tables:\n    agents:\n      table: from_file\n";
        let key = "CANARY__PLATFORM__TABLES__AGENTS__TABLE";
        let file_only = load_yaml(text, &[], &Overrides::new()).unwrap();
        assert_eq!(file_only.platform.tables.agents.table, "from_file");
        let env_wins = load_yaml(text, &[(key, "from_env")], &Overrides::new()).unwrap();
        assert_eq!(env_wins.platform.tables.agents.table, "from_env");
        let flags = Overrides::new().with("platform.tables.agents.table", "from_flag");
        let flag_wins = load_yaml(text, &[(key, "from_env")], &flags).unwrap();
        assert_eq!(flag_wins.platform.tables.agents.table, "from_flag");
        // Siblings from the file and defaults survive a leaf override.
        assert_eq!(flag_wins.platform.tables.agents.name, "agent_name");
    }

    #[test]
    fn env_values_are_typed_scalars() {
        let vars = [
            ("CANARY__SCHEDULE__INTERVAL", "30s"),
            ("CANARY__INVARIANTS__L_03__ENABLED", "false"),
            ("CANARY__PLATFORM__REDIS_SCAN_COUNT", "100"),
            ("CANARY__SCHEDULE__CRON", "*/5 * * * *"),
            ("CANARY__PLATFORM__STATUSES__TERMINAL", "[success, failed]"),
        ];
        let config = load_from(None, &env(&vars), &Overrides::new()).unwrap();
        assert_eq!(config.schedule.interval, Duration::from_secs(30));
        assert!(!config.invariants.l03.enabled);
        assert_eq!(config.platform.redis_scan_count, 100);
        assert_eq!(config.schedule.cron.as_deref(), Some("*/5 * * * *"));
        assert_eq!(config.platform.statuses.terminal, ["success", "failed"]);
    }

    #[test]
    fn cluster_seeds_come_from_the_environment_too() {
        let vars = [
            ("CANARY__PLATFORM__SQLITE_PATH", "/p.db"),
            (
                "CANARY__PLATFORM__REDIS_CLUSTER__NODES",
                "[10.0.0.1:6379, 10.0.0.2:6379]",
            ),
        ];
        let config = load_from(None, &env(&vars), &Overrides::new()).unwrap();
        let cluster = config.platform.redis_cluster.expect("cluster set");
        assert_eq!(cluster.nodes, ["10.0.0.1:6379", "10.0.0.2:6379"]);
    }

    #[test]
    fn sentinel_keys_come_from_the_environment_too() {
        let vars = [
            ("CANARY__PLATFORM__SQLITE_PATH", "/p.db"),
            ("CANARY__PLATFORM__REDIS_SENTINEL__MASTER_NAME", "12345"),
            (
                "CANARY__PLATFORM__REDIS_SENTINEL__SENTINELS",
                "[10.0.0.1:26379, 10.0.0.2:26379]",
            ),
            ("CANARY__PLATFORM__REDIS_READ_FROM", "replica"),
            ("CANARY__PLATFORM__REDIS_MAX_REPLICA_LAG", "250ms"),
        ];
        let config = load_from(None, &env(&vars), &Overrides::new()).unwrap();
        let sentinel = config.platform.redis_sentinel.expect("sentinel set");
        assert_eq!(sentinel.master_name, "12345");
        assert_eq!(sentinel.sentinels, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!(
            config.platform.redis_read_from,
            super::super::platform::RedisReadFrom::Replica
        );
        assert_eq!(
            config.platform.redis_max_replica_lag,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn string_keys_stay_verbatim() {
        let vars = [
            ("CANARY__PLATFORM__SQLITE_PATH", "0755"),
            ("CANARY__HTTP__ADMIN_TOKEN", "123456"),
            ("CANARY__LOG__LEVEL", "true"),
        ];
        let flags = Overrides::new().with("state.path", "1e3");
        let config = load_from(None, &env(&vars), &flags).unwrap();
        assert_eq!(config.platform.sqlite_path, PathBuf::from("0755"));
        assert_eq!(
            config.http.admin_token.as_ref().map(Secret::expose),
            Some("123456")
        );
        assert_eq!(config.log.level, "true");
        assert_eq!(config.state.path, PathBuf::from("1e3"));
    }

    #[test]
    fn yaml_numbers_in_string_keys_become_strings() {
        let text = "platform:\n  tables:\n    agents:\n      table: 2024\n  statuses:\n    queued: [1, waiting]\nhttp:\n  admin_token: 42\n";
        let config = load_yaml(text, &[], &Overrides::new()).unwrap();
        assert_eq!(config.platform.tables.agents.table, "2024");
        assert_eq!(config.platform.statuses.queued, ["1", "waiting"]);
        assert_eq!(
            config.http.admin_token.as_ref().map(Secret::expose),
            Some("42")
        );
    }

    #[test]
    fn yaml11_booleans_stay_words() {
        let text = "platform:\n  statuses:\n    queued: [y, no, off]\n";
        let config = load_yaml(text, &[], &Overrides::new()).unwrap();
        assert_eq!(config.platform.statuses.queued, ["y", "no", "off"]);
    }

    #[test]
    fn empty_env_value_clears_a_file_setting() {
        let text = "schedule:\n  cron: \"*/5 * * * *\"\n";
        let config = load_yaml(text, &[("CANARY__SCHEDULE__CRON", "")], &Overrides::new()).unwrap();
        assert_eq!(config.schedule.cron, None);
    }

    #[test]
    fn invariant_env_mapping() {
        let vars = [
            ("CANARY__INVARIANTS__S_01__GRACE_SECONDS", "5"),
            ("CANARY__INVARIANTS__E_02__SEVERITY", "minor"),
        ];
        let config = load_from(None, &env(&vars), &Overrides::new()).unwrap();
        assert_eq!(config.invariants.s01.grace_seconds, 5.0);
        assert_eq!(config.invariants.e02.severity, Some(Severity::Minor));
        // Flags accept either spelling too.
        let flags = Overrides::new().with("invariants.s_03.buffer_seconds", "60");
        let config = load_from(None, &[], &flags).unwrap();
        assert_eq!(config.invariants.s03.buffer_seconds, 60);
    }

    #[test]
    fn canary_config_env_names_the_file_and_path_wins() {
        let file = yaml_file("state:\n  retention_days: 3\n");
        let other = yaml_file("state:\n  retention_days: 4\n");
        let vars = vec![(CONFIG_ENV.to_owned(), file.path().display().to_string())];
        assert_eq!(
            load_from(None, &vars, &Overrides::new())
                .unwrap()
                .state
                .retention_days,
            3
        );
        let config = load_from(Some(other.path()), &vars, &Overrides::new()).unwrap();
        assert_eq!(config.state.retention_days, 4);
    }

    #[test]
    fn unknown_key_rejected_with_full_path() {
        let (path, message, _) = invalid(load_yaml(
            "platform:\n  keys:\n    slotz: x\n",
            &[],
            &Overrides::new(),
        ));
        assert_eq!(path, "platform.keys.slotz");
        assert!(message.contains("unknown field"), "{message}");
        let err =
            load_yaml("platform:\n  keys:\n    slotz: x\n", &[], &Overrides::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("platform.keys.slotz: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_and_cascade_key_rejected() {
        let (path, _, _) = invalid(load_yaml("custom_invariantz: []\n", &[], &Overrides::new()));
        assert_eq!(path, "custom_invariantz");
        let text = "platform:\n  cascade:\n    - table: t\n      severity: major\n      colum: x\n";
        let (path, message, _) = invalid(load_yaml(text, &[], &Overrides::new()));
        assert_eq!(path, "platform.cascade[0].colum", "{message}");
    }

    #[test]
    fn unknown_invariant_id_rejected() {
        let (path, message, _) = invalid(load_yaml(
            "invariants:\n  S-99:\n    enabled: false\n",
            &[],
            &Overrides::new(),
        ));
        assert_eq!(path, "invariants.S-99");
        assert!(message.contains("unknown field"), "{message}");
        let vars = [("CANARY__INVARIANTS__X_01__ENABLED", "true")];
        let (path, _, origin) = invalid(load_from(None, &env(&vars), &Overrides::new()));
        assert_eq!(path, "invariants.X-01");
        assert_eq!(
            origin.as_deref(),
            Some("environment variable CANARY__INVARIANTS__X_01__ENABLED")
        );
    }

    #[test]
    fn bad_type_names_the_path() {
        let (path, message, origin) = invalid(load_yaml(
            "state:\n  retention_days: many\n",
            &[],
            &Overrides::new(),
        ));
        assert_eq!(path, "state.retention_days");
        assert!(message.contains("expected u32"), "{message}");
        assert_eq!(origin, None);
        let (path, _, _) = invalid(load_yaml(
            "schedule:\n  interval: soon\n",
            &[],
            &Overrides::new(),
        ));
        assert_eq!(path, "schedule.interval");
        let (path, _, _) = invalid(load_yaml(
            "platform:\n  cascade:\n    - table: t\n      severity: loud\n",
            &[],
            &Overrides::new(),
        ));
        assert_eq!(path, "platform.cascade[0].severity");
    }

    #[test]
    fn section_given_as_list_is_rejected() {
        let (path, message, _) =
            invalid(load_yaml("state: [/x.db, 5, 2m]\n", &[], &Overrides::new()));
        assert_eq!(path, "state");
        assert!(message.contains("expected a mapping"), "{message}");
        let (path, _, _) = invalid(load_yaml("- a\n- b\n", &[], &Overrides::new()));
        assert_eq!(path, "");
    }

    #[test]
    fn env_errors_name_the_variable_not_the_value() {
        let vars = [("CANARY__STATE__RETENTION_DAYS", "s3cr3t-looking")];
        let err = load_from(None, &env(&vars), &Overrides::new()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("CANARY__STATE__RETENTION_DAYS"), "{text}");
        assert!(text.starts_with("state.retention_days:"), "{text}");
        assert!(!text.contains("s3cr3t-looking"), "{text}");

        let vars = [("CANARY__STATE____PATH", "s3cr3t-looking")];
        let err = load_from(None, &env(&vars), &Overrides::new()).unwrap_err();
        assert!(matches!(&err, ConfigError::Env { name, .. } if name == "CANARY__STATE____PATH"));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");

        let vars = [("CANARY__PLATFORM__CASCADE__TABLE", "s3cr3t-looking")];
        let text = "platform:\n  cascade: []\n";
        let err = load_yaml(text, &vars, &Overrides::new()).unwrap_err();
        assert!(matches!(&err, ConfigError::Env { .. }), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");

        let vars = [("CANARY__PLATFORM__STATUSES__QUEUED", "[s3cr3t-looking")];
        let err = load_from(None, &env(&vars), &Overrides::new()).unwrap_err();
        assert!(matches!(&err, ConfigError::Env { .. }), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    const HOOK: &str = "https://hooks.slack.com/services/T000/B000/SECRETSECRET";

    #[test]
    fn secrets_never_echoed_in_load_errors() {
        let cases = [
            format!("alerts:\n  slack:\n    webhook_url: [\"{HOOK}\"]\n"),
            format!("alerts:\n  slack: \"{HOOK}\"\n"),
            format!("alerts: \"{HOOK}\"\n"),
            format!("http: \"{HOOK}\"\n"),
            format!("http:\n  admin_token: {{ token: \"{HOOK}\" }}\n"),
            format!("\"{HOOK}\"\n"),
            format!("alerts:\n  slack:\n    webhook_url: \"{HOOK}\n"),
            format!("alerts:\n  slack:\n    webhook_url: '{HOOK}'\n    webhook_url: other\n"),
            format!("platform:\n  database_url: [\"{HOOK}\"]\n"),
            format!("platform:\n  database_url: {{ url: \"{HOOK}\" }}\n"),
        ];
        for text in &cases {
            let err = load_yaml(text, &[], &Overrides::new()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("SECRETSECRET"), "{text:?} leaked: {shown}");
        }
        let vars = [("CANARY__ALERTS__SLACK", HOOK)];
        let err = load_from(None, &env(&vars), &Overrides::new()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRETSECRET"), "{err}");
        let flags = Overrides::new().with("http", HOOK);
        let err = load_from(None, &[], &flags).unwrap_err();
        assert!(
            !format!("{err} {err:?} {flags:?}").contains("SECRETSECRET"),
            "{err}"
        );
    }

    #[test]
    fn secret_type_error_keeps_the_path() {
        let text = format!("alerts:\n  slack:\n    webhook_url: [\"{HOOK}\"]\n");
        let (path, message, _) = invalid(load_yaml(&text, &[], &Overrides::new()));
        assert_eq!(path, "alerts.slack.webhook_url");
        assert!(message.contains("not shown"), "{message}");
    }

    #[test]
    fn syntax_error_has_location() {
        let err = load_yaml("state:\n  path: [unclosed\n", &[], &Overrides::new()).unwrap_err();
        match &err {
            ConfigError::Syntax { line, column, .. } => assert!(*line >= 2 && *column > 0, "{err}"),
            other => panic!("expected Syntax, got {other:?}"),
        }
        assert!(err.to_string().contains("invalid YAML at line"), "{err}");
        let err = load_yaml("a: 1\na: 2\n", &[], &Overrides::new()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("line 2, column 1: duplicate mapping key: a"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let err = load_from(Some(&missing), &[], &Overrides::new()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.yaml"), "{err}");
    }

    #[test]
    fn secret_helpers_resolve_value_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "tok\n").unwrap();
        let mut config = Config::default();
        assert!(config.admin_token().unwrap().is_none());
        config.http.admin_token_file = Some(token_file.clone());
        assert_eq!(config.admin_token().unwrap().unwrap().expose(), "tok");
        config.http.admin_token = Some(Secret::new("inline"));
        assert!(matches!(
            config.admin_token(),
            Err(ConfigError::SecretConflict { .. })
        ));
        config.http.admin_token_file = None;
        assert_eq!(config.admin_token().unwrap().unwrap().expose(), "inline");

        config.alerts.slack.webhook_url_file = Some(dir.path().join("missing"));
        let err = config.webhook_url().unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::write(&token_file, "  \n").unwrap();
        config.alerts.slack.webhook_url_file = Some(token_file);
        assert!(matches!(
            config.webhook_url(),
            Err(ConfigError::EmptySecret {
                key: "alerts.slack.webhook_url_file"
            })
        ));
    }

    #[test]
    fn canary_yaml_is_exactly_the_defaults() {
        let config = load_from(
            Some(&repo_file("config/canary.yaml")),
            &[],
            &Overrides::new(),
        )
        .unwrap();
        // The defaults, with the example's platform database (the one key without a default).
        let mut expected = Config::default();
        expected.platform.sqlite_path = "/var/lib/platform/platform.db".into();
        assert_eq!(config, expected);
        assert!(validate(&config).is_empty(), "{:?}", validate(&config));
    }

    #[test]
    fn example_is_canary_yaml() {
        let on_disk = std::fs::read_to_string(repo_file("config/canary.yaml")).unwrap();
        assert_eq!(example(), on_disk);
    }

    /// Every key of the default tree is spelled out in `config/canary.yaml` (so the documented
    /// file cannot silently fall behind a new key that happens to equal its default).
    #[test]
    fn canary_yaml_spells_out_every_key() {
        let text = std::fs::read_to_string(repo_file("config/canary.yaml")).unwrap();
        let file: Value = serde_saphyr::from_str_with_options(&text, yaml_options()).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        fn missing(defaults: &Value, file: &Value, path: &str, out: &mut Vec<String>) {
            if let (Value::Object(d), Value::Object(f)) = (defaults, file) {
                for (key, value) in d {
                    let child = format!("{path}.{key}");
                    match f.get(key) {
                        Some(found) => missing(value, found, &child, out),
                        // Optional keys whose default is "unset" are documented as comments.
                        None if value.is_null() => {}
                        None => out.push(child),
                    }
                }
            }
        }
        let mut out = Vec::new();
        missing(&defaults, &file, "", &mut out);
        assert!(
            out.is_empty(),
            "keys missing from config/canary.yaml: {out:?}"
        );
    }

    /// Examples point their secret files at paths that exist only on a deployed host
    /// (`/etc/canary/…`): the one problem tolerated here is "secret file does not exist".
    #[test]
    fn examples_load_and_validate() {
        let dir = repo_file("config/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            seen += 1;
            let config = load_from(Some(&path), &[], &Overrides::new())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let problems: Vec<Problem> = validate(&config)
                .into_iter()
                .filter(|p| {
                    !(p.path.ends_with("_file") && p.message.starts_with("file does not exist"))
                })
                .collect();
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
            assert_ne!(
                config,
                Config::default(),
                "{} changes nothing",
                path.display()
            );
        }
        assert!(seen >= 2, "expected the examples in {}", dir.display());
    }

    #[test]
    fn show_redacts_and_round_trips() {
        let mut config = Config::default();
        config.alerts.slack.webhook_url = Some(Secret::new(HOOK));
        config.http.admin_token = Some(Secret::new("tok-SECRETSECRET"));
        config.platform.redis_url = "redis://:SECRETSECRET@redis:6379/0".to_owned();
        config.platform.database_url = Some(Secret::new(
            "postgres://canary:SECRETSECRET@db:5432/platform?sslmode=verify-full",
        ));
        config.schedule.cron = Some("*/5 * * * *".to_owned());
        config.platform.redis_replica_url = Some("redis://:SECRETSECRET@replica:6379/0".to_owned());
        config.platform.redis_read_from = super::super::platform::RedisReadFrom::Replica;
        config.platform.redis_sentinel = Some(super::super::platform::RedisSentinel {
            master_name: "mymaster".to_owned(),
            sentinels: vec!["10.0.0.1:26379".to_owned()],
            username: Some("canary".to_owned()),
            password_file: Some("/etc/canary/sentinel_password".into()),
            tls: false,
        });
        let text = show(&config);
        assert!(!text.contains("SECRETSECRET"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");

        let mut expected = config.clone();
        expected.alerts.slack.webhook_url = Some(Secret::new("[redacted]"));
        expected.http.admin_token = Some(Secret::new("[redacted]"));
        expected.platform.redis_url = "redis://***@redis:6379/0".to_owned();
        expected.platform.redis_replica_url = Some("redis://***@replica:6379/0".to_owned());
        expected.platform.database_url = Some(Secret::new("[redacted]"));
        assert_eq!(load_yaml(&text, &[], &Overrides::new()).unwrap(), expected);
        assert_eq!(
            load_yaml(&show(&Config::default()), &[], &Overrides::new()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn overrides_debug_hides_values() {
        let flags = Overrides::new().with("http.admin_token", "SECRETSECRET");
        assert_eq!(format!("{flags:?}"), "[\"http.admin_token\"]");
    }

    #[test]
    fn scalar_inference() {
        assert_eq!(infer_scalar("5").unwrap(), Value::from(5));
        assert_eq!(infer_scalar("-5").unwrap(), Value::from(-5));
        assert_eq!(infer_scalar("1.5").unwrap(), Value::from(1.5));
        assert_eq!(infer_scalar("1e3").unwrap(), Value::from(1000.0));
        assert_eq!(infer_scalar("true").unwrap(), Value::Bool(true));
        assert_eq!(infer_scalar("~").unwrap(), Value::Null);
        for text in [
            "30s",
            "0755",
            "yes",
            "1.2.3",
            ".",
            "e5",
            "inf",
            "NaN",
            "127.0.0.1:9464",
        ] {
            assert_eq!(infer_scalar(text).unwrap(), Value::from(text), "{text}");
        }
        assert_eq!(infer_scalar("'5'").unwrap(), Value::from("5"));
        assert_eq!(infer_scalar("[a, 2]").unwrap(), serde_json::json!(["a", 2]));
    }
}
