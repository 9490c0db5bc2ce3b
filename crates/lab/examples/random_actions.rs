//! Runs talc's random actions on one contender, for `valgrind --tool=callgrind` or `perf`:
//! instruction counts are stable where wall-clock times on a shared machine are not.
//! `callgrind_annotate --inclusive=yes` then gives each of `Seen::alloc`, `Seen::free` and
//! `Seen::realloc` with its calls: the allocator's instructions per call, the workload's
//! left out.
//!
//! `cargo run --release -p heapkit-lab --example random_actions -- tlsf|rlsf|talc MAX STEPS`,
//! or `tlsf-pairs|rlsf-pairs|talc-pairs SIZE COUNT` for allocate+free pairs, or
//! `tlsf-churn|rlsf-churn|talc-churn SIZE COUNT` for COUNT replacements of a random one of
//! 4000 live blocks (the lab's fixed-churn), timed: it prints ns per call.

use heapkit_lab::peers::{heapkit_tlsf, rlsf, talc};
use heapkit_trace::arena::Arena;
use heapkit_trace::workloads::{untimed, RandomActions};

/// An arena whose calls stay calls, so callgrind's inclusive count of `Seen::alloc`,
/// `Seen::free` and `Seen::realloc` is the allocator's own share of the run.
struct Seen<A>(A);

impl<A: Arena> Arena for Seen<A> {
    #[inline(never)]
    fn alloc(&mut self, layout: std::alloc::Layout) -> Option<std::ptr::NonNull<u8>> {
        self.0.alloc(layout)
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.0.free(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(
        &mut self,
        ptr: std::ptr::NonNull<u8>,
        layout: std::alloc::Layout,
        new_size: usize,
    ) -> Option<std::ptr::NonNull<u8>> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

fn drive(arena: impl Arena, max: usize, steps: usize) {
    let mut arena = Seen(arena);
    let mut workload = RandomActions::new(max, 42);
    for _ in 0..steps {
        workload.step(&mut arena, &mut untimed);
    }
    workload.drain(&mut arena);
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

/// `live` blocks of `size` bytes, then `count` replacements of a random one (the lab's
/// fixed-churn), timed whole: prints ns per call.
fn churn(arena: &mut impl Arena, size: usize, live: usize, count: usize) {
    let layout = std::alloc::Layout::from_size_align(size, 8).unwrap();
    let mut blocks: Vec<_> = (0..live).map(|_| arena.alloc(layout).unwrap()).collect();
    let mut rng = heapkit_trace::Rng::new(42);
    let picks: Vec<usize> = (0..count).map(|_| rng.below(live)).collect();
    let start = std::time::Instant::now();
    for &i in &picks {
        // SAFETY: `blocks[i]` is live with `layout`.
        unsafe { arena.free(blocks[i], layout) };
        blocks[i] = arena.alloc(std::hint::black_box(layout)).unwrap();
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(u32::try_from(2 * count).unwrap());
    println!("{ns:.2} ns per call");
    for block in blocks {
        // SAFETY: live with `layout`.
        unsafe { arena.free(block, layout) };
    }
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
        Some("tlsf") => drive(heapkit_tlsf(region), max, steps),
        Some("rlsf") => drive(rlsf(region), max, steps),
        Some("talc") => drive(talc(region), max, steps),
        Some("tlsf-pairs") => pairs(&mut heapkit_tlsf(region), max, steps),
        Some("rlsf-pairs") => pairs(&mut rlsf(region), max, steps),
        Some("talc-pairs") => pairs(&mut talc(region), max, steps),
        Some("tlsf-churn") => churn(&mut heapkit_tlsf(region), max, 4000, steps),
        Some("rlsf-churn") => churn(&mut rlsf(region), max, 4000, steps),
        Some("talc-churn") => churn(&mut talc(region), max, 4000, steps),
        _ => eprintln!("usage: random_actions tlsf|rlsf|talc[-pairs] [MAX|SIZE] [STEPS]"),
    }
}
