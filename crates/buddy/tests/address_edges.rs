//! The buddy system over regions at the edges of the address space: wrapping regions are
//! refused, and regions straddling 2 GiB or ending at the top of a 32-bit space are carved
//! without wrapping (under miri for i686, where `cargo xtask miri-edges` runs this file;
//! elsewhere those print why they skip).

use heapkit_buddy::Buddy;
use heapkit_core::Local;
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions};
use heapkit_testkit::Profile;

/// 16 B to 1 GiB: a region straddling 3 GiB holds `0xC000_0000`, aligned to a 1 GiB block
/// that would end exactly at 2^32; carving once took it whole (`at + size` wrapped to 0),
/// handing out memory past the region. Likewise 512 MiB at `0xE000_0000`.
type Heap = Buddy<27>;
const LEN: usize = 16 * 1024;

#[test]
fn wrapping_regions_are_refused() {
    refuses_wrapping_regions(1, |start, len| {
        let mut heap = Heap::new(16).unwrap();
        // SAFETY: every region passed wraps and must be refused before it is touched.
        unsafe { heap.add_region(start, len) }
    });
}

#[test]
fn regions_at_the_edges_are_carved_inside() {
    exercise_at_edges(Profile::new(4096, 4096), LEN, |start, len| {
        let mut heap = Heap::new(16).unwrap();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(start, len) }.unwrap();
        Local::new(heap)
    });
}
