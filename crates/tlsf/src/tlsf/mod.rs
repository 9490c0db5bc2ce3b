//! [`Tlsf`]: segregated free lists indexed by two bitmaps, boundary tags for coalescing.

use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;

use heapkit_core::region::{RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::class::{block_size_for, Classes, GRANULE, MIN_BLOCK, WORD};

mod block;
mod check;
#[cfg(feature = "checked")]
mod checked;
mod lists;
mod regions;
#[cfg(test)]
mod tests;

use block::Block;
use regions::Region;

/// Header bit: this block is free (on a list).
const FREE: usize = 1;
/// Header bit: the block physically before this one is free, so the word just before this
/// header is that block's footer (its size).
const PREV_FREE: usize = 2;
/// Header bit: this free block is the top block (kept off the lists). A bit below the
/// granule, like the two above, so every size leaves it clear.
const TOP: usize = 4;
const FLAGS: usize = FREE | PREV_FREE | TOP;

const CRATE_NAME: &str = "heapkit-tlsf";
#[cfg(feature = "checked")]
const CRATE: &str = CRATE_NAME;

/// First-level classes by default: blocks up to 64 GiB on 64-bit targets, 2 GiB (half the
/// address space) on 32-bit ones.
pub const DEFAULT_FL: usize = if usize::BITS >= 64 { 28 } else { 24 };
/// Second-level lists per first-level class by default.
pub const DEFAULT_SL: usize = 32;

/// A two-level segregated fit allocator (Masmano, Ripoll, Crespo and Real, 2004): O(1)
/// allocate, free and in-place resize, with no loop whose length depends on what the
/// heap holds — the allocator for real-time code, where the worst case is what counts.
///
/// ```text
///  fl_map   (bit f: some list of class f is non-empty)
///  ┌───┬───┬───┬───┬───┬ ─ ┬───┐
///  │ 0 │ 1 │ 0 │ 1 │ 0 │   │ 0 │   class 0: below SL granules, a list per size;
///  └───┴─┬─┴───┴─┬─┴───┴ ─ ┴───┘   class f ≥ 1: SL·2^(f-1) to SL·2^f granules
///        │       │
///        ▼       ▼  sl_maps[f] (bit s: list (f, s) is non-empty)
///  ┌───┬───┬───┬───┐
///  │ 0 │ 1 │ 0 │ 0 │  ...       class f's SL lists, each 2^(f-1) granules wide
///  └───┴─┬─┴───┴───┘
///        ▼ heads[f][s]
///      ┌─────────────┐     ┌─────────────┐
///      │ free block  │ ──► │ free block  │ ──► null      doubly linked, LIFO
///      │ size|FREE   │ ◄── │ size|FREE   │
///      └─────────────┘     └─────────────┘
///
///  a region:
///  ┌────────┬──────────────────┬──────────────────────┬───────────────┬─────────┐
///  │ Region │ header │ payload │ header │ links  ... │ header │ ...  │sentinel │
///  │ header │ size   │ (used)  │size|FREE│  footer=size│ PREV_FREE   │ size 0  │
///  └────────┴──────────────────┴──────────────────────┴───────────────┴─────────┘
///            allocated block      free block            next block knows the one
///                                                       before it is free
/// ```
///
/// A request is rounded up to the next list boundary, `first_list_fitting` finds the first
/// non-empty list at or above it with two find-first-set instructions on the maps, and the
/// head of that list is taken: one block examined, whatever the heap holds.
///
/// **Lists.** Free blocks sit on doubly linked lists, one per size class: `FL` first-level
/// classes split sizes at powers of two, and each splits into `SL` second-level lists of
/// equal width. A bitmap of non-empty first-level classes and one bitmap per class of
/// non-empty lists find a usable list with two find-first-set instructions.
///
/// **Good fit.** A request is rounded up to the next list boundary before the search, so
/// the first block of the list found always fits: allocation examines exactly one block.
/// The price is that a block between the request and the boundary is not used for it;
/// internal waste is below one list width, `1/SL` of the block (3.1% at `SL = 32`).
/// Sizes below `SL` granules have exact lists.
///
/// **Blocks.** Sizes are multiples of [`GRANULE`] (two words: 16 bytes on 64-bit
/// targets); the smallest block is [`MIN_BLOCK`] (four words). An allocated block carries
/// one word of header (its size and flag bits), so a request of `n` bytes uses
/// `n + 8` bytes rounded up to 16 (on 64-bit). A free block also stores two links and a
/// footer (its size in its last word), which is what lets `deallocate` merge with the
/// block before it in O(1) — the boundary tag. A freed block merges with both physical
/// neighbours at once, so no two free blocks are ever adjacent.
///
/// **Alignment.** Payloads are granule-aligned. A larger alignment `a` searches for
/// `size + a + MIN_BLOCK - GRANULE` bytes, places the block at the first aligned address
/// that leaves either nothing or a whole free block in front, and returns that leading gap
/// to the lists. No search per alignment.
///
/// **Regions.** [`add_region`](Self::add_region) at any time. Each region starts with a
/// small header and ends with a sentinel; blocks never merge across regions. A region
/// larger than the largest class (`GRANULE * SL << (FL - 1)` bytes: 64 GiB for the
/// default `Tlsf<28, 32>` on 64-bit targets, 2 GiB for `Tlsf<24, 32>` on 32-bit ones) is
/// managed as several.
///
/// **Parameters.** `FL` from 1 to 32, `SL` a power of two from 1 to 32, and together they
/// must cover at least 1 KiB; other values fail the build. The list heads take
/// `FL * SL` words inside the `Tlsf` value (7 KiB for the default).
///
/// **Top block.** One free block, the one a region starts as, is kept off the lists (as
/// dlmalloc keeps its top chunk): a request no list can serve is cut from its front, and
/// frees next to it merge into it without a list operation. A program that allocates
/// fresh memory as it goes is served from the top block: a bump of its header rather than
/// a bitmap search, a list head and a relink (the lab's json trace: 95.0 → 87.5
/// instructions per call, 5.7 → 5.3 ns). A bit in its header says which it is, so a free
/// beside it asks its neighbour's header, not the allocator. Adding a region makes the new
/// region the top block and puts the old one on its list. The top block always ends its
/// region: it starts as the region's one block, gives from its front, and only the block
/// before it merges into it.
///
/// **Statistics.** [`stats`](Backend::stats) walks every block of every region: O(blocks).
/// The allocator keeps no running count of bytes in use or free, because a counter that
/// every call reads, changes and writes back makes each call wait for the one before it:
/// on the lab's small-block churn the two counters it used to keep cost 15% of a call.
/// Allocating, freeing and resizing stay O(1).
pub struct Tlsf<const FL: usize = { DEFAULT_FL }, const SL: usize = { DEFAULT_SL }> {
    /// Bit `f`: some list of first-level class `f` is non-empty.
    fl_map: u32,
    /// Per class `f`, bit `s`: list `(f, s)` is non-empty.
    sl_maps: [u32; FL],
    heads: [[Block; SL]; FL],
    /// The top block: a free block kept off the lists, from which requests that no list
    /// can serve are cut; `Block::NONE` when there is none.
    top: Block,
    regions: RegionList<Region>,
    capacity: usize,
    /// Where the back link of "no block" is written, so that linking and unlinking need
    /// no branch on whether a neighbour exists. Never read.
    spare_link: Block,
    /// Free blocks examined by `allocate`: tests check it stays at one per call.
    #[cfg(test)]
    pub(crate) probes: usize,
}

// SAFETY: the allocator exclusively manages its regions; nothing is tied to a thread.
unsafe impl<const FL: usize, const SL: usize> Send for Tlsf<FL, SL> {}

// SAFETY: a `Tlsf` built by `add_region` manages only that region (and its own value).
unsafe impl<const FL: usize, const SL: usize> heapkit_core::FromRegion for Tlsf<FL, SL> {
    type Params = ();

    unsafe fn from_region(start: NonNull<u8>, len: usize, (): ()) -> Result<Self, ConfigError> {
        let mut tlsf = Self::with_classes();
        // SAFETY: forwarded caller guarantees.
        unsafe { tlsf.add_region(start, len)? };
        Ok(tlsf)
    }
}

impl<const FL: usize, const SL: usize> Default for Tlsf<FL, SL> {
    fn default() -> Self {
        Self::with_classes()
    }
}

/// The constructors of the default `Tlsf<28, 32>`, defined on that type alone so that
/// `Tlsf::new()` needs no annotation (a const generic's default is not used for
/// inference); other parameters go through [`with_classes`](Tlsf::with_classes).
impl Tlsf {
    /// An allocator with no memory yet: give it some with
    /// [`add_region`](Self::add_region). `const`, so it can initialise a `static`.
    ///
    /// ```
    /// use heapkit_core::Local;
    /// use heapkit_tlsf::Tlsf;
    ///
    /// let heap = Local::new(Tlsf::new()); // no annotation needed
    /// assert_eq!(heap.stats().capacity, 0);
    /// ```
    pub const fn new() -> Self {
        Self::with_classes()
    }

    /// An allocator over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_region(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        Self::with_classes_over(region)
    }
}

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The largest block, header included. The largest request that can succeed is a
    /// little less: see [`max_request`](Self::max_request).
    pub const MAX_BLOCK: usize = Classes::<FL, SL>::MAX_BLOCK;

    /// An allocator of any parameters with no memory yet: `Tlsf::<10, 8>::with_classes()`.
    /// (The default parameters have [`Tlsf::new`].)
    pub const fn with_classes() -> Self {
        let () = Classes::<FL, SL>::VALID;
        Self {
            fl_map: 0,
            sl_maps: [0; FL],
            heads: [[Block::NONE; SL]; FL],
            top: Block::NONE,
            regions: RegionList::new(),
            capacity: 0,
            spare_link: Block::NONE,
            #[cfg(test)]
            probes: 0,
        }
    }

    /// An allocator of any parameters over one `'static` region (the default parameters
    /// have [`Tlsf::with_region`]).
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_classes_over(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        let mut tlsf = Self::with_classes();
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { tlsf.add_region(start, len)? };
        Ok(tlsf)
    }

    /// The largest request size that can succeed (with granule alignment), given a region
    /// large enough.
    pub const fn max_request() -> usize {
        let (fl, sl) = (FL - 1, SL - 1);
        Classes::<FL, SL>::list_floor(fl, sl) - WORD
    }

    /// Bytes a fresh region needs so that a request for `layout` surely succeeds in it, or
    /// `None` if no region can serve it. Growing allocators size their chunks with this.
    pub fn region_len_for(layout: Layout) -> Option<usize> {
        let search = Self::search_size(layout)?;
        let (fl, sl) = Classes::<FL, SL>::first_list_fitting(search)?;
        let area = Classes::<FL, SL>::list_floor(fl, sl);
        // Header and its alignment, the first block's offset, the sentinel and the tail's
        // rounding; under `checked`, one bit per granule of the whole region (bitmap
        // included, hence 127 rather than 128 bytes per byte of map) plus rounding.
        let fixed = size_of::<Region>() + align_of::<Region>() + 2 * GRANULE + 2 * WORD;
        let bitmap = if cfg!(feature = "checked") {
            area / (GRANULE * 8 - 1) + 4 * WORD
        } else {
            0
        };
        area.checked_add(fixed + bitmap)
    }

    /// The block size to search for: `layout`'s block, plus room to align it.
    #[inline(always)]
    fn search_size(layout: Layout) -> Option<usize> {
        let size = block_size_for(layout.size());
        if layout.align() <= GRANULE {
            Some(size)
        } else {
            size.checked_add(layout.align() + MIN_BLOCK - GRANULE)
        }
    }

    /// The first non-empty list at or after `(fl, sl)`: two find-first-set operations.
    #[inline(always)]
    fn find_list(&self, fl: usize, sl: usize) -> Option<(usize, usize)> {
        // SAFETY: `first_list_fitting` returns `fl < FL`; the second read uses a bit set
        // in `fl_map`, which only ever holds bits below `FL`.
        unsafe {
            let in_class = self.sl_map(fl) & (u32::MAX << sl);
            if in_class != 0 {
                return Some((fl, in_class.trailing_zeros() as usize));
            }
            let above = self.fl_map & u32::MAX.checked_shl(fl as u32 + 1).unwrap_or(0);
            if above == 0 {
                return None;
            }
            let fl = above.trailing_zeros() as usize;
            Some((fl, self.sl_map(fl).trailing_zeros() as usize))
        }
    }

    /// Cuts `block` (off the lists, `available` bytes) down to `size` bytes, returning the
    /// tail to the lists when it can hold a block, and marks it allocated. Returns the
    /// block's final size.
    ///
    /// # Safety
    ///
    /// `block` is a block of `available >= size` bytes that is on no list, whose header
    /// has the right `PREV_FREE` bit, and whose next block's `PREV_FREE` bit says free.
    #[inline(always)]
    unsafe fn carve(&mut self, block: Block, available: usize, size: usize) -> usize {
        // SAFETY: per the caller; the tail (when split) is free memory of the region,
        // followed by the old next block's header, which already says "free before me".
        unsafe {
            let rest = available - size;
            if rest >= MIN_BLOCK {
                block.set_used(size);
                self.link_free(block.add(size), rest);
                size
            } else {
                block.set_used(available);
                block.add(available).set_prev_free(false);
                available
            }
        }
    }

    /// Cuts `size` bytes from the front of the top block, when it has them: what no list
    /// can serve. The rest stays the top block, or goes with the allocation when too small
    /// to stand alone.
    #[inline(always)]
    fn allocate_from_top(&mut self, size: usize) -> Result<NonNull<[u8]>, AllocError> {
        let top = self.top;
        if top.is_none() {
            return Err(AllocError);
        }
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: the top block is a free block of a region, whose predecessor is in use
        // (free blocks never touch), so the allocated header carries no flags.
        unsafe {
            let available = top.size();
            if available < size {
                return Err(AllocError);
            }
            let size = self.cut_top(top, available, size);
            top.set_header(size);
            Ok(self.allocated(top, size))
        }
    }

    /// Makes `block..block + available` (off the lists, starting the top block or at an
    /// aligned place inside it) give its first `size` bytes to an allocation: the rest is
    /// the new top block, or joins the allocation when too small to stand alone (and
    /// there is no top block). Returns the allocation's size; its header is the caller's.
    ///
    /// # Safety
    ///
    /// `block..block + available` is free memory of a region ending where the top block
    /// ends, `available >= size`.
    #[inline(always)]
    unsafe fn cut_top(&mut self, block: Block, available: usize, size: usize) -> usize {
        // SAFETY: per the caller; the block after the top already says "free before me".
        unsafe {
            let rest = available - size;
            if rest >= MIN_BLOCK {
                let top = block.add(size);
                self.set_top(top, rest);
                size
            } else {
                self.top = Block::NONE;
                block.add(available).set_prev_free(false);
                available
            }
        }
    }

    /// Grows used block `block` (`size` bytes) to `needed` bytes over the free block `next`
    /// that follows it (`next_size` bytes, enough): what is left of `next` stays a free block
    /// in its place, or joins the block when too small to stand alone. Returns the block's
    /// new size. Out of line, so that `grow_in_place`'s quick answers (the block is large
    /// enough already; the next block is in use or too small), inlined into the resize
    /// around them, keep no registers for this path.
    ///
    /// # Safety
    ///
    /// `block` is in use and `next`, right after it, is free, with `size + next_size >=
    /// needed > size`.
    #[inline(never)]
    unsafe fn absorb_next(
        &mut self,
        block: Block,
        size: usize,
        next: Block,
        next_size: usize,
        needed: usize,
    ) -> usize {
        // SAFETY: per the caller; what is left of `next` stays a free block in its place, or
        // is absorbed and the block after it told so.
        unsafe {
            if next == self.top {
                let grown = self.cut_top(block.add(size), next_size, needed - size) + size;
                block.set_used(grown);
                return grown;
            }
            let rest = size + next_size - needed;
            let grown = if rest >= MIN_BLOCK {
                self.replace_free(next, next_size, block.add(needed), rest);
                needed
            } else {
                self.unlink(next);
                next.add(next_size).set_prev_free(false);
                size + next_size
            };
            block.set_used(grown);
            grown
        }
    }

    /// Makes free memory `block..block + size` and the free block `next` right after it
    /// (header `next_header`) one free block: the top block if `next` was, else on the list
    /// of its size (keeping `next`'s place when that is `next`'s list).
    ///
    /// # Safety
    ///
    /// `block..block + size` is unused memory of the region, the block before it is in use,
    /// and `next` is a free block whose header is `next_header`.
    #[inline(always)]
    unsafe fn join_next(&mut self, block: Block, size: usize, next: Block, next_header: usize) {
        let next_size = next_header & !FLAGS;
        // SAFETY: per the caller; the joined block spans both, and the block after `next`
        // already says "free before me".
        unsafe {
            if next_header & TOP != 0 {
                self.set_top(block, size + next_size);
            } else {
                self.replace_free(next, next_size, block, size + next_size);
            }
        }
    }

    /// Shrinks used block `block` (`size` bytes) to `needed` bytes, handing the tail back:
    /// joined to the free block after it (the top block or a listed one) or, when that is
    /// in use, a free block of its own. Out of line, as [`absorb_next`](Self::absorb_next)
    /// is, so that a resize with nothing to do here keeps no registers for it.
    ///
    /// # Safety
    ///
    /// `block` is in use, `next_header` is the header after it, and the tail `size - needed`
    /// is at least `MIN_BLOCK`, or non-zero with a free block after it.
    #[inline(never)]
    unsafe fn give_back_tail(
        &mut self,
        block: Block,
        size: usize,
        needed: usize,
        next_header: usize,
    ) {
        // SAFETY: per the caller; the tail lies inside the block, and joins the next block
        // only when that one is free.
        unsafe {
            let tail = size - needed;
            let next = block.add(size);
            let freed = block.add(needed);
            if next_header & FREE != 0 {
                self.join_next(freed, tail, next, next_header);
            } else {
                self.insert(freed, tail);
            }
            block.set_used(needed);
        }
    }

    /// `allocate` for alignments above the granule: over-allocate, give back the gap.
    ///
    /// The good-fit search asks for `size + align` (plus room for a leading free block), so
    /// any block it finds fits whatever its address. When none is that large, the top block
    /// serves it if an aligned payload fits there, and otherwise one more block is
    /// examined, still O(1): the head of the largest non-empty list, taken if an aligned
    /// payload fits inside it. Without that second look, whether the last aligned
    /// block of a region could be served depended on the region's address (a slab heap
    /// packed 13 or 14 chunks into 16 chunks of memory, by address).
    #[inline(never)]
    fn allocate_aligned(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let size = block_size_for(layout.size());
        let align = layout.align();
        let good_fit = Self::search_size(layout)
            .and_then(Classes::<FL, SL>::first_list_fitting)
            .and_then(|(fl, sl)| self.find_list(fl, sl));
        let (fl, sl) = if let Some(list) = good_fit {
            list
        } else {
            if let Some(block) = self.allocate_aligned_from_top(size, align) {
                return Ok(block);
            }
            self.largest_list().ok_or(AllocError)?
        };
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: `find_list` and `largest_list` only name non-empty lists, whose head is a
        // free block with a valid header.
        let (mut block, mut available) = unsafe {
            let block = *self.head_at(fl * SL + sl);
            (block, block.size())
        };
        let gap = Self::aligned_gap(block, align);
        // A good-fit block always has room; the largest list's head may not.
        if good_fit.is_none()
            && gap
                .checked_add(size)
                .is_none_or(|needed| needed > available)
        {
            return Err(AllocError);
        }
        // SAFETY: `block` is the head of list `(fl, sl)`; the aligned gap and the tail are
        // carved inside it (checked or guaranteed by the search size), each either empty or
        // at least `MIN_BLOCK`.
        unsafe {
            self.unlink(block);
            if gap != 0 {
                let aligned = block.add(gap);
                aligned.set_header(PREV_FREE);
                self.link_free(block, gap);
                block = aligned;
                available -= gap;
            }
            let size = self.carve(block, available, size);
            Ok(self.allocated(block, size))
        }
    }

    /// `allocate_aligned` from the top block, when an aligned payload of `size` bytes fits
    /// in it: the gap in front goes to the lists, the rest stays the top block.
    fn allocate_aligned_from_top(&mut self, size: usize, align: usize) -> Option<NonNull<[u8]>> {
        let top = self.top;
        if top.is_none() {
            return None;
        }
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: the top block is a free block of a region, off the lists; the gap and the
        // allocation are carved inside it (checked), the gap either empty or a whole block.
        unsafe {
            let available = top.size();
            let gap = Self::aligned_gap(top, align);
            if gap
                .checked_add(size)
                .is_none_or(|needed| needed > available)
            {
                return None;
            }
            let mut block = top;
            if gap != 0 {
                block = top.add(gap);
                block.set_header(PREV_FREE);
                self.link_free(top, gap);
            }
            let size = self.cut_top(block, available - gap, size);
            block.set_used(size);
            Some(self.allocated(block, size))
        }
    }

    /// Bytes from `block` to the first block whose payload is aligned to `align` and that
    /// leaves either nothing or a whole free block in front. No address is rounded up, so
    /// nothing wraps near the top of the address space.
    #[inline(always)]
    fn aligned_gap(block: Block, align: usize) -> usize {
        let payload = block.payload().addr();
        let gap = payload.wrapping_neg() & (align - 1);
        if gap != 0 && gap < MIN_BLOCK {
            gap + align
        } else {
            gap
        }
    }

    /// The list holding the largest free blocks, if any block is free.
    #[inline(always)]
    fn largest_list(&self) -> Option<(usize, usize)> {
        if self.fl_map == 0 {
            return None;
        }
        let fl = self.fl_map.ilog2() as usize;
        // SAFETY: a bit of `fl_map` is a class below `FL` with a non-empty list.
        let sl = unsafe { self.sl_map(fl) }.ilog2() as usize;
        Some((fl, sl))
    }

    /// The payload of `block` (`size` bytes, header written), just carved for an
    /// allocation; with `checked`, its start is marked in the map of allocated starts.
    ///
    /// # Safety
    ///
    /// `block` was just carved for an allocation.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))]
    unsafe fn allocated(&mut self, block: Block, size: usize) -> NonNull<[u8]> {
        #[cfg(feature = "checked")]
        self.mark_start(block, true);
        // SAFETY: a block's payload follows its header inside the region: not null.
        let payload = unsafe { NonNull::new_unchecked(block.payload()) };
        NonNull::slice_from_raw_parts(payload, size - WORD)
    }

    /// Usable bytes of the blocks in use, of the free blocks, and of the largest free
    /// block, walked block by block over every region: O(blocks), as "Statistics" on
    /// [`Tlsf`] says why. A damaged header ends its region's walk.
    fn totals(&self) -> (usize, usize, usize) {
        let (mut in_use, mut free, mut largest) = (0, 0, 0);
        for region in self.regions.iter() {
            let (mut block, end) = (Block::at(region.first), Block::at(region.sentinel));
            while block != end {
                // SAFETY: blocks tile `first..sentinel`, each header a word-aligned slot
                // inside the region; `step` refuses a size that would leave the region or
                // the granule, and the walk stops there.
                let Ok((header, size)) = (unsafe { Self::step(block, end) }) else {
                    break;
                };
                if header & FREE != 0 {
                    free += size - WORD;
                    largest = largest.max(size - WORD);
                } else {
                    in_use += size - WORD;
                }
                // SAFETY: `size` stays inside the region, at most to its sentinel.
                block = unsafe { block.add(size) };
            }
        }
        (in_use, free, largest)
    }

    /// How many blocks sit on each list (walks every list).
    pub fn free_blocks_per_list(&self) -> [[usize; SL]; FL] {
        core::array::from_fn(|fl| {
            core::array::from_fn(|sl| {
                let mut count = 0;
                let mut block = self.heads[fl][sl];
                while !block.is_none() {
                    count += 1;
                    // SAFETY: blocks on a list are free blocks with valid links.
                    block = unsafe { block.next_in_list() };
                }
                count
            })
        })
    }
}

// SAFETY: blocks come off the free lists or the top block, which hold only free memory of
// our regions; a block is split or merged only with free neighbours, so live blocks never
// overlap; the payload starts granule-aligned, or aligned by the gap computed in
// `allocate`.
unsafe impl<const FL: usize, const SL: usize> Backend for Tlsf<FL, SL> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > GRANULE {
            return self.allocate_aligned(layout);
        }
        let size = block_size_for(layout.size());
        let (fl, sl) = Classes::<FL, SL>::first_list_fitting(size).ok_or(AllocError)?;
        let Some((fl, sl)) = self.find_list(fl, sl) else {
            return self.allocate_from_top(size);
        };
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: `find_list` only names non-empty lists, whose head is a free block of at
        // least `size` bytes (good fit). Its predecessor is in use (free blocks never
        // touch), so the allocated header carries no flags; a tail of `MIN_BLOCK` or more
        // goes back as a free block, whose successor already says "free before me".
        unsafe {
            let list = fl * SL + sl;
            let block = *self.head_at(list);
            let available = block.size();
            let rest = available - size;
            if rest >= MIN_BLOCK {
                let remainder = block.add(size);
                let rest_list = Classes::<FL, SL>::list_index(rest);
                if rest_list == list {
                    self.move_head(list, block, remainder, rest);
                } else {
                    self.pop_head(list);
                    self.link_free_in(remainder, rest, rest_list);
                }
                block.set_header(size);
                Ok(self.allocated(block, size))
            } else {
                self.pop_head(list);
                block.set_header(available);
                block.add(available).set_prev_free(false);
                Ok(self.allocated(block, available))
            }
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        #[cfg(feature = "checked")]
        {
            self.validate(ptr, layout, "deallocate");
            self.mark_start(Block::of_payload(ptr.as_ptr()), false);
        }
        // The next block's header, whose address waits on this block's header, is 0-40
        // bytes past `payload + layout.size()` (0-15 when the block was cut to the request):
        // start loading that line now, so that in a heap larger than the cache the two misses
        // overlap (7-13% less time per call at 10^6 random live blocks: the README's "Heaps
        // larger than the cache").
        heapkit_core::hint::prefetch_read(ptr.as_ptr().wrapping_add(layout.size()));
        // SAFETY: per the caller, `ptr` is a live block of ours, so its header precedes
        // it; a following header always exists (block or sentinel), and `PREV_FREE` says
        // when the word before the header is a free block's footer. A merged block keeps
        // the list node (and the place in its list) of a neighbour whose list it stays in;
        // a neighbour that leaves its list is unlinked through its back link. (Always
        // unlinking and linking anew takes fewer instructions, but moves merged blocks to
        // the front of their lists: 15% slower on the lab's page-sized blocks.)
        unsafe {
            let block = Block::of_payload(ptr.as_ptr());
            let header = block.header();
            let size = header & !FLAGS;
            let next = block.add(size);
            let next_header = next.header();
            if header & PREV_FREE != 0 {
                let prev_size = block.footer_before();
                let prev = block.sub(prev_size);
                let mut merged = prev_size + size;
                if next_header & FREE != 0 {
                    merged += next_header & !FLAGS;
                    if next_header & TOP != 0 {
                        // The merged block is the top block now, off the lists.
                        self.unlink(prev);
                        self.set_top(prev, merged);
                        return;
                    }
                    self.unlink(next);
                } else {
                    next.set_header(next_header | PREV_FREE);
                }
                // (Never the top block: it ends its region, so no block follows it.)
                debug_assert_ne!(prev, self.top);
                self.resize_free(prev, prev_size, merged);
            } else if next_header & FREE != 0 {
                self.join_next(block, size, next, next_header);
            } else {
                next.set_header(next_header | PREV_FREE);
                self.link_free(block, size);
            }
        }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        #[cfg(feature = "checked")]
        self.validate(ptr, old_layout, "grow");
        let _ = old_layout;
        let needed = block_size_for(new_layout.size());
        // SAFETY: as in `deallocate`; the next block is absorbed only when free and large
        // enough, and what is left of it stays a free block in its place.
        unsafe {
            let block = Block::of_payload(ptr.as_ptr());
            let size = block.size();
            if needed <= size {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            let next = block.add(size);
            let next_header = next.header();
            let next_size = next_header & !FLAGS;
            if next_header & FREE == 0 || size + next_size < needed {
                return Err(AllocError);
            }
            let grown = self.absorb_next(block, size, next, next_size, needed);
            Ok(NonNull::slice_from_raw_parts(ptr, grown - WORD))
        }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        #[cfg(feature = "checked")]
        self.validate(ptr, old_layout, "shrink");
        let _ = old_layout;
        let needed = block_size_for(new_layout.size());
        // SAFETY: as in `deallocate`: the block's header, and the header after it (a block
        // or the sentinel).
        unsafe {
            let block = Block::of_payload(ptr.as_ptr());
            let size = block.size();
            let tail = size - needed;
            let next_header = block.add(size).header();
            if tail < MIN_BLOCK && (tail == 0 || next_header & FREE == 0) {
                // Nothing to give back: no tail at all, or one too small to stand alone
                // with no free block after it to join.
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            self.give_back_tail(block, size, needed, next_header);
            Ok(NonNull::slice_from_raw_parts(ptr, needed - WORD))
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        self.check_heap()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.regions.containing(ptr.as_ptr().addr()).is_some()
    }

    /// Walks every block: O(blocks) (see "Statistics" on [`Tlsf`]).
    fn stats(&self) -> Stats {
        let (in_use, free, largest_free) = self.totals();
        Stats {
            capacity: self.capacity,
            in_use,
            free,
            largest_free,
            metadata: self.capacity - in_use - free,
        }
    }
}

impl<const FL: usize, const SL: usize> fmt::Debug for Tlsf<FL, SL> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tlsf")
            .field("first_level", &FL)
            .field("second_level", &SL)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
