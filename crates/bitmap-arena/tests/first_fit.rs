//! First fit against a model, by behaviour (where each run lands), for every run length:
//! random operation sequences over arenas whose block counts are not multiples of 64 or of
//! the run tree's 512-block leaves, runs of 1 to 127 blocks (the short-run index's) and
//! runs spanning many words and leaves (the run tree's), aligned runs (up to 8 KiB, over
//! arenas starting off any large alignment), runs that end at the last block, growing and
//! shrinking in place, and long searches after changes to 1 to 100 leaves (the library's
//! list of 32 pending leaves filled and overflowed); `check` (which recomputes the run tree
//! and holds the short-run index to the words) after every step.

use std::ptr::NonNull;

use heapkit_bitmap_arena::BitmapArena;
use heapkit_core::{Backend, Layout};
use heapkit_testkit::Regions;
use proptest::prelude::*;

const BLOCK: usize = 8;

fn layout(blocks: usize, align: usize) -> Layout {
    Layout::from_size_align(blocks * BLOCK, align).unwrap()
}

/// An arena of exactly `blocks` blocks (bitmap apart) starting `skew` blocks past a 64 KiB
/// boundary, with the index of block 0's address in blocks (alignment is of addresses, so
/// the skew moves every aligned start).
fn exact(regions: &mut Regions, blocks: usize, skew: usize) -> (BitmapArena, usize) {
    let words = BitmapArena::bitmap_words(blocks);
    let region = regions.take((blocks + skew) * BLOCK, 1 << 16).cast::<u8>();
    // SAFETY: `skew` blocks into a buffer of `blocks + skew` blocks.
    let region = unsafe { region.add(skew * BLOCK) };
    let bitmap = regions.take_side_buffer(words * 8, 8);
    // SAFETY: `regions` keeps both buffers alive past the arena; they are disjoint.
    let mut arena =
        unsafe { BitmapArena::from_raw_parts(region, blocks * BLOCK, bitmap.cast(), words, BLOCK) }
            .unwrap();
    assert_eq!(arena.total_blocks(), blocks);
    let first = arena.allocate(layout(1, 1)).unwrap();
    // SAFETY: just allocated.
    unsafe { arena.deallocate(first.cast(), layout(1, 1)) };
    let base = first.cast::<u8>().as_ptr().addr() / BLOCK;
    (arena, base)
}

/// Which blocks are used, and what the arena must answer.
struct Model {
    used: Vec<bool>,
    base: usize,
}

impl Model {
    /// Free blocks from each block on (0 past the end).
    fn free_from(&self) -> Vec<usize> {
        let mut runs = vec![0; self.used.len() + 1];
        for i in (0..self.used.len()).rev() {
            runs[i] = if self.used[i] { 0 } else { runs[i + 1] + 1 };
        }
        runs
    }

    /// The lowest start of `count` free blocks whose address is a multiple of `align`.
    fn first_fit(&self, count: usize, align: usize) -> Option<usize> {
        let step = (align / BLOCK).max(1);
        let runs = self.free_from();
        (0..self.used.len()).find(|&s| (self.base + s) % step == 0 && runs[s] >= count)
    }

    fn longest(&self) -> usize {
        self.free_from().into_iter().max().unwrap_or(0)
    }

    fn free(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }
}

/// A live run: address, first block, blocks, alignment asked.
type Live = (NonNull<u8>, usize, usize, usize);

/// Checks the arena's structures and its answers about free space against the model.
fn agrees(arena: &BitmapArena, model: &Model) {
    assert_eq!(arena.check(), Ok(()));
    let stats = arena.stats();
    assert_eq!(stats.free, model.free() * BLOCK);
    assert_eq!(stats.largest_free, model.longest() * BLOCK);
}

/// Runs `ops` (kind, value, alignment byte) on an arena of `blocks` blocks, `skew` blocks
/// past a 64 KiB boundary.
fn run(blocks: usize, skew: usize, ops: &[(u8, u32, u8)]) {
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, blocks, skew);
    let mut model = Model {
        used: vec![false; blocks],
        base,
    };
    let mut live: Vec<Live> = Vec::new();
    for &(kind, value, align) in ops {
        let value = value as usize;
        match kind % 8 {
            0..=3 => {
                let count = match value % 4 {
                    0 => 1,
                    // The short-run index's lengths, then the run tree's.
                    1 => 2 + value / 4 % 126,
                    2 => 128 + value / 4 % 1100,
                    _ => 1 + value / 4 % blocks,
                };
                // Up to 8 KiB: steps of up to 1,024 blocks, past a word, a group of the
                // short-run index and a leaf of the run tree.
                let align = if align % 4 == 0 {
                    BLOCK << (align / 4 % 11)
                } else {
                    1
                };
                let expected = model.first_fit(count, align);
                let got = arena.allocate(layout(count, align)).ok();
                let got_start = got.map(|b| b.cast::<u8>().as_ptr().addr() / BLOCK - base);
                assert_eq!(got_start, expected, "run of {count}, align {align}");
                if let (Some(block), Some(start)) = (got, expected) {
                    model.used[start..start + count].fill(true);
                    live.push((block.cast(), start, count, align));
                }
            }
            4 | 5 if !live.is_empty() => {
                let (ptr, start, count, align) = live.swap_remove(value % live.len());
                model.used[start..start + count].fill(false);
                // SAFETY: live with this layout.
                unsafe { arena.deallocate(ptr, layout(count, align)) };
            }
            6 if !live.is_empty() => {
                let at = value % live.len();
                let (ptr, start, count, align) = live[at];
                let wanted = count + 1 + value / 8 % 200;
                let end = start + wanted;
                let fits = end <= blocks && model.used[start + count..end].iter().all(|u| !*u);
                // SAFETY: live with the old layout.
                let grown = unsafe {
                    arena.grow_in_place(ptr, layout(count, align), layout(wanted, align))
                };
                assert_eq!(grown.is_ok(), fits, "grow {count} to {wanted} at {start}");
                if fits {
                    model.used[start + count..end].fill(true);
                    live[at].2 = wanted;
                }
            }
            7 if !live.is_empty() => {
                let at = value % live.len();
                let (ptr, start, count, align) = live[at];
                let kept = 1 + value / 8 % count;
                // SAFETY: live with the old layout.
                let shrunk = unsafe {
                    arena.shrink_in_place(ptr, layout(count, align), layout(kept, align))
                };
                assert_eq!(shrunk.unwrap().len(), kept * BLOCK);
                model.used[start + kept..start + count].fill(false);
                live[at].2 = kept;
            }
            _ => {}
        }
        agrees(&arena, &model);
    }
    for (ptr, start, count, align) in live {
        model.used[start..start + count].fill(false);
        // SAFETY: live with this layout.
        unsafe { arena.deallocate(ptr, layout(count, align)) };
    }
    agrees(&arena, &model);
    assert_eq!(model.longest(), blocks);
}

fn block_counts() -> impl Strategy<Value = usize> {
    if cfg!(miri) {
        prop_oneof![Just(65), Just(513), 1usize..700].boxed()
    } else {
        prop_oneof![
            Just(1),
            Just(63),
            Just(65),
            Just(511),
            Just(513),
            Just(1000),
            Just(1537),
            Just(4097),
            Just(20_011),
            1usize..6000,
        ]
        .boxed()
    }
}

proptest! {
    // No failure files (miri runs isolated) and fewer, shorter cases under miri.
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_run_lands_where_first_fit_says(
        blocks in block_counts(),
        skew in prop::sample::select(&[0usize, 1, 3, 63, 64, 65, 511][..]),
        ops in prop::collection::vec(any::<(u8, u32, u8)>(), 0..if cfg!(miri) { 30 } else { 400 }),
    ) {
        run(blocks, skew, &ops);
    }
}

#[test]
fn runs_at_the_very_end_and_across_leaves() {
    // 1,537 blocks: 24 words and a block, three 512-block leaves and a block.
    let blocks = 1537;
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, blocks, 0);
    let start_of = |b: NonNull<[u8]>| b.cast::<u8>().as_ptr().addr() / BLOCK - base;
    let singles: Vec<_> = (0..blocks)
        .map(|_| arena.allocate(layout(1, 1)).unwrap())
        .collect();
    let free = |arena: &mut BitmapArena, range: std::ops::Range<usize>| {
        for i in range {
            // SAFETY: each single is live and freed once.
            unsafe { arena.deallocate(singles[i].cast(), layout(1, 1)) };
        }
    };
    // Holes: 100 blocks across the word and leaf boundary at 1024, 600 blocks across the
    // leaf boundary at 512, and the 37 blocks at the very end.
    free(&mut arena, 1000..1100);
    free(&mut arena, 300..900);
    free(&mut arena, 1500..1537);
    assert_eq!(arena.check(), Ok(()));
    // The first hole long enough, every time; 36 blocks are left of the hole at 1000 once
    // 64 are taken from it, so a run of 37 goes to the end and one of 36 does not.
    let mut take = |blocks: usize| arena.allocate(layout(blocks, 1)).unwrap();
    let runs: Vec<_> = [37, 563, 64, 37, 36].into_iter().map(&mut take).collect();
    let starts: Vec<_> = runs.iter().map(|run| start_of(*run)).collect();
    assert_eq!(starts, [300, 337, 1000, 1500, 1064]);
    let last = runs[3];
    assert!(arena.allocate(layout(1, 1)).is_err());
    assert_eq!(arena.check(), Ok(()));
    // Free the last run and the single before it: one run of 38 at the end.
    // SAFETY: live runs with these layouts.
    unsafe { arena.deallocate(last.cast(), layout(37, 1)) };
    free(&mut arena, 1499..1500);
    assert_eq!(arena.stats().largest_free, 38 * BLOCK);
    let end = arena.allocate(layout(38, 1)).unwrap();
    assert_eq!(start_of(end), 1499);
    assert_eq!(arena.check(), Ok(()));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "150,000 blocks are minutes under miri; the unit tests run the same paths there"
)]
fn long_searches_after_changes_to_any_number_of_leaves() {
    // 150,000 blocks: 293 leaves of 512, ten tree levels, the top three of wider fields than
    // the rest. Integration tests see the library's own limits (not the unit tests' small
    // ones), so this reaches a search after a list of pending leaves filled to its end and
    // after more leaves than it holds.
    let blocks = 150_000;
    let mut regions = Regions::new();
    let (mut arena, base) = exact(&mut regions, blocks, 0);
    let start_of = |b: NonNull<[u8]>| b.cast::<u8>().as_ptr().addr() / BLOCK - base;
    let mut model = Model {
        used: vec![true; blocks],
        base,
    };
    // Used in 64-block runs, a word each; the last 4,144 blocks stay free for the runs that
    // fit in no word freed.
    let words: Vec<_> = (0..(blocks - 4096) / 64)
        .map(|_| arena.allocate(layout(64, 1)).unwrap())
        .collect();
    model.used[words.len() * 64..].fill(false);
    let mut freed = 0;
    for leaves in [1, 2, 31, 32, 33, 40, 100] {
        // Free a word in each of `leaves` leaves not touched yet (eight words a leaf): each
        // changes its leaf's edge runs, so each leaf waits for the next long search.
        for leaf in freed..freed + leaves {
            let word = leaf * 8 + 3;
            // SAFETY: each word's run is live and freed once.
            unsafe { arena.deallocate(words[word].cast(), layout(64, 1)) };
            model.used[word * 64..word * 64 + 64].fill(false);
        }
        freed += leaves;
        // As long as a word freed (the first of them), or longer (the free run at the end):
        // the run tree's to find either way.
        for count in [64, 65, 200] {
            let expected = model.first_fit(count, 1);
            let got = arena.allocate(layout(count, 1)).ok().map(start_of);
            assert_eq!(got, expected, "{leaves} leaves changed, run of {count}");
            let start = got.unwrap();
            model.used[start..start + count].fill(true);
            assert_eq!(
                arena.check(),
                Ok(()),
                "{leaves} leaves changed, run of {count}"
            );
        }
    }
    agrees(&arena, &model);
}
