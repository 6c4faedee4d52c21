//! `canary demo`: the whole story, continuously, on a machine with nothing but `redis-server`
//! (and PostgreSQL's server binaries for `--platform postgres`).
//!
//! With `--docker` the container story is added: a private Docker engine (or
//! `--docker-endpoint`'s) runs the agent containers of the recipes that need one (R-01's
//! zombie, B-08's and B-02's pull-mode pilots) and canary watches it through `platform.docker`.
//! Without it those recipes are skipped and listed as not configured, never as failures.
//!
//! A temp directory gets a platform database (a SQLite file, or a database on a private
//! PostgreSQL server), a private `redis-server` and a simulated fleet
//! churning through executions ([`crate::fleet::sim`]). The watcher runs on a short interval
//! through the daemon's own schedule loop and [`CycleRunner`]. Fault recipes
//! ([`crate::fleet::faults`]) are injected a few at a time on a timeline spread over
//! `--duration`, each reverted once detected; every fired and resolved alert is printed as Slack
//! would show it (and sent, when a webhook is configured). A summary table closes the run.
//!
//! Exit 0 only when every injected fault was detected, fired exactly once, resolved exactly once,
//! and nothing else fired (no false alarm from the churn around it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_invariants::{Outcome, Severity, Transition, TransitionKind, Violation, catalog};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::{Deliverer, slack};
use crate::config::{self, Config, Overrides};
use crate::cycle::CycleResult;
use crate::exit::ExitCode;
use crate::fleet::RunError;
use crate::fleet::docker_engine::{DockerClient, DockerEngine, DockerEngineError};
use crate::fleet::faults::{self, Recipe};
use crate::fleet::rig::{Backend, Rig, RigDocker};
use crate::fleet::sim::FleetSpec;
use crate::report as output;
use crate::schedule::runner::CycleRunner;
use crate::schedule::scheduler::{self, Schedule};
use crate::store::StateDb;
use crate::timing::Cadence;

/// What `canary demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Upper bound of the whole run.
    pub duration: Duration,
    /// `all` or a comma-separated list of recipes.
    pub faults: String,
    /// Simulated agents.
    pub agents: usize,
    /// Executions per minute across the fleet.
    pub rate: f64,
    /// Seed of the simulation.
    pub seed: u64,
    /// Watcher interval.
    pub interval: Duration,
    /// Faults injected together.
    pub group: usize,
    /// Keep the temp directory.
    pub keep: bool,
    /// Config file for the Slack webhook (`alerts.*` only; defaults → file → env).
    pub config: Option<PathBuf>,
    /// The platform database's engine.
    pub platform: Backend,
    /// The Docker engine of the container story.
    pub docker: DemoDocker,
}

/// `--docker` / `--docker-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DemoDocker {
    /// No engine: the recipes needing one are skipped.
    #[default]
    Off,
    /// A private `dockerd` in the demo's temp directory.
    Private,
    /// A running engine (`unix:///…`).
    Endpoint(String),
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            duration: Duration::from_secs(75),
            faults: "all".to_owned(),
            agents: 12,
            rate: 300.0,
            seed: 42,
            interval: Duration::from_secs(1),
            group: 3,
            keep: false,
            config: None,
            platform: Backend::Sqlite,
            docker: DemoDocker::Off,
        }
    }
}

/// One injected recipe's record.
#[derive(Debug)]
struct Track {
    recipe: &'static dyn Recipe,
    injected_at_ms: Option<i64>,
    reverted_at_ms: Option<i64>,
    /// Cycles (taken after the injection) until the invariant was first red.
    detected_after: Option<u32>,
    cycles_since_inject: u32,
    fired: u32,
    resolved: u32,
    error: Option<String>,
}

/// The printer: one line per event, prefixed with the seconds since the start.
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn line(&self, text: &str) {
        output::print(&format!(
            "[{:>6.1}s] {text}",
            self.start.elapsed().as_secs_f64()
        ));
    }
}

/// Runs the demo.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<ExitCode, RunError> {
    let tl = Timeline {
        start: Instant::now(),
    };
    let selected = faults::parse_list(&opts.faults).map_err(RunError::Faults)?;
    let (in_catalog, missing): (Vec<&'static dyn Recipe>, Vec<&'static dyn Recipe>) = selected
        .into_iter()
        .partition(|r| catalog::find(r.meta().invariant).is_some());
    for r in &missing {
        tl.line(&format!(
            "skip {}: invariant {} is not in this build's catalog",
            r.meta().name,
            r.meta().invariant
        ));
    }
    let (recipes, no_engine) = faults::split_by_engine(in_catalog, opts.docker != DemoDocker::Off);
    for r in &no_engine {
        tl.line(&format!(
            "skip {}: {} needs a Docker engine (run canary demo --docker)",
            r.meta().name,
            r.meta().invariant
        ));
    }

    let spec = FleetSpec {
        agents: opts.agents.max(1),
        rate_per_min: opts.rate,
        seed: opts.seed,
        ..FleetSpec::default()
    };
    let mut rig = match &opts.docker {
        DemoDocker::Off => Rig::start_on(opts.platform, &spec, &recipes).await,
        engine => {
            let docker = start_docker(engine, &tl).await?;
            Rig::start_with_docker(opts.platform, &spec, &recipes, docker).await
        }
    }
    .map_err(RunError::at("starting the synthetic platform"))?;
    let caps: Vec<i64> = crate::fleet::sim::plan(&spec)
        .iter()
        .map(|p| p.cap)
        .collect();
    tl.line(&format!(
        "platform up in {}{}: {} agents (caps {}–{}), ~{:.0} executions/min, seed {}, {} fault sites, redis {}{}",
        rig.dir().display(),
        match rig.postgres() {
            Some(pg) => format!(" (PostgreSQL on port {})", pg.port()),
            None => String::new(),
        },
        spec.agents,
        caps.iter().min().unwrap_or(&0),
        caps.iter().max().unwrap_or(&0),
        spec.rate_per_min,
        spec.seed,
        recipes.len(),
        rig.redis_url(),
        match rig.docker() {
            Some(d) => format!(
                ", docker {} ({} agent container(s), pilots: {})",
                d.endpoint(),
                recipes.iter().filter(|r| r.meta().needs_docker).count(),
                rig.platform_config().pull.pilot_agents.join(", ")
            ),
            None => String::new(),
        }
    ));

    let config = demo_config(&opts, &rig)?;
    let webhook = config.webhook_url()?;
    let stop = CancellationToken::new();
    let deliverer = match webhook {
        Some(url) => {
            let d = Deliverer::new(&config.state.path, Some(url), config.alerts.clone())?;
            tl.line("Slack webhook configured: alerts are sent as well as printed");
            let cancel = CancellationToken::new();
            Some((cancel.clone(), tokio::spawn(d.run(cancel))))
        }
        None => None,
    };
    let runner = CycleRunner::new(Arc::new(config.clone()), StateDb::open(&config.state.path)?);
    let (tx, mut rx) = mpsc::unbounded_channel::<CycleResult>();
    let schedule = Schedule {
        cadence: Cadence::Interval(opts.interval),
        startup_delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };
    let watcher = tokio::spawn(scheduler::run_schedule(
        runner,
        schedule,
        stop.clone(),
        move |result: &CycleResult| {
            let _ = tx.send(result.clone());
        },
    ));
    tl.line(&format!(
        "watcher: a cycle every {} through the daemon's schedule loop (H-01 confirms after {} s)",
        humantime::format_duration(opts.interval),
        config.invariants.h01.confirm_after_seconds
    ));

    let mut show = Show::new(&tl);
    let mut tracks: Vec<Track> = recipes
        .iter()
        .map(|r| Track {
            recipe: *r,
            injected_at_ms: None,
            reverted_at_ms: None,
            detected_after: None,
            cycles_since_inject: 0,
            fired: 0,
            resolved: 0,
            error: None,
        })
        .collect();
    let groups = groups_of(&recipes, opts.group.max(1));
    let deadline = tl.start + opts.duration;
    let warmup = opts.interval * 3;
    let cooldown = opts.interval * 3;
    let budget = opts
        .duration
        .saturating_sub(tl.start.elapsed() + warmup + cooldown);
    let slot = budget / u32::try_from(groups.len().max(1)).unwrap_or(1);

    let mut ctx = Ctx {
        rx: &mut rx,
        show: &mut show,
        tracks: &mut tracks,
        shutdown: &shutdown,
    };
    let interrupted = 'timeline: {
        if ctx.wait_cycles(3, deadline).await.is_err() {
            break 'timeline true;
        }
        for (n, group) in groups.iter().enumerate() {
            let group_end = Instant::now() + slot;
            if Instant::now() + opts.interval * 6 > deadline {
                ctx.show.tl.line(&format!(
                    "out of time: {} group(s) not run (raise --duration)",
                    groups.len() - n
                ));
                break;
            }
            // Inject right after a cycle: an injection is several writes to two stores (a
            // backdated row, then its slot), which a cycle must not catch half-way, just as the
            // platform's own writes are never caught half-way outside S-01's grace.
            if ctx.wait_cycles(1, deadline).await.is_err() {
                break 'timeline true;
            }
            for r in group {
                let what = rig.injector.inject(*r).await;
                // Counted from when the fault is fully in place: a container recipe's `docker
                // stop` or exec takes a moment, and a cycle whose snapshot raced it saw the
                // container half-way (unknown, never green) without that being a late detection.
                let at = crate::clock::now_ms();
                let track = ctx.track(r.meta().name);
                match what {
                    Ok(what) => {
                        track.injected_at_ms = Some(at);
                        ctx.show.tl.line(&format!(
                            "INJECT {:<22} → {}: {what}",
                            r.meta().name,
                            r.meta().invariant
                        ));
                    }
                    Err(e) => {
                        track.error = Some(e.to_string());
                        ctx.show
                            .tl
                            .line(&format!("INJECT {} failed: {e}", r.meta().name));
                    }
                }
            }
            let detect_by = group
                .iter()
                .map(|r| r.meta().cycles_to_detect)
                .max()
                .unwrap_or(1)
                + 3;
            if ctx
                .until(
                    deadline,
                    detect_by,
                    |t| t.injected_at_ms.is_none() || t.detected_after.is_some(),
                    group,
                )
                .await
                .is_err()
            {
                break 'timeline true;
            }
            for r in group {
                if !rig.injector.is_active(*r) {
                    continue;
                }
                let at = crate::clock::now_ms();
                match rig.injector.revert(*r).await {
                    Ok(what) => {
                        ctx.track(r.meta().name).reverted_at_ms = Some(at);
                        ctx.show
                            .tl
                            .line(&format!("REVERT {:<22} → {what}", r.meta().name));
                    }
                    Err(e) => {
                        ctx.track(r.meta().name).error = Some(e.to_string());
                        ctx.show
                            .tl
                            .line(&format!("REVERT {} failed: {e}", r.meta().name));
                    }
                }
            }
            if ctx
                .until(
                    deadline,
                    4,
                    |t| t.injected_at_ms.is_none() || t.resolved > 0,
                    group,
                )
                .await
                .is_err()
            {
                break 'timeline true;
            }
            // Quiet time: the fleet churns on, nothing may fire.
            let quiet_until = group_end.min(deadline);
            if ctx.until_instant(quiet_until).await.is_err() {
                break 'timeline true;
            }
        }
        ctx.wait_cycles(3, deadline + cooldown).await.is_err()
    };

    stop.cancel();
    let _ = watcher.await;
    while let Ok(result) = rx.try_recv() {
        show.cycle(&result, &mut tracks);
    }
    if let Some((cancel, task)) = deliverer {
        // The last resolved alerts were queued a moment ago: give the deliverer time to post
        // them (it paces itself to one message per `min_interval`).
        tokio::time::sleep(Duration::from_secs(3)).await;
        cancel.cancel();
        let _ = task.await;
    }
    let stats = rig
        .stop()
        .await
        .map_err(RunError::at("stopping the fleet"))?;
    tl.line(&format!("fleet stopped: {stats}"));

    let (text, ok) = summary(&tracks, &missing, &no_engine, &show);
    output::print(&text);
    if opts.keep {
        let kept = rig.keep();
        output::print(&format!("kept {}", kept.display()));
    }
    if interrupted {
        output::print("interrupted");
        return Ok(ExitCode::Failure);
    }
    Ok(if ok { ExitCode::Green } else { ExitCode::Red })
}

/// The demo's configuration: built-in defaults (the watched platform is the rig, the state
/// database lives beside it) with H-01's confirmation shortened to the interval, and only the
/// `alerts` section taken from the operator's config file and environment (the Slack webhook).
fn demo_config(opts: &DemoOptions, rig: &Rig) -> Result<Config, RunError> {
    let loaded = config::load(opts.config.as_deref(), &Overrides::default())?;
    let mut config = Config {
        alerts: loaded.alerts,
        platform: rig.platform_config(),
        ..Config::default()
    };
    config.state.path = rig.dir().join("state.db");
    config.schedule.interval = opts.interval;
    // H-01 must see its suspicion last one interval; with a 1 s interval, 1 s.
    config.invariants.h01.confirm_after_seconds =
        i64::try_from(opts.interval.as_secs().max(1)).unwrap_or(1);
    // R-01 fires on a zombie that persisted this long: one interval, as H-01's confirmation.
    config.invariants.r01.dwell_seconds = config.invariants.h01.confirm_after_seconds;
    Ok(config)
}

/// The engine of `--docker`: a private `dockerd` (started on a blocking thread: it takes a few
/// seconds), or `--docker-endpoint`'s, where the demo's busybox image is imported.
async fn start_docker(engine: &DemoDocker, tl: &Timeline) -> Result<RigDocker, RunError> {
    let blocking = |e: tokio::task::JoinError| RunError::Faults(format!("docker setup: {e}"));
    match engine {
        DemoDocker::Off | DemoDocker::Private => {
            tl.line("starting a private Docker engine (dockerd, --bridge=none) …");
            let engine = tokio::task::spawn_blocking(DockerEngine::start)
                .await
                .map_err(blocking)??;
            Ok(RigDocker::Private(engine))
        }
        DemoDocker::Endpoint(endpoint) => {
            tl.line(&format!("using the Docker engine at {endpoint}"));
            let client = DockerClient::for_endpoint(endpoint);
            let prepared = client.clone();
            tokio::task::spawn_blocking(move || {
                let root = tempfile::Builder::new()
                    .prefix("canary-demo-image-")
                    .tempdir()
                    .map_err(|source| DockerEngineError::Io {
                        what: "temp directory",
                        source,
                    })?;
                prepared.import_images(root.path())
            })
            .await
            .map_err(blocking)??;
            Ok(RigDocker::External(client))
        }
    }
}

/// Groups of up to `size` recipes; a recipe that runs alone gets a group of its own (H-01: while
/// it is injected the SQLite source is unavailable, so every SQLite invariant is unknown and
/// could not detect anything), and no group holds two recipes of one invariant (their faults
/// would share one alert: fired once for two injections).
fn groups_of(recipes: &[&'static dyn Recipe], size: usize) -> Vec<Vec<&'static dyn Recipe>> {
    let (alone, rest): (Vec<&'static dyn Recipe>, Vec<&'static dyn Recipe>) =
        recipes.iter().partition(|r| r.meta().runs_alone);
    let mut groups: Vec<Vec<&'static dyn Recipe>> = Vec::new();
    for r in rest {
        let fits = |g: &Vec<&'static dyn Recipe>| {
            g.len() < size && !g.iter().any(|o| o.meta().invariant == r.meta().invariant)
        };
        match groups.iter_mut().find(|g| fits(g)) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups.extend(alone.into_iter().map(|r| vec![r]));
    groups
}

/// The main loop's view: the cycle results, the printer and the tracks.
struct Ctx<'a, 'b> {
    rx: &'a mut mpsc::UnboundedReceiver<CycleResult>,
    show: &'a mut Show<'b>,
    tracks: &'a mut Vec<Track>,
    shutdown: &'a CancellationToken,
}

/// Ctrl-C.
struct Interrupted;

impl Ctx<'_, '_> {
    fn track(&mut self, name: &str) -> &mut Track {
        let i = self
            .tracks
            .iter()
            .position(|t| t.recipe.meta().name == name)
            .unwrap_or(0);
        &mut self.tracks[i]
    }

    /// The next cycle result, or `None` past `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<CycleResult>, Interrupted> {
        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            () = self.shutdown.cancelled() => Err(Interrupted),
            r = tokio::time::timeout(wait, self.rx.recv()) => Ok(r.ok().flatten()),
        }
    }

    async fn wait_cycles(&mut self, n: u32, deadline: Instant) -> Result<(), Interrupted> {
        for _ in 0..n {
            let Some(result) = self.next(deadline).await? else {
                return Ok(());
            };
            self.show.cycle(&result, self.tracks);
        }
        Ok(())
    }

    /// Consumes cycles until `done` holds for every track of `group`, at most `max` cycles.
    async fn until(
        &mut self,
        deadline: Instant,
        max: u32,
        done: impl Fn(&Track) -> bool,
        group: &[&'static dyn Recipe],
    ) -> Result<(), Interrupted> {
        for _ in 0..max {
            let all = self
                .tracks
                .iter()
                .filter(|t| group.iter().any(|r| r.meta().name == t.recipe.meta().name))
                .all(&done);
            if all {
                return Ok(());
            }
            let Some(result) = self.next(deadline).await? else {
                return Ok(());
            };
            self.show.cycle(&result, self.tracks);
        }
        Ok(())
    }

    async fn until_instant(&mut self, until: Instant) -> Result<(), Interrupted> {
        while Instant::now() < until {
            let Some(result) = self.next(until).await? else {
                return Ok(());
            };
            self.show.cycle(&result, self.tracks);
        }
        Ok(())
    }
}

/// Prints cycles and alerts, attributes transitions to faults, counts false alarms.
struct Show<'t> {
    tl: &'t Timeline,
    cycles: u32,
    last_red: BTreeSet<String>,
    fired_at: BTreeMap<String, i64>,
    /// Fired transitions no active fault explains: invariant → count.
    false_alarms: BTreeMap<String, u32>,
    unknown_cycles: u32,
    worst_ms: f64,
    /// Invariants the demo's configuration does not run (no Docker engine), with the reason.
    not_configured: BTreeMap<String, String>,
}

impl<'t> Show<'t> {
    fn new(tl: &'t Timeline) -> Show<'t> {
        Show {
            tl,
            cycles: 0,
            last_red: BTreeSet::new(),
            fired_at: BTreeMap::new(),
            false_alarms: BTreeMap::new(),
            unknown_cycles: 0,
            worst_ms: 0.0,
            not_configured: BTreeMap::new(),
        }
    }

    fn cycle(&mut self, r: &CycleResult, tracks: &mut [Track]) {
        self.cycles += 1;
        self.worst_ms = self.worst_ms.max(r.duration_ms);
        self.not_configured.clone_from(&r.not_configured);
        let taken_at_ms = chrono::DateTime::parse_from_rfc3339(&r.taken_at)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|_| crate::clock::now_ms());
        let red: BTreeSet<String> = r
            .outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Red)
            .map(|(id, _)| id.clone())
            .collect();
        let unknown = r
            .outcomes
            .values()
            .filter(|o| **o == Outcome::Unknown)
            .count();
        if unknown > 0 {
            self.unknown_cycles += 1;
        }
        for t in tracks.iter_mut() {
            let Some(injected) = t.injected_at_ms else {
                continue;
            };
            if t.reverted_at_ms.is_some() || taken_at_ms < injected {
                continue;
            }
            t.cycles_since_inject += 1;
            if t.detected_after.is_none() && red.contains(t.recipe.meta().invariant) {
                t.detected_after = Some(t.cycles_since_inject);
            }
        }
        if red != self.last_red
            || !r.transitions.is_empty()
            || self.cycles % 10 == 1
            || r.duration_ms > 500.0
        {
            let state = if red.is_empty() {
                "green".to_owned()
            } else {
                format!("RED {}", red.iter().cloned().collect::<Vec<_>>().join(" "))
            };
            let unknown_note = if unknown > 0 {
                format!(", {unknown} unknown")
            } else {
                String::new()
            };
            let docker_note = if r.diagnostics.collect.docker_calls > 0 {
                format!(", docker {:.0} ms", r.diagnostics.collect.docker_ms)
            } else {
                String::new()
            };
            self.tl.line(&format!(
                "cycle {:>3}: {state}{unknown_note} ({} violation(s), {:.0} ms: sql {:.0} ms, redis {:.0} ms{docker_note})",
                self.cycles,
                r.violation_count,
                r.duration_ms,
                r.diagnostics.collect.sqlite_ms,
                r.diagnostics.collect.redis_ms
            ));
        }
        self.last_red = red;
        let violations: Vec<Violation> = r.violations.iter().map(|v| v.violation.clone()).collect();
        for t in &r.transitions {
            let kind = if t.kind == "resolved" {
                TransitionKind::Resolved
            } else {
                TransitionKind::Fired
            };
            let severity: Severity =
                serde_json::from_value(serde_json::json!(t.severity)).unwrap_or(Severity::Major);
            let previous = match kind {
                TransitionKind::Resolved => self.fired_at.remove(&t.invariant_id),
                TransitionKind::Fired => {
                    self.fired_at.insert(t.invariant_id.clone(), taken_at_ms);
                    None
                }
            };
            let transition = Transition {
                invariant_id: t.invariant_id.clone(),
                kind,
                severity,
                at_ms: taken_at_ms,
                previous_at_ms: previous,
                reminder: t.reminder,
            };
            let total = r
                .violation_counts
                .get(&t.invariant_id)
                .map_or(0, |c| usize::try_from(c.total).unwrap_or(usize::MAX));
            let payload = slack::payload_counted(&transition, &violations, total, taken_at_ms);
            let explained = tracks.iter_mut().find(|tr| {
                tr.recipe.meta().invariant == t.invariant_id
                    && tr.injected_at_ms.is_some()
                    && match kind {
                        TransitionKind::Fired => tr.fired == 0,
                        TransitionKind::Resolved => tr.resolved == 0 && tr.fired > 0,
                    }
            });
            let label = match (&explained, kind) {
                (Some(tr), _) => format!("ALERT ({})", tr.recipe.meta().name),
                (None, TransitionKind::Fired) => "ALERT (FALSE ALARM)".to_owned(),
                (None, TransitionKind::Resolved) => "ALERT (unexpected)".to_owned(),
            };
            match explained {
                Some(tr) if kind == TransitionKind::Fired => tr.fired += 1,
                Some(tr) => tr.resolved += 1,
                None => {
                    *self.false_alarms.entry(t.invariant_id.clone()).or_default() += 1;
                }
            }
            self.tl.line(&label);
            output::print(&render_text(&payload));
        }
    }
}

/// A Slack payload as text: header, sections and context, one block per line group.
pub fn render_text(payload: &serde_json::Value) -> String {
    let mut out = String::new();
    let blocks = payload["blocks"].as_array().cloned().unwrap_or_default();
    for block in blocks {
        let text = match block["type"].as_str() {
            Some("header" | "section") => block["text"]["text"].as_str().map(str::to_owned),
            Some("context") => block["elements"].as_array().map(|els| {
                els.iter()
                    .filter_map(|e| e["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            _ => None,
        };
        for line in text.unwrap_or_default().lines() {
            let _ = writeln!(out, "           │ {line}");
        }
    }
    out
}

/// The closing table and the verdict.
fn summary(
    tracks: &[Track],
    missing: &[&'static dyn Recipe],
    no_engine: &[&'static dyn Recipe],
    show: &Show<'_>,
) -> (String, bool) {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<6} {:<22} {:>8} {:>8} {:>9} {:>5} {:>8} {:>12}",
        "inv", "fault", "injected", "detected", "cycles", "fired", "resolved", "false alarms"
    );
    let mut ok = true;
    for t in tracks {
        let injected = t.injected_at_ms.is_some();
        let detected = t.detected_after.is_some();
        let good = injected
            && detected
            && t.fired == 1
            && t.resolved == 1
            && t.error.is_none()
            && t.detected_after
                .is_some_and(|c| c <= t.recipe.meta().cycles_to_detect);
        ok &= good;
        let _ = writeln!(
            s,
            "{:<6} {:<22} {:>8} {:>8} {:>9} {:>5} {:>8} {:>12}{}",
            t.recipe.meta().invariant,
            t.recipe.meta().name,
            if injected { "yes" } else { "NO" },
            if detected { "yes" } else { "NO" },
            t.detected_after
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            t.fired,
            t.resolved,
            show.false_alarms
                .get(t.recipe.meta().invariant)
                .copied()
                .unwrap_or(0),
            t.error
                .as_ref()
                .map_or_else(String::new, |e| format!("  error: {e}"))
        );
    }
    for r in missing {
        let _ = writeln!(
            s,
            "{:<6} {:<22} {:>8}  (invariant not in this build's catalog)",
            r.meta().invariant,
            r.meta().name,
            "skipped"
        );
    }
    // Not failures: the demo needs only redis-server; the container story needs --docker.
    for r in no_engine {
        let _ = writeln!(
            s,
            "{:<6} {:<22} not configured (needs a Docker engine: canary demo --docker)",
            r.meta().invariant,
            r.meta().name
        );
    }
    for (id, reason) in &show.not_configured {
        if no_engine.iter().any(|r| r.meta().invariant == id) {
            continue;
        }
        let _ = writeln!(s, "{id:<6} {:<22} not configured ({reason})", "(no fault)");
    }
    let false_alarms: u32 = show.false_alarms.values().sum();
    for (id, n) in &show.false_alarms {
        if !tracks.iter().any(|t| t.recipe.meta().invariant == id) {
            let _ = writeln!(s, "{id:<6} {:<22} false alarms: {n}", "(no fault)");
        }
    }
    ok &= false_alarms == 0;
    let _ = writeln!(
        s,
        "\n{} cycles (slowest {:.0} ms, {} with an unknown outcome), {} fault(s) injected, {} false alarm(s).",
        show.cycles,
        show.worst_ms,
        show.unknown_cycles,
        tracks.iter().filter(|t| t.injected_at_ms.is_some()).count(),
        false_alarms
    );
    let _ = writeln!(
        s,
        "{}",
        if ok {
            "PASS: every injected fault was detected, fired once and resolved once; nothing else fired."
        } else {
            "FAIL: see the table above."
        }
    );
    (s, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two recipes of one invariant share one alert, so they never share a group; a recipe that
    /// runs alone gets its own, last; every recipe is in exactly one group.
    #[test]
    fn groups_keep_one_recipe_per_invariant_and_the_lone_ones_apart() {
        let all = faults::parse_list("all").unwrap_or_default();
        let groups = groups_of(&all, 3);
        let mut seen: Vec<&str> = Vec::new();
        for g in &groups {
            assert!(g.len() <= 3);
            let mut ids: Vec<&str> = g.iter().map(|r| r.meta().invariant).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(
                ids.len(),
                g.len(),
                "one invariant twice in a group: {ids:?}"
            );
            if g.iter().any(|r| r.meta().runs_alone) {
                assert_eq!(g.len(), 1);
            }
            seen.extend(g.iter().map(|r| r.meta().name));
        }
        seen.sort_unstable();
        let mut names: Vec<&str> = all.iter().map(|r| r.meta().name).collect();
        names.sort_unstable();
        assert_eq!(seen, names);
        let b02: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.iter().any(|r| r.meta().invariant == "B-02"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(b02.len(), 2, "b02-queued-idle and b02-pull-queued apart");
    }
}
