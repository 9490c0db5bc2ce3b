//! `Bump` over a buffer of fuzzed size and misalignment, then chunks from a source of
//! fuzzed chunk length, driven through the shadow model in phases: each phase runs between
//! a mark and a release to it, which must give back exactly what the phase took.
#![no_main]

use std::mem::MaybeUninit;

use arbitrary::Arbitrary;
use heapkit_region::Bump;
use heapkit_testkit::{ChunkSource, Harness, Op, Profile};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Bytes past an 8-byte boundary where the buffer starts, and its length in 64-byte
    /// units.
    buffer: (u8, u8),
    /// Chunk length in KiB, 1 to 64.
    chunk_kib: u8,
    phases: Vec<Vec<Op>>,
}

fuzz_target!(|input: Input| {
    let profile = Profile::new(8192, 4096).deferring().growing();
    let mut harness = Harness::new(profile, |regions| {
        let offset = usize::from(input.buffer.0 % 8);
        let len = 64 * usize::from(input.buffer.1);
        let whole = regions.take(offset + len + 1, 8);
        // SAFETY: the harness keeps its regions alive past the allocator, which is theirs.
        let whole = unsafe { &mut *(whole.as_ptr() as *mut [MaybeUninit<u8>]) };
        let chunk = 1024 * (1 + usize::from(input.chunk_kib % 64));
        Bump::with_buffer_and_source(
            &mut whole[offset..offset + len],
            ChunkSource::<8>::new(regions, chunk, 32),
        )
    });
    for phase in input.phases.iter().take(8) {
        let mark = harness.allocator().mark();
        let in_use = harness.allocator().stats().in_use;
        if let Err(error) = harness.run(phase) {
            panic!("{error}");
        }
        harness.allocator_mut().release(mark);
        assert_eq!(harness.allocator().mark(), mark);
        assert_eq!(harness.allocator().stats().in_use, in_use);
        harness.allocator().check().unwrap();
    }
});
