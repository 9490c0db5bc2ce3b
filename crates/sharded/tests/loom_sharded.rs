//! Loom model checks of the sharded heap's cross-thread paths: a block freed by another
//! thread reaches its owner with the freeing thread's writes visible, and segments
//! abandoned by an exiting heap, with frees racing into them, lose no block. Run by
//! `cargo xtask loom`.
//!
//! A block's contents are modelled by a loom cell per block (loom cannot see the blocks'
//! plain memory): whoever holds a block writes its cell, so loom reports a causality
//! violation when a block changes hands without the remote push (Release) and the owner's
//! collection (Acquire) synchronising.
#![cfg(loom)]

use std::alloc::{alloc, dealloc, Layout as StdLayout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use heapkit_core::{Layout, Source};
use heapkit_sharded::classes::{class_for, class_size, span_slots};
use heapkit_sharded::geometry::{SEGMENT, SLOT};
use heapkit_sharded::ShardedHeap;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use loom::sync::{Arc, Mutex};

/// Segments from the test process's allocator, aligned to their size.
struct StdSource;

// SAFETY: fresh allocations of at least the length asked, `SEGMENT`-aligned, freed with
// the same layout.
unsafe impl Source for StdSource {
    const CHUNK_ALIGN: usize = SEGMENT;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        let layout = StdLayout::from_size_align(min_len.max(1), SEGMENT).ok()?;
        // SAFETY: non-zero size.
        let start = NonNull::new(unsafe { alloc(layout) })?;
        Some(NonNull::slice_from_raw_parts(start, layout.size()))
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        let layout = StdLayout::from_size_align(chunk.len(), SEGMENT).unwrap();
        // SAFETY: allocated in `acquire` with this layout.
        unsafe { dealloc(chunk.cast::<u8>().as_ptr(), layout) }
    }
}

/// A size whose pages hold few blocks, so a page runs dry in a few allocations.
fn layout() -> Layout {
    Layout::from_size_align(SLOT / 2, 8).unwrap()
}

fn blocks_per_page() -> usize {
    let class = class_for(layout().size(), 8).unwrap();
    span_slots(class) * SLOT / class_size(class)
}

/// Loom cells standing for blocks' contents, made on first use of each address.
#[derive(Default)]
struct Contents(Mutex<HashMap<usize, Arc<UnsafeCell<u64>>>>);

impl Contents {
    fn of(&self, block: NonNull<u8>) -> Arc<UnsafeCell<u64>> {
        let mut cells = self.0.lock().unwrap();
        Arc::clone(
            cells
                .entry(block.as_ptr().addr())
                .or_insert_with(|| Arc::new(UnsafeCell::new(0))),
        )
    }

    /// Writes the block's cell: the caller claims to hold the block.
    fn stamp(&self, block: NonNull<u8>, value: u64) {
        // SAFETY: the caller holds the block, so its cell; loom checks that claim.
        self.of(block).with_mut(|cell| unsafe { *cell = value });
    }
}

/// Runs a loom model and prints how many interleavings it explored.
fn model(what: &str, body: impl Fn() + Sync + Send + 'static) {
    // Counted per call, not in a static: the test harness runs tests in parallel.
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    loom::model(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        body();
    });
    eprintln!(
        "loom: {what}: {} interleavings",
        iterations.load(StdOrdering::Relaxed)
    );
}

struct Block(NonNull<u8>);
// SAFETY: handed over whole.
unsafe impl Send for Block {}

/// The owner hands a block to another thread, which writes it and frees it back with a
/// remote push; the owner only learns of the free through a relaxed flag (no
/// synchronisation of its own), runs its page dry, and gets the block back from the
/// remote list. Its write to the block must come after the other thread's: only the
/// push's Release and the collection's Acquire order them (weakening either is caught by
/// `cargo xtask loom --mutants`).
#[test]
fn a_remotely_freed_block_reaches_its_owner_with_the_freers_writes() {
    model("sharded remote free, 2 threads", || {
        let shared = Arc::new(ShardedHeap::new(StdSource));
        let contents = Arc::new(Contents::default());
        let handed = Arc::new(AtomicPtr::new(std::ptr::null_mut()));
        let freed = Arc::new(AtomicBool::new(false));

        let freer = {
            let (shared, contents, handed, freed) = (
                Arc::clone(&shared),
                Arc::clone(&contents),
                Arc::clone(&handed),
                Arc::clone(&freed),
            );
            loom::thread::spawn(move || {
                let mut heap = shared.local_heap();
                let block = loop {
                    // Acquire: the test's own hand-off of the block to this thread.
                    if let Some(block) = NonNull::new(handed.load(Ordering::Acquire)) {
                        break block;
                    }
                    loom::thread::yield_now();
                };
                contents.stamp(block, 2);
                // SAFETY: handed over by its owner, freed once.
                unsafe { heap.deallocate(&shared, block, layout()) };
                // Relaxed: tells the owner to go on, without ordering anything.
                freed.store(true, Ordering::Relaxed);
                heap.abandon(&shared);
            })
        };

        let mut heap = shared.local_heap();
        let first = heap.allocate(&shared, layout()).unwrap().cast::<u8>();
        contents.stamp(first, 1);
        handed.store(first.as_ptr(), Ordering::Release);
        let mut mine = Vec::new();
        for _ in 1..blocks_per_page() {
            mine.push(heap.allocate(&shared, layout()).unwrap().cast::<u8>());
        }
        while !freed.load(Ordering::Relaxed) {
            loom::thread::yield_now();
        }
        // The page is dry: the next allocation takes the remote list, and gets `first`
        // back whenever it sees the push (a relaxed look may not yet: then the heap sets up
        // another page, and this interleaving checks nothing more).
        for _ in 0..blocks_per_page() {
            let block = heap.allocate(&shared, layout()).unwrap().cast::<u8>();
            mine.push(block);
            if block == first {
                contents.stamp(block, 3);
                break;
            }
        }
        freer.join().unwrap();
        for block in mine {
            // SAFETY: live blocks of this heap, freed once.
            unsafe { heap.deallocate(&shared, block, layout()) };
        }
        heap.check().unwrap();
        heap.abandon(&shared);
        assert_eq!(shared.mapped(), 0, "an empty heap gives every segment back");
    });
}

/// A heap exits (abandons its segments) while another thread frees its blocks into them;
/// a third heap then collects. Whatever the interleaving, no block is lost: once all are
/// free, the collecting heap gives every segment back.
#[test]
fn frees_racing_with_abandonment_lose_no_block() {
    model("sharded abandonment, 2 threads", || {
        let shared = Arc::new(ShardedHeap::new(StdSource));
        let mut owner = shared.local_heap();
        let blocks: Vec<Block> = (0..2)
            .map(|_| Block(owner.allocate(&shared, layout()).unwrap().cast()))
            .collect();

        let freer = {
            let shared = Arc::clone(&shared);
            loom::thread::spawn(move || {
                let mut heap = shared.local_heap();
                for Block(block) in blocks {
                    // SAFETY: handed over at spawn, freed once.
                    unsafe { heap.deallocate(&shared, block, layout()) };
                }
                heap.abandon(&shared);
            })
        };
        // Races with the frees: its pages may still hold blocks in use, or not.
        owner.abandon(&shared);
        freer.join().unwrap();

        let mut collector = shared.local_heap();
        collector.collect(&shared);
        collector.check().unwrap();
        collector.abandon(&shared);
        assert_eq!(shared.mapped(), 0, "a block was lost or a segment leaked");
    });
}

/// The last block of a page comes back from another thread while its owner frees its
/// other block and collects: whatever the interleaving, the owner sees the page empty
/// only once the remote block is on its list, and then gives the page and its segment
/// back (the freer touches nothing after its push); a collection after the freer is done
/// always finds the block. (No spin loop: loom may keep a relaxed load stale.)
#[test]
fn the_last_block_returns_from_another_thread_while_the_owner_retires_the_page() {
    model(
        "sharded last block back during retirement, 2 threads",
        || {
            let shared = Arc::new(ShardedHeap::new(StdSource));
            let contents = Arc::new(Contents::default());
            let mut owner = shared.local_heap();
            let kept = owner.allocate(&shared, layout()).unwrap().cast::<u8>();
            let given = Block(owner.allocate(&shared, layout()).unwrap().cast());
            contents.stamp(given.0, 1);

            let freer = {
                let (shared, contents) = (Arc::clone(&shared), Arc::clone(&contents));
                loom::thread::spawn(move || {
                    let mut heap = shared.local_heap();
                    let Block(block) = given;
                    contents.stamp(block, 2);
                    // SAFETY: handed over at spawn, freed once.
                    unsafe { heap.deallocate(&shared, block, layout()) };
                    heap.abandon(&shared);
                })
            };
            // SAFETY: ours, freed once.
            unsafe { owner.deallocate(&shared, kept, layout()) };
            // Races with the push: the page is empty (and given back, with its segment)
            // only if the remote block is already on the list the collection takes.
            owner.collect(&shared);
            owner.check().unwrap();
            freer.join().unwrap();
            // After the freer is done, a collection always finds the block.
            owner.collect(&shared);
            owner.check().unwrap();
            assert_eq!(shared.mapped(), 0, "the page's last block was lost");
            owner.abandon(&shared);
        },
    );
}
