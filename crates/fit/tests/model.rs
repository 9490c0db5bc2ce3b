//! The placement rule of each policy against an O(n) oracle, and the heap's own promises:
//! LIFO and rover order, deferred coalescing, `check` catching corruption, the `checked`
//! reports and the set-up errors.
//!
//! The oracle knows the live blocks (payload address and usable size, so header and end)
//! and the region's one block at the start; with immediate coalescing the free blocks are
//! exactly the gaps between live blocks. Address-ordered first fit must cut the lowest
//! gap that fits, best fit the smallest (lowest address on ties); first and next fit the
//! first gap that fits in the order the heap says its list is in (that order checked to
//! hold exactly the gaps). Each allocation's address and usable size are predicted
//! exactly, and an allocation fails exactly when no gap fits.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{Backend, ConfigError};
use heapkit_fit::{
    AddressOrderedFirstFit, BestFit, Deferred, FirstFit, FitHeap, NextFit, Policy, GRANULE,
};
use heapkit_testkit::Regions;
use proptest::prelude::*;

mod common;
use common::{config, gaps, Live};

const WORD: usize = core::mem::size_of::<usize>();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// The first fitting block in the heap's own list order.
    ListOrder,
    LowestAddress,
    Smallest,
}

#[derive(Clone, Debug)]
enum Step {
    Alloc { size: usize, align_shift: u32 },
    Free { slot: usize },
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (1usize..600, prop_oneof![6 => Just(0u32), 1 => 0u32..8])
            .prop_map(|(size, align_shift)| Step::Alloc { size, align_shift }),
        2 => any::<usize>().prop_map(|slot| Step::Free { slot }),
    ];
    proptest::collection::vec(step, 0..max)
}

/// Where in a free block of `available` bytes at header `block` an allocation of
/// `size` block bytes aligned to `align` starts, if it fits: the rule written out again.
fn gap(block: usize, available: usize, size: usize, align: usize, min: usize) -> Option<usize> {
    let mut gap = if align <= GRANULE {
        0
    } else {
        (block + WORD).wrapping_neg() & (align - 1)
    };
    while gap != 0 && gap < min {
        gap += align;
    }
    (gap + size <= available).then_some(gap)
}

/// Runs `steps` against a fresh heap of policy `P`, checking every allocation against
/// the oracle for `rule`.
fn run<P: Policy>(rule: Rule, steps: &[Step], len: usize) -> Result<(), TestCaseError> {
    let mut regions = Regions::new();
    let mut heap = heap::<P, false>(&mut regions, len);
    let min = FitHeap::<P>::MIN_BLOCK;
    let mut initial = Vec::new();
    heap.for_each_free(|payload, usable| initial.push((payload - WORD, usable + WORD)));
    prop_assert_eq!(initial.len(), 1);
    let (first, end) = (initial[0].0, initial[0].0 + initial[0].1);
    // Live blocks: header address, block size, payload, layout.
    let mut live: Vec<Live> = Vec::new();
    for step in steps {
        match *step {
            Step::Alloc { size, align_shift } => {
                let align = 1usize << align_shift;
                let layout = Layout::from_size_align(size, align).unwrap();
                let need = FitHeap::<P>::block_size(size).unwrap();
                let gaps = gaps(&mut live, first, end);
                let fits = |&(b, s): &(usize, usize)| gap(b, s, need, align, min).is_some();
                let expected = match rule {
                    Rule::LowestAddress => gaps.iter().copied().find(fits),
                    Rule::Smallest => gaps
                        .iter()
                        .copied()
                        .filter(fits)
                        .min_by_key(|&(b, s)| (s, b)),
                    Rule::ListOrder => {
                        let mut order = Vec::new();
                        heap.for_each_free(|p, u| order.push((p - WORD, u + WORD)));
                        let mut sorted = order.clone();
                        sorted.sort_unstable();
                        prop_assert_eq!(&sorted, &gaps, "the list holds other blocks");
                        order.into_iter().find(fits)
                    }
                };
                let result = heap.allocate(layout);
                match (expected, result) {
                    (None, Err(_)) => {}
                    (None, Ok(got)) => {
                        prop_assert!(false, "{layout:?} served at {got:p}, no gap fits: {gaps:?}")
                    }
                    (Some(e), Err(_)) => prop_assert!(false, "{layout:?} refused, {e:?} fits"),
                    (Some((block, available)), Ok(got)) => {
                        let g = gap(block, available, need, align, min).unwrap();
                        let header = block + g;
                        let rest = available - g - need;
                        let usable = if rest >= min { need } else { need + rest } - WORD;
                        let payload = got.cast::<u8>();
                        prop_assert_eq!(
                            (payload.as_ptr().addr(), got.len()),
                            (header + WORD, usable),
                            "{:?} for {:?}: expected the block at {:#x} ({:?}, gaps {:x?})",
                            rule,
                            layout,
                            block,
                            rule,
                            gaps
                        );
                        live.push((header, usable + WORD, payload, layout));
                    }
                }
            }
            Step::Free { slot } => {
                if live.is_empty() {
                    continue;
                }
                let (_, _, ptr, layout) = live.swap_remove(slot % live.len());
                // SAFETY: a live block of this heap, freed with its layout.
                unsafe { heap.deallocate(ptr, layout) };
            }
        }
        heap.check()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    for (_, _, ptr, layout) in live.drain(..) {
        // SAFETY: as above.
        unsafe { heap.deallocate(ptr, layout) };
    }
    heap.check()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(heap);
    Ok(())
}

const MAX_STEPS: usize = if cfg!(miri) { 12 } else { 160 };
const LEN: usize = if cfg!(miri) { 8 * 1024 } else { 32 * 1024 };

proptest! {
    #![proptest_config(config())]

    #[test]
    fn first_fit_takes_the_first_fitting_block_of_its_list(steps in steps(MAX_STEPS)) {
        run::<FirstFit>(Rule::ListOrder, &steps, LEN)?;
    }

    #[test]
    fn next_fit_takes_the_first_fitting_block_from_its_rover(steps in steps(MAX_STEPS)) {
        run::<NextFit>(Rule::ListOrder, &steps, LEN)?;
    }

    #[test]
    fn address_ordered_first_fit_takes_the_lowest_fitting_block(steps in steps(MAX_STEPS)) {
        run::<AddressOrderedFirstFit>(Rule::LowestAddress, &steps, LEN)?;
    }

    #[test]
    fn best_fit_takes_the_smallest_fitting_block(steps in steps(MAX_STEPS)) {
        run::<BestFit>(Rule::Smallest, &steps, LEN)?;
    }
}

/// A heap over `len` bytes from `regions`.
fn heap<P: Policy, const D: bool>(regions: &mut Regions, len: usize) -> FitHeap<P, D> {
    common::heap(regions, len, 64)
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Five blocks with allocated separators between them, `sizes[1]` and `sizes[3]` freed:
/// returns the heap's choice for a request of `ask` bytes, as an index (1 or 3: a freed
/// hole, 5: the tail beyond).
fn choice<P: Policy>(sizes: [usize; 5], ask: usize) -> usize {
    let mut regions = Regions::new();
    let mut heap = heap::<P, false>(&mut regions, 16 * 1024);
    let mut blocks = Vec::new();
    for size in sizes {
        blocks.push((heap.allocate(layout(size)).unwrap().cast::<u8>(), size));
        let separator = heap.allocate(layout(8)).unwrap();
        let _ = separator;
    }
    for i in [1, 3] {
        // SAFETY: live blocks of this heap.
        unsafe { heap.deallocate(blocks[i].0, layout(blocks[i].1)) };
    }
    let got = heap.allocate(layout(ask)).unwrap().cast::<u8>();
    heap.check().unwrap();
    [1, 3]
        .into_iter()
        .find(|&i| blocks[i].0 == got)
        .unwrap_or(5)
}

#[test]
fn each_policy_picks_its_own_block() {
    // Holes of 200 (index 1) and 100 bytes (index 3), freed in that order, and the tail.
    let sizes = [64, 200, 64, 100, 64];
    // LIFO: the hole freed last comes first.
    assert_eq!(choice::<FirstFit>(sizes, 90), 3);
    // The rover stayed on the tail, where the last allocation was cut.
    assert_eq!(choice::<NextFit>(sizes, 90), 5);
    assert_eq!(choice::<AddressOrderedFirstFit>(sizes, 90), 1);
    assert_eq!(choice::<BestFit>(sizes, 90), 3);
    // Too large for the 100-byte hole.
    assert_eq!(choice::<FirstFit>(sizes, 150), 1);
    assert_eq!(choice::<BestFit>(sizes, 150), 1);
}

/// Many holes of the smallest block size (the trees keep those in a treap beside the
/// tree), freed in a scrambled order: each small request must take the lowest one (both
/// policies: address order, and best fit's tie rule), every step leaving a valid heap.
fn smallest_holes_go_lowest_first<P: Policy>() {
    let mut regions = Regions::new();
    let mut heap = heap::<P, false>(&mut regions, 64 * 1024);
    let small = layout(FitHeap::<P>::MIN_BLOCK - WORD);
    // Half of them freed; `check` after each step walks the heap, so fewer under miri.
    let half = if cfg!(miri) { 25 } else { 200 };
    let blocks: Vec<NonNull<u8>> = (0..2 * half)
        .map(|_| heap.allocate(small).unwrap().cast::<u8>())
        .collect();
    let mut holes: Vec<usize> = (0..half).map(|i| 2 * i + 1).collect();
    // A fixed scramble (multiplication by a unit mod `half`: 77 is prime to 200 and 25).
    holes = (0..half).map(|i| holes[(i * 77) % half]).collect();
    for &i in &holes {
        // SAFETY: live blocks of this heap, each freed once.
        unsafe { heap.deallocate(blocks[i], small) };
        heap.check().unwrap();
    }
    let mut free: Vec<usize> = holes.iter().map(|&i| blocks[i].as_ptr().addr()).collect();
    free.sort_unstable();
    for expected in free {
        let got = heap.allocate(small).unwrap().cast::<u8>();
        assert_eq!(
            got.as_ptr().addr(),
            expected,
            "{}",
            core::any::type_name::<P>()
        );
        heap.check().unwrap();
    }
}

#[test]
fn smallest_holes_are_taken_in_address_order() {
    smallest_holes_go_lowest_first::<AddressOrderedFirstFit>();
    smallest_holes_go_lowest_first::<BestFit>();
}

/// Smallest blocks freed evenly spaced (each followed by a live block), at spacings that
/// made the treap a path with its first hash (linear in the address): `check` passes,
/// and a small over-aligned request takes the lowest of them. Found by review: the path
/// outgrew a depth bound, and `check` reported a sound heap corrupted.
fn evenly_spaced_smallest_holes<P: Policy>(spacing: usize, count: usize) {
    let mut regions = Regions::new();
    let small = FitHeap::<P>::MIN_BLOCK;
    // Room for the blocks, and for the `checked` map of block starts.
    let len = (count + 4) * spacing * small * 17 / 16 + 4096;
    let mut heap = heap::<P, false>(&mut regions, len);
    // Pad so that each smallest block's payload is aligned to its own size.
    let first = heap.allocate(layout(1)).unwrap().cast::<u8>();
    // SAFETY: just allocated.
    unsafe { heap.deallocate(first, layout(1)) };
    let pad = small + (small - (first.as_ptr().addr() + small) % small) % small;
    let _pad = heap.allocate(layout(pad - WORD)).unwrap();
    let filler = layout(spacing * small - small - WORD);
    let mut holes = Vec::new();
    for _ in 0..count {
        holes.push(heap.allocate(layout(1)).unwrap().cast::<u8>());
        let _filler = heap.allocate(filler).unwrap();
    }
    for &hole in &holes {
        // SAFETY: live blocks of this heap, each freed once.
        unsafe { heap.deallocate(hole, layout(1)) };
    }
    heap.check().unwrap();
    let aligned = Layout::from_size_align(1, small).unwrap();
    let got = heap.allocate(aligned).unwrap().cast::<u8>();
    assert_eq!(
        got,
        holes[0],
        "{} spaced {spacing}",
        core::any::type_name::<P>()
    );
    heap.check().unwrap();
}

#[test]
fn evenly_spaced_smallest_holes_keep_the_treap_exact() {
    let count = if cfg!(miri) { 24 } else { 600 };
    for spacing in [2, 3, 144, 181, 233, 360] {
        evenly_spaced_smallest_holes::<AddressOrderedFirstFit>(spacing, count);
        evenly_spaced_smallest_holes::<BestFit>(spacing, count);
    }
}

#[test]
fn next_fit_moves_on_from_where_it_stopped() {
    let mut regions = Regions::new();
    let mut heap = heap::<NextFit, false>(&mut regions, 16 * 1024);
    let blocks: Vec<_> = (0..6)
        .map(|_| heap.allocate(layout(100)).unwrap().cast::<u8>())
        .collect();
    // Holes at 0, 2, 4: the list is 4, 2, 0, tail; the rover is on the tail.
    for i in [0, 2, 4] {
        // SAFETY: live blocks of this heap.
        unsafe { heap.deallocate(blocks[i], layout(100)) };
    }
    let mut order = Vec::new();
    heap.for_each_free(|payload, _| order.push(payload));
    let tail = order[0];
    assert!(
        tail > blocks[5].as_ptr().addr(),
        "the search starts at the tail"
    );
    // A block as large as the tail takes it whole: the rover wraps to the list's front.
    let mut rest = 0;
    heap.for_each_free(|payload, usable| {
        if payload == tail {
            rest = usable;
        }
    });
    let whole = heap.allocate(layout(rest)).unwrap().cast::<u8>();
    assert_eq!(whole.as_ptr().addr(), tail);
    let next: Vec<_> = (0..3)
        .map(|_| heap.allocate(layout(100)).unwrap().cast::<u8>())
        .collect();
    assert_eq!(
        next,
        [blocks[4], blocks[2], blocks[0]],
        "LIFO order from the front"
    );
    heap.check().unwrap();
}

#[test]
fn deferred_frees_wait_on_quick_lists_and_merge_when_needed() {
    let mut regions = Regions::new();
    let len = 4096;
    let mut heap = heap::<AddressOrderedFirstFit, true>(&mut regions, len);
    let empty = heap.stats();
    let keep = heap.allocate(layout(8)).unwrap().cast::<u8>();
    let a = heap.allocate(layout(40)).unwrap().cast::<u8>();
    let b = heap.allocate(layout(40)).unwrap().cast::<u8>();
    // SAFETY: live blocks of this heap.
    unsafe {
        heap.deallocate(a, layout(40));
        heap.deallocate(b, layout(40));
    }
    assert_eq!(heap.quick_blocks(), 2);
    heap.check().unwrap();
    // Exact size: straight off the quick list, newest first.
    let again = heap.allocate(layout(40)).unwrap().cast::<u8>();
    assert_eq!(again, b);
    // SAFETY: live.
    unsafe { heap.deallocate(again, layout(40)) };
    // Nothing in the index is large enough, but the quick blocks and the tail after them
    // together are: they merge, and the request is served from the merged block at `a`.
    let rest = heap.stats().largest_free;
    let big = heap.allocate(layout(rest + 64)).unwrap().cast::<u8>();
    assert_eq!(big, a);
    assert_eq!(heap.quick_blocks(), 0);
    heap.check().unwrap();
    // A request that fails even after merging changes nothing.
    let before = heap.stats();
    assert!(heap.allocate(layout(len)).is_err());
    assert_eq!(heap.stats(), before);
    // SAFETY: live blocks.
    unsafe {
        heap.deallocate(big, layout(rest + 64));
        heap.deallocate(keep, layout(8));
    }
    assert_eq!(heap.stats(), empty, "an emptied heap is merged at once");
}

#[test]
fn deferred_refusal_leaves_the_quick_lists() {
    let mut regions = Regions::new();
    let mut heap: Deferred<BestFit> = heap(&mut regions, 2048);
    let a = heap.allocate(layout(24)).unwrap().cast::<u8>();
    let keep = heap.allocate(layout(24)).unwrap().cast::<u8>();
    // SAFETY: live.
    unsafe { heap.deallocate(a, layout(24)) };
    let before = heap.stats();
    assert!(heap.allocate(layout(4096)).is_err());
    assert_eq!(heap.stats(), before);
    assert_eq!(heap.quick_blocks(), 1);
    // SAFETY: live.
    unsafe { heap.deallocate(keep, layout(24)) };
}

#[test]
fn grow_and_shrink_in_place_use_the_free_next_block() {
    let mut regions = Regions::new();
    let mut heap = heap::<BestFit, false>(&mut regions, 4096);
    let a = heap.allocate(layout(100)).unwrap().cast::<u8>();
    // SAFETY: `a` is live with the layouts passed.
    unsafe {
        let grown = heap.grow_in_place(a, layout(100), layout(1000)).unwrap();
        assert_eq!(grown.cast::<u8>(), a);
        assert!(grown.len() >= 1000);
        let shrunk = heap.shrink_in_place(a, layout(1000), layout(10)).unwrap();
        assert!(shrunk.len() >= 10 && shrunk.len() < 100);
        heap.check().unwrap();
        let b = heap.allocate(layout(100)).unwrap().cast::<u8>();
        // `b` now sits right after `a`: no room to grow.
        assert!(heap.grow_in_place(a, layout(10), layout(500)).is_err());
        heap.deallocate(b, layout(100));
        heap.deallocate(a, layout(10));
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().in_use, 0);
    assert_eq!(heap.stats().largest_free, heap.stats().free);
}

#[test]
fn alignment_leaves_a_free_gap_in_front() {
    let mut regions = Regions::new();
    let mut heap = heap::<AddressOrderedFirstFit, false>(&mut regions, 16 * 1024);
    let small = heap.allocate(layout(8)).unwrap().cast::<u8>();
    let big = Layout::from_size_align(64, 1024).unwrap();
    let aligned = heap.allocate(big).unwrap().cast::<u8>();
    assert_eq!(aligned.as_ptr().addr() % 1024, 0);
    // The gap in front is free and serves the next small request (lowest address).
    let next = heap.allocate(layout(8)).unwrap().cast::<u8>();
    assert!(next.as_ptr().addr() < aligned.as_ptr().addr());
    heap.check().unwrap();
    // SAFETY: live blocks.
    unsafe {
        heap.deallocate(small, layout(8));
        heap.deallocate(aligned, big);
        heap.deallocate(next, layout(8));
    }
    heap.check().unwrap();
    // A request larger than the region fails; so does one no alignment can place.
    assert!(heap
        .allocate(Layout::from_size_align(8, 1 << 20).unwrap())
        .is_err());
}

#[test]
fn check_catches_a_stray_write_into_a_free_block() {
    for word in [1, 2, 4] {
        let mut regions = Regions::new();
        let mut heap = heap::<BestFit, false>(&mut regions, 4096);
        let a = heap.allocate(layout(64)).unwrap().cast::<u8>();
        let b = heap.allocate(layout(64)).unwrap().cast::<u8>();
        // SAFETY: live blocks.
        unsafe { heap.deallocate(a, layout(64)) };
        heap.check().unwrap();
        // A use after free: the freed block's tree words are overwritten.
        // SAFETY: the region is the test's memory; the heap reads it only in `check`.
        unsafe {
            a.cast::<usize>()
                .as_ptr()
                .add(word - 1)
                .write_unaligned(0x5a5a_5a50)
        };
        let error = heap.check().unwrap_err();
        assert!(error
            .to_string()
            .starts_with("heapkit-fit: heap corrupted at"));
        let _ = b;
    }
}

#[test]
fn bad_regions_are_refused_with_a_reason() {
    let mut regions = Regions::new();
    let tiny = regions.take(16, 16);
    let mut heap: FitHeap<FirstFit> = FitHeap::new();
    // SAFETY: refused before it is written.
    let error = unsafe { heap.add_region(tiny.cast(), 16) }.unwrap_err();
    assert!(matches!(
        error,
        ConfigError::RegionTooSmall { given: 16, .. }
    ));
    assert!(error
        .to_string()
        .starts_with("region too small: 16 bytes given"));
    let region = regions.take(1024, 16);
    // SAFETY: ours for the heap's life.
    unsafe { heap.add_region(region.cast(), 1024) }.unwrap();
    // SAFETY: refused: it overlaps the region just added.
    let inner = unsafe { NonNull::new_unchecked(region.cast::<u8>().as_ptr().add(100)) };
    // SAFETY: as above.
    let error = unsafe { heap.add_region(inner, 100) }.unwrap_err();
    assert!(matches!(error, ConfigError::RegionOverlaps { .. }));
    assert_eq!(heap.stats().capacity, 1024);
}

/// Without `checked`, the O(1) `debug_assert!`s of a debug build still catch a block freed
/// twice that did not merge with the block before it (and a quick-listed one), before
/// anything changes.
#[cfg(all(debug_assertions, not(feature = "checked")))]
#[test]
fn debug_builds_catch_a_second_free_of_an_unmerged_block() {
    let mut regions = Regions::new();
    let mut immediate = heap::<FirstFit, false>(&mut regions, 4096);
    let _a = immediate.allocate(layout(64)).unwrap();
    let b = immediate.allocate(layout(64)).unwrap().cast::<u8>();
    let _c = immediate.allocate(layout(64)).unwrap();
    // SAFETY: a valid free; the second one is the error under test, caught first.
    unsafe { immediate.deallocate(b, layout(64)) };
    let text = heapkit_testkit::panic_message(|| {
        // SAFETY: the error under test, caught before the heap changes.
        unsafe { immediate.deallocate(b, layout(64)) };
    });
    assert!(text.contains("freed twice"), "{text}");
    immediate.check().unwrap();
    let mut regions = Regions::new();
    let mut deferred = heap::<FirstFit, true>(&mut regions, 4096);
    let a = deferred.allocate(layout(16)).unwrap().cast::<u8>();
    let _b = deferred.allocate(layout(16)).unwrap();
    // SAFETY: as above.
    unsafe { deferred.deallocate(a, layout(16)) };
    let text = heapkit_testkit::panic_message(|| {
        // SAFETY: the error under test, caught before the heap changes.
        unsafe { deferred.deallocate(a, layout(16)) };
    });
    assert!(text.contains("freed twice"), "{text}");
    deferred.check().unwrap();
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_testkit::panic_message;

    fn message(act: impl FnOnce(&mut FitHeap<NextFit>, NonNull<u8>)) -> String {
        let mut regions = Regions::new();
        let mut heap = heap::<NextFit, false>(&mut regions, 4096);
        let a = heap.allocate(layout(64)).unwrap().cast::<u8>();
        let _b = heap.allocate(layout(64)).unwrap();
        panic_message(|| act(&mut heap, a))
    }

    #[test]
    fn double_free_panics_with_the_address() {
        let text = message(|heap, a| {
            // SAFETY: the first free is valid; the second is the error under test, caught.
            unsafe {
                heap.deallocate(a, layout(64));
                heap.deallocate(a, layout(64));
            }
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
        assert!(
            text.ends_with("freed already, or a pointer into a block)"),
            "{text}"
        );
    }

    #[test]
    fn interior_and_foreign_pointers_panic() {
        let text = message(|heap, a| {
            // SAFETY: an invalid free, caught before it touches anything.
            unsafe { heap.deallocate(NonNull::new_unchecked(a.as_ptr().add(16)), layout(8)) };
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
        let mut other = 0u64;
        let text = message(|heap, _| {
            // SAFETY: as above.
            unsafe { heap.deallocate(NonNull::from(&mut other).cast(), layout(8)) };
        });
        assert!(
            text.ends_with("pointer is not in memory this allocator manages"),
            "{text}"
        );
        let text = message(|heap, a| {
            // SAFETY: as above.
            unsafe { heap.deallocate(a, layout(4000)) };
        });
        assert!(text.ends_with("layout is larger than the block"), "{text}");
    }

    #[test]
    fn a_damaged_footer_before_a_block_panics_without_a_misaligned_read() {
        let mut regions = Regions::new();
        let mut heap = heap::<NextFit, false>(&mut regions, 4096);
        let a = heap.allocate(layout(64)).unwrap().cast::<u8>();
        let b = heap.allocate(layout(64)).unwrap().cast::<u8>();
        let _c = heap.allocate(layout(64)).unwrap();
        // SAFETY: live blocks; then a use after free of `a` overwrites its footer (the
        // word before `b`'s header) with a size that is not a whole number of words.
        unsafe {
            heap.deallocate(a, layout(64));
            let footer = b.as_ptr().sub(2 * WORD);
            let size = footer.cast::<[u8; WORD]>().read();
            let damaged = usize::from_ne_bytes(size) - WORD / 2;
            footer.cast::<[u8; WORD]>().write(damaged.to_ne_bytes());
        }
        let text = panic_message(|| {
            // SAFETY: a valid free: the damage is found before anything is read from it.
            unsafe { heap.deallocate(b, layout(64)) };
        });
        assert!(
            text.ends_with("(the free block before it is damaged)"),
            "{text}"
        );
    }

    #[test]
    fn a_quick_listed_block_freed_again_panics() {
        let mut regions = Regions::new();
        let mut heap = heap::<FirstFit, true>(&mut regions, 4096);
        let a = heap.allocate(layout(16)).unwrap().cast::<u8>();
        let _b = heap.allocate(layout(16)).unwrap();
        let text = panic_message(|| {
            // SAFETY: the second free is the error under test, caught.
            unsafe {
                heap.deallocate(a, layout(16));
                heap.deallocate(a, layout(16));
            }
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
    }
}

mod slob {
    use super::*;
    use heapkit_fit::{Slob, SLOB_PAGE, SLOB_UNIT};

    /// Runs `steps` against a fresh `Slob`, predicting every placement: a request below
    /// a page goes to the first page on its size's list (front first, as the heap reports
    /// the list) holding a free gap that fits, the lowest such gap in the page; with none,
    /// to the first free page; a page or more to the first run of free pages. The gaps
    /// are computed from the live blocks alone (free blocks never touch: SLOB merges).
    #[allow(clippy::too_many_lines)] // the oracle, written out in one place
    fn run_slob(steps: &[Step], len: usize) -> Result<(), TestCaseError> {
        let mut regions = Regions::new();
        let region = regions.take(len, 4096);
        let mut slob = Slob::new();
        // SAFETY: the region outlives the allocator.
        unsafe { slob.add_region(region.cast(), len) }.unwrap();
        let mut live: Vec<(usize, usize, NonNull<u8>, Layout)> = Vec::new();
        for step in steps {
            match *step {
                Step::Alloc { size, align_shift } => {
                    // Sizes up to 600 by default; one in four scaled past a page.
                    let size = if size % 4 == 0 { size * 12 } else { size };
                    let align = 1usize << (align_shift * 2);
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let mut pages = Vec::new();
                    slob.for_each_page(|page| pages.push(page));
                    let busy = |page: usize| {
                        live.iter()
                            .any(|&(at, n, _, _)| at < page + SLOB_PAGE && page < at + n)
                    };
                    let expected = if size < SLOB_PAGE && align <= SLOB_PAGE {
                        let units = size.div_ceil(SLOB_UNIT).max(1);
                        let list = usize::from(size >= 256) + usize::from(size >= 1024);
                        let mut order = Vec::new();
                        slob.for_each_listed_page(list, |page| order.push(page));
                        let in_page = |page: usize| {
                            let mut blocks: Vec<_> = live
                                .iter()
                                .filter(|b| b.0 >= page && b.0 < page + SLOB_PAGE)
                                .map(|b| (b.0, b.1))
                                .collect();
                            blocks.sort_unstable();
                            let mut gaps = Vec::new();
                            let mut at = page;
                            for (start, n) in blocks {
                                if start > at {
                                    gaps.push((at, start - at));
                                }
                                at = start + n;
                            }
                            if page + SLOB_PAGE > at {
                                gaps.push((at, page + SLOB_PAGE - at));
                            }
                            let total: usize = gaps.iter().map(|g| g.1).sum();
                            if total < units * SLOB_UNIT {
                                return None;
                            }
                            gaps.into_iter().find_map(|(at, n)| {
                                let delta = if align > SLOB_UNIT {
                                    at.wrapping_neg() & (align - 1)
                                } else {
                                    0
                                };
                                (n >= units * SLOB_UNIT + delta).then_some(at + delta)
                            })
                        };
                        order
                            .iter()
                            .find_map(|&page| in_page(page))
                            .or_else(|| {
                                pages
                                    .iter()
                                    .copied()
                                    .find(|&p| !busy(p) && !order.contains(&p))
                            })
                            .map(|at| (at, units * SLOB_UNIT))
                    } else {
                        let count = size.div_ceil(SLOB_PAGE);
                        pages
                            .windows(count)
                            .find(|run| {
                                run[0] % align == 0
                                    && run.iter().all(|&p| !busy(p))
                                    && run.windows(2).all(|w| w[1] == w[0] + SLOB_PAGE)
                            })
                            .map(|run| (run[0], count * SLOB_PAGE))
                    };
                    let result = slob.allocate(layout);
                    match (expected, result) {
                        (None, Err(_)) => {}
                        (expected, result) => {
                            let got = result
                                .ok()
                                .map(|b| (b.cast::<u8>().as_ptr().addr(), b.len()));
                            prop_assert_eq!(got, expected, "{:?}", layout);
                            let block = result.unwrap();
                            live.push((got.unwrap().0, block.len(), block.cast(), layout));
                        }
                    }
                }
                Step::Free { slot } => {
                    if live.is_empty() {
                        continue;
                    }
                    let (_, _, ptr, layout) = live.swap_remove(slot % live.len());
                    // SAFETY: a live block of this allocator, freed with its layout.
                    unsafe { slob.deallocate(ptr, layout) };
                }
            }
            slob.check()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for (_, _, ptr, layout) in live.drain(..) {
            // SAFETY: as above.
            unsafe { slob.deallocate(ptr, layout) };
        }
        slob.check()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let stats = slob.stats();
        prop_assert_eq!(stats.in_use, 0);
        prop_assert_eq!(
            stats.largest_free,
            stats.free,
            "the pages are one run again"
        );
        let mut listed = 0;
        for list in 0..3 {
            slob.for_each_listed_page(list, |_| listed += 1);
        }
        prop_assert_eq!(listed, 0, "every page went back to the supplier");
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn slob_takes_the_first_fit_on_the_first_page_that_has_one(steps in steps(MAX_STEPS)) {
            run_slob(&steps, if cfg!(miri) { 24 * 1024 } else { 64 * 1024 })?;
        }
    }

    #[test]
    fn no_bytes_per_block_and_lists_by_size() {
        let mut regions = Regions::new();
        let region = regions.take(64 * 1024, 4096);
        let mut slob = Slob::new();
        // SAFETY: the region outlives the allocator.
        unsafe { slob.add_region(region.cast(), 64 * 1024) }.unwrap();
        let a = slob.allocate(layout(8)).unwrap();
        let b = slob.allocate(layout(8)).unwrap();
        let odd = slob
            .allocate(Layout::from_size_align(5, 1).unwrap())
            .unwrap();
        assert_eq!(
            b.cast::<u8>().as_ptr().addr() - a.cast::<u8>().as_ptr().addr(),
            8
        );
        assert_eq!(odd.len(), 6, "three 2-byte units");
        let medium = slob.allocate(layout(300)).unwrap().cast::<u8>();
        let page = |p: NonNull<u8>| p.as_ptr().addr() / SLOB_PAGE;
        assert_ne!(
            page(medium),
            page(a.cast()),
            "medium requests use other pages"
        );
        let big = slob.allocate(layout(SLOB_PAGE + 1)).unwrap();
        assert_eq!(big.len(), 2 * SLOB_PAGE, "a page or more: whole pages");
        assert_eq!(big.cast::<u8>().as_ptr().addr() % SLOB_PAGE, 0);
        // SAFETY: live blocks, freed with their layouts.
        unsafe {
            slob.deallocate(a.cast(), layout(8));
            slob.deallocate(b.cast(), layout(8));
            // `a` and `b` merged with each other: a 16-byte request fits where they were.
            let merged = slob.allocate(layout(16)).unwrap().cast::<u8>();
            assert_eq!(merged, a.cast());
            slob.deallocate(merged, layout(16));
            slob.deallocate(odd.cast(), Layout::from_size_align(5, 1).unwrap());
            slob.deallocate(medium, layout(300));
            slob.deallocate(big.cast(), layout(SLOB_PAGE + 1));
        }
        slob.check().unwrap();
        assert_eq!(slob.stats().in_use, 0);
        assert_eq!(slob.stats().largest_free, slob.stats().free);
    }

    #[test]
    fn size_zero_aligned_beyond_a_page_takes_a_free_page() {
        let mut regions = Regions::new();
        let len = 64 * 1024;
        let region = regions.take(len, 4096);
        let mut slob = Slob::new();
        // SAFETY: the region outlives the allocator.
        unsafe { slob.add_region(region.cast(), len) }.unwrap();
        let small = slob.allocate(layout(10)).unwrap().cast::<u8>();
        let zero = Layout::from_size_align(0, 2 * SLOB_PAGE).unwrap();
        // Backends may see size 0 when called directly: a real block, never one sitting
        // on a live page (this used to be a "run" of no pages, marked over `small`'s page).
        let block = slob.allocate(zero).unwrap();
        let at = block.cast::<u8>().as_ptr().addr();
        assert!(!block.is_empty());
        assert_eq!(at % (2 * SLOB_PAGE), 0);
        assert_ne!(at / SLOB_PAGE, small.as_ptr().addr() / SLOB_PAGE);
        slob.check().unwrap();
        assert!(slob.stats().is_consistent());
        // SAFETY: live blocks, freed with their layouts.
        unsafe {
            slob.deallocate(block.cast(), zero);
            slob.deallocate(small, layout(10));
        }
        slob.check().unwrap();
        assert_eq!(slob.stats().in_use, 0);
    }

    #[cfg(feature = "checked")]
    #[test]
    fn slob_double_free_panics() {
        let mut regions = Regions::new();
        let region = regions.take(16 * 1024, 4096);
        let mut slob = Slob::new();
        // SAFETY: the region outlives the allocator.
        unsafe { slob.add_region(region.cast(), 16 * 1024) }.unwrap();
        let a = slob.allocate(layout(32)).unwrap().cast::<u8>();
        let _b = slob.allocate(layout(32)).unwrap();
        let text = heapkit_testkit::panic_message(|| {
            // SAFETY: the second free is the error under test, caught.
            unsafe {
                slob.deallocate(a, layout(32));
                slob.deallocate(a, layout(32));
            }
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
    }

    /// A block freed twice after its page went back to the supplier and was handed out
    /// again as a run (or the reverse): the layout says which kind of block it was, so
    /// `checked` panics instead of freeing the live run (or units of a live page).
    #[cfg(feature = "checked")]
    #[test]
    fn slob_double_free_into_a_reused_page_panics() {
        let mut regions = Regions::new();
        let region = regions.take(16 * 1024, 4096);
        let mut slob = Slob::new();
        // SAFETY: the region outlives the allocator.
        unsafe { slob.add_region(region.cast(), 16 * 1024) }.unwrap();
        let small = layout(32);
        let a = slob.allocate(small).unwrap().cast::<u8>();
        // SAFETY: a valid free: the page is empty again and goes back to the supplier.
        unsafe { slob.deallocate(a, small) };
        let page = Layout::from_size_align(SLOB_PAGE, 8).unwrap();
        let run = slob.allocate(page).unwrap().cast::<u8>();
        assert_eq!(run, a, "the first free page again, now a run");
        let text = heapkit_testkit::panic_message(|| {
            // SAFETY: the second free of `a` is the error under test, caught.
            unsafe { slob.deallocate(a, small) };
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
        slob.check().unwrap();
        assert_eq!(slob.stats().in_use, SLOB_PAGE, "the run is still allocated");
        // SAFETY: live, freed with its layout.
        unsafe { slob.deallocate(run, page) };

        // The reverse: a run aligned beyond a page, freed twice after its page became a
        // page of SLOB blocks.
        let aligned = Layout::from_size_align(32, 2 * SLOB_PAGE).unwrap();
        let r = slob.allocate(aligned).unwrap().cast::<u8>();
        // SAFETY: a valid free.
        unsafe { slob.deallocate(r, aligned) };
        // Blocks of most of a page, each on a page of its own, until one lands on the
        // run's page (which page comes first depends on where the region lies).
        let most_of_a_page = layout(3000);
        let mut blocks = Vec::new();
        loop {
            let block = slob.allocate(most_of_a_page).unwrap().cast::<u8>();
            blocks.push(block);
            if block.as_ptr().addr() & !(SLOB_PAGE - 1) == r.as_ptr().addr() {
                break;
            }
            assert!(blocks.len() < 4, "the run's page was never used again");
        }
        let text = heapkit_testkit::panic_message(|| {
            // SAFETY: as above.
            unsafe { slob.deallocate(r, aligned) };
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
        slob.check().unwrap();
        for block in blocks {
            // SAFETY: live, freed with its layout.
            unsafe { slob.deallocate(block, most_of_a_page) };
        }
        assert_eq!(slob.stats().in_use, 0);

        // A run freed twice after its head page started a longer run.
        let two = Layout::from_size_align(2 * SLOB_PAGE, 8).unwrap();
        let three = Layout::from_size_align(3 * SLOB_PAGE - 1, 8).unwrap();
        let first = slob.allocate(two).unwrap().cast::<u8>();
        // SAFETY: a valid free.
        unsafe { slob.deallocate(first, two) };
        let longer = slob.allocate(three).unwrap().cast::<u8>();
        assert_eq!(longer, first, "the same head page, now a run of three");
        let text = heapkit_testkit::panic_message(|| {
            // SAFETY: as above.
            unsafe { slob.deallocate(first, two) };
        });
        assert!(
            text.starts_with("heapkit-fit: invalid deallocate of 0x"),
            "{text}"
        );
        slob.check().unwrap();
        // SAFETY: live, freed with a size between the requested and the usable one.
        unsafe { slob.deallocate(longer, Layout::from_size_align(3 * SLOB_PAGE, 8).unwrap()) };
        assert_eq!(slob.stats().in_use, 0);
    }
}
