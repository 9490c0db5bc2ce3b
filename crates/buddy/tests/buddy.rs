//! Splitting and full coalescence, carving of odd and misaligned regions, several regions,
//! alignment limits, in-place resizing, construction errors and the `checked` reports.

use core::ptr::NonNull;

use heapkit_buddy::Buddy;
use heapkit_core::{Backend, ConfigError, Layout};
use heapkit_testkit::Regions;

type Heap = Buddy<8>; // 16 B .. 2 KiB

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Adds `len` bytes at `offset` into a fresh 4096-aligned region owned by `regions`.
fn add(
    heap: &mut Heap,
    regions: &mut Regions,
    offset: usize,
    len: usize,
) -> Result<NonNull<u8>, ConfigError> {
    let region = regions.take(offset + len, 4096);
    let start = NonNull::new(region.cast::<u8>().as_ptr().wrapping_add(offset)).unwrap();
    // SAFETY: inside a region that `regions` keeps alive past the allocator.
    unsafe { heap.add_region(start, len) }.map(|()| start)
}

#[test]
fn construction_errors_name_the_problem() {
    assert_eq!(
        Heap::new(24).unwrap_err(),
        ConfigError::NotPowerOfTwo {
            what: "minimum block",
            value: 24
        }
    );
    assert_eq!(
        Heap::new(8).unwrap_err(),
        ConfigError::BlockTooSmall {
            block: 8,
            min: Heap::MIN_BLOCK
        }
    );
    assert!(matches!(
        Buddy::<0>::new(16),
        Err(ConfigError::OutOfRange { what: "orders", .. })
    ));
    let mut heap = Heap::new(16).unwrap();
    let mut regions = Regions::new();
    assert!(matches!(
        add(&mut heap, &mut regions, 0, 64),
        Err(ConfigError::RegionTooSmall { given: 64, .. })
    ));
    let start = add(&mut heap, &mut regions, 0, 8192).unwrap();
    let inside = NonNull::new(start.as_ptr().wrapping_add(100)).unwrap();
    // SAFETY: never used: the overlap is refused first.
    let overlap = unsafe { heap.add_region(inside, 100) };
    assert_eq!(
        overlap,
        Err(ConfigError::RegionOverlaps {
            address: inside.as_ptr().addr()
        })
    );
}

#[test]
fn splits_then_coalesces_back_to_the_initial_blocks() {
    let mut regions = Regions::new();
    let mut heap = Heap::new(16).unwrap();
    add(&mut heap, &mut regions, 0, 64 * 1024).unwrap();
    let initial = heap.free_blocks_per_order();
    let initial_stats = heap.stats();
    // A 16-byte request takes the smallest free block and splits it all the way down,
    // leaving one upper half behind at every order below it.
    let small = heap.allocate(layout(16, 16)).unwrap();
    let taken = initial.iter().position(|n| *n > 0).unwrap();
    let mut expected = initial;
    expected[taken] -= 1;
    for count in &mut expected[..taken] {
        *count += 1;
    }
    assert_eq!(heap.free_blocks_per_order(), expected);
    // Fill everything with mixed sizes, free in an interleaved order.
    let mut live = vec![(small, layout(16, 16))];
    let mut size = 16;
    loop {
        let l = layout(size, 16);
        match heap.allocate(l) {
            Ok(b) => live.push((b, l)),
            Err(_) if size == 16 => break,
            Err(_) => {}
        }
        size = if size >= 2048 { 16 } else { size * 2 };
    }
    assert_eq!(heap.stats().free, 0);
    let (evens, odds): (Vec<_>, Vec<_>) = live.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, (block, l)) in evens.into_iter().chain(odds) {
        // SAFETY: live, freed once with its layout.
        unsafe { heap.deallocate(block.cast(), *l) };
    }
    assert_eq!(
        heap.free_blocks_per_order(),
        initial,
        "every merge happened"
    );
    assert_eq!(heap.stats(), initial_stats);
}

#[test]
fn odd_misaligned_regions_lose_at_most_a_block_per_end() {
    // Just under a power of two: 64 KiB natively, 16 KiB under miri, where filling the
    // larger one block by block took 20 s.
    let near_power = if cfg!(miri) { 16_384 } else { 65_536 };
    for (offset, len) in [(24, 10_000), (8, near_power - 40), (1000, 3 * 4096 + 7)] {
        let mut regions = Regions::new();
        let mut heap = Heap::new(16).unwrap();
        add(&mut heap, &mut regions, offset, len).unwrap();
        let stats = heap.stats();
        // Header (48 + 16 * 8 bytes), up to 7 bytes aligning it, the bitmaps (a bit per
        // block of each order, rounded up to words; twice with `checked`), and up to one
        // minimum block of slack at each end.
        let sets = if cfg!(feature = "checked") { 2 } else { 1 };
        let words: usize = (0..8).map(|k| (len >> (4 + k)).div_ceil(64) + 1).sum();
        let bitmaps = sets * words * 8;
        assert!(
            stats.metadata <= 176 + 7 + bitmaps + 2 * 16,
            "offset {offset}, len {len}: {stats:?}"
        );
        assert_eq!(stats.in_use, 0);
        assert!(stats.is_consistent());
        // Everything free can be allocated in minimum blocks.
        let mut count = 0;
        while heap.allocate(layout(16, 1)).is_ok() {
            count += 1;
        }
        assert_eq!(count * 16, stats.free);
    }
}

#[test]
fn blocks_never_merge_across_regions() {
    let mut regions = Regions::new();
    let mut heap = Heap::new(16).unwrap();
    // Two regions of exactly 2 KiB of blocks each, adjacent in memory would still be
    // separate regions: the largest block stays 2 KiB even though 4 KiB are free.
    add(&mut heap, &mut regions, 0, 4096).unwrap();
    add(&mut heap, &mut regions, 0, 4096).unwrap();
    let blocks: Vec<_> = std::iter::from_fn(|| heap.allocate(layout(16, 16)).ok()).collect();
    for b in &blocks {
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(b.cast(), layout(16, 16)) };
    }
    assert_eq!(heap.stats().largest_free, 2048);
    assert!(
        heap.allocate(layout(4096, 1)).is_err(),
        "beyond the largest order"
    );
}

#[test]
fn alignment_up_to_the_largest_block() {
    let mut regions = Regions::new();
    let mut heap = Heap::new(16).unwrap();
    add(&mut heap, &mut regions, 40, 64 * 1024).unwrap();
    for align in [1, 16, 64, 512, 2048] {
        let b = heap.allocate(layout(1, align)).unwrap();
        assert_eq!(b.cast::<u8>().as_ptr().addr() % align, 0);
        assert_eq!(
            b.len(),
            align.max(16),
            "the order is rounded up to the alignment"
        );
    }
    let before = heap.stats();
    assert!(heap.allocate(layout(1, 4096)).is_err());
    assert_eq!(heap.stats(), before);
}

#[test]
fn grow_and_shrink_in_place() {
    let mut regions = Regions::new();
    let mut heap = Heap::new(16).unwrap();
    add(&mut heap, &mut regions, 0, 8192).unwrap();
    let block = heap.allocate(layout(1024, 1024)).unwrap();
    let ptr = block.cast::<u8>();
    // SAFETY: `ptr` is live with the old layout given (so in each call below).
    let shrunk = unsafe { heap.shrink_in_place(ptr, layout(1024, 1024), layout(20, 64)) }.unwrap();
    assert_eq!((shrunk.cast::<u8>(), shrunk.len()), (ptr, 64));
    // SAFETY: as above.
    let grown = unsafe { heap.grow_in_place(ptr, layout(20, 64), layout(1000, 64)) }.unwrap();
    assert_eq!(
        (grown.cast::<u8>(), grown.len()),
        (ptr, 1024),
        "the split halves merged back"
    );
    // SAFETY: as above.
    let shrunk = unsafe { heap.shrink_in_place(ptr, layout(1000, 64), layout(20, 32)) }.unwrap();
    assert_eq!(shrunk.len(), 32);
    // Take the buddy just above: growing past it fails and changes nothing.
    let neighbour = heap.allocate(layout(32, 32)).unwrap();
    assert_eq!(
        neighbour.cast::<u8>().as_ptr().addr(),
        ptr.as_ptr().addr() + 32
    );
    let before = heap.stats();
    // SAFETY: as above.
    assert!(unsafe { heap.grow_in_place(ptr, layout(20, 32), layout(64, 32)) }.is_err());
    assert_eq!(heap.stats(), before);
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_testkit::panic_message;

    fn refused(heap: &mut Heap, ptr: NonNull<u8>, l: Layout) -> String {
        // SAFETY: deliberately invalid; `checked` must refuse it before changing anything.
        panic_message(|| unsafe { heap.deallocate(ptr, l) })
    }

    fn assert_report(message: &str, reason: &str) {
        assert!(
            message.starts_with("heapkit-buddy: invalid deallocate of 0x"),
            "{message}"
        );
        assert!(message.ends_with(reason), "{message}");
    }

    #[test]
    fn invalid_frees_panic_with_crate_operation_and_address() {
        let mut regions = Regions::new();
        let mut heap = Heap::new(16).unwrap();
        add(&mut heap, &mut regions, 0, 8192).unwrap();
        let l64 = layout(64, 8);
        let a = heap.allocate(l64).unwrap().cast::<u8>();
        let b = heap.allocate(l64).unwrap().cast::<u8>();
        // A 64-byte block that is not the start of any 128-byte block.
        let upper = [a, b]
            .into_iter()
            .chain(std::iter::from_fn(|| {
                heap.allocate(l64).ok().map(NonNull::cast)
            }))
            .find(|block| block.as_ptr().addr() % 128 != 0)
            .unwrap();
        let mut outside = 0u64;
        let foreign = NonNull::from(&mut outside).cast::<u8>();
        let cases = [
            (foreign, l64, "pointer is outside this allocator's regions"),
            (
                a,
                layout(16, 8),
                "no block of this layout was allocated here",
            ),
            (
                upper,
                layout(128, 8),
                "pointer is not the start of a block of this layout",
            ),
            (
                NonNull::new(a.as_ptr().wrapping_add(16)).unwrap(),
                layout(16, 8),
                "no block of this layout was allocated here",
            ),
        ];
        for (ptr, l, reason) in cases {
            assert_report(&refused(&mut heap, ptr, l), reason);
        }
        // SAFETY: a valid free.
        unsafe { heap.deallocate(b, l64) };
        assert_report(&refused(&mut heap, b, l64), "block is already free");
        // The refusals changed nothing: `a` still frees normally.
        // SAFETY: a valid free.
        unsafe { heap.deallocate(a, l64) };
    }
}

#[test]
fn a_region_right_after_a_misaligned_one_is_accepted() {
    // The first region starts 3 bytes past an 8-byte boundary, so its header is placed 5
    // bytes in. The overlap check once measured the region from its header with the full
    // length, so the neighbour starting at the first region's true end was refused.
    let mut regions = Regions::new();
    let both = regions.take(3 + 2 * 4096, 4096);
    let first = NonNull::new(both.cast::<u8>().as_ptr().wrapping_add(3)).unwrap();
    let second = NonNull::new(first.as_ptr().wrapping_add(4096)).unwrap();
    let mut heap = Heap::new(16).unwrap();
    // SAFETY: disjoint parts of a region `regions` keeps alive past the allocator.
    unsafe {
        heap.add_region(first, 4096).unwrap();
        heap.add_region(second, 4096).unwrap();
    }
    // One byte back is a real overlap.
    let overlapping = NonNull::new(second.as_ptr().wrapping_sub(1)).unwrap();
    // SAFETY: refused before anything is written.
    let refused = unsafe { heap.add_region(overlapping, 16) };
    assert_eq!(
        refused,
        Err(ConfigError::RegionOverlaps {
            address: overlapping.as_ptr().addr()
        })
    );
    let before = heap.stats();
    let block = heap.allocate(layout(1024, 16)).unwrap();
    // SAFETY: live, with this layout.
    unsafe { heap.deallocate(block.cast(), layout(1024, 16)) };
    assert_eq!(heap.stats(), before);
}
