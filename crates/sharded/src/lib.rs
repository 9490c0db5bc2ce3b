//! heapkit-sharded: a thread-caching general-purpose heap (the Hoard / mimalloc class).
//!
//! ```
//! use heapkit_sharded::Sharded;
//!
//! // In a program: `#[global_allocator] static GLOBAL: Sharded = Sharded::new();`
//! static HEAP: Sharded = Sharded::new();
//!
//! let workers: Vec<_> = (0..2)
//!     .map(|t| {
//!         std::thread::spawn(move || {
//!             let mut v = allocator_api2::vec::Vec::new_in(&HEAP);
//!             v.extend(0..1000u64 * (t + 1));
//!             v.iter().sum::<u64>()
//!         })
//!     })
//!     .collect();
//! let sums: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
//! assert_eq!(sums, [499_500, 1_999_000]);
//! ```
//!
//! # How it works
//!
//! - **Segments and pages.** Memory comes from a [`Source`](heapkit_core::Source) in
//!   segments of `SEGMENT` bytes (4 MiB) aligned to their size, so masking a pointer finds
//!   its segment's header in O(1), and the slot index finds its page. A segment is cut
//!   into 64 KiB slots; a page spans one or more slots and holds blocks of one size class
//!   ([`classes`]: under 12.5% waste above 64 bytes).
//! - **Free-list sharding** (Leijen, Zorn, de Moura 2019). Each page has an owner heap
//!   ([`LocalHeap`], one per thread). The owner allocates from the page's free list and
//!   frees onto it with plain loads and stores. Another thread freeing a block pushes it
//!   onto the page's *remote* list with one compare-exchange; the owner takes that whole
//!   list with one swap when its own list runs dry.
//! - **Huge blocks** (above [`MAX_SMALL`](classes::MAX_SMALL), 128 KiB) get a segment of
//!   their own, handed back to the source when freed.
//! - **Thread exit.** A heap's segments are abandoned when it goes away: empty pages and
//!   segments go back to the source; the rest wait on a shared list, where frees into
//!   them keep working (remote pushes), until a heap that needs a page adopts them.
//! - **No thread-local state needed.** [`LocalHeap`] is a value (a kernel keeps one per
//!   core; a loom model one per thread); [`ShardedHeap`] also serves callers without one
//!   through a heap behind a lock. With `std`, [`Sharded`] keeps a heap per thread in a
//!   `thread_local!` and falls back to the locked heap while that is unavailable (being
//!   set up, or torn down by thread exit).
#![no_std]

pub mod classes;
pub mod geometry;
mod heap;
mod segment;

#[cfg(all(feature = "std", not(loom)))]
mod global;

pub use heap::{LocalHeap, ShardedHeap, ThreadHeap};

#[cfg(all(feature = "std", not(loom)))]
pub use global::Sharded;
