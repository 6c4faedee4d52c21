//! One warm full-catalog evaluation of a 10 000-agent healthy fleet (the divan bench's largest
//! case), for instruction counts: the fleet and its warm memory are built first, then
//! [`measure`] runs `evaluate` once. Instruction totals are repeatable on a noisy shared machine
//! where wall-clock medians are not:
//!
//! ```text
//! cargo build --release -p canary-invariants --features testing --example evaluate_once
//! valgrind --tool=callgrind --toggle-collect='*evaluate_once*measure*' \
//!     target/release/examples/evaluate_once [agents]
//! ```

use canary_invariants::testing::warm_fleet;
use canary_invariants::{Evaluation, Memory, Params, Selection, Snapshot, evaluate};

/// Terminal rows per agent, as in the divan bench.
const TERMINAL_PER_AGENT: usize = 5;

/// The measured region: exactly one `evaluate`, nothing else.
#[inline(never)]
fn measure(snapshot: &Snapshot, memory: &Memory, params: &Params) -> Evaluation {
    evaluate(snapshot, memory, params, Selection::AllEnabled)
}

fn main() {
    let agents = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let (snapshot, warm, params) = warm_fleet(agents, TERMINAL_PER_AGENT);
    let eval = std::hint::black_box(measure(&snapshot, &warm, &params));
    // The answer, so a broken build is not measured as a fast one.
    let red = eval.violations.len();
    let remembered = eval.memory.seen_terminal.len();
    std::process::exit(i32::from(red != 0 || remembered == 0));
}
