//! Typed configuration: the structs (this file and `platform.rs`), layering of defaults → file →
//! environment → flags (`load.rs`), validation that reports every problem (`validate.rs`), and the
//! redacted [`Secret`] type (`secret.rs`).
//!
//! Validation is pure: it never opens the platform database (the custom-SQL preflight is
//! `collect::preflight`). The modules import one way: `problem` ← `custom` ← `validate` ←
//! `load`; nothing here imports the collector.

pub mod custom;
mod load;
pub mod platform;
mod problem;
mod secret;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use canary_invariants::Params;
use serde::{Deserialize, Serialize};

pub use custom::{CustomInvariant, CustomLimits};
pub use load::{CONFIG_ENV, ENV_PREFIX, example, load_from, load_validated, show};
pub use load::{ConfigError, Overrides, load};
pub use platform::PlatformConfig;
pub use problem::Problem;
pub use secret::{Secret, SecretSource};
pub use validate::{is_silenceable_id, validate, warnings};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The watched platform.
    pub platform: PlatformConfig,
    /// canary's own state database.
    pub state: StateConfig,
    /// When cycles run.
    pub schedule: ScheduleConfig,
    /// Where alerts go.
    pub alerts: AlertsConfig,
    /// Admin API.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Per-invariant overrides: enabled, severity, thresholds.
    pub invariants: Params,
    /// Operator-defined SQL invariants (DESIGN §5; see [`custom`] for the format and rules).
    pub custom_invariants: Vec<CustomInvariant>,
    /// A directory of `*.yaml` / `*.yml` files holding more custom invariants (one entry or a
    /// list per file). Relative to the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_invariants_dir: Option<PathBuf>,
    /// Row and time limits of every custom statement (entries may override them).
    pub custom_limits: CustomLimits,
    /// The entries read from `custom_invariants_dir` when the configuration was loaded.
    #[serde(skip)]
    pub custom_from_dir: Vec<custom::DirEntry>,
}

/// canary's own state database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite file (created, WAL).
    pub path: PathBuf,
    /// Cycles and violations older than this are pruned.
    pub retention_days: u32,
    /// A cycle lease not renewed for this long is considered abandoned by a crashed holder
    /// (the holder renews it every third of this while its cycle runs; a crashed holder on this
    /// host is taken over at once).
    #[serde(with = "humantime_serde")]
    pub lease_timeout: Duration,
    /// Violations kept as evidence per invariant per cycle (the first ones in sorted order);
    /// the rest are counted, never stored. Bounds what one cycle can write and hold.
    pub max_subjects_per_invariant: u32,
}

/// Default of [`StateConfig::max_subjects_per_invariant`].
pub const DEFAULT_MAX_SUBJECTS_PER_INVARIANT: u32 = 100;
/// Largest accepted [`StateConfig::max_subjects_per_invariant`]: one history page.
pub const MAX_SUBJECTS_PER_INVARIANT: u32 = 10_000;

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("/var/lib/canary/state.db"),
            retention_days: 30,
            lease_timeout: Duration::from_secs(30),
            max_subjects_per_invariant: DEFAULT_MAX_SUBJECTS_PER_INVARIANT,
        }
    }
}

/// When cycles run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Fixed interval between cycles (ignored when `cron` is set).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// 5-field UTC cron expression; replaces `interval` when set.
    pub cron: Option<String>,
    /// Delay before the first cycle.
    #[serde(with = "humantime_serde")]
    pub startup_delay: Duration,
    /// Random delay up to this added to each tick (spreads many canaries over one platform).
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// On SIGTERM/SIGINT: how long an in-flight cycle may take to commit before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            interval: Duration::from_secs(300),
            cron: None,
            startup_delay: Duration::from_secs(30),
            jitter: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Where alerts go, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Slack incoming webhook.
    pub slack: SlackConfig,
    /// A dead man's switch pinged after every recorded cycle (healthchecks.io, Uptime Kuma, …).
    pub heartbeat: HeartbeatConfig,
    /// Consecutive red cycles before an invariant fires.
    pub fire_after: u32,
    /// Consecutive green cycles before a firing invariant resolves.
    pub resolve_after: u32,
    /// Consecutive cycles a platform source (Redis, SQLite, ...) must be unreadable before
    /// "canary is blind" fires (critical, one alert per source); one readable cycle resolves it.
    pub blind_after: u32,
    /// Re-send a fired alert while it stays red this long (unset = never).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub renotify_after: Option<Duration>,
    /// An alert still undelivered after this is marked abandoned (logged at ERROR, kept).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// First retry delay after a failed delivery (doubles, with jitter).
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Which canary sends the alerts (several may share one channel): in every Slack message,
    /// `/api/canary/status` and `canary_info{canary_instance}`. Unset = the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Recurring windows in which matching transitions are recorded but not sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

/// A recurring maintenance window: from each tick of `cron` (5 fields, UTC) for `duration`,
/// transitions of `invariants` (whose subjects all match `subject`, when set) are recorded
/// silenced and not sent, exactly like a silence (see `alert::silence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// When each window starts: a 5-field cron expression, UTC.
    pub cron: String,
    /// How long each window lasts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Invariant ids (or `source:<name>`) it mutes.
    pub invariants: Vec<String>,
    /// Optional subject glob (`*`, `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why (shown in logs and the silence's `silenced_by` context).
    #[serde(default)]
    pub comment: String,
}

impl AlertsConfig {
    /// `alerts.instance`, or the host name, or `"canary"` when even that cannot be read.
    pub fn instance_name(&self) -> String {
        if let Some(name) = self.instance.as_deref().filter(|n| !n.trim().is_empty()) {
            return name.to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "canary".to_owned())
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            slack: SlackConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            fire_after: 1,
            resolve_after: 1,
            blind_after: 3,
            renotify_after: None,
            give_up_after: Duration::from_secs(24 * 3600),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            instance: None,
            maintenance_windows: Vec::new(),
        }
    }
}

/// The dead man's switch: after every recorded cycle canary requests `url` (or `url/fail` when
/// a source was unavailable: the healthchecks.io and Uptime Kuma conventions), so a canary
/// that died, hung or lost its host pages someone through a service outside it. Unset = off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// The ping URL (a secret: it lets anyone ping). Prefer `url_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// A file holding the ping URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// `get` or `post` (an empty body).
    pub method: HeartbeatMethod,
    /// Timeout of one ping; a ping never delays a cycle (it runs beside the next one).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            url: None,
            url_file: None,
            method: HeartbeatMethod::Get,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How the heartbeat is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatMethod {
    /// `GET url`.
    Get,
    /// `POST url` with an empty body.
    Post,
}

/// Slack incoming webhook. Absent URL = silent sink (transitions are still recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// Timeout of one POST.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// At most one message per this interval per webhook (Slack allows about one per second).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// The webhook URL (a secret). Prefer `webhook_url_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            timeout: Duration::from_secs(10),
            min_interval: Duration::from_secs(1),
            webhook_url: None,
            webhook_url_file: None,
        }
    }
}

/// Admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Requests taking longer are answered 408 (a run-cycle request includes the cycle).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Listen address.
    pub bind: String,
    /// Bearer token for admin routes (a secret). Prefer `admin_token_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// File holding the admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// The HTML status page on `GET /`.
    pub status_page: StatusPageConfig,
}

/// The HTML status page (`GET /`). By default it asks for HTTP Basic credentials with the admin
/// token as the password (browsers cannot send a bearer header) and, like the admin API, answers
/// 503 when no token is configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageConfig {
    /// Serve the page without credentials (an explicit choice: it shows subjects and summaries
    /// read from the platform).
    pub public: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            request_timeout: Duration::from_secs(60),
            body_limit_bytes: 64 * 1024,
            bind: "127.0.0.1:9464".to_owned(),
            admin_token: None,
            admin_token_file: None,
            status_page: StatusPageConfig::default(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `tracing` env-filter directive (overridden by `RUST_LOG`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}
