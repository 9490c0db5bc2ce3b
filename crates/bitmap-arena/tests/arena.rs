//! Construction errors, word and summary-word boundaries, full and one-block arenas,
//! first fit, alignment, in-place resizing and the `checked` reports.

use std::ptr::NonNull;

use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Backend, ConfigError, Layout};
use heapkit_testkit::Regions;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// An arena over memory `regions` owns (it outlives every arena in these tests).
fn carved(regions: &mut Regions, len: usize, block: usize) -> Result<BitmapArena, ConfigError> {
    let region = regions.take(len, 4096);
    // SAFETY: `regions` keeps the memory alive past the arena.
    unsafe { BitmapArena::from_raw(region.cast(), len, block) }
}

/// An arena whose bitmap is a separate buffer of `words` words.
fn separate(
    regions: &mut Regions,
    len: usize,
    words: usize,
    block: usize,
) -> Result<BitmapArena, ConfigError> {
    let region = regions.take(len, 4096);
    let bitmap = regions.take_side_buffer(words.max(1) * 8, 8);
    // SAFETY: `regions` keeps both buffers alive past the arena; they are disjoint.
    unsafe { BitmapArena::from_raw_parts(region.cast(), len, bitmap.cast(), words, block) }
}

/// An arena of exactly `blocks` blocks (bitmap apart), with the address of block 0.
fn exact(regions: &mut Regions, blocks: usize, block: usize) -> (BitmapArena, usize) {
    let words = BitmapArena::bitmap_words(blocks);
    let mut arena = separate(regions, blocks * block, words, block).unwrap();
    assert_eq!(arena.total_blocks(), blocks);
    let first = arena.allocate(layout(1, 1)).unwrap();
    // SAFETY: just allocated.
    unsafe { arena.deallocate(first.cast(), layout(1, 1)) };
    (arena, first.cast::<u8>().as_ptr().addr())
}

fn index(arena_base: usize, block: usize, ptr: NonNull<[u8]>) -> usize {
    (ptr.cast::<u8>().as_ptr().addr() - arena_base) / block
}

#[test]
fn construction_errors_name_the_problem() {
    let mut regions = Regions::new();
    assert_eq!(
        carved(&mut regions, 4096, 48).unwrap_err(),
        ConfigError::NotPowerOfTwo {
            what: "block size",
            value: 48
        }
    );
    assert!(matches!(
        carved(&mut regions, 40, 64).unwrap_err(),
        ConfigError::RegionTooSmall { given: 40, .. }
    ));
    let region = regions.take(4096, 4096);
    // SAFETY: 4 bytes into the region; memory outlives the attempt.
    let odd = unsafe { region.cast::<u8>().add(4) };
    // SAFETY: as above.
    let misaligned = unsafe { BitmapArena::from_raw(odd, 4092, 64) }.unwrap_err();
    assert_eq!(
        misaligned,
        ConfigError::RegionMisaligned {
            address: odd.as_ptr().addr(),
            required: 8
        }
    );
    assert_eq!(
        separate(&mut regions, 4096, 0, 64).unwrap_err(),
        ConfigError::BitmapTooSmall {
            needed: BitmapArena::bitmap_words(1),
            given: 0
        }
    );
    assert_eq!(
        separate(&mut regions, 4096, 0, 64).unwrap_err().to_string(),
        format!(
            "bitmap too small: 0 words given, at least {} needed",
            BitmapArena::bitmap_words(1)
        )
    );
    // SAFETY: as above.
    let unaligned = unsafe { AtomicBitmap::from_raw(odd, 4092, 64) };
    assert!(matches!(
        unaligned,
        Err(ConfigError::RegionMisaligned { required: 64, .. })
    ));
}

#[test]
fn a_short_bitmap_limits_the_blocks() {
    let mut regions = Regions::new();
    // One word covers 64 blocks (and needs no summary level).
    let arena = separate(&mut regions, 1000 * 64, BitmapArena::bitmap_words(64), 64).unwrap();
    assert_eq!(arena.total_blocks(), 64);
    assert_eq!(
        arena.stats().metadata,
        1000 * 64 + BitmapArena::bitmap_words(64) * 8 - 64 * 64
    );
}

#[test]
fn metadata_per_mib_is_as_documented() {
    // The README's and rustdoc's table: bytes of bitmap, run tree and short-run index for a
    // MiB of blocks (twice the bitsets with `checked`).
    let documented = if cfg!(feature = "checked") {
        [(16, 19_400), (64, 4_864), (256, 1_216), (4096, 104)]
    } else {
        [(16, 11_072), (64, 2_776), (256, 696), (4096, 64)]
    };
    for (block, bytes) in documented {
        assert_eq!(
            BitmapArena::bitmap_words((1 << 20) / block) * 8,
            bytes,
            "{block}-byte blocks"
        );
    }
}

#[test]
fn carved_bitmap_overhead_is_reported() {
    let mut regions = Regions::new();
    let arena = carved(&mut regions, 1 << 20, 64).unwrap();
    let stats = arena.stats();
    let bitmap = BitmapArena::bitmap_words(arena.total_blocks()) * 8;
    assert!(
        stats.metadata >= bitmap && stats.metadata < bitmap + 64,
        "{stats:?}"
    );
    assert_eq!(stats.capacity, 1 << 20);
    assert!(stats.is_consistent());
}

#[test]
fn one_block_arena() {
    let mut regions = Regions::new();
    let (mut arena, _) = exact(&mut regions, 1, 64);
    let block = arena.allocate(layout(64, 64)).unwrap();
    assert_eq!(block.len(), 64);
    assert!(arena.allocate(layout(1, 1)).is_err());
    assert_eq!(arena.stats().largest_free, 0);
    // SAFETY: live, freed once.
    unsafe { arena.deallocate(block.cast(), layout(64, 64)) };
    assert_eq!(arena.stats().largest_free, 64);
    assert!(
        arena.allocate(layout(65, 1)).is_err(),
        "two blocks never fit in one"
    );
}

#[test]
fn full_arena_refuses_then_frees_back_to_one_run() {
    let mut regions = Regions::new();
    let blocks = 300;
    let (mut arena, _) = exact(&mut regions, blocks, 32);
    let all: Vec<_> = (0..blocks)
        .map(|_| arena.allocate(layout(32, 8)).unwrap())
        .collect();
    let full = arena.stats();
    assert_eq!((full.free, full.largest_free), (0, 0));
    assert!(arena.allocate(layout(1, 1)).is_err());
    assert_eq!(arena.stats(), full);
    for block in all.iter().rev() {
        // SAFETY: live, freed once.
        unsafe { arena.deallocate(block.cast(), layout(32, 8)) };
    }
    let whole = arena.allocate(layout(blocks * 32, 8)).unwrap();
    assert_eq!(whole.len(), blocks * 32);
    // SAFETY: live.
    unsafe { arena.deallocate(whole.cast(), layout(blocks * 32, 8)) };
}

#[test]
fn runs_cross_word_and_summary_word_boundaries() {
    const BLOCK: usize = 16;
    let mut regions = Regions::new();
    // Summary words' worth of level-0 words, and 100 blocks more: three natively, two
    // under miri (where allocating and freeing 8,292 single blocks took 40 s).
    let summaries = if cfg!(miri) { 1 } else { 2 };
    let blocks = 64 * 64 * summaries + 100;
    let (mut arena, base) = exact(&mut regions, blocks, BLOCK);
    let one = layout(BLOCK, 1);
    let singles: Vec<_> = (0..blocks).map(|_| arena.allocate(one).unwrap()).collect();
    // Holes: 60..70 (crosses the word boundary at 64), 4090..4105 (crosses the
    // summary-word boundary at 4096), 8190..8200 (crosses the one at 8192).
    let holes: Vec<std::ops::Range<usize>> = [60..70, 4090..4105, 8190..8200]
        .into_iter()
        .filter(|hole| hole.end <= blocks)
        .collect();
    for hole in &holes {
        for i in hole.clone() {
            // SAFETY: live, freed once.
            unsafe { arena.deallocate(singles[i].cast(), one) };
        }
    }
    // First fit takes the lowest hole that is long enough: each in turn, as each is the
    // only one left that fits.
    let runs: Vec<_> = holes
        .iter()
        .map(|hole| {
            let run = arena.allocate(layout(hole.len() * BLOCK, 1)).unwrap();
            assert_eq!(index(base, BLOCK, run), hole.start);
            (run, hole.len())
        })
        .collect();
    assert!(arena.allocate(one).is_err());
    // Free everything: the whole arena is one run again.
    for (block, size) in runs {
        // SAFETY: live runs with these sizes.
        unsafe { arena.deallocate(block.cast(), layout(size * BLOCK, 1)) };
    }
    for (i, block) in singles.iter().enumerate() {
        if !holes.iter().any(|hole| hole.contains(&i)) {
            // SAFETY: still live.
            unsafe { arena.deallocate(block.cast(), one) };
        }
    }
    assert_eq!(arena.stats().largest_free, blocks * BLOCK);
}

#[test]
fn large_alignments_pick_aligned_block_indices() {
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, 1024, 64);
    let _first = arena.allocate(layout(64, 64)).unwrap();
    let aligned = arena.allocate(layout(100, 4096)).unwrap();
    let address = aligned.cast::<u8>().as_ptr().addr();
    assert_eq!(address % 4096, 0);
    // The region starts 4096-aligned, so the first 4096-aligned free block is block 64.
    assert_eq!(index(base, 64, aligned), 64);
    // The hole before it is still there for a small request: first fit.
    let small = arena.allocate(layout(64, 64)).unwrap();
    assert_eq!(index(base, 64, small), 1);
}

#[test]
fn grow_and_shrink_in_place() {
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, 64, 64);
    let a = arena.allocate(layout(100, 8)).unwrap(); // blocks 0..2
    assert_eq!(a.len(), 128);
    let b = arena.allocate(layout(64, 8)).unwrap(); // block 2
    assert_eq!(index(base, 64, b), 2);
    let ptr = a.cast::<u8>();
    // SAFETY: `ptr` is live with the old layout given.
    assert!(unsafe { arena.grow_in_place(ptr, layout(100, 8), layout(200, 8)) }.is_err());
    // SAFETY: `b` is live.
    unsafe { arena.deallocate(b.cast(), layout(64, 8)) };
    // SAFETY: `ptr` is live with the old layout given.
    let grown = unsafe { arena.grow_in_place(ptr, layout(100, 8), layout(200, 8)) }.unwrap();
    assert_eq!((grown.cast::<u8>(), grown.len()), (ptr, 256));
    // SAFETY: `ptr` is live with the old layout given.
    let shrunk = unsafe { arena.shrink_in_place(ptr, layout(200, 8), layout(10, 8)) }.unwrap();
    assert_eq!((shrunk.cast::<u8>(), shrunk.len()), (ptr, 64));
    // The freed tail is reusable right away.
    let c = arena.allocate(layout(64, 8)).unwrap();
    assert_eq!(index(base, 64, c), 1);
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_testkit::panic_message;

    fn refused(arena: &mut BitmapArena, block: NonNull<u8>, layout: Layout) -> String {
        // SAFETY: deliberately invalid; `checked` must refuse it before changing anything.
        panic_message(|| unsafe { arena.deallocate(block, layout) })
    }

    fn assert_report(message: &str, reason: &str) {
        assert!(
            message.starts_with("heapkit-bitmap-arena: invalid deallocate of 0x"),
            "{message}"
        );
        assert!(message.ends_with(reason), "{message}");
    }

    #[test]
    fn invalid_frees_panic_with_crate_operation_and_address() {
        let mut regions = Regions::new();
        let (mut arena, _) = exact(&mut regions, 64, 64);
        let three = layout(3 * 64, 8);
        let a = arena.allocate(three).unwrap().cast::<u8>();
        let b = arena.allocate(layout(64, 8)).unwrap().cast::<u8>();
        let block = |p: NonNull<u8>, n: usize| NonNull::new(p.as_ptr().wrapping_add(n)).unwrap();
        assert_report(
            &refused(&mut arena, block(a, 64), three),
            "pointer is inside an allocation, not at its start",
        );
        assert_report(
            &refused(&mut arena, block(a, 8), three),
            "pointer is not the start of a block",
        );
        assert_report(
            &refused(&mut arena, a, layout(4 * 64, 8)),
            "layout is larger than the allocation",
        );
        assert_report(
            &refused(&mut arena, a, layout(64, 8)),
            "layout is smaller than the allocation",
        );
        let mut outside = 0u64;
        let foreign = NonNull::from(&mut outside).cast::<u8>();
        assert_report(
            &refused(&mut arena, foreign, three),
            "pointer is outside this arena",
        );
        // SAFETY: a valid free.
        unsafe { arena.deallocate(b, layout(64, 8)) };
        assert_report(
            &refused(&mut arena, b, layout(64, 8)),
            "block is already free",
        );
        // None of the refusals changed anything: `a` frees normally.
        // SAFETY: a valid free.
        unsafe { arena.deallocate(a, three) };
        assert_eq!(arena.stats().in_use, 0);
    }

    #[test]
    fn atomic_bitmap_reports_double_frees() {
        use allocator_api2::alloc::Allocator;
        let mut regions = Regions::new();
        let region = regions.take(64 * 65, 64);
        // SAFETY: `regions` outlives the bitmap.
        let bitmap = unsafe { AtomicBitmap::from_raw(region.cast(), 64 * 65, 64) }.unwrap();
        let bitmap = heapkit_core::Shared::new(bitmap);
        let one = layout(64, 8);
        let block = bitmap.allocate(one).unwrap().cast::<u8>();
        // SAFETY: a valid free.
        unsafe { bitmap.deallocate(block, one) };
        // SAFETY: deliberately invalid.
        let message = panic_message(|| unsafe { bitmap.deallocate(block, one) });
        assert!(
            message.starts_with("heapkit-bitmap-arena: invalid deallocate of 0x"),
            "{message}"
        );
        assert!(message.ends_with("block is already free"), "{message}");
    }
}

/// Every allocation lands exactly where a naive address-ordered first fit over a shadow
/// array of blocks says it should, for runs short and long, aligned or not.
#[test]
fn allocation_is_exactly_first_fit() {
    const BLOCK: usize = 8;
    let blocks = if cfg!(miri) { 200 } else { 3000 };
    let steps = if cfg!(miri) { 100 } else { 20_000 };
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, blocks, BLOCK);
    let mut used = vec![false; blocks];
    let mut live: Vec<(NonNull<u8>, usize, usize)> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..steps {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if !live.is_empty() && rng % 5 < 2 {
            let (ptr, count, align) = live.swap_remove((rng >> 8) as usize % live.len());
            let start = index(base, BLOCK, NonNull::slice_from_raw_parts(ptr, 0));
            used[start..start + count].fill(false);
            // SAFETY: live with this layout.
            unsafe { arena.deallocate(ptr, layout(count * BLOCK, align)) };
            continue;
        }
        let count = match (rng >> 16) % 8 {
            0..=3 => 1,
            4 | 5 => 1 + (rng >> 24) as usize % 8,
            6 => 1 + (rng >> 24) as usize % 64,
            _ => 65 + (rng >> 24) as usize % 100,
        };
        let align = if (rng >> 40) % 4 == 0 {
            BLOCK << ((rng >> 44) % 4)
        } else {
            1
        };
        let step = (align / BLOCK).max(1);
        let expected = (0..blocks.saturating_sub(count - 1))
            .filter(|s| (base / BLOCK + s) % step == 0)
            .find(|&s| used[s..s + count].iter().all(|u| !u));
        let got = arena.allocate(layout(count * BLOCK, align)).ok();
        assert_eq!(
            got.map(|b| index(base, BLOCK, b)),
            expected,
            "run of {count}, align {align}"
        );
        if let (Some(block), Some(start)) = (got, expected) {
            used[start..start + count].fill(true);
            live.push((block.cast(), count, align));
        }
    }
}
