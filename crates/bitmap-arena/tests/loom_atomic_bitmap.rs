//! Loom model checks of `AtomicBitmap`: threads taking and returning single blocks from
//! shared bitmap words never share a block and never lose one, and a block's next owner
//! sees its previous owner's writes. Run by `cargo xtask loom`.
//!
//! A block's contents are modelled by a loom cell per block (the blocks themselves are
//! plain memory loom cannot see): whoever holds a block writes and re-reads its cell, so
//! loom reports a causality violation when a block changes hands without the claim
//! (Acquire) and the free (Release) synchronising.
#![cfg(loom)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use heapkit_bitmap_arena::AtomicBitmap;
use heapkit_core::Layout;
use heapkit_core::SharedBackend;
use loom::cell::UnsafeCell;
use loom::sync::Arc;

const BLOCK: usize = 16;

fn layout() -> Layout {
    Layout::from_size_align(BLOCK, 8).unwrap()
}

/// An `AtomicBitmap` of `blocks` blocks over memory it frees when dropped, with a loom
/// cell per block standing for the block's contents.
struct TestBitmap {
    bitmap: AtomicBitmap,
    memory: NonNull<[u128]>,
    contents: Vec<UnsafeCell<u8>>,
}

impl TestBitmap {
    fn new(blocks: usize) -> Self {
        // Blocks, then one bit word (u128 units keep the region 16-aligned).
        let units = blocks + 1;
        let memory = NonNull::from(Box::leak(vec![0u128; units].into_boxed_slice()));
        // SAFETY: the memory is freed only in `drop`, after the bitmap is gone.
        let bitmap = unsafe { AtomicBitmap::from_raw(memory.cast(), units * 16, BLOCK) }.unwrap();
        assert_eq!(bitmap.total_blocks(), blocks);
        let contents = (0..blocks).map(|_| UnsafeCell::new(u8::MAX)).collect();
        Self {
            bitmap,
            memory,
            contents,
        }
    }

    /// The cell standing for the contents of `block`.
    fn contents_of(&self, block: NonNull<u8>) -> &UnsafeCell<u8> {
        let base = self.memory.cast::<u8>().as_ptr().addr();
        &self.contents[(block.as_ptr().addr() - base) / BLOCK]
    }
}

impl Drop for TestBitmap {
    fn drop(&mut self) {
        // SAFETY: leaked in `new`, reclaimed once; no block is in use any more.
        drop(unsafe { Box::from_raw(self.memory.as_ptr()) });
    }
}

// SAFETY: the bitmap is `Sync`; the memory pointer is only used in `drop`.
unsafe impl Send for TestBitmap {}
// SAFETY: as above.
unsafe impl Sync for TestBitmap {}

/// Takes a block, stamps its contents, lets others run, checks the stamp, frees it.
fn use_once(shared: &TestBitmap, tag: u8) {
    let bitmap = &shared.bitmap;
    let block = bitmap
        .allocate(layout())
        .expect("a block per thread")
        .cast::<u8>();
    // SAFETY: the block is ours: BLOCK writable bytes.
    unsafe { block.as_ptr().write_bytes(tag, BLOCK) };
    let contents = shared.contents_of(block);
    // SAFETY: the block is ours, so is its cell; loom checks that claim.
    contents.with_mut(|stamp| unsafe { *stamp = tag });
    loom::thread::yield_now();
    // SAFETY: still ours.
    let stamp = unsafe { std::slice::from_raw_parts(block.as_ptr(), BLOCK) };
    assert!(stamp.iter().all(|b| *b == tag), "block handed out twice");
    // SAFETY: still ours, so is its cell.
    let stamp = contents.with(|stamp| unsafe { *stamp });
    assert_eq!(stamp, tag, "block handed out twice");
    // SAFETY: live with `layout()`.
    unsafe { bitmap.deallocate(block, layout()) };
}

/// Every block comes out exactly once after the threads finish.
fn drain_exactly(bitmap: &AtomicBitmap, blocks: usize) {
    assert_eq!(bitmap.stats().in_use, 0);
    let mut all: Vec<NonNull<u8>> = (0..blocks)
        .map(|_| bitmap.allocate(layout()).expect("a block was lost").cast())
        .collect();
    assert!(bitmap.allocate(layout()).is_err(), "a block is free twice");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), blocks);
}

fn check(threads: u8, blocks: usize, rounds: usize) -> usize {
    // Counted per call, not in a static: the test harness runs tests in parallel.
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(TestBitmap::new(blocks));
        let others: Vec<_> = (1..threads)
            .map(|tag| {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || {
                    for _ in 0..rounds {
                        use_once(&shared, tag);
                    }
                })
            })
            .collect();
        for _ in 0..rounds {
            use_once(&shared, 0);
        }
        for other in others {
            other.join().unwrap();
        }
        drain_exactly(&shared.bitmap, blocks);
    });
    iterations.load(Ordering::Relaxed)
}

#[test]
fn two_threads_contend_for_one_word() {
    let iterations = check(2, 2, 2);
    eprintln!("loom: AtomicBitmap, 2 threads x 2 rounds, 2 blocks: {iterations} interleavings");
}

#[test]
fn three_threads_share_three_blocks() {
    let iterations = check(3, 3, 1);
    eprintln!("loom: AtomicBitmap, 3 threads x 1 round, 3 blocks: {iterations} interleavings");
}
