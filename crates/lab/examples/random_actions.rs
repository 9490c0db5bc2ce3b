//! Runs talc's random actions on one contender, for `valgrind --tool=callgrind` or `perf`:
//! instruction counts are stable where wall-clock times on a shared machine are not.
//!
//! `cargo run --release -p heapkit-lab --example random_actions -- tlsf|rlsf|talc MAX STEPS`,
//! or `tlsf-pairs|rlsf-pairs|talc-pairs SIZE COUNT` for allocate+free pairs.

use heapkit_lab::peers::{heapkit_tlsf, rlsf, talc};
use heapkit_trace::arena::Arena;
use heapkit_trace::workloads::{untimed, RandomActions};

fn drive(arena: &mut impl Arena, max: usize, steps: usize) {
    let mut workload = RandomActions::new(max, 42);
    for _ in 0..steps {
        workload.step(arena, &mut untimed);
    }
    workload.drain(arena);
}

/// Allocate+free pairs of `size` bytes with the workload's 300 blocks live around them.
fn pairs(arena: &mut impl Arena, size: usize, count: usize) {
    let mut background = RandomActions::new(3000, 7);
    for _ in 0..2_000 {
        background.step(arena, &mut untimed);
    }
    let layout = std::alloc::Layout::from_size_align(size, 8).unwrap();
    for _ in 0..count {
        let block = arena.alloc(std::hint::black_box(layout)).unwrap();
        // SAFETY: just allocated with `layout`.
        unsafe { arena.free(std::hint::black_box(block), layout) };
    }
    background.drain(arena);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let max = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let steps = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let region = 64 << 20;
    match args.first().map(String::as_str) {
        Some("tlsf") => drive(&mut heapkit_tlsf(region), max, steps),
        Some("rlsf") => drive(&mut rlsf(region), max, steps),
        Some("talc") => drive(&mut talc(region), max, steps),
        Some("tlsf-pairs") => pairs(&mut heapkit_tlsf(region), max, steps),
        Some("rlsf-pairs") => pairs(&mut rlsf(region), max, steps),
        Some("talc-pairs") => pairs(&mut talc(region), max, steps),
        _ => eprintln!("usage: random_actions tlsf|rlsf|talc[-pairs] [MAX|SIZE] [STEPS]"),
    }
}
