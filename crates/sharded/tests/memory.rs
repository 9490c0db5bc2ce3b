//! Memory comes back and figures stay sane: an adopted segment whose pages all turn out
//! empty is released by `collect`; blocks freed in allocation order give every page back;
//! free slots of older segments are reused rather than new segments taken; `stats()`
//! stays consistent while another thread maps huge blocks; and, with `checked`, double
//! frees and in-place resizes of interior pointers are reported. (Found by adversarial
//! review; each failed before its fix.) Native only: thousands of pages per test.
#![cfg(not(miri))]

use heapkit_core::source::SystemSource;
use heapkit_core::{Backend, Layout};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::ShardedHeap;
use std::sync::atomic::{AtomicBool, Ordering};
const L: Layout = Layout::new::<u64>();

#[test]
fn collect_gives_back_an_adopted_segment_that_is_empty() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut a = shared.local_heap();
    let b = a.allocate(&shared, L).unwrap().cast::<u8>();
    a.abandon(&shared);
    let mut c = shared.local_heap();
    // SAFETY: a live block of a heap over `shared`, freed once (a remote push).
    unsafe { c.deallocate(&shared, b, L) };
    c.collect(&shared);
    assert_eq!(shared.mapped(), 0, "collect() left an empty segment mapped");
    c.abandon(&shared);
}

/// `stats` reads `huge_mapped` then `huge_in_use` with two loads; a huge allocation on
/// another thread between them makes `in_use > capacity` and
/// `capacity - in_use - free` overflows (a panic in debug builds, garbage in release).
#[test]
fn stats_race_with_a_huge_allocation_on_another_thread() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let mut h = shared.thread_heap();
            let l = Layout::from_size_align(1 << 20, 8).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let b = h.allocate(l).unwrap();
                // SAFETY: just allocated, freed once.
                unsafe { h.deallocate(b.cast(), l) };
            }
        });
        let h = shared.thread_heap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let start = std::time::Instant::now();
            while start.elapsed().as_secs() < 10 {
                for _ in 0..10_000 {
                    std::hint::black_box(h.stats());
                }
            }
        }));
        stop.store(true, Ordering::Relaxed);
        result
    });
    assert!(result.is_ok(), "stats() panicked");
}

/// With `checked`, a double free of a small block is not reported: the block goes on the
/// free list twice and is handed out twice (tlsf's checked.rs tests the same).
#[cfg(feature = "checked")]
#[test]
fn checked_double_free_is_reported() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.thread_heap();
    let _keep = heap.allocate(L).unwrap();
    let b = heap.allocate(L).unwrap().cast::<u8>();
    // SAFETY: live, freed once.
    unsafe { heap.deallocate(b, L) };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: deliberately invalid: `checked` should report it.
        unsafe { heap.deallocate(b, L) }
    }));
    if outcome.is_ok() {
        let x = heap.allocate(L).unwrap().cast::<u8>();
        let y = heap.allocate(L).unwrap().cast::<u8>();
        panic!(
            "double free not reported; then handed out {x:p} and {y:p} (same block: {})",
            x == y
        );
    }
}

/// With `checked`, resizing in place through an interior pointer succeeds and hands back
/// a "block" running into the next block.
#[cfg(feature = "checked")]
#[test]
fn checked_grow_in_place_of_an_interior_pointer_is_reported() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.thread_heap();
    let l = Layout::from_size_align(256, 8).unwrap();
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let next = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: 128 bytes into a 256-byte block.
    let inside = unsafe { a.add(128) };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: deliberately invalid: `checked` should report it.
        unsafe {
            heap.grow_in_place(
                inside,
                Layout::from_size_align(64, 8).unwrap(),
                Layout::from_size_align(200, 8).unwrap(),
            )
        }
    }));
    if let Ok(Ok(grown)) = outcome {
        let end = inside.as_ptr().addr() + grown.len();
        panic!(
            "grow_in_place of {inside:p} (interior) gave {} bytes, up to {end:#x}, past the next block at {next:p}",
            grown.len()
        );
    }
}

/// `new_page` looks for free slots in the first `SEGMENT_SEARCH` (4) segments of the
/// heap's list only; new and adopted segments go to the front, so free slots of older
/// segments are never used again while one of their pages stays in use. A program that
/// keeps one long-lived block per segment per phase grows without bound.
#[test]
fn free_slots_of_older_segments_are_reused() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.thread_heap();
    let l = Layout::from_size_align(1024, 8).unwrap(); // one-slot pages of 64 blocks
    let per_page = heapkit_sharded::geometry::SLOT / 1024;
    let per_phase = 8 * 63 * per_page;
    let mut kept = Vec::new();
    let mut mapped = Vec::new();
    for _ in 0..10 {
        let blocks: Vec<_> = (0..per_phase)
            .map(|_| heap.allocate(l).unwrap().cast::<u8>())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut rest = Vec::new();
        // One free in every page first (so each page leaves the full list), then the
        // rest: emptied pages other than the queue head retire, their slots go free.
        for (i, b) in blocks.into_iter().enumerate() {
            if seen.insert(b.as_ptr().addr() & !(SEGMENT - 1)) {
                kept.push(b); // one long-lived block per segment touched
            } else if i % per_page == per_page - 1 {
                // SAFETY: live, freed once.
                unsafe { heap.deallocate(b, l) };
            } else {
                rest.push(b);
            }
        }
        for b in rest {
            // SAFETY: live, freed once.
            unsafe { heap.deallocate(b, l) };
        }
        mapped.push(shared.mapped() / SEGMENT);
    }
    let live_kib = kept.len();
    assert!(
        mapped[9] <= 2 * mapped[0],
        "mapped (SEGMENTs) after each phase: {mapped:?}, with {live_kib} KiB live"
    );
}

/// Blocks freed in the order they were allocated: each page empties while it is its
/// class's queue head (the first free of a full page makes it the head), so it is not
/// retired, and stays when the next page becomes head. After everything is freed the
/// heap still holds every page and segment of its peak (until `collect` or exit).
#[test]
fn freeing_everything_in_allocation_order_gives_memory_back() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.thread_heap();
    let l = Layout::from_size_align(1024, 8).unwrap();
    let blocks: Vec<_> = (0..8 * 63 * 64)
        .map(|_| heap.allocate(l).unwrap().cast::<u8>())
        .collect();
    let peak = shared.mapped();
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    assert!(
        shared.mapped() <= peak / 4,
        "all freed, still {} of {} bytes mapped; stats: {:?}",
        shared.mapped(),
        peak,
        heap.stats()
    );
}

/// A block shrunk to less than half its usable bytes moves to a smaller class. Python
/// formats a string into a 152-byte buffer and shrinks it to its ~51-byte length, 180,000
/// times in heapkit-malloc's python workload; kept in place (the rule was "while it would
/// not waste three quarters") the 160-byte blocks cost 13 MB of its 55 MB at that point.
#[test]
fn a_block_shrunk_below_half_moves_and_one_shrunk_less_stays() {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.thread_heap();
    let old = Layout::from_size_align(152, 8).unwrap();
    let block = heap.allocate(old).unwrap();
    let usable = block.len();
    let block = block.cast::<u8>();
    for (size, stays) in [
        (usable, true),
        (usable / 2, true),
        (usable / 2 - 1, false),
        (51, false),
    ] {
        let new = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: `block` is live with `old` (it never moves: every resize is in place).
        let resized = unsafe { heap.shrink_in_place(block, old, new) };
        assert_eq!(
            resized.is_ok(),
            stays,
            "shrinking {usable} usable bytes to {size}"
        );
    }
    // SAFETY: live, freed once.
    unsafe { heap.deallocate(block, old) };
    // The smallest class has nowhere smaller to go: shrinking it stays, whatever the size.
    let small = Layout::from_size_align(8, 8).unwrap();
    let block = heap.allocate(small).unwrap().cast::<u8>();
    for size in 1..=8 {
        let new = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: `block` is live with `small`.
        let resized = unsafe { heap.shrink_in_place(block, small, new) };
        assert!(
            resized.is_ok(),
            "shrinking an 8-byte block to {size} moved it"
        );
    }
    // SAFETY: live, freed once.
    unsafe { heap.deallocate(block, small) };
}

/// The rule a C front applies from the usable size alone agrees with the heap's.
#[test]
fn keeps_block_answers_from_the_usable_size_alone() {
    use heapkit_sharded::classes::MAX_SMALL;
    use heapkit_sharded::keeps_block;
    assert_eq!(keeps_block(160, 160), Some(true));
    assert_eq!(keeps_block(160, 80), Some(true));
    assert_eq!(keeps_block(160, 79), Some(false));
    assert_eq!(keeps_block(8, 1), Some(true), "no class below 8 bytes");
    assert_eq!(
        keeps_block(160, 161),
        Some(false),
        "class blocks never grow"
    );
    assert_eq!(
        keeps_block(MAX_SMALL * 4, MAX_SMALL * 5),
        None,
        "a huge block may"
    );
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    // An over-aligned small request is a huge block of a slot or two: it may grow too.
    {
        let mut heap = shared.thread_heap();
        let slot = heapkit_sharded::geometry::SLOT;
        let aligned = Layout::from_size_align(1000, 2 * slot).unwrap();
        let block = heap.allocate(aligned).unwrap();
        let usable = block.len();
        assert_eq!(keeps_block(usable, usable + 1), None, "usable {usable}");
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(block.cast(), aligned) };
    }
    let mut heap = shared.thread_heap();
    let old = Layout::from_size_align(150, 8).unwrap();
    let block = heap.allocate(old).unwrap();
    let usable = block.len();
    let block = block.cast::<u8>();
    for size in 1..=usable {
        let new = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: `block` is live with `old`; an in-place resize keeps it where it is.
        let kept = unsafe { heap.shrink_in_place(block, old, new) }.is_ok();
        assert_eq!(Some(kept), keeps_block(usable, size), "{usable} to {size}");
    }
    // SAFETY: live, freed once.
    unsafe { heap.deallocate(block, old) };
}

/// The cached fast paths do only what needs nothing else: a free that neither empties
/// its page nor takes it off the full list, an allocation from the queue's first page.
/// (Under `checked` every free takes the full call, which validates.)
#[test]
#[cfg(not(feature = "checked"))]
fn cached_fast_paths_leave_page_changes_to_the_full_calls() {
    use heapkit_sharded::classes::class_for;
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut heap = shared.local_heap();
    let layout = Layout::from_size_align(48, 8).unwrap();
    let class = class_for(48, 8).unwrap();
    assert_eq!(heap.allocate_cached(class), None, "no page yet");
    let a = heap.allocate(&shared, layout).unwrap().cast::<u8>();
    let b = heap.allocate(&shared, layout).unwrap().cast::<u8>();
    // SAFETY: `a` is live; with `b` live too, its page does not empty.
    assert!(unsafe { heap.deallocate_cached(a) }, "a plain free");
    assert_eq!(
        heap.allocate_cached(class),
        Some(a),
        "the block just freed comes back"
    );
    // SAFETY: live blocks of this heap.
    unsafe {
        assert!(heap.deallocate_cached(a));
        // The page's last block: emptying it is the full call's business.
        assert!(!heap.deallocate_cached(b), "a free that empties the page");
        heap.deallocate(&shared, b, layout);
    }
    // A block of another heap's page is not this heap's to take back.
    let mut other = shared.local_heap();
    let c = other.allocate(&shared, layout).unwrap().cast::<u8>();
    let d = other.allocate(&shared, layout).unwrap().cast::<u8>();
    // SAFETY: live blocks of a heap over the same `ShardedHeap`.
    unsafe {
        assert!(!heap.deallocate_cached(c), "a remote free");
        other.deallocate(&shared, c, layout);
        other.deallocate(&shared, d, layout);
    }
    other.abandon(&shared);
    heap.abandon(&shared);
}
