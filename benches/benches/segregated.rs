//! The composed `Heap` as a global allocator would be used, beside glibc, mimalloc, talc,
//! rlsf and heapkit's plain TLSF, in one run:
//!
//! (a) collection churn (a hashbrown map of 20,000 byte-string keys and short values, the
//! keys sorted, a vector grown and shrunk, half the map removed, all dropped), one thread
//! and two threads sharing the allocator; (b) allocate+free pairs per size class; (c) the
//! cost of composing: `Segregator<128, Pool, Pool>` against a direct `Pool` call.
//!
//! Region allocators (Heap, TLSF, talc, rlsf) each get a 256 MiB region behind the same
//! spin lock (`Locked` for heapkit, `LockedArena` for the peers); glibc and mimalloc use
//! their own thread caches. `cargo xtask bench segregated` prints the ratios.

use std::alloc::{Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use allocator_api2::alloc::Allocator;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heapkit_core::{Backend, Locked};
use heapkit_lab::peers::{rlsf, talc, RlsfTlsf, TalcArena};
use heapkit_pool::Pool;
use heapkit_segregated::{Heap, Segregator};
use heapkit_tlsf::Tlsf;
use heapkit_trace::arena::FromGlobal;
use heapkit_trace::arena::LockedArena;
use heapkit_trace::workloads::collections_churn;
use heapkit_trace::Region;

const REGION: usize = 256 << 20;
const ENTRIES: usize = 20_000;

struct Contenders {
    heap: Locked<Heap>,
    tlsf: Locked<Tlsf>,
    glibc: FromGlobal<System>,
    mimalloc: FromGlobal<mimalloc::MiMalloc>,
    talc: LockedArena<TalcArena>,
    rlsf: LockedArena<RlsfTlsf>,
}

impl Contenders {
    fn new() -> Self {
        Self {
            heap: Locked::new(Heap::with_region(Region::new(REGION, 4096).leak()).unwrap()),
            tlsf: Locked::new(Tlsf::with_region(Region::new(REGION, 4096).leak()).unwrap()),
            glibc: FromGlobal(System),
            mimalloc: FromGlobal(mimalloc::MiMalloc),
            talc: LockedArena::new(talc(REGION)),
            rlsf: LockedArena::new(rlsf(REGION)),
        }
    }
}

/// Runs `$body` once per contender with `$alloc` bound to a `&dyn`-free reference.
macro_rules! each {
    ($contenders:expr, |$name:ident, $alloc:ident| $body:expr) => {{
        let c = $contenders;
        {
            let ($name, $alloc) = ("heapkit Heap", &c.heap);
            $body
        }
        {
            let ($name, $alloc) = ("heapkit Tlsf", &c.tlsf);
            $body
        }
        {
            let ($name, $alloc) = ("glibc", &c.glibc);
            $body
        }
        {
            let ($name, $alloc) = ("mimalloc", &c.mimalloc);
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

fn churn(c: &mut Criterion) {
    let contenders = Contenders::new();
    let mut group = c.benchmark_group("segregated churn, 1 thread");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    group.measurement_time(Duration::from_secs(4));
    each!(&contenders, |name, alloc| {
        group.bench_function(name, |b| b.iter(|| collections_churn(alloc, ENTRIES, 7)));
    });
    group.finish();

    let mut group = c.benchmark_group("segregated churn, 2 threads sharing one allocator");
    group.throughput(Throughput::Elements(2 * ENTRIES as u64));
    group.measurement_time(Duration::from_secs(4));
    each!(&contenders, |name, alloc| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for seed in [7, 8] {
                        scope.spawn(move || {
                            for _ in 0..iters {
                                black_box(collections_churn(alloc, ENTRIES, seed));
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    });
    group.finish();
}

fn pairs(c: &mut Criterion) {
    let contenders = Contenders::new();
    for size in [16, 64, 256, 1024, 16_384] {
        let mut group = c.benchmark_group(format!("segregated alloc+free pair, {size} B"));
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

fn composition_overhead(c: &mut Criterion) {
    let pool = |block| {
        let region = Region::new(1 << 20, 4096).leak();
        Pool::with_region(region, block, 16).unwrap()
    };
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut group = c.benchmark_group("segregated composition overhead, 64 B pair");
    group.throughput(Throughput::Elements(1));
    let mut direct = pool(64);
    group.bench_function("Pool", |b| {
        b.iter(|| {
            let block = direct.allocate(black_box(layout)).unwrap();
            // SAFETY: just allocated with `layout`.
            unsafe { direct.deallocate(black_box(block.cast()), layout) };
        });
    });
    let mut composed = Segregator::<128, _, _>::new(pool(128), pool(4096));
    group.bench_function("Segregator<128, Pool, Pool>", |b| {
        b.iter(|| {
            let block = composed.allocate(black_box(layout)).unwrap();
            // SAFETY: as above.
            unsafe { composed.deallocate(black_box(block.cast()), layout) };
        });
    });
    group.finish();
}

criterion_group!(segregated, composition_overhead, pairs, churn);
criterion_main!(segregated);
