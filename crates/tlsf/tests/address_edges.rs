//! TLSF over regions at the edges of the address space: wrapping regions are refused, and
//! regions straddling 2 GiB, above 2 or 3 GiB or ending at the top of a 32-bit space get
//! their sentinel inside (it was once written `MAX_BLOCK` bytes on, wrapped: 2 GiB below
//! the region). Under miri for i686, where `cargo xtask miri-edges` runs this file; elsewhere the
//! real-memory part prints why it skips.

use heapkit_core::source::NoSource;
use heapkit_core::Local;
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions};
use heapkit_testkit::Profile;
use heapkit_tlsf::{GrowingTlsf, Tlsf};

const LEN: usize = 16 * 1024;

#[test]
fn wrapping_regions_are_refused() {
    refuses_wrapping_regions(1, |start, len| {
        let mut heap: Tlsf = Tlsf::new();
        // SAFETY: every region passed wraps and must be refused before it is touched.
        unsafe { heap.add_region(start, len) }
    });
    refuses_wrapping_regions(1, |start, len| {
        let mut heap: GrowingTlsf<NoSource> = GrowingTlsf::new(NoSource);
        // SAFETY: as above.
        unsafe { heap.add_region(start, len) }
    });
}

#[test]
fn regions_at_the_edges_keep_their_sentinel_inside() {
    let profile = Profile::new(4096, 4096);
    exercise_at_edges(profile, LEN, |start, len| {
        let mut heap: Tlsf = Tlsf::new();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
    exercise_at_edges(profile, LEN, |start, len| {
        // Small classes: the region is split into pieces of the largest block.
        let mut heap: Tlsf<8, 4> = Tlsf::with_classes();
        // SAFETY: as above.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
}
