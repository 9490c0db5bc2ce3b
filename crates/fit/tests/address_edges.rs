//! Every policy over regions at the edges of the address space: wrapping regions are
//! refused, and regions straddling 2 GiB, above 2 or 3 GiB or near the top of a 32-bit
//! space keep their blocks and sentinel inside. Under miri for i686, where
//! `cargo xtask miri-edges` runs this file; elsewhere the real-memory part prints why it
//! skips.

use heapkit_core::Local;
use heapkit_fit::{
    AddressOrderedFirstFit, BestFit, FirstFit, FitHeap, HeaderlessHeap, NextFit, Policy, Slob,
};
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions};
use heapkit_testkit::Profile;

const LEN: usize = 16 * 1024;

fn refuses<P: Policy>() {
    refuses_wrapping_regions(1, |start, len| {
        let mut heap = FitHeap::<P>::new();
        // SAFETY: every region passed wraps and must be refused before it is touched.
        unsafe { heap.add_region(start, len) }
    });
}

fn at_edges<P: Policy, const D: bool>() {
    exercise_at_edges(Profile::new(4096, 4096), LEN, |start, len| {
        let mut heap = FitHeap::<P, D>::new();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
}

#[test]
fn wrapping_regions_are_refused() {
    refuses::<FirstFit>();
    refuses::<NextFit>();
    refuses::<AddressOrderedFirstFit>();
    refuses::<BestFit>();
    refuses_wrapping_regions(1, |start, len| {
        let mut heap = HeaderlessHeap::<AddressOrderedFirstFit>::new();
        // SAFETY: as above.
        unsafe { heap.add_region(start, len) }
    });
    refuses_wrapping_regions(1, |start, len| {
        let mut slob = Slob::new();
        // SAFETY: as above.
        unsafe { slob.add_region(start, len) }
    });
}

#[test]
fn regions_at_the_edges_keep_their_blocks_inside() {
    // A list index with immediate coalescing and a tree index with deferred coalescing:
    // the arithmetic near the top is the heap's, shared by every policy.
    at_edges::<FirstFit, false>();
    at_edges::<BestFit, true>();
}

#[test]
fn slob_regions_at_the_edges_keep_their_pages_inside() {
    exercise_at_edges(Profile::new(4096, 4096), LEN, |start, len| {
        let mut slob = Slob::new();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { slob.add_region(start, len) }.unwrap();
        Local::new(slob)
    });
}

#[test]
fn headerless_regions_at_the_edges_keep_their_blocks_and_bitmaps_inside() {
    exercise_at_edges(Profile::new(4096, 4096), LEN, |start, len| {
        let mut heap = HeaderlessHeap::<BestFit>::new();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
}
