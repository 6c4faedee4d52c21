//! `canary run`: composes the long-running parts of the daemon and owns their lifecycle.
//!
//! Start: parse the schedule (a bad cron is a configuration error, exit 78), open the state
//! database, build the one shared single-flight [`CycleRunner`], bind the admin listener (so a
//! taken port fails the start, not a background task), then spawn on one [`TaskTracker`]: the
//! schedule loop, the retention loop, the alert deliverer and the admin HTTP server. When all of
//! that is up, tell systemd `READY=1` (when started with `Type=notify`).
//!
//! Stop: when `shutdown` is cancelled (main.rs maps SIGTERM/SIGINT onto it; nothing here touches
//! signals) every task sees the same token: the scheduler stops waiting but lets an in-flight
//! cycle commit, the deliverer stops between POSTs, the HTTP server drains. The whole stop is
//! bounded by `schedule.shutdown_timeout`; past it we log at WARN and return anyway, because a
//! stuck task must not turn a `systemctl stop` into a SIGKILL (which would lose more).
//!
//! It must not decide anything about cycles or alerts itself: it only wires components together.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::{AlertStats, DeliverError, Deliverer};
use crate::config::Config;
use crate::cycle::CycleResult;
use crate::exit::ConfigFailure;
use crate::http::{self, AppState, Metrics};
use crate::schedule::runner::CycleRunner;
use crate::schedule::scheduler::{self, RETENTION_EVERY, Schedule};
use crate::store::{StateDb, StoreError};
use crate::timing::{self, Cadence};

/// Why the daemon could not start, or stopped on a failure.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot run (e.g. a cron that never matches, an unreadable secret file).
    #[error(transparent)]
    Config(#[from] ConfigFailure),
    /// The state database could not be opened.
    #[error("opening the state database {}", path.display())]
    OpenState {
        /// The state database file.
        path: std::path::PathBuf,
        /// What failed (boxed: start-up errors are rare, the `Result`s carrying them are not).
        #[source]
        source: Box<StoreError>,
    },
    /// The second state-database connection (API, probes, retention) could not be opened.
    #[error("opening a second state database connection {}", path.display())]
    OpenSide {
        /// The state database file.
        path: std::path::PathBuf,
        /// What failed (boxed: start-up errors are rare, the `Result`s carrying them are not).
        #[source]
        source: Box<StoreError>,
    },
    /// The admin API could not bind its address.
    #[error("binding the admin API to {bind}")]
    Bind {
        /// The configured `http.bind`.
        bind: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The alert deliverer could not start.
    #[error("starting the alert deliverer")]
    Deliverer(#[source] Box<DeliverError>),
    /// A background task failed while running (already logged at ERROR where it failed).
    #[error("a daemon task failed (see the log above)")]
    TaskFailed,
}

/// Runs the daemon until `shutdown` is cancelled, then stops within `schedule.shutdown_timeout`.
///
/// Errors: a [`ConfigFailure`] for a schedule that cannot run (bad or never-matching cron), and
/// start-up failures (state database, bind). A background task that fails on its own (e.g. the
/// HTTP server) stops the whole daemon and is reported as an error, so systemd restarts it.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let schedule = schedule_of(&config)?;
    // Valid but dangerous settings: said once, where the daemon starts.
    for warning in crate::config::warnings(&config) {
        tracing::warn!(%warning, "dangerous setting");
    }
    let config = Arc::new(config);
    let db = StateDb::open(&config.state.path).map_err(|source| DaemonError::OpenState {
        path: config.state.path.clone(),
        source: Box::new(source),
    })?;
    // A second connection for the API, probes and retention, so they never wait for a cycle.
    let side = StateDb::open(&config.state.path).map_err(|source| DaemonError::OpenSide {
        path: config.state.path.clone(),
        source: Box::new(source),
    })?;
    let runner = CycleRunner::new(Arc::clone(&config), db).with_side_connection(side);
    let listener = TcpListener::bind(&config.http.bind)
        .await
        .map_err(|source| DaemonError::Bind {
            bind: config.http.bind.clone(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_or_else(|_| config.http.bind.clone(), |a| a.to_string());

    // A task that ends on its own error cancels everything and marks the run failed.
    let failed = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();

    // One registry for everything: the scheduler and the admin API observe cycles into it, the
    // deliverer counts alerts into it, `/metrics` renders it.
    let metrics = Arc::new(Metrics::new());
    let started_tasks =
        spawn_deliverer(&tracker, &config, &shutdown, &failed, metrics.alert_stats()).and_then(
            |waker| {
                let http = (Arc::clone(&metrics), Arc::clone(&waker));
                spawn_http(&tracker, listener, runner.clone(), http, &shutdown, &failed)
                    .map(|()| (waker, Arc::clone(&metrics)))
            },
        );
    let (wake_deliverer, metrics) = match started_tasks {
        Ok(handles) => handles,
        Err(error) => {
            // Stop what already started (e.g. the deliverer when the admin token file is
            // unreadable) before reporting the error.
            shutdown.cancel();
            tracker.close();
            let _ = tokio::time::timeout(config.schedule.shutdown_timeout, tracker.wait()).await;
            return Err(error);
        }
    };
    let on_cycle = move |result: &CycleResult| {
        metrics.observe_cycle(result);
        // New transitions mean new outbox rows: deliver now, not at the next poll.
        if result.has_transitions() {
            wake_deliverer.notify_one();
        }
    };
    supervise(
        &tracker,
        "scheduler",
        scheduler::run_schedule(runner.clone(), schedule.clone(), shutdown.clone(), on_cycle),
        &shutdown,
        &failed,
    );
    supervise(
        &tracker,
        "retention",
        scheduler::run_retention(
            runner.clone(),
            config.state.retention_days,
            RETENTION_EVERY,
            shutdown.clone(),
        ),
        &shutdown,
        &failed,
    );
    tracker.close();

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        schedule = %schedule.cadence.describe(),
        startup_delay = %humantime::format_duration(schedule.startup_delay),
        http.bind = %bound,
        state.path = %config.state.path.display(),
        "canary started"
    );
    sd_notify("READY=1");

    shutdown.cancelled().await;
    sd_notify("STOPPING=1");
    let timeout = config.schedule.shutdown_timeout;
    tracing::info!(
        shutdown_timeout = %humantime::format_duration(timeout),
        "shutting down: no new cycles; waiting for in-flight work"
    );
    let started = Instant::now();
    match tokio::time::timeout(timeout, tracker.wait()).await {
        Ok(()) => tracing::info!(
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "canary stopped"
        ),
        Err(_) => tracing::warn!(
            shutdown_timeout = %humantime::format_duration(timeout),
            "shutdown timeout elapsed with tasks still running; exiting anyway \
             (an unfinished cycle is not recorded; a restart here takes its lease over at once)"
        ),
    }
    if failed.load(Ordering::SeqCst) {
        return Err(DaemonError::TaskFailed);
    }
    Ok(())
}

/// The schedule of `config`, refusing one that can never run.
fn schedule_of(config: &Config) -> Result<Schedule, ConfigFailure> {
    let s = &config.schedule;
    let cadence = Cadence::from_config(s.interval, s.cron.as_deref())
        .map_err(|e| ConfigFailure(vec![e.to_string()]))?;
    if timing::first_tick(&cadence, crate::clock::now_ms(), Duration::ZERO).is_none() {
        return Err(ConfigFailure(vec![format!(
            "schedule.cron: {:?} never matches a future time",
            s.cron.as_deref().unwrap_or_default()
        )]));
    }
    Ok(Schedule {
        cadence,
        startup_delay: s.startup_delay,
        jitter: s.jitter,
    })
}

/// Spawns the alert deliverer (outbox → Slack) on its own state-DB connection. An unset
/// webhook makes it a silent sink; an unreadable webhook file is a configuration error.
/// Returns the deliverer's waker.
fn spawn_deliverer(
    tracker: &TaskTracker,
    config: &Config,
    shutdown: &CancellationToken,
    failed: &Arc<AtomicBool>,
    stats: Arc<AlertStats>,
) -> Result<Arc<Notify>, DaemonError> {
    let webhook = config
        .webhook_url()
        .map_err(|e| ConfigFailure(vec![format!("{e:#}")]))?;
    let deliverer = Deliverer::new(&config.state.path, webhook, config.alerts.clone())
        .map_err(|e| DaemonError::Deliverer(Box::new(e)))?
        // The same counters `/metrics` renders.
        .with_stats(stats);
    let waker = deliverer.waker();
    supervise(
        tracker,
        "alert deliverer",
        deliverer.run(shutdown.clone()),
        shutdown,
        failed,
    );
    Ok(waker)
}

/// Spawns the admin HTTP server on `listener`, rendering `metrics` and waking the deliverer
/// after admin-triggered cycles. A server that fails stops the daemon.
fn spawn_http(
    tracker: &TaskTracker,
    listener: TcpListener,
    runner: CycleRunner,
    (metrics, alert_waker): (Arc<Metrics>, Arc<Notify>),
    shutdown: &CancellationToken,
    failed: &Arc<AtomicBool>,
) -> Result<(), DaemonError> {
    let token = runner
        .config()
        .admin_token()
        .map_err(|e| ConfigFailure(vec![format!("{e:#}")]))?;
    let state = AppState::new(runner, token, metrics).with_alert_waker(alert_waker);
    let serve = {
        let (shutdown, failed) = (shutdown.clone(), Arc::clone(failed));
        async move {
            if let Err(error) = http::serve(listener, state, shutdown.clone()).await {
                fail("http", &error, &failed, &shutdown);
            }
        }
    };
    supervise(tracker, "http", serve, shutdown, failed);
    Ok(())
}

/// Spawns `task` on the tracker so a panic in it is not lost with its join handle: it fails the
/// run and stops the daemon (a half-alive daemon — serving probes without a scheduler — would
/// look healthy while watching nothing).
fn supervise(
    tracker: &TaskTracker,
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
    shutdown: &CancellationToken,
    failed: &Arc<AtomicBool>,
) {
    let handle = tokio::spawn(task);
    let (shutdown, failed) = (shutdown.clone(), Arc::clone(failed));
    tracker.spawn(async move {
        if let Err(error) = handle.await {
            fail(name, &error, &failed, &shutdown);
        }
    });
}

/// Marks the run failed and stops every task (a component that cannot go on takes the daemon
/// down, so the service manager restarts it rather than leaving it half alive).
fn fail(
    what: &str,
    error: &dyn std::fmt::Display,
    failed: &AtomicBool,
    shutdown: &CancellationToken,
) {
    tracing::error!(task = what, error = %error, "daemon task failed; stopping");
    failed.store(true, Ordering::SeqCst);
    shutdown.cancel();
}

/// systemd readiness protocol (`Type=notify`): one datagram to `$NOTIFY_SOCKET`, no crate
/// needed. Best effort: without the variable (not under systemd) this does nothing, and a
/// failure is only logged (systemd then times the start out and says so).
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send_notify(&path, state) {
        tracing::warn!(error = %error, state, "sd_notify failed");
    }
}

fn send_notify(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // systemd may hand out an abstract socket, written with a leading '@'.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_or_impossible_cron_is_a_config_failure_naming_it() {
        let mut config = Config::default();
        config.schedule.cron = Some("61 * * * *".into());
        let e = schedule_of(&config).unwrap_err();
        assert!(e.to_string().contains("\"61 * * * *\""), "{e}");
        config.schedule.cron = Some("0 0 30 2 *".into());
        let e = schedule_of(&config).unwrap_err();
        assert!(e.to_string().contains("never matches"), "{e}");
        config.schedule.cron = Some("*/5 * * * *".into());
        assert!(schedule_of(&config).is_ok());
    }

    #[test]
    fn sd_notify_reaches_a_pathname_and_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        send_notify(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0_u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("canary-test-{}", std::process::id());
        let abstract_server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send_notify(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = abstract_server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
