//! [`Sharded`]: the process-wide heap, with a [`LocalHeap`] per thread in a
//! `thread_local!`.

extern crate std;

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::ptr::NonNull;

use heapkit_core::source::SystemSource;
use heapkit_core::{AllocError, Corruption, Inspect, SharedBackend, Stats};

use crate::geometry::SEGMENT;
use crate::heap::{resize_checked, LocalHeap, ShardedHeap};

/// The one heap every [`Sharded`] handle uses: a `static`, so the per-thread heaps that
/// point at it can never outlive it.
static PROCESS: ShardedHeap<SystemSource> = ShardedHeap::new(SystemSource::new(SEGMENT));

/// A thread's heap, handed back (abandoned) when the thread exits.
struct ThreadCache {
    /// Set while a call runs on `heap`: a call that re-enters (a panic message from a
    /// `checked` report) takes the locked heap instead of aliasing this one.
    busy: Cell<bool>,
    /// Unassigned (no id, no memory) until the thread's first call.
    heap: UnsafeCell<LocalHeap<'static>>,
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        let heap = core::mem::replace(self.heap.get_mut(), LocalHeap::unassigned());
        if heap.is_assigned() {
            // Frees and allocations from later destructors of this thread find this slot
            // gone (`try_with` fails) and take the locked heap instead.
            heap.abandon(&PROCESS);
        }
    }
}

/// Clears a thread's `busy` flag when dropped.
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.set(false);
    }
}

std::thread_local! {
    static CACHE: ThreadCache = const {
        ThreadCache { busy: Cell::new(false), heap: UnsafeCell::new(LocalHeap::unassigned()) }
    };
}

/// The process-wide thread-caching heap: each thread allocates from its own
/// [`LocalHeap`] without locks; frees of another thread's blocks go to their pages'
/// remote lists. A zero-size handle: every `Sharded` is the same heap.
///
/// It is a [`GlobalAlloc`](core::alloc::GlobalAlloc), an
/// [`Allocator`](heapkit_core::Allocator) and an [`Inspect`]:
///
/// ```
/// use heapkit_sharded::Sharded;
///
/// #[global_allocator]
/// static GLOBAL: Sharded = Sharded::new();
///
/// let v: Vec<u32> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// // Or for one collection:
/// let mut w = allocator_api2::vec::Vec::new_in(Sharded::new());
/// w.extend_from_slice(b"sharded");
/// assert_eq!(w.len(), 7);
/// ```
///
/// Before a thread's heap exists, while it is being set up and after it is torn down at
/// thread exit (other thread-local destructors may allocate and free), calls go to a heap
/// behind a lock instead, so they always work.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sharded {
    _private: (),
}

/// What [`Sharded`]'s trait implementations run on: this thread's heap, or the locked one.
#[derive(Clone, Copy, Debug)]
struct ThreadCached;

impl Sharded {
    /// The handle (there is one heap per process).
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// Runs one call through the thread-caching backend (for the shared trait forwarding
    /// in `heapkit-core`).
    #[inline(always)]
    #[allow(clippy::unused_self, clippy::trivially_copy_pass_by_ref)] // the macros' shape
    fn with<R>(&self, f: impl FnOnce(&mut &ThreadCached) -> R) -> R {
        f(&mut &ThreadCached)
    }

    /// The shared state under every thread's heap.
    pub fn process_heap() -> &'static ShardedHeap<SystemSource> {
        &PROCESS
    }

    /// Runs `call` on this thread's heap, or returns `None` when there is none to use.
    #[inline(always)]
    fn with_thread_heap<R>(call: impl FnOnce(&mut LocalHeap<'static>) -> R) -> Option<R> {
        CACHE
            .try_with(|cache| {
                if cache.busy.replace(true) {
                    return None;
                }
                // Cleared on the way out, also when `call` panics (a `checked` report is
                // made before the heap changes), so the thread keeps its heap.
                let _busy = Busy(&cache.busy);
                // SAFETY: `busy` makes this the only use of the cell on this thread now,
                // and the cell is this thread's.
                let heap = unsafe { &mut *cache.heap.get() };
                if !heap.is_assigned() {
                    PROCESS.assign(heap);
                }
                Some(call(heap))
            })
            .ok()
            .flatten()
    }
}

heapkit_core::allocator_through_with!([] Sharded);
heapkit_core::global_alloc_through_with!([] Sharded);

impl Inspect for Sharded {
    /// This thread's heap's view (see [`LocalHeap::stats`]).
    fn stats(&self) -> Stats {
        ThreadCached.stats()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        ThreadCached.owns(ptr)
    }

    /// Checks this thread's heap.
    fn check(&self) -> Result<(), Corruption> {
        SharedBackend::check(&ThreadCached)
    }
}

// SAFETY: each call runs on this thread's own heap (`busy` keeps it to one call at a
// time) or on the heap behind `PROCESS`'s lock; both follow `ShardedHeap`'s contract, and
// every block belongs to `PROCESS`, whichever heap frees it.
unsafe impl SharedBackend for ThreadCached {
    #[inline(always)]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match Sharded::with_thread_heap(|heap| {
            // SAFETY: `with_thread_heap` assigns every heap it hands out to `PROCESS`.
            unsafe { heap.allocate_at_home(&PROCESS, layout) }
        }) {
            Some(result) => result,
            None => locked_allocate(layout),
        }
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees: a live block of `PROCESS`; the heap is
        // assigned to `PROCESS` by `with_thread_heap`.
        let freed = Sharded::with_thread_heap(|heap| unsafe {
            heap.deallocate_at_home(&PROCESS, ptr, layout)
        });
        if freed.is_none() {
            // SAFETY: as above.
            unsafe { locked_deallocate(ptr, layout) }
        }
    }

    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(&PROCESS, ptr, old_layout, new_layout) }
    }

    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(&PROCESS, ptr, old_layout, new_layout) }
    }

    fn max_align(&self) -> usize {
        SEGMENT / 2
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        PROCESS.contains(ptr)
    }

    /// This thread's heap's view (see [`LocalHeap::stats`]).
    fn stats(&self) -> Stats {
        Sharded::with_thread_heap(|heap| heap.stats(&PROCESS))
            .unwrap_or_else(|| SharedBackend::stats(&PROCESS))
    }

    /// Checks this thread's heap.
    fn check(&self) -> Result<(), Corruption> {
        Sharded::with_thread_heap(|heap| heap.check())
            .unwrap_or_else(|| SharedBackend::check(&PROCESS))
    }
}

/// The locked heap's allocation, out of line: the thread-local path stays small.
#[cold]
#[inline(never)]
fn locked_allocate(layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    SharedBackend::allocate(&PROCESS, layout)
}

/// # Safety
/// As for [`SharedBackend::deallocate`] on `PROCESS`.
#[cold]
#[inline(never)]
unsafe fn locked_deallocate(ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: per the caller.
    unsafe { SharedBackend::deallocate(&PROCESS, ptr, layout) }
}
