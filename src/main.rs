//! The `canary` binary: parse the command line, set up logging, dispatch, map the outcome to an
//! exit code. Everything else lives in the library. This is also the only place that touches OS
//! signals: for `canary run`, SIGTERM/SIGINT cancel the token handed to the daemon.

use std::io::IsTerminal;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use canary::cli::{self, Cli, Command};
use canary::config::{LogConfig, LogFormat};
use canary::exit::ExitCode;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ProcessExit {
    let cli = Cli::parse();
    // The long-running commands stop gracefully on SIGTERM/SIGINT: the daemon, and the fleet
    // and demo, which revert their faults and drain the simulated fleet before exiting.
    let daemon = matches!(
        cli.command,
        Command::Run(_) | Command::Fleet(_) | Command::Demo(_)
    );
    init_logging(match &cli.command {
        // A config that does not load is reported (exit 78) by the dispatch below; logging
        // then falls back to the defaults.
        Command::Run(args) => Some(args.source.load().map(|c| c.log).unwrap_or_default()),
        _ => None,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    let shutdown = CancellationToken::new();
    if daemon {
        // Handlers are installed for the long-running commands only: one-shot commands keep the
        // default disposition, so Ctrl-C stops them at once.
        runtime.spawn(on_signals(shutdown.clone()));
    }
    let outcome = runtime.block_on(cli::run(cli.command, shutdown));
    // The daemon already bounded its own stop (`schedule.shutdown_timeout`); whatever is still
    // running past it (a cycle stuck on a dead store) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match outcome {
        Ok(code) => ProcessExit::from(code as u8),
        Err(error) => fail(&error),
    }
}

/// First SIGTERM/SIGINT: graceful stop (cancel `shutdown`). A second one: exit at once (130), for
/// an operator who does not want to wait for the shutdown timeout.
async fn on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(error = %error, "cannot install signal handlers");
            return;
        }
    };
    for n in 0..2 {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if n == 0 {
            tracing::info!(signal = name, "stop requested");
            shutdown.cancel();
        } else {
            tracing::warn!(signal = name, "second stop signal: exiting now");
            std::process::exit(130);
        }
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the binary edge reports fatal errors on stderr"
)]
fn fail(error: &anyhow::Error) -> ProcessExit {
    eprintln!("canary: {error:#}");
    // The mapping walks the plain error chain; `anyhow` stops at this edge.
    let chain: &(dyn std::error::Error + 'static) = error.as_ref();
    ProcessExit::from(ExitCode::of_error(chain) as u8)
}

/// Logs go to stderr (stdout carries reports). One-shot commands (`log` = `None`) default to
/// `warn` so their output stays readable; the daemon uses `log.level` (default `info`) and
/// `log.format` (text or JSON lines). `RUST_LOG` overrides the level in both cases.
fn init_logging(log: Option<LogConfig>) {
    let default_level = log.as_ref().map_or("warn", |l| l.level.as_str());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: journald and log files must get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if log.is_some_and(|l| l.format == LogFormat::Json) {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
