//! Fault recipes: at least one per invariant of the catalog, each breaking exactly one step of the
//! platform protocol (see [`crate::fleet::sim`]), each with a revert that returns the platform to
//! a state that stays healthy. Used by `canary fleet --faults`, `canary demo` and the end-to-end
//! detection suite.
//!
//! This module owns the [`Recipe`] trait, the one registry ([`RECIPES`], one line per recipe),
//! name lookup and list parsing, and the [`Injector`] that remembers what each injection wrote.
//! Each recipe lives in its own file beside this one (its `//!` says which protocol step it
//! breaks and how the revert restores it); the protocol steps several recipes share live in
//! [`bench`]. Nothing here knows a recipe by name: adding one = its file + one registry line.
//!
//! Every recipe works on its own *site*: a dedicated, otherwise idle agent (`{prefix}fault-…`)
//! provisioned beside the simulated fleet, so a fault never disturbs the simulator's bookkeeping
//! and the simulator never disturbs the fault (a leaked slot on a busy agent would also change
//! what the dispatcher does next). Timestamps are back-dated where a threshold would otherwise
//! take minutes or hours (a stuck row "started 7 minutes ago"); nothing waits for the clock.
//!
//! Recipes that need a Docker engine (`RecipeMeta::needs_docker`: the Docker invariants and
//! B-02's pull arm) run their site's agent container on the rig's engine; without one they are
//! skipped and listed as not configured ([`split_by_engine`]), never run half-way.
//!
//! Reverts leave the site idle (its executions finished through the normal protocol), so a fleet
//! that keeps running after a revert does not age a leftover into another invariant.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use canary_invariants::Severity;

use crate::fleet::docker_engine::DockerClient;
use crate::fleet::platform::{FleetError, Platform};
use crate::fleet::platform_db::PlatformTarget;
use crate::fleet::sim::Control;

mod bench;

pub use bench::{Bench, PILOT_WORKERS, container_of};

/// Static description of a recipe.
#[derive(Debug)]
pub struct RecipeMeta {
    /// `--faults` name.
    pub name: &'static str,
    /// The invariant it turns red (a catalog id).
    pub invariant: &'static str,
    /// The signal of the violation it causes.
    pub signal: &'static str,
    /// The severity of that violation (the catalog's default, or the invariant's split for
    /// this signal).
    pub severity: Severity,
    /// The protocol step it breaks.
    pub breaks: &'static str,
    /// What its revert does.
    pub revert: &'static str,
    /// Other invariants that can react, and when (`none` for most).
    pub cofiring: &'static str,
    /// Cycles after the injection by which the invariant must be red: 1, except H-01. Its
    /// first suspicious cycle only starts the suspicion, which is confirmed once it has lasted
    /// `confirm_after_seconds` (set to one interval): on the 2nd cycle, or on the 3rd when the
    /// 2nd runs a few ms short of a full interval after the 1st (timer jitter).
    pub cycles_to_detect: u32,
    /// What it touches beyond its own site while injected (`None`: only its site). Such a
    /// recipe is named in `canary fleet --help`.
    pub platform_wide: Option<&'static str>,
    /// Must be injected alone: while injected it blinds a source, so no other fault injected
    /// beside it could be detected (the demo gives it a group of its own).
    pub runs_alone: bool,
    /// The site agent's `max_parallel_tasks`.
    pub site_cap: i64,
    /// The site agent's `execution_timeout_seconds`.
    pub site_timeout: i64,
    /// Needs a Docker engine (the site runs an agent container): without one the recipe is
    /// skipped and listed as not configured, never run half-way.
    pub needs_docker: bool,
    /// The site is a pull-mode pilot (`platform.pull.pilot_agents`): its container runs with
    /// `TRINITY_PULL_MODE=1` and the rig's pull workers stamp its poll key.
    pub pilot: bool,
    /// The site's short name (`fault-{site}`); empty: the recipe name up to its first `-`.
    pub site: &'static str,
}

impl RecipeMeta {
    /// The common values; a recipe's static overrides what it needs with `..RecipeMeta::BASE`.
    pub const BASE: RecipeMeta = RecipeMeta {
        name: "",
        invariant: "",
        signal: "",
        severity: Severity::Critical,
        breaks: "",
        revert: "",
        cofiring: "none",
        cycles_to_detect: 1,
        platform_wide: None,
        runs_alone: false,
        site_cap: 2,
        site_timeout: 900,
        needs_docker: false,
        pilot: false,
        site: "",
    };
}

/// What an injection wrote: one line for the operator and the ids its revert needs.
#[derive(Debug, Default)]
pub struct Injected {
    /// One line saying what was broken.
    pub what: String,
    /// The rows, slots or keys the injection created or changed.
    pub ids: Vec<String>,
}

/// A boxed, sendable step on the stores (the registry holds trait objects, and an `async fn` in
/// a trait cannot be called through one).
pub type Step<'a, T> = Pin<Box<dyn Future<Output = Result<T, FleetError>> + Send + 'a>>;

/// One fault recipe: breaks one protocol step on its site, and reverts it.
pub trait Recipe: Sync + Send + std::fmt::Debug {
    /// Static description.
    fn meta(&self) -> &'static RecipeMeta;

    /// Extra healthy state the site needs before the first cycle (run on every provisioning,
    /// idempotent; `fresh` = the site agent was just created). Most recipes need none.
    fn provision(&self, _bench: &Bench, _site: &str, _fresh: bool) -> Result<(), FleetError> {
        Ok(())
    }

    /// Breaks the step on `site`.
    fn inject<'a>(&'a self, bench: &'a mut Bench, site: &'a str) -> Step<'a, Injected>;

    /// Repairs what [`Recipe::inject`] wrote (`ids` as it returned them); one line saying what.
    fn revert<'a>(
        &'a self,
        bench: &'a mut Bench,
        site: &'a str,
        ids: &'a [String],
    ) -> Step<'a, String>;
}

/// Declares each recipe's module and lists it in [`RECIPES`], from one line per recipe.
macro_rules! registry {
    ( $( $module:ident :: $recipe:ident ),* $(,)? ) => {
        $( mod $module; )*

        /// Every recipe, at least one per catalog invariant, in catalog order (those needing a
        /// Docker engine last).
        pub static RECIPES: &[&dyn Recipe] = &[ $( &$module::$recipe ),* ];

        /// The module names of the list (a test checks them against the files on disk).
        #[cfg(test)]
        const MODULES: &[&str] = &[ $( stringify!($module) ),* ];
    };
}

registry! {
    s01_leak::S01Leak,
    s02_overbook::S02Overbook,
    s03_short_ttl::S03ShortTtl,
    s04_orphan_meta::S04OrphanMeta,
    s07_stuck_sentinel::S07StuckSentinel,
    e01_stuck_running::E01StuckRunning,
    e02_reversal::E02Reversal,
    e03_no_completed_at::E03NoCompletedAt,
    e04_bad_metadata::E04BadMetadata,
    e05_no_session::E05NoSession,
    e06_overdue_schedule::E06OverdueSchedule,
    b01_accessor_drift::B01AccessorDrift,
    b02_queued_idle::B02QueuedIdle,
    b05_stale_queued::B05StaleQueued,
    g03_clock_skew::G03ClockSkew,
    g04_leaked_secret::G04LeakedSecret,
    g05_malformed_slot::G05MalformedSlot,
    h01_blind::H01Blind,
    l03_orphan::L03Orphan,
    // Recipes that need a Docker engine (`canary demo --docker`, tests/docker.rs).
    r01_zombie::R01Zombie,
    b08_workers_missing::B08WorkersMissing,
    b02_pull_queued::B02PullQueued,
}

/// The recipe called `name`.
pub fn find(name: &str) -> Option<&'static dyn Recipe> {
    RECIPES.iter().copied().find(|r| r.meta().name == name)
}

/// The recipes turning `invariant` red.
pub fn for_invariant(invariant: &str) -> impl Iterator<Item = &'static dyn Recipe> {
    RECIPES
        .iter()
        .copied()
        .filter(move |r| r.meta().invariant == invariant)
}

/// Every recipe name, comma-separated (for help texts and errors).
pub fn names() -> String {
    RECIPES
        .iter()
        .map(|r| r.meta().name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The long help of `--faults`, built from the registry so it can never list a stale name.
pub fn help() -> String {
    let wide: Vec<String> = RECIPES
        .iter()
        .filter_map(|r| {
            r.meta()
                .platform_wide
                .map(|what| format!("{} ({what})", r.meta().name))
        })
        .collect();
    let mut help = format!(
        "Fault recipes to inject (`all` or a comma-separated list), reverted on exit: {}. Each \
         works on its own idle site agent",
        names()
    );
    if wide.is_empty() {
        help.push('.');
    } else {
        help.push_str(&format!(
            ", except {}, which touch the whole platform while injected.",
            wide.join(" and ")
        ));
    }
    help
}

/// `all` or a comma-separated list of recipe names; unknown names are named in the error.
pub fn parse_list(list: &str) -> Result<Vec<&'static dyn Recipe>, String> {
    if list.trim() == "all" {
        return Ok(RECIPES.to_vec());
    }
    let mut out: Vec<&'static dyn Recipe> = Vec::new();
    let mut unknown = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match find(name) {
            Some(r) if !out.iter().any(|o| o.meta().name == r.meta().name) => out.push(r),
            Some(_) => {}
            None => unknown.push(name.to_owned()),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unknown fault(s): {} (known: {})",
            unknown.join(", "),
            names()
        ))
    }
}

/// A recipe's site agent.
pub fn site_of(prefix: &str, recipe: &dyn Recipe) -> String {
    let meta = recipe.meta();
    let short = if meta.site.is_empty() {
        meta.name.split('-').next().unwrap_or(meta.name)
    } else {
        meta.site
    };
    format!("{prefix}fault-{short}")
}

/// The pull-mode pilots among the sites of `recipes` (`platform.pull.pilot_agents`).
pub fn pilots(prefix: &str, recipes: &[&'static dyn Recipe]) -> Vec<String> {
    recipes
        .iter()
        .filter(|r| r.meta().pilot)
        .map(|r| site_of(prefix, *r))
        .collect()
}

/// `recipes` split into those that can run (`docker`: an engine is there) and those that need
/// an engine that is not (skipped, listed as not configured).
pub fn split_by_engine(
    recipes: Vec<&'static dyn Recipe>,
    docker: bool,
) -> (Vec<&'static dyn Recipe>, Vec<&'static dyn Recipe>) {
    recipes
        .into_iter()
        .partition(|r| docker || !r.meta().needs_docker)
}

/// Injects and reverts recipes on a platform's stores, remembering what each injection wrote.
pub struct Injector {
    bench: Bench,
    active: BTreeMap<&'static str, Vec<String>>,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("prefix", &self.bench.prefix())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Injector {
    /// Connects to the stores (a SQLite path or a [`PlatformTarget`]). `control` is the running
    /// simulator's (B-02 stops its sweep).
    pub async fn connect(
        target: impl Into<PlatformTarget>,
        redis: impl Into<crate::fleet::platform::RedisTarget>,
        prefix: &str,
        control: Option<Arc<Control>>,
    ) -> Result<Injector, FleetError> {
        let platform = Platform::connect(target, redis).await?;
        Ok(Injector {
            bench: Bench::new(platform, prefix, control),
            active: BTreeMap::new(),
        })
    }

    /// The site agent of `recipe`.
    pub fn site(&self, recipe: &dyn Recipe) -> String {
        site_of(self.bench.prefix(), recipe)
    }

    /// Whether `recipe` is injected now.
    pub fn is_active(&self, recipe: &dyn Recipe) -> bool {
        self.active.contains_key(recipe.meta().name)
    }

    /// Gives the recipes a Docker engine (the fleet's agent containers run there).
    pub fn with_docker(mut self, docker: DockerClient) -> Injector {
        self.bench.docker = Some(docker);
        self
    }

    /// Creates every site, healthy and idle (idempotent), with its agent container when the
    /// recipe needs one. Must run before the first cycle: the E-02 recipe reverses a row that a
    /// cycle has to have seen terminal. A recipe that needs Docker without an engine is an
    /// error (callers skip those first: [`split_by_engine`]).
    pub fn provision(&self, recipes: &[&'static dyn Recipe]) -> Result<(), FleetError> {
        for r in recipes {
            let site = self.site(*r);
            let meta = r.meta();
            if meta.needs_docker {
                self.bench.agent_container(&site, meta.pilot)?;
            }
            let fresh = self.bench.add_site(&site, meta)?;
            r.provision(&self.bench, &site, fresh)?;
        }
        Ok(())
    }

    /// Injects `recipe`; returns one line saying what was broken. Injecting an active recipe
    /// is an error (its revert would lose track of the first injection).
    ///
    /// An injection is a few writes to both stores (a back-dated running row, then its slot):
    /// run it between two cycles. A cycle landing half-way can see a half-written fault (that
    /// row without its slot yet, an S-01 finding), unlike the platform's own writes, whose
    /// fresh timestamps S-01's grace covers.
    pub async fn inject(&mut self, recipe: &'static dyn Recipe) -> Result<String, FleetError> {
        let meta = recipe.meta();
        if self.is_active(recipe) {
            return Err(FleetError::Setup(format!(
                "{} is already injected",
                meta.name
            )));
        }
        let site = self.site(recipe);
        self.ensure_redis().await?;
        let injected = recipe.inject(&mut self.bench, &site).await?;
        tracing::info!(
            fault.name = meta.name,
            invariant.id = meta.invariant,
            "fault injected"
        );
        self.active.insert(meta.name, injected.ids);
        Ok(injected.what)
    }

    /// Makes sure the Redis connection is up before a fault's writes start, so a Redis that
    /// restarted since the last command does not fail a fault half-way: the reconnecting
    /// connection (`platform::RedisConn`) fails the first command after an outage and
    /// reconnects, so a `PING` absorbs that (up to 5 tries, 200 ms apart).
    async fn ensure_redis(&mut self) -> Result<(), FleetError> {
        let mut last = None;
        for _ in 0..5 {
            match redis::cmd("PING")
                .query_async::<()>(self.bench.platform.redis())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Err(last.map_or_else(
            || FleetError::Setup("redis unreachable".to_owned()),
            FleetError::Redis,
        ))
    }

    /// Reverts an injected `recipe`; returns one line saying what was repaired.
    pub async fn revert(&mut self, recipe: &'static dyn Recipe) -> Result<String, FleetError> {
        let meta = recipe.meta();
        let Some(ids) = self.active.remove(meta.name) else {
            return Err(FleetError::Setup(format!("{} is not injected", meta.name)));
        };
        let site = self.site(recipe);
        // Kept injected if Redis is unreachable now: the error says so, nothing is half-done.
        if let Err(e) = self.ensure_redis().await {
            self.active.insert(meta.name, ids);
            return Err(e);
        }
        let what = recipe.revert(&mut self.bench, &site, &ids).await?;
        tracing::info!(
            fault.name = meta.name,
            invariant.id = meta.invariant,
            "fault reverted"
        );
        Ok(what)
    }

    /// Reverts everything still injected (stopping a fleet run); returns what was reverted.
    pub async fn revert_all(&mut self) -> Result<Vec<&'static str>, FleetError> {
        let names: Vec<&'static str> = self.active.keys().copied().collect();
        for name in &names {
            if let Some(recipe) = find(name) {
                self.revert(recipe).await?;
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    /// A recipe file without its registry line would not even be compiled: name it.
    #[test]
    fn every_recipe_file_is_in_the_registry() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fleet/faults");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            if module == "mod" || module == "bench" {
                continue;
            }
            assert!(
                super::MODULES.contains(&module),
                "src/fleet/faults/{name} has no line in the recipe registry (faults/mod.rs)"
            );
        }
    }

    use super::*;

    #[test]
    fn recipes_have_distinct_names_and_sites() {
        let mut names: Vec<&str> = RECIPES.iter().map(|r| r.meta().name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RECIPES.len());
        let mut sites: Vec<String> = RECIPES.iter().map(|r| site_of("x-", *r)).collect();
        sites.sort();
        sites.dedup();
        assert_eq!(sites.len(), RECIPES.len());
    }

    #[test]
    fn every_catalog_invariant_has_a_recipe() {
        // Docker invariants' recipes need an engine: tests/docker.rs runs them on a private one.
        for id in canary_invariants::catalog::ids() {
            assert!(
                for_invariant(id).next().is_some(),
                "invariant {id} has no fault recipe"
            );
        }
    }

    #[test]
    fn recipes_of_docker_invariants_need_docker_and_pilots_too() {
        for r in RECIPES {
            let m = r.meta();
            let docker_only = canary_invariants::catalog::needs_source(
                m.invariant,
                canary_invariants::Source::Docker,
            );
            assert!(
                !docker_only || m.needs_docker,
                "{} breaks a Docker invariant without needing Docker",
                m.name
            );
            assert!(
                !m.pilot || m.needs_docker,
                "{}: a pilot runs a container",
                m.name
            );
        }
        let (usable, skipped) = split_by_engine(RECIPES.to_vec(), false);
        assert!(usable.iter().all(|r| !r.meta().needs_docker));
        assert!(skipped.iter().any(|r| r.meta().name == "r01-zombie"));
        assert_eq!(
            split_by_engine(RECIPES.to_vec(), true).0.len(),
            RECIPES.len()
        );
        assert_eq!(
            pilots("x-", RECIPES),
            ["x-fault-b08", "x-fault-b02pull"],
            "pilot sites"
        );
    }

    #[test]
    fn every_recipe_targets_a_catalog_invariant() {
        for r in RECIPES {
            let m = r.meta();
            assert!(
                canary_invariants::catalog::find(m.invariant).is_some(),
                "recipe {} names {}, which is not in the catalog",
                m.name,
                m.invariant
            );
        }
    }

    #[test]
    fn recipes_are_described() {
        for r in RECIPES {
            let m = r.meta();
            assert!(
                !m.signal.is_empty()
                    && !m.breaks.is_empty()
                    && !m.revert.is_empty()
                    && !m.cofiring.is_empty(),
                "recipe {} must name its signal, say what it breaks, how it reverts and what \
                 co-fires",
                m.name
            );
            assert!(m.cycles_to_detect >= 1, "recipe {}", m.name);
        }
    }

    #[test]
    fn lists_parse_and_unknown_names_are_named() {
        assert_eq!(parse_list("all").map(|v| v.len()), Ok(RECIPES.len()));
        let two = parse_list("s01-leak, l03-orphan,s01-leak").unwrap_or_default();
        assert_eq!(
            two.iter().map(|r| r.meta().name).collect::<Vec<_>>(),
            ["s01-leak", "l03-orphan"]
        );
        let err = parse_list("s01-leak,nope").err().unwrap_or_default();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_help_lists_every_recipe_and_the_platform_wide_ones() {
        let help = help();
        for r in RECIPES {
            assert!(
                help.contains(r.meta().name),
                "{} missing: {help}",
                r.meta().name
            );
        }
        assert!(
            help.contains("h01-blind (renames the roster table)"),
            "{help}"
        );
        assert!(
            help.contains("b02-queued-idle (back-dates the drain heartbeat key)"),
            "{help}"
        );
    }
}
