//! Loom model checks of `Locked`: every interleaving of two and three threads allocating,
//! writing, re-reading and freeing through one `Locked` backend. Run by `cargo xtask loom`
//! (`RUSTFLAGS="--cfg loom"`); compiled to nothing otherwise.
#![cfg(loom)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_api2::alloc::Allocator;
use heapkit_core::{invalid_use, AllocError, Backend, Layout, Locked, Stats};
use loom::sync::Arc;

const SLOT: usize = 16;
const SLOTS: usize = 4;

/// Four 16-byte slots and a bit mask of the used ones: small enough for loom to explore
/// every interleaving, and a double hand-out shows up as two threads in one slot.
struct Slots {
    memory: NonNull<[u8; SLOT * SLOTS]>,
    used: u8,
}

// SAFETY: `Slots` owns its memory.
unsafe impl Send for Slots {}

impl Slots {
    fn new() -> Self {
        let memory = NonNull::from(Box::leak(Box::new([0u8; SLOT * SLOTS])));
        Self { memory, used: 0 }
    }

    fn index(&self, ptr: NonNull<u8>) -> usize {
        (ptr.as_ptr().addr() - self.memory.as_ptr().addr()) / SLOT
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: leaked from a box in `new`, reclaimed once.
        drop(unsafe { Box::from_raw(self.memory.as_ptr()) });
    }
}

// SAFETY: each slot is handed out once until freed, aligned to 16 and in bounds.
unsafe impl Backend for Slots {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() > SLOT || layout.align() > SLOT {
            return Err(AllocError);
        }
        let index = (0..SLOTS)
            .find(|i| self.used & (1 << i) == 0)
            .ok_or(AllocError)?;
        self.used |= 1 << index;
        // SAFETY: `index < SLOTS`, so the slot lies inside the memory block.
        let slot = unsafe { self.memory.cast::<u8>().add(index * SLOT) };
        Ok(NonNull::slice_from_raw_parts(slot, SLOT))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, _: Layout) {
        let index = self.index(ptr);
        if self.used & (1 << index) == 0 {
            invalid_use(
                "loom-slots",
                "deallocate",
                ptr.as_ptr(),
                "slot is already free",
            );
        }
        self.used &= !(1 << index);
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let start = self.memory.as_ptr().addr();
        (start..start + SLOT * SLOTS).contains(&ptr.as_ptr().addr())
    }

    fn stats(&self) -> Stats {
        let used = self.used.count_ones() as usize * SLOT;
        let free = SLOT * SLOTS - used;
        Stats {
            capacity: SLOT * SLOTS,
            in_use: used,
            free,
            largest_free: if free > 0 { SLOT } else { 0 },
            metadata: 0,
        }
    }
}

/// One thread's work: take a slot, stamp it with the thread's tag, let the others run,
/// check the stamp survived (no one else was handed the slot), free it.
fn stamp_and_free(heap: &Locked<Slots>, tag: u8, rounds: usize) {
    let layout = Layout::from_size_align(SLOT, 8).unwrap();
    for _ in 0..rounds {
        let block = heap
            .allocate(layout)
            .expect("a slot per thread is always free");
        let ptr = block.cast::<u8>().as_ptr();
        // SAFETY: the slot is ours: 16 writable bytes.
        unsafe { ptr.write_bytes(tag, SLOT) };
        loom::thread::yield_now();
        // SAFETY: still ours.
        let stamp = unsafe { std::slice::from_raw_parts(ptr, SLOT) };
        assert!(stamp.iter().all(|b| *b == tag), "slot handed out twice");
        // SAFETY: live with `layout`.
        unsafe { heap.deallocate(block.cast(), layout) };
    }
}

fn check(threads: u8, rounds: usize, builder: &loom::model::Builder) -> usize {
    // Counted per call, not in a static: the test harness runs tests in parallel.
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&iterations);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let heap = Arc::new(Locked::new(Slots::new()));
        let others: Vec<_> = (1..threads)
            .map(|tag| {
                let heap = Arc::clone(&heap);
                loom::thread::spawn(move || stamp_and_free(&heap, tag, rounds))
            })
            .collect();
        stamp_and_free(&heap, 0, rounds);
        for other in others {
            other.join().unwrap();
        }
        assert_eq!(
            heap.stats(),
            Stats {
                capacity: SLOT * SLOTS,
                in_use: 0,
                free: SLOT * SLOTS,
                largest_free: SLOT,
                metadata: 0,
            }
        );
    });
    iterations.load(Ordering::Relaxed)
}

#[test]
fn two_threads_never_share_a_block() {
    // Preemption bound from LOOM_MAX_PREEMPTIONS (`cargo xtask loom` sets 3).
    let iterations = check(2, 2, &loom::model::Builder::new());
    eprintln!("loom: Locked, 2 threads x 2 rounds: {iterations} interleavings");
}

#[test]
fn three_threads_never_share_a_block() {
    // With two threads waiting on a third, loom 0.7's scheduler can alternate between the
    // two waiters forever once it may preempt twice (tokio-rs/loom#53), so this model
    // allows one preemption; yields at every failed lock attempt still switch threads.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    let iterations = check(3, 1, &builder);
    eprintln!("loom: Locked, 3 threads x 1 round (1 preemption): {iterations} interleavings");
}
