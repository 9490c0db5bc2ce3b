//! Every placement policy of heapkit-fit, with immediate or deferred coalescing, the
//! headerless heap's two policies, and SLOB, over one or two regions of fuzzed size and
//! misalignment, driven through the shadow model (which runs the heap's own `check()`
//! after the operations).
#![no_main]

use std::ptr::NonNull;

use arbitrary::Arbitrary;
use heapkit_core::Local;
use heapkit_fit::{
    AddressOrderedFirstFit, BestFit, FirstFit, FitHeap, HeaderlessHeap, NextFit, Policy, Slob,
    TreePolicy,
};
use heapkit_testkit::{Harness, Op, Profile, Regions, Subject};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Which allocator: four policies, each immediate or deferred, two headerless, and SLOB.
    allocator: u8,
    /// (bytes past a 4 KiB boundary, KiB) of each region; one or two are used.
    regions: [(u8, u8); 2],
    two_regions: bool,
    ops: Vec<Op>,
}

/// The regions `input` describes, taken from `regions`: (start, length) each.
fn spans(input: &Input, regions: &mut Regions) -> Vec<(NonNull<u8>, usize)> {
    let count = 1 + usize::from(input.two_regions);
    input.regions[..count]
        .iter()
        .map(|&(offset, kib)| {
            let offset = usize::from(offset);
            let len = 1024 * (1 + usize::from(kib % 96));
            let region = regions.take(offset + len, 4096);
            let start = NonNull::new(region.cast::<u8>().as_ptr().wrapping_add(offset)).unwrap();
            (start, len)
        })
        .collect()
}

fn drive<A: Subject>(input: &Input, make: impl Fn(&mut Regions) -> A) {
    let result = Harness::new(Profile::new(8192, 4096), make).run(&input.ops);
    if let Err(error) = result {
        panic!("{error}");
    }
}

fn fit<P: Policy, const D: bool>(input: &Input) {
    drive(input, |regions| {
        let mut heap = FitHeap::<P, D>::new();
        for (start, len) in spans(input, regions) {
            // SAFETY: inside a region the harness keeps alive past the allocator. A region
            // too small for a block is refused and simply not used.
            let _ = unsafe { heap.add_region(start, len) };
        }
        Local::new(heap)
    });
}

fn headerless<P: TreePolicy>(input: &Input) {
    drive(input, |regions| {
        let mut heap = HeaderlessHeap::<P>::new();
        for (start, len) in spans(input, regions) {
            // SAFETY: as in `fit`.
            let _ = unsafe { heap.add_region(start, len) };
        }
        Local::new(heap)
    });
}

fuzz_target!(|input: Input| {
    match input.allocator % 11 {
        0 => fit::<FirstFit, false>(&input),
        1 => fit::<FirstFit, true>(&input),
        2 => fit::<NextFit, false>(&input),
        3 => fit::<NextFit, true>(&input),
        4 => fit::<AddressOrderedFirstFit, false>(&input),
        5 => fit::<AddressOrderedFirstFit, true>(&input),
        6 => fit::<BestFit, false>(&input),
        7 => fit::<BestFit, true>(&input),
        8 => headerless::<AddressOrderedFirstFit>(&input),
        9 => headerless::<BestFit>(&input),
        _ => drive(&input, |regions| {
            let mut slob = Slob::new();
            for (start, len) in spans(&input, regions) {
                // SAFETY: as above.
                let _ = unsafe { slob.add_region(start, len) };
            }
            Local::new(slob)
        }),
    }
});
