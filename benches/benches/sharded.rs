//! The thread-caching heap (`heapkit-sharded`'s `Sharded`) as a global allocator would be
//! used, beside glibc, mimalloc, heapkit's `Locked<Heap>` and talc and rlsf behind a spin
//! lock, in one run. Every contender is called through `GlobalAlloc` (`FromGlobal`) or
//! its lock, the same path a `#[global_allocator]` takes.
//!
//! (a) allocate+free pairs per size; (b) collection churn on 1 thread and on 2 threads
//! each freeing its own blocks; (c) producer–consumer: one thread allocates, the other
//! frees (cross-thread frees); (d) a larson-like server loop: 2 threads each replace random
//! slots of their own array, and every round hand their array to the other thread (the
//! last two from `heapkit_trace::workloads`; a larson round here includes setting up and
//! freeing the arrays).
//! `cargo xtask bench sharded` prints the ratios.

use std::alloc::{Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use allocator_api2::alloc::Allocator;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heapkit_core::Locked;
use heapkit_lab::peers::{rlsf, talc, RlsfTlsf, TalcArena};
use heapkit_segregated::Heap;
use heapkit_sharded::Sharded;
use heapkit_trace::arena::{FromGlobal, LockedArena};
use heapkit_trace::workloads::{self, collections_churn};
use heapkit_trace::Region;

const REGION: usize = 512 << 20;
const ENTRIES: usize = 20_000;

struct Contenders {
    sharded: FromGlobal<Sharded>,
    mimalloc: FromGlobal<mimalloc::MiMalloc>,
    glibc: FromGlobal<System>,
    heap: Locked<Heap>,
    talc: LockedArena<TalcArena>,
    rlsf: LockedArena<RlsfTlsf>,
}

impl Contenders {
    fn new() -> Self {
        Self {
            sharded: FromGlobal(Sharded::new()),
            mimalloc: FromGlobal(mimalloc::MiMalloc),
            glibc: FromGlobal(System),
            heap: Locked::new(Heap::with_region(Region::new(REGION, 4096).leak()).unwrap()),
            talc: LockedArena::new(talc(REGION)),
            rlsf: LockedArena::new(rlsf(REGION)),
        }
    }
}

/// Runs `$body` once per contender with `$alloc` bound to a reference to it.
macro_rules! each {
    ($contenders:expr, |$name:ident, $alloc:ident| $body:expr) => {{
        let c = $contenders;
        {
            let ($name, $alloc) = ("heapkit Sharded", &c.sharded);
            $body
        }
        {
            let ($name, $alloc) = ("mimalloc", &c.mimalloc);
            $body
        }
        {
            let ($name, $alloc) = ("glibc", &c.glibc);
            $body
        }
        {
            let ($name, $alloc) = ("heapkit Locked<Heap>", &c.heap);
            $body
        }
        {
            let ($name, $alloc) = ("talc", &c.talc);
            $body
        }
        {
            let ($name, $alloc) = ("rlsf", &c.rlsf);
            $body
        }
    }};
}

fn pairs(c: &mut Criterion) {
    let contenders = Contenders::new();
    for size in [16, 64, 256, 1024, 16_384] {
        let mut group = c.benchmark_group(format!("sharded alloc+free pair, {size} B"));
        group.throughput(Throughput::Elements(1));
        let layout = Layout::from_size_align(size, 8).unwrap();
        each!(&contenders, |name, alloc| {
            group.bench_function(name, |b| {
                b.iter(|| {
                    let block = alloc.allocate(black_box(layout)).unwrap();
                    // SAFETY: just allocated with `layout`.
                    unsafe { alloc.deallocate(black_box(block.cast()), layout) };
                });
            });
        });
        group.finish();
    }
}

/// Runs `work(thread, iters)` on `threads` threads at once and times them together.
fn on_threads<F: Fn(u64, u64) + Sync>(threads: u64, iters: u64, work: F) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let work = &work;
            scope.spawn(move || work(t, iters));
        }
    });
    start.elapsed()
}

fn churn(c: &mut Criterion) {
    let contenders = Contenders::new();
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("sharded churn, {threads} thread(s), own frees"));
        group.throughput(Throughput::Elements(threads * ENTRIES as u64));
        group.measurement_time(Duration::from_secs(4));
        each!(&contenders, |name, alloc| {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, iters| {
                        for _ in 0..iters {
                            black_box(collections_churn(alloc, ENTRIES, 7 + t));
                        }
                    })
                });
            });
        });
        group.finish();
    }
}

const BATCHES: u64 = 16;
const SLOTS: usize = 1000;
const REPLACEMENTS: usize = 10_000;

fn producer_consumer(c: &mut Criterion) {
    let contenders = Contenders::new();
    let mut group = c.benchmark_group("sharded producer-consumer, cross-thread frees");
    group.throughput(Throughput::Elements(BATCHES * 256));
    group.measurement_time(Duration::from_secs(4));
    each!(&contenders, |name, alloc| {
        group.bench_function(name, |b| {
            b.iter(|| workloads::producer_consumer(alloc, BATCHES));
        });
    });
    group.finish();
}

/// Larson-like: each thread replaces random slots of an array of blocks, then the arrays
/// change threads, so every thread frees blocks the other allocated.
fn larson(c: &mut Criterion) {
    let contenders = Contenders::new();
    let mut group = c.benchmark_group("sharded larson-like, 2 threads");
    group.throughput(Throughput::Elements(2 * REPLACEMENTS as u64));
    group.measurement_time(Duration::from_secs(4));
    each!(&contenders, |name, alloc| {
        group.bench_function(name, |b| {
            b.iter(|| workloads::larson(alloc, 1, SLOTS, REPLACEMENTS));
        });
    });
    group.finish();
}

criterion_group!(sharded, pairs, churn, producer_consumer, larson);
criterion_main!(sharded);
