//! The buddy system over regions at the edges of the address space: wrapping regions are
//! refused, and regions straddling 2 GiB or ending at the top of a 32-bit space are carved
//! without wrapping (under miri for i686, where `cargo xtask miri-edges` runs this file;
//! elsewhere those print why they skip).

use heapkit_buddy::Buddy;
use heapkit_core::{Backend, Layout, Local};
use heapkit_testkit::edges::{exercise_at_edges, refuses_wrapping_regions, with_edge_memory};
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

#[test]
fn the_block_below_the_topmost_buddy_frees_and_grows() {
    // A 256 MiB block at 0xE000_0000: its buddy, [0xF000_0000, 2^32), ends at the top of
    // the address space. Freeing it once asked whether `0xF000_0000 + 256 MiB` (wrapped
    // to 0) was inside the region; growing a block there added the same way.
    const MIB: usize = 1 << 20;
    with_edge_memory(|memory| {
        // 64 KiB in front hold the header and bitmaps (32 KiB with `checked`).
        let start = 0xE000_0000 - 64 * 1024;
        let len = 256 * MIB + 64 * 1024;
        let region = memory
            .at(start, len)
            .expect("edge memory covers 0xE000_0000");
        // 4 KiB to 512 MiB: a freed 256 MiB block looks for its buddy to merge with.
        let mut heap: Buddy<18> = Buddy::new(4096).unwrap();
        // SAFETY: edge memory, reserved for the process, used by one test at a time.
        unsafe { heap.add_region(region, len) }.unwrap();
        let initial = heap.stats();
        let whole = Layout::from_size_align(256 * MIB, 4096).unwrap();
        let block = heap.allocate(whole).unwrap().cast::<u8>();
        assert_eq!(block.as_ptr().addr(), 0xE000_0000);
        // SAFETY: live with `whole`.
        unsafe { heap.deallocate(block, whole) };
        assert_eq!(heap.stats(), initial);
        // The last 4 KiB block of the region, grown: it has no room above.
        let page = Layout::from_size_align(4096, 4096).unwrap();
        let blocks: Vec<_> = std::iter::from_fn(|| heap.allocate(page).ok())
            .take(3)
            .collect();
        let last = blocks
            .iter()
            .max_by_key(|b| b.cast::<u8>().as_ptr().addr())
            .unwrap();
        let two = Layout::from_size_align(8192, 4096).unwrap();
        // SAFETY: live with `page`; a refused grow changes nothing.
        let _ = unsafe { heap.grow_in_place(last.cast(), page, two) };
        for block in blocks {
            // SAFETY: live; a grow that succeeded keeps the block at least `page` long.
            let usable = unsafe { heap.shrink_in_place(block.cast(), page, page) }.unwrap();
            let layout = Layout::from_size_align(usable.len(), 4096).unwrap();
            // SAFETY: live with a layout it fits.
            unsafe { heap.deallocate(block.cast(), layout) };
        }
        assert_eq!(heap.stats(), initial);
    });
}
