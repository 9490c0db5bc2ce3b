//! One lab workload replayed on `BitmapArena` (16-byte blocks, as the lab builds it),
//! `Tlsf`, talc or rlsf over a 32 MiB region, for instruction counts, which do not depend
//! on what else the machine is doing. The scale study's points (`scale-random-N`,
//! `scale-hot-set-N`) are drawn as the study draws them, over the study's region when that
//! is larger, and run on `Pool` too (64-byte blocks) and on the study's floor (`floor`,
//! `FreeStacks`), for callgrind's cache simulation;
//! `measured` then counts the filling and draining too, where the study times only the
//! steps between:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='lab_ir::measured' \
//!     target/release/examples/lab_ir bitmap plateau
//! ```
//!
//! The region is warmed with one replay, then the replay inside `measured` is the one
//! counted; the program prints the events, so `Ir / events` is instructions per call
//! (replay bookkeeping included, the same for all). With `split` as a third argument the
//! calls are not inlined into the replay, and callgrind's inclusive cost of `Split::alloc`,
//! `Split::free` and `Split::realloc` is each kind of call's own. (Callgrind counts the
//! calls of the warm-up replay too, whose cost it does not collect: a call's cost is the
//! inclusive cost over half the calls it reports.) `lab_ir` alone lists the workloads.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_bitmap_arena::BitmapArena;
use heapkit_lab::scale::{self, Pattern};
use heapkit_trace::arena::{Arena, FreeStacks, Heapkit};
use heapkit_trace::churn::{replay_churn, Churn};
use heapkit_trace::replay::replay_whole;
use heapkit_trace::trace::{Summary, Trace};
use heapkit_trace::workloads::SizeMix;
use heapkit_trace::Region;

const REGION: usize = 32 << 20;

/// What is replayed: a lab workload's trace, or a scale point drawn as the study draws it.
enum Calls {
    Trace(Trace),
    Churn(Churn),
}

impl Calls {
    fn replay<A: Arena>(&self, arena: &mut A) {
        let replayed = match self {
            Self::Trace(trace) => replay_whole(arena, trace),
            Self::Churn(churn) => replay_churn(arena, churn),
        };
        replayed.expect("the lab's region holds every workload");
    }

    fn events(&self) -> usize {
        match self {
            Self::Trace(trace) => trace.events().len(),
            Self::Churn(churn) => churn.events(),
        }
    }

    fn summary(&self) -> Summary {
        match self {
            Self::Trace(trace) => trace.summary(),
            Self::Churn(churn) => churn.summary(),
        }
    }
}

#[inline(never)]
fn measured<A: Arena>(arena: &mut A, calls: &Calls) {
    calls.replay(arena);
}

fn run<A: Arena>(arena: A, calls: &Calls, split: bool) {
    fn twice<A: Arena>(mut arena: A, calls: &Calls) {
        calls.replay(&mut arena);
        measured(&mut arena, calls);
    }
    if split {
        twice(Split(arena), calls);
    } else {
        twice(arena, calls);
    }
}

/// An arena whose calls are not inlined into the replay, so that callgrind's inclusive
/// cost of `Split::alloc`, `Split::free` and `Split::realloc` is each kind of call's own
/// (plus one call and return, the same for every allocator).
struct Split<A>(A);

impl<A: Arena> Arena for Split<A> {
    #[inline(never)]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.alloc(layout)
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.0.free(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// The scale study's churn at `live` blocks of `mix`, for a name `scale-random-N` or
/// `scale-hot-set-N`.
fn scale_point(name: &str, mix: SizeMix) -> Option<Churn> {
    let (pattern, live) = [Pattern::Random, Pattern::Hot]
        .into_iter()
        .find_map(|pattern| {
            let live = name.strip_prefix(&format!("scale-{}-", pattern.name()))?;
            Some((pattern, live.parse().ok()?))
        })?;
    let steps = scale::steps(heapkit_lab::Scale::Default, live);
    Some(scale::churn(live, steps, mix, pattern, 0x5eed))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workloads = heapkit_lab::builtin(heapkit_lab::Scale::Default, 0x5eed);
    let split = args.get(2).is_some_and(|a| a == "split");
    let (Some(allocator), Some(name)) = (args.first(), args.get(1)) else {
        let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
        println!(
            "usage: lab_ir bitmap|tlsf|talc|rlsf|pool|floor|floor-64 WORKLOAD [split]\n\
             workloads: {} scale-random-N scale-hot-set-N",
            names.join(" ")
        );
        return;
    };
    // The study's sizes: 64-byte blocks for the pool, as the study gives it.
    let mix = if allocator == "pool" || allocator == "floor-64" {
        SizeMix::Fixed(64)
    } else {
        SizeMix::UniformSmall
    };
    let (calls, region_len) = if let Some(churn) = scale_point(name, mix) {
        let len = scale::region_for(churn.live).max(REGION);
        (Calls::Churn(churn), len)
    } else {
        let workload = workloads
            .into_iter()
            .find(|w| &w.name == name)
            .unwrap_or_else(|| panic!("no workload {name}"));
        (Calls::Trace(workload.trace), REGION)
    };
    let region = Region::new(region_len, region_len).leak();
    match allocator.as_str() {
        "bitmap" => run(
            Heapkit(BitmapArena::with_region(region, 16).unwrap()),
            &calls,
            split,
        ),
        "tlsf" => run(heapkit_lab::peers::tlsf_over(region), &calls, split),
        "pool" => run(
            {
                let layout = calls
                    .summary()
                    .fixed_layout
                    .expect("the pool serves one layout: the scale points, with 64-byte blocks");
                Heapkit(
                    heapkit_pool::Pool::with_region(region, layout.size(), layout.align()).unwrap(),
                )
            },
            &calls,
            split,
        ),
        "talc" => run(heapkit_lab::peers::talc_over(region), &calls, split),
        "floor" | "floor-64" => {
            assert!(
                matches!(calls, Calls::Churn(_)),
                "the floor runs the scale points only: FreeStacks refuses the alignments above \
                 16 bytes that some workloads ask for"
            );
            run(FreeStacks::new(region), &calls, split);
        }
        "rlsf" => run(heapkit_lab::peers::rlsf_over(region), &calls, split),
        other => panic!("no allocator {other}"),
    }
    println!("events {}", calls.events());
}
