//! The catalog list: one line per invariant, each naming its file (module), its check, its
//! parameter struct, the field that holds those parameters in [`Params`] and its catalog id.
//!
//! Everything else derives from this list: [`CATALOG`] (what `evaluate` runs, what the CLI, the
//! API, `INVARIANTS.md`, the example configuration and the tests iterate), the [`Params`] struct
//! (configuration keys), and the per-id lookups. An invariant's file holds all the rest: its
//! metadata, parameters, their validation, its rule text, the check and its tests. Adding an
//! invariant that needs no new data is its file plus one line here.

use serde::{Deserialize, Serialize};

use crate::catalog::Invariant;
use crate::params::CommonParams;
use crate::violation::Severity;

/// Declares the modules, [`CATALOG`] and [`Params`] from one list.
macro_rules! catalog {
    ( $( $module:ident :: $check:ident ( $params:ident ) as $field:ident = $id:literal ),* $(,)? ) => {
        $( pub mod $module; )*

        $( pub use $module::{$check, $params}; )*

        /// Every invariant, in catalog order.
        pub static CATALOG: &[&dyn Invariant] = &[ $( &$module::$check ),* ];

        /// Every invariant's parameters, keyed by catalog id in configuration.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Params {
            $(
                #[doc = concat!("Parameters of ", $id, ".")]
                #[serde(rename = $id)]
                pub $field: $params,
            )*
        }

        impl Params {
            /// The shared part (`enabled`, `severity`) of an invariant's parameters.
            fn common(&self, id: &str) -> Option<&dyn CommonParams> {
                match id {
                    $( $id => Some(&self.$field), )*
                    _ => None,
                }
            }
        }

        /// The ids and module names as written in the list (tests check them against each
        /// check's own metadata and against the files on disk).
        #[cfg(test)]
        const LISTED: &[(&str, &str)] = &[ $( ($id, stringify!($module)) ),* ];
    };
}

catalog! {
    s01_slot_row_bijection::S01(S01Params) as s01 = "S-01",
    s02_no_overbooking::S02(S02Params) as s02 = "S-02",
    s03_slot_ttl_floor::S03(S03Params) as s03 = "S-03",
    s04_metadata_membership::S04(S04Params) as s04 = "S-04",
    s07_sentinel_lifetime::S07(S07Params) as s07 = "S-07",
    e01_terminal_state_closure::E01(E01Params) as e01 = "E-01",
    e02_no_phantom_reversal::E02(E02Params) as e02 = "E-02",
    e03_completed_rows_populated::E03(E03Params) as e03 = "E-03",
    e04_queued_rows_have_metadata::E04(E04Params) as e04 = "E-04",
    e05_dispatched_rows_have_session::E05(E05Params) as e05 = "E-05",
    e06_no_overdue_next_run::E06(E06Params) as e06 = "E-06",
    b01_queue_accessor_coherence::B01(B01Params) as b01 = "B-01",
    b02_queued_without_full_slots::B02(B02Params) as b02 = "B-02",
    b05_stale_queued_rows::B05(B05Params) as b05 = "B-05",
    b08_pull_workers_alive::B08(B08Params) as b08 = "B-08",
    g03_clock_sanity::G03(G03Params) as g03 = "G-03",
    g04_no_credentials_in_metadata::G04(G04Params) as g04 = "G-04",
    g05_platform_data_well_formed::G05(G05Params) as g05 = "G-05",
    l03_delete_cascades::L03(L03Params) as l03 = "L-03",
    h01_collector_not_blind::H01(H01Params) as h01 = "H-01",
    r01_no_persisting_zombies::R01(R01Params) as r01 = "R-01",
}

impl Params {
    /// Whether an invariant is enabled (unknown ids are not).
    pub fn enabled(&self, id: &str) -> bool {
        self.common(id).is_some_and(CommonParams::enabled)
    }

    /// The configured severity override for an invariant, if any.
    pub fn severity_override(&self, id: &str) -> Option<Severity> {
        self.common(id).and_then(CommonParams::severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Problems;

    #[test]
    fn every_listed_id_is_its_checks_own_id() {
        assert_eq!(LISTED.len(), CATALOG.len());
        for ((id, module), inv) in LISTED.iter().zip(CATALOG) {
            assert_eq!(*id, inv.meta().id, "catalog line of module {module}");
            let prefix = id.to_lowercase().replace('-', "");
            assert!(
                module.starts_with(&format!("{prefix}_")),
                "{id}: the file {module}.rs should be named after its id"
            );
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|i| i.meta().id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
    }

    /// A check file that is not in the list would not even be compiled: name it.
    #[test]
    fn every_check_file_is_in_the_list() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/checks");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            if module == "mod" {
                continue;
            }
            assert!(
                LISTED.iter().any(|(_, m)| *m == module),
                "src/checks/{name} has no line in the catalog list (checks/mod.rs)"
            );
        }
    }

    #[test]
    fn every_invariant_is_enabled_by_default_with_no_severity_override() {
        let params = Params::default();
        for inv in CATALOG {
            let id = inv.meta().id;
            assert!(params.enabled(id), "{id}");
            assert_eq!(params.severity_override(id), None, "{id}");
        }
        assert!(!params.enabled("X-99"));
    }

    #[test]
    fn defaults_validate_and_every_rule_renders() {
        let params = Params::default();
        for inv in CATALOG {
            let mut out = Vec::new();
            inv.validate(&params, &mut Problems::new(inv.meta().id, &mut out));
            assert!(out.is_empty(), "{}: {out:?}", inv.meta().id);
            let rule = inv.rule(&params);
            assert!(
                rule.ends_with('.') && rule.len() > 20,
                "{}: {rule}",
                inv.meta().id
            );
        }
    }

    /// The configuration section of every invariant is its id, and each has its own keys.
    #[test]
    fn params_serialize_under_catalog_ids() {
        let value = serde_json::to_value(Params::default()).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), CATALOG.len());
        for inv in CATALOG {
            let id = inv.meta().id;
            let section = &object[id];
            assert_eq!(section["enabled"], true, "{id}");
            assert!(section["severity"].is_null(), "{id}");
        }
    }
}
