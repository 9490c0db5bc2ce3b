//! Routing at and around every limit, resizing across limits, and the Heap's chunk policy.

use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_core::{Backend, Layout, Local};
use heapkit_pool::Pool;
use heapkit_segregated::{Bucketizer, Counted, Fallback, Heap, Segregator, CHUNK, SLAB_LIMIT};
use heapkit_testkit::Regions;
use heapkit_tlsf::Tlsf;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn pool(regions: &mut Regions, block: usize, blocks: usize) -> Pool {
    let len = block * blocks + 64;
    let region = regions.take(len, 4096);
    // SAFETY: `regions` outlives every allocator in these tests.
    unsafe { Pool::from_raw(region.cast(), len, block, 16) }.unwrap()
}

fn tlsf(regions: &mut Regions, len: usize) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(len, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

fn heap(regions: &mut Regions, len: usize) -> Heap {
    let mut heap = Heap::new();
    let region = regions.take(len, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

#[test]
fn segregator_routes_at_the_limit_and_by_alignment() {
    let mut regions = Regions::new();
    let small = pool(&mut regions, 512, 16);
    let mut seg = Segregator::<256, _, _>::new(small, tlsf(&mut regions, 64 * 1024));
    let (small_ptr, small_len) = {
        let block = seg.allocate(layout(256, 8)).unwrap();
        (block.cast::<u8>(), block.len())
    };
    assert_eq!(small_len, 256, "usable length trimmed to the limit");
    let (pool_side, tlsf_side) = seg.parts();
    assert!(pool_side.owns(small_ptr) && !tlsf_side.owns(small_ptr));
    let big = seg.allocate(layout(257, 8)).unwrap().cast::<u8>();
    assert!(seg.parts().1.owns(big));
    // Small but more aligned than the pool's 16 bytes: the large side.
    let aligned = seg.allocate(layout(8, 64)).unwrap().cast::<u8>();
    assert!(seg.parts().1.owns(aligned));
    // SAFETY: live blocks with their layouts.
    unsafe {
        seg.deallocate(small_ptr, layout(256, 8));
        seg.deallocate(big, layout(257, 8));
        seg.deallocate(aligned, layout(8, 64));
    }
    assert_eq!(seg.stats().in_use, 0);
}

#[test]
fn resizing_across_a_limit_moves_the_block_to_the_other_side() {
    let mut regions = Regions::new();
    let small = pool(&mut regions, 512, 16);
    let seg = Local::new(Segregator::<256, _, _>::new(
        small,
        tlsf(&mut regions, 64 * 1024),
    ));
    let block = seg.allocate(layout(200, 8)).unwrap().cast::<u8>();
    // SAFETY: writing inside the 200 bytes just allocated.
    unsafe { block.as_ptr().write_bytes(0xAB, 200) };
    // Within the small side: in place.
    // SAFETY: live block with its layout.
    let same = unsafe { seg.grow(block, layout(200, 8), layout(256, 8)) }.unwrap();
    assert_eq!(same.cast::<u8>(), block);
    // Across the limit: moved to TLSF, contents kept.
    // SAFETY: as above.
    let moved = unsafe { seg.grow(block, layout(256, 8), layout(1000, 8)) }.unwrap();
    let moved = moved.cast::<u8>();
    assert_ne!(moved, block);
    // SAFETY: the first 200 bytes were copied.
    assert!(unsafe { core::slice::from_raw_parts(moved.as_ptr(), 200) }
        .iter()
        .all(|&b| b == 0xAB));
    // TLSF's usable size: 1000 + 8 bytes of header round to a 1008-byte block.
    assert_eq!(seg.stats().in_use, 1000);
    // And back down under the limit: moved to the pool again.
    // SAFETY: as above.
    let back = unsafe { seg.shrink(moved, layout(1000, 8), layout(100, 8)) }.unwrap();
    assert_eq!(back.len(), 256, "a trimmed pool block");
    let back = back.cast::<u8>();
    assert!(seg.owns(back));
    // SAFETY: as above.
    unsafe { seg.deallocate(back, layout(100, 8)) };
    assert_eq!(seg.stats().in_use, 0);
}

#[test]
fn bucketizer_routes_each_size_to_its_class() {
    let mut regions = Regions::new();
    let limits = [32, 64, 128, 256];
    let children = limits.map(|limit| pool(&mut regions, limit, 8));
    let mut buckets = Bucketizer::new(children, limits).unwrap();
    for (size, class) in [
        (1, 0),
        (32, 0),
        (33, 1),
        (64, 1),
        (65, 2),
        (128, 2),
        (129, 3),
        (256, 3),
    ] {
        assert_eq!(buckets.class_of(size), Some(class), "size {size}");
        let block = buckets.allocate(layout(size, 8)).unwrap();
        assert_eq!(block.len(), limits[class]);
        let ptr = block.cast::<u8>();
        assert!(buckets.children()[class].owns(ptr));
        // SAFETY: live block with its layout.
        unsafe { buckets.deallocate(ptr, layout(size, 8)) };
    }
    assert_eq!(buckets.class_of(257), None);
    assert!(buckets.allocate(layout(257, 8)).is_err());
    // Growing within a class is in place; across classes it is refused in place.
    let block = buckets.allocate(layout(40, 8)).unwrap().cast::<u8>();
    // SAFETY: live block.
    unsafe {
        assert!(buckets
            .grow_in_place(block, layout(40, 8), layout(64, 8))
            .is_ok());
        assert!(buckets
            .grow_in_place(block, layout(64, 8), layout(65, 8))
            .is_err());
        buckets.deallocate(block, layout(64, 8));
    }
    let error = Bucketizer::new(
        [pool(&mut regions, 32, 1), pool(&mut regions, 32, 1)],
        [32, 32],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "bucket limit 32 is outside 33..=18446744073709551615"
    );
}

#[test]
fn fallback_overflows_into_the_secondary_and_frees_by_ownership() {
    let mut regions = Regions::new();
    let mut both = Fallback::new(pool(&mut regions, 64, 4), tlsf(&mut regions, 64 * 1024));
    let blocks: Vec<_> = (0..10)
        .map(|_| both.allocate(layout(64, 8)).unwrap().cast::<u8>())
        .collect();
    let (primary, secondary) = both.parts();
    let in_pool = primary.total_blocks();
    assert!(in_pool >= 4);
    assert_eq!(blocks.iter().filter(|&&b| primary.owns(b)).count(), in_pool);
    assert_eq!(
        blocks.iter().filter(|&&b| secondary.owns(b)).count(),
        10 - in_pool
    );
    for block in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { both.deallocate(block, layout(64, 8)) };
    }
    assert_eq!(both.stats().in_use, 0);
}

#[test]
fn counted_counts_calls_bytes_peak_and_sizes() {
    let mut regions = Regions::new();
    let mut counted = Counted::new(tlsf(&mut regions, 64 * 1024));
    let a = counted.allocate(layout(100, 8)).unwrap().cast::<u8>();
    let b = counted.allocate(layout(3000, 8)).unwrap().cast::<u8>();
    assert!(counted.allocate(layout(1 << 20, 8)).is_err());
    // SAFETY: live blocks with their layouts.
    unsafe {
        counted
            .grow_in_place(b, layout(3000, 8), layout(3100, 8))
            .unwrap();
        counted.deallocate(a, layout(100, 8));
    }
    let counts = *counted.counts();
    assert_eq!(
        (counts.allocations, counts.failures, counts.grows),
        (2, 1, 1)
    );
    assert_eq!(counts.deallocations, 1);
    assert_eq!(counts.bytes_allocated, 3100);
    assert_eq!(counts.live_bytes, 3100);
    assert_eq!(counts.peak_live_bytes, 3200);
    assert_eq!(counts.sizes[7], 1); // 100 bytes: 65..=128
    assert_eq!(counts.sizes[12], 1); // 3000 bytes: 2049..=4096
    assert_eq!(counts.sizes[20], 1); // 1 MiB: 512 KiB + 1 ..= 1 MiB
                                     // SAFETY: live block.
    unsafe { counted.deallocate(b, layout(3100, 8)) };
}

#[test]
fn heap_routes_by_slab_limit_and_alignment() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions, 1 << 20);
    let slab = heap.allocate(layout(SLAB_LIMIT, 16)).unwrap();
    assert_eq!(slab.len(), SLAB_LIMIT);
    let medium = heap.allocate(layout(SLAB_LIMIT + 1, 16)).unwrap();
    assert!(medium.len() > SLAB_LIMIT);
    let aligned = heap.allocate(layout(16, 32)).unwrap();
    assert_eq!(aligned.cast::<u8>().as_ptr().addr() % 32, 0);
    assert_eq!(aligned.len(), 24, "a TLSF block, not a 16-byte slab block");
    let classes = heap.chunks_with_free_blocks();
    assert_eq!(classes[15], 1);
    assert_eq!(classes.iter().sum::<usize>(), 1);
    // SAFETY: live blocks with their layouts.
    unsafe {
        heap.deallocate(slab.cast(), layout(SLAB_LIMIT, 16));
        heap.deallocate(medium.cast(), layout(SLAB_LIMIT + 1, 16));
        heap.deallocate(aligned.cast(), layout(16, 32));
    }
}

#[test]
fn heap_returns_empty_chunks_and_trim_restores_the_start() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions, 4 << 20);
    let empty = heap.stats();
    // Three chunks' worth of 64-byte blocks (two under miri, where each block is seconds).
    let chunks = if cfg!(miri) { 2 } else { 3 };
    let per_chunk = CHUNK / 64;
    let blocks: Vec<_> = (0..chunks * per_chunk)
        .map(|_| heap.allocate(layout(64, 8)).unwrap().cast::<u8>())
        .collect();
    let full = heap.stats();
    assert!(full.in_use >= chunks * per_chunk * 64 - 64 * chunks);
    for &block in &blocks {
        // SAFETY: live blocks, freed once.
        unsafe { heap.deallocate(block, layout(64, 8)) };
    }
    // Every chunk but one went back to TLSF as it emptied.
    assert_eq!(heap.chunks_with_free_blocks()[3], 1);
    assert_eq!(heap.stats().in_use, 0);
    assert!(heap.stats().free < empty.free, "one chunk is kept");
    heap.trim();
    assert_eq!(heap.stats(), empty);
}

#[test]
fn slab_chunks_pack_without_gaps_wherever_the_region_lies() {
    // One chunk per class, taken in turn: each lands right after the one before, and the
    // last one ends less than a chunk before the region does, so a region of n chunks holds
    // n - 2 or more of them whatever its address (the header takes the rest). This once
    // depended on the address: TLSF's aligned search asked for two chunks of room, so the
    // last chunk fitted or not by where the region began (13 to 15 chunks in 16).
    let len = 16 * CHUNK;
    let offsets = (0..CHUNK)
        .step_by(4096)
        .chain([8, 16, 24, 40, 56, 72, CHUNK - 8, CHUNK - 24]);
    for offset in offsets {
        let mut regions = Regions::new();
        let base = regions.take(len + CHUNK, CHUNK).cast::<u8>();
        let start = NonNull::new(base.as_ptr().wrapping_add(offset)).unwrap();
        let mut heap = Heap::new();
        // SAFETY: inside a region `regions` keeps alive past the heap.
        unsafe { heap.add_region(start, len) }.unwrap();
        let mut blocks = Vec::new();
        for class in 1..=SLAB_LIMIT / 16 {
            let size = class * 16;
            match heap.allocate(layout(size, 8)) {
                Ok(block) => blocks.push((block.cast::<u8>(), size)),
                Err(_) => break,
            }
        }
        assert!(
            blocks.len() >= 14,
            "{} chunks in a 16-chunk region at offset {offset}",
            blocks.len()
        );
        for pair in blocks.windows(2) {
            let (first, second) = (pair[0].0.as_ptr().addr(), pair[1].0.as_ptr().addr());
            assert_eq!(
                second / CHUNK - first / CHUNK,
                1,
                "consecutive chunks are neighbours (offset {offset})"
            );
        }
        let last_chunk_end = (blocks.last().unwrap().0.as_ptr().addr() / CHUNK + 1) * CHUNK;
        let region_end = start.as_ptr().addr() + len;
        assert!(
            region_end - last_chunk_end < CHUNK,
            "a whole chunk left unused at the end (offset {offset})"
        );
        for (block, size) in blocks {
            // SAFETY: live blocks with their layouts.
            unsafe { heap.deallocate(block, layout(size, 8)) };
        }
        assert_eq!(heap.stats().in_use, 0);
    }
}
