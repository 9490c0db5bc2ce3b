//! `check` finds broken free lists and unmerged buddies where they happen.

use heapkit_buddy::Buddy;
use heapkit_core::{Backend, Layout};
use heapkit_testkit::Regions;

#[test]
fn a_use_after_free_that_breaks_a_list_is_reported() {
    let mut regions = Regions::new();
    let region = regions.take(64 * 1024, 4096);
    let mut heap: Buddy<8> = Buddy::new(16).unwrap();
    // SAFETY: `regions` outlives the heap.
    unsafe { heap.add_region(region.cast(), region.len()) }.unwrap();
    let small = Layout::from_size_align(16, 16).unwrap();
    let kept = heap.allocate(small).unwrap().cast::<u8>();
    let freed = heap.allocate(small).unwrap().cast::<u8>();
    // SAFETY: live with this layout. Its buddy `kept` is live, so it stays on the list.
    unsafe { heap.deallocate(freed, small) };
    assert_eq!(heap.check(), Ok(()));
    // SAFETY: the region is the test's memory; the freed block's back link is overwritten.
    unsafe { freed.cast::<usize>().write(0x40) };
    let corruption = heap.check().unwrap_err();
    assert_eq!(corruption.allocator, "heapkit-buddy");
    assert_eq!(corruption.what, "list node's back link is wrong");
    assert_eq!(corruption.address, freed.as_ptr().addr());
    // SAFETY: restore the link (null: the head of its list), then free the buddy too.
    unsafe {
        freed.cast::<usize>().write(0);
        heap.deallocate(kept, small);
    }
    assert_eq!(heap.check(), Ok(()));
}
