//! Loom model checks of `Locked<Heap>`: two and three threads allocating slab and TLSF
//! blocks (the first allocation of a class takes a chunk from TLSF inside the lock),
//! stamping them, yielding, re-reading and freeing. Run by `cargo xtask loom`; compiled to
//! nothing otherwise.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_api2::alloc::Allocator;
use heapkit_core::{Layout, Locked};
use heapkit_segregated::Heap;
use loom::sync::Arc;

const REGION: usize = 512 * 1024;

/// A heap over a boxed region; the region is reclaimed after the heap.
struct Owned {
    heap: Locked<Heap>,
    region: *mut [u64],
}

// SAFETY: the region is owned and only reached through the locked heap.
unsafe impl Send for Owned {}
// SAFETY: as above; `Locked` serialises every access.
unsafe impl Sync for Owned {}

impl Owned {
    fn new() -> Self {
        let region = Box::into_raw(vec![0u64; REGION / 8].into_boxed_slice());
        let mut heap = Heap::new();
        // SAFETY: the region outlives the heap (dropped after it, in `drop`).
        unsafe { heap.add_region(std::ptr::NonNull::new(region.cast()).unwrap(), REGION) }.unwrap();
        Self {
            heap: Locked::new(heap),
            region,
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: boxed in `new`; every block is freed by now (the test checks `in_use`).
        drop(unsafe { Box::from_raw(self.region) });
    }
}

/// A slab block (48 bytes) and a TLSF block (1000 bytes), stamped with the thread's tag.
fn stamp_and_free(heap: &Locked<Heap>, tag: u8) {
    let layouts = [
        Layout::from_size_align(48, 8).unwrap(),
        Layout::from_size_align(1000, 8).unwrap(),
    ];
    let blocks = layouts.map(|layout| {
        let block = heap.allocate(layout).expect("memory for every thread");
        // SAFETY: the block is ours.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(tag, layout.size()) };
        block.cast::<u8>()
    });
    loom::thread::yield_now();
    for (block, layout) in blocks.into_iter().zip(layouts) {
        // SAFETY: still ours.
        let stamp = unsafe { std::slice::from_raw_parts(block.as_ptr(), layout.size()) };
        assert!(
            stamp.iter().all(|b| *b == tag),
            "a block was handed out twice"
        );
        // SAFETY: live with `layout`.
        unsafe { heap.deallocate(block, layout) };
    }
}

fn check(threads: u8, builder: &loom::model::Builder) -> usize {
    // Counted per call, not in a static: the test harness runs tests in parallel.
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let owned = Arc::new(Owned::new());
        let others: Vec<_> = (1..threads)
            .map(|tag| {
                let owned = Arc::clone(&owned);
                loom::thread::spawn(move || stamp_and_free(&owned.heap, tag))
            })
            .collect();
        stamp_and_free(&owned.heap, 0);
        for other in others {
            other.join().unwrap();
        }
        let stats = owned.heap.stats();
        assert_eq!(stats.in_use, 0);
        assert!(stats.is_consistent());
    });
    iterations.load(Ordering::Relaxed)
}

#[test]
fn two_threads_never_share_a_block() {
    let iterations = check(2, &loom::model::Builder::new());
    eprintln!("loom: Locked<Heap>, 2 threads: {iterations} interleavings");
}

#[test]
fn three_threads_never_share_a_block() {
    // One preemption: see the `Locked` model in heapkit-core (tokio-rs/loom#53).
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    let iterations = check(3, &builder);
    eprintln!("loom: Locked<Heap>, 3 threads (1 preemption): {iterations} interleavings");
}
