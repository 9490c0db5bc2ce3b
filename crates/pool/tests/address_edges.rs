//! Pools over regions at the edges of the address space: wrapping regions are refused,
//! and regions straddling 2 GiB or ending at the top of a 32-bit space work (under miri for
//! i686, where `cargo xtask miri-edges` runs this file; elsewhere those print why they skip).

use core::ptr::NonNull;

use heapkit_core::{Local, Shared};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions};
use heapkit_testkit::Profile;

const BLOCK: usize = 48;
const ALIGN: usize = 16;
const LEN: usize = 16 * 1024;

/// The first `ALIGN` boundary in `start..start + len`, and the bytes from it.
fn aligned(start: NonNull<u8>, len: usize) -> (NonNull<u8>, usize) {
    let pad = start.as_ptr().align_offset(ALIGN);
    (
        NonNull::new(start.as_ptr().wrapping_add(pad)).unwrap(),
        len - pad,
    )
}

#[test]
fn wrapping_regions_are_refused() {
    // SAFETY: every region passed wraps and must be refused before it is touched.
    refuses_wrapping_regions(ALIGN, |start, len| unsafe {
        Pool::from_raw(start, len, BLOCK, ALIGN).map(drop)
    });
    // SAFETY: as above.
    refuses_wrapping_regions(ALIGN, |start, len| unsafe {
        AtomicPool::from_raw(start, len, BLOCK, ALIGN).map(drop)
    });
}

#[test]
fn pools_work_at_the_edges() {
    let profile = Profile::new(BLOCK, ALIGN);
    exercise_at_edges(profile, LEN, |start, len| {
        let (start, len) = aligned(start, len);
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        Local::new(unsafe { Pool::from_raw(start, len, BLOCK, ALIGN) }.unwrap())
    });
    exercise_at_edges(profile, LEN, |start, len| {
        let (start, len) = aligned(start, len);
        // SAFETY: as above.
        Shared::new(unsafe { AtomicPool::from_raw(start, len, BLOCK, ALIGN) }.unwrap())
    });
}
