//! A `#[global_allocator]` over a static array, with no OS underneath: the buffer is
//! claimed on the first allocation, which in a `std` program the runtime makes before
//! `main` (so "hand the backend its memory first" cannot work there). The same lines
//! serve a `#![no_std]` firmware. The root README's "global allocator" section; `cargo
//! xtask ci` builds and runs it.

use heapkit_core::source::StaticSource;
use heapkit_core::{static_source, Locked};
use heapkit_tlsf::GrowingTlsf;

#[global_allocator]
static HEAP: Locked<GrowingTlsf<StaticSource>> =
    Locked::new(GrowingTlsf::new(static_source!(8 << 20)));

fn main() {
    let words: Vec<String> = (0..10_000).map(|n| format!("word-{n}")).collect();
    let total: usize = words.iter().map(String::len).sum();
    let stats = HEAP.stats();
    assert!(stats.in_use >= total, "{stats:?}");
    assert_eq!(stats.capacity, 8 << 20, "one static buffer, claimed whole");
    println!(
        "{} words ({total} bytes) in a static 8 MiB heap: {} bytes in use",
        words.len(),
        stats.in_use
    );
}
