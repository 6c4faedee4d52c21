//! Operator-defined SQL invariants in configuration (DESIGN §5 "Custom SQL invariants"): the
//! entry type, the global limits, loading entries from `custom_invariants_dir`, and validation.
//!
//! Entries come from two places, merged in this order: the config file's `custom_invariants`
//! list, then every `*.yaml` / `*.yml` file of `custom_invariants_dir` (sorted by file name;
//! names starting with `.` are skipped). A directory file holds either one entry (a mapping) or
//! a list of entries; an empty file holds none. A relative directory is resolved against the
//! config file's directory (against the working directory when there is no file).
//!
//! ```yaml
//! custom_limits: { row_limit: 100, timeout: 2s }
//! custom_invariants:
//!   - id: C-01                      # ^[A-Za-z][A-Za-z0-9_.-]{0,63}$, unique, not a built-in
//!     name: Sharing edges point at live agents
//!     tier: A                       # A | B (default A)
//!     severity: major               # critical | major | minor (default major)
//!     runbook: Delete the edges or restore the agent.
//!     sql: SELECT agent_name AS subject FROM agent_sharing …
//!     row_limit: 50                 # optional, overrides custom_limits.row_limit
//!     timeout: 500ms                # optional, overrides custom_limits.timeout
//!     enabled: true                 # optional (default true)
//! ```
//!
//! Id rule: `^[A-Za-z][A-Za-z0-9_.-]{0,63}$`, unique across the file and the directory, not a
//! catalog id (compared case-insensitively), and not of the reserved built-in shape
//! `<S|E|L|B|G|H|R>-<digits>` (so a future built-in cannot collide with it): `C-01` and
//! `custom.perm_edges` are fine.
//!
//! Validation here is pure (no I/O). Preparing every statement against the platform database is
//! the collector's preflight (`collect::preflight`), which the CLI runs right after `validate`
//! on the entries [`statements_to_preflight`] names; this module must not open the database.
//! Reading `custom_invariants_dir` is loading and lives in `load.rs`: this file imports nothing
//! from loading or validation (only [`Problem`]), so the config modules import one way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use canary_invariants::{Severity, Tier, catalog};
use serde::{Deserialize, Serialize};

use super::Config;
use super::problem::Problem;

/// Letters of the built-in catalog's id families; `<letter>-<digits>` is reserved for built-ins.
const RESERVED_FAMILIES: [char; 7] = ['S', 'E', 'L', 'B', 'G', 'H', 'R'];
/// Largest accepted `row_limit` (each row is kept in memory and in the state DB).
const ROW_LIMIT_MAX: u32 = 10_000;
/// Shortest accepted `timeout`.
const TIMEOUT_MIN: Duration = Duration::from_millis(10);
/// Longest accepted `timeout` (a cycle waits for its statements).
const TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// One operator-defined invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomInvariant {
    /// Unique id (see the module docs for the rule).
    pub id: String,
    /// Short human name (Slack header, listings).
    pub name: String,
    /// A (must hold at every instant) or B (must reconcile within a bound).
    #[serde(default = "default_tier")]
    pub tier: Tier,
    /// Severity of every violation.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// What an operator should look at first when it fires.
    #[serde(default)]
    pub runbook: String,
    /// One read-only `SELECT`; each returned row is one violation (`subject` and `summary`
    /// columns are used when present).
    pub sql: String,
    /// Run it every cycle (a disabled one still runs when asked for with `--invariant`).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Overrides `custom_limits.row_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_limit: Option<u32>,
    /// Overrides `custom_limits.timeout`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

fn default_tier() -> Tier {
    Tier::A
}

fn default_severity() -> Severity {
    Severity::Major
}

fn enabled_default() -> bool {
    true
}

/// Limits applied to every custom statement unless its entry overrides them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomLimits {
    /// Rows kept per statement; more are reported as a truncation anomaly.
    pub row_limit: u32,
    /// Time limit per statement; a statement still running is interrupted (outcome unknown).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CustomLimits {
    fn default() -> Self {
        CustomLimits {
            row_limit: 100,
            timeout: Duration::from_secs(2),
        }
    }
}

/// An entry read from `custom_invariants_dir`, with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    /// The file.
    pub file: PathBuf,
    /// Position in the file (0 for a single-entry file).
    pub index: usize,
    /// The entry.
    pub entry: CustomInvariant,
}

/// One custom invariant ready to run: its entry with the limits resolved (what the collector
/// runs; built here so configuration needs nothing from the collector).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomSpec {
    /// Operator id.
    pub id: String,
    /// Short name.
    pub name: String,
    /// A or B.
    pub tier: Tier,
    /// Severity of its violations.
    pub severity: Severity,
    /// The single read-only statement.
    pub sql: String,
    /// Rows kept at most.
    pub row_limit: u32,
    /// Time limit of the statement (prepare, steps, everything).
    pub timeout: Duration,
}

/// An entry with a label saying where it was written (for messages).
#[derive(Debug, Clone, Copy)]
pub struct Sourced<'a> {
    /// `custom_invariants[2]` or `/etc/canary/invariants.d/x.yaml[0]`.
    pub origin: Origin<'a>,
    /// The entry.
    pub entry: &'a CustomInvariant,
}

/// Where an entry was written.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// The config file's list, at this index.
    File(usize),
    /// A directory file, at this index.
    Dir(&'a Path, usize),
}

impl Origin<'_> {
    /// The label used in problems (`custom_invariants[0]`, `<file>[0]`).
    pub fn label(&self) -> String {
        match self {
            Origin::File(i) => format!("custom_invariants[{i}]"),
            Origin::Dir(file, i) => format!("{}[{i}]", file.display()),
        }
    }
}

impl Config {
    /// Every custom invariant: the file's list, then the directory's files.
    pub fn custom_entries(&self) -> Vec<Sourced<'_>> {
        let inline = self
            .custom_invariants
            .iter()
            .enumerate()
            .map(|(i, entry)| Sourced {
                origin: Origin::File(i),
                entry,
            });
        let dir = self.custom_from_dir.iter().map(|d| Sourced {
            origin: Origin::Dir(&d.file, d.index),
            entry: &d.entry,
        });
        inline.chain(dir).collect()
    }

    /// The custom invariant with this id, if configured.
    pub fn custom(&self, id: &str) -> Option<&CustomInvariant> {
        self.custom_entries()
            .into_iter()
            .map(|s| s.entry)
            .find(|entry| entry.id == id)
    }

    /// The custom invariants a cycle runs: the enabled ones, or exactly the listed ids.
    pub fn custom_specs(&self, only: Option<&[String]>) -> Vec<CustomSpec> {
        self.custom_entries()
            .into_iter()
            .map(|s| s.entry)
            .filter(|entry| match only {
                Some(ids) => ids.contains(&entry.id),
                None => entry.enabled,
            })
            .map(|entry| CustomSpec {
                id: entry.id.clone(),
                name: entry.name.clone(),
                tier: entry.tier,
                severity: entry.severity,
                sql: entry.sql.clone(),
                row_limit: entry.row_limit.unwrap_or(self.custom_limits.row_limit),
                timeout: entry.timeout.unwrap_or(self.custom_limits.timeout),
            })
            .collect()
    }
}

/// `^[A-Za-z][A-Za-z0-9_.-]{0,63}$`.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `S-07`, `e-2`, …: the shape of built-in ids.
fn is_reserved_shape(id: &str) -> bool {
    match id.split_once('-') {
        Some((family, digits)) => {
            let mut letters = family.chars();
            let letter = letters.next().map(|c| c.to_ascii_uppercase());
            letters.next().is_none()
                && letter.is_some_and(|c| RESERVED_FAMILIES.contains(&c))
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Appends every problem of the custom invariants to `out` (pure: the statements are checked
/// against the platform database by `collect::preflight`).
pub(super) fn validate(config: &Config, out: &mut Vec<Problem>) {
    let limits = &config.custom_limits;
    row_limit(out, "custom_limits.row_limit", limits.row_limit);
    timeout(out, "custom_limits.timeout", limits.timeout);
    validate_entries(config, out);
}

/// The entries without a problem of their own, in configuration order, with their labels: the
/// ones whose statement the platform preflight (`collect::preflight`) prepares. An entry that
/// already has a problem is left out so it is not reported twice.
pub fn statements_to_preflight(config: &Config) -> Vec<(String, &CustomInvariant)> {
    validate_entries(config, &mut Vec::new())
}

/// The per-entry checks; returns the entries that passed them.
fn validate_entries<'c>(
    config: &'c Config,
    out: &mut Vec<Problem>,
) -> Vec<(String, &'c CustomInvariant)> {
    let entries = config.custom_entries();
    let mut seen: Vec<(&str, String)> = Vec::new();
    let mut sql_ok: Vec<(String, &CustomInvariant)> = Vec::new();
    for sourced in &entries {
        let label = sourced.origin.label();
        let entry = sourced.entry;
        let before = out.len();
        if !is_valid_id(&entry.id) {
            out.push(Problem::new(
                format!("{label}.id"),
                format!(
                    "{:?} is not a valid custom invariant id: start with a letter, then up to 63 \
                     letters, digits, `_`, `.` or `-` (e.g. C-01 or custom.perm_edges)",
                    entry.id
                ),
            ));
        } else if let Some(builtin) = catalog::ids().find(|b| b.eq_ignore_ascii_case(&entry.id)) {
            out.push(Problem::new(
                format!("{label}.id"),
                format!(
                    "{:?} is the id of the built-in invariant {builtin}; pick another id",
                    entry.id
                ),
            ));
        } else if is_reserved_shape(&entry.id) {
            out.push(Problem::new(
                format!("{label}.id"),
                format!(
                    "{:?} has the shape of a built-in id (S-, E-, L-, B-, G-, H-, R- followed by \
                     digits), reserved for future built-ins; use e.g. C-01 or custom.name",
                    entry.id
                ),
            ));
        } else if let Some((_, first)) = seen.iter().find(|(id, _)| *id == entry.id) {
            out.push(Problem::new(
                format!("{label}.id"),
                format!("duplicate id {:?}: already used by {first}", entry.id),
            ));
        } else {
            seen.push((&entry.id, label.clone()));
        }
        let id = &entry.id;
        // Problems below name the entry by its id; the id problems above quote it already.
        let fields_from = out.len();
        if entry.name.trim().is_empty() {
            out.push(Problem::new(
                format!("{label}.name"),
                format!("{id}: must not be empty"),
            ));
        }
        if entry.sql.trim().is_empty() {
            out.push(Problem::new(
                format!("{label}.sql"),
                format!("{id}: sql is empty"),
            ));
        }
        if let Some(limit) = entry.row_limit {
            row_limit(out, &format!("{label}.row_limit"), limit);
        }
        if let Some(limit) = entry.timeout {
            timeout(out, &format!("{label}.timeout"), limit);
        }
        for problem in out.iter_mut().skip(fields_from) {
            if !problem.message.starts_with(id.as_str()) && !problem.message.starts_with('"') {
                problem.message = format!("{id}: {}", problem.message);
            }
        }
        if out.len() == before {
            sql_ok.push((label, entry));
        }
    }
    sql_ok
}

fn row_limit(out: &mut Vec<Problem>, path: &str, value: u32) {
    if value == 0 || value > ROW_LIMIT_MAX {
        out.push(Problem::new(
            path,
            format!("must be between 1 and {ROW_LIMIT_MAX} (got {value})"),
        ));
    }
}

fn timeout(out: &mut Vec<Problem>, path: &str, value: Duration) {
    if value < TIMEOUT_MIN || value > TIMEOUT_MAX {
        out.push(Problem::new(
            path,
            format!(
                "must be between {} and {} (got {})",
                humantime::format_duration(TIMEOUT_MIN),
                humantime::format_duration(TIMEOUT_MAX),
                humantime::format_duration(value)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, load_from, validate};

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn id_rule() {
        for ok in [
            "C-01",
            "custom.perm_edges",
            "x",
            "A_b-c.d9",
            &"a".repeat(64),
        ] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in ["", "1abc", "-x", "a b", "a/b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        for reserved in ["S-01", "s-1", "E-99", "R-01", "H-123"] {
            assert!(is_reserved_shape(reserved), "{reserved}");
        }
        for free in ["C-01", "S-x", "SS-01", "S-", "custom.S-01", "S01"] {
            assert!(!is_reserved_shape(free), "{free}");
        }
    }

    #[test]
    fn entries_take_defaults_and_reject_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        write(
            &file,
            "custom_invariants:\n  - id: C-01\n    name: n\n    sql: SELECT 1 AS x\n",
        );
        let config = load_from(Some(&file), &[], &Overrides::new()).unwrap();
        let entry = &config.custom_invariants[0];
        assert_eq!(
            (entry.tier, entry.severity, entry.enabled),
            (Tier::A, Severity::Major, true)
        );
        let spec = &config.custom_specs(None)[0];
        assert_eq!(spec.row_limit, 100);
        assert_eq!(spec.timeout, Duration::from_secs(2));

        write(
            &file,
            "custom_invariants:\n  - id: C-01\n    name: n\n    sql: SELECT 1\n    tier: C\n",
        );
        let err = load_from(Some(&file), &[], &Overrides::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("custom_invariants[0].tier:"),
            "{err}"
        );
        write(&file, "custom_limits:\n  timeout: soon\n");
        let err = load_from(Some(&file), &[], &Overrides::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("custom_limits.timeout:"),
            "{err}"
        );
    }

    #[test]
    fn directory_files_hold_one_entry_or_a_list_and_resolve_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let checks = dir.path().join("checks.d");
        std::fs::create_dir(&checks).unwrap();
        write(
            &checks.join("b.yml"),
            "- id: C-02\n  name: two\n  sql: SELECT 2\n- id: C-03\n  name: three\n  sql: SELECT 3\n  timeout: 50ms\n  row_limit: 7\n",
        );
        write(
            &checks.join("a.yaml"),
            "id: C-01\nname: one\nsql: SELECT 1\n",
        );
        write(&checks.join("empty.yaml"), "# nothing yet\n");
        write(&checks.join("notes.md"), "ignored");
        let file = dir.path().join("canary.yaml");
        write(
            &file,
            "custom_invariants_dir: checks.d\ncustom_limits:\n  row_limit: 5\n",
        );
        let config = load_from(Some(&file), &[], &Overrides::new()).unwrap();
        let ids: Vec<&str> = config
            .custom_entries()
            .iter()
            .map(|s| s.entry.id.as_str())
            .collect();
        assert_eq!(ids, ["C-01", "C-02", "C-03"], "sorted by file name");
        let labels: Vec<String> = config
            .custom_entries()
            .iter()
            .map(|s| s.origin.label())
            .collect();
        assert!(labels[2].ends_with("b.yml[1]"), "{labels:?}");
        let specs = config.custom_specs(None);
        assert_eq!((specs[0].row_limit, specs[2].row_limit), (5, 7));
        assert_eq!(specs[2].timeout, Duration::from_millis(50));
        assert_eq!(config.custom("C-02").map(|c| c.name.as_str()), Some("two"));

        // The directory may come from the environment too.
        let env = [(
            "CANARY__CUSTOM_INVARIANTS_DIR".to_owned(),
            checks.display().to_string(),
        )];
        let config = load_from(None, &env, &Overrides::new()).unwrap();
        assert_eq!(config.custom_entries().len(), 3);

        // A missing directory or a scalar file is a load error naming it.
        write(&file, "custom_invariants_dir: nope.d\n");
        let err = load_from(Some(&file), &[], &Overrides::new()).unwrap_err();
        assert!(err.to_string().contains("nope.d"), "{err}");
        write(&file, "custom_invariants_dir: checks.d\n");
        write(&checks.join("c.yaml"), "just text\n");
        let err = load_from(Some(&file), &[], &Overrides::new()).unwrap_err();
        assert!(err.to_string().contains("c.yaml"), "{err}");
    }

    #[test]
    fn limits_are_bounded() {
        let mut config = Config::default();
        config.platform.sqlite_path = "/p.db".into();
        config.custom_limits.row_limit = 0;
        config.custom_limits.timeout = Duration::from_secs(3600);
        let problems = validate(&config);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["custom_limits.row_limit", "custom_limits.timeout"]);
    }
}
