//! Bitmap arenas over regions at the edges of the address space: wrapping regions are
//! refused, and regions straddling 2 GiB or ending at the top of a 32-bit space work (under
//! miri for i686, where `cargo xtask miri-edges` runs this file; elsewhere those print why they
//! skip).

use core::ptr::NonNull;

use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Backend, Layout, Local, Shared};
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions, with_edge_memory};
use heapkit_testkit::Profile;

const BLOCK: usize = 16;
const LEN: usize = 16 * 1024;

/// The first `align` boundary in `start..start + len`, and the bytes from it.
fn aligned(start: NonNull<u8>, len: usize, align: usize) -> (NonNull<u8>, usize) {
    let pad = start.as_ptr().align_offset(align);
    (
        NonNull::new(start.as_ptr().wrapping_add(pad)).unwrap(),
        len - pad,
    )
}

#[test]
fn wrapping_regions_are_refused() {
    // SAFETY: every region passed wraps and must be refused before it is touched.
    refuses_wrapping_regions(8, |start, len| unsafe {
        BitmapArena::from_raw(start, len, BLOCK).map(drop)
    });
    // SAFETY: as above.
    refuses_wrapping_regions(BLOCK, |start, len| unsafe {
        AtomicBitmap::from_raw(start, len, BLOCK).map(drop)
    });
}

#[test]
fn arenas_work_at_the_edges() {
    exercise_at_edges(Profile::new(1024, 256), LEN, |start, len| {
        let (start, len) = aligned(start, len, 8);
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        Local::new(unsafe { BitmapArena::from_raw(start, len, BLOCK) }.unwrap())
    });
    exercise_at_edges(Profile::new(BLOCK, BLOCK), LEN, |start, len| {
        let (start, len) = aligned(start, len, BLOCK);
        // SAFETY: as above.
        Shared::new(unsafe { AtomicBitmap::from_raw(start, len, BLOCK) }.unwrap())
    });
}

#[test]
fn alignment_past_the_top_is_refused() {
    // One-byte blocks index blocks by address; a 1 GiB alignment above 3 GiB has no
    // aligned start below 2^32. Rounding up to it once overflowed.
    with_edge_memory(|memory| {
        let start = memory
            .at(0xC000_1000, 1 << 16)
            .expect("edge memory at 3 GiB");
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        let mut arena = unsafe { BitmapArena::from_raw(start, 1 << 16, 1) }.unwrap();
        let before = arena.stats();
        let huge_alignment = Layout::from_size_align(1, 1 << 30).unwrap();
        assert!(arena.allocate(huge_alignment).is_err());
        assert_eq!(arena.stats(), before);
    });
}
