//! `canary fleet`: drive synthetic load (and faults) against a platform's stores that the
//! operator names explicitly (`--sqlite-path` or `--database-url`, and `--redis-url` or a
//! cluster's seed nodes `--redis-cluster`: this command WRITES to them, so it never takes them
//! from a config file or the environment, and never prints the URL), or write a large dataset
//! for benchmarks (`--seed-only`).
//!
//! A run provisions the fleet's agents (and the sites of the requested faults), closes anything a
//! crashed earlier run of the same agents left open, runs the simulator for `--duration` (or until
//! Ctrl-C), injects the faults after `--fault-after`, and on the way out reverts them and drains
//! the fleet, so the platform is left consistent.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::platform::RedisKeys;
use crate::exit::ExitCode;
use crate::fleet::RunError;
use crate::fleet::faults::{self, Injector};
use crate::fleet::platform::RedisTarget;
use crate::fleet::platform_db::PlatformTarget;
use crate::fleet::seed::{self, SeedSpec};
use crate::fleet::sim::{self, Fleet, FleetSpec, QueueAccessor};
use crate::report as output;

/// What `canary fleet` does.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The platform database (written): a SQLite file or a PostgreSQL database.
    pub target: PlatformTarget,
    /// The platform's Redis (written): one node, or a cluster's seed nodes.
    pub redis: RedisTarget,
    /// Create the database and schema when absent.
    pub init: bool,
    /// The simulation.
    pub spec: FleetSpec,
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// `--faults` list, if any.
    pub faults: Option<String>,
    /// When the faults are injected.
    pub fault_after: Duration,
    /// Print the counters this often.
    pub report_every: Duration,
    /// `--seed-only`: write this dataset and exit.
    pub seed_only: Option<SeedSpec>,
    /// With `--seed-only`: drop the platform's history indexes (`--bare-indexes`).
    pub bare_indexes: bool,
}

/// Runs `canary fleet`.
pub async fn run(opts: FleetOptions, shutdown: CancellationToken) -> Result<ExitCode, RunError> {
    if let Some(spec) = &opts.seed_only {
        // `--seed-only` implies `--init`.
        sim::open_db(&opts.target, true).map_err(RunError::at("opening the platform database"))?;
        let report = seed::seed(&opts.target, &opts.redis, spec, true)
            .await
            .map_err(RunError::at("seeding the dataset"))?;
        if opts.bare_indexes {
            // After the seeding, which (re)creates the schema and so the indexes.
            sim::open_db(&opts.target, false)
                .and_then(|db| db.drop_history_indexes())
                .map_err(RunError::at("dropping the platform's history indexes"))?;
        }
        output::print(&report.to_string());
        return Ok(ExitCode::Green);
    }
    let recipes = match &opts.faults {
        Some(list) => faults::parse_list(list).map_err(RunError::Faults)?,
        None => Vec::new(),
    };
    // `canary fleet` writes to stores it is given, never to a Docker engine: the container
    // recipes run in `canary demo --docker` and the tests.
    let (recipes, no_engine) = faults::split_by_engine(recipes, false);
    for r in &no_engine {
        output::print(&format!(
            "skip {}: {} needs a Docker engine (canary demo --docker)",
            r.meta().name,
            r.meta().invariant
        ));
    }
    let started = Instant::now();
    let plans = sim::plan(&opts.spec);
    {
        let mut db = sim::open_db(&opts.target, opts.init)
            .map_err(RunError::at("opening the platform database"))?;
        sim::provision(&mut db, &opts.spec, &plans, crate::clock::now_ms())
            .map_err(RunError::at("provisioning the agents"))?;
        let mut redis = crate::fleet::platform::connect_redis(&opts.redis)
            .await
            .map_err(RunError::at("connecting to the platform's redis"))?;
        let closed = sim::recover(
            &db,
            &mut redis,
            &RedisKeys::default(),
            &plans,
            crate::clock::now_ms(),
        )
        .await
        .map_err(RunError::at("closing what an earlier run left open"))?;
        if closed > 0 {
            output::print(&format!(
                "closed {closed} execution(s) left open by an earlier run"
            ));
        }
    }
    let fleet = Fleet::start(&opts.target, &opts.redis, &opts.spec, plans)
        .await
        .map_err(RunError::at("starting the fleet"))?;
    // The platform's queued-count endpoint (B-01), served until the run ends.
    let accessor = QueueAccessor::start(&opts.target, fleet.control())
        .map_err(RunError::at("starting the queue accessor"))?;
    output::print(&format!(
        "queue accessor (B-01): platform.queue_count.url: {}",
        accessor.url_template()
    ));
    let mut injector = Injector::connect(
        &opts.target,
        &opts.redis,
        &opts.spec.prefix,
        Some(fleet.control()),
    )
    .await
    .map_err(RunError::at("connecting the fault injector"))?;
    injector
        .provision(&recipes)
        .map_err(RunError::at("provisioning the fault sites"))?;
    output::print(&format!(
        "fleet: {} agents, ~{:.0} executions/min, seed {}, writing to {} and the named redis{}{}",
        opts.spec.agents,
        opts.spec.rate_per_min,
        opts.spec.seed,
        opts.target.describe(),
        match &opts.redis {
            RedisTarget::Node(_) => String::new(),
            RedisTarget::Cluster(seeds) => format!(" cluster ({} seeds)", seeds.len()),
        },
        match opts.duration {
            Some(d) => format!(", for {}", humantime::format_duration(d)),
            None => ", until Ctrl-C".to_owned(),
        }
    ));

    let end = opts.duration.map(|d| started + d);
    let mut fault_at = (!recipes.is_empty()).then(|| started + opts.fault_after);
    let mut next_report = started + opts.report_every;
    loop {
        let mut wake = next_report;
        if let Some(at) = fault_at {
            wake = wake.min(at);
        }
        if let Some(at) = end {
            wake = wake.min(at);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        if fault_at.is_some_and(|at| now >= at) {
            fault_at = None;
            for r in &recipes {
                match injector.inject(*r).await {
                    Ok(what) => output::print(&format!(
                        "[{:>6.1}s] inject {} ({}): {what}",
                        started.elapsed().as_secs_f64(),
                        r.meta().name,
                        r.meta().invariant
                    )),
                    Err(e) => output::print(&format!("inject {} failed: {e}", r.meta().name)),
                }
            }
        }
        if now >= next_report {
            next_report += opts.report_every;
            output::print(&format!(
                "[{:>6.1}s] {}",
                started.elapsed().as_secs_f64(),
                fleet.stats()
            ));
        }
    }
    let reverted = injector
        .revert_all()
        .await
        .map_err(RunError::at("reverting the faults"))?;
    if !reverted.is_empty() {
        output::print(&format!("reverted: {}", reverted.join(", ")));
    }
    let stats = fleet
        .stop()
        .await
        .map_err(RunError::at("stopping the fleet"))?;
    output::print(&format!(
        "[{:>6.1}s] stopped (platform left consistent): {stats}",
        started.elapsed().as_secs_f64()
    ));
    Ok(if stats.errors == 0 {
        ExitCode::Green
    } else {
        ExitCode::Failure
    })
}
