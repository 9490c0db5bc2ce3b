//! [`AtomicPool`]: the pool shared between threads without a lock.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use heapkit_core::region::Span;
use heapkit_core::sync::{ordering, AtomicTable, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use heapkit_core::{AllocError, ConfigError, SharedBackend, Stats};

use crate::shape::Shape;

/// End of the free list.
const NIL: u32 = u32::MAX;
/// Link value of a block that is handed out (checked builds only write it).
const ALLOCATED: u32 = u32::MAX - 1;
/// Most blocks an `AtomicPool` indexes: indices are `u32`, with two values reserved.
const MAX_BLOCKS: usize = ALLOCATED as usize;
/// What every link starts as in loom's table, standing for the uninitialised memory a real
/// pool's table starts as. No code writes it, and as an index it is out of range in any
/// pool loom can model, so reading a link before the write that set it happened (a missing
/// Acquire) panics at the table's bounds check instead of passing unnoticed.
const LOOM_UNWRITTEN: u32 = u32::MAX - 2;

/// A fixed-size block pool that many threads allocate from and free to without locking.
///
/// Free blocks form a Treiber stack. Its head is one 64-bit atomic word holding a block
/// *index* (32 bits) and a tag (32 bits) bumped by every successful update, so the stack
/// works the same on 32- and 64-bit targets and is immune to ABA (see `pop`). Blocks never
/// used yet come from an atomic bump cursor, so set-up is O(1).
///
/// The links live in a side table of 32-bit atomics after the blocks (4 bytes per block,
/// reported as metadata), not inside the free blocks as in [`Pool`](crate::Pool): a thread
/// about to pop may read the link of a block that another thread has just popped and is
/// writing to, and that read must not race with the owner's plain writes.
///
/// `AtomicPool` is an [`Allocator`](heapkit_core::Allocator) and a
/// [`GlobalAlloc`](core::alloc::GlobalAlloc) by itself (`&AtomicPool` is shared freely),
/// and a [`Backend`](heapkit_core::Backend) for composition. It needs a 64-bit compare-exchange,
/// so it exists only where the target has one.
///
/// ```
/// use core::mem::MaybeUninit;
/// use heapkit_core::Shared;
/// use heapkit_pool::AtomicPool;
///
/// #[repr(align(8))]
/// struct Region([MaybeUninit<u8>; 4096]);
/// static mut REGION: Region = Region([MaybeUninit::uninit(); 4096]);
/// // SAFETY: the only reference ever made to REGION.
/// let region = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
/// let pool = AtomicPool::with_region(region, 32, 8).unwrap();
/// // `Shared` makes it an `Allocator` (and a `GlobalAlloc`), callable from every thread.
/// let pool: &'static Shared<AtomicPool> = Box::leak(Box::new(Shared::new(pool)));
///
/// let workers: Vec<_> = (0..2u64)
///     .map(|t| {
///         std::thread::spawn(move || {
///             let mut total = 0;
///             for i in 0..1000 {
///                 let b = allocator_api2::boxed::Box::new_in([t, i, 0, 0], pool);
///                 total += b[1];
///             }
///             total
///         })
///     })
///     .collect();
/// for worker in workers {
///     assert_eq!(worker.join().unwrap(), 499_500);
/// }
/// assert_eq!(pool.stats().in_use, 0);
/// ```
pub struct AtomicPool {
    base: NonNull<u8>,
    shape: Shape,
    blocks: usize,
    /// Free-list head: `index | tag << 32`.
    head: AtomicU64,
    bumped: AtomicUsize,
    /// The free-list links, one per block, after the blocks.
    links: AtomicTable<AtomicU32>,
    region_len: usize,
}

// SAFETY: all shared state is atomic; the raw pointers address the region the pool
// manages, which is not tied to a thread.
unsafe impl Send for AtomicPool {}
// SAFETY: as above: every method takes `&self` and touches shared state only atomically.
unsafe impl Sync for AtomicPool {}

#[inline]
fn pack(index: u32, tag: u32) -> u64 {
    u64::from(index) | u64::from(tag) << 32
}

#[inline]
fn unpack(head: u64) -> (u32, u32) {
    (head as u32, (head >> 32) as u32)
}

impl AtomicPool {
    /// A lock-free pool of `block_size`-byte blocks aligned to `block_align`, over
    /// `region`. The side table of links takes 4 bytes per block from the region's end.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the alignment is not a power of two, the block size is zero,
    /// the region does not start at a multiple of the alignment, or it cannot hold one
    /// block and its link.
    pub fn with_region(
        region: &'static mut [MaybeUninit<u8>],
        block_size: usize,
        block_align: usize,
    ) -> Result<Self, ConfigError> {
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow of `len` bytes is ours to manage forever.
        unsafe { Self::from_raw(start, len, block_size, block_align) }
    }

    /// A lock-free pool over `len` bytes at `start`.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes, used by nothing else, for
    /// as long as the pool or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// As for [`AtomicPool::with_region`].
    pub unsafe fn from_raw(
        start: NonNull<u8>,
        len: usize,
        block_size: usize,
        block_align: usize,
    ) -> Result<Self, ConfigError> {
        Span::of(start, len)?;
        let shape = Shape::new(block_size, block_align, 1)?;
        shape.check_start(start.as_ptr().addr())?;
        let link_align = align_of::<u32>();
        // Up to `link_align - 1` bytes of padding may precede the link table.
        let (blocks, _) = shape.fit(len.saturating_sub(link_align - 1), 32);
        let blocks = blocks.min(MAX_BLOCKS);
        if blocks == 0 {
            return Err(ConfigError::RegionTooSmall {
                needed: shape.stride + 4 + link_align - 1,
                given: len,
            });
        }
        // SAFETY: `fit` keeps `blocks * stride` plus the padded table inside the region.
        let table = unsafe { start.add(blocks * shape.stride) };
        let padding = table.align_offset(link_align);
        #[allow(clippy::cast_ptr_alignment)] // `padding` aligns it to 4
        let table = table.as_ptr().wrapping_add(padding).cast::<u32>();
        Ok(Self {
            base: start,
            shape,
            blocks,
            head: AtomicU64::new(pack(NIL, 0)),
            bumped: AtomicUsize::new(0),
            // SAFETY: the table lies inside the region, aligned, with room for `blocks`
            // slots; a slot is written (push, or a checked hand-out) before it is read.
            links: unsafe {
                AtomicTable::new(NonNull::new_unchecked(table), blocks, LOOM_UNWRITTEN)
            },
            region_len: len,
        })
    }

    /// The usable size of every block.
    pub fn block_size(&self) -> usize {
        self.shape.stride
    }

    /// The alignment of every block.
    pub fn block_align(&self) -> usize {
        self.shape.align
    }

    /// Number of blocks in the pool.
    pub fn total_blocks(&self) -> usize {
        self.blocks
    }

    /// Whether a request of `layout` can be served by a block of this pool.
    #[inline]
    pub fn fits(&self, layout: Layout) -> bool {
        self.shape.fits(layout)
    }

    /// Whether `ptr` lies inside the pool's blocks.
    #[inline]
    pub fn owns(&self, ptr: NonNull<u8>) -> bool {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        offset < self.blocks * self.shape.stride
    }

    /// A snapshot of the pool's use, exact when no other thread is allocating or freeing.
    ///
    /// It counts the free list, O(free blocks): keeping a live count instead would put one
    /// more shared read-modify-write on every allocation and free, doubling their cost.
    pub fn stats(&self) -> Stats {
        // Relaxed: the cursor only ever moves by Relaxed compare-exchanges (a never-used block
        // has nothing to publish), so there is no Release for an Acquire here to pair with.
        let mut free_blocks = self.blocks - self.bumped.load(Ordering::Relaxed).min(self.blocks);
        // Acquire pairs with the Release in `push` (and, through the release sequence of the
        // head's compare-exchanges, every earlier push): the links walked below were written
        // before the blocks were pushed, so none is read before it was written.
        let (mut index, _) = unpack(
            self.head
                .load(ordering("pool.stats.head_load", Ordering::Acquire)),
        );
        // Bounded, so a list changing under the walk cannot keep it going.
        let mut listed = 0;
        while index != NIL && index != ALLOCATED && listed < self.blocks {
            listed += 1;
            index = self.links.get(index as usize).load(Ordering::Relaxed);
        }
        free_blocks += listed;
        let free = free_blocks.min(self.blocks) * self.shape.stride;
        Stats {
            capacity: self.region_len,
            in_use: self.blocks * self.shape.stride - free,
            free,
            largest_free: if free > 0 { self.shape.stride } else { 0 },
            metadata: self.region_len - self.blocks * self.shape.stride,
        }
    }

    /// Takes a block, or `AllocError` when the request does not fit or all are in use.
    #[inline]
    fn take(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !self.fits(layout) {
            return Err(AllocError);
        }
        let index = self
            .pop()
            .or_else(|| self.bump())
            // Blocks may have been freed while we found the list empty and the cursor
            // exhausted: look once more before reporting out of memory.
            .or_else(|| self.pop())
            .ok_or(AllocError)?;
        if cfg!(feature = "checked") {
            self.links
                .get(index as usize)
                .store(ALLOCATED, Ordering::Relaxed);
        }
        // SAFETY: `index < blocks`, so the block lies inside the region.
        let block = unsafe { self.base.add(index as usize * self.shape.stride) };
        Ok(NonNull::slice_from_raw_parts(block, self.shape.stride))
    }

    /// Returns a block.
    ///
    /// # Safety
    ///
    /// `ptr` is a block handed out by this pool and not yet returned.
    #[inline]
    unsafe fn put(&self, ptr: NonNull<u8>, layout: Layout) {
        let index = self.index_of(ptr, layout, "deallocate");
        self.push(index);
    }

    /// The index of a block handed back; with `checked`, panics on anything but a live
    /// block of this pool freed once.
    #[inline]
    #[track_caller]
    fn index_of(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) -> u32 {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        let index = offset / self.shape.stride;
        // Without `checked`, catch what is free to check in debug builds.
        debug_assert!(
            cfg!(feature = "checked") || self.owns(ptr),
            "heapkit-pool: {operation} of a foreign pointer"
        );
        if cfg!(feature = "checked") {
            let fail =
                |reason| heapkit_core::invalid_use("heapkit-pool", operation, ptr.as_ptr(), reason);
            if !self.owns(ptr) {
                fail("pointer is outside this pool");
            }
            if offset % self.shape.stride != 0 {
                fail("pointer is not the start of a block");
            }
            if !self.fits(layout) {
                fail("layout does not fit this pool's blocks");
            }
            // A block the bump cursor never reached was never handed out (and its link
            // slot is not even initialised yet).
            if index >= self.bumped.load(Ordering::Relaxed) {
                fail("block is already free");
            }
            // Exactly one of two racing frees of the same block wins this exchange.
            let link = self.links.get(index);
            if link
                .compare_exchange(ALLOCATED, NIL, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                fail("block is already free");
            }
        }
        index as u32
    }

    /// Pops the free list.
    ///
    /// The ABA problem, and why the tag defeats it: this thread reads head `(X, t)` and
    /// X's link `Y`, then stalls. Meanwhile others pop X, pop Y, and push X back: the head
    /// is X again, but Y is now in use. An index-only compare-exchange would succeed and
    /// install Y as the head, handing Y out twice. Every successful update increments the
    /// tag, so the head is now `(X, t + 3)` and this exchange fails and retries. The tag has
    /// 2^32 values: to fool it, other threads would have to complete exactly a multiple of
    /// 2^32 updates (over four billion, minutes of nonstop traffic) between this thread's
    /// load and its exchange.
    ///
    /// Reading Y (a stale link) is itself safe: blocks are never returned to anyone but
    /// this pool, so X's link slot is always valid memory, and the slot is atomic.
    ///
    /// Orderings: every head value this loop uses was loaded with Acquire (the first load,
    /// or a failed exchange), pairing with the Release in `push` (and, through the release
    /// sequence of the head's read-modify-writes, with every earlier push). So the link read
    /// next, and the popped block's previous owner's writes, happen before this thread uses
    /// them. A successful exchange finds the very head value loaded last (the tag makes each
    /// value unique), a value this thread has already acquired, so its success ordering is
    /// Relaxed; being a read-modify-write it still continues the release sequence, so a later
    /// pop that acquires the head it writes synchronises with the pushes before it.
    #[inline]
    fn pop(&self) -> Option<u32> {
        let mut head = self
            .head
            .load(ordering("pool.pop.head_load", Ordering::Acquire));
        loop {
            let (index, tag) = unpack(head);
            if index == NIL {
                return None;
            }
            let next = self.links.get(index as usize).load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(next, tag.wrapping_add(1)),
                Ordering::Relaxed,
                ordering("pool.pop.head_cas_failure", Ordering::Acquire),
            ) {
                Ok(_) => return Some(index),
                Err(current) => head = current,
            }
        }
    }

    /// Pushes block `index` on the free list. Release orders the previous owner's writes
    /// to the block (and the link) before the next owner's `pop`.
    #[inline]
    fn push(&self, index: u32) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(head);
            self.links.get(index as usize).store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(index, tag.wrapping_add(1)),
                ordering("pool.push.head_cas", Ordering::Release),
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Takes a never-used block from the bump cursor.
    #[inline]
    fn bump(&self) -> Option<u32> {
        let mut bumped = self.bumped.load(Ordering::Relaxed);
        loop {
            if bumped >= self.blocks {
                return None;
            }
            // Relaxed: a never-used block has no previous owner to synchronise with.
            match self.bumped.compare_exchange_weak(
                bumped,
                bumped + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(bumped as u32),
                Err(current) => bumped = current,
            }
        }
    }

    /// In checked builds, verifies `ptr` is a live block without freeing it.
    #[inline]
    fn index_of_checked_live(&self, ptr: NonNull<u8>, layout: Layout) {
        if cfg!(feature = "checked") {
            let index = self.index_of(ptr, layout, "resize");
            // `index_of` marked it as being freed; it stays allocated.
            self.links
                .get(index as usize)
                .store(ALLOCATED, Ordering::Relaxed);
        }
    }
}

// SAFETY: blocks are disjoint, aligned pieces of the region, each held by at most one
// owner: the Treiber stack and the bump cursor hand each free block out once (ABA argument
// on `pop`).
unsafe impl SharedBackend for AtomicPool {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.take(layout)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantee.
        unsafe { self.put(ptr, layout) }
    }

    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.index_of_checked_live(ptr, old_layout);
        if self.fits(new_layout) {
            Ok(NonNull::slice_from_raw_parts(ptr, self.shape.stride))
        } else {
            Err(AllocError)
        }
    }

    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        _new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.index_of_checked_live(ptr, old_layout);
        Ok(NonNull::slice_from_raw_parts(ptr, self.shape.stride))
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        AtomicPool::owns(self, ptr)
    }

    fn stats(&self) -> Stats {
        AtomicPool::stats(self)
    }
}

heapkit_core::backend_via_shared!(AtomicPool);

impl fmt::Debug for AtomicPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicPool")
            .field("base", &self.base)
            .field("block_size", &self.shape.stride)
            .field("block_align", &self.shape.align)
            .field("blocks", &self.blocks)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
