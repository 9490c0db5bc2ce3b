//! `Heap::check` checks TLSF and every slab chunk's pool: a use after free in a slab block
//! is reported, naming the pool.

use heapkit_core::{Backend, Layout};
use heapkit_segregated::Heap;
use heapkit_testkit::Regions;

#[test]
fn a_use_after_free_in_a_slab_is_reported() {
    let mut regions = Regions::new();
    let region = regions.take(1 << 20, 4096);
    let mut heap = Heap::new();
    // SAFETY: `regions` outlives the heap.
    unsafe { heap.add_region(region.cast(), region.len()) }.unwrap();
    let small = Layout::from_size_align(32, 8).unwrap();
    let [a, b] = [0; 2].map(|_| heap.allocate(small).unwrap().cast::<u8>());
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(b, small) };
    assert_eq!(heap.check(), Ok(()));
    // SAFETY: the region is the test's memory; the freed block's link is overwritten.
    unsafe { b.as_ptr().cast::<usize>().write_unaligned(1) };
    let corruption = heap.check().unwrap_err();
    assert_eq!(corruption.allocator, "heapkit-pool");
    assert_eq!(corruption.address, 1);
    let _ = a;
}
