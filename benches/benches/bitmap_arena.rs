//! Bitmapped arenas: heapkit's `BitmapArena` and `AtomicBitmap` beside the
//! `bitmap-allocator` crate (a segment tree of 16-bit bitmaps that allocates indices; its
//! indices are blocks here), in one run. Also prints heap efficiency under a random fill.
//!
//! `cargo xtask bench bitmap_arena` runs it and prints each group's medians as ratios.

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use bitmap_allocator::{BitAlloc, BitAlloc1M, BitAlloc4K, BitAlloc64K};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Backend, Shared};
use heapkit_trace::{Region, Rng};

const BLOCK: usize = 16;

fn arena(blocks: usize) -> BitmapArena {
    let words = BitmapArena::bitmap_words(blocks);
    let region = Region::new(blocks * BLOCK, 4096).leak();
    let bitmap = Box::leak(vec![std::mem::MaybeUninit::uninit(); words].into_boxed_slice());
    let arena = BitmapArena::with_bitmap(region, bitmap, BLOCK).unwrap();
    assert_eq!(arena.total_blocks(), blocks);
    arena
}

fn block_layout(blocks: usize) -> Layout {
    Layout::from_size_align(blocks * BLOCK, 1).unwrap()
}

/// Allocates every block but the last, so a search has the whole arena to cross.
fn nearly_full(arena: &mut BitmapArena) {
    for _ in 1..arena.total_blocks() {
        arena.allocate(block_layout(1)).unwrap();
    }
}

#[allow(clippy::unnecessary_box_returns)] // BitAlloc1M is 130 KiB: keep it off the stack
fn bit_alloc<B: BitAlloc>(blocks: usize) -> Box<B> {
    let mut b = Box::new(B::DEFAULT);
    b.insert(0..blocks);
    b
}

fn single_block_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("bitmap_arena/single_block_pair");
    let blocks = 4096;
    let mut ours = arena(blocks);
    group.bench_function("heapkit BitmapArena", |b| {
        b.iter(|| {
            let block = ours.allocate(black_box(block_layout(1))).unwrap();
            // SAFETY: just allocated.
            unsafe { ours.deallocate(black_box(block).cast(), block_layout(1)) };
        });
    });
    let len = blocks * BLOCK + 64 * 8;
    let atomic =
        Shared::new(AtomicBitmap::with_region(Region::new(len, 4096).leak(), BLOCK).unwrap());
    group.bench_function("heapkit AtomicBitmap", |b| {
        b.iter(|| {
            let block = atomic.allocate(black_box(block_layout(1))).unwrap();
            // SAFETY: just allocated.
            unsafe { atomic.deallocate(black_box(block).cast(), block_layout(1)) };
        });
    });
    let mut theirs = bit_alloc::<BitAlloc4K>(blocks);
    group.bench_function("bitmap-allocator BitAlloc4K", |b| {
        b.iter(|| {
            let index = theirs.alloc().unwrap();
            black_box(theirs.dealloc(black_box(index)));
        });
    });
    group.finish();
}

/// One free block at the far end: the time to find it should grow with log64(n), not n.
fn first_free_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("bitmap_arena/last_free_block");
    for shift in [10, 16, 20] {
        let blocks = 1usize << shift;
        let mut ours = arena(blocks);
        nearly_full(&mut ours);
        group.bench_function(BenchmarkId::new("heapkit BitmapArena", blocks), |b| {
            b.iter(|| {
                let block = ours.allocate(black_box(block_layout(1))).unwrap();
                // SAFETY: just allocated.
                unsafe { ours.deallocate(black_box(block).cast(), block_layout(1)) };
            });
        });
        let mut run = |name: &str, theirs: &mut dyn BitAlloc_| {
            for _ in 1..blocks {
                theirs.take().unwrap();
            }
            group.bench_function(BenchmarkId::new(name, blocks), |b| {
                b.iter(|| {
                    let index = theirs.take().unwrap();
                    black_box(theirs.give(black_box(index)));
                });
            });
        };
        match shift {
            10 => run("bitmap-allocator", &mut *bit_alloc::<BitAlloc4K>(blocks)),
            16 => run("bitmap-allocator", &mut *bit_alloc::<BitAlloc64K>(blocks)),
            _ => run("bitmap-allocator", &mut *bit_alloc::<BitAlloc1M>(blocks)),
        }
    }
    group.finish();
}

/// Object-safe access to the three `BitAlloc` sizes.
trait BitAlloc_ {
    fn take(&mut self) -> Option<usize>;
    fn give(&mut self, index: usize) -> bool;
}

impl<B: BitAlloc> BitAlloc_ for B {
    fn take(&mut self) -> Option<usize> {
        self.alloc()
    }
    fn give(&mut self, index: usize) -> bool {
        self.dealloc(index)
    }
}

fn multi_block_runs(c: &mut Criterion) {
    let mut group = c.benchmark_group("bitmap_arena/run_pair");
    let blocks = 4096;
    for run in [4, 64] {
        let mut ours = arena(blocks);
        // A little fragmentation in front: every other block of the first 256 in use.
        let pins: Vec<_> = (0..256)
            .map(|_| ours.allocate(block_layout(1)).unwrap())
            .collect();
        for pin in pins.iter().step_by(2) {
            // SAFETY: live, freed once.
            unsafe { ours.deallocate(pin.cast(), block_layout(1)) };
        }
        group.bench_function(BenchmarkId::new("heapkit BitmapArena", run), |b| {
            b.iter(|| {
                let block = ours.allocate(black_box(block_layout(run))).unwrap();
                // SAFETY: just allocated.
                unsafe { ours.deallocate(black_box(block).cast(), block_layout(run)) };
            });
        });
        let mut theirs = bit_alloc::<BitAlloc4K>(blocks);
        for i in (0..256).step_by(2) {
            theirs.remove(i..i + 1);
        }
        group.bench_function(BenchmarkId::new("bitmap-allocator", run), |b| {
            b.iter(|| {
                let base = theirs.alloc_contiguous(None, black_box(run), 0).unwrap();
                black_box(theirs.dealloc_contiguous(base, run));
            });
        });
    }
    group.finish();
}

/// Run lengths of 1..=16 blocks, skewed small.
fn run_length(rng: &mut Rng) -> usize {
    let r = rng.next();
    1 + (r % 4) as usize * (r >> 8) as usize % 16 / 4 + (r >> 20) as usize % 4
}

const SLOTS: usize = 300;

/// 300 live runs; each step frees a random one and allocates a new random run.
fn fragmenting_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("bitmap_arena/fragmenting_churn");
    let blocks = 8192;
    let mut ours = arena(blocks);
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut live: Vec<(NonNull<u8>, usize)> = (0..SLOTS)
        .map(|_| {
            let n = run_length(&mut rng);
            (ours.allocate(block_layout(n)).unwrap().cast(), n)
        })
        .collect();
    group.bench_function("heapkit BitmapArena", |b| {
        b.iter(|| {
            let slot = rng.next() as usize % SLOTS;
            let (ptr, n) = live[slot];
            // SAFETY: live run of `n` blocks.
            unsafe { ours.deallocate(ptr, block_layout(n)) };
            let n = run_length(&mut rng);
            live[slot] = (ours.allocate(block_layout(n)).unwrap().cast(), n);
        });
    });
    let mut theirs = bit_alloc::<BitAlloc64K>(blocks);
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut live: Vec<(usize, usize)> = (0..SLOTS)
        .map(|_| {
            let n = run_length(&mut rng);
            (theirs.alloc_contiguous(None, n, 0).unwrap(), n)
        })
        .collect();
    group.bench_function("bitmap-allocator", |b| {
        b.iter(|| {
            let slot = rng.next() as usize % SLOTS;
            let (base, n) = live[slot];
            theirs.dealloc_contiguous(base, n);
            let n = run_length(&mut rng);
            live[slot] = (theirs.alloc_contiguous(None, n, 0).unwrap(), n);
        });
    });
    group.finish();
}

/// Heap efficiency: churn 300 live runs for a while (fragmenting the arena), then keep
/// allocating random runs until the first failure; report the share of the blocks in use.
#[allow(clippy::cast_precision_loss)] // block counts far below 2^52
fn heap_efficiency(_: &mut Criterion) {
    let blocks = 4096;
    let steps = 20_000;
    let mut ours = arena(blocks);
    let mut rng = Rng::new(7);
    let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
    let mut used = 0;
    for step in 0..steps + blocks {
        if step < steps && live.len() >= SLOTS {
            let (ptr, n) = live.swap_remove(rng.next() as usize % live.len());
            // SAFETY: live run.
            unsafe { ours.deallocate(ptr, block_layout(n)) };
            used -= n;
        }
        let n = run_length(&mut rng);
        match ours.allocate(block_layout(n)) {
            Ok(p) => {
                live.push((p.cast(), n));
                used += n;
            }
            Err(_) if step >= steps => break,
            Err(_) => {}
        }
    }
    let ours_share = used as f64 / blocks as f64;

    let mut theirs = bit_alloc::<BitAlloc4K>(blocks);
    let mut rng = Rng::new(7);
    let mut live: Vec<(usize, usize)> = Vec::new();
    let mut used = 0;
    for step in 0..steps + blocks {
        if step < steps && live.len() >= SLOTS {
            let (base, n) = live.swap_remove(rng.next() as usize % live.len());
            theirs.dealloc_contiguous(base, n);
            used -= n;
        }
        let n = run_length(&mut rng);
        match theirs.alloc_contiguous(None, n, 0) {
            Some(base) => {
                live.push((base, n));
                used += n;
            }
            None if step >= steps => break,
            None => {}
        }
    }
    let theirs_share = used as f64 / blocks as f64;
    println!(
        "heap efficiency (blocks in use at the first failed random run after 20,000 churn steps, 4096 blocks): \
         heapkit BitmapArena {:.1}%, bitmap-allocator {:.1}%",
        ours_share * 100.0,
        theirs_share * 100.0
    );
}

criterion_group!(
    bitmap_arena,
    heap_efficiency,
    single_block_pair,
    first_free_scaling,
    multi_block_runs,
    fragmenting_churn
);
criterion_main!(bitmap_arena);
