//! The `canary` binary: parse the command line, set up logging, dispatch, map the outcome to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode as ProcessExit;

use canary::cli::{self, Cli, ExitCode};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ProcessExit {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(code) => ProcessExit::from(code as u8),
        Err(error) => fail(&error),
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the binary edge reports fatal errors on stderr"
)]
fn fail(error: &anyhow::Error) -> ProcessExit {
    eprintln!("canary: {error:#}");
    ProcessExit::from(ExitCode::of_error(error) as u8)
}

/// Logs go to stderr (stdout carries reports). One-shot commands default to `warn` so their
/// output stays readable; `RUST_LOG` overrides.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
