//! The one writer of reports on stdout (cycle results, listings, the demo's timeline).
//!
//! Logs go to stderr through `tracing`; what a command *answers* goes here, so piping
//! `canary check --format json` stays clean. It must not format anything itself: the renderings
//! live with their callers (`cli::output`, `fleet::demo`).

/// Writes a report to stdout, without trailing blank lines.
#[allow(
    clippy::print_stdout,
    reason = "the CLI's reports go to stdout by design"
)]
pub fn print(text: &str) {
    println!("{}", text.trim_end());
}
