//! [`BitmapArena`]: equal blocks, one bit each; the lowest free block found through summary
//! levels of the bitmap, runs through a run tree over it.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use heapkit_core::region::Span;
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::levels::{self, Levels};
use crate::short::{self, ShortRuns, SHORT_RUN};
use crate::tree::{self, Fault, RunTree};

/// Bookkeeping bitsets: the free map, and under `checked` a map of allocation starts.
const BITSETS: usize = if cfg!(feature = "checked") { 2 } else { 1 };

/// A region cut into equal blocks, one bit per block saying whether it is free; an
/// allocation takes a run of consecutive free blocks.
///
/// Blocks carry no headers: the bitmap (kept apart from the blocks) is all the metadata.
/// Above the bit-per-block level sit summary levels with one bit per word of the level
/// below ("this word has a free block"), so the lowest free block is found by reading one
/// word per level — O(log64 n). Beside them two indexes find runs:
///
/// - the **short-run index**: a byte per bitmap word, at least the longest free run (up to
///   127 blocks) starting in that word, and levels of maxima above, each byte at least the
///   largest of eight below. The lowest run of up to 127 blocks is found by reading one
///   eight-byte group per level from the top (the first byte that holds the run, eight
///   compared at once), then one word — O(log8 n).
/// - the **run tree**: for every 512 blocks and for each pair of nodes above, the free run
///   at the start, the free run at the end and the longest free run inside when that is 63
///   blocks or more, so the lowest run of 63 blocks or more is found in O(log n): a node
///   per level from the top, then one 512-block leaf's eight words.
///
/// **Policy: address-ordered first fit**, the policy Wilson et al. found to fragment least.
/// There is no roving pointer: a roving start (next fit) spreads allocations over the whole
/// arena and fragments more, and with the summary levels and the indexes finding the lowest
/// fit is already logarithmic, so nothing is gained by remembering where the last search
/// ended. A single block is the lowest free block. A run of up to 127 blocks is a run in
/// the lowest free block's word, if that holds one, and otherwise the short-run index's.
/// Longer runs are the run tree's. An over-aligned run is the lowest run of its length at
/// or after a position (from the tree for 63 blocks and more, the short-run index below,
/// the summary levels for one block), looked for again past the used block that cuts it
/// short when its first aligned start leaves too little room.
///
/// **Cost.** Freeing or taking a run writes its bits and their summaries. The short-run
/// index then raises one byte, for the free run around the blocks freed or the one left
/// after the blocks taken, and the bytes above it while they are lower. Taking blocks
/// lowers nothing: a search that reaches a byte left too high finds out from the word's
/// bits (or from a group with no byte that large), brings it down and goes on, so each
/// change costs O(log8 n) and each search O(log8 n) amortized. The run tree sees of each
/// word only its two edge runs, the free bits reaching its first and its last bit (a run
/// of 63 blocks or more reaches one of them), so a change inside one word that leaves both
/// as they were marks no leaf. Otherwise its leaves over the change are brought up to date
/// from the free run around it (a word or two on either side; all eight words when blocks
/// were taken from the leaf's longest run, or when the leaf changed already since the last
/// tree search); the nodes above wait for the next search that needs the tree, each once,
/// a level at a time — so a heap of short runs does not pay for them. At most 512 leaves
/// wait; the change that would make it more brings the tree up to date: O(log n)
/// amortized, O(512 log n) at worst. The free run that reaches the end of the arena is
/// kept apart from the tree, so a heap growing and shrinking at its top changes no node.
///
/// **Run length.** `deallocate` recovers a run's length from the layout: `ceil(size /
/// block_size)` blocks. Any size the "fits" rule allows (from the size requested up to the
/// usable size returned) gives the same count. With `checked`, a second bitmap marks where
/// each allocation starts, so a pointer into the middle of an allocation, a double free and
/// a layout longer or shorter than the allocation are all reported.
///
/// **Memory.** The bitmap takes `n / 8 * 64 / 63` bytes for `n` blocks (one bit per block
/// plus about 1.6% for the summaries); twice that with `checked`. The run tree takes about
/// 3/16 of the bitmap again: three run lengths for every 512 blocks (`u16`s up to 32,768
/// blocks a node, wider above) and for each node above, plus a bit per 512 blocks. The
/// short-run index takes a byte per 64 blocks, and an eighth of that again above: 1/7 of
/// the bitmap. For a MiB of 16-byte blocks that is 11,072 bytes of metadata (1.06%; 9,896
/// without the short-run index, 8,328 without either), of 64-byte blocks 2,776 (2,480,
/// 2,088), of 4-KiB blocks 64 (56, 40). It is all carved from the
/// start of the region ([`BitmapArena::with_region`]) or kept in a slice the caller gives
/// ([`BitmapArena::with_bitmap`], [`bitmap_words`](BitmapArena::bitmap_words) long); either
/// way `stats().metadata` reports it.
///
/// ```
/// use core::mem::MaybeUninit;
/// use allocator_api2::vec::Vec;
/// use heapkit_bitmap_arena::BitmapArena;
/// use heapkit_core::Local;
///
/// #[repr(align(64))]
/// struct Region([MaybeUninit<u8>; 64 * 1024]);
/// static mut REGION: Region = Region([MaybeUninit::uninit(); 64 * 1024]);
/// // SAFETY: the only reference ever made to REGION.
/// let region = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
///
/// // 64-byte blocks; the bitmap comes out of the region's first bytes.
/// let arena = Local::new(BitmapArena::with_region(region, 64).unwrap());
/// let mut ids: Vec<u64, _> = Vec::with_capacity_in(100, &arena); // 800 bytes: 13 blocks
/// ids.push(7);
/// assert_eq!(arena.stats().in_use, 13 * 64);
/// drop(ids);
/// assert_eq!(arena.stats().in_use, 0);
/// ```
pub struct BitmapArena {
    /// Start of block 0.
    base: NonNull<u8>,
    block_shift: u32,
    blocks: usize,
    /// Set bit: free block.
    free: Levels,
    /// Free run lengths over `free`'s words, for first fit of runs of `tree::MIN_LONG` blocks
    /// and more.
    runs: RunTree,
    /// At least the longest short run starting in each of `free`'s words, for first fit of
    /// shorter runs.
    short: ShortRuns,
    /// Set bit: an allocation starts at this block.
    #[cfg(feature = "checked")]
    starts: Levels,
    free_blocks: usize,
    /// Bytes of memory given: the region, and the bitmap slice when given apart.
    capacity: usize,
}

// SAFETY: the arena exclusively manages its region and bitmap; nothing is tied to a thread.
unsafe impl Send for BitmapArena {}

impl BitmapArena {
    /// Words of bitmap (`u64`) an arena of `blocks` blocks needs, for
    /// [`with_bitmap`](Self::with_bitmap): the free map and its summaries, the start map
    /// under `checked`, the run tree and the short-run index.
    pub fn bitmap_words(blocks: usize) -> usize {
        levels::storage_words(blocks) * BITSETS
            + tree::storage_words(blocks)
            + short::storage_words(blocks)
    }

    /// An arena of `block_size`-byte blocks over `region`, its bitmap carved from the
    /// region's start. Blocks start at the first multiple of `block_size` after the
    /// bitmap, so every block is aligned to the block size.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `block_size` is not a power of two, the region does not start
    /// at a multiple of 8 (the bitmap's words), or it cannot hold one block and its bits.
    pub fn with_region(
        region: &'static mut [MaybeUninit<u8>],
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { Self::from_raw(start, len, block_size) }
    }

    /// An arena over `region` whose bitmap lives in `bitmap`, so the region holds nothing
    /// but blocks.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `block_size` is not a power of two, the region does not start
    /// at a multiple of `block_size`, or `bitmap` is too short for one block
    /// ([`bitmap_words`](Self::bitmap_words) says how long it must be).
    pub fn with_bitmap(
        region: &'static mut [MaybeUninit<u8>],
        bitmap: &'static mut [MaybeUninit<u64>],
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        let (start, len) = Span::raw_parts(region);
        let words = bitmap.len();
        let bitmap = NonNull::from(bitmap).cast::<u64>();
        // SAFETY: `'static` exclusive borrows are ours to manage forever.
        unsafe { Self::from_raw_parts(start, len, bitmap, words, block_size) }
    }

    /// As [`with_region`](Self::with_region), over raw memory.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the arena or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// As for [`with_region`](Self::with_region).
    pub unsafe fn from_raw(
        start: NonNull<u8>,
        len: usize,
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        let block_shift = shift_of(block_size)?;
        let span = Span::of(start, len)?;
        if span.start() % 8 != 0 {
            return Err(ConfigError::RegionMisaligned {
                address: span.start(),
                required: 8,
            });
        }
        // Blocks begin at the first block boundary after the bitmap: an offset, compared
        // with the length before it meets an address.
        let first_block = |blocks: usize| span.align_up(Self::bitmap_words(blocks) * 8, block_size);
        let fits = |blocks: usize| {
            first_block(blocks).is_some_and(|first| len - first >= blocks << block_shift)
        };
        let blocks = largest_fitting((len >> block_shift).min(levels::MAX_BITS), fits);
        if blocks == 0 {
            return Err(ConfigError::RegionTooSmall {
                needed: (Self::bitmap_words(1) * 8).saturating_add(2 * block_size),
                given: len,
            });
        }
        // SAFETY: the bitmap and the blocks lie inside the region (`fits`).
        unsafe {
            let base = start.add(first_block(blocks).unwrap_or_default());
            Ok(Self::build(base, blocks, block_shift, start.cast(), len))
        }
    }

    /// As [`with_bitmap`](Self::with_bitmap), over raw memory.
    ///
    /// # Safety
    ///
    /// `start..start + len` and the `bitmap_words` words at `bitmap` must be valid for reads
    /// and writes, disjoint, and used by nothing else for as long as the arena or any block
    /// it handed out is in use; `bitmap` must be aligned for `u64`.
    ///
    /// # Errors
    ///
    /// As for [`with_bitmap`](Self::with_bitmap).
    pub unsafe fn from_raw_parts(
        start: NonNull<u8>,
        len: usize,
        bitmap: NonNull<u64>,
        bitmap_words: usize,
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        let block_shift = shift_of(block_size)?;
        let address = Span::of(start, len)?.start();
        if address % block_size != 0 {
            return Err(ConfigError::RegionMisaligned {
                address,
                required: block_size,
            });
        }
        let most = (len >> block_shift).min(levels::MAX_BITS);
        if most == 0 {
            return Err(ConfigError::RegionTooSmall {
                needed: block_size,
                given: len,
            });
        }
        // Fewer blocks than the region holds if the bitmap is short.
        let blocks = largest_fitting(most, |blocks| Self::bitmap_words(blocks) <= bitmap_words);
        if blocks == 0 {
            return Err(ConfigError::BitmapTooSmall {
                needed: Self::bitmap_words(1),
                given: bitmap_words,
            });
        }
        let capacity = len + bitmap_words * 8;
        // SAFETY: the caller's guarantees; the bitmap has the words `build` uses.
        Ok(unsafe { Self::build(start, blocks, block_shift, bitmap, capacity) })
    }

    /// # Safety
    ///
    /// `base` starts `blocks` blocks of `1 << block_shift` bytes, `bitmap` has
    /// `bitmap_words(blocks)` words; both are ours.
    unsafe fn build(
        base: NonNull<u8>,
        blocks: usize,
        block_shift: u32,
        bitmap: NonNull<u64>,
        capacity: usize,
    ) -> Self {
        let map_words = levels::storage_words(blocks);
        // SAFETY: the bitmap's first `map_words` words are the free map.
        let mut free = unsafe { Levels::new(bitmap, blocks) };
        free.assign(0, blocks, true);
        let tree_start = map_words * BITSETS;
        // SAFETY: the run tree's `tree::storage_words(blocks)` words follow the bitsets, and
        // the short-run index's words follow them.
        // All free: the whole map is the run tree's tail, every node zero.
        let (runs, short) = unsafe {
            (
                RunTree::new(bitmap.add(tree_start), blocks),
                ShortRuns::new(bitmap.add(tree_start + tree::storage_words(blocks)), blocks),
            )
        };
        Self {
            base,
            block_shift,
            blocks,
            free,
            runs,
            short,
            // SAFETY: the next `map_words` words hold the start map.
            #[cfg(feature = "checked")]
            starts: unsafe { Levels::new(bitmap.add(map_words), blocks) },
            free_blocks: blocks,
            capacity,
        }
    }

    /// Size of every block.
    pub fn block_size(&self) -> usize {
        1 << self.block_shift
    }

    /// Number of blocks.
    pub fn total_blocks(&self) -> usize {
        self.blocks
    }

    /// Number of free blocks.
    pub fn free_blocks(&self) -> usize {
        self.free_blocks
    }

    /// Blocks a request of `size` bytes takes (at least one).
    #[inline]
    fn blocks_for(&self, size: usize) -> usize {
        // Shifts, not `div_ceil`: the block size is a power of two the compiler cannot see.
        let whole = size >> self.block_shift;
        let partial = usize::from(size & ((1 << self.block_shift) - 1) != 0);
        (whole + partial).max(1)
    }

    #[inline]
    fn index_of(&self, ptr: NonNull<u8>) -> usize {
        (ptr.as_ptr().addr() - self.base.as_ptr().addr()) >> self.block_shift
    }

    #[inline]
    fn block(&self, index: usize) -> NonNull<u8> {
        // SAFETY: callers pass `index <= blocks`: at most one past the last block.
        unsafe { self.base.add(index << self.block_shift) }
    }

    /// The lowest run of `count` free blocks whose first block's address is a multiple of
    /// `align`.
    #[inline]
    fn find_run(&mut self, count: usize, align: usize) -> Option<usize> {
        // Blocks are aligned to the block size; larger alignments step over block indices.
        let step = (align >> self.block_shift).max(1);
        match (count, step) {
            (1, 1) => self.free.first_set(),
            (2..=SHORT_RUN, 1) => {
                // A run starting in the lowest free block's word is the first fit: the run
                // the lowest free block starts, if long enough inside its word (where most
                // blocks are taken, the hole a free just left), else the word's first run
                // that long. Only a word with none sends the search to the short-run index.
                let lowest = self.free.first_set()?;
                let word = lowest / 64;
                if (self.free.leaf(word) >> (lowest % 64)).trailing_ones() as usize >= count {
                    return Some(lowest);
                }
                short::fit_in_word(&self.free, self.blocks, word, count)
                    .or_else(|| self.short.first_fit(&self.free, count))
            }
            (_, 1) => self.runs.first_fit(&self.free, count),
            _ => self.find_aligned_run(count, step),
        }
    }

    /// First fit for over-aligned runs: the lowest run of `count` free blocks at or after a
    /// position, then the first aligned start in it; if the run is too short past that
    /// start, look again past the used block that cut it off.
    fn find_aligned_run(&mut self, count: usize, step: usize) -> Option<usize> {
        let base_index = self.base.as_ptr().addr() >> self.block_shift;
        let mut from = 0;
        loop {
            let free = self.first_fit_from(count, from)?;
            // Past the top of the address space there is no aligned start.
            let start = (base_index + free).checked_next_multiple_of(step)? - base_index;
            let end = start.checked_add(count).filter(|end| *end <= self.blocks)?;
            if start == free {
                return Some(start);
            }
            match self.free.first_clear_in(start, end) {
                None => return Some(start),
                Some(used) => from = used + 1,
            }
        }
    }

    /// The lowest start at or after `from` of `count` free blocks: the free map's own search
    /// for one block, the short-run index below [`tree::MIN_LONG`] blocks (the run tree
    /// knows only runs that long), the run tree from there.
    fn first_fit_from(&mut self, count: usize, from: usize) -> Option<usize> {
        match count {
            1 => self.free.next_set(from),
            2..tree::MIN_LONG => self.short.first_fit_from(&self.free, count, from),
            _ => self.runs.first_fit_from(&self.free, count, from),
        }
    }

    /// Marks blocks `start..end` free (`true`) or used, in the bitmap and the run tree.
    #[inline(always)]
    fn mark(&mut self, start: usize, end: usize, free: bool) {
        if end - start == 1 {
            self.free.assign_one(start, free);
        } else {
            self.free.assign(start, end, free);
        }
        if free {
            self.short.freed(&self.free, start, end);
        } else {
            self.short.taken(&self.free, end);
        }
        self.runs.changed(&self.free, start, end, free);
    }

    /// Checks a block handed back and returns its first block and run length; with
    /// `checked`, panics naming the problem.
    #[inline]
    #[track_caller]
    fn live_run(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) -> (usize, usize) {
        let count = self.blocks_for(layout.size());
        debug_assert!(
            cfg!(feature = "checked") || self.owns(ptr),
            "heapkit-bitmap-arena: {operation} of a foreign pointer"
        );
        #[cfg(feature = "checked")]
        {
            let fail = |reason| {
                heapkit_core::invalid_use("heapkit-bitmap-arena", operation, ptr.as_ptr(), reason)
            };
            if !self.owns(ptr) {
                fail("pointer is outside this arena");
            }
            let offset = ptr.as_ptr().addr() - self.base.as_ptr().addr();
            if offset % self.block_size() != 0 {
                fail("pointer is not the start of a block");
            }
            let index = offset >> self.block_shift;
            if !self.starts.get(index) {
                if self.free.get(index) {
                    fail("block is already free");
                }
                fail("pointer is inside an allocation, not at its start");
            }
            // Saturating: on 32-bit targets a layout far too large could wrap the sum.
            let end = index.saturating_add(count);
            let overruns = end > self.blocks
                || !self.free.all_clear(index, end)
                || self
                    .starts
                    .next_set(index + 1)
                    .is_some_and(|next| next < end);
            if overruns {
                fail("layout is larger than the allocation");
            }
            let ends_here = end == self.blocks || self.free.get(end) || self.starts.get(end);
            if !ends_here {
                fail("layout is smaller than the allocation");
            }
        }
        (self.index_of(ptr), count)
    }

    /// Marks `start..start + count` as one allocation.
    #[inline]
    fn take(&mut self, start: usize, count: usize) {
        self.mark(start, start + count, false);
        self.free_blocks -= count;
        #[cfg(feature = "checked")]
        self.starts.assign(start, start + 1, true);
    }
}

/// The largest `n <= most` with `fits(n)`, for a `fits` true up to some count and false
/// after it; 0 if none.
fn largest_fitting(most: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, most);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(middle) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    low
}

/// `log2(block_size)`, or an error when it is not a power of two.
fn shift_of(block_size: usize) -> Result<u32, ConfigError> {
    if block_size.is_power_of_two() {
        Ok(block_size.trailing_zeros())
    } else {
        Err(ConfigError::NotPowerOfTwo {
            what: "block size",
            value: block_size,
        })
    }
}

// SAFETY: a run is handed out only when every block in it is free in the bitmap, and is
// marked used before returning; runs lie inside the region and start at addresses aligned
// as requested (`find_run`).
unsafe impl Backend for BitmapArena {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let count = self.blocks_for(layout.size());
        if count > self.free_blocks {
            return Err(AllocError);
        }
        let start = self.find_run(count, layout.align()).ok_or(AllocError)?;
        self.take(start, count);
        Ok(NonNull::slice_from_raw_parts(
            self.block(start),
            count << self.block_shift,
        ))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let (start, count) = self.live_run(ptr, layout, "deallocate");
        self.mark(start, start + count, true);
        self.free_blocks += count;
        #[cfg(feature = "checked")]
        self.starts.assign(start, start + 1, false);
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (start, count) = self.live_run(ptr, old_layout, "grow");
        let wanted = self.blocks_for(new_layout.size());
        if wanted > count {
            let end = start.checked_add(wanted).filter(|end| *end <= self.blocks);
            let end = end.ok_or(AllocError)?;
            if !self.free.all_set(start + count, end) {
                return Err(AllocError);
            }
            self.mark(start + count, end, false);
            self.free_blocks -= wanted - count;
        }
        let blocks = wanted.max(count);
        Ok(NonNull::slice_from_raw_parts(
            ptr,
            blocks << self.block_shift,
        ))
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (start, count) = self.live_run(ptr, old_layout, "shrink");
        let kept = self.blocks_for(new_layout.size()).min(count);
        if kept < count {
            self.mark(start + kept, start + count, true);
        }
        self.free_blocks += count - kept;
        Ok(NonNull::slice_from_raw_parts(ptr, kept << self.block_shift))
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        offset < self.blocks << self.block_shift
    }

    /// O(1), except `largest_free` when the run tree cannot tell it (a leaf changed since
    /// the last tree search, or no free run of 63 blocks): then a walk over the bitmap's
    /// words, O(n / 64).
    fn stats(&self) -> Stats {
        let block = self.block_size();
        Stats {
            capacity: self.capacity,
            in_use: (self.blocks - self.free_blocks) * block,
            free: self.free_blocks * block,
            largest_free: self
                .runs
                .longest()
                .unwrap_or_else(|| self.free.longest_run())
                * block,
            metadata: self.capacity - self.blocks * block,
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        let corrupt =
            |what| Corruption::new("heapkit-bitmap-arena", self.base.as_ptr().addr(), what);
        let free = self.free.check().map_err(|(level, word)| {
            corrupt("free bitmap's summary disagrees with its words").expected(level, word)
        })?;
        self.runs.check(&self.free).map_err(|fault| match fault {
            Fault::Node { level, index } => {
                corrupt("free bitmap's run tree disagrees with its words").expected(level, index)
            }
            Fault::Tail { expected, found } => {
                corrupt("free bitmap's run tree has the wrong free tail").expected(expected, found)
            }
            Fault::Pending { expected, found } => {
                corrupt("free bitmap's run tree miscounts its pending leaves")
                    .expected(expected, found)
            }
        })?;
        self.short.check(&self.free).map_err(|wrong| {
            corrupt("free bitmap's short-run index disagrees with its words")
                .expected(wrong.level, wrong.index)
        })?;
        if free != self.free_blocks {
            return Err(corrupt("free block count differs from the bitmap")
                .expected(free, self.free_blocks));
        }
        #[cfg(feature = "checked")]
        {
            self.starts.check().map_err(|(level, word)| {
                corrupt("start bitmap's summary disagrees with its words").expected(level, word)
            })?;
            let words = self.blocks.div_ceil(64);
            if let Some(word) = (0..words).find(|&w| self.starts.leaf(w) & self.free.leaf(w) != 0) {
                let bit = (self.starts.leaf(word) & self.free.leaf(word)).trailing_zeros() as usize;
                return Err(Corruption::new(
                    "heapkit-bitmap-arena",
                    self.base.as_ptr().addr() + ((word * 64 + bit) << self.block_shift),
                    "an allocation starts at a free block",
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for BitmapArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitmapArena")
            .field("base", &self.base)
            .field("block_size", &self.block_size())
            .field("blocks", &self.blocks)
            .field("free_blocks", &self.free_blocks)
            .finish_non_exhaustive()
    }
}
