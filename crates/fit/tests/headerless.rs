//! `HeaderlessHeap`: its placement rule against an O(n) oracle (with in-place resizing),
//! the contract suite in every shape, `check` catching corruption, the `checked` reports
//! and the set-up errors.
//!
//! The oracle knows the live blocks (address and size: the layout's size rounded up to the
//! granule, since no header is added); with immediate coalescing the free blocks are
//! exactly the gaps between them. Address-ordered first fit must cut the lowest gap that
//! fits, best fit the smallest (lowest address on ties); every allocation's address and
//! size are predicted exactly, an allocation fails exactly when no gap fits, and an
//! in-place grow succeeds exactly when the gap after the block is large enough.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{Backend, ConfigError, Local, Locked};
use heapkit_fit::{AddressOrderedFirstFit, BestFit, HeaderlessHeap, TreePolicy, GRANULE};
use heapkit_testkit::{contract_suite, Profile, Regions};
use proptest::prelude::*;

mod common;
use common::{config, gaps, lent, odd, two_regions, Live, REGION};

#[derive(Clone, Debug)]
enum Step {
    Alloc { size: usize, align_shift: u32 },
    Free { slot: usize },
    Resize { slot: usize, size: usize },
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    // Mostly small blocks, so one- and two-granule free blocks (the treaps) are common.
    let size = prop_oneof![3 => 1usize..40, 2 => 1usize..600];
    let step = prop_oneof![
        3 => (size.clone(), prop_oneof![6 => Just(0u32), 1 => 0u32..9])
            .prop_map(|(size, align_shift)| Step::Alloc { size, align_shift }),
        2 => any::<usize>().prop_map(|slot| Step::Free { slot }),
        1 => (any::<usize>(), size).prop_map(|(slot, size)| Step::Resize { slot, size }),
    ];
    proptest::collection::vec(step, 0..max)
}

fn block(size: usize) -> usize {
    size.max(1).next_multiple_of(GRANULE)
}

/// Where in the gap at `start` of `available` bytes a block of `size` aligned to `align`
/// starts, if it fits: the rule written out again.
fn gap(start: usize, available: usize, size: usize, align: usize) -> Option<usize> {
    let gap = if align <= GRANULE {
        0
    } else {
        start.wrapping_neg() & (align - 1)
    };
    (gap + size <= available).then_some(gap)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    LowestAddress,
    Smallest,
}

fn run<P: TreePolicy>(rule: Rule, steps: &[Step], len: usize) -> Result<(), TestCaseError> {
    let mut regions = Regions::new();
    let mut heap = common::heap::<HeaderlessHeap<P>>(&mut regions, len, 64);
    let mut initial = Vec::new();
    heap.for_each_free(|start, size| initial.push((start, size)));
    prop_assert_eq!(initial.len(), 1);
    let (first, end) = (initial[0].0, initial[0].0 + initial[0].1);
    let mut live: Vec<Live> = Vec::new();
    for step in steps {
        match *step {
            Step::Alloc { size, align_shift } => {
                let align = 1usize << align_shift;
                let layout = Layout::from_size_align(size, align).unwrap();
                let need = block(size);
                let gaps = gaps(&mut live, first, end);
                let mut listed = Vec::new();
                heap.for_each_free(|start, size| listed.push((start, size)));
                if rule == Rule::Smallest {
                    listed.sort_unstable();
                }
                prop_assert_eq!(&listed, &gaps, "the index holds other blocks");
                let fits = |&(b, s): &(usize, usize)| gap(b, s, need, align).is_some();
                let expected = match rule {
                    Rule::LowestAddress => gaps.iter().copied().find(fits),
                    Rule::Smallest => gaps
                        .iter()
                        .copied()
                        .filter(fits)
                        .min_by_key(|&(b, s)| (s, b)),
                };
                match (expected, heap.allocate(layout)) {
                    (None, Err(_)) => {}
                    (None, Ok(got)) => {
                        prop_assert!(false, "{layout:?} served at {got:p}, no gap fits: {gaps:?}")
                    }
                    (Some(e), Err(_)) => prop_assert!(false, "{layout:?} refused, {e:?} fits"),
                    (Some((start, available)), Ok(got)) => {
                        let at = start + gap(start, available, need, align).unwrap();
                        let ptr = got.cast::<u8>();
                        prop_assert_eq!(
                            (ptr.as_ptr().addr(), got.len()),
                            (at, need),
                            "{:?} for {:?}: expected the gap at {:#x} (gaps {:x?})",
                            rule,
                            layout,
                            start,
                            gaps
                        );
                        live.push((at, need, ptr, layout));
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
            Step::Resize { slot, size } => {
                if live.is_empty() {
                    continue;
                }
                let k = slot % live.len();
                let (at, old, ptr, layout) = live[k];
                let new_layout = Layout::from_size_align(size, layout.align()).unwrap();
                let new = block(size);
                if new <= old {
                    // SAFETY: a live block, shrunk (or kept) with its layout.
                    let got = unsafe { heap.shrink_in_place(ptr, layout, new_layout) };
                    prop_assert_eq!(got.map(NonNull::len).ok(), Some(new));
                    live[k] = (at, new, ptr, new_layout);
                } else {
                    let after = gaps(&mut live, first, end)
                        .into_iter()
                        .find(|&(start, _)| start == at + old)
                        .map_or(0, |(_, size)| size);
                    let k = live.iter().position(|b| b.0 == at).unwrap();
                    // SAFETY: a live block, grown with its layout.
                    let got = unsafe { heap.grow_in_place(ptr, layout, new_layout) };
                    if old + after >= new {
                        prop_assert_eq!(got.map(NonNull::len).ok(), Some(new));
                        live[k] = (at, new, ptr, new_layout);
                    } else {
                        prop_assert!(got.is_err(), "grew past the gap after the block");
                    }
                }
            }
        }
        heap.check()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let used: usize = live.iter().map(|b| b.1).sum();
        prop_assert_eq!(heap.stats().in_use, used);
    }
    for (_, _, ptr, layout) in live.drain(..) {
        // SAFETY: as above.
        unsafe { heap.deallocate(ptr, layout) };
    }
    heap.check()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(heap.stats().free, end - first);
    Ok(())
}

const MAX_STEPS: usize = if cfg!(miri) { 16 } else { 200 };
const LEN: usize = if cfg!(miri) { 4 * 1024 } else { 16 * 1024 };

proptest! {
    #![proptest_config(config())]

    #[test]
    fn address_ordered_first_fit_takes_the_lowest_fitting_gap(steps in steps(MAX_STEPS)) {
        run::<AddressOrderedFirstFit>(Rule::LowestAddress, &steps, LEN)?;
    }

    #[test]
    fn best_fit_takes_the_smallest_fitting_gap(steps in steps(MAX_STEPS)) {
        run::<BestFit>(Rule::Smallest, &steps, LEN)?;
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn heap<P: TreePolicy>(regions: &mut Regions, len: usize) -> HeaderlessHeap<P> {
    common::heap(regions, len, 4096)
}

const WORD: usize = core::mem::size_of::<usize>();

#[test]
fn blocks_carry_no_header_and_one_granule_holes_are_reused() {
    let mut regions = Regions::new();
    let mut heap = heap::<BestFit>(&mut regions, 4096);
    let small = layout(GRANULE - 3);
    let blocks: Vec<_> = (0..8)
        .map(|_| heap.allocate(small).unwrap().cast::<u8>())
        .collect();
    for pair in blocks.windows(2) {
        assert_eq!(pair[1].as_ptr().addr() - pair[0].as_ptr().addr(), GRANULE);
    }
    // Every other block freed: one-granule holes, which best fit hands back lowest first.
    for &b in blocks.iter().step_by(2) {
        // SAFETY: live blocks.
        unsafe { heap.deallocate(b, small) };
    }
    heap.check().unwrap();
    let again = heap.allocate(layout(GRANULE)).unwrap().cast::<u8>();
    assert_eq!(again, blocks[0]);
    let larger = heap.allocate(layout(GRANULE + 1)).unwrap().cast::<u8>();
    assert!(larger.as_ptr().addr() > blocks[7].as_ptr().addr());
    heap.check().unwrap();
    assert_eq!(heap.stats().in_use, 5 * GRANULE + 2 * GRANULE);
}

#[test]
fn check_catches_a_stray_write_into_a_free_block() {
    // The size word at either end of a free block of two granules or more.
    for granules in [4, 2] {
        let size = granules * GRANULE;
        for word in [0, size / WORD - 1] {
            let mut regions = Regions::new();
            let mut heap = heap::<AddressOrderedFirstFit>(&mut regions, 4096);
            let a = heap.allocate(layout(size)).unwrap().cast::<u8>();
            let _b = heap.allocate(layout(size)).unwrap();
            // SAFETY: a live block.
            unsafe { heap.deallocate(a, layout(size)) };
            heap.check().unwrap();
            // SAFETY: the region is the test's memory; a use after free overwrites a size
            // word, which the heap reads again only in `check`.
            unsafe { a.cast::<usize>().as_ptr().add(word).write(0x5a50) };
            let error = heap.check().unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("heapkit-fit: heap corrupted at"),
                "{error}"
            );
        }
    }
}

/// A stray write into the free-ends bitmap that moves the last free block's end bit into
/// the map's spare bits past the region's last granule: `check` reports it, reading
/// nothing past the region (miri runs this).
#[test]
fn check_stays_inside_the_region_when_a_bitmap_is_damaged() {
    const LEN: usize = 4096;
    let mut regions = Regions::new();
    let region = regions.take(LEN, 4096);
    let mut heap = HeaderlessHeap::<BestFit>::new();
    // SAFETY: the region outlives the heap.
    unsafe { heap.add_region(region.cast(), LEN) }.unwrap();
    let mut free = Vec::new();
    heap.for_each_free(|start, size| free.push((start, size)));
    let (first, granules) = (free[0].0, free[0].1 / GRANULE);
    // The layout `add_region` documents: a header of nine words (eleven with `checked`),
    // then the maps of `map_words` words each (free starts, free ends, ...).
    let header = if cfg!(feature = "checked") { 11 } else { 9 } * WORD;
    let map_words = (LEN / GRANULE + 1).div_ceil(usize::BITS as usize);
    let ends = region
        .cast::<u8>()
        .as_ptr()
        .wrapping_add(header + map_words * WORD);
    assert!(ends.addr() + map_words * WORD <= first);
    let last = (granules - 1) / usize::BITS as usize;
    assert_eq!(ends.addr() % WORD, 0, "the maps are word-aligned");
    #[allow(clippy::cast_ptr_alignment)] // word-aligned, asserted above
    let word = ends.cast::<usize>().wrapping_add(last);
    // SAFETY: a word of the region's free-ends map; restored before the heap is used.
    let before = unsafe { word.read() };
    assert_ne!(before & (1 << ((granules - 1) % usize::BITS as usize)), 0);
    // SAFETY: as above.
    unsafe { word.write(1 << (usize::BITS - 1)) };
    let error = heap.check().unwrap_err();
    assert!(
        error.to_string().contains("past the region's end"),
        "{error}"
    );
    // SAFETY: as above.
    unsafe { word.write(before) };
    heap.check().unwrap();
}

#[test]
fn bad_regions_are_refused_with_a_reason() {
    let mut regions = Regions::new();
    // Too small for the header (nine words) whatever the word size.
    let small = regions.take(32, 16);
    let mut heap: HeaderlessHeap<BestFit> = HeaderlessHeap::new();
    // SAFETY: refused before it is written.
    let error = unsafe { heap.add_region(small.cast(), 32) }.unwrap_err();
    assert!(
        matches!(error, ConfigError::RegionTooSmall { given: 32, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("region too small: 32 bytes given"),
        "{error}"
    );
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

#[test]
fn a_pointer_outside_every_region_panics_even_unchecked() {
    let mut regions = Regions::new();
    let mut heap = heap::<BestFit>(&mut regions, 4096);
    let mut other = 0u64;
    let text = heapkit_testkit::panic_message(|| {
        // SAFETY: the error under test, caught before the heap changes.
        unsafe { heap.deallocate(NonNull::from(&mut other).cast(), layout(8)) };
    });
    assert!(
        text.starts_with("heapkit-fit: invalid deallocate of 0x")
            && text.ends_with("not in any region's blocks"),
        "{text}"
    );
    heap.check().unwrap();
}

/// Without `checked`, a debug build's O(1) `debug_assert!` still catches a block freed
/// twice that did not merge with the block before it, before anything changes.
#[cfg(all(debug_assertions, not(feature = "checked")))]
#[test]
fn debug_builds_catch_a_second_free_of_an_unmerged_block() {
    let mut regions = Regions::new();
    let mut heap = heap::<AddressOrderedFirstFit>(&mut regions, 4096);
    let _a = heap.allocate(layout(64)).unwrap();
    let b = heap.allocate(layout(64)).unwrap().cast::<u8>();
    let _c = heap.allocate(layout(64)).unwrap();
    // SAFETY: a valid free; the second one is the error under test, caught first.
    unsafe { heap.deallocate(b, layout(64)) };
    let text = heapkit_testkit::panic_message(|| {
        // SAFETY: the error under test, caught before the heap changes.
        unsafe { heap.deallocate(b, layout(64)) };
    });
    assert!(text.contains("freed twice"), "{text}");
    heap.check().unwrap();
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_testkit::panic_message;

    fn message(
        act: impl FnOnce(&mut HeaderlessHeap<AddressOrderedFirstFit>, NonNull<u8>),
    ) -> String {
        let mut regions = Regions::new();
        let mut heap = heap::<AddressOrderedFirstFit>(&mut regions, 4096);
        let a = heap.allocate(layout(64)).unwrap().cast::<u8>();
        let _b = heap.allocate(layout(64)).unwrap();
        let text = panic_message(|| act(&mut heap, a));
        assert!(text.starts_with("heapkit-fit: invalid "), "{text}");
        heap.check().unwrap();
        text
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
        assert!(text.ends_with("freed twice?)"), "{text}");
    }

    #[test]
    fn interior_pointers_and_wrong_layouts_panic() {
        let text = message(|heap, a| {
            // SAFETY: an invalid free, caught before it touches anything.
            unsafe { heap.deallocate(NonNull::new_unchecked(a.as_ptr().add(16)), layout(8)) };
        });
        assert!(text.contains("pointer into one"), "{text}");
        let text = message(|heap, a| {
            // SAFETY: as above.
            unsafe { heap.deallocate(NonNull::new_unchecked(a.as_ptr().add(8)), layout(8)) };
        });
        assert!(text.contains("pointer into one"), "{text}");
        let text = message(|heap, a| {
            // SAFETY: as above.
            unsafe { heap.deallocate(a, layout(200)) };
        });
        assert!(
            text.ends_with("the layout is larger than the block"),
            "{text}"
        );
        let text = message(|heap, a| {
            // SAFETY: as above.
            unsafe { heap.deallocate(a, layout(40)) };
        });
        assert!(
            text.ends_with("the layout is smaller than the block"),
            "{text}"
        );
        let text = message(|heap, a| {
            // SAFETY: as above.
            unsafe { heap.grow_in_place(a, layout(8), layout(100)) }.ok();
        });
        assert!(text.starts_with("heapkit-fit: invalid grow of"), "{text}");
    }
}

const PROFILE: Profile = Profile::new(4096, 4096);

contract_suite!(
    address_ordered_local,
    PROFILE,
    |r: &mut Regions| Local::new(heap::<AddressOrderedFirstFit>(r, REGION))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    best_fit_locked_odd_region,
    PROFILE,
    |r: &mut Regions| Locked::new(odd::<HeaderlessHeap<BestFit>>(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    address_ordered_two_regions,
    PROFILE,
    |r: &mut Regions| Local::new(two_regions::<HeaderlessHeap<AddressOrderedFirstFit>>(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    best_fit_lent,
    PROFILE,
    |r: &mut Regions| Local::new(lent::<HeaderlessHeap<BestFit>>(r))
);
