//! TLSF-class allocators: heapkit's `Tlsf<28, 32>` beside rlsf's `Tlsf<'_, u32, u32, 28, 32>`
//! and talc, each over its own 64 MiB region, in one run.
//!
//! (a) talc's random actions with requests up to 200, 3000 and 30000 bytes; (b) an
//! allocate+free pair per size with 300 random blocks live around it; printed after the
//! criterion groups: (c) heap efficiency on a 4 MiB region (median of 11 seeds), and (d)
//! per-operation latency percentiles over a million random actions, read with the CPU's
//! time-stamp counter.
//!
//! `cargo xtask bench tlsf` runs it and prints each group's medians as ratios.

use std::alloc::Layout;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heapkit_lab::peers::{heapkit_tlsf, rlsf, talc};
use heapkit_trace::arena::Arena;
use heapkit_trace::workloads::{heap_efficiency, untimed, RandomActions};

const REGION: usize = 64 << 20;
const STEPS: u64 = 1000;

/// Every contender, built fresh over a region of `len` bytes, handed to `run`.
macro_rules! for_each_contender {
    ($len:expr, |$name:ident, $arena:ident| $body:expr) => {{
        {
            let $name = "heapkit Tlsf";
            let mut $arena = heapkit_tlsf($len);
            $body
        }
        {
            let $name = "rlsf";
            let mut $arena = rlsf($len);
            $body
        }
        {
            let $name = "talc";
            let mut $arena = talc($len);
            $body
        }
    }};
}

fn random_actions(c: &mut Criterion) {
    for max in [200, 3000, 30_000] {
        let mut group = c.benchmark_group(format!("tlsf random actions, up to {max} B"));
        group.throughput(Throughput::Elements(STEPS));
        group.measurement_time(Duration::from_secs(3));
        for_each_contender!(REGION, |name, arena| {
            let mut workload = RandomActions::new(max, 42);
            group.bench_function(name, |b| {
                b.iter(|| {
                    for _ in 0..STEPS {
                        workload.step(&mut arena, &mut untimed);
                    }
                });
            });
            workload.drain(&mut arena);
        });
        group.finish();
    }
}

fn pairs(c: &mut Criterion) {
    for size in [16, 64, 512, 4096, 32_768] {
        let mut group = c.benchmark_group(format!("tlsf alloc+free pair, {size} B"));
        group.throughput(Throughput::Elements(1));
        let layout = Layout::from_size_align(size, 8).unwrap();
        for_each_contender!(REGION, |name, arena| {
            // 300 random blocks live around the pair, as in a running program.
            let mut background = RandomActions::new(3000, 7);
            for _ in 0..2_000 {
                background.step(&mut arena, &mut untimed);
            }
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let block = arena.alloc(black_box(layout)).unwrap();
                    // SAFETY: just allocated with `layout`.
                    unsafe { arena.free(black_box(block), layout) };
                });
            });
            background.drain(&mut arena);
        });
        group.finish();
    }
}

/// Heap efficiency and latency percentiles, printed as Markdown tables.
fn tables(_: &mut Criterion) {
    const SMALL: usize = 4 << 20;
    println!("\n### tlsf heap efficiency (4 MiB region, median of 11 seeds)\n");
    println!("| allocator | up to 200 B | up to 3000 B | up to 30000 B |\n|---|---:|---:|---:|");
    for_each_contender!(SMALL, |name, arena| {
        let row: Vec<String> = [200, 3000, 30_000]
            .into_iter()
            .map(|max| {
                let mut runs: Vec<f64> = (1..=11)
                    .map(|seed| heap_efficiency(&mut arena, SMALL, max, seed))
                    .collect();
                runs.sort_by(f64::total_cmp);
                format!("{:.1}%", runs[5] * 100.0)
            })
            .collect();
        println!("| {name} | {} |", row.join(" | "));
    });
    latency::table();
}

mod latency {
    //! Per-operation latency from the time-stamp counter, fenced so the reads are not
    //! reordered around the call; converted to ns by timing the counter against `Instant`.
    use super::{
        black_box, heapkit_tlsf, rlsf, talc, untimed, Arena, Duration, RandomActions, REGION,
    };
    use std::time::Instant;

    const WARM_UP: usize = 100_000;
    const TIMED: usize = 1_000_000;
    const RUNS: usize = 3;

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn ticks() -> u64 {
        use std::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: `lfence` and `rdtsc` exist on every x86_64 CPU.
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn ticks() -> u64 {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    #[allow(clippy::cast_precision_loss)]
    fn ns_per_tick() -> f64 {
        let (t0, i0) = (ticks(), Instant::now());
        std::thread::sleep(Duration::from_millis(100));
        let (t1, elapsed) = (ticks(), i0.elapsed());
        elapsed.as_nanos() as f64 / (t1 - t0) as f64
    }

    /// Percentiles (p50, p99, p99.9, p99.99, max) of one run, in ticks.
    #[allow(clippy::cast_precision_loss)]
    fn run<A: Arena>(arena: &mut A, seed: u64, realloc: bool) -> [u64; 5] {
        let mut workload = RandomActions::new(3000, seed);
        if !realloc {
            workload = workload.without_realloc();
        }
        for _ in 0..WARM_UP {
            workload.step(arena, &mut untimed);
        }
        let mut samples = Vec::with_capacity(TIMED);
        let mut timer = |call: &mut dyn FnMut()| {
            let start = ticks();
            call();
            samples.push(ticks() - start);
        };
        for _ in 0..TIMED {
            workload.step(arena, &mut timer);
        }
        workload.drain(arena);
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        [
            at(0.5),
            at(0.99),
            at(0.999),
            at(0.9999),
            samples[samples.len() - 1],
        ]
    }

    pub fn table() {
        for realloc in [false, true] {
            table_for(realloc);
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn table_for(realloc: bool) {
        let scale = ns_per_tick();
        let mix = if realloc {
            "allocate, free and realloc (moves copy up to 9 KB)"
        } else {
            "allocate and free only"
        };
        println!(
            "\n### tlsf latency per operation: random actions up to 3000 B, {mix}; {TIMED} ops, \
             median of {RUNS} runs; ns including ~{:.0} ns of timer\n",
            empty_call_ticks() as f64 * scale
        );
        println!("| allocator | p50 | p99 | p99.9 | p99.99 | max | p99.9 / p50 |\n|---|---:|---:|---:|---:|---:|---:|");
        for_each_contender!(REGION, |name, arena| {
            let runs: Vec<[u64; 5]> = (0..RUNS)
                .map(|r| run(&mut arena, 100 + r as u64, realloc))
                .collect();
            let median = |i: usize| {
                let mut column: Vec<u64> = runs.iter().map(|r| r[i]).collect();
                column.sort_unstable();
                column[RUNS / 2] as f64 * scale
            };
            let p: Vec<f64> = (0..5).map(median).collect();
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                p[0],
                p[1],
                p[2],
                p[3],
                p[4],
                p[2] / p[0]
            );
        });
    }

    /// The timer's own cost: the median of timing an empty call.
    fn empty_call_ticks() -> u64 {
        let mut samples: Vec<u64> = (0..10_000)
            .map(|_| {
                let start = ticks();
                black_box(());
                ticks() - start
            })
            .collect();
        samples.sort_unstable();
        samples[samples.len() / 2]
    }
}

criterion_group!(tlsf, tables, random_actions, pairs);
criterion_main!(tlsf);
