//! Fixed-size blocks of 64 bytes: heapkit's `Pool` (direct and through `Local`) and
//! `AtomicPool` beside heapless's `box_pool!` and the system allocator, in one run.
//!
//! `cargo xtask bench pool` runs it and prints each group's medians as ratios.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heapkit_core::{Backend, Local, Shared};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_trace::Region;
use heapless::box_pool;
use heapless::pool::boxed::BoxBlock;

const BLOCK: usize = 64;
const BLOCKS: usize = 4096;
/// Blocks held at once in the "N allocations, then N frees" benchmark.
const BATCH: usize = 1000;

type Payload = MaybeUninit<[u8; BLOCK]>;
box_pool!(HeaplessPool: Payload);

fn layout() -> Layout {
    Layout::from_size_align(BLOCK, 8).unwrap()
}

/// The allocators under test, each over its own region of the same size.
struct Contenders {
    pool: Pool,
    local: Local<Pool>,
    atomic: Shared<AtomicPool>,
}

impl Contenders {
    fn new() -> Self {
        // Pool needs BLOCK bytes a block; AtomicPool also 4 for its link (+3 padding).
        let pool = Pool::with_region(Region::new(BLOCKS * BLOCK, 64).leak(), BLOCK, 8).unwrap();
        let local = Local::new(
            Pool::with_region(Region::new(BLOCKS * BLOCK, 64).leak(), BLOCK, 8).unwrap(),
        );
        let atomic_len = BLOCKS * (BLOCK + 4) + 3;
        let atomic = Shared::new(
            AtomicPool::with_region(Region::new(atomic_len, 64).leak(), BLOCK, 8).unwrap(),
        );
        assert_eq!(pool.total_blocks(), BLOCKS);
        assert_eq!(atomic.total_blocks(), BLOCKS);
        let blocks: &'static mut [BoxBlock<Payload>] =
            Vec::leak((0..BLOCKS).map(|_| BoxBlock::new()).collect());
        for block in blocks {
            HeaplessPool.manage(block);
        }
        Self {
            pool,
            local,
            atomic,
        }
    }
}

fn alloc_free_pair(c: &mut Criterion, all: &mut Contenders) {
    let mut group = c.benchmark_group("pool/alloc_free_pair");
    group.throughput(Throughput::Elements(1));
    let layout = layout();
    group.bench_function("heapkit Pool", |b| {
        b.iter(|| {
            let block = all.pool.allocate(black_box(layout)).unwrap();
            // SAFETY: just allocated with `layout`.
            unsafe { all.pool.deallocate(black_box(block).cast(), layout) };
        });
    });
    group.bench_function("heapkit Local<Pool>", |b| {
        b.iter(|| {
            let block = all.local.allocate(black_box(layout)).unwrap();
            // SAFETY: just allocated with `layout`.
            unsafe { all.local.deallocate(black_box(block).cast(), layout) };
        });
    });
    group.bench_function("heapkit AtomicPool", |b| {
        b.iter(|| {
            let block = Allocator::allocate(&all.atomic, black_box(layout)).unwrap();
            // SAFETY: just allocated with `layout`.
            unsafe { Allocator::deallocate(&all.atomic, black_box(block).cast(), layout) };
        });
    });
    group.bench_function("heapless box_pool", |b| {
        b.iter(|| {
            drop(black_box(
                HeaplessPool.alloc(MaybeUninit::uninit()).ok().unwrap(),
            ))
        });
    });
    // The floor for any lock-free pool: a pop and a push are one compare-exchange each.
    let word = std::sync::atomic::AtomicU64::new(0);
    group.bench_function("floor: 2 uncontended compare_exchange", |b| {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        b.iter(|| {
            let old = word.load(Acquire);
            let _ = black_box(word.compare_exchange(old, old + 1, AcqRel, Acquire));
            let old = word.load(Acquire);
            let _ = black_box(word.compare_exchange(old, old + 1, AcqRel, Acquire));
        });
    });
    group.bench_function("system (glibc)", |b| {
        b.iter(|| {
            // SAFETY: non-zero size; freed with the same layout.
            unsafe {
                let block = System.alloc(black_box(layout));
                System.dealloc(black_box(block), layout);
            }
        });
    });
    group.finish();
}

fn batch(c: &mut Criterion, all: &mut Contenders) {
    let mut group = c.benchmark_group("pool/n_alloc_then_n_free");
    group.throughput(Throughput::Elements(BATCH as u64));
    let layout = layout();
    let mut held: Vec<NonNull<u8>> = Vec::with_capacity(BATCH);
    let id = |name| BenchmarkId::new(name, BATCH);
    group.bench_function(id("heapkit Pool"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                held.push(all.pool.allocate(black_box(layout)).unwrap().cast());
            }
            for block in held.drain(..) {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { all.pool.deallocate(black_box(block), layout) };
            }
        });
    });
    group.bench_function(id("heapkit Local<Pool>"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                held.push(all.local.allocate(black_box(layout)).unwrap().cast());
            }
            for block in held.drain(..) {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { all.local.deallocate(black_box(block), layout) };
            }
        });
    });
    group.bench_function(id("heapkit AtomicPool"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                held.push(
                    Allocator::allocate(&all.atomic, black_box(layout))
                        .unwrap()
                        .cast(),
                );
            }
            for block in held.drain(..) {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { Allocator::deallocate(&all.atomic, black_box(block), layout) };
            }
        });
    });
    let mut boxes = Vec::with_capacity(BATCH);
    group.bench_function(id("heapless box_pool"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                boxes.push(HeaplessPool.alloc(MaybeUninit::uninit()).ok().unwrap());
            }
            boxes.clear();
        });
    });
    let mut raw: Vec<*mut u8> = Vec::with_capacity(BATCH);
    group.bench_function(id("system (glibc)"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                // SAFETY: non-zero size.
                raw.push(unsafe { System.alloc(black_box(layout)) });
            }
            for block in raw.drain(..) {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { System.dealloc(black_box(block), layout) };
            }
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let mut all = Contenders::new();
    alloc_free_pair(c, &mut all);
    batch(c, &mut all);
}

criterion_group!(pool, benches);
criterion_main!(pool);
