//! [`ShardedHeap`], the state every thread shares, and [`LocalHeap`], one thread's (or
//! one core's) heap over it.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use heapkit_core::sync::{AtomicUsize, Ordering, SpinLock};
use heapkit_core::{AllocError, Backend, Corruption, SharedBackend, Source, Stats};

use crate::classes::{class_for, class_of, class_size, CLASSES, MAX_SMALL};
use crate::geometry::{SEGMENT, SLOT, SLOTS};
use crate::segment::{Kind, List, Page, Segment, NO_OWNER};

const CRATE: &str = "heapkit-sharded";

/// How many full pages one slow-path call looks at for blocks freed by other threads.
const SWEEP: usize = 4;
/// How many of its segments a heap searches for free slots before taking a new one.
const SEGMENT_SEARCH: usize = 4;

/// The id of the heap behind [`ShardedHeap`]'s lock; thread heaps count up from the next.
const FALLBACK_ID: usize = 1;

/// What every thread shares: the source of segments, the list of every segment, the
/// segments abandoned by exited heaps, and a heap behind a lock for callers without a
/// heap of their own.
///
/// ```
/// use heapkit_core::source::SystemSource;
/// use heapkit_core::{Backend, Layout};
/// use heapkit_sharded::ShardedHeap;
///
/// let shared = ShardedHeap::new(SystemSource::default());
/// std::thread::scope(|scope| {
///     let (send, receive) = std::sync::mpsc::channel::<usize>();
///     let shared = &shared;
///     scope.spawn(move || {
///         let mut heap = shared.thread_heap();
///         for i in 0..100 {
///             let block = heap.allocate(Layout::new::<u64>()).unwrap().cast::<u64>();
///             // SAFETY: a fresh block for a `u64`.
///             unsafe { block.as_ptr().write(i) };
///             send.send(block.as_ptr().addr()).unwrap();
///         }
///     });
///     scope.spawn(move || {
///         let mut heap = shared.thread_heap();
///         let mut sum = 0;
///         for address in receive {
///             let block = heap_block(address);
///             // SAFETY: the other thread wrote it and handed it over.
///             sum += unsafe { block.as_ptr().read() };
///             // SAFETY: freed once, with its layout: a free from another thread.
///             unsafe { heap.deallocate(block.cast(), Layout::new::<u64>()) };
///         }
///         assert_eq!(sum, 4950);
///     });
/// });
/// # fn heap_block(address: usize) -> core::ptr::NonNull<u64> {
/// #     // Doc-test shortcut: real code sends the pointer itself.
/// #     core::ptr::NonNull::new(core::ptr::with_exposed_provenance_mut(address)).unwrap()
/// # }
/// ```
pub struct ShardedHeap<S: Source> {
    source: SpinLock<Sourced<S>>,
    abandoned: SpinLock<SegmentList>,
    next_id: AtomicUsize,
    fallback: SpinLock<LocalHeap<'static>>,
    /// Bytes of huge blocks' segments, and their usable bytes.
    huge_mapped: AtomicUsize,
    huge_in_use: AtomicUsize,
    /// The id of the heap whose thread holds the locks for `fork` (0: none): its calls
    /// reach the source without locking again (see [`ShardedHeap::lock_for_fork`]).
    fork_holder: AtomicUsize,
}

/// The source and every segment it gave.
struct Sourced<S> {
    source: S,
    all: *mut Segment,
    mapped: usize,
    /// The most `mapped` has been.
    peak_mapped: usize,
}

// SAFETY: the segment pointers are only followed under the lock.
unsafe impl<S: Send> Send for Sourced<S> {}

/// A list of segments through their `next`/`prev` links.
struct SegmentList {
    head: *mut Segment,
}

// SAFETY: the list is only used under its lock; the segments are plain memory.
unsafe impl Send for SegmentList {}

impl SegmentList {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
        }
    }

    /// # Safety
    /// `segment` is on no list, and the caller may write its links.
    unsafe fn push(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller; the head is a segment on this list.
        unsafe {
            (*segment).prev = ptr::null_mut();
            (*segment).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = segment;
            }
        }
        self.head = segment;
    }

    /// # Safety
    /// `segment` is on this list.
    unsafe fn remove(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller, it and its neighbours are on this list.
        unsafe {
            let (next, prev) = ((*segment).next, (*segment).prev);
            if !next.is_null() {
                (*next).prev = prev;
            }
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).next = next;
            }
            (*segment).next = ptr::null_mut();
            (*segment).prev = ptr::null_mut();
        }
    }

    fn pop(&mut self) -> Option<*mut Segment> {
        let head = self.head;
        if head.is_null() {
            return None;
        }
        // SAFETY: the head is on this list.
        unsafe { self.remove(head) };
        Some(head)
    }
}

// SAFETY: every field is behind a lock or atomic; segments are plain memory handed between
// threads through those.
unsafe impl<S: Source + Send> Sync for ShardedHeap<S> {}
// SAFETY: as above.
unsafe impl<S: Source + Send> Send for ShardedHeap<S> {}

/// The body of both `ShardedHeap::new`s (`const` or not, as loom allows).
macro_rules! new_sharded_heap {
    ($source:expr) => {
        Self {
            source: SpinLock::new(Sourced {
                source: $source,
                all: ptr::null_mut(),
                mapped: 0,
                peak_mapped: 0,
            }),
            abandoned: SpinLock::new(SegmentList::new()),
            next_id: AtomicUsize::new(FALLBACK_ID + 1),
            fallback: SpinLock::new(LocalHeap::with_id(FALLBACK_ID)),
            huge_mapped: AtomicUsize::new(0),
            huge_in_use: AtomicUsize::new(0),
            fork_holder: AtomicUsize::new(NO_OWNER),
        }
    };
}

impl<S: Source> ShardedHeap<S> {
    /// A heap taking segments from `source` (it holds nothing until the first request).
    /// `const`, so the process heap can be a `static`; under loom, whose atomics register
    /// with the model at run time, it is not.
    #[cfg(not(loom))]
    pub const fn new(source: S) -> Self {
        new_sharded_heap!(source)
    }

    /// The heap behind the lock, told where its `ShardedHeap` is now (it may have moved
    /// since the last call: nothing borrows it then).
    fn fallback(&self) -> heapkit_core::sync::SpinGuard<'_, LocalHeap<'static>> {
        let mut heap = self.fallback.lock();
        heap.home = self.identity();
        heap
    }

    /// A heap taking segments from `source`.
    #[cfg(loom)]
    pub fn new(source: S) -> Self {
        new_sharded_heap!(source)
    }

    /// A new heap for one thread (or core): allocation and local frees through it take no
    /// lock and no atomic read-modify-write. Give it back with
    /// [`LocalHeap::abandon`]; [`thread_heap`](Self::thread_heap) does that on drop.
    pub fn local_heap(&self) -> LocalHeap<'_> {
        let mut heap = LocalHeap::unassigned();
        self.assign(&mut heap);
        heap
    }

    /// Makes an unassigned heap ([`LocalHeap::unassigned`]) a heap over this one: it gets
    /// an id of its own, and every later call must name this `ShardedHeap`.
    ///
    /// # Panics
    ///
    /// When `heap` was assigned already.
    pub fn assign<'h>(&'h self, heap: &mut LocalHeap<'h>) {
        assert!(
            !heap.is_assigned(),
            "heapkit-sharded: a LocalHeap is assigned once"
        );
        // Ids are never reused (a reused id would make two heaps owners of one segment):
        // on a 32-bit target the 2^32nd heap is refused rather than wrapping.
        heap.id = self
            .next_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
            .unwrap_or_else(|_| panic!("heapkit-sharded: heap ids exhausted"));
        heap.home = self.identity();
    }

    /// What a `LocalHeap` records to know its `ShardedHeap` (which cannot move while
    /// the heap borrows it).
    #[inline(always)]
    fn identity(&self) -> *const () {
        ptr::from_ref(self).cast()
    }

    /// A [`LocalHeap`] bound to this heap, a [`Backend`], abandoned when dropped.
    pub fn thread_heap(&self) -> ThreadHeap<'_, S> {
        ThreadHeap {
            shared: self,
            local: self.local_heap(),
        }
    }

    /// The usable bytes of a live block: its class's size, or a huge block's whole
    /// mapping past its start. Any size up to this can be written, and
    /// [`resize_in_place`](LocalHeap::resize_in_place) keeps the block for it.
    ///
    /// # Safety
    /// `ptr` is a block of a heap over `self`, in use.
    pub unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        #[cfg(feature = "checked")]
        LocalHeap::validate(self, ptr, NO_OWNER);
        // SAFETY: forwarded caller guarantees.
        unsafe { usable_size(ptr) }
    }

    /// Takes every lock of the heap, in the order calls take them, for `fork`: called
    /// in a `pthread_atfork` prepare handler, no other thread holds one of them while the
    /// process is copied, so the child can allocate. Hand them back with
    /// [`unlock_after_fork`](Self::unlock_after_fork), in the parent and in the child.
    ///
    /// `holder` is the forking thread's own heap, if it has one: until the locks are
    /// handed back its calls still reach the source (new segments, huge blocks) without
    /// waiting for a lock it holds itself, so other `fork` handlers that run after this
    /// one and allocate through it do not deadlock.
    pub fn lock_for_fork(&self, holder: Option<&LocalHeap<'_>>) {
        core::mem::forget(self.fallback.lock());
        core::mem::forget(self.abandoned.lock());
        core::mem::forget(self.source.lock());
        if let Some(heap) = holder {
            self.fork_holder.store(heap.id, Ordering::Relaxed);
        }
    }

    /// Releases the locks [`lock_for_fork`](Self::lock_for_fork) took.
    ///
    /// # Safety
    /// This thread (or, in a child, the thread that forked) called `lock_for_fork`, and
    /// has not released the locks since.
    pub unsafe fn unlock_after_fork(&self) {
        self.fork_holder.store(NO_OWNER, Ordering::Relaxed);
        // SAFETY: per the caller, the guards `lock_for_fork` forgot are ours to end.
        unsafe {
            self.source.force_unlock();
            self.abandoned.force_unlock();
            self.fallback.force_unlock();
        }
    }

    /// Bytes taken from the source and not handed back.
    pub fn mapped(&self) -> usize {
        self.source.lock().mapped
    }

    /// The most bytes taken from the source at any one time.
    pub fn peak_mapped(&self) -> usize {
        self.source.lock().peak_mapped
    }

    /// Runs `f` on the source and segment list for a call of heap `caller`: under the
    /// lock, or directly for the heap whose thread holds it for `fork`.
    fn with_source<R>(&self, caller: usize, f: impl FnOnce(&mut Sourced<S>) -> R) -> R {
        if caller != NO_OWNER && self.fork_holder.load(Ordering::Relaxed) == caller {
            // SAFETY: `lock_for_fork` took the lock for heap `caller`, which only its own
            // thread uses, and that thread is in no other source call (it is in this one).
            unsafe { self.source.with_held(f) }
        } else {
            f(&mut self.source.lock())
        }
    }

    /// Takes a `len`-byte region aligned to `SEGMENT` from the source, listed in `all`.
    fn acquire(&self, len: usize, caller: usize) -> Option<(*mut Segment, NonNull<[u8]>)> {
        let slack = SEGMENT.saturating_sub(S::CHUNK_ALIGN.max(1));
        let ask = len.checked_add(slack)?;
        self.with_source(caller, |sourced| Self::acquire_from(sourced, len, ask))
    }

    fn acquire_from(
        sourced: &mut Sourced<S>,
        len: usize,
        ask: usize,
    ) -> Option<(*mut Segment, NonNull<[u8]>)> {
        let chunk = sourced.source.acquire(ask)?;
        let base = chunk.cast::<u8>().as_ptr();
        let offset = base.addr().wrapping_neg() & (SEGMENT - 1);
        if chunk.len() < offset + len {
            // SAFETY: just acquired, unused.
            unsafe { sourced.source.release(chunk) };
            return None;
        }
        // SAFETY: `offset + len <= chunk.len()`: inside the chunk.
        let start = unsafe { base.add(offset) };
        // `SEGMENT`-aligned, more than a header needs.
        #[allow(clippy::cast_ptr_alignment)]
        let segment = start.cast::<Segment>();
        sourced.mapped += chunk.len();
        sourced.peak_mapped = sourced.peak_mapped.max(sourced.mapped);
        Some((segment, chunk))
    }

    /// Lists a freshly written segment among all segments.
    ///
    /// # Safety
    /// `segment`'s header is written and it is on no list.
    unsafe fn enlist(&self, segment: *mut Segment, caller: usize) {
        self.with_source(caller, |sourced| {
            // SAFETY: under the lock the `all` links are ours.
            unsafe {
                (*segment).all_prev = ptr::null_mut();
                (*segment).all_next = sourced.all;
                if !sourced.all.is_null() {
                    (*sourced.all).all_prev = segment;
                }
            }
            sourced.all = segment;
        });
    }

    /// Hands a segment back to the source.
    ///
    /// # Safety
    /// Nothing in the segment is in use or reachable any more.
    unsafe fn release(&self, segment: *mut Segment, caller: usize) {
        self.with_source(caller, |sourced| {
            // SAFETY: per the caller; the `all` links are ours under the lock.
            unsafe {
                let (next, prev) = ((*segment).all_next, (*segment).all_prev);
                if !next.is_null() {
                    (*next).all_prev = prev;
                }
                if prev.is_null() {
                    sourced.all = next;
                } else {
                    (*prev).all_next = next;
                }
                let chunk = (*segment).chunk;
                sourced.mapped -= chunk.len();
                sourced.source.release(chunk);
            }
        });
    }

    /// Whether `ptr` lies in one of this heap's segments. O(segments).
    pub fn contains(&self, ptr: NonNull<u8>) -> bool {
        self.contains_for(NO_OWNER, ptr)
    }

    /// [`contains`](Self::contains) for a call of heap `caller`, which may be the heap
    /// whose thread holds the lock for `fork` (a fork handler freeing a block).
    fn contains_for(&self, caller: usize, ptr: NonNull<u8>) -> bool {
        let wanted = Segment::of(ptr.as_ptr());
        self.with_source(caller, |sourced| {
            let mut segment = sourced.all;
            while !segment.is_null() {
                if segment == wanted {
                    return true;
                }
                // SAFETY: listed segments are live under the lock.
                segment = unsafe { (*segment).all_next };
            }
            false
        })
    }

    /// A block of its own for a request no class serves.
    fn allocate_huge(&self, layout: Layout, caller: usize) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > SEGMENT / 2 {
            return Err(AllocError);
        }
        let offset = Segment::huge_payload_offset(layout.align());
        let usable = layout
            .size()
            .checked_next_multiple_of(SLOT)
            .ok_or(AllocError)?;
        let len = offset.checked_add(usable).ok_or(AllocError)?;
        if len > isize::MAX as usize {
            return Err(AllocError);
        }
        let (segment, chunk) = self.acquire(len, caller).ok_or(AllocError)?;
        // SAFETY: `acquire` gave `len` bytes at `segment`, unused.
        unsafe {
            Segment::init_huge(segment, chunk, offset, usable);
            self.enlist(segment, caller);
        }
        self.huge_mapped.fetch_add(chunk.len(), Ordering::Relaxed);
        self.huge_in_use.fetch_add(usable, Ordering::Relaxed);
        // SAFETY: `offset + usable <= len`, inside the chunk; not null.
        let payload = unsafe { NonNull::new_unchecked(segment.cast::<u8>().add(offset)) };
        Ok(NonNull::slice_from_raw_parts(payload, usable))
    }

    /// # Safety
    /// `segment` is a huge segment whose block is being freed.
    unsafe fn deallocate_huge(&self, segment: *mut Segment, caller: usize) {
        // SAFETY: per the caller.
        let (usable, mapped) = unsafe { ((*segment).usable, (*segment).chunk.len()) };
        self.huge_in_use.fetch_sub(usable, Ordering::Relaxed);
        self.huge_mapped.fetch_sub(mapped, Ordering::Relaxed);
        // SAFETY: per the caller, its one block is no longer in use.
        unsafe { self.release(segment, caller) };
    }

    /// Takes a segment an exited heap left, if any (without waiting for the lock).
    fn adopt(&self) -> Option<*mut Segment> {
        // Acquire (the lock): the abandoning heap's writes to the pages are visible.
        self.abandoned.try_lock()?.pop()
    }
}

impl<S: Source> Drop for ShardedHeap<S> {
    /// Hands every segment back: no heap over this one outlives it (they borrow it), and
    /// no block may be used after it is gone.
    fn drop(&mut self) {
        let sourced = self.source.get_mut();
        while let Some(segment) = NonNull::new(sourced.all) {
            // SAFETY: every listed segment came from this source; nothing uses it now.
            unsafe {
                sourced.all = (*segment.as_ptr()).all_next;
                let chunk = (*segment.as_ptr()).chunk;
                sourced.mapped -= chunk.len();
                sourced.source.release(chunk);
            }
        }
    }
}

impl<S: Source> fmt::Debug for ShardedHeap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedHeap").finish_non_exhaustive()
    }
}

/// One heap's state: per size class, a queue of pages with free blocks; a list of full
/// pages; the segments it owns. Allocation and frees of its own blocks touch only this
/// state and the pages (no lock, no atomic read-modify-write); a block of another heap's
/// page goes on that page's remote list.
///
/// A `LocalHeap` is a value, so a kernel can keep one per core and a test one per thread.
/// Every call names the [`ShardedHeap`] it belongs to (checked: a call naming another one
/// panics), and the heap borrows it, so it cannot outlive it; [`ThreadHeap`] binds the two.
///
/// ```compile_fail
/// use heapkit_core::{source::SystemSource, Layout};
/// use heapkit_sharded::ShardedHeap;
///
/// let heap = {
///     let shared = ShardedHeap::new(SystemSource::default());
///     shared.local_heap() // borrows `shared`, which is dropped here
/// };
/// heap.check().unwrap();
/// ```
pub struct LocalHeap<'h> {
    id: usize,
    /// The `ShardedHeap` it belongs to (null while unassigned).
    home: *const (),
    _shared: PhantomData<&'h ()>,
    queues: [*mut Page; CLASSES],
    full: *mut Page,
    /// The last page of the full list, where the sweep puts pages back.
    full_tail: *mut Page,
    segments: *mut Segment,
    /// The last of them: segments with no free slot go there.
    segments_tail: *mut Segment,
    /// Segments owned.
    segment_count: usize,
}

// SAFETY: the heap's pages and segments are owned by whoever holds the heap; moving it
// moves that ownership with it.
unsafe impl Send for LocalHeap<'_> {}

impl fmt::Debug for LocalHeap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHeap")
            .field("id", &self.id)
            .field("segments", &self.segment_count)
            .finish_non_exhaustive()
    }
}

impl LocalHeap<'_> {
    /// A heap that belongs to no [`ShardedHeap`] yet (for a `const` slot: a
    /// thread-local, a per-core array); [`ShardedHeap::assign`] makes it one's. Calls
    /// before that panic.
    pub const fn unassigned() -> Self {
        Self::with_id(NO_OWNER)
    }

    /// Panics unless `shared` is the heap this one belongs to: a segment of one
    /// `ShardedHeap` must never reach another's lists or source.
    #[inline(always)]
    fn belongs_to<S: Source>(&self, shared: &ShardedHeap<S>) {
        if self.home != shared.identity() {
            wrong_heap();
        }
    }

    /// Whether the heap was given an id.
    pub const fn is_assigned(&self) -> bool {
        self.id != NO_OWNER
    }

    const fn with_id(id: usize) -> Self {
        Self {
            id,
            home: ptr::null(),
            _shared: PhantomData,
            queues: [ptr::null_mut(); CLASSES],
            full: ptr::null_mut(),
            full_tail: ptr::null_mut(),
            segments: ptr::null_mut(),
            segments_tail: ptr::null_mut(),
            segment_count: 0,
        }
    }

    /// Allocates from this heap.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the source has no more memory or the request is impossible.
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to.
    #[inline(always)]
    pub fn allocate<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.belongs_to(shared);
        // SAFETY: checked just now.
        unsafe { self.allocate_at_home(shared, layout) }
    }

    /// [`allocate`](Self::allocate) without the check that `shared` is this heap's, for a
    /// front that assigned the heap itself.
    ///
    /// # Safety
    /// The heap belongs to `shared`.
    #[inline(always)]
    pub(crate) unsafe fn allocate_at_home<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let Some(class) = class_for(layout.size(), layout.align()) else {
            return shared.allocate_huge(layout, self.id);
        };
        let page = self.queues[class];
        if !page.is_null() {
            // SAFETY: pages on our queues are ours and in use.
            if let Some(block) = unsafe { Page::pop(page) } {
                // SAFETY: as above.
                return Ok(NonNull::slice_from_raw_parts(block, unsafe {
                    (*page).block_size
                }));
            }
        }
        self.allocate_slow(shared, class)
    }

    /// The allocation fast path alone: a block of `class` (from
    /// [`class_for`](crate::classes::class_for)) off the first page of its queue, when
    /// that page has one at hand. `None` otherwise (no page, or it needs its remote frees
    /// collected, or a fresh page), with nothing changed: then call
    /// [`allocate`](Self::allocate). It calls nothing, so a C front can run it without a
    /// stack frame and keep the rest out of line.
    #[inline(always)]
    pub fn allocate_cached(&mut self, class: usize) -> Option<NonNull<u8>> {
        let page = *self.queues.get(class)?;
        if page.is_null() {
            return None;
        }
        // SAFETY: pages on our queues are ours and in use.
        unsafe { Page::pop(page) }
    }

    #[inline(never)]
    fn allocate_slow<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        class: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let size = class_size(class);
        let mut swept = false;
        let mut adopted = false;
        loop {
            // The queue's pages in order: collect their remote frees, retire the full.
            while let Some(page) = NonNull::new(self.queues[class]) {
                let page = page.as_ptr();
                // SAFETY: pages on our queues are ours and in use.
                unsafe {
                    if Page::has_free(page) || Page::collect_remote(page) > 0 {
                        let block = Page::pop(page).ok_or(AllocError)?;
                        return Ok(NonNull::slice_from_raw_parts(block, size));
                    }
                    self.unlink(page);
                    self.link(page, List::Full);
                }
            }
            if !swept {
                swept = true;
                self.sweep_full(shared);
                continue;
            }
            if !adopted {
                adopted = true;
                if let Some(segment) = shared.adopt() {
                    // SAFETY: taken off the abandoned list: ours now.
                    unsafe { self.take_over(segment) };
                    continue;
                }
            }
            let page = self.new_page(shared, class).ok_or(AllocError)?;
            // SAFETY: a fresh page of ours, in use.
            unsafe {
                self.link(page, List::Queue);
                let block = Page::pop(page).ok_or(AllocError)?;
                return Ok(NonNull::slice_from_raw_parts(block, size));
            }
        }
    }

    /// Looks at up to [`SWEEP`] full pages for remote frees, moving the ones that got
    /// some back to their queues and the rest to the back of the list.
    fn sweep_full<S: Source>(&mut self, shared: &ShardedHeap<S>) {
        for _ in 0..SWEEP {
            let page = self.full;
            if page.is_null() {
                return;
            }
            // SAFETY: pages on our full list are ours and in use.
            unsafe {
                self.unlink(page);
                if Page::collect_remote(page) > 0 && (*page).used == 0 {
                    self.retire(shared, page);
                } else if Page::has_free(page) {
                    self.link(page, List::Queue);
                } else {
                    self.link_last(page);
                }
            }
        }
    }

    /// A fresh page of `class` in one of our segments, or in a new one.
    fn new_page<S: Source>(&mut self, shared: &ShardedHeap<S>, class: usize) -> Option<*mut Page> {
        let mut segment = self.segments;
        for _ in 0..SEGMENT_SEARCH {
            if segment.is_null() {
                break;
            }
            // SAFETY: our segments are small segments we own.
            unsafe {
                if (*segment).free_slots == 0 {
                    // Full segments are kept at the back: none after this has room.
                    break;
                }
                if let Some(page) = Segment::new_page(segment, class) {
                    if (*segment).free_slots == 0 {
                        self.disown(segment);
                        self.own_last(segment);
                    }
                    return Some(page);
                }
                segment = (*segment).next;
            }
        }
        let (segment, chunk) = shared.acquire(SEGMENT, self.id)?;
        // SAFETY: `acquire` gave `SEGMENT` unused bytes at `segment`.
        unsafe {
            Segment::init_small(segment, chunk, self.id);
            shared.enlist(segment, self.id);
            self.own(segment);
            Segment::new_page(segment, class)
        }
    }

    /// Puts a segment at the front of our list.
    ///
    /// # Safety
    /// `segment` is ours and on no list.
    unsafe fn own(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller.
        unsafe {
            (*segment).prev = ptr::null_mut();
            (*segment).next = self.segments;
            if !self.segments.is_null() {
                (*self.segments).prev = segment;
            }
        }
        if self.segments.is_null() {
            self.segments_tail = segment;
        }
        self.segments = segment;
        self.segment_count += 1;
    }

    /// Puts a segment (one with no free slot) at the back of our list, so that the
    /// segments `new_page` searches first are the ones with room.
    ///
    /// # Safety
    /// `segment` is ours and on no list.
    unsafe fn own_last(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller; the tail is a segment of ours.
        unsafe {
            (*segment).next = ptr::null_mut();
            (*segment).prev = self.segments_tail;
            if self.segments_tail.is_null() {
                self.segments = segment;
            } else {
                (*self.segments_tail).next = segment;
            }
        }
        self.segments_tail = segment;
        self.segment_count += 1;
    }

    /// # Safety
    /// `segment` is on our list.
    unsafe fn disown(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller.
        unsafe {
            let (next, prev) = ((*segment).next, (*segment).prev);
            if next.is_null() {
                self.segments_tail = prev;
            } else {
                (*next).prev = prev;
            }
            if prev.is_null() {
                self.segments = next;
            } else {
                (*prev).next = next;
            }
        }
        self.segment_count -= 1;
    }

    /// Makes an abandoned segment ours: every page's remote frees collected, empty pages
    /// given back to the segment (which we keep: we are about to need a page), the rest
    /// queued.
    ///
    /// # Safety
    /// `segment` was taken off the abandoned list.
    unsafe fn take_over(&mut self, segment: *mut Segment) {
        // SAFETY: per the caller the segment and its pages are ours from here.
        unsafe {
            (*segment).owner.store(self.id, Ordering::Relaxed);
            // Pages freed below give it room; one without any goes to the back.
            self.own_last(segment);
            for page in Segment::pages_in_use(segment) {
                (*page).list = List::Off;
                Page::collect_remote(page);
                if (*page).used == 0 {
                    Segment::free_page(segment, page);
                } else if Page::has_free(page) {
                    self.link(page, List::Queue);
                } else {
                    self.link(page, List::Full);
                }
            }
            if (*segment).free_slots != 0 {
                self.disown(segment);
                self.own(segment);
            }
        }
    }

    /// Frees a block of any heap over `shared`.
    ///
    /// # Safety
    ///
    /// `ptr` was handed out by a heap over `shared` and is not freed yet. `layout` is not
    /// used: a block's page is found from its address, so a caller that does not know the
    /// layout (C's `free`) may pass any.
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to; with `checked`, when `ptr` is
    /// not a block in use.
    #[inline(always)]
    pub unsafe fn deallocate<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        self.belongs_to(shared);
        // SAFETY: forwarded caller guarantees; the heap's home was checked just now.
        unsafe { self.deallocate_at_home(shared, ptr, layout) }
    }

    /// [`deallocate`](Self::deallocate) without the check that `shared` is this heap's.
    ///
    /// # Safety
    /// As for `deallocate`, and the heap belongs to `shared`.
    #[inline(always)]
    pub(crate) unsafe fn deallocate_at_home<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        #[cfg(feature = "checked")]
        Self::validate(shared, ptr, self.id);
        let _ = layout;
        // SAFETY: forwarded caller guarantees.
        unsafe { self.free(shared, ptr) }
    }

    /// [`deallocate`](Self::deallocate) after its checks.
    ///
    /// # Safety
    /// As for `deallocate`, and the heap belongs to `shared`.
    #[inline(always)]
    unsafe fn free<S: Source>(&mut self, shared: &ShardedHeap<S>, ptr: NonNull<u8>) {
        let segment = Segment::of(ptr.as_ptr());
        // SAFETY: per the caller the block is ours, so its segment's header is live; its
        // kind, owner and page table entry do not change while the block is in use.
        unsafe {
            // A huge segment's owner is always `NO_OWNER`, never an assigned heap's id, so
            // this one comparison also tells the segment is small.
            if (*segment).owner.load(Ordering::Relaxed) == self.id {
                debug_assert!((*segment).kind == Kind::Small);
                let page = Segment::page_of(segment, ptr.as_ptr());
                #[cfg(feature = "checked")]
                Self::refuse_double_free(page, ptr);
                Page::push(page, ptr);
                if (*page).used == 0 {
                    // Empty pages are retired, except the only page of its class's queue:
                    // an alloc+free pair must not set a page up and tear it down each time.
                    if !self.is_only_page_of_its_queue(page) {
                        self.after_local_free(shared, page);
                    }
                } else if (*page).list == List::Full {
                    self.after_local_free(shared, page);
                }
            } else {
                Self::deallocate_elsewhere(shared, segment, ptr, self.id);
            }
        }
    }

    /// The free fast path alone: gives `ptr` back to its page when the page is this
    /// heap's own and stays where it is (it neither empties nor leaves the full list).
    /// Returns `false` with nothing changed otherwise: then call
    /// [`deallocate`](Self::deallocate). Calls nothing; always `false` under `checked`,
    /// whose validation is on the full path.
    ///
    /// # Safety
    /// `ptr` is a block in use of a heap over the same [`ShardedHeap`] as this one.
    #[inline(always)]
    pub unsafe fn deallocate_cached(&mut self, ptr: NonNull<u8>) -> bool {
        if cfg!(feature = "checked") {
            return false;
        }
        let segment = Segment::of(ptr.as_ptr());
        // SAFETY: per the caller the block is live, so its segment's header is; its owner
        // is an assigned heap's id only for small segments (as in `free`), and then the
        // page table entry is the block's page, which is ours while the owner is us.
        unsafe {
            if (*segment).owner.load(Ordering::Relaxed) != self.id || self.id == NO_OWNER {
                return false;
            }
            let page = Segment::page_of(segment, ptr.as_ptr());
            if (*page).used <= 1 || (*page).list == List::Full {
                return false;
            }
            Page::push(page, ptr);
        }
        true
    }

    /// A page of ours just got a block back and is empty or was on the full list.
    ///
    /// # Safety
    /// `page` is ours and in use.
    #[inline(never)]
    unsafe fn after_local_free<S: Source>(&mut self, shared: &ShardedHeap<S>, page: *mut Page) {
        // SAFETY: per the caller.
        unsafe {
            if (*page).used == 0 && !self.is_only_page_of_its_queue(page) {
                self.retire(shared, page);
            } else if (*page).list == List::Full {
                self.unlink(page);
                self.link(page, List::Queue);
            }
        }
    }

    /// Whether `page` heads its class's queue with no page after it.
    ///
    /// # Safety
    /// `page` is ours and in use.
    #[inline(always)]
    unsafe fn is_only_page_of_its_queue(&self, page: *mut Page) -> bool {
        // SAFETY: per the caller; a page in use has a class below `CLASSES`.
        unsafe { *self.queues.get_unchecked((*page).class) == page && (*page).next.is_null() }
    }

    /// Frees a huge block, or a block of a page another heap owns (or an abandoned one).
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate); `segment` is the block's.
    #[inline(never)]
    unsafe fn deallocate_elsewhere<S: Source>(
        shared: &ShardedHeap<S>,
        segment: *mut Segment,
        ptr: NonNull<u8>,
        caller: usize,
    ) {
        // SAFETY: per the caller.
        unsafe {
            if (*segment).kind == Kind::Huge {
                shared.deallocate_huge(segment, caller);
            } else {
                Page::push_remote(Segment::page_of(segment, ptr.as_ptr()), ptr);
            }
        }
    }

    /// Gives back all it can: adopts every abandoned segment, collects every page's
    /// remote frees, and hands empty pages to their segments and empty segments to the
    /// source. O(segments); for a program's quiet moments and for tests (mimalloc's
    /// `mi_collect`).
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to.
    pub fn collect<S: Source>(&mut self, shared: &ShardedHeap<S>) {
        self.belongs_to(shared);
        loop {
            let Some(segment) = shared.abandoned.lock().pop() else {
                break;
            };
            // SAFETY: taken off the abandoned list: ours now.
            unsafe { self.take_over(segment) };
        }
        let mut segment = self.segments;
        while !segment.is_null() {
            // SAFETY: our segments and their pages are ours; a segment is released only
            // after its successor is read.
            unsafe {
                let next = (*segment).next;
                for page in Segment::pages_in_use(segment) {
                    Page::collect_remote(page);
                    if (*page).used == 0 {
                        if (*page).list != List::Off {
                            self.unlink(page);
                        }
                        Segment::free_page(segment, page);
                    } else if (*page).list == List::Full && Page::has_free(page) {
                        self.unlink(page);
                        self.link(page, List::Queue);
                    }
                }
                // Also a segment adopted above whose pages all turned out empty; one with
                // free slots goes to the front, where `new_page` looks (behind the walk:
                // it is not visited twice).
                if (*segment).pages_in_use == 0 {
                    self.disown(segment);
                    shared.release(segment, self.id);
                } else if (*segment).free_slots != 0 {
                    self.disown(segment);
                    self.own(segment);
                }
                segment = next;
            }
        }
    }

    /// Resizes a block where it is (the module's `resize_in_place` says when it can); any
    /// heap may do it.
    ///
    /// # Safety
    ///
    /// As for [`Backend::grow_in_place`]: `ptr` is a live block of a heap over `shared`,
    /// allocated for `old_layout`.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block must move; nothing changes then.
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to; with `checked`, when `ptr` is
    /// not a block in use.
    pub unsafe fn resize_in_place<S: Source>(
        &mut self,
        shared: &ShardedHeap<S>,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.belongs_to(shared);
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(shared, ptr, old_layout, new_layout) }
    }

    /// Gives an empty page's slots back. A segment left empty goes back to the source
    /// unless it is our only segment.
    ///
    /// # Safety
    /// `page` is ours, in use, with no block in use; on any list or none.
    #[inline(never)]
    unsafe fn retire<S: Source>(&mut self, shared: &ShardedHeap<S>, page: *mut Page) {
        // SAFETY: per the caller.
        unsafe {
            if (*page).list != List::Off {
                self.unlink(page);
            }
            let segment = Segment::of(page.cast());
            let empty = Segment::free_page(segment, page);
            self.disown(segment);
            if empty && self.segment_count > 0 {
                shared.release(segment, self.id);
            } else {
                // To the front: `new_page` looks at the first few segments, so one with
                // free slots must be among them, or older segments' slots are never used
                // again while any of their pages lives.
                self.own(segment);
            }
        }
    }

    /// # Safety
    /// `page` is ours and on no list.
    unsafe fn link(&mut self, page: *mut Page, list: List) {
        // SAFETY: per the caller; list heads are pages of ours.
        unsafe {
            let head = match list {
                List::Queue => &mut self.queues[(*page).class],
                List::Full => &mut self.full,
                List::Off => return,
            };
            (*page).list = list;
            (*page).prev = ptr::null_mut();
            (*page).next = *head;
            if !head.is_null() {
                (**head).prev = page;
            }
            *head = page;
            if list == List::Full && self.full_tail.is_null() {
                self.full_tail = page;
            }
        }
    }

    /// Puts `page` at the end of the full list, in O(1): the sweep rotates the list so
    /// that every full page is looked at in turn.
    ///
    /// # Safety
    /// `page` is ours and on no list.
    unsafe fn link_last(&mut self, page: *mut Page) {
        // SAFETY: per the caller; the full list and its tail are pages of ours.
        unsafe {
            (*page).list = List::Full;
            (*page).next = ptr::null_mut();
            (*page).prev = self.full_tail;
            if self.full_tail.is_null() {
                self.full = page;
            } else {
                (*self.full_tail).next = page;
            }
            self.full_tail = page;
        }
    }

    /// # Safety
    /// `page` is ours and on the list its `list` names.
    unsafe fn unlink(&mut self, page: *mut Page) {
        // SAFETY: per the caller.
        unsafe {
            let (next, prev) = ((*page).next, (*page).prev);
            if next.is_null() {
                if (*page).list == List::Full {
                    self.full_tail = prev;
                }
            } else {
                (*next).prev = prev;
            }
            if prev.is_null() {
                match (*page).list {
                    List::Queue => self.queues[(*page).class] = next,
                    List::Full => self.full = next,
                    List::Off => {}
                }
            } else {
                (*prev).next = next;
            }
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
            (*page).list = List::Off;
        }
    }

    /// Gives every segment up: empty pages and segments go back to the source, segments
    /// with blocks still in use go on the abandoned list for another heap to adopt.
    /// Blocks of those stay valid, and frees of them from any heap stay safe.
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to (an unassigned heap holds
    /// nothing, and is given up with any).
    pub fn abandon<S: Source>(mut self, shared: &ShardedHeap<S>) {
        if !self.is_assigned() {
            return;
        }
        self.belongs_to(shared);
        while let Some(segment) = NonNull::new(self.segments) {
            let segment = segment.as_ptr();
            // SAFETY: our segments are ours to walk; pages collected and freed one by one.
            unsafe {
                self.disown(segment);
                for page in Segment::pages_in_use(segment) {
                    (*page).list = List::Off;
                    Page::collect_remote(page);
                    if (*page).used == 0 {
                        Segment::free_page(segment, page);
                    }
                }
                if (*segment).pages_in_use == 0 {
                    shared.release(segment, self.id);
                } else {
                    (*segment).owner.store(NO_OWNER, Ordering::Relaxed);
                    // Release (the lock): the adopter sees the pages as left here.
                    shared.abandoned.lock().push(segment);
                }
            }
        }
        self.queues = [ptr::null_mut(); CLASSES];
        self.full = ptr::null_mut();
        self.full_tail = ptr::null_mut();
    }

    /// This heap's memory: its segments, and the huge blocks of every heap.
    ///
    /// # Panics
    ///
    /// When `shared` is not the heap this one belongs to.
    pub fn stats<S: Source>(&self, shared: &ShardedHeap<S>) -> Stats {
        self.belongs_to(shared);
        let mut stats = Stats {
            capacity: self.segment_count * SEGMENT,
            ..Stats::default()
        };
        let mut segment = self.segments;
        while !segment.is_null() {
            // SAFETY: our segments and their pages are ours to read.
            unsafe {
                for page in Segment::pages(segment) {
                    let size = (*page).block_size;
                    stats.in_use += (*page).used * size;
                    let free = ((*page).capacity - (*page).used) * size;
                    stats.free += free;
                    stats.largest_free = stats.largest_free.max(if free > 0 { size } else { 0 });
                }
                let free_slots = ((*segment).free_slots.count_ones() as usize) * SLOT;
                stats.free += free_slots;
                // The largest block a page in the longest run of free slots holds.
                let run = longest_run((*segment).free_slots) * SLOT;
                stats.largest_free = stats.largest_free.max(crate::classes::MAX_SMALL.min(run));
                segment = (*segment).next;
            }
        }
        // Two relaxed loads, while other threads map and unmap huge blocks: the pair may
        // not match, so the usable bytes are capped at the mapped ones.
        let huge_mapped = shared.huge_mapped.load(Ordering::Relaxed);
        let huge_in_use = shared.huge_in_use.load(Ordering::Relaxed).min(huge_mapped);
        stats.capacity += huge_mapped;
        stats.in_use += huge_in_use;
        stats.metadata = stats.capacity - stats.in_use - stats.free;
        stats
    }

    /// Checks this heap's pages: each free list holds blocks of its page only, at block
    /// boundaries, without a cycle; `used` plus the free blocks is what was carved; the
    /// queues and the full list hold our pages of the right class; each segment's slot map
    /// agrees with its pages. Meaningful while no other thread frees into our pages.
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), Corruption> {
        let corrupt = |at: *const u8, what| Corruption::new(CRATE, at.addr(), what);
        let mut segment = self.segments;
        let mut count = 0;
        while !segment.is_null() {
            count += 1;
            // SAFETY: our segments and their pages are ours to read; free-list links are
            // only followed after checking they point at a block of the page.
            unsafe {
                if (*segment).owner.load(Ordering::Relaxed) != self.id {
                    return Err(corrupt(
                        segment.cast(),
                        "segment on our list has another owner",
                    ));
                }
                let mut taken: u64 = 1;
                let mut pages = 0;
                for page in Segment::pages(segment) {
                    pages += 1;
                    let (start, size) = ((*page).start, (*page).block_size);
                    let span = (*page).slots;
                    let first = (start.addr() - segment.addr()) / SLOT;
                    taken |= (u64::MAX >> (64 - span)) << first;
                    let mut free = 0;
                    let mut block = (*page).free;
                    while !block.is_null() {
                        let offset = block.addr().wrapping_sub(start.addr());
                        if offset % size != 0 || offset / size >= (*page).carved {
                            return Err(corrupt(block, "free list holds a foreign block"));
                        }
                        free += 1;
                        if free > (*page).carved {
                            return Err(corrupt(start, "free list has a cycle"));
                        }
                        block = crate::segment::read_link(block);
                    }
                    if free + (*page).used != (*page).carved {
                        return Err(corrupt(start, "free blocks and used do not add up")
                            .expected((*page).carved, free + (*page).used));
                    }
                }
                if (*segment).free_slots & taken != 0
                    || (*segment).free_slots | taken != (u64::MAX >> (64 - SLOTS))
                {
                    return Err(corrupt(segment.cast(), "slot map disagrees with the pages"));
                }
                if pages != (*segment).pages_in_use {
                    return Err(
                        corrupt(segment.cast(), "page count disagrees with the pages")
                            .expected(pages, (*segment).pages_in_use),
                    );
                }
                segment = (*segment).next;
            }
        }
        let mut last = ptr::null_mut();
        let mut walk = self.segments;
        while !walk.is_null() {
            last = walk;
            // SAFETY: our segments, walked again (the loop above checked the list).
            walk = unsafe { (*walk).next };
        }
        if last != self.segments_tail {
            return Err(corrupt(
                self.segments_tail.cast(),
                "segment list's tail is not its last segment",
            ));
        }
        if count != self.segment_count {
            return Err(
                corrupt(ptr::null(), "segment count disagrees with the list")
                    .expected(count, self.segment_count),
            );
        }
        for (class, &head) in self.queues.iter().enumerate() {
            let mut page = head;
            while !page.is_null() {
                // SAFETY: queued pages are ours.
                unsafe {
                    if (*page).class != class || (*page).list != List::Queue || (*page).slots == 0 {
                        return Err(corrupt(
                            page.cast(),
                            "queued page of the wrong class or state",
                        ));
                    }
                    page = (*page).next;
                }
            }
        }
        Ok(())
    }

    /// With `checked`: panics, naming the address, unless `ptr` is the start of a block
    /// of a page in use (or a huge block) in one of `shared`'s segments. Reads nothing
    /// before the segment is known to be `shared`'s, and only fields that stay the same
    /// while a page is in use (another heap may own it).
    /// With `checked`, on the owner's free: panics if the block is already free (on the
    /// page's free list, or its remote list, collected first). O(free blocks of the page).
    ///
    /// # Safety
    /// The caller owns the page.
    #[cfg(feature = "checked")]
    unsafe fn refuse_double_free(page: *mut Page, ptr: NonNull<u8>) {
        // SAFETY: per the caller the page and its free list are ours.
        unsafe {
            Page::collect_remote(page);
            let mut block = (*page).free;
            while !block.is_null() {
                if block == ptr.as_ptr() {
                    heapkit_core::invalid_use(
                        CRATE,
                        "deallocate",
                        ptr.as_ptr(),
                        "block is already free",
                    );
                }
                block = crate::segment::read_link(block);
            }
        }
    }

    /// Panics unless `ptr` is a block in use of `shared`'s, for a call of heap `caller`
    /// (`NO_OWNER` when no heap of `shared`'s makes it).
    #[cfg(feature = "checked")]
    fn validate<S: Source>(shared: &ShardedHeap<S>, ptr: NonNull<u8>, caller: usize) {
        let fail = |reason| heapkit_core::invalid_use(CRATE, "deallocate", ptr.as_ptr(), reason);
        if !shared.contains_for(caller, ptr) {
            fail("pointer is not in memory this heap manages");
        }
        let segment = Segment::of(ptr.as_ptr());
        // SAFETY: a live segment of `shared` (just checked); `kind`, and a page's span,
        // start, block size and capacity, change only while no block of it is in use.
        unsafe {
            if (*segment).kind == Kind::Huge {
                if ptr.as_ptr().addr() - segment.addr() != (*segment).payload_offset {
                    fail("pointer is not the start of a huge block");
                }
                return;
            }
            if ptr.as_ptr().addr() - segment.addr() < SLOT {
                fail("pointer is inside a segment header");
            }
            let page = Segment::page_of(segment, ptr.as_ptr());
            if (*page).slots == 0 {
                fail("pointer is not in a page in use");
            }
            let offset = ptr.as_ptr().addr().wrapping_sub((*page).start.addr());
            if offset % (*page).block_size != 0 || offset / (*page).block_size >= (*page).capacity {
                fail("pointer is not the start of a block");
            }
        }
    }
}

/// The longest run of set bits in `bits`.
fn longest_run(mut bits: u64) -> usize {
    let mut run = 0;
    while bits != 0 {
        bits &= bits >> 1;
        run += 1;
    }
    run
}

/// The panic of a `LocalHeap` called with a `ShardedHeap` it does not belong to.
#[cold]
#[inline(never)]
fn wrong_heap() -> ! {
    panic!("heapkit-sharded: a LocalHeap called with a ShardedHeap it does not belong to (or before it was assigned)")
}

/// A [`LocalHeap`] bound to its [`ShardedHeap`]: a [`Backend`], abandoned when dropped.
pub struct ThreadHeap<'h, S: Source> {
    shared: &'h ShardedHeap<S>,
    local: LocalHeap<'h>,
}

impl<'h, S: Source> ThreadHeap<'h, S> {
    /// See [`LocalHeap::collect`].
    pub fn collect(&mut self) {
        self.local.collect(self.shared);
    }

    /// The heap inside.
    pub fn local(&self) -> &LocalHeap<'h> {
        &self.local
    }
}

impl<S: Source> Drop for ThreadHeap<'_, S> {
    fn drop(&mut self) {
        let local = core::mem::replace(&mut self.local, LocalHeap::unassigned());
        local.abandon(self.shared);
    }
}

impl<S: Source> fmt::Debug for ThreadHeap<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.local.fmt(f)
    }
}

// SAFETY: blocks come from pages' free lists or their uncarved rest (each block once), or
// from a huge segment of their own; class blocks are aligned as `class_for` promises and
// huge ones at the payload offset, aligned to the request.
unsafe impl<S: Source> Backend for ThreadHeap<'_, S> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.local.allocate(self.shared, layout)
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.local.deallocate(self.shared, ptr, layout) }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(self.shared, ptr, old_layout, new_layout) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(self.shared, ptr, old_layout, new_layout) }
    }

    fn max_align(&self) -> usize {
        SEGMENT / 2
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.shared.contains(ptr)
    }

    fn stats(&self) -> Stats {
        self.local.stats(self.shared)
    }

    fn check(&self) -> Result<(), Corruption> {
        self.local.check()
    }
}

// SAFETY: every call goes through the heap behind the lock, one at a time; its blocks
// follow `ThreadHeap`'s contract, and frees of other heaps' blocks go to their pages'
// remote lists.
unsafe impl<S: Source + Send> SharedBackend for ShardedHeap<S> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.fallback().allocate(self, layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // Checked before the lock is taken: the report's panic may allocate through this
        // very heap (as a global allocator), which must not find the lock held.
        #[cfg(feature = "checked")]
        LocalHeap::validate(self, ptr, NO_OWNER);
        let _ = layout;
        // SAFETY: forwarded caller guarantees; the fallback belongs to `self`.
        unsafe { self.fallback().free(self, ptr) }
    }

    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(self, ptr, old_layout, new_layout) }
    }

    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { resize_checked(self, ptr, old_layout, new_layout) }
    }

    fn max_align(&self) -> usize {
        SEGMENT / 2
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.contains(ptr)
    }

    fn stats(&self) -> Stats {
        self.fallback().stats(self)
    }

    fn check(&self) -> Result<(), Corruption> {
        self.fallback().check()
    }
}

/// [`resize_in_place`] after, with `checked`, validating `ptr` against `shared`.
///
/// # Safety
/// As for [`resize_in_place`], with `ptr` a block of `shared`'s heaps.
#[inline]
pub(crate) unsafe fn resize_checked<S: Source>(
    shared: &ShardedHeap<S>,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    #[cfg(feature = "checked")]
    LocalHeap::validate(shared, ptr, NO_OWNER);
    // SAFETY: forwarded caller guarantees.
    unsafe {
        resize_in_place(ptr, old_layout, new_layout)
            .or_else(|_| shared.grow_huge_in_place(ptr, old_layout, new_layout))
    }
}

impl<S: Source> ShardedHeap<S> {
    /// Grows a huge block into the rest of its mapping, which has up to a segment of
    /// room past the block (the slack taken to align the segment): a block grown step by
    /// step (a string or vector doubling) then mostly stays where it is, with no copy and
    /// no fresh pages to fault in.
    ///
    /// # Safety
    /// `ptr` is a live block of a heap over `self`, allocated for `old_layout`.
    unsafe fn grow_huge_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let segment = Segment::of(ptr.as_ptr());
        // SAFETY: per the caller the block is live, so its segment header is; a huge
        // segment's fields change only through its one block, which the caller holds.
        unsafe {
            let usable = (*segment).usable;
            if (*segment).kind != Kind::Huge
                || new_layout.size() <= usable
                || new_layout.align() > old_layout.align()
            {
                return Err(AllocError);
            }
            let chunk = (*segment).chunk;
            let room = chunk.cast::<u8>().as_ptr().addr() + chunk.len() - ptr.as_ptr().addr();
            let grown = new_layout
                .size()
                .checked_next_multiple_of(SLOT)
                .filter(|&grown| grown <= room)
                .ok_or(AllocError)?;
            (*segment).usable = grown;
            self.huge_in_use
                .fetch_add(grown - usable, Ordering::Relaxed);
            Ok(NonNull::slice_from_raw_parts(ptr, grown))
        }
    }
}

/// A resize that stays in its block: when the new size fits the block's usable bytes and
/// would not waste half of them, mimalloc's rule, or when no smaller class would hold it
/// (a block much larger than needed moves: a smaller class holds it, or a shrunk huge
/// block gives its mapping back). Frees find a block's page or segment from
/// its address, never from its layout, so the block keeps working for the new layout.
///
/// # Safety
/// `ptr` is a live block of a heap over some `ShardedHeap`, allocated for `old_layout`.
pub(crate) unsafe fn resize_in_place(
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    if new_layout.align() > old_layout.align() {
        return Err(AllocError);
    }
    // SAFETY: per the caller the block is live. Its size is its page's (it may have been
    // resized in place before, so its layout does not tell).
    let usable = unsafe { usable_size(ptr) };
    let _ = old_layout.size();
    if keeps_block(usable, new_layout.size()) == Some(true) {
        Ok(NonNull::slice_from_raw_parts(ptr, usable))
    } else {
        Err(AllocError)
    }
}

/// The rule of [`LocalHeap::resize_in_place`], from a block's usable bytes alone (as
/// [`ShardedHeap::usable_size`] gives them): whether a resize to `size` bytes keeps the
/// block, `Some(false)` when it has to move, and `None` when it depends on the block (a
/// huge block may grow into the rest of its mapping). A C front that knows the usable
/// size answers most `realloc`s with it, without asking the heap again.
///
/// Below half its usable bytes a block moves, to a smaller class, unless there is none
/// (the 8-byte class).
#[inline]
pub fn keeps_block(usable: usize, size: usize) -> Option<bool> {
    if size <= usable {
        let no_smaller_class = size <= MAX_SMALL && class_size(class_of(size)) >= usable;
        Some(size >= usable / 2 || no_smaller_class)
    } else if usable <= MAX_SMALL && usable % SLOT != 0 {
        // Class blocks never grow past their class. A huge block's usable bytes are
        // whole slots, and so are the two largest classes' sizes: those ask.
        Some(false)
    } else {
        None
    }
}

/// A live block's usable bytes, from its page or huge segment.
///
/// # Safety
/// `ptr` is a live block of a heap over some `ShardedHeap`.
#[inline]
unsafe fn usable_size(ptr: NonNull<u8>) -> usize {
    let segment = Segment::of(ptr.as_ptr());
    // SAFETY: per the caller the block is live, so its segment's header and page are, and
    // neither changes while it is.
    unsafe {
        match (*segment).kind {
            Kind::Small => (*Segment::page_of(segment, ptr.as_ptr())).block_size,
            Kind::Huge => (*segment).usable,
        }
    }
}
