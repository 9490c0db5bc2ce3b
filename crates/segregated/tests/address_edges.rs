//! The ready `Heap` over regions at the edges of the address space: wrapping regions are
//! refused, and regions straddling 2 GiB or ending at the top of a 32-bit space work, slab
//! chunks included (under miri for i686, where `cargo xtask miri-edges` runs this file;
//! elsewhere those print why they skip).

use heapkit_core::Local;
use heapkit_segregated::Heap;
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions};
use heapkit_testkit::Profile;

/// Room for a few 64 KiB slab chunks beside the large requests.
const LEN: usize = 512 * 1024;

#[test]
fn wrapping_regions_are_refused() {
    refuses_wrapping_regions(1, |start, len| {
        let mut heap = Heap::new();
        // SAFETY: every region passed wraps and must be refused before it is touched.
        unsafe { heap.add_region(start, len) }
    });
}

#[test]
fn the_heap_works_at_the_edges() {
    exercise_at_edges(Profile::new(4096, 4096).caching(), LEN, |start, len| {
        let mut heap = Heap::new();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
}
