//! Pure evaluation cost: the whole catalog and each invariant alone, on healthy fleets of 100,
//! 1 000 and 10 000 agents (2 running slots and 5 recent terminal rows per agent).
//! Run with `cargo bench -p canary-invariants`.

use canary_invariants::testing::healthy_fleet;
use canary_invariants::{CATALOG, Memory, Params, Selection, evaluate};

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [100, 1_000, 10_000];

#[divan::bench(args = SIZES)]
fn full_catalog(bencher: divan::Bencher, agents: usize) {
    let snapshot = healthy_fleet(agents, 5);
    let memory = Memory::default();
    let params = Params::default();
    bencher.bench(|| evaluate(&snapshot, &memory, &params, Selection::AllEnabled));
}

#[divan::bench(args = SIZES)]
fn each_invariant(bencher: divan::Bencher, agents: usize) {
    let snapshot = healthy_fleet(agents, 5);
    let memory = Memory::default();
    let params = Params::default();
    let ids: Vec<Vec<String>> = CATALOG
        .iter()
        .map(|inv| vec![inv.meta().id.to_owned()])
        .collect();
    bencher.bench(|| {
        ids.iter()
            .map(|only| {
                evaluate(&snapshot, &memory, &params, Selection::Only(only))
                    .violations
                    .len()
            })
            .sum::<usize>()
    });
}
