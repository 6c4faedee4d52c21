//! Subcommands and their output formats. Each subcommand returns an [`ExitCode`] (mapped in
//! `crate::exit`, the one place); `main.rs` only parses, sets up logging and calls [`run`].
//! With `main.rs`, this is the only module that uses `anyhow`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Overrides};
use crate::cycle::{self, CycleRequest, CycleResult, Trigger};
use crate::exit::{ConfigFailure, ExitCode};
use crate::registry::Registry;
use crate::store::{SharedDb, StateDb, ViolationQuery};

pub mod output;

/// canary: continuously proves that an agent platform's Redis and SQLite state agree.
#[derive(Debug, Parser)]
#[command(name = "canary", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: scheduled cycles, alert delivery, admin API. Stops on SIGTERM/SIGINT.
    Run(RunArgs),
    /// Run one cycle now. Exit 0 green, 1 red, 2 unknown / source unavailable, 78 config error.
    Check(CheckArgs),
    /// Self-contained, continuous demo: temp platform DB, private redis-server, a churning
    /// simulated fleet watched every second, one fault per invariant injected and reverted on a
    /// timeline. Exit 0 only when every fault was caught and nothing else fired.
    Demo(DemoArgs),
    /// Drive synthetic load (and faults) against the platform stores named by --sqlite-path (or
    /// --database-url) and --redis-url (it WRITES to them), or write a benchmark dataset with
    /// --seed-only.
    Fleet(FleetArgs),
    /// Violations recorded in the state database, newest first.
    Violations(ViolationsArgs),
    /// The invariant catalog.
    Invariants(InvariantsArgs),
    /// Validate, show (secrets redacted) or print an example configuration.
    Config(ConfigArgs),
    /// Alerting tools: `alert test` posts a test message to the configured Slack webhook.
    Alert(AlertArgs),
    /// Silences: transitions they cover are recorded but not sent (`add`, `list`, `expire`).
    Silence(SilenceArgs),
}

/// `canary silence`.
#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SilenceAction,
}

/// `canary silence` actions.
#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Create a silence, e.g. `--invariant S-01 --subject 'fleet-*' --for 2h --comment "…"`.
    Add(SilenceAddArgs),
    /// The silences not over yet (`--all`: every one).
    List(SilenceListArgs),
    /// End a silence now.
    Expire(SilenceExpireArgs),
}

/// `canary silence add`.
#[derive(Debug, Args)]
pub struct SilenceAddArgs {
    /// Configuration (for `state.path` and the known invariant ids).
    #[command(flatten)]
    pub source: ConfigSource,
    /// An invariant id to silence, or `source:<name>` for a blind source (repeatable).
    #[arg(long = "invariant", value_name = "ID", required = true)]
    pub invariants: Vec<String>,
    /// Only transitions whose every subject matches this glob (`*`, `?`).
    #[arg(long, value_name = "GLOB")]
    pub subject: Option<String>,
    /// How long, from the start (e.g. `2h`); or give `--end`.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Start (RFC 3339); default now.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub start: Option<i64>,
    /// End (RFC 3339); or give `--for`.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub end: Option<i64>,
    /// Who (default: the OS user).
    #[arg(long)]
    pub author: Option<String>,
    /// Why.
    #[arg(long, required = true)]
    pub comment: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `canary silence list`.
#[derive(Debug, Args)]
pub struct SilenceListArgs {
    /// Configuration (for `state.path`).
    #[command(flatten)]
    pub source: ConfigSource,
    /// Include the silences that are over.
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `canary silence expire`.
#[derive(Debug, Args)]
pub struct SilenceExpireArgs {
    /// Configuration (for `state.path`).
    #[command(flatten)]
    pub source: ConfigSource,
    /// The silence id (`canary silence list`).
    pub id: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `canary alert`.
#[derive(Debug, Args)]
pub struct AlertArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AlertAction,
}

/// `canary alert` actions.
#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// Post a test message to the webhook. Exit 0 delivered, 3 failed, 78 no webhook configured.
    Test(ConfigSource),
}

/// Where the configuration comes from (shared by subcommands that read it).
#[derive(Debug, Clone, Args)]
pub struct ConfigSource {
    /// YAML config file (default: `$CANARY_CONFIG`, else built-in defaults).
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Override `platform.sqlite_path` (and clear any configured `platform.database_url`).
    #[arg(long, global = true)]
    pub sqlite_path: Option<PathBuf>,
    /// Override `platform.database_url`: watch a PostgreSQL platform (and clear any configured
    /// `platform.sqlite_path`). The URL may hold a password, which any local user can read off
    /// the process list: prefer `platform.database_url_file` or `CANARY__PLATFORM__DATABASE_URL`.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Override `platform.redis_url`.
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// Override `state.path`.
    #[arg(long, global = true)]
    pub state_path: Option<PathBuf>,
}

impl ConfigSource {
    /// Loads and validates the configuration (defaults → file → env → these flags), then runs
    /// the custom-SQL preflight against the platform database (I/O, so not part of validation).
    pub fn load(&self) -> Result<Config, ConfigFailure> {
        let config = self.load_unvalidated()?;
        let mut problems = config::validate(&config);
        problems.extend(crate::collect::preflight(&config));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigFailure(
                problems.iter().map(ToString::to_string).collect(),
            ))
        }
    }

    /// Loads the configuration without validating it.
    pub fn load_unvalidated(&self) -> Result<Config, ConfigFailure> {
        let mut overrides = Overrides::default();
        // A flag names the one database to watch: the other kind configured elsewhere is
        // cleared rather than reported as "both set".
        if let Some(p) = &self.sqlite_path {
            overrides.set("platform.sqlite_path", p.display().to_string());
            overrides.set("platform.database_url", String::new());
            overrides.set("platform.database_url_file", String::new());
        }
        if let Some(url) = &self.database_url {
            overrides.set("platform.database_url", url.clone());
            overrides.set("platform.database_url_file", String::new());
            overrides.set("platform.sqlite_path", String::new());
        }
        if let Some(u) = &self.redis_url {
            overrides.set("platform.redis_url", u.clone());
        }
        if let Some(p) = &self.state_path {
            overrides.set("state.path", p.display().to_string());
        }
        config::load(self.config.as_deref(), &overrides)
            .map_err(|e| ConfigFailure(vec![format!("{e:#}")]))
    }
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
}

/// `canary check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration.
    #[command(flatten)]
    pub source: ConfigSource,
    /// Only these invariants (repeatable).
    #[arg(long = "invariant", value_name = "ID")]
    pub invariants: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Do not write to the state database (memory and states are still read when it exists).
    #[arg(long)]
    pub no_persist: bool,
}

/// `canary run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration.
    #[command(flatten)]
    pub source: ConfigSource,
}

/// `canary demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Upper bound of the run (e.g. `75s`, `3m`): the fault timeline is spread over it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "75s")]
    pub duration: std::time::Duration,
    /// Fault recipes to inject: `all` or a comma-separated list (see `canary fleet --help`).
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub faults: String,
    /// Agents in the synthetic fleet.
    #[arg(long, default_value_t = 12)]
    pub agents: usize,
    /// Executions per minute across the fleet.
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Watcher interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub interval: std::time::Duration,
    /// Faults injected together.
    #[arg(long, default_value_t = 3)]
    pub group: usize,
    /// Config file read for the Slack webhook only (`alerts.*`; env `CANARY__ALERTS__…` too).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Keep the temp directory (platform DB, state DB) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// The platform database's engine: a SQLite file, or a private PostgreSQL server (needs
    /// PostgreSQL's server binaries: `apt-get install postgresql`).
    #[arg(long, value_enum, default_value_t = DemoPlatform::Sqlite)]
    pub platform: DemoPlatform,
    /// Add the container story (R-01 zombies, B-08 pull workers, B-02's pull arm): starts a
    /// private Docker engine (needs root, `dockerd` and `busybox`: `apt-get install docker.io
    /// busybox-static`). Without it those recipes are skipped and listed as not configured.
    #[arg(long)]
    pub docker: bool,
    /// With --docker: use this running engine (`unix:///path/to/docker.sock`) instead of a
    /// private one. The demo imports its own busybox image there, runs its containers with
    /// `--network none`, and removes them when it ends.
    #[arg(long, value_name = "ENDPOINT", requires = "docker")]
    pub docker_endpoint: Option<String>,
}

/// `canary demo --platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoPlatform {
    /// A SQLite file in the demo's temp directory.
    Sqlite,
    /// A private PostgreSQL server (initdb + postgres in the demo's temp directory).
    Postgres,
}

/// `canary fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The platform's SQLite file. This or --database-url is required, never taken from config
    /// or env: this WRITES.
    #[arg(
        long,
        required_unless_present = "database_url",
        conflicts_with = "database_url"
    )]
    pub sqlite_path: Option<PathBuf>,
    /// The platform's PostgreSQL database (`postgres://user@host:port/db`; never printed). This
    /// or --sqlite-path is required, never taken from config or env: this WRITES. The writer
    /// connects without TLS (`sslmode` disable or prefer): point it at a test platform.
    #[arg(long, value_name = "URL", hide_default_value = true)]
    pub database_url: Option<String>,
    /// The platform's Redis. This or --redis-cluster is required, never taken from config or
    /// env: this WRITES.
    #[arg(
        long,
        required_unless_present = "redis_cluster",
        conflicts_with = "redis_cluster"
    )]
    pub redis_url: Option<String>,
    /// The platform's Redis Cluster: seed nodes, comma-separated `host:port` (as in
    /// `platform.redis_cluster.nodes`) or `redis://` URLs. The fleet writes through the
    /// cluster's slot routing; seeding sends one pipeline per owning node.
    #[arg(long, value_name = "NODES", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// Create the platform schema when absent (and the SQLite file; on PostgreSQL the database
    /// must exist: the schema comes from tests/fixtures/platform.pg.sql).
    #[arg(long)]
    pub init: bool,
    /// Agents (with --seed-only: agents in the dataset).
    #[arg(long, default_value_t = 12)]
    pub agents: usize,
    /// Seed of every random choice (reproducible runs).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Executions per minute across the fleet.
    #[arg(long, default_value_t = 240.0)]
    pub rate: f64,
    /// Fault recipes to inject (`all` or a comma-separated list), reverted on exit.
    // The list of names comes from the recipe registry, so the help never drifts from it.
    #[arg(long, value_name = "LIST", long_help = crate::fleet::faults::help())]
    pub faults: Option<String>,
    /// When the faults are injected, after the start.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub fault_after: std::time::Duration,
    /// Agent name prefix.
    #[arg(long, default_value = "fleet-")]
    pub prefix: String,
    /// Write a large healthy dataset for benchmarks and exit (implies --init).
    #[arg(long, requires_all = ["rows", "slots"])]
    pub seed_only: bool,
    /// With --seed-only: execution rows.
    #[arg(long)]
    pub rows: Option<usize>,
    /// With --seed-only: slot-set members (running executions).
    #[arg(long)]
    pub slots: Option<usize>,
    /// With --seed-only: rows spread across the agent-keyed cascade tables.
    #[arg(long, default_value_t = 0)]
    pub cascade_rows: usize,
    /// With --seed-only: leave out the platform's own indexes on schedule_executions (queued,
    /// agent/started, terminal completed_at), to measure canary on a platform without them.
    #[arg(long, requires = "seed_only")]
    pub bare_indexes: bool,
}

impl FleetArgs {
    fn into_options(self) -> crate::fleet::drive::FleetOptions {
        let seed_only = self.seed_only.then(|| crate::fleet::seed::SeedSpec {
            agents: self.agents,
            rows: self.rows.unwrap_or(0),
            slots: self.slots.unwrap_or(0),
            cascade_rows: self.cascade_rows,
        });
        crate::fleet::drive::FleetOptions {
            target: match (self.database_url, self.sqlite_path) {
                (Some(url), _) => crate::fleet::platform_db::PlatformTarget::postgres(url),
                (None, path) => {
                    crate::fleet::platform_db::PlatformTarget::Sqlite(path.unwrap_or_default())
                }
            },
            redis: match self.redis_url {
                Some(url) => crate::fleet::platform::RedisTarget::Node(url),
                None => crate::fleet::platform::RedisTarget::Cluster(self.redis_cluster),
            },
            init: self.init,
            spec: crate::fleet::sim::FleetSpec {
                agents: self.agents,
                rate_per_min: self.rate,
                seed: self.seed,
                prefix: self.prefix,
                ..crate::fleet::sim::FleetSpec::default()
            },
            duration: self.duration,
            faults: self.faults,
            fault_after: self.fault_after,
            report_every: std::time::Duration::from_secs(10),
            seed_only,
            bare_indexes: self.bare_indexes,
        }
    }
}

impl DemoArgs {
    fn into_options(self) -> crate::fleet::demo::DemoOptions {
        crate::fleet::demo::DemoOptions {
            duration: self.duration,
            faults: self.faults,
            agents: self.agents,
            rate: self.rate,
            seed: self.seed,
            interval: self.interval,
            group: self.group,
            keep: self.keep,
            config: self.config,
            platform: match self.platform {
                DemoPlatform::Sqlite => crate::fleet::rig::Backend::Sqlite,
                DemoPlatform::Postgres => crate::fleet::rig::Backend::Postgres,
            },
            docker: match (self.docker, self.docker_endpoint) {
                (false, _) => crate::fleet::demo::DemoDocker::Off,
                (true, None) => crate::fleet::demo::DemoDocker::Private,
                (true, Some(endpoint)) => crate::fleet::demo::DemoDocker::Endpoint(endpoint),
            },
        }
    }
}

/// `canary violations`.
#[derive(Debug, Args)]
pub struct ViolationsArgs {
    /// Configuration.
    #[command(flatten)]
    pub source: ConfigSource,
    /// Only this invariant.
    #[arg(long = "invariant", value_name = "ID")]
    pub invariant: Option<String>,
    /// Only this tier (`A` or `B`).
    #[arg(long, value_parser = parse_tier)]
    pub tier: Option<canary_invariants::Tier>,
    /// Only violations newer than this (e.g. `1h`, `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `canary invariants`.
#[derive(Debug, Args)]
pub struct InvariantsArgs {
    /// Configuration: its custom invariants are listed after the catalog (marked custom).
    #[command(flatten)]
    pub source: ConfigSource,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CatalogFormat::Text)]
    pub format: CatalogFormat,
}

/// Catalog output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
    /// Markdown (INVARIANTS.md).
    Markdown,
}

/// `canary config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// `canary config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Load and validate; print every problem.
    Validate(ConfigSource),
    /// Print the effective configuration, secrets redacted.
    Show(ConfigSource),
    /// Print the documented default configuration.
    Example,
}

/// Runs a subcommand, printing its report on stdout. `shutdown` is cancelled by `main.rs` on
/// SIGTERM/SIGINT (only the daemon listens to it; one-shot commands keep the default signals).
pub async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            match crate::daemon::run(args.source.load()?, shutdown).await {
                Ok(()) => Ok(ExitCode::Green),
                // Unwrapped so the exit-code mapping sees the configuration failure itself.
                Err(crate::daemon::DaemonError::Config(failure)) => Err(failure.into()),
                Err(error) => Err(error.into()),
            }
        }
        Command::Check(args) => check(args).await,
        Command::Demo(args) => Ok(crate::fleet::demo::run(args.into_options(), shutdown).await?),
        Command::Fleet(args) => Ok(crate::fleet::drive::run(args.into_options(), shutdown).await?),
        Command::Violations(args) => violations(args),
        Command::Invariants(args) => invariants(&args),
        Command::Config(args) => config_command(args.action),
        Command::Alert(AlertArgs {
            action: AlertAction::Test(source),
        }) => alert_test(&source).await,
        Command::Silence(args) => silence(args.action),
    }
}

/// `--start` / `--end`: RFC 3339.
fn parse_instant(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected RFC 3339 (e.g. 2026-11-22T10:00:00Z): {e}"))
}

/// The OS user running the command, for `--author`'s default.
fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn silence(action: SilenceAction) -> anyhow::Result<ExitCode> {
    use crate::http::silences::{log_created, log_expired};
    use crate::store::Expired;
    let now = crate::clock::now_ms();
    match action {
        SilenceAction::Add(args) => {
            let config = args.source.load_unvalidated()?;
            let new = crate::alert::silence::Spec {
                invariant_ids: args.invariants,
                subject: args.subject,
                starts_at_ms: args.start,
                ends_at_ms: args.end,
                duration: args.duration,
                author: args.author.unwrap_or_else(os_user),
                comment: args.comment,
            }
            .build(now, |id| config::is_silenceable_id(&config, id))
            .map_err(|problems| anyhow::anyhow!("silence refused: {problems}"))?;
            let mut db = open_state_for_writing(&config)?;
            let silence = db.add_silence(&new, now)?;
            log_created(&silence, "cli");
            output::print(&match args.format {
                Format::Text => output::silences_text(std::slice::from_ref(&silence)),
                Format::Json => serde_json::to_string_pretty(&silence)?,
            });
        }
        SilenceAction::List(args) => {
            let config = args.source.load_unvalidated()?;
            let db = open_state_for_reading(&config.state.path)?;
            let silences = db.silences(now, args.all)?;
            output::print(&match args.format {
                Format::Text => output::silences_text(&silences),
                Format::Json => {
                    serde_json::to_string_pretty(&serde_json::json!({ "silences": silences }))?
                }
            });
        }
        SilenceAction::Expire(args) => {
            let config = args.source.load_unvalidated()?;
            let mut db = open_state_for_writing(&config)?;
            let silence = match db.expire_silence(args.id, now)? {
                Expired::NotFound => anyhow::bail!("silence {} not found", args.id),
                Expired::AlreadyOver(s) => s,
                Expired::Expired(s) => {
                    log_expired(&s, "cli");
                    s
                }
            };
            output::print(&match args.format {
                Format::Text => output::silences_text(std::slice::from_ref(&silence)),
                Format::Json => serde_json::to_string_pretty(&silence)?,
            });
        }
    }
    Ok(ExitCode::Green)
}

/// The state database for a command that writes it (created and migrated if needed).
fn open_state_for_writing(config: &Config) -> anyhow::Result<StateDb> {
    StateDb::open(&config.state.path)
        .with_context(|| format!("opening the state database {}", config.state.path.display()))
}

/// `canary invariants`: the catalog, then the custom invariants of the configuration (loaded,
/// not validated: listing must work where the platform database is not reachable).
fn invariants(args: &InvariantsArgs) -> anyhow::Result<ExitCode> {
    let config = args.source.load_unvalidated()?;
    let custom: Vec<&config::CustomInvariant> = config
        .custom_entries()
        .into_iter()
        .map(|c| c.entry)
        .collect();
    output::print(&match args.format {
        CatalogFormat::Text => output::catalog_text(&Registry::new(&config)),
        CatalogFormat::Json => {
            serde_json::to_string_pretty(&Registry::new(&config).entries_json())?
        }
        CatalogFormat::Markdown => output::catalog_markdown() + &output::custom_markdown(&custom),
    });
    Ok(ExitCode::Green)
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = args.source.load()?;
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: (!args.invariants.is_empty()).then_some(args.invariants),
    };
    let result = if args.no_persist {
        let db = if config.state.path.exists() {
            Some(SharedDb::new(
                StateDb::open_read_only(&config.state.path)
                    .context("opening the state database read-only")?,
            ))
        } else {
            None
        };
        cycle::run_dry(&config, db.as_ref(), &request).await?
    } else {
        let db = StateDb::open(&config.state.path).with_context(|| {
            format!("opening the state database {}", config.state.path.display())
        })?;
        cycle::run_cycle(&config, &SharedDb::new(db), &request).await?
    };
    report(&result, args.format, &Registry::new(&config))?;
    Ok(ExitCode::of_verdict(result.verdict()))
}

/// Prints a cycle result.
pub fn report(result: &CycleResult, format: Format, registry: &Registry<'_>) -> anyhow::Result<()> {
    output::print(&match format {
        Format::Text => output::cycle_text(result, registry),
        Format::Json => serde_json::to_string_pretty(result)?,
    });
    Ok(())
}

fn violations(args: ViolationsArgs) -> anyhow::Result<ExitCode> {
    let config = args.source.load()?;
    let db = open_state_for_reading(&config.state.path)?;
    let since_ms = args.since.map(|d| {
        crate::clock::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    });
    let query = ViolationQuery {
        invariant_id: args.invariant,
        tier: args.tier,
        since_ms,
        limit: args.limit,
        ..ViolationQuery::default()
    };
    let (rows, total) = db.violations(&query)?;
    output::print(&match args.format {
        Format::Text => output::violations_text(&rows, total),
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({
            "violations": rows, "total": total,
        }))?,
    });
    Ok(ExitCode::Green)
}

/// `--tier`: `A` or `B`.
fn parse_tier(s: &str) -> Result<canary_invariants::Tier, String> {
    canary_invariants::Tier::parse(s).ok_or_else(|| format!("expected A or B, got {s:?}"))
}

/// The state database for a read command: opened read-only, never created or migrated. A
/// missing file is an error (exit 3), so a typo in `state.path` / `--state-path` is not mistaken
/// for "nothing recorded".
fn open_state_for_reading(path: &std::path::Path) -> anyhow::Result<StateDb> {
    if !path.exists() {
        anyhow::bail!(
            "state database {} does not exist (check state.path / --state-path; it is created by \
             `canary check` or `canary run`, never by a read command)",
            path.display()
        );
    }
    StateDb::open_read_only(path)
        .with_context(|| format!("opening the state database {} read-only", path.display()))
}

fn config_command(action: ConfigAction) -> anyhow::Result<ExitCode> {
    match action {
        ConfigAction::Validate(source) => {
            let config = source.load()?;
            for warning in config::warnings(&config) {
                output::print(&format!("warning: {warning}"));
            }
            output::print("configuration is valid");
        }
        ConfigAction::Show(source) => output::print(&config::show(&source.load()?)),
        ConfigAction::Example => output::print(config::example()),
    }
    Ok(ExitCode::Green)
}

/// `canary alert test`: one POST, no retries, so the operator sees the webhook's own answer.
async fn alert_test(source: &ConfigSource) -> anyhow::Result<ExitCode> {
    let config = source.load()?;
    let webhook = config
        .webhook_url()
        .map_err(|e| ConfigFailure(vec![format!("{e:#}")]))?
        .ok_or_else(|| {
            ConfigFailure(vec![
                "no Slack webhook configured (alerts.slack.webhook_url or webhook_url_file)"
                    .to_owned(),
            ])
        })?;
    let client = crate::alert::deliver::client(config.alerts.slack.timeout)?;
    let outcome =
        crate::alert::post_once(&client, &webhook, &crate::alert::slack::test_message()).await;
    if outcome.attempt == crate::alert::Attempt::Delivered {
        output::print(&format!("test message delivered ({})", outcome.detail));
        Ok(ExitCode::Green)
    } else {
        output::print(&format!(
            "test message not delivered: {} ({})",
            outcome.detail, outcome.reason
        ));
        Ok(ExitCode::Failure)
    }
}
