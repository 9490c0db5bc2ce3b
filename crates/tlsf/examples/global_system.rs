//! A `#[global_allocator]` that takes memory from the operating system as it needs it:
//! TLSF over 1 MiB chunks from `SystemSource`. The root README's "global allocator on
//! `std`" section; `cargo xtask ci` builds and runs it.

use heapkit_core::source::SystemSource;
use heapkit_core::Locked;
use heapkit_tlsf::GrowingTlsf;

#[global_allocator]
static HEAP: Locked<GrowingTlsf<SystemSource>> =
    Locked::new(GrowingTlsf::new(SystemSource::new(1 << 20)));

fn main() {
    let squares: Vec<u64> = (0..1_000_000).map(|n| n * n).collect();
    assert_eq!(squares[999_999], 999_998_000_001);
    let stats = HEAP.stats();
    assert!(stats.in_use >= 8_000_000, "{stats:?}");
    println!(
        "a million squares: {} bytes in use, {} taken from the OS",
        stats.in_use, stats.capacity
    );
}
