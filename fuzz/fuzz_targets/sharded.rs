//! The thread-caching heap from two logical threads: two `LocalHeap`s over one
//! `ShardedHeap`, each operation run on the heap the input picks, so blocks allocated by
//! one are often freed, grown or shrunk by the other (remote frees). The shadow model
//! checks every block; at the end, with everything freed and collected, every segment is
//! back with the source. The heaps are single-threaded here: the interleavings of real
//! threads are loom's to check.
#![no_main]

use std::cell::Cell;
use std::ptr::NonNull;
use std::rc::Rc;

use arbitrary::Arbitrary;
use heapkit_core::{AllocError, Backend, Corruption, Layout, Local, Stats};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::{LocalHeap, ShardedHeap};
use heapkit_testkit::{ChunkSource, Harness, Op, Profile};
use libfuzzer_sys::fuzz_target;

type Source = ChunkSource<SEGMENT>;

/// Two heaps over one shared heap; `turn` says which one the next call runs on. The
/// shared heap is leaked for the heaps' `'static` borrow and reclaimed on drop.
struct TwoHeaps {
    /// The box, kept raw: freed through this pointer, not the shared reference.
    boxed: *mut ShardedHeap<Source>,
    shared: &'static ShardedHeap<Source>,
    heaps: [LocalHeap<'static>; 2],
    turn: Rc<Cell<usize>>,
}

impl TwoHeaps {
    fn parts(&mut self) -> (&'static ShardedHeap<Source>, &mut LocalHeap<'static>) {
        (self.shared, &mut self.heaps[self.turn.get()])
    }
}

impl Drop for TwoHeaps {
    fn drop(&mut self) {
        for heap in core::mem::replace(
            &mut self.heaps,
            [LocalHeap::unassigned(), LocalHeap::unassigned()],
        ) {
            heap.abandon(self.shared);
        }
        // SAFETY: leaked in the fuzz target; the heaps borrowing it are gone.
        drop(unsafe { Box::from_raw(self.boxed) });
    }
}

// SAFETY: every call forwards to one of the two heaps over the same shared heap, which
// may free and resize each other's blocks.
unsafe impl Backend for TwoHeaps {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (shared, heap) = self.parts();
        heap.allocate(shared, layout)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let (shared, heap) = self.parts();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.deallocate(shared, ptr, layout) }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (shared, heap) = self.parts();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.resize_in_place(shared, ptr, old, new) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (shared, heap) = self.parts();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.resize_in_place(shared, ptr, old, new) }
    }

    fn max_align(&self) -> usize {
        SEGMENT / 2
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.shared.contains(ptr)
    }

    /// Both heaps' figures added: blocks freed by the other heap count as in use until
    /// their owner collects them, so `in_use` is at least the live bytes (the profile
    /// checks that), and huge blocks count twice.
    fn stats(&self) -> Stats {
        let [a, b] = [&self.heaps[0], &self.heaps[1]].map(|heap| heap.stats(self.shared));
        Stats {
            capacity: a.capacity + b.capacity,
            in_use: a.in_use + b.in_use,
            free: a.free + b.free,
            largest_free: a.largest_free.max(b.largest_free),
            metadata: a.metadata + b.metadata,
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        self.heaps[0].check()?;
        self.heaps[1].check()
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    ops: Vec<(bool, Op)>,
}

fuzz_target!(|input: Input| {
    let turn = Rc::new(Cell::new(0));
    let profile = Profile::new(SEGMENT / 8, 4096).growing().deferring();
    let mut harness = Harness::new(profile, |regions| {
        let boxed = Box::into_raw(Box::new(ShardedHeap::new(Source::new(regions, SEGMENT, 3))));
        // SAFETY: freed only when `TwoHeaps` drops, after its heaps are gone.
        let shared: &'static ShardedHeap<Source> = unsafe { &*boxed };
        let heaps = [shared.local_heap(), shared.local_heap()];
        Local::new(TwoHeaps {
            boxed,
            shared,
            heaps,
            turn: Rc::clone(&turn),
        })
    });
    for (step, &(second, op)) in input.ops.iter().enumerate() {
        turn.set(usize::from(second));
        if let Err(violation) = harness.apply(op) {
            panic!(
                "step {step} ({op:?}) on heap {}: {violation}",
                usize::from(second)
            );
        }
    }
    if let Err(violation) = harness.finish() {
        panic!("finish: {violation}");
    }
    // Everything is freed: after both heaps collect, nothing stays mapped.
    // SAFETY: no block is live; the heaps are used through this reference only.
    let both = unsafe { harness.allocator_mut().get_mut() };
    let (shared, heaps) = (both.shared, &mut both.heaps);
    heaps[0].collect(shared);
    heaps[1].collect(shared);
    assert_eq!(
        shared.mapped(),
        0,
        "a segment stayed mapped after everything was freed"
    );
});
