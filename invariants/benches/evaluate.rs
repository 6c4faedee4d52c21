//! Pure evaluation cost, time and allocations: the whole catalog through [`evaluate`] and each
//! invariant alone (its `check` plus its `remember`), on healthy fleets of 100, 1 000 and 10 000
//! agents (2 running slots and 5 recent terminal rows per agent, a drain sentinel on every tenth).
//!
//! Run with `cargo bench -p canary-invariants --features testing`. Allocation counts come from
//! divan's `AllocProfiler` installed as this binary's global allocator (the "alloc:" rows).
//!
//! Memory is *warm* (the memory a first cycle over the same fleet leaves behind), because that is
//! the daemon's steady state: E-02 then looks every recent terminal row up in a full map.

use canary_invariants::testing::warm_fleet;
use canary_invariants::{CATALOG, Input, Invariant, Memory, Params, Selection, Snapshot, evaluate};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// Terminal rows per agent in the bench fleets.
const TERMINAL_PER_AGENT: usize = 5;

/// A fleet of `agents` and the memory a previous cycle over it would have left.
fn fleet(agents: usize) -> (Snapshot, Memory, Params) {
    warm_fleet(agents, TERMINAL_PER_AGENT)
}

/// Everything the daemon's evaluate step does: every enabled invariant, sorting, next memory.
#[divan::bench(args = SIZES)]
fn full_catalog(bencher: divan::Bencher, agents: usize) {
    let (snapshot, memory, params) = fleet(agents);
    bencher
        .counter(divan::counter::ItemsCount::new(agents))
        .bench(|| evaluate(&snapshot, &memory, &params, Selection::AllEnabled));
}

/// The catalog's ids, for `args` (new invariants join the bench without editing it).
fn ids() -> Vec<&'static str> {
    CATALOG.iter().map(|inv| inv.meta().id).collect()
}

fn find(id: &str) -> Option<&'static dyn Invariant> {
    CATALOG.iter().copied().find(|inv| inv.meta().id == id)
}

/// One invariant alone: `check` plus `remember` into a copy of the warm memory (the copy is made
/// outside the timed region; in `evaluate` it is made once per cycle, not per invariant).
fn one(bencher: divan::Bencher, agents: usize, id: &str) {
    let (snapshot, memory, params) = fleet(agents);
    let Some(invariant) = find(id) else {
        return;
    };
    let input = Input::new(&snapshot, &memory, &params);
    bencher
        .with_inputs(|| memory.clone())
        .bench_local_values(|mut next| {
            let violations = invariant.check(&input);
            invariant.remember(&input, &mut next);
            (violations, next)
        });
}

/// Each invariant separately, one group per fleet size.
mod each_invariant {
    use super::{ids, one};

    #[divan::bench(args = ids())]
    fn agents_100(bencher: divan::Bencher, id: &str) {
        one(bencher, 100, id);
    }

    #[divan::bench(args = ids())]
    fn agents_1000(bencher: divan::Bencher, id: &str) {
        one(bencher, 1_000, id);
    }

    #[divan::bench(args = ids())]
    fn agents_10000(bencher: divan::Bencher, id: &str) {
        one(bencher, 10_000, id);
    }
}

/// What `evaluate` costs beyond the checks themselves at 10 000 agents: cloning the memory it
/// starts the next one from (the largest fixed cost once E-02's map is full).
#[divan::bench]
fn memory_clone_10000(bencher: divan::Bencher) {
    let (_, memory, _) = fleet(10_000);
    bencher.bench(|| memory.clone());
}
