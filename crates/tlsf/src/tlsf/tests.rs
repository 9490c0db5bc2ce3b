//! Unit tests that look inside: list indices, the probe counter, planted corruption.

extern crate std;

use super::block::Block;
use super::regions::{Region, RegionPlan};
use super::*;
use heapkit_testkit::Regions;
use std::vec::Vec;

fn heap_over<const FL: usize, const SL: usize>(regions: &mut Regions, len: usize) -> Tlsf<FL, SL> {
    let mut heap = Tlsf::with_classes();
    let region = regions.take(len, 4096);
    // SAFETY: `regions` outlives every heap in these tests.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Free blocks: those on the lists and the top block.
fn free_blocks<const FL: usize, const SL: usize>(heap: &Tlsf<FL, SL>) -> usize {
    heap.free_blocks_per_list().iter().flatten().sum::<usize>() + usize::from(!heap.top.is_none())
}

/// A heap full of small free fragments of many sizes, where a first-fit or best-fit
/// search would walk thousands of blocks: every allocation still examines one.
#[test]
fn allocation_examines_one_block_however_fragmented() {
    let count = if cfg!(miri) { 300 } else { 20_000 };
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, count * 600 + 64 * 1024);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut blocks = Vec::new();
    for _ in 0..count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 16 + (seed % 480) as usize;
        let block = heap.allocate(layout(size, 8)).unwrap();
        blocks.push((block.cast::<u8>(), size));
    }
    // Free every other block: `count / 2` fragments that cannot merge.
    for &(block, size) in blocks.iter().step_by(2) {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { heap.deallocate(block, layout(size, 8)) };
    }
    let fragments = free_blocks(&heap);
    assert!(fragments > count / 2, "only {fragments} free blocks");

    heap.probes = 0;
    let mut taken = Vec::new();
    let requests = [
        (24, 8),
        (100, 8),
        (300, 8),
        (470, 8),
        (1000, 8),
        (5000, 8),
        (60_000, 8),
        (200, 64),
        (3000, 512),
        (20_000, 4096),
    ];
    for (i, (size, align)) in requests.into_iter().enumerate() {
        let block = heap.allocate(layout(size, align)).unwrap();
        assert_eq!(
            heap.probes,
            i + 1,
            "allocating {size} bytes aligned to {align} probed more than one block"
        );
        taken.push((block.cast::<u8>(), size, align));
    }
    // A request nothing can serve looks at the bitmaps and the top block; an aligned one
    // also at the head of the largest list, which may hold an aligned fit.
    assert!(heap.allocate(layout(count * 600, 8)).is_err());
    assert_eq!(heap.probes, requests.len() + 1);
    assert!(heap.allocate(layout(count * 600, 64)).is_err());
    assert_eq!(heap.probes, requests.len() + 3);
    for (block, size, align) in taken.into_iter().chain(
        blocks
            .into_iter()
            .skip(1)
            .step_by(2)
            .map(|(block, size)| (block, size, 8)),
    ) {
        // SAFETY: live blocks, freed once with their layout.
        unsafe { heap.deallocate(block, layout(size, align)) };
    }
    assert_eq!(
        free_blocks(&heap),
        1,
        "everything merges back into one block"
    );
}

#[test]
fn an_aligned_block_that_fits_exactly_is_found_with_one_more_look() {
    // One free block with room for a 4 KiB-aligned 4 KiB block but not for the good-fit
    // search's `size + align`: the head of the largest list serves it.
    let mut regions = Regions::new();
    let region = regions.take(3 * 4096, 4096).cast::<u8>();
    let mut heap: Tlsf = Tlsf::new();
    // The first block's payload lands just past the region header, so the next 4 KiB
    // boundary leaves a gap in front of at least a minimum block.
    // SAFETY: `regions` outlives the heap.
    unsafe { heap.add_region(region, 2 * 4096 + 64) }.unwrap();
    let page = layout(4096, 4096);
    heap.probes = 0;
    let block = heap
        .allocate(page)
        .expect("an aligned page fits in the region");
    assert_eq!(heap.probes, 1);
    assert_eq!(block.cast::<u8>().as_ptr().addr() % 4096, 0);
    assert!(heap.allocate(page).is_err(), "no second page fits");
    // SAFETY: live with `page`.
    unsafe { heap.deallocate(block.cast(), page) };
    assert_eq!(free_blocks(&heap), 1);
}

/// Three blocks a, b, c then the free rest; b freed: a free block between two allocated
/// ones, for tests that damage a heap and ask `check` about it.
fn fresh(regions: &mut Regions) -> (Tlsf, [Block; 3]) {
    let mut heap: Tlsf = heap_over(regions, 4096);
    let blocks = [0; 3].map(|_| {
        let payload = heap.allocate(layout(64, 8)).unwrap().cast::<u8>().as_ptr();
        Block::of_payload(payload)
    });
    // SAFETY: b is live with this layout.
    unsafe { heap.deallocate(NonNull::new(blocks[1].payload()).unwrap(), layout(64, 8)) };
    assert_eq!(heap.check(), Ok(()));
    (heap, blocks)
}

#[test]
fn check_reports_each_broken_invariant() {
    let what = |heap: &Tlsf| heap.check().unwrap_err().what;
    let mut regions = Regions::new();
    // SAFETY: the words written are headers, footers and links of blocks of each heap,
    // inside its region; each heap is dropped without further calls.
    unsafe {
        let (heap, [_, b, _]) = fresh(&mut regions);
        let size = b.size();
        // The footer slot of a `size`-byte block, holding another size.
        b.write_word(size / WORD - 1, size + GRANULE);
        assert_eq!(what(&heap), "free block's footer differs from its header");

        let (heap, [_, b, c]) = fresh(&mut regions);
        c.set_prev_free(false);
        let _ = b;
        assert_eq!(what(&heap), "PREV_FREE disagrees with the block before");

        let (heap, [a, _, _]) = fresh(&mut regions);
        a.set_header((a.header() & FLAGS) | 1 << 20);
        assert_eq!(what(&heap), "block runs past its region's end");

        let (heap, [a, _, _]) = fresh(&mut regions);
        a.set_header((a.header() & FLAGS) | (3 * WORD));
        assert_eq!(what(&heap), "block size is not a whole number of granules");

        let (mut heap, _) = fresh(&mut regions);
        let (fl, sl) = (0..DEFAULT_FL)
            .flat_map(|f| (0..DEFAULT_SL).map(move |s| (f, s)))
            .find(|&(f, s)| heap.heads[f][s].is_none())
            .unwrap();
        heap.sl_maps[fl] |= 1 << sl;
        heap.fl_map |= 1 << fl;
        assert_eq!(what(&heap), "second-level bit disagrees with its list");

        let (heap, [_, b, _]) = fresh(&mut regions);
        // A cycle: b, the one block on a list, comes round again.
        b.set_next_in_list(b);
        assert_eq!(
            what(&heap),
            "a list holds more blocks than are free (a cycle?)"
        );

        let (heap, [a, b, _]) = fresh(&mut regions);
        b.set_prev_in_list(a);
        assert_eq!(what(&heap), "list node's back link is wrong");

        let (heap, _) = fresh(&mut regions);
        heap.top.set_header(heap.top.header() & !TOP);
        assert_eq!(what(&heap), "the top bit disagrees with the top block");

        let (heap, [_, b, _]) = fresh(&mut regions);
        b.set_header(b.header() | TOP);
        assert_eq!(what(&heap), "the top bit disagrees with the top block");

        // A free block in the middle taken for the top block.
        let (mut heap, [_, b, _]) = fresh(&mut regions);
        heap.top.set_header(heap.top.header() & !TOP);
        b.set_header(b.header() | TOP);
        heap.top = b;
        assert_eq!(what(&heap), "the top block does not end its region");
    }
}

#[test]
fn freeing_merges_with_both_neighbours() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
    let empty = heap.stats();
    let l = layout(100, 8);
    let blocks: Vec<_> = (0..4)
        .map(|_| heap.allocate(l).unwrap().cast::<u8>())
        .collect();
    // SAFETY: live blocks freed once each.
    unsafe {
        heap.deallocate(blocks[0], l);
        heap.deallocate(blocks[2], l);
    }
    // Two holes plus the tail.
    assert_eq!(free_blocks(&heap), 3);
    // SAFETY: as above.
    unsafe { heap.deallocate(blocks[1], l) };
    // Blocks 0..=2 merged into one hole.
    assert_eq!(free_blocks(&heap), 2);
    let hole = block_size_for(100) * 3 - WORD;
    assert_eq!(heap.allocate(layout(hole, 8)).unwrap().cast(), blocks[0]);
    // SAFETY: as above.
    unsafe {
        heap.deallocate(blocks[0], layout(hole, 8));
        heap.deallocate(blocks[3], l);
    }
    assert_eq!(heap.stats(), empty);
}

#[test]
fn grow_and_shrink_stay_in_place() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
    let small = layout(40, 8);
    let a = heap.allocate(small).unwrap().cast::<u8>();
    let b = heap.allocate(small).unwrap().cast::<u8>();
    // SAFETY: `b` is live.
    unsafe { heap.deallocate(b, small) };
    // `a` absorbs the freed `b` and the free tail behind it.
    let big = layout(10_000, 8);
    // SAFETY: `a` is live with layout `small`.
    let grown = unsafe { heap.grow_in_place(a, small, big) }.unwrap();
    assert_eq!(grown.cast::<u8>(), a);
    assert!(grown.len() >= 10_000);
    assert_eq!(heap.stats().in_use, grown.len());
    // Shrinking hands the tail back: the next allocation lands right after `a`.
    // SAFETY: `a` is live with layout `big`.
    let shrunk = unsafe { heap.shrink_in_place(a, big, small) }.unwrap();
    assert_eq!(shrunk.len(), block_size_for(40) - WORD);
    let c = heap.allocate(small).unwrap().cast::<u8>();
    assert_eq!(c, b);
    // Growing into a live neighbour fails and changes nothing.
    let before = heap.stats();
    // SAFETY: `a` is live with layout `small`.
    assert!(unsafe { heap.grow_in_place(a, small, big) }.is_err());
    assert_eq!(heap.stats(), before);
    // SAFETY: live blocks freed once.
    unsafe {
        heap.deallocate(a, small);
        heap.deallocate(c, small);
    }
    assert_eq!(free_blocks(&heap), 1);
}

#[test]
fn fresh_memory_comes_from_the_top_block_and_frees_beside_it_merge_back() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
    let region_top = heap.top;
    assert!(!region_top.is_none(), "a region starts as the top block");
    assert_eq!(
        heap.free_blocks_per_list().iter().flatten().sum::<usize>(),
        0
    );
    let l = layout(100, 8);
    let blocks: Vec<_> = (0..3)
        .map(|_| heap.allocate(l).unwrap().cast::<u8>())
        .collect();
    // Cut one after another from the top block's front, which moves up behind them.
    assert_eq!(Block::of_payload(blocks[0].as_ptr()), region_top);
    // SAFETY: `heap.top` is the top block, a free block of the region.
    let top_at = unsafe { heap.top.addr().offset_from(region_top.addr()) };
    assert_eq!(top_at, 3 * block_size_for(100) as isize);
    // SAFETY: live blocks freed once each.
    unsafe {
        // Not beside the top block: onto a list.
        heap.deallocate(blocks[0], l);
        assert_eq!(
            heap.free_blocks_per_list().iter().flatten().sum::<usize>(),
            1
        );
        // Beside it: the top block moves down over the freed block.
        heap.deallocate(blocks[2], l);
        assert_eq!(heap.top, Block::of_payload(blocks[2].as_ptr()));
        // Between a listed block and the top block: all three are the top block again.
        heap.deallocate(blocks[1], l);
    }
    assert_eq!(heap.top, region_top);
    assert_eq!(
        heap.free_blocks_per_list().iter().flatten().sum::<usize>(),
        0
    );
    assert_eq!(heap.check(), Ok(()));
}

#[test]
fn a_new_region_becomes_the_top_block_and_the_old_one_goes_on_its_list() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 16 * 1024);
    let first_top = heap.top;
    let second = regions.take(64 * 1024, 4096);
    // SAFETY: `regions` outlives the heap.
    unsafe { heap.add_region(second.cast(), 64 * 1024) }.unwrap();
    assert_ne!(heap.top, first_top);
    assert_eq!(
        heap.free_blocks_per_list().iter().flatten().sum::<usize>(),
        1
    );
    assert_eq!(heap.check(), Ok(()));
    // The old top block, on its list, serves what fits in it; the rest comes from the new.
    let small = heap.allocate(layout(100, 8)).unwrap().cast::<u8>();
    assert_eq!(Block::of_payload(small.as_ptr()), first_top);
    let large = heap.allocate(layout(40 * 1024, 8)).unwrap().cast::<u8>();
    assert!(heap.region_of(large.as_ptr().addr()).is_some());
    assert_eq!(heap.check(), Ok(()));
    // SAFETY: live blocks freed once each.
    unsafe {
        heap.deallocate(small, layout(100, 8));
        heap.deallocate(large, layout(40 * 1024, 8));
    }
    assert_eq!(free_blocks(&heap), 2);
    assert_eq!(heap.check(), Ok(()));
}

#[test]
fn an_aligned_request_returns_its_leading_gap() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
    let a = heap.allocate(layout(64, 4096)).unwrap().cast::<u8>();
    assert_eq!(a.as_ptr().addr() % 4096, 0);
    // The gap before the block and the tail after it are both free blocks.
    assert_eq!(free_blocks(&heap), 2);
    let stats = heap.stats();
    assert_eq!(stats.in_use, block_size_for(64) - WORD);
    // SAFETY: live block, freed once.
    unsafe { heap.deallocate(a, layout(64, 4096)) };
    assert_eq!(free_blocks(&heap), 1);
}

#[test]
fn bad_regions_are_refused_and_change_nothing() {
    let mut regions = Regions::new();
    let mut heap: Tlsf = heap_over(&mut regions, 4096);
    let before = heap.stats();
    let tiny = regions.take(64, 16);
    // SAFETY: the region is ours; the call must refuse it anyway.
    let error = unsafe { heap.add_region(tiny.cast(), 16) }.unwrap_err();
    assert!(
        matches!(error, ConfigError::RegionTooSmall { given: 16, .. }),
        "{error}"
    );
    let base = heap.regions.iter().next().unwrap().span.start();
    let inside = NonNull::new(tiny.cast::<u8>().as_ptr().with_addr(base + 100)).unwrap();
    // SAFETY: refused before anything is written.
    let error = unsafe { heap.add_region(inside, 1000) }.unwrap_err();
    assert_eq!(
        error,
        ConfigError::RegionOverlaps {
            address: base + 100
        }
    );
    // SAFETY: as above.
    let error = unsafe { heap.add_region(tiny.cast(), usize::MAX) }.unwrap_err();
    assert!(matches!(error, ConfigError::RegionWraps { .. }), "{error}");
    assert_eq!(heap.stats(), before);
}

/// Region plans at the edges of the address space: run under miri for a 32-bit target
/// too (`cargo xtask miri-edges`), where the largest block is half the address space.
mod address_edges {
    use super::*;

    /// Checks a plan against its span: everything inside, blocks whole granules, the first
    /// block at most the largest.
    fn assert_plan_inside<const FL: usize, const SL: usize>(span: Span) -> RegionPlan {
        let plan = Tlsf::<FL, SL>::plan(span).unwrap();
        assert!(plan.span.len() <= span.len() && plan.span.start() == span.start());
        assert!(plan.header + size_of::<Region>() <= plan.first);
        assert_eq!(
            (span.start() + plan.first + WORD) % GRANULE,
            0,
            "payload aligned"
        );
        assert!(plan.first + MIN_BLOCK <= plan.sentinel);
        assert!(plan.sentinel + WORD <= plan.span.len(), "sentinel inside");
        assert_eq!((plan.sentinel - plan.first) % GRANULE, 0);
        assert!(plan.sentinel - plan.first <= Tlsf::<FL, SL>::MAX_BLOCK);
        plan
    }

    #[test]
    fn plans_near_the_top_of_the_address_space_stay_inside() {
        type Small = Tlsf<8, 4>;
        let top = usize::MAX;
        for len in [
            128,
            200,
            4096,
            Small::MAX_BLOCK - 1,
            Small::MAX_BLOCK + 4096,
        ] {
            for gap in [0, 1, 7, 15, 4095] {
                let span = Span::new(top - gap - len, len).unwrap();
                let plan = assert_plan_inside::<8, 4>(span);
                if len < Small::MAX_BLOCK {
                    assert_eq!(
                        plan.span.len(),
                        len,
                        "a region below the largest block is whole"
                    );
                }
            }
        }
        // The default parameters' largest block is half the 32-bit address space or more:
        // a region whose start is within that distance of the top (SDRAM at 0xC000_0000, a
        // higher-half heap) once placed its sentinel at `first + MAX_BLOCK`, wrapped.
        let len = (Tlsf::<DEFAULT_FL, DEFAULT_SL>::MAX_BLOCK / 2).min(1usize << (usize::BITS - 24));
        for gap in [0, 1, 4096] {
            let plan = assert_plan_inside::<DEFAULT_FL, DEFAULT_SL>(
                Span::new(top - gap - len, len).unwrap(),
            );
            assert_eq!(plan.span.len(), len);
        }
        // Straddling the middle of the address space.
        let middle = usize::MAX / 2 + 1;
        assert_plan_inside::<DEFAULT_FL, DEFAULT_SL>(Span::new(middle - 4099, 1 << 20).unwrap());
    }

    #[test]
    fn too_small_regions_at_the_top_are_refused() {
        // Up to one byte short of the smallest region that could work: its header, one block
        // and the sentinel, which is smaller on 32-bit targets than on 64-bit ones.
        let least = size_of::<Region>() + MIN_BLOCK + 2 * WORD;
        for len in [0, 1, WORD, MIN_BLOCK - 1, least - 1] {
            let span = Span::new(usize::MAX - len, len).unwrap();
            assert!(
                matches!(
                    Tlsf::<8, 4>::plan(span),
                    Err(ConfigError::RegionTooSmall { given, .. }) if given == len
                ),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn regions_past_the_largest_block_are_split() {
        type Small = Tlsf<8, 4>;
        let mut regions = Regions::new();
        let len = 100 * 1024;
        let mut heap: Small = heap_over(&mut regions, len);
        let blocks = free_blocks(&heap);
        assert!(blocks >= len / Small::MAX_BLOCK, "{blocks} pieces");
        assert!(heap.stats().largest_free <= Small::MAX_BLOCK - WORD);
        assert_eq!(heap.stats().capacity, len);
        let largest = layout(Small::max_request(), 8);
        let block = heap.allocate(largest).unwrap();
        assert!(heap.allocate(layout(Small::max_request() + 1, 8)).is_err());
        // SAFETY: live block, freed once.
        unsafe { heap.deallocate(block.cast(), largest) };
        assert_eq!(free_blocks(&heap), blocks);
    }
}

#[test]
fn a_fresh_region_of_region_len_for_serves_the_request() {
    for (size, align) in [(1, 1), (100, 8), (5000, 64), (70_000, 4096), (1 << 20, 16)] {
        let l = layout(size, align);
        let len = Tlsf::<28, 32>::region_len_for(l).unwrap();
        let mut regions = Regions::new();
        let region = regions.take(len + 1, 16);
        // Misalign the start as badly as a chunk header could.
        let start = region.cast::<u8>().as_ptr().wrapping_add(1);
        let mut heap: Tlsf = Tlsf::new();
        // SAFETY: inside the taken region.
        unsafe { heap.add_region(NonNull::new(start).unwrap(), len) }.unwrap();
        assert!(heap.allocate(l).is_ok(), "{size} bytes aligned to {align}");
    }
    assert!(Tlsf::<8, 4>::region_len_for(layout(1 << 20, 8)).is_none());
}

/// Damaged back links of a list's first block: null, another list's tag, a real block,
/// and an odd tag out of range. `check` must name each.
#[test]
fn check_reports_a_damaged_back_link_of_a_lists_first_block() {
    let mut regions = Regions::new();
    // SAFETY: b is a free block of the heap: its link words are in its region.
    unsafe {
        let bad = |b: Block| {
            let list = Classes::<DEFAULT_FL, DEFAULT_SL>::list_index(b.size());
            [
                Block::NONE,
                Block::list_head(list + 1),
                Block::list_head(list ^ 1),
                Block::list_head(DEFAULT_FL * DEFAULT_SL + 5),
                b,
                Block::at(b.addr().wrapping_add(GRANULE)),
            ]
        };
        let (_, [_, b, _]) = fresh(&mut regions);
        for value in bad(b) {
            let (heap, [_, b, _]) = fresh(&mut regions);
            assert_eq!(
                b.prev_in_list(),
                Block::list_head(Classes::<DEFAULT_FL, DEFAULT_SL>::list_index(b.size()))
            );
            b.set_prev_in_list(value);
            assert_eq!(
                heap.check().map_err(|c| c.what),
                Err("list node's back link is wrong"),
                "back link {value:?}"
            );
        }
    }
}

/// Every list's tag is odd and distinct, and never equal to a block address (even), for
/// the widest parameters the type takes.
#[test]
fn list_tags_are_odd_distinct_and_name_their_list() {
    fn all<const FL: usize, const SL: usize>() {
        let () = Classes::<FL, SL>::VALID;
        for index in 0..FL * SL {
            let tag = Block::list_head(index);
            assert_eq!(tag.addr().addr() & 1, 1);
            assert_eq!(tag.as_list_head(), Some(index));
            assert_eq!(Classes::<FL, SL>::split(index), (index / SL, index % SL));
        }
        // Every size's list is in range and agrees with list_of.
        let mut units = 1usize;
        while units * GRANULE < Classes::<FL, SL>::LIMIT {
            for u in [units, units + 1, units * 2 - 1] {
                let size = u * GRANULE;
                if size >= Classes::<FL, SL>::LIMIT {
                    continue;
                }
                let i = Classes::<FL, SL>::list_index(size);
                assert!(i < FL * SL, "size {size}: list {i}");
                let (fl, sl) = Classes::<FL, SL>::list_of(size);
                assert_eq!(fl * SL + sl, i);
                assert!(Classes::<FL, SL>::list_floor(fl, sl) <= size);
            }
            units *= 2;
        }
        assert_eq!(Block::NONE.as_list_head(), None);
    }
    all::<8, 4>();
    all::<10, 1>();
    all::<20, 16>();
    all::<DEFAULT_FL, DEFAULT_SL>();
    #[cfg(target_pointer_width = "64")]
    all::<32, 32>();
    #[cfg(target_pointer_width = "32")]
    all::<24, 32>();
}

/// `stats()` over a damaged header must end the walk, not read a misaligned word: a size
/// that is a whole number of words but not of granules, and one that is not even a
/// whole number of words (possible on 64-bit: the flags take only two bits).
#[test]
fn stats_survive_a_size_off_the_granule() {
    let mut regions = Regions::new();
    for bad in [MIN_BLOCK + WORD, MIN_BLOCK + 4, MIN_BLOCK + 4 + GRANULE] {
        let mut heap: Tlsf = heap_over(&mut regions, 4096);
        let blocks = [0; 2].map(|_| heap.allocate(layout(64, 8)).unwrap());
        // SAFETY: live blocks, written whole (their payloads are then initialized: the
        // walk below must fail on alignment alone); then a's header, inside the region.
        // The heap is dropped without further calls.
        let a = unsafe {
            for b in blocks {
                b.cast::<u8>().as_ptr().write_bytes(0, b.len());
            }
            let a = Block::of_payload(blocks[0].cast::<u8>().as_ptr());
            a.set_header((a.header() & FLAGS) | bad);
            a
        };
        let _ = a;
        assert!(heap.check().is_err());
        let _ = heap.stats();
    }
}
