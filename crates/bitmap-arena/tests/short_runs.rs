//! The short-run index through `BitmapArena`: first fit of 2 to 128 blocks against a naive
//! lowest-address scan, on tiny arenas (1 to 200 blocks) and on arenas whose block counts
//! sit at and around multiples of 64, 512 and 4,096, with runs of exactly 63, 64, 65, 126,
//! 127 and 128 blocks, runs crossing words and reaching the last block; `check` after every
//! step. Deterministic (`heapkit_trace::Rng`), no proptest: fast enough natively and under
//! miri.

use std::ptr::NonNull;

use heapkit_bitmap_arena::BitmapArena;
use heapkit_core::{Backend, Layout};
use heapkit_testkit::Regions;
use heapkit_trace::Rng;

const BLOCK: usize = 8;

fn layout(blocks: usize) -> Layout {
    Layout::from_size_align(blocks * BLOCK, 1).unwrap()
}

struct Harness {
    _regions: Regions,
    arena: BitmapArena,
    base: usize,
    used: Vec<bool>,
    /// (pointer, first block, blocks)
    live: Vec<(NonNull<u8>, usize, usize)>,
}

impl Harness {
    fn new(blocks: usize) -> Self {
        let mut regions = Regions::new();
        let words = BitmapArena::bitmap_words(blocks);
        let region = regions.take(blocks * BLOCK, 4096);
        let bitmap = regions.take_side_buffer(words * 8, 8);
        // SAFETY: `regions` keeps both buffers alive past the arena (same struct, dropped
        // after it: fields drop in order, and `arena` holds no drop glue over them).
        let arena = unsafe {
            BitmapArena::from_raw_parts(region.cast(), blocks * BLOCK, bitmap.cast(), words, BLOCK)
        }
        .unwrap();
        assert_eq!(arena.total_blocks(), blocks);
        let base = region.cast::<u8>().as_ptr().addr();
        Self {
            _regions: regions,
            arena,
            base,
            used: vec![false; blocks],
            live: Vec::new(),
        }
    }

    fn naive(&self, count: usize) -> Option<usize> {
        let mut run = 0;
        for (i, used) in self.used.iter().enumerate() {
            run = if *used { 0 } else { run + 1 };
            if run == count {
                return Some(i + 1 - count);
            }
        }
        None
    }

    fn allocate(&mut self, count: usize) -> Option<usize> {
        let expected = self.naive(count);
        let got = self.arena.allocate(layout(count)).ok();
        let start = got.map(|b| (b.cast::<u8>().as_ptr().addr() - self.base) / BLOCK);
        assert_eq!(
            start,
            expected,
            "run of {count} in {} blocks",
            self.used.len()
        );
        if let (Some(block), Some(start)) = (got, start) {
            assert!(self.used[start..start + count].iter().all(|u| !*u));
            self.used[start..start + count].fill(true);
            self.live.push((block.cast(), start, count));
        }
        start
    }

    fn free(&mut self, at: usize) {
        let (ptr, start, count) = self.live.swap_remove(at);
        self.used[start..start + count].fill(false);
        // SAFETY: live with this layout.
        unsafe { self.arena.deallocate(ptr, layout(count)) };
    }

    fn grow(&mut self, at: usize, extra: usize) {
        let (ptr, start, count) = self.live[at];
        let wanted = count + extra;
        let end = start + wanted;
        let fits = end <= self.used.len() && self.used[start + count..end].iter().all(|u| !*u);
        // SAFETY: live with the old layout.
        let grown = unsafe { self.arena.grow_in_place(ptr, layout(count), layout(wanted)) };
        assert_eq!(grown.is_ok(), fits);
        if fits {
            self.used[start + count..end].fill(true);
            self.live[at].2 = wanted;
        }
    }

    fn shrink(&mut self, at: usize, kept: usize) {
        let (ptr, start, count) = self.live[at];
        let kept = kept.clamp(1, count);
        // SAFETY: live with the old layout.
        unsafe { self.arena.shrink_in_place(ptr, layout(count), layout(kept)) }.unwrap();
        self.used[start + kept..start + count].fill(false);
        self.live[at].2 = kept;
    }

    fn check(&self) {
        assert_eq!(self.arena.check(), Ok(()));
        let free = self.used.iter().filter(|u| !**u).count();
        assert_eq!(self.arena.free_blocks(), free);
    }

    /// Every run length the short-run index answers for (and 1 and 128 around it), each
    /// allocated and freed straight away: the bitmap comes back, the index's bytes do not.
    fn probe_all(&mut self) {
        for count in 1..=128 {
            if self.allocate(count).is_some() {
                let last = self.live.len() - 1;
                self.free(last);
            }
        }
        self.check();
    }
}

const SPECIAL: [usize; 12] = [2, 3, 62, 63, 64, 65, 66, 126, 127, 128, 129, 1];

fn count(rng: &mut Rng, blocks: usize) -> usize {
    match rng.below(4) {
        0 => SPECIAL[rng.below(SPECIAL.len())],
        1 => 1 + rng.below(8),
        2 => 2 + rng.below(126),
        _ => 1 + rng.below(blocks.min(300)),
    }
}

fn drive(blocks: usize, seed: u64, steps: usize, probe_every: usize) {
    let mut rng = Rng::new(seed | 1);
    let mut h = Harness::new(blocks);
    h.check();
    for step in 0..steps {
        match rng.below(10) {
            0..=3 => {
                let c = count(&mut rng, blocks);
                h.allocate(c);
            }
            4..=6 if !h.live.is_empty() => {
                let at = rng.below(h.live.len());
                h.free(at);
            }
            7 if !h.live.is_empty() => {
                let at = rng.below(h.live.len());
                let extra = 1 + rng.below(130);
                h.grow(at, extra);
            }
            8 if !h.live.is_empty() => {
                let at = rng.below(h.live.len());
                let kept = 1 + rng.below(h.live[at].2);
                h.shrink(at, kept);
            }
            9 => {
                // Singles fill holes and split runs across word boundaries.
                for _ in 0..rng.below(20) {
                    h.allocate(1);
                }
            }
            _ => {}
        }
        h.check();
        if probe_every != 0 && step % probe_every == 0 {
            h.probe_all();
        }
    }
    while !h.live.is_empty() {
        h.free(0);
        h.check();
    }
    h.probe_all();
    assert_eq!(h.naive(blocks), Some(0));
}

#[test]
fn tiny_arenas_first_fit_every_run_length() {
    let (steps, seeds) = if cfg!(miri) { (10, 1) } else { (150, 3) };
    let sizes: Vec<usize> = if cfg!(miri) {
        vec![1, 2, 63, 64, 65, 127, 128, 129, 200]
    } else {
        (1..=200).collect()
    };
    for blocks in sizes {
        for seed in 0..seeds {
            drive(
                blocks,
                0x9E37_79B9 ^ (blocks as u64) << 20 ^ seed,
                steps,
                25,
            );
        }
    }
}

#[test]
fn arenas_around_word_group_and_leaf_multiples() {
    let sizes: &[usize] = if cfg!(miri) {
        &[511, 577]
    } else {
        &[
            255,
            256,
            257,
            511,
            512,
            513,
            575,
            576,
            577,
            1023,
            1025,
            4095,
            4096,
            4097,
            4161,
            64 * 65 - 1,
            64 * 65 + 1,
            64 * 513 + 7,
        ]
    };
    let steps = if cfg!(miri) { 20 } else { 600 };
    for &blocks in sizes {
        drive(blocks, 0xDEAD_BEEF ^ blocks as u64, steps, 50);
    }
}

/// `bitmap_words` covers everything `build` lays out (bitsets, run tree, short-run index):
/// guard words after it stay untouched, with and without `checked`.
#[test]
fn nothing_is_written_past_bitmap_words() {
    const GUARD: u64 = 0x5A5A_5A5A_5A5A_5A5A;
    let sizes: &[usize] = if cfg!(miri) {
        &[1, 65, 513]
    } else {
        &[
            1,
            2,
            63,
            64,
            65,
            127,
            128,
            511,
            512,
            513,
            4096,
            4097,
            64 * 65 * 8 + 1,
        ]
    };
    for &blocks in sizes {
        let words = BitmapArena::bitmap_words(blocks);
        let mut regions = Regions::new();
        let region = regions.take(blocks * BLOCK, 4096);
        let mut bitmap = vec![GUARD; words + 8];
        // SAFETY: `regions` and `bitmap` outlive the arena, which is not used once
        // `bitmap` is read below; the arena is told of `words` words only.
        let mut arena = unsafe {
            BitmapArena::from_raw_parts(
                region.cast(),
                blocks * BLOCK,
                NonNull::new(bitmap.as_mut_ptr()).unwrap(),
                words,
                BLOCK,
            )
        }
        .unwrap();
        assert_eq!(arena.total_blocks(), blocks);
        let mut rng = Rng::new(blocks as u64 | 1);
        let mut live = Vec::new();
        for _ in 0..if cfg!(miri) { 30 } else { 400 } {
            if rng.below(3) != 0 {
                let count = 1 + rng.below(blocks.min(140));
                if let Ok(block) = arena.allocate(layout(count)) {
                    live.push((block.cast::<u8>(), count));
                }
            } else if !live.is_empty() {
                let (ptr, count) = live.swap_remove(rng.below(live.len()));
                // SAFETY: live with this layout.
                unsafe { arena.deallocate(ptr, layout(count)) };
            }
        }
        assert_eq!(arena.check(), Ok(()));
        assert!(
            bitmap[words..].iter().all(|w| *w == GUARD),
            "{blocks} blocks: written past bitmap_words"
        );
    }
}
