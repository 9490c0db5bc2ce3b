//! The ready `Heap` (slab classes over TLSF) over one region of fuzzed size and
//! misalignment, driven through the shadow model; the chunk cache is trimmed at the end,
//! after which the heap must be exactly as it started.
#![no_main]

use std::ptr::NonNull;

use arbitrary::Arbitrary;
use heapkit_core::Local;
use heapkit_segregated::Heap;
use heapkit_testkit::{Harness, Op, Profile};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Bytes past a 4 KiB boundary, and size in 64 KiB units (1-16).
    offset: u8,
    size: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(Profile::new(4096, 4096).caching(), |regions| {
        let offset = usize::from(input.offset);
        let len = 65_536 * (1 + usize::from(input.size % 16));
        let region = regions.take(offset + len, 4096);
        let start = NonNull::new(region.cast::<u8>().as_ptr().wrapping_add(offset)).unwrap();
        let mut heap = Heap::new();
        // SAFETY: inside a region the harness keeps alive past the allocator.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
    let initial = harness.initial_stats();
    if let Err(error) = harness.run(&input.ops) {
        panic!("{error}");
    }
    let heap = harness.allocator_mut();
    // SAFETY: `run` freed every block it allocated; trimming keeps the backend in place.
    unsafe { heap.get_mut() }.trim();
    assert_eq!(heap.stats(), initial, "trim did not restore the heap");
});
