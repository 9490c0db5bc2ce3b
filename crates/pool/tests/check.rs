//! `check` finds a corrupted free list where the corruption happens: a write into a freed
//! block (a use after free) that overwrites its link.

use heapkit_core::{Backend, Layout};
use heapkit_pool::Pool;
use heapkit_testkit::Regions;

#[test]
fn a_use_after_free_that_breaks_the_free_list_is_reported() {
    let mut regions = Regions::new();
    let region = regions.take(64 * 16, 16);
    // SAFETY: `regions` outlives the pool.
    let mut pool = unsafe { Pool::from_raw(region.cast(), region.len(), 64, 16) }.unwrap();
    let layout = Layout::from_size_align(64, 16).unwrap();
    let [a, b] = [0; 2].map(|_| pool.allocate(layout).unwrap().cast::<u8>());
    // SAFETY: live blocks with this layout.
    unsafe {
        pool.deallocate(a, layout);
        pool.deallocate(b, layout);
    }
    assert_eq!(pool.check(), Ok(()));
    // SAFETY: the region is the test's memory; this is the bug a program would have.
    unsafe {
        b.as_ptr()
            .cast::<usize>()
            .write_unaligned(a.as_ptr().addr() + 3)
    };
    let corruption = pool.check().unwrap_err();
    assert_eq!(corruption.allocator, "heapkit-pool");
    assert_eq!(
        corruption.what,
        "free list link is not a used block of the pool"
    );
    assert_eq!(corruption.address, a.as_ptr().addr() + 3);
    // A link back to itself: a cycle the walk must not follow forever.
    // SAFETY: as above.
    unsafe {
        b.as_ptr()
            .cast::<usize>()
            .write_unaligned(b.as_ptr().addr())
    };
    assert_eq!(
        pool.check().unwrap_err().what,
        "free list longer than the free count (a cycle?)"
    );
}
