//! Bump regions: heapkit's `Bump` beside bumpalo and bump-scope, each growing by chunks
//! from the system allocator (heapkit's through `SystemSource` with 4 KiB first chunks, as
//! the peers start small and double), in one run.
//!
//! (a) small values: 10,000 `u64`s, then a reset; (b) mixed values: bytes, pairs, 32-byte
//! arrays and short strings; (c) `Vec`s built in the region through allocator-api2 (100
//! vectors of 100 pushes, each built last so it grows in place where the region can);
//! (d) mark and release: the release alone, timed after 10 to 10^6 values (bump-scope's
//! `checkpoint`/`reset_to`; bumpalo has no marks, so its row is `reset`).
//!
//! `cargo xtask bench region` runs it and prints each group's medians as ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use allocator_api2::vec::Vec as ApiVec;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heapkit_core::source::SystemSource;

const VALUES: usize = 10_000;

fn heapkit() -> heapkit_region::Bump<'static, SystemSource> {
    heapkit_region::Bump::with_source(SystemSource::new(4096))
}

fn bump_scope() -> bump_scope::Bump {
    bump_scope::Bump::new()
}

/// Runs `$body` for each contender, with `$bump` bound to a fresh region, `$alloc!(v)`
/// allocating a value in it and `$str!(s)` copying a string into it.
macro_rules! for_each_region {
    (|$name:ident, $bump:ident| $body:expr) => {{
        {
            let $name = "heapkit Bump";
            #[allow(unused_mut)]
            let mut $bump = heapkit();
            #[allow(unused_macros)]
            macro_rules! value {
                ($v:expr) => {
                    $bump.alloc($v)
                };
            }
            #[allow(unused_macros)]
            macro_rules! text {
                ($s:expr) => {
                    $bump.alloc_str($s)
                };
            }
            $body
        }
        {
            let $name = "bumpalo";
            #[allow(unused_mut)]
            let mut $bump = bumpalo::Bump::new();
            #[allow(unused_macros)]
            macro_rules! value {
                ($v:expr) => {
                    $bump.alloc($v)
                };
            }
            #[allow(unused_macros)]
            macro_rules! text {
                ($s:expr) => {
                    $bump.alloc_str($s)
                };
            }
            $body
        }
        {
            let $name = "bump-scope";
            #[allow(unused_mut)]
            let mut $bump = bump_scope();
            #[allow(unused_macros)]
            macro_rules! value {
                ($v:expr) => {
                    $bump.alloc($v).into_mut()
                };
            }
            #[allow(unused_macros)]
            macro_rules! text {
                ($s:expr) => {
                    $bump.alloc_str($s).into_mut()
                };
            }
            $body
        }
    }};
}

fn small_values(c: &mut Criterion) {
    let mut group = c.benchmark_group("region small values");
    group.throughput(Throughput::Elements(VALUES as u64));
    group.measurement_time(Duration::from_secs(3));
    for_each_region!(|name, bump| {
        group.bench_function(name, |b| {
            b.iter(|| {
                for n in 0..VALUES as u64 {
                    black_box(value!(n));
                }
                bump.reset();
            });
        });
    });
    group.finish();
}

fn mixed_values(c: &mut Criterion) {
    let mut group = c.benchmark_group("region mixed values");
    group.throughput(Throughput::Elements(VALUES as u64));
    group.measurement_time(Duration::from_secs(3));
    let names = ["t", "temperature", "humidity-sensor-7", "pressure"];
    for_each_region!(|name, bump| {
        group.bench_function(name, |b| {
            b.iter(|| {
                for n in 0..VALUES {
                    match n % 4 {
                        0 => _ = black_box(value!(n as u8)),
                        1 => _ = black_box(value!((n as u32, n as u16))),
                        2 => _ = black_box(value!([n as u64; 4])),
                        _ => _ = black_box(text!(names[n % 3])),
                    }
                }
                bump.reset();
            });
        });
    });
    group.finish();
}

fn vectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("region vecs, 100 x 100 pushes");
    group.throughput(Throughput::Elements(100 * 100));
    group.measurement_time(Duration::from_secs(3));
    for_each_region!(|name, bump| {
        group.bench_function(name, |b| {
            b.iter(|| {
                for round in 0..100u32 {
                    let mut v = ApiVec::new_in(&bump);
                    for n in 0..100 {
                        v.push(round + n);
                    }
                    black_box(&v);
                    std::mem::forget(v);
                }
                bump.reset();
            });
        });
    });
    group.finish();
}

/// The release alone: `count` values are allocated untimed before each one.
fn release(c: &mut Criterion) {
    let mut group = c.benchmark_group("region release");
    for count in [10usize, 1000, 100_000, 1_000_000] {
        let mut heapkit = heapkit();
        group.bench_with_input(BenchmarkId::new("heapkit Bump", count), &count, |b, &n| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let mark = heapkit.mark();
                    for v in 0..n as u64 {
                        black_box(heapkit.alloc(v));
                    }
                    let start = Instant::now();
                    heapkit.release(black_box(mark));
                    spent += start.elapsed();
                }
                spent
            });
        });
        let scope = bump_scope();
        group.bench_with_input(BenchmarkId::new("bump-scope", count), &count, |b, &n| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let checkpoint = scope.checkpoint();
                    for v in 0..n as u64 {
                        black_box(scope.alloc(v).into_mut());
                    }
                    let start = Instant::now();
                    // SAFETY: nothing allocated after the checkpoint is used again.
                    unsafe { scope.reset_to(black_box(checkpoint)) };
                    spent += start.elapsed();
                }
                spent
            });
        });
        let mut bumpalo = bumpalo::Bump::new();
        group.bench_with_input(BenchmarkId::new("bumpalo", count), &count, |b, &n| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    for v in 0..n as u64 {
                        black_box(bumpalo.alloc(v));
                    }
                    let start = Instant::now();
                    bumpalo.reset();
                    spent += start.elapsed();
                }
                spent
            });
        });
    }
    group.finish();
}

criterion_group!(benches, small_values, mixed_values, vectors, release);
criterion_main!(benches);
