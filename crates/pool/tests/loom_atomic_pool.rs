//! Loom model checks of `AtomicPool`'s Treiber stack and bump cursor: every interleaving
//! (within the preemption bound) of threads popping and pushing, including the classic ABA
//! schedule. Run by `cargo xtask loom`; compiled to nothing otherwise.
//!
//! A block's contents are modelled by a loom cell per block (the blocks themselves are
//! plain memory loom cannot see): whoever holds a block writes and re-reads its cell, so
//! loom reports a causality violation when a block changes hands without `push` (Release)
//! and `pop` (Acquire) synchronising. Links never written read as an out-of-range index
//! under loom (`LOOM_UNWRITTEN` in the pool), so a walk that reads one fails too.
#![cfg(loom)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use heapkit_core::Layout;
use heapkit_core::SharedBackend;
use heapkit_pool::AtomicPool;
use loom::cell::UnsafeCell;
use loom::sync::Arc;

const BLOCK: usize = 16;

fn layout() -> Layout {
    Layout::from_size_align(BLOCK, 8).unwrap()
}

/// An `AtomicPool` of `blocks` blocks over memory it frees when dropped, with a loom cell
/// per block standing for the block's contents.
struct TestPool {
    pool: AtomicPool,
    memory: NonNull<[u64]>,
    contents: Vec<UnsafeCell<u8>>,
}

impl TestPool {
    fn new(blocks: usize) -> Self {
        // Blocks, 4-byte links and padding; in u64 words so the region is 8-aligned.
        let words = (blocks * (BLOCK + 4) + 3).div_ceil(8);
        let memory = NonNull::from(Box::leak(vec![0u64; words].into_boxed_slice()));
        // SAFETY: the memory is freed only in `drop`, after the pool is gone.
        let pool = unsafe { AtomicPool::from_raw(memory.cast(), words * 8, BLOCK, 8) }.unwrap();
        assert_eq!(pool.total_blocks(), blocks);
        let contents = (0..blocks).map(|_| UnsafeCell::new(u8::MAX)).collect();
        Self {
            pool,
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

impl Drop for TestPool {
    fn drop(&mut self) {
        // SAFETY: leaked in `new`, reclaimed once; no block is in use any more.
        drop(unsafe { Box::from_raw(self.memory.as_ptr()) });
    }
}

// SAFETY: the pool is `Sync`; the memory pointer is only used in `drop`.
unsafe impl Send for TestPool {}
// SAFETY: as above.
unsafe impl Sync for TestPool {}

/// Takes a block, stamps its contents with `tag`, lets other threads run.
fn take(pool: &TestPool, tag: u8) -> NonNull<u8> {
    let block = take_quietly(pool, tag);
    loom::thread::yield_now();
    block
}

/// Takes a block and stamps it, without inviting a switch: a yield makes loom run the
/// other thread next, which would close the window the ABA schedule needs.
fn take_quietly(pool: &TestPool, tag: u8) -> NonNull<u8> {
    let block = pool
        .pool
        .allocate(layout())
        .expect("enough blocks for every thread")
        .cast::<u8>();
    // SAFETY: the block is ours: BLOCK writable bytes.
    unsafe { block.as_ptr().write_bytes(tag, BLOCK) };
    // SAFETY: the block is ours, so is its cell; loom checks that claim.
    pool.contents_of(block)
        .with_mut(|stamp| unsafe { *stamp = tag });
    block
}

/// Checks the stamp survived (no one else was handed the block), then frees it.
fn give_back(pool: &TestPool, block: NonNull<u8>, tag: u8) {
    // SAFETY: still ours.
    let stamp = unsafe { std::slice::from_raw_parts(block.as_ptr(), BLOCK) };
    assert!(stamp.iter().all(|b| *b == tag), "block handed out twice");
    // SAFETY: still ours, so is its cell.
    let stamp = pool.contents_of(block).with(|stamp| unsafe { *stamp });
    assert_eq!(stamp, tag, "block handed out twice");
    // SAFETY: live with `layout()`.
    unsafe { pool.pool.deallocate(block, layout()) };
}

/// After the threads: every block comes out exactly once.
fn drain_exactly(pool: &TestPool, blocks: usize) {
    let pool = &pool.pool;
    assert_eq!(pool.stats().in_use, 0);
    let mut all: Vec<NonNull<u8>> = (0..blocks)
        .map(|_| pool.allocate(layout()).expect("a block was lost").cast())
        .collect();
    assert!(
        pool.allocate(layout()).is_err(),
        "a block is on the free list twice"
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), blocks, "a block was handed out twice");
}

fn model(builder: &loom::model::Builder, body: impl Fn() + Sync + Send + 'static) -> usize {
    // Counted per call, not in a static: the test harness runs tests in parallel.
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        body();
    });
    iterations.load(Ordering::Relaxed)
}

#[test]
fn two_threads_pop_and_push() {
    let iterations = model(&loom::model::Builder::new(), || {
        let pool = Arc::new(TestPool::new(2));
        let other = {
            let pool = Arc::clone(&pool);
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let b = take(&pool, 1);
                    give_back(&pool, b, 1);
                }
            })
        };
        for _ in 0..2 {
            let b = take(&pool, 0);
            give_back(&pool, b, 0);
        }
        other.join().unwrap();
        drain_exactly(&pool, 2);
    });
    eprintln!("loom: AtomicPool, 2 threads x 2 rounds: {iterations} interleavings");
}

/// The ABA schedule: the free list is A → B → C. Thread 1 pops one block; meanwhile
/// thread 2 pops A and B, and pushes A back. If thread 1 read head A and link B, then
/// stalled, an untagged head would let it install B — which thread 2 holds — as the head.
#[test]
fn aba_interleaving_hands_out_no_block_twice() {
    let iterations = model(&loom::model::Builder::new(), || {
        let pool = Arc::new(TestPool::new(3));
        // Put all three on the free list: A (first freed last) on top.
        let blocks: Vec<_> = (0..3).map(|_| take_quietly(&pool, 9)).collect();
        for &b in blocks.iter().rev() {
            give_back(&pool, b, 9);
        }
        let stalled = {
            let pool = Arc::clone(&pool);
            loom::thread::spawn(move || {
                let b = take(&pool, 1);
                give_back(&pool, b, 1);
            })
        };
        let a = take_quietly(&pool, 2);
        let b = take_quietly(&pool, 3);
        give_back(&pool, a, 2);
        give_back(&pool, b, 3);
        stalled.join().unwrap();
        drain_exactly(&pool, 3);
    });
    eprintln!("loom: AtomicPool, ABA schedule (2 threads): {iterations} interleavings");
}

#[test]
fn three_threads_share_three_blocks() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    let iterations = model(&builder, || {
        let pool = Arc::new(TestPool::new(3));
        let others: Vec<_> = (1..3u8)
            .map(|tag| {
                let pool = Arc::clone(&pool);
                loom::thread::spawn(move || {
                    let b = take(&pool, tag);
                    give_back(&pool, b, tag);
                })
            })
            .collect();
        let b = take(&pool, 0);
        give_back(&pool, b, 0);
        for other in others {
            other.join().unwrap();
        }
        drain_exactly(&pool, 3);
    });
    eprintln!("loom: AtomicPool, 3 threads x 1 round (3 preemptions): {iterations} interleavings");
}

/// `stats` walks the free list while another thread frees two never-used blocks. The
/// Acquire on the head it loads makes the links it walks visible; without it the walk may
/// read a link before the write that set it (uninitialised memory in a real pool, an
/// out-of-range index in loom's table), which panics.
///
/// The walk runs on a spawned thread and the frees on the thread that built the pool: loom
/// never lets a load return a value its thread had seen before yielding, and with the walk
/// on the building thread its search never moved the walk after the frees (one
/// interleaving), so either way the stale links went unexplored.
#[test]
fn stats_walks_the_free_list_while_another_thread_frees() {
    let iterations = model(&loom::model::Builder::new(), || {
        let pool = Arc::new(TestPool::new(2));
        let walker = {
            let pool = Arc::clone(&pool);
            loom::thread::spawn(move || pool.pool.stats())
        };
        let a = take_quietly(&pool, 1);
        let b = take_quietly(&pool, 2);
        give_back(&pool, a, 1);
        give_back(&pool, b, 2);
        walker.join().unwrap();
        drain_exactly(&pool, 2);
    });
    eprintln!("loom: AtomicPool, stats during frees (2 threads): {iterations} interleavings");
}
