//! `Tlsf<10, 8>` (blocks below 64 KiB, so larger regions are split) over one to three
//! regions of fuzzed size and misalignment, driven through the shadow model.
#![no_main]

use std::ptr::NonNull;

use arbitrary::Arbitrary;
use heapkit_core::Local;
use heapkit_testkit::{Harness, Op, Profile};
use heapkit_tlsf::Tlsf;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// (bytes past a 4 KiB boundary, KiB) of each region; one to three are used.
    regions: [(u8, u8); 3],
    region_count: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let count = 1 + usize::from(input.region_count % 3);
    let result = Harness::new(Profile::new(8192, 4096), |regions| {
        let mut heap = Tlsf::<10, 8>::with_classes();
        for &(offset, kib) in &input.regions[..count] {
            let offset = usize::from(offset);
            let len = 1024 * (1 + usize::from(kib % 160));
            let region = regions.take(offset + len, 4096);
            let start = NonNull::new(region.cast::<u8>().as_ptr().wrapping_add(offset)).unwrap();
            // SAFETY: inside a region the harness keeps alive past the allocator.
            unsafe { heap.add_region(start, len) }.unwrap();
        }
        Local::new(heap)
    })
    .run(&input.ops);
    if let Err(error) = result {
        panic!("{error}");
    }
});
