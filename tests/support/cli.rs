//! The built `canary` binary as a test runs it: no `CANARY_CONFIG` inherited from the
//! environment, `RUST_LOG=warn`, output captured. One helper for every test module that drives
//! the CLI this way, and what they read in the cycle result it prints.

use std::process::Command;

use serde_json::Value;

/// Runs `canary <args>`: (exit code, -1 when killed by a signal; stdout; stderr).
pub fn canary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(args)
        .env_remove("CANARY_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run canary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The violations of invariant `id` in a printed cycle result, in its order.
pub fn violations_of<'a>(result: &'a Value, id: &str) -> Vec<&'a Value> {
    result["violations"]
        .as_array()
        .expect("violations array")
        .iter()
        .filter(|v| v["invariant_id"] == id)
        .collect()
}
