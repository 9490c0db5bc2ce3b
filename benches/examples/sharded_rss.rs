//! Throughput and peak resident memory of the thread-caching heap beside mimalloc, glibc
//! and `Locked<Heap>`, each as the *global allocator of its own process*: peak memory is
//! only meaningful per process, so the parent runs every (allocator, workload) pair in a
//! child, three times (the allocators taking turns), and reports the median time and the
//! largest `VmHWM`.
//!
//! `cargo run --release -p heapkit-benches --example sharded_rss` (about a minute);
//! `-- --rounds N` repeats more. The table is printed and written to
//! `target/bench/sharded_rss.md`.
#![allow(clippy::cast_precision_loss)] // ratios of counts far below 2^52

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use allocator_api2::alloc::Global;
use heapkit_core::source::SystemSource;
use heapkit_core::Locked;
use heapkit_segregated::Heap;
use heapkit_sharded::Sharded;
use heapkit_trace::workloads::{self, collections_churn};

const ALLOCATORS: [&str; 4] = [
    "heapkit Sharded",
    "mimalloc",
    "glibc",
    "heapkit Locked<Heap>",
];
const WORKLOADS: [&str; 5] = [
    "pairs 64 B",
    "churn, 1 thread",
    "churn, 2 threads",
    "producer-consumer",
    "larson-like",
];
const ENV: &[u8] = b"HEAPKIT_RSS_ALLOCATOR\0";

/// The global allocator of a child: the one its parent named in the environment, read
/// once (through libc's `getenv`, which does not allocate) before the first allocation.
struct Switch;

static CHOICE: AtomicU8 = AtomicU8::new(u8::MAX);
static SHARDED: Sharded = Sharded::new();
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static HEAP: Locked<Heap<SystemSource>> =
    Locked::new(Heap::with_source(SystemSource::new(4 << 20)));

extern "C" {
    fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
}

impl Switch {
    #[inline]
    fn choice() -> u8 {
        let choice = CHOICE.load(Ordering::Relaxed);
        if choice != u8::MAX {
            return choice;
        }
        // SAFETY: a NUL-terminated name; the result is read before anything changes the
        // environment (nothing here does).
        let value = unsafe { getenv(ENV.as_ptr().cast()) };
        let choice = if value.is_null() {
            2
        } else {
            // SAFETY: `getenv` returns a NUL-terminated string.
            let digit = unsafe { *value.cast::<u8>() };
            digit.wrapping_sub(b'0').min(3)
        };
        CHOICE.store(choice, Ordering::Relaxed);
        choice
    }
}

// SAFETY: every call goes to the one allocator chosen before the first allocation.
unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            match Self::choice() {
                0 => SHARDED.alloc(layout),
                1 => MIMALLOC.alloc(layout),
                3 => HEAP.alloc(layout),
                _ => System.alloc(layout),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the allocator that allocated it.
        unsafe {
            match Self::choice() {
                0 => SHARDED.dealloc(ptr, layout),
                1 => MIMALLOC.dealloc(ptr, layout),
                3 => HEAP.dealloc(ptr, layout),
                _ => System.dealloc(ptr, layout),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            match Self::choice() {
                0 => SHARDED.realloc(ptr, layout, new_size),
                1 => MIMALLOC.realloc(ptr, layout, new_size),
                3 => HEAP.realloc(ptr, layout, new_size),
                _ => System.realloc(ptr, layout, new_size),
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

fn alloc(layout: Layout) -> NonNull<u8> {
    // SAFETY: non-zero sizes only.
    NonNull::new(unsafe { GLOBAL.alloc(layout) }).expect("out of memory")
}

/// # Safety
/// `block` came from `alloc(layout)`.
unsafe fn free(block: NonNull<u8>, layout: Layout) {
    // SAFETY: per the caller.
    unsafe { GLOBAL.dealloc(block.as_ptr(), layout) }
}

/// Runs one workload in this process; returns the operations it made.
fn workload(name: &str) -> u64 {
    match name {
        "pairs 64 B" => {
            let layout = Layout::from_size_align(64, 8).unwrap();
            for _ in 0..20_000_000 {
                let block = alloc(black_box(layout));
                // SAFETY: just allocated.
                unsafe { free(black_box(block), layout) };
            }
            20_000_000
        }
        "churn, 1 thread" => {
            for round in 0..40 {
                black_box(collections_churn(
                    allocator_api2::alloc::Global,
                    20_000,
                    round,
                ));
            }
            40 * 20_000
        }
        "churn, 2 threads" => {
            std::thread::scope(|scope| {
                for t in 0..2 {
                    scope.spawn(move || {
                        for round in 0..40 {
                            black_box(collections_churn(Global, 20_000, round * 2 + t));
                        }
                    });
                }
            });
            2 * 40 * 20_000
        }
        "producer-consumer" => workloads::producer_consumer(Global, 20_000),
        "larson-like" => workloads::larson(Global, 200, 1000, 10_000),
        other => panic!("unknown workload {other}"),
    }
}

/// Peak resident set of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child(name: &str) {
    let start = Instant::now();
    let ops = workload(name);
    let elapsed = start.elapsed();
    println!("{} {} {}", elapsed.as_nanos(), ops, peak_rss_kib());
}

struct Measured {
    ns_per_op: f64,
    peak_kib: u64,
}

/// One run of `name` in a child with allocator `allocator`: ns per operation, peak KiB.
fn run_child(exe: &std::path::Path, allocator: usize, name: &str) -> (f64, u64) {
    let output = Command::new(exe)
        .args(["--child", name])
        .env("HEAPKIT_RSS_ALLOCATOR", allocator.to_string())
        .output()
        .expect("run a child");
    assert!(output.status.success(), "{name} on {allocator}: {output:?}");
    let line = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0] as f64 / fields[1] as f64, fields[2])
}

/// Every allocator on `name`, `rounds` times, the allocators taking turns within each
/// round so that the machine's drift over time falls on all of them alike.
fn measure(exe: &std::path::Path, name: &str, rounds: usize) -> Vec<Measured> {
    let mut times = vec![Vec::new(); ALLOCATORS.len()];
    let mut peaks = vec![0; ALLOCATORS.len()];
    for _ in 0..rounds {
        for (allocator, (times, peak)) in times.iter_mut().zip(&mut peaks).enumerate() {
            let (ns, kib) = run_child(exe, allocator, name);
            times.push(ns);
            *peak = (*peak).max(kib);
        }
    }
    times
        .into_iter()
        .zip(peaks)
        .map(|(mut times, peak_kib)| {
            times.sort_by(f64::total_cmp);
            Measured {
                ns_per_op: times[times.len() / 2],
                peak_kib,
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--child") {
        child(&args[position + 1]);
        return;
    }
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .map_or(3, |i| args[i + 1].parse().expect("--rounds N"));
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut table = String::from(
        "| workload | allocator | ns per op | × mimalloc | peak RSS (MiB) | RSS × mimalloc |\n|---|---|---:|---:|---:|---:|\n",
    );
    for name in WORKLOADS {
        let results = measure(&exe, name, rounds);
        let reference = &results[1];
        for (allocator, result) in ALLOCATORS.iter().zip(&results) {
            let line = format!(
                "| {name} | {allocator} | {:.1} | {:.2}× | {:.1} | {:.2}× |\n",
                result.ns_per_op,
                result.ns_per_op / reference.ns_per_op,
                result.peak_kib as f64 / 1024.0,
                result.peak_kib as f64 / reference.peak_kib as f64,
            );
            print!("{line}");
            table.push_str(&line);
        }
    }
    let note = format!(
        "\n_{rounds} runs per cell (median time, largest peak), each in its own process; {:?} in all._\n",
        Duration::from_secs(started.elapsed().as_secs())
    );
    print!("{note}");
    table.push_str(&note);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("sharded_rss.md"), table).unwrap();
}
