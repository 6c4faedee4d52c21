//! `l03-orphan` → L-03 (delete cascades). Breaks *agent delete*: the roster row is hard-deleted,
//! its tags and sharing rows are not. Provisioning gives a freshly created site those rows. The
//! revert runs the missing cascade step (the rows purged), then re-creates the site agent with
//! its rows, ready for the next injection.

use canary_invariants::Severity;
use crate::fleet::platform_db::params;

use super::{Bench, Injected, Recipe, RecipeMeta, Step};
use crate::fleet::platform::FleetError;

/// An agent deleted without its child rows.
#[derive(Debug)]
pub struct L03Orphan;

/// The agent-keyed tables the site has rows in.
const CHILD_TABLES: [&str; 2] = ["agent_tags", "agent_sharing"];

static META: RecipeMeta = RecipeMeta {
    name: "l03-orphan",
    invariant: "L-03",
    signal: "orphan_rows",
    severity: Severity::Major,
    breaks: "agent delete: the roster row is hard-deleted, its tags and sharing rows are not",
    revert: "the missing cascade step purges the rows; the site agent is re-created",
    cofiring: "none (the site holds no slot and no schedule)",
    ..RecipeMeta::BASE
};

impl Recipe for L03Orphan {
    fn meta(&self) -> &'static RecipeMeta {
        &META
    }

    fn provision(&self, bench: &Bench, site: &str, fresh: bool) -> Result<(), FleetError> {
        // Only a fresh agent: re-provisioning must not duplicate its rows.
        if fresh {
            for tag in ["fault-site", "to-be-deleted"] {
                bench.platform.db().execute(
                    "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, ?2)",
                    params![site, tag],
                )?;
            }
            bench.platform.db().execute(
                "INSERT INTO agent_sharing (agent_name, shared_with_email) VALUES (?1, ?2)",
                params![site, "ops@example.com"],
            )?;
        }
        Ok(())
    }

    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected> {
        Box::pin(async move {
            bench.platform.delete_roster_row(site)?;
            Ok(Injected {
                what: format!(
                    "{site} deleted from the roster, its tags and sharing rows left behind"
                ),
                ids: Vec::new(),
            })
        })
    }

    fn revert<'a>(
        &'a self,
        bench: &'a mut Bench,
        site: &'a str,
        _ids: &'a [String],
    ) -> Step<'a, String> {
        Box::pin(async move {
            for table in CHILD_TABLES {
                bench.platform.db().execute(
                    &format!("DELETE FROM {table} WHERE agent_name = ?1"),
                    params![site],
                )?;
            }
            let fresh = bench.add_site(site, &META)?;
            self.provision(bench, site, fresh)?;
            Ok(format!("{site}: orphan rows purged, agent re-created"))
        })
    }
}
