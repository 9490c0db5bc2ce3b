//! heapkit allocators under other crates' collections: hashbrown's `HashMap::new_in` on
//! the ready `Heap`, and a composition a user writes in ten lines.

use allocator_api2::{boxed::Box, vec::Vec};
use hashbrown::HashMap;
use heapkit_buddy::Buddy;
use heapkit_core::Local;
use heapkit_pool::Pool;
use heapkit_segregated::{Bucketizer, Fallback, Heap, Segregator};
use heapkit_testkit::Regions;
use heapkit_tlsf::Tlsf;

#[test]
fn hashbrown_runs_on_the_heap() {
    let mut regions = Regions::new();
    let len = 16 << 20;
    let region = regions.take(len, 4096);
    let mut heap = Heap::new();
    // SAFETY: `regions` outlives the heap and the map.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    let heap = Local::new(heap);
    let n = if cfg!(miri) { 60 } else { 20_000u64 };
    let mut map = HashMap::new_in(&heap);
    for i in 0..n {
        let mut value = Vec::new_in(&heap);
        value.extend(0..i % 17);
        map.insert(i, value);
    }
    assert_eq!(map.len() as u64, n);
    assert!((0..n).all(|i| map[&i].len() as u64 == i % 17));
    map.retain(|k, _| k % 3 == 0);
    assert_eq!(map.len() as u64, n.div_ceil(3));
    drop(map);
    assert_eq!(heap.stats().in_use, 0);
}

/// Pools for 32/64/128/256-byte objects, TLSF for the rest, a buddy when TLSF is full.
type MyHeap = Segregator<256, Bucketizer<Pool, 4>, Fallback<Tlsf, Buddy<16>>>;

#[test]
fn a_users_own_composition_in_ten_lines() {
    let mut regions = Regions::new();
    let mut take = |len| regions.take(len, 4096).cast::<u8>();
    let limits = [32, 64, 128, 256];
    // Under miri a smaller TLSF and vector: the vector still outgrows the TLSF.
    let (tlsf_len, count, boxes) = if cfg!(miri) {
        (16 << 10, 10_000u32, 200u64)
    } else {
        (256 << 10, 100_000u32, 1000u64)
    };
    // SAFETY: each region is the allocator's alone and outlives it.
    let pools =
        limits.map(|block| unsafe { Pool::from_raw(take(64 << 10), 64 << 10, block, 16) }.unwrap());
    let (mut tlsf, mut buddy) = (Tlsf::new(), Buddy::new(16).unwrap());
    // SAFETY: as above.
    unsafe { tlsf.add_region(take(tlsf_len), tlsf_len).unwrap() };
    // SAFETY: as above.
    // 2 MiB: whatever its address, it holds an aligned 1 MiB block for the 400 KB vector
    // and the one it grows from.
    unsafe { buddy.add_region(take(2 << 20), 2 << 20).unwrap() };
    let heap: Local<MyHeap> = Local::new(Segregator::new(
        Bucketizer::new(pools, limits).unwrap(),
        Fallback::new(tlsf, buddy),
    ));

    let small: Vec<Box<u64, _>> = (0..boxes).map(|i| Box::new_in(i, &heap)).collect();
    let mut big = Vec::new_in(&heap);
    big.extend(0..count); // 400 KB (40 KB under miri): more than TLSF holds, so the buddy serves it
    assert!(big.capacity() * 4 > tlsf_len);
    assert_eq!(
        small.iter().map(|b| **b).sum::<u64>(),
        boxes * (boxes - 1) / 2
    );
    let count = u64::from(count);
    assert_eq!(
        big.iter().map(|&x| u64::from(x)).sum::<u64>(),
        count * (count - 1) / 2
    );
    drop((small, big));
    assert_eq!(heap.stats().in_use, 0);
}
