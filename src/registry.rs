//! The runtime registry of invariants: the built-in catalog and the configuration's custom SQL
//! invariants behind one lookup, so the CLI, the API, Slack and the demo answer "what is this id,
//! its name, tier, severity, runbook, rule, is it on" in one way.
//!
//! It owns no data: it borrows the configuration and the static catalog. It must not judge
//! anything (that is `canary-invariants`) nor do I/O.

use canary_invariants::catalog::{self, Entry, Invariant};
use canary_invariants::{CATALOG, Severity, Tier};
use serde_json::{Value, json};

use crate::config::{Config, CustomInvariant};

/// What a custom invariant's rule is, for listings (its SQL is shown beside it).
const CUSTOM_RULE: &str = "custom SQL: every row returned is one violation";

/// One invariant as the registry describes it.
#[derive(Clone, Copy)]
pub enum Described<'c> {
    /// From the catalog.
    BuiltIn(&'static dyn Invariant),
    /// From the configuration.
    Custom(&'c CustomInvariant),
}

impl std::fmt::Debug for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_custom() {
            "Custom"
        } else {
            "BuiltIn"
        };
        f.debug_tuple(kind).field(&self.id()).finish()
    }
}

impl<'c> Described<'c> {
    /// The id (`S-01`, or the operator's).
    pub fn id(&self) -> &'c str {
        match self {
            Described::BuiltIn(inv) => inv.meta().id,
            Described::Custom(c) => &c.id,
        }
    }

    /// The short name.
    pub fn name(&self) -> &'c str {
        match self {
            Described::BuiltIn(inv) => inv.meta().name,
            Described::Custom(c) => &c.name,
        }
    }

    /// A or B.
    pub fn tier(&self) -> Tier {
        match self {
            Described::BuiltIn(inv) => inv.meta().tier,
            Described::Custom(c) => c.tier,
        }
    }

    /// The catalog's (or the configuration's) default severity.
    pub fn severity(&self) -> Severity {
        match self {
            Described::BuiltIn(inv) => inv.meta().severity,
            Described::Custom(c) => c.severity,
        }
    }

    /// What an operator should look at first (may be empty for a custom invariant).
    pub fn runbook(&self) -> &'c str {
        match self {
            Described::BuiltIn(inv) => inv.meta().runbook,
            Described::Custom(c) => &c.runbook,
        }
    }

    /// Whether it is operator-defined.
    pub fn is_custom(&self) -> bool {
        matches!(self, Described::Custom(_))
    }
}

/// The catalog plus the custom invariants of one configuration.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'c> {
    config: &'c Config,
}

impl<'c> Registry<'c> {
    /// The registry of `config`.
    pub fn new(config: &'c Config) -> Registry<'c> {
        Registry { config }
    }

    /// The invariant with this id: the catalog first (a custom id may not shadow a built-in one;
    /// configuration validation refuses it), then the configuration.
    pub fn find(&self, id: &str) -> Option<Described<'c>> {
        catalog::find(id)
            .map(Described::BuiltIn)
            .or_else(|| self.config.custom(id).map(Described::Custom))
    }

    /// Every invariant: the catalog in catalog order, then the custom ones in configuration order.
    pub fn all(&self) -> Vec<Described<'c>> {
        CATALOG
            .iter()
            .map(|inv| Described::BuiltIn(*inv))
            .chain(
                self.config
                    .custom_entries()
                    .into_iter()
                    .map(|s| Described::Custom(s.entry)),
            )
            .collect()
    }

    /// The custom invariants alone, in configuration order.
    pub fn custom(&self) -> Vec<&'c CustomInvariant> {
        self.config
            .custom_entries()
            .into_iter()
            .map(|s| s.entry)
            .collect()
    }

    /// The ids in `ids` that name no invariant, in the order given.
    pub fn unknown<'i>(&self, ids: &'i [String]) -> Vec<&'i String> {
        ids.iter().filter(|id| self.find(id).is_none()).collect()
    }

    /// Whether this configuration runs the invariant every cycle.
    pub fn enabled(&self, described: &Described<'_>) -> bool {
        match described {
            Described::BuiltIn(inv) => self.config.invariants.enabled(inv.meta().id),
            Described::Custom(c) => c.enabled,
        }
    }

    /// Whether it runs under this configuration: enabled, and every source it needs configured
    /// (R-01 without `platform.docker`, B-01 without `platform.queue_count` are not run: "not
    /// configured", never *unknown*).
    pub fn configured(&self, described: &Described<'_>) -> bool {
        let sources_there = match described {
            Described::BuiltIn(inv) => canary_invariants::Source::OPTIONAL.iter().all(|source| {
                self.source_configured(*source) || !catalog::needs_source(inv.meta().id, *source)
            }),
            Described::Custom(_) => true,
        };
        self.enabled(described) && sources_there
    }

    /// Whether the configuration names `source` (the database and Redis always are).
    pub fn source_configured(&self, source: canary_invariants::Source) -> bool {
        use canary_invariants::Source;
        match source {
            Source::Sqlite | Source::Redis => true,
            Source::Docker => self.config.platform.docker.is_some(),
            Source::QueueCount => self.config.platform.queue_count.is_some(),
        }
    }

    /// One listing entry as JSON (`canary invariants --format json`, `GET /api/canary/invariants`):
    /// a built-in one's metadata with its rule under this configuration's thresholds; a custom
    /// one shaped alike, plus `"custom": true` and its SQL. Both say whether they are enabled.
    pub fn entry_json(&self, described: &Described<'_>) -> Value {
        let enabled = self.enabled(described);
        match described {
            Described::BuiltIn(inv) => {
                let mut value = json!(Entry::new(*inv, &self.config.invariants));
                if let Some(object) = value.as_object_mut() {
                    object.insert("enabled".to_owned(), Value::Bool(enabled));
                }
                value
            }
            Described::Custom(c) => json!({
                "id": c.id,
                "name": c.name,
                "tier": c.tier,
                "severity": c.severity,
                "runbook": c.runbook,
                "rule": CUSTOM_RULE,
                "sql": c.sql,
                "enabled": enabled,
                "custom": true,
            }),
        }
    }

    /// Every listing entry, catalog first.
    pub fn entries_json(&self) -> Vec<Value> {
        self.all().iter().map(|d| self.entry_json(d)).collect()
    }

    /// The rule text of an invariant under this configuration.
    pub fn rule(&self, described: &Described<'_>) -> String {
        match described {
            Described::BuiltIn(inv) => inv.rule(&self.config.invariants),
            Described::Custom(_) => CUSTOM_RULE.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(id: &str, enabled: bool) -> CustomInvariant {
        CustomInvariant {
            id: id.to_owned(),
            name: format!("{id} name"),
            tier: Tier::B,
            severity: Severity::Minor,
            runbook: "look here".to_owned(),
            sql: "SELECT 1".to_owned(),
            enabled,
            row_limit: None,
            timeout: None,
        }
    }

    #[test]
    fn built_in_then_custom_in_one_lookup() {
        let mut config = Config {
            custom_invariants: vec![custom("C-1", true), custom("C-2", false)],
            ..Config::default()
        };
        config.invariants.s07.enabled = false;
        let registry = Registry::new(&config);

        let s01 = registry.find("S-01").unwrap();
        assert_eq!(s01.name(), "Slot–row bijection");
        assert!(!s01.is_custom());
        let c1 = registry.find("C-1").unwrap();
        assert_eq!((c1.name(), c1.runbook()), ("C-1 name", "look here"));
        assert!(c1.is_custom());
        assert!(registry.find("X-99").is_none());

        let ids: Vec<&str> = registry.all().iter().map(Described::id).collect();
        let mut expected: Vec<&str> = catalog::ids().collect();
        expected.extend(["C-1", "C-2"]);
        assert_eq!(ids, expected);

        let asked = ["S-01".to_owned(), "nope".to_owned(), "C-2".to_owned()];
        assert_eq!(registry.unknown(&asked), [&"nope".to_owned()]);

        let enabled: Vec<(&str, bool)> = registry
            .all()
            .iter()
            .map(|d| (d.id(), registry.enabled(d)))
            .filter(|(id, _)| ["S-07", "S-01", "C-1", "C-2"].contains(id))
            .collect();
        assert_eq!(
            enabled,
            [
                ("S-01", true),
                ("S-07", false),
                ("C-1", true),
                ("C-2", false)
            ]
        );
    }

    #[test]
    fn listing_entries_carry_the_effective_rule_and_whether_enabled() {
        let mut config = Config {
            custom_invariants: vec![custom("C-1", false)],
            ..Config::default()
        };
        config.invariants.s07.max_age_seconds = 42.0;
        let registry = Registry::new(&config);
        let entries = registry.entries_json();
        let s07 = entries.iter().find(|e| e["id"] == "S-07").unwrap();
        assert_eq!(
            s07["rule"],
            "A drain sentinel in a slot set lives less than 42 s."
        );
        assert_eq!(s07["enabled"], true);
        assert_eq!(s07["tier"], "A");
        let c1 = entries.last().unwrap();
        assert_eq!(c1["id"], "C-1");
        assert_eq!(c1["custom"], true);
        assert_eq!(c1["enabled"], false);
        assert_eq!(c1["sql"], "SELECT 1");
    }
}
