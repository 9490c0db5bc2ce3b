//! [`Pool`]: fixed-size blocks, a free list threaded through the free blocks.

use core::alloc::Layout;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use heapkit_core::bits::Bits;
use heapkit_core::region::Span;
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::shape::Shape;

/// A pool of equal-size blocks over one region: O(1) allocate, free and set-up.
///
/// Free blocks form a singly linked list whose links are stored in the blocks themselves,
/// so a block carries no header and a pool spends no memory per block. Blocks never used
/// yet are not on the list: they are handed out from a bump cursor, so building a pool
/// over a gigabyte touches none of it.
///
/// Any request that fits one block is served with one block (usable size: the block
/// size); a larger or more aligned request fails with [`AllocError`]. Growing within
/// the block and shrinking always succeed in place.
///
/// ```
/// use core::mem::MaybeUninit;
/// use allocator_api2::boxed::Box;
/// use heapkit_core::Local;
/// use heapkit_pool::Pool;
///
/// #[repr(align(8))]
/// struct Region([MaybeUninit<u8>; 64 * 32]);
/// static mut REGION: Region = Region([MaybeUninit::uninit(); 64 * 32]);
/// // SAFETY: the only reference ever made to REGION.
/// let region = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
/// let pool = Local::new(Pool::with_region(region, 64, 8).unwrap());
/// let blocks = pool.stats().free / 64; // 32 (31 with `checked`, which keeps a bitmap)
///
/// let mut boxes: Vec<_> = (0..blocks as u64).map(|i| Box::new_in(i, &pool)).collect();
/// assert!(Box::try_new_in(0u64, &pool).is_err()); // every block is in use
/// boxes.truncate(10);
/// assert_eq!(pool.stats().in_use, 10 * 64);
/// ```
pub struct Pool {
    /// Start of block 0.
    base: NonNull<u8>,
    shape: Shape,
    /// Blocks in the region.
    blocks: usize,
    /// Blocks handed out by the bump cursor so far: `0..bumped` have been used at least
    /// once, `bumped..blocks` never.
    bumped: usize,
    /// First free block, or null: each free block's first bytes point to the next.
    free_head: *mut u8,
    free_len: usize,
    /// Bytes of the region given, bookkeeping and slack included.
    region_len: usize,
    /// One bit per block (set: allocated), in words after the blocks; words holding only
    /// bits at and past `bumped` are not initialised yet.
    #[cfg(feature = "checked")]
    live: Bits,
}

// SAFETY: the pool exclusively manages its region; moving it to another thread moves that
// management with it, and nothing in it is tied to a thread.
unsafe impl Send for Pool {}

/// The free-list link stored at the start of each free block.
const LINK_SIZE: usize = size_of::<*mut u8>();

/// Bytes per word of the `checked` live map.
const WORD: usize = size_of::<usize>();

/// Bits of side bookkeeping per block: one "allocated" bit under `checked`.
const SIDE_BITS: usize = if cfg!(feature = "checked") { 1 } else { 0 };

impl Pool {
    /// The smallest block size: a free block must hold the free-list link.
    pub const MIN_BLOCK_SIZE: usize = LINK_SIZE;

    /// A pool of `block_size`-byte blocks aligned to `block_align`, over `region`.
    ///
    /// A `block_size` that is not a multiple of `block_align` is rounded up to one.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the alignment is not a power of two, the block is smaller than
    /// [`Pool::MIN_BLOCK_SIZE`], the region does not start at a multiple of the alignment,
    /// or it cannot hold one block.
    pub fn with_region(
        region: &'static mut [MaybeUninit<u8>],
        block_size: usize,
        block_align: usize,
    ) -> Result<Self, ConfigError> {
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow of `len` bytes is ours to manage forever.
        unsafe { Self::from_raw(start, len, block_size, block_align) }
    }

    /// A pool over `len` bytes at `start`, for memory that is not a `'static` slice (a
    /// linker-provided heap, a page range from a kernel, a test buffer).
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes, used by nothing else, for
    /// as long as the pool or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// As for [`Pool::with_region`].
    pub unsafe fn from_raw(
        start: NonNull<u8>,
        len: usize,
        block_size: usize,
        block_align: usize,
    ) -> Result<Self, ConfigError> {
        Span::of(start, len)?;
        let shape = Shape::new(block_size, block_align, Self::MIN_BLOCK_SIZE)?;
        shape.check_start(start.as_ptr().addr())?;
        let (blocks, map_offset) = Self::fit(start.as_ptr().addr(), len, shape);
        #[cfg(not(feature = "checked"))]
        let _ = map_offset;
        if blocks == 0 {
            return Err(ConfigError::RegionTooSmall {
                // One block and, under `checked`, one aligned word of map after it.
                needed: Self::map_offset(start.as_ptr().addr(), 1, shape) + SIDE_BITS * WORD,
                given: len,
            });
        }
        Ok(Self {
            base: start,
            shape,
            blocks,
            bumped: 0,
            free_head: ptr::null_mut(),
            free_len: 0,
            region_len: len,
            // SAFETY: `fit` placed `words_for(blocks)` aligned words at `map_offset`, after
            // the blocks and inside the region; `first_use` clears each before it is read.
            #[cfg(feature = "checked")]
            live: unsafe { Bits::new(start.add(map_offset).cast::<usize>(), blocks) },
        })
    }

    /// How many blocks fit in `len` bytes at address `start`, and where the `checked`
    /// live map goes: the first word boundary after the blocks.
    fn fit(start: usize, len: usize, shape: Shape) -> (usize, usize) {
        let (mut blocks, _) = shape.fit(len, SIDE_BITS);
        if SIDE_BITS == 0 {
            return (blocks, blocks * shape.stride);
        }
        // The words' alignment costs up to a word more than `fit` counted: step down past it.
        while blocks > 0
            && Self::map_offset(start, blocks, shape) + Bits::words_for(blocks) * WORD > len
        {
            blocks -= 1;
        }
        (blocks, Self::map_offset(start, blocks, shape))
    }

    /// Offset of the live map after `blocks` blocks from address `start`: the next word
    /// boundary. Worked in offsets, so nothing wraps near the top of the address space.
    fn map_offset(start: usize, blocks: usize, shape: Shape) -> usize {
        let blocks_end = blocks * shape.stride;
        if SIDE_BITS == 0 {
            blocks_end
        } else {
            let misalignment = start % WORD;
            (misalignment + blocks_end).next_multiple_of(WORD) - misalignment
        }
    }

    /// The usable size of every block: the block size rounded up to the alignment.
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

    /// Number of blocks free right now.
    pub fn free_blocks(&self) -> usize {
        self.free_len + (self.blocks - self.bumped)
    }

    /// Whether a request of `layout` can be served by a block of this pool.
    #[inline]
    pub fn fits(&self, layout: Layout) -> bool {
        self.shape.fits(layout)
    }

    #[inline]
    fn block_slice(&self, block: NonNull<u8>) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(block, self.shape.stride)
    }

    /// Validates a block handed back; with `checked`, panics naming the problem.
    #[inline]
    #[track_caller]
    fn check_live(&self, block: NonNull<u8>, layout: Layout, operation: &str) {
        // Without `checked`, catch what is free to check in debug builds.
        debug_assert!(
            cfg!(feature = "checked") || self.owns(block),
            "heapkit-pool: {operation} of a foreign pointer"
        );
        #[cfg(feature = "checked")]
        {
            let fail = |reason| {
                heapkit_core::invalid_use("heapkit-pool", operation, block.as_ptr(), reason)
            };
            if !self.owns(block) {
                fail("pointer is outside this pool");
            }
            let offset = block.as_ptr().addr() - self.base.as_ptr().addr();
            if offset % self.shape.stride != 0 {
                fail("pointer is not the start of a block");
            }
            if !self.fits(layout) {
                fail("layout does not fit this pool's blocks");
            }
            let index = offset / self.shape.stride;
            if index >= self.bumped || !self.live_bit(index) {
                fail("block is already free");
            }
        }
        #[cfg(not(feature = "checked"))]
        let _ = (layout, operation);
    }

    #[cfg(feature = "checked")]
    fn live_bit(&self, index: usize) -> bool {
        // Bits at and past `bumped` may lie in a word not yet cleared.
        index < self.bumped && self.live.get(index)
    }

    /// Records `block` as allocated or free in the `checked` bitmap; free without it.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))]
    fn set_live(&mut self, block: NonNull<u8>, live: bool) {
        #[cfg(feature = "checked")]
        {
            let index = (block.as_ptr().addr() - self.base.as_ptr().addr()) / self.shape.stride;
            // Its word was cleared when the bump cursor reached the word's first block.
            self.live.set(index, live);
        }
        #[cfg(not(feature = "checked"))]
        let _ = (block, live);
    }

    /// Block `index` is about to be handed out for the first time.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))]
    fn first_use(&mut self, index: usize) {
        // Bits of blocks the cursor has not reached are never read: clear each word here.
        #[cfg(feature = "checked")]
        if index % usize::BITS as usize == 0 {
            self.live.clear_word_of(index);
        }
        #[cfg(not(feature = "checked"))]
        let _ = index;
    }
}

// SAFETY: blocks are disjoint `stride`-byte pieces of the region starting at multiples of
// the alignment; a block is handed out only from the free list (which holds each free block
// once) or from the bump cursor (which passes each block once).
unsafe impl Backend for Pool {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !self.fits(layout) {
            return Err(AllocError);
        }
        let block = if let Some(head) = NonNull::new(self.free_head) {
            // SAFETY: a free block starts with the link written when it was freed.
            self.free_head = unsafe { head.cast::<*mut u8>().as_ptr().read_unaligned() };
            self.free_len -= 1;
            head
        } else if self.bumped < self.blocks {
            let index = self.bumped;
            self.bumped += 1;
            self.first_use(index);
            // SAFETY: `index < blocks`: the block lies inside the region.
            unsafe { self.base.add(index * self.shape.stride) }
        } else {
            return Err(AllocError);
        };
        self.set_live(block, true);
        Ok(self.block_slice(block))
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.check_live(ptr, layout, "deallocate");
        self.set_live(ptr, false);
        // SAFETY: the block is ours and free from now on: its first bytes hold the link.
        unsafe {
            ptr.cast::<*mut u8>()
                .as_ptr()
                .write_unaligned(self.free_head)
        };
        self.free_head = ptr.as_ptr();
        self.free_len += 1;
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check_live(ptr, old_layout, "grow");
        if self.fits(new_layout) {
            Ok(self.block_slice(ptr))
        } else {
            Err(AllocError)
        }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        _new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check_live(ptr, old_layout, "shrink");
        Ok(self.block_slice(ptr))
    }

    #[inline]
    fn max_align(&self) -> usize {
        self.shape.align
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        offset < self.blocks * self.shape.stride
    }

    fn stats(&self) -> Stats {
        let free = self.free_blocks() * self.shape.stride;
        let in_use = (self.blocks - self.free_blocks()) * self.shape.stride;
        Stats {
            capacity: self.region_len,
            in_use,
            free,
            largest_free: if free > 0 { self.shape.stride } else { 0 },
            metadata: self.region_len - self.blocks * self.shape.stride,
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        let base = self.base.as_ptr().addr();
        let corrupt = |at: usize, what| Corruption::new("heapkit-pool", at, what);
        if self.bumped > self.blocks || self.free_len > self.bumped {
            return Err(
                corrupt(base, "block counts out of range").expected(self.bumped, self.free_len)
            );
        }
        // Walk at most `free_len + 1` links, so a cycle ends; every link must be the start
        // of a block the bump cursor has handed out.
        let mut node = self.free_head;
        let mut seen = 0;
        while !node.is_null() {
            seen += 1;
            let offset = node.addr().wrapping_sub(base);
            if seen > self.free_len {
                return Err(corrupt(
                    node.addr(),
                    "free list longer than the free count (a cycle?)",
                )
                .expected(self.free_len, seen));
            }
            if offset % self.shape.stride != 0 || offset / self.shape.stride >= self.bumped {
                return Err(corrupt(
                    node.addr(),
                    "free list link is not a used block of the pool",
                ));
            }
            #[cfg(feature = "checked")]
            if self.live_bit(offset / self.shape.stride) {
                return Err(corrupt(
                    node.addr(),
                    "a block on the free list is marked allocated",
                ));
            }
            // The link read from memory may be a stray write: only its address is trusted,
            // checked above, and the pointer followed is rebuilt from the region's own.
            let block = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: `block` is a block of the region, before the bump cursor: a free block
            // whose first bytes hold the next link.
            node = unsafe { block.cast::<*mut u8>().read_unaligned() };
        }
        if seen != self.free_len {
            return Err(corrupt(base, "free list shorter than the free count")
                .expected(self.free_len, seen));
        }
        Ok(())
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("base", &self.base)
            .field("block_size", &self.shape.stride)
            .field("block_align", &self.shape.align)
            .field("blocks", &self.blocks)
            .field("free_blocks", &self.free_blocks())
            .finish_non_exhaustive()
    }
}

// SAFETY: a pool manages only the region it is built over.
unsafe impl heapkit_core::FromRegion for Pool {
    /// Block size and block alignment.
    type Params = (usize, usize);

    /// Starts at the region's first byte aligned to `block_align` (a byte buffer lent by
    /// [`Lent`](heapkit_core::Lent) may start anywhere).
    unsafe fn from_region(
        start: NonNull<u8>,
        len: usize,
        (block_size, block_align): (usize, usize),
    ) -> Result<Self, ConfigError> {
        let (start, len) = heapkit_core::region::aligned_part(start, len, block_align)?;
        // SAFETY: forwarded caller guarantees, for a part of the region.
        unsafe { Self::from_raw(start, len, block_size, block_align) }
    }
}
