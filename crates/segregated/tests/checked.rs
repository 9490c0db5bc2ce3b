//! With `checked`, a free or resize that its layout routes to the wrong child panics with
//! the crate, the operation and the address, before the child is touched.
#![cfg(feature = "checked")]

use heapkit_core::{Backend, Layout};
use heapkit_pool::Pool;
use heapkit_segregated::{Bucketizer, Fallback, Heap, Segregator};
use heapkit_testkit::{panic_message, Regions};
use heapkit_tlsf::Tlsf;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn pool(regions: &mut Regions, block: usize) -> Pool {
    let region = regions.take(4096, 4096);
    // SAFETY: `regions` outlives the allocators.
    unsafe { Pool::from_raw(region.cast(), 4096, block, 16) }.unwrap()
}

fn tlsf(regions: &mut Regions) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(1 << 20, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), 1 << 20) }.unwrap();
    heap
}

fn expect(message: &str, operation: &str, reason: &str) {
    let prefix = format!("heapkit-segregated: invalid {operation} of 0x");
    assert!(message.starts_with(&prefix), "{message:?}");
    assert!(message.contains(reason), "{message:?} lacks {reason:?}");
}

#[test]
fn segregator_catches_a_large_block_freed_as_small() {
    let mut regions = Regions::new();
    let mut seg = Segregator::<256, _, _>::new(pool(&mut regions, 256), tlsf(&mut regions));
    let big = seg.allocate(layout(1000)).unwrap().cast::<u8>();
    // SAFETY: deliberately routed wrong; `checked` stops it before the pool is touched.
    let message = panic_message(|| unsafe { seg.deallocate(big, layout(100)) });
    expect(&message, "deallocate", "routes it to the small allocator");
}

#[test]
fn bucketizer_catches_a_block_freed_with_another_class() {
    let mut regions = Regions::new();
    let children = [pool(&mut regions, 32), pool(&mut regions, 64)];
    let mut buckets = Bucketizer::new(children, [32, 64]).unwrap();
    let block = buckets.allocate(layout(20)).unwrap().cast::<u8>();
    // SAFETY: deliberately routed wrong.
    let message = panic_message(|| unsafe { buckets.deallocate(block, layout(50)) });
    expect(
        &message,
        "deallocate",
        "routes it to the size-class allocator",
    );
}

#[test]
fn fallback_catches_a_pointer_neither_child_owns() {
    let mut regions = Regions::new();
    let mut both = Fallback::new(pool(&mut regions, 64), tlsf(&mut regions));
    let mut elsewhere = [0u64; 8];
    let foreign = core::ptr::NonNull::from(&mut elsewhere[4]).cast::<u8>();
    // SAFETY: deliberately invalid.
    let message = panic_message(|| unsafe { both.deallocate(foreign, layout(64)) });
    expect(
        &message,
        "deallocate",
        "secondary allocator, which does not own it",
    );
}

#[test]
fn heap_catches_a_medium_block_freed_as_small_and_a_wrong_class() {
    let mut regions = Regions::new();
    let mut heap = Heap::new();
    let region = regions.take(1 << 20, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), 1 << 20) }.unwrap();
    let medium = heap.allocate(layout(1000)).unwrap().cast::<u8>();
    // SAFETY: deliberately routed wrong.
    let message = panic_message(|| unsafe { heap.deallocate(medium, layout(100)) });
    expect(&message, "deallocate", "lies in no slab chunk");
    let small = heap.allocate(layout(40)).unwrap().cast::<u8>();
    // SAFETY: deliberately routed to the 96-byte class instead of the 48-byte one.
    let message = panic_message(|| unsafe { heap.deallocate(small, layout(90)) });
    expect(&message, "deallocate", "its chunk is another's");
    // The heap is unharmed: both blocks free normally.
    // SAFETY: live blocks with their layouts.
    unsafe {
        heap.deallocate(small, layout(40));
        heap.deallocate(medium, layout(1000));
    }
    assert_eq!(heap.stats().in_use, 0);
}
