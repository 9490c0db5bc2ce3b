//! The sharded heap over one chunk at each edge placement of a 32-bit address space
//! (straddling 2 GiB, above 2 or 3 GiB, ending at the top): segments found by masking,
//! huge blocks and the alignment slack all stay inside the chunk. Under miri for i686,
//! where `cargo xtask miri-edges` runs this file; elsewhere the real-memory part prints
//! why it skips. (Written by adversarial review.)

use core::ptr::NonNull;

use heapkit_core::{Shared, Source};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::ShardedHeap;
use heapkit_testkit::edges::exercise_at_edges;
use heapkit_testkit::Profile;

/// One chunk (the placement), handed out while free.
struct OneChunk {
    chunk: NonNull<[u8]>,
    out: bool,
}

// SAFETY: the edge memory is the test's; handed out once at a time, whole.
unsafe impl Send for OneChunk {}

// SAFETY: the chunk is valid memory reserved for the process, used by one test at a time.
unsafe impl Source for OneChunk {
    const CHUNK_ALIGN: usize = 1;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        if self.out || min_len > self.chunk.len() {
            return None;
        }
        self.out = true;
        Some(self.chunk)
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        assert_eq!(chunk, self.chunk);
        self.out = false;
    }
}

#[test]
fn the_sharded_heap_works_at_the_edges_of_the_address_space() {
    let len = 3 * SEGMENT;
    exercise_at_edges(Profile::new(4096, 4096).growing(), len, |start, len| {
        Shared::new(ShardedHeap::new(OneChunk {
            chunk: NonNull::slice_from_raw_parts(start, len),
            out: false,
        }))
    });
}
