//! 10^5 short-lived threads one after another, each freeing the blocks the one before
//! left and leaving 50 of its own, with `Sharded` as the global allocator: prints the
//! peak bytes mapped from the OS and the peak resident set, to show that exited threads'
//! memory is adopted rather than piling up.
//!
//! `cargo run --release -p heapkit-sharded --example thread_churn [THREADS]`
#![allow(clippy::cast_precision_loss)] // MiB for display

use heapkit_sharded::Sharded;

#[global_allocator]
static GLOBAL: Sharded = Sharded::new();

fn main() {
    let threads: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().unwrap());
    let mut handed: Vec<Box<[u8]>> = Vec::new();
    let mut peak_mapped = 0;
    let started = std::time::Instant::now();
    for t in 0..threads {
        handed = std::thread::spawn(move || {
            for (i, block) in handed.iter().enumerate() {
                assert!(block
                    .iter()
                    .all(|&b| b == (i as u8) ^ (t as u8).wrapping_sub(1)));
            }
            drop(handed);
            (0..50usize)
                .map(|i| vec![(i as u8) ^ (t as u8); [16, 100, 700, 3000, 20_000][i % 5]].into())
                .collect()
        })
        .join()
        .unwrap();
        peak_mapped = peak_mapped.max(Sharded::process_heap().mapped());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "{threads} threads in {:.1?}: peak mapped {:.1} MiB, now {:.1} MiB; {hwm}",
        started.elapsed(),
        peak_mapped as f64 / f64::from(1 << 20),
        Sharded::process_heap().mapped() as f64 / f64::from(1 << 20),
    );
}
