//! [`Tlsf`]: segregated free lists indexed by two bitmaps, boundary tags for coalescing.

use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use heapkit_core::region::{RegionHeader, RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::class::{block_size_for, Classes, GRANULE, MIN_BLOCK, WORD};

/// Header bit: this block is free (on a list).
const FREE: usize = 1;
/// Header bit: the block physically before this one is free, so the word just before this
/// header is that block's footer (its size).
const PREV_FREE: usize = 2;
const FLAGS: usize = FREE | PREV_FREE;

const CRATE_NAME: &str = "heapkit-tlsf";
#[cfg(feature = "checked")]
const CRATE: &str = CRATE_NAME;

// A block is addressed by its header word; the payload starts one word later. Free blocks
// also hold two list links after the header and their size in their last word (the
// footer). Block addresses are `WORD` past a granule boundary, so payloads are
// granule-aligned. Every access to these words goes through the helpers below: block
// addresses are word-aligned by construction, which is why they may cast `*mut u8`.

/// The word `index` words past `block`.
///
/// # Safety
/// `block` is a block header inside a region and the word lies in the same region.
#[inline(always)]
#[allow(clippy::cast_ptr_alignment)]
unsafe fn word(block: *mut u8, index: usize) -> *mut usize {
    // SAFETY: per the caller, in bounds of the region; word-aligned since `block` is.
    unsafe { block.add(index * WORD).cast::<usize>() }
}

/// # Safety
/// `block` is a block header inside a region.
#[inline(always)]
unsafe fn header(block: *mut u8) -> usize {
    // SAFETY: per the caller.
    unsafe { word(block, 0).read() }
}

/// # Safety
/// As for [`header`].
#[inline(always)]
unsafe fn set_header(block: *mut u8, value: usize) {
    // SAFETY: per the caller.
    unsafe { word(block, 0).write(value) }
}

/// The footer of the block that ends where `block` starts: its size.
///
/// # Safety
/// The block before `block` is free (`block`'s `PREV_FREE` bit).
#[inline(always)]
unsafe fn footer_before(block: *mut u8) -> usize {
    // SAFETY: per the caller, the word before the header is the free block's footer.
    unsafe { word(block.sub(WORD), 0).read() }
}

/// # Safety
/// `block` is a block header inside a region and its link words are ours.
#[inline(always)]
unsafe fn link(block: *mut u8, which: usize) -> *mut u8 {
    // SAFETY: per the caller.
    unsafe { word(block, which).cast::<*mut u8>().read() }
}

/// # Safety
/// As for [`link`].
#[inline(always)]
unsafe fn set_link(block: *mut u8, which: usize, to: *mut u8) {
    // SAFETY: per the caller.
    unsafe { word(block, which).cast::<*mut u8>().write(to) }
}

const NEXT: usize = 1;
const PREV: usize = 2;

/// Bookkeeping at the start of each region.
struct Region {
    next: *mut Region,
    /// The memory given, header included.
    span: Span,
    /// The first block's header, and the end sentinel's: a zero-size block marked in use,
    /// so no block ever merges past the region's end.
    first: *mut u8,
    sentinel: *mut u8,
    /// One bit per granule from `first`: an allocated block's header starts there.
    #[cfg(feature = "checked")]
    starts: *mut usize,
}

// SAFETY: `span` is the memory given and `next` the link written at `install`.
unsafe impl RegionHeader for Region {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

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
/// one word of header (its size and two flag bits), so a request of `n` bytes uses
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
pub struct Tlsf<const FL: usize = { DEFAULT_FL }, const SL: usize = { DEFAULT_SL }> {
    /// Bit `f`: some list of first-level class `f` is non-empty.
    fl_map: u32,
    /// Per class `f`, bit `s`: list `(f, s)` is non-empty.
    sl_maps: [u32; FL],
    heads: [[*mut u8; SL]; FL],
    regions: RegionList<Region>,
    capacity: usize,
    in_use: usize,
    /// Usable bytes of the free blocks (their sizes less one header each).
    free: usize,
    /// Free blocks examined by `allocate`: tests check it stays at one per call.
    #[cfg(test)]
    pub(crate) probes: usize,
}

// SAFETY: the allocator exclusively manages its regions; nothing is tied to a thread.
unsafe impl<const FL: usize, const SL: usize> Send for Tlsf<FL, SL> {}

impl<const FL: usize, const SL: usize> Default for Tlsf<FL, SL> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The largest block, header included. The largest request that can succeed is a
    /// little less: see [`max_request`](Self::max_request).
    pub const MAX_BLOCK: usize = Classes::<FL, SL>::MAX_BLOCK;

    /// An allocator with no memory yet: give it some with
    /// [`add_region`](Self::add_region). `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        let () = Classes::<FL, SL>::VALID;
        Self {
            fl_map: 0,
            sl_maps: [0; FL],
            heads: [[ptr::null_mut(); SL]; FL],
            regions: RegionList::new(),
            capacity: 0,
            in_use: 0,
            free: 0,
            #[cfg(test)]
            probes: 0,
        }
    }

    /// An allocator over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_region(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        let mut tlsf = Self::new();
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

    /// Adds `len` bytes at `start` to the allocator. The region can start at any address;
    /// it needs room for a header of a few words, a sentinel word and one block
    /// ([`MIN_BLOCK`]).
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the allocator or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region reaches past the address space, overlaps one already
    /// added, or is too small; the allocator is then unchanged.
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        // A region past the largest block becomes several, each ending in its sentinel.
        let mut plan = Self::plan(span)?;
        let mut used = 0;
        loop {
            // SAFETY: the plan lies in the caller's region, which is ours from now on; its
            // offsets are at most the rest's length (`plan`), so the pointers stay inside.
            unsafe { self.install(start.as_ptr().add(used), &plan) };
            used += plan.span.len();
            let Some(rest) = span.skip(used).filter(|rest| !rest.is_empty()) else {
                return Ok(());
            };
            match Self::plan(rest) {
                Ok(next_plan) => plan = next_plan,
                // A tail too short for a block stays unused.
                Err(_) => return Ok(()),
            }
        }
    }

    /// Where a region's header, bitmap, blocks and sentinel go within `span`, as offsets
    /// from its start, each at most its length (so adding one to the start cannot wrap);
    /// the region takes at most the bytes one largest block needs.
    fn plan(span: Span) -> Result<RegionPlan, ConfigError> {
        let too_small = |needed: usize| ConfigError::RegionTooSmall {
            needed,
            given: span.len(),
        };
        // Sizes of the bookkeeping before the first block, excluding alignment padding:
        // the smallest region that could work, for the error message.
        #[allow(unused_mut)]
        let mut meta = size_of::<Region>();
        #[cfg(feature = "checked")]
        {
            let granules = span.len().min(Self::MAX_BLOCK) / GRANULE + 1;
            meta += granules.div_ceil(usize::BITS as usize) * WORD;
        }
        let least = meta + MIN_BLOCK + 2 * WORD;
        let header_at = span
            .align_up(0, align_of::<Region>())
            .ok_or(too_small(least))?;
        #[cfg(feature = "checked")]
        let starts_at = header_at + size_of::<Region>();
        // The first block's payload (one word past its header) is granule-aligned.
        let first = span
            .align_up(header_at + meta + WORD, GRANULE)
            .map(|payload| payload - WORD)
            .ok_or(too_small(least))?;
        // The sentinel is the last word-aligned header slot whose block boundary is a
        // granule past `first`'s: blocks are whole granules.
        let needed = first + MIN_BLOCK + WORD;
        if span.len() < needed {
            return Err(too_small(needed));
        }
        let last_sentinel = first + (span.len() - WORD - first) / GRANULE * GRANULE;
        // Lengths, not addresses, are compared: `first + MAX_BLOCK` may pass the top of
        // the address space for a region near it.
        let sentinel = if last_sentinel - first > Self::MAX_BLOCK {
            first + Self::MAX_BLOCK
        } else {
            last_sentinel
        };
        let len = if sentinel == last_sentinel {
            span.len()
        } else {
            sentinel + WORD
        };
        Ok(RegionPlan {
            span: span.truncate(len),
            header: header_at,
            first,
            sentinel,
            #[cfg(feature = "checked")]
            starts: starts_at,
        })
    }

    /// Writes a planned region's header and sentinel and frees its one block.
    ///
    /// # Safety
    ///
    /// `plan.span` is valid, unused and ours for good, and starts at `base`.
    #[allow(clippy::cast_ptr_alignment)] // `plan` aligned the header and the bitmap
    unsafe fn install(&mut self, base: *mut u8, plan: &RegionPlan) {
        // SAFETY: every offset in the plan is at most its span's length: inside the memory.
        let (header, first, sentinel) = unsafe {
            (
                base.add(plan.header).cast::<Region>(),
                base.add(plan.first),
                base.add(plan.sentinel),
            )
        };
        #[cfg(feature = "checked")]
        // SAFETY: as above.
        let starts = unsafe { base.add(plan.starts).cast::<usize>() };
        let region = Region {
            next: self.regions.head(),
            span: plan.span,
            first,
            sentinel,
            #[cfg(feature = "checked")]
            starts,
        };
        // SAFETY: per the caller; `plan` aligned the header and bitmap and placed the
        // first block and sentinel inside the region, `MIN_BLOCK` or more apart.
        unsafe {
            header.write(region);
            #[cfg(feature = "checked")]
            starts.write_bytes(0, (plan.first - plan.starts) / WORD);
            set_header(sentinel, 0);
            self.insert(first, plan.sentinel - plan.first);
        }
        // SAFETY: the header was just written inside the region, with `next` the old head.
        unsafe { self.regions.push(header) };
        self.capacity += plan.span.len();
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

    /// The head of list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// `fl < FL` and `sl < SL`: indices from `list_of` of a block size (blocks never
    /// exceed `MAX_BLOCK`) or from `find_list`.
    #[inline(always)]
    unsafe fn head(&mut self, fl: usize, sl: usize) -> &mut *mut u8 {
        debug_assert!(fl < FL && sl < SL);
        // SAFETY: in bounds, per the caller.
        unsafe { self.heads.get_unchecked_mut(fl).get_unchecked_mut(sl) }
    }

    /// The second-level bitmap of class `fl`.
    ///
    /// # Safety
    ///
    /// `fl < FL`, as for [`head`](Self::head).
    #[inline(always)]
    unsafe fn sl_map(&self, fl: usize) -> u32 {
        debug_assert!(fl < FL);
        // SAFETY: in bounds, per the caller.
        unsafe { *self.sl_maps.get_unchecked(fl) }
    }

    /// # Safety
    ///
    /// As for [`sl_map`](Self::sl_map).
    #[inline(always)]
    unsafe fn sl_map_mut(&mut self, fl: usize) -> &mut u32 {
        debug_assert!(fl < FL);
        // SAFETY: in bounds, per the caller.
        unsafe { self.sl_maps.get_unchecked_mut(fl) }
    }

    /// Puts a block on its list with its free header and footer. The next block's
    /// `PREV_FREE` bit is the caller's to set (often it already is).
    ///
    /// # Safety
    ///
    /// `block..block + size` is unused memory of one region, of a valid block size, and
    /// the block before it is in use (or it starts the region).
    #[inline(always)]
    unsafe fn link_free(&mut self, block: *mut u8, size: usize) {
        // SAFETY: per the caller.
        unsafe { self.link_free_in(block, size, Classes::<FL, SL>::list_of(size)) }
    }

    /// [`link_free`](Self::link_free) with the block's list already known.
    ///
    /// # Safety
    ///
    /// As for `link_free`; `(fl, sl)` is `list_of(size)`.
    #[inline(always)]
    unsafe fn link_free_in(&mut self, block: *mut u8, size: usize, (fl, sl): (usize, usize)) {
        // SAFETY: per the caller the block's words are ours; the head is a free block.
        unsafe {
            let head = self.head(fl, sl);
            let first = *head;
            *head = block;
            set_header(block, size | FREE);
            set_link(block, NEXT, first);
            set_link(block, PREV, ptr::null_mut());
            if !first.is_null() {
                set_link(first, PREV, block);
            }
            word(block.add(size - WORD), 0).write(size);
            *self.sl_map_mut(fl) |= 1 << sl;
        }
        self.fl_map |= 1 << fl;
        self.free += size - WORD;
    }

    /// [`link_free`](Self::link_free), then tells the next block.
    ///
    /// # Safety
    ///
    /// As for `link_free`, and a valid header follows the block.
    #[inline(always)]
    unsafe fn insert(&mut self, block: *mut u8, size: usize) {
        // SAFETY: per the caller.
        unsafe {
            self.link_free(block, size);
            let next = block.add(size);
            set_header(next, header(next) | PREV_FREE);
        }
    }

    /// Takes a free block of `size` off its list. Its header and the next block's
    /// `PREV_FREE` bit are left for the caller to rewrite.
    ///
    /// # Safety
    ///
    /// `block` is on a list, with size `size`.
    #[inline(always)]
    unsafe fn unlink(&mut self, block: *mut u8, size: usize) {
        // SAFETY: per the caller.
        unsafe { self.unlink_from(block, size, Classes::<FL, SL>::list_of(size)) }
    }

    /// [`unlink`](Self::unlink) with the block's list already known.
    ///
    /// # Safety
    ///
    /// As for `unlink`; `(fl, sl)` is `list_of(size)`.
    #[inline(always)]
    unsafe fn unlink_from(&mut self, block: *mut u8, size: usize, (fl, sl): (usize, usize)) {
        // SAFETY: per the caller, `block` and its list neighbours are free blocks.
        unsafe {
            let next = link(block, NEXT);
            let prev = link(block, PREV);
            if !next.is_null() {
                set_link(next, PREV, prev);
            }
            if prev.is_null() {
                *self.head(fl, sl) = next;
                if next.is_null() {
                    self.mark_empty(fl, sl);
                }
            } else {
                set_link(prev, NEXT, next);
            }
        }
        self.free -= size - WORD;
    }

    /// Clears the bitmap bits of list `(fl, sl)`, which has just become empty.
    ///
    /// # Safety
    ///
    /// `(fl, sl)` is in range.
    #[inline(always)]
    unsafe fn mark_empty(&mut self, fl: usize, sl: usize) {
        // SAFETY: per the caller.
        let map = unsafe { self.sl_map_mut(fl) };
        *map &= !(1 << sl);
        if *map == 0 {
            self.fl_map &= !(1 << fl);
        }
    }

    /// Takes the first block (of `size` bytes) off list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// The list is not empty, and `(fl, sl)` is in range.
    #[inline(always)]
    unsafe fn pop_head(&mut self, fl: usize, sl: usize, size: usize) {
        // SAFETY: per the caller, the head is a free block; its successor too, if any.
        unsafe {
            let head = self.head(fl, sl);
            let next = link(*head, NEXT);
            *head = next;
            if next.is_null() {
                self.mark_empty(fl, sl);
            } else {
                set_link(next, PREV, ptr::null_mut());
            }
        }
        self.free -= size - WORD;
    }

    /// Moves free block `from` (of `from_size`) to `to` with size `to_size`, both in list
    /// `(fl, sl)`: the list node changes address, the bitmaps stay as they are. Saves the
    /// unlink and insert when a split or merge does not change the list.
    ///
    /// # Safety
    ///
    /// `from` is on list `(fl, sl)`; `to..to + to_size` is free memory of the region (it
    /// may overlap `from`) whose size also maps to `(fl, sl)`; the block before `to` is in
    /// use and the one after it knows it follows a free block.
    #[inline(always)]
    unsafe fn relocate(
        &mut self,
        from: *mut u8,
        from_size: usize,
        to: *mut u8,
        to_size: usize,
        (fl, sl): (usize, usize),
    ) {
        // SAFETY: per the caller; both links are read before anything at `to` is written.
        unsafe {
            let next = link(from, NEXT);
            let prev = link(from, PREV);
            set_link(to, NEXT, next);
            set_link(to, PREV, prev);
            if !next.is_null() {
                set_link(next, PREV, to);
            }
            if prev.is_null() {
                *self.head(fl, sl) = to;
            } else {
                set_link(prev, NEXT, to);
            }
            set_header(to, to_size | FREE);
            word(to.add(to_size - WORD), 0).write(to_size);
        }
        self.free = self.free + to_size - from_size;
    }

    /// Turns free block `from` (`from_size` bytes, on a list) into free block `to` of
    /// `to_size` bytes: relocated within its list when the list stays the same, else
    /// unlinked and linked anew.
    ///
    /// # Safety
    ///
    /// As for [`relocate`](Self::relocate), without the same-list condition.
    #[inline(always)]
    unsafe fn replace_free(
        &mut self,
        from: *mut u8,
        from_size: usize,
        to: *mut u8,
        to_size: usize,
    ) {
        let list = Classes::<FL, SL>::list_of(to_size);
        let from_list = Classes::<FL, SL>::list_of(from_size);
        // SAFETY: per the caller.
        unsafe {
            if list == from_list {
                self.relocate(from, from_size, to, to_size, list);
            } else {
                self.unlink_from(from, from_size, from_list);
                self.link_free_in(to, to_size, list);
            }
        }
    }

    /// Grows free block `block` (on a list) in place from `old_size` to `new_size` bytes:
    /// a new header and footer when its list stays the same, else a move between lists.
    ///
    /// # Safety
    ///
    /// `block` is on a list with `old_size`; the bytes up to `new_size` are free memory of
    /// its region, and the block after them knows it follows a free block.
    #[inline(always)]
    unsafe fn resize_free(&mut self, block: *mut u8, old_size: usize, new_size: usize) {
        let list = Classes::<FL, SL>::list_of(new_size);
        let old_list = Classes::<FL, SL>::list_of(old_size);
        // SAFETY: per the caller.
        unsafe {
            if list == old_list {
                set_header(block, new_size | FREE);
                word(block.add(new_size - WORD), 0).write(new_size);
                self.free = self.free + new_size - old_size;
            } else {
                self.unlink_from(block, old_size, old_list);
                self.link_free_in(block, new_size, list);
            }
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
    unsafe fn carve(&mut self, block: *mut u8, available: usize, size: usize) -> usize {
        // SAFETY: per the caller; the tail (when split) is free memory of the region,
        // followed by the old next block's header, which already says "free before me".
        unsafe {
            let prev_flag = header(block) & PREV_FREE;
            let rest = available - size;
            if rest >= MIN_BLOCK {
                set_header(block, size | prev_flag);
                self.link_free(block.add(size), rest);
                size
            } else {
                set_header(block, available | prev_flag);
                let next = block.add(available);
                set_header(next, header(next) & !PREV_FREE);
                available
            }
        }
    }

    /// `allocate` for alignments above the granule: over-allocate, give back the gap.
    ///
    /// The good-fit search asks for `size + align` (plus room for a leading free block), so
    /// any block it finds fits whatever its address. When none is that large, one more
    /// block is examined, still O(1): the head of the largest non-empty list, taken if an
    /// aligned payload fits inside it. Without that second look, whether the last aligned
    /// block of a region could be served depended on the region's address (a slab heap
    /// packed 13 or 14 chunks into 16 chunks of memory, by address).
    #[inline(never)]
    fn allocate_aligned(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let size = block_size_for(layout.size());
        let align = layout.align();
        let good_fit = Self::search_size(layout)
            .and_then(Classes::<FL, SL>::first_list_fitting)
            .and_then(|(fl, sl)| self.find_list(fl, sl));
        let (fl, sl) = match good_fit {
            Some(list) => list,
            None => self.largest_list().ok_or(AllocError)?,
        };
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: `find_list` and `largest_list` only name non-empty lists, whose head is a
        // free block with a valid header.
        let (mut block, mut available) = unsafe {
            let block = *self.head(fl, sl);
            (block, header(block) & !FLAGS)
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
            self.unlink(block, available);
            if gap != 0 {
                let aligned = block.add(gap);
                set_header(aligned, PREV_FREE);
                self.link_free(block, gap);
                block = aligned;
                available -= gap;
            }
            let size = self.carve(block, available, size);
            Ok(self.allocated(block, size))
        }
    }

    /// Bytes from `block` to the first block whose payload is aligned to `align` and that
    /// leaves either nothing or a whole free block in front. No address is rounded up, so
    /// nothing wraps near the top of the address space.
    #[inline(always)]
    fn aligned_gap(block: *mut u8, align: usize) -> usize {
        let payload = block.addr().wrapping_add(WORD);
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

    /// Books `block` (`size` bytes, header written) as allocated and returns its payload.
    ///
    /// # Safety
    ///
    /// `block` was just carved for an allocation.
    #[inline(always)]
    unsafe fn allocated(&mut self, block: *mut u8, size: usize) -> NonNull<[u8]> {
        self.in_use += size - WORD;
        #[cfg(feature = "checked")]
        self.mark_start(block, true);
        // SAFETY: a block's payload follows its header inside the region: not null.
        let payload = unsafe { NonNull::new_unchecked(block.add(WORD)) };
        NonNull::slice_from_raw_parts(payload, size - WORD)
    }

    /// Usable bytes of the largest free block. Walks one list: O(blocks on it).
    fn largest_free(&self) -> usize {
        let Some((fl, sl)) = self.largest_list() else {
            return 0;
        };
        let mut largest = 0;
        let mut block = self.heads[fl][sl];
        while !block.is_null() {
            // SAFETY: blocks on a list are free blocks with valid headers and links.
            unsafe {
                largest = largest.max(header(block) & !FLAGS);
                block = link(block, NEXT);
            }
        }
        largest - WORD
    }

    /// The region holding address `addr` in its blocks, if any.
    #[cfg_attr(not(feature = "checked"), allow(dead_code))]
    fn region_of(&self, addr: usize) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.first.addr() < addr && addr < r.sentinel.addr())
    }

    /// Every invariant of the heap, walked block by block and list by list: see
    /// [`Backend::check`]. Reads only memory inside the regions, whatever it finds there.
    fn check_heap(&self) -> Result<(), Corruption> {
        let corrupt = |at: *mut u8, what| Corruption::new(CRATE_NAME, at.addr(), what);
        let mut free_blocks = 0usize;
        let mut free_bytes = 0usize;
        for r in self.regions.iter() {
            let (mut block, end) = (r.first, r.sentinel);
            let mut prev_free = false;
            while block != end {
                // SAFETY: `block` lies in `first..sentinel` (checked by the step below),
                // word-aligned: a header slot inside the region.
                let h = unsafe { header(block) };
                let size = h & !FLAGS;
                let room = end.addr() - block.addr();
                if size < MIN_BLOCK || size % GRANULE != 0 {
                    return Err(
                        corrupt(block, "block size is not a whole number of granules")
                            .expected(MIN_BLOCK, size),
                    );
                }
                if size > room || size > Self::MAX_BLOCK {
                    return Err(
                        corrupt(block, "block runs past its region's end").expected(room, size)
                    );
                }
                if (h & PREV_FREE != 0) != prev_free {
                    return Err(corrupt(block, "PREV_FREE disagrees with the block before")
                        .expected(usize::from(prev_free), usize::from(h & PREV_FREE != 0)));
                }
                let free = h & FREE != 0;
                if free {
                    if prev_free {
                        return Err(corrupt(block, "two free blocks are adjacent (not merged)"));
                    }
                    // SAFETY: `size <= room`: the footer is the block's last word, inside.
                    let footer = unsafe { word(block.add(size - WORD), 0).read() };
                    if footer != size {
                        return Err(
                            corrupt(block, "free block's footer differs from its header")
                                .expected(size, footer),
                        );
                    }
                    free_blocks += 1;
                    free_bytes += size - WORD;
                }
                prev_free = free;
                // SAFETY: `size <= room`: at most the sentinel.
                block = unsafe { block.add(size) };
            }
            // SAFETY: the sentinel is a header slot inside the region.
            let sentinel = unsafe { header(end) };
            if sentinel & !PREV_FREE != 0 || (sentinel & PREV_FREE != 0) != prev_free {
                return Err(corrupt(end, "region's end sentinel is damaged")
                    .expected(usize::from(prev_free) * PREV_FREE, sentinel));
            }
        }
        let listed = self.check_lists(free_blocks)?;
        if listed != free_blocks {
            return Err(
                corrupt(ptr::null_mut(), "free blocks missing from the lists")
                    .expected(free_blocks, listed),
            );
        }
        if free_bytes != self.free {
            return Err(
                corrupt(ptr::null_mut(), "free byte count differs from the blocks")
                    .expected(free_bytes, self.free),
            );
        }
        Ok(())
    }

    /// Walks every list (at most `bound` nodes in all, so a cycle ends) and checks bitmaps,
    /// links and sizes; returns the nodes seen.
    fn check_lists(&self, bound: usize) -> Result<usize, Corruption> {
        let corrupt = |at: *mut u8, what| Corruption::new(CRATE_NAME, at.addr(), what);
        let mut seen = 0;
        for fl in 0..FL {
            let sl_map = self.sl_maps[fl];
            if (self.fl_map >> fl) & 1 != u32::from(sl_map != 0) {
                return Err(
                    corrupt(ptr::null_mut(), "first-level bit disagrees with its lists")
                        .expected(usize::from(sl_map != 0), (self.fl_map >> fl) as usize & 1),
                );
            }
            for sl in 0..SL {
                let head = self.heads[fl][sl];
                if (sl_map >> sl) & 1 != u32::from(!head.is_null()) {
                    return Err(corrupt(head, "second-level bit disagrees with its list")
                        .expected(usize::from(!head.is_null()), (sl_map >> sl) as usize & 1));
                }
                let (mut node, mut prev): (*mut u8, *mut u8) = (head, ptr::null_mut());
                while !node.is_null() {
                    seen += 1;
                    if seen > bound {
                        return Err(corrupt(
                            node,
                            "a list holds more blocks than are free (a cycle?)",
                        )
                        .expected(bound, seen));
                    }
                    // Links may hold stray writes: only the address is trusted, and the node
                    // read is rebuilt from its region's own pointer.
                    let Some(node_in_region) = self.region_holding_block(node) else {
                        return Err(corrupt(node, "list node is not a block of any region"));
                    };
                    // SAFETY: `node` is a block-aligned slot inside a region, before its
                    // sentinel: its header and two link words are region memory.
                    let (h, back, next) = unsafe {
                        (
                            header(node_in_region),
                            link(node_in_region, PREV),
                            link(node_in_region, NEXT),
                        )
                    };
                    let size = h & !FLAGS;
                    if h & FREE == 0 || size < MIN_BLOCK || size > Self::MAX_BLOCK {
                        return Err(corrupt(node, "list node is not a free block"));
                    }
                    if Classes::<FL, SL>::list_of(size) != (fl, sl) {
                        return Err(
                            corrupt(node, "free block is on the wrong list for its size").expected(
                                fl * SL + sl,
                                {
                                    let (f, s) = Classes::<FL, SL>::list_of(size);
                                    f * SL + s
                                },
                            ),
                        );
                    }
                    if back.addr() != prev.addr() {
                        return Err(corrupt(node, "list node's back link is wrong"));
                    }
                    (prev, node) = (node, next);
                }
            }
        }
        Ok(seen)
    }

    /// `block` rebuilt from its region's pointer, if it is a header slot of some region's
    /// blocks: inside `first..sentinel` at a block boundary (a granule from `first`).
    fn region_holding_block(&self, block: *mut u8) -> Option<*mut u8> {
        self.regions.iter().find_map(|r| {
            let offset = block.addr().wrapping_sub(r.first.addr());
            (offset < r.sentinel.addr() - r.first.addr() && offset % GRANULE == 0)
                .then(|| r.first.wrapping_add(offset))
        })
    }

    /// How many blocks sit on each list (walks every list).
    pub fn free_blocks_per_list(&self) -> [[usize; SL]; FL] {
        core::array::from_fn(|fl| {
            core::array::from_fn(|sl| {
                let mut count = 0;
                let mut block = self.heads[fl][sl];
                while !block.is_null() {
                    count += 1;
                    // SAFETY: blocks on a list are free blocks with valid links.
                    block = unsafe { link(block, NEXT) };
                }
                count
            })
        })
    }
}

/// Where [`Tlsf::plan`] puts a region's parts.
/// A region's layout, as offsets from its start: each at most `len`.
struct RegionPlan {
    /// The memory the region takes (a region past the largest block takes less than given).
    span: Span,
    header: usize,
    first: usize,
    sentinel: usize,
    #[cfg(feature = "checked")]
    starts: usize,
}

#[cfg(feature = "checked")]
impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The usable size of the allocated block whose payload starts at `ptr`, or `None` if
    /// no allocated block starts there (`checked` only). Lets an allocator built on top
    /// verify a pointer before it reads memory around it.
    pub fn allocated_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let block = ptr.as_ptr().wrapping_sub(WORD);
        let (starts, word, bit) = self.start_bit(block)?;
        // SAFETY: `start_bit` found the bit inside the region's bitmap; a set bit means an
        // allocated block's header is there.
        unsafe { (*starts.add(word) & (1 << bit) != 0).then(|| (header(block) & !FLAGS) - WORD) }
    }

    /// The region and bit index of the block starting at `block`, if `block` is a block
    /// position in some region.
    fn start_bit(&self, block: *mut u8) -> Option<(*mut usize, usize, usize)> {
        // `block` is a payload less a word, wrapped: any pointer may be asked about.
        let region = self.region_of(block.addr().wrapping_add(WORD))?;
        let offset = block.addr().checked_sub(region.first.addr())?;
        (offset % GRANULE == 0).then(|| {
            let index = offset / GRANULE;
            let bits = usize::BITS as usize;
            (region.starts, index / bits, index % bits)
        })
    }

    fn mark_start(&mut self, block: *mut u8, allocated: bool) {
        let (starts, word, bit) = self
            .start_bit(block)
            .expect("heapkit-tlsf: an allocated block lies outside every region");
        // SAFETY: `start_bit` found the bit inside the region's bitmap.
        unsafe {
            let word = starts.add(word);
            if allocated {
                *word |= 1 << bit;
            } else {
                *word &= !(1 << bit);
            }
        }
    }

    /// Checks that `ptr` is a live block `layout` fits, or panics naming the problem.
    fn validate(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) {
        let fail = |reason: &str| heapkit_core::invalid_use(CRATE, operation, ptr.as_ptr(), reason);
        let block = ptr.as_ptr().wrapping_sub(WORD);
        let Some(region) = self.region_of(ptr.as_ptr().addr()) else {
            fail("pointer is not in memory this allocator manages")
        };
        let live = self.start_bit(block).is_some_and(|(starts, word, bit)| {
            // SAFETY: `start_bit` found the bit inside the region's bitmap.
            unsafe { *starts.add(word) & (1 << bit) != 0 }
        });
        if !live {
            fail("no allocated block starts here (freed already, or a pointer into a block)");
        }
        // SAFETY: an allocated block starts here, so its header is ours to read; the
        // neighbours read below are checked to lie inside the region first.
        unsafe {
            let h = header(block);
            let size = h & !FLAGS;
            if h & FREE != 0
                || size < MIN_BLOCK
                || size % GRANULE != 0
                || size > region.sentinel.addr() - block.addr()
            {
                fail("block header is corrupted");
            }
            if header(block.add(size)) & PREV_FREE != 0 {
                fail("block header is corrupted (the next block believes this one is free)");
            }
            if h & PREV_FREE != 0 {
                let prev_size = footer_before(block);
                let fits =
                    prev_size >= MIN_BLOCK && prev_size <= block.addr() - region.first.addr();
                if !fits || header(block.sub(prev_size)) != prev_size | FREE {
                    fail("block header is corrupted (the free block before it is damaged)");
                }
            }
            if layout.size() > size - WORD {
                fail("layout is larger than the block");
            }
        }
        if ptr.as_ptr().addr() % layout.align() != 0 {
            fail("pointer is not aligned to the layout's alignment");
        }
    }
}

// SAFETY: blocks come off the free lists, which hold only free memory of our regions; a
// block is split or merged only with free neighbours, so live blocks never overlap; the
// payload starts granule-aligned, or aligned by the gap computed in `allocate`.
unsafe impl<const FL: usize, const SL: usize> Backend for Tlsf<FL, SL> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > GRANULE {
            return self.allocate_aligned(layout);
        }
        let size = block_size_for(layout.size());
        let (fl, sl) = Classes::<FL, SL>::first_list_fitting(size).ok_or(AllocError)?;
        let (fl, sl) = self.find_list(fl, sl).ok_or(AllocError)?;
        #[cfg(test)]
        {
            self.probes += 1;
        }
        // SAFETY: `find_list` only names non-empty lists, whose head is a free block of at
        // least `size` bytes (good fit). Its predecessor is in use (free blocks never
        // touch), so the allocated header carries no flags; a tail of `MIN_BLOCK` or more
        // goes back as a free block, whose successor already says "free before me".
        unsafe {
            let block = *self.head(fl, sl);
            let available = header(block) & !FLAGS;
            let rest = available - size;
            if rest >= MIN_BLOCK {
                let remainder = block.add(size);
                let rest_list = Classes::<FL, SL>::list_of(rest);
                if rest_list == (fl, sl) {
                    self.relocate(block, available, remainder, rest, rest_list);
                } else {
                    self.pop_head(fl, sl, available);
                    self.link_free_in(remainder, rest, rest_list);
                }
                set_header(block, size);
                Ok(self.allocated(block, size))
            } else {
                self.pop_head(fl, sl, available);
                set_header(block, available);
                let next = block.add(available);
                set_header(next, header(next) & !PREV_FREE);
                Ok(self.allocated(block, available))
            }
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        #[cfg(feature = "checked")]
        {
            self.validate(ptr, layout, "deallocate");
            self.mark_start(ptr.as_ptr().wrapping_sub(WORD), false);
        }
        let _ = layout;
        // SAFETY: per the caller, `ptr` is a live block of ours, so its header precedes
        // it; a following header always exists (block or sentinel), and `PREV_FREE` says
        // when the word before the header is a free block's footer. A merged block keeps
        // the list node of a neighbour whose list it stays in.
        unsafe {
            let block = ptr.as_ptr().sub(WORD);
            let h = header(block);
            let size = h & !FLAGS;
            self.in_use -= size - WORD;
            let next = block.add(size);
            let next_header = header(next);
            if h & PREV_FREE != 0 {
                let prev_size = footer_before(block);
                let prev = block.sub(prev_size);
                let mut merged = prev_size + size;
                if next_header & FREE != 0 {
                    let next_size = next_header & !FLAGS;
                    self.unlink(next, next_size);
                    merged += next_size;
                } else {
                    set_header(next, next_header | PREV_FREE);
                }
                self.resize_free(prev, prev_size, merged);
            } else if next_header & FREE != 0 {
                let next_size = next_header & !FLAGS;
                self.replace_free(next, next_size, block, size + next_size);
            } else {
                set_header(next, next_header | PREV_FREE);
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
            let block = ptr.as_ptr().sub(WORD);
            let h = header(block);
            let size = h & !FLAGS;
            if needed <= size {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            let next = block.add(size);
            let next_header = header(next);
            let next_size = next_header & !FLAGS;
            if next_header & FREE == 0 || size + next_size < needed {
                return Err(AllocError);
            }
            let rest = size + next_size - needed;
            let grown = if rest >= MIN_BLOCK {
                self.replace_free(next, next_size, block.add(needed), rest);
                needed
            } else {
                self.unlink(next, next_size);
                let after = next.add(next_size);
                set_header(after, header(after) & !PREV_FREE);
                size + next_size
            };
            set_header(block, grown | (h & PREV_FREE));
            self.in_use += grown - size;
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
        // SAFETY: as in `deallocate`; the tail handed back lies inside the block, merged
        // with the next block when that one is free.
        unsafe {
            let block = ptr.as_ptr().sub(WORD);
            let h = header(block);
            let size = h & !FLAGS;
            let tail = size - needed;
            let next = block.add(size);
            let next_header = header(next);
            let freed = block.add(needed);
            if next_header & FREE != 0 && tail > 0 {
                let next_size = next_header & !FLAGS;
                self.replace_free(next, next_size, freed, tail + next_size);
            } else if tail >= MIN_BLOCK {
                self.insert(freed, tail);
            } else {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            set_header(block, needed | (h & PREV_FREE));
            self.in_use -= tail;
            Ok(NonNull::slice_from_raw_parts(ptr, needed - WORD))
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        self.check_heap()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.regions.containing(ptr.as_ptr().addr()).is_some()
    }

    fn stats(&self) -> Stats {
        Stats {
            capacity: self.capacity,
            in_use: self.in_use,
            free: self.free,
            largest_free: self.largest_free(),
            metadata: self.capacity - self.in_use - self.free,
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

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use heapkit_testkit::Regions;
    use std::vec::Vec;

    fn heap_over<const FL: usize, const SL: usize>(
        regions: &mut Regions,
        len: usize,
    ) -> Tlsf<FL, SL> {
        let mut heap = Tlsf::new();
        let region = regions.take(len, 4096);
        // SAFETY: `regions` outlives every heap in these tests.
        unsafe { heap.add_region(region.cast(), len) }.unwrap();
        heap
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn free_blocks<const FL: usize, const SL: usize>(heap: &Tlsf<FL, SL>) -> usize {
        heap.free_blocks_per_list().iter().flatten().sum()
    }

    /// A heap full of small free fragments of many sizes, where a first-fit or best-fit
    /// search would walk thousands of blocks: every allocation still examines one.
    #[test]
    fn allocation_examines_one_block_however_fragmented() {
        let count = if cfg!(miri) { 300 } else { 20_000 };
        let mut regions = Regions::new();
        let mut heap: Tlsf = heap_over(&mut regions, count * 600 + 64 * 1024);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut blocks = Vec::new();
        for _ in 0..count {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let size = 16 + (seed % 480) as usize;
            let block = heap.allocate(layout(size, 8)).unwrap();
            blocks.push((block.cast::<u8>(), size));
        }
        // Free every other block: `count / 2` fragments that cannot merge.
        for &(block, size) in blocks.iter().step_by(2) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { heap.deallocate(block, layout(size, 8)) };
        }
        let fragments = free_blocks(&heap);
        assert!(fragments > count / 2, "only {fragments} free blocks");

        heap.probes = 0;
        let mut taken = Vec::new();
        let requests = [
            (24, 8),
            (100, 8),
            (300, 8),
            (470, 8),
            (1000, 8),
            (5000, 8),
            (60_000, 8),
            (200, 64),
            (3000, 512),
            (20_000, 4096),
        ];
        for (i, (size, align)) in requests.into_iter().enumerate() {
            let block = heap.allocate(layout(size, align)).unwrap();
            assert_eq!(
                heap.probes,
                i + 1,
                "allocating {size} bytes aligned to {align} probed more than one block"
            );
            taken.push((block.cast::<u8>(), size, align));
        }
        // A request nothing can serve looks at the bitmaps only; an aligned one also at
        // the head of the largest list, which may hold an aligned fit.
        assert!(heap.allocate(layout(count * 600, 8)).is_err());
        assert_eq!(heap.probes, requests.len());
        assert!(heap.allocate(layout(count * 600, 64)).is_err());
        assert_eq!(heap.probes, requests.len() + 1);
        for (block, size, align) in taken.into_iter().chain(
            blocks
                .into_iter()
                .skip(1)
                .step_by(2)
                .map(|(block, size)| (block, size, 8)),
        ) {
            // SAFETY: live blocks, freed once with their layout.
            unsafe { heap.deallocate(block, layout(size, align)) };
        }
        assert_eq!(
            free_blocks(&heap),
            1,
            "everything merges back into one block"
        );
    }

    #[test]
    fn an_aligned_block_that_fits_exactly_is_found_with_one_more_look() {
        // One free block with room for a 4 KiB-aligned 4 KiB block but not for the good-fit
        // search's `size + align`: the head of the largest list serves it.
        let mut regions = Regions::new();
        let region = regions.take(3 * 4096, 4096).cast::<u8>();
        let mut heap: Tlsf = Tlsf::new();
        // The first block's payload lands just past the region header, so the next 4 KiB
        // boundary leaves a gap in front of at least a minimum block.
        // SAFETY: `regions` outlives the heap.
        unsafe { heap.add_region(region, 2 * 4096 + 64) }.unwrap();
        let page = layout(4096, 4096);
        heap.probes = 0;
        let block = heap
            .allocate(page)
            .expect("an aligned page fits in the region");
        assert_eq!(heap.probes, 1);
        assert_eq!(block.cast::<u8>().as_ptr().addr() % 4096, 0);
        assert!(heap.allocate(page).is_err(), "no second page fits");
        // SAFETY: live with `page`.
        unsafe { heap.deallocate(block.cast(), page) };
        assert_eq!(free_blocks(&heap), 1);
    }

    #[test]
    fn check_reports_each_broken_invariant() {
        // Three blocks a, b, c then the free rest; b freed: a free block between two
        // allocated ones.
        fn fresh(regions: &mut Regions) -> (Tlsf, [*mut u8; 3]) {
            let mut heap: Tlsf = heap_over(regions, 4096);
            let blocks = [0; 3].map(|_| {
                let payload = heap.allocate(layout(64, 8)).unwrap().cast::<u8>().as_ptr();
                payload.wrapping_sub(WORD)
            });
            // SAFETY: b is live with this layout.
            unsafe { heap.deallocate(NonNull::new(blocks[1].add(WORD)).unwrap(), layout(64, 8)) };
            assert_eq!(heap.check(), Ok(()));
            (heap, blocks)
        }
        let what = |heap: &Tlsf| heap.check().unwrap_err().what;
        let mut regions = Regions::new();
        // SAFETY: the words written are headers, footers and links of blocks of each heap,
        // inside its region; each heap is dropped without further calls.
        unsafe {
            let (heap, [_, b, _]) = fresh(&mut regions);
            let size = header(b) & !FLAGS;
            word(b.add(size - WORD), 0).write(size + GRANULE);
            assert_eq!(what(&heap), "free block's footer differs from its header");

            let (heap, [_, b, c]) = fresh(&mut regions);
            set_header(c, header(c) & !PREV_FREE);
            let _ = b;
            assert_eq!(what(&heap), "PREV_FREE disagrees with the block before");

            let (heap, [a, _, _]) = fresh(&mut regions);
            set_header(a, (header(a) & FLAGS) | 1 << 20);
            assert_eq!(what(&heap), "block runs past its region's end");

            let (heap, [a, _, _]) = fresh(&mut regions);
            set_header(a, (header(a) & FLAGS) | (3 * WORD));
            assert_eq!(what(&heap), "block size is not a whole number of granules");

            let (mut heap, _) = fresh(&mut regions);
            let (fl, sl) = (0..DEFAULT_FL)
                .flat_map(|f| (0..DEFAULT_SL).map(move |s| (f, s)))
                .find(|&(f, s)| heap.heads[f][s].is_null())
                .unwrap();
            heap.sl_maps[fl] |= 1 << sl;
            heap.fl_map |= 1 << fl;
            assert_eq!(what(&heap), "second-level bit disagrees with its list");

            let (mut heap, _) = fresh(&mut regions);
            heap.free += 1;
            assert_eq!(what(&heap), "free byte count differs from the blocks");

            let (heap, [_, b, _]) = fresh(&mut regions);
            // A cycle back to the head: its back link (null) cannot match.
            set_link(b, NEXT, b);
            assert_eq!(what(&heap), "list node's back link is wrong");
        }
    }

    #[test]
    fn freeing_merges_with_both_neighbours() {
        let mut regions = Regions::new();
        let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
        let empty = heap.stats();
        let l = layout(100, 8);
        let blocks: Vec<_> = (0..4)
            .map(|_| heap.allocate(l).unwrap().cast::<u8>())
            .collect();
        // SAFETY: live blocks freed once each.
        unsafe {
            heap.deallocate(blocks[0], l);
            heap.deallocate(blocks[2], l);
        }
        // Two holes plus the tail.
        assert_eq!(free_blocks(&heap), 3);
        // SAFETY: as above.
        unsafe { heap.deallocate(blocks[1], l) };
        // Blocks 0..=2 merged into one hole.
        assert_eq!(free_blocks(&heap), 2);
        let hole = block_size_for(100) * 3 - WORD;
        assert_eq!(heap.allocate(layout(hole, 8)).unwrap().cast(), blocks[0]);
        // SAFETY: as above.
        unsafe {
            heap.deallocate(blocks[0], layout(hole, 8));
            heap.deallocate(blocks[3], l);
        }
        assert_eq!(heap.stats(), empty);
    }

    #[test]
    fn grow_and_shrink_stay_in_place() {
        let mut regions = Regions::new();
        let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
        let small = layout(40, 8);
        let a = heap.allocate(small).unwrap().cast::<u8>();
        let b = heap.allocate(small).unwrap().cast::<u8>();
        // SAFETY: `b` is live.
        unsafe { heap.deallocate(b, small) };
        // `a` absorbs the freed `b` and the free tail behind it.
        let big = layout(10_000, 8);
        // SAFETY: `a` is live with layout `small`.
        let grown = unsafe { heap.grow_in_place(a, small, big) }.unwrap();
        assert_eq!(grown.cast::<u8>(), a);
        assert!(grown.len() >= 10_000);
        assert_eq!(heap.stats().in_use, grown.len());
        // Shrinking hands the tail back: the next allocation lands right after `a`.
        // SAFETY: `a` is live with layout `big`.
        let shrunk = unsafe { heap.shrink_in_place(a, big, small) }.unwrap();
        assert_eq!(shrunk.len(), block_size_for(40) - WORD);
        let c = heap.allocate(small).unwrap().cast::<u8>();
        assert_eq!(c, b);
        // Growing into a live neighbour fails and changes nothing.
        let before = heap.stats();
        // SAFETY: `a` is live with layout `small`.
        assert!(unsafe { heap.grow_in_place(a, small, big) }.is_err());
        assert_eq!(heap.stats(), before);
        // SAFETY: live blocks freed once.
        unsafe {
            heap.deallocate(a, small);
            heap.deallocate(c, small);
        }
        assert_eq!(free_blocks(&heap), 1);
    }

    #[test]
    fn an_aligned_request_returns_its_leading_gap() {
        let mut regions = Regions::new();
        let mut heap: Tlsf = heap_over(&mut regions, 64 * 1024);
        let a = heap.allocate(layout(64, 4096)).unwrap().cast::<u8>();
        assert_eq!(a.as_ptr().addr() % 4096, 0);
        // The gap before the block and the tail after it are both free blocks.
        assert_eq!(free_blocks(&heap), 2);
        let stats = heap.stats();
        assert_eq!(stats.in_use, block_size_for(64) - WORD);
        // SAFETY: live block, freed once.
        unsafe { heap.deallocate(a, layout(64, 4096)) };
        assert_eq!(free_blocks(&heap), 1);
    }

    #[test]
    fn bad_regions_are_refused_and_change_nothing() {
        let mut regions = Regions::new();
        let mut heap: Tlsf = heap_over(&mut regions, 4096);
        let before = heap.stats();
        let tiny = regions.take(64, 16);
        // SAFETY: the region is ours; the call must refuse it anyway.
        let error = unsafe { heap.add_region(tiny.cast(), 16) }.unwrap_err();
        assert!(
            matches!(error, ConfigError::RegionTooSmall { given: 16, .. }),
            "{error}"
        );
        let base = heap.regions.iter().next().unwrap().span.start();
        let inside = NonNull::new(tiny.cast::<u8>().as_ptr().with_addr(base + 100)).unwrap();
        // SAFETY: refused before anything is written.
        let error = unsafe { heap.add_region(inside, 1000) }.unwrap_err();
        assert_eq!(
            error,
            ConfigError::RegionOverlaps {
                address: base + 100
            }
        );
        // SAFETY: as above.
        let error = unsafe { heap.add_region(tiny.cast(), usize::MAX) }.unwrap_err();
        assert!(matches!(error, ConfigError::RegionWraps { .. }), "{error}");
        assert_eq!(heap.stats(), before);
    }

    /// Checks a plan against its span: everything inside, blocks whole granules, the first
    /// block at most the largest.
    fn assert_plan_inside<const FL: usize, const SL: usize>(span: Span) -> RegionPlan {
        let plan = Tlsf::<FL, SL>::plan(span).unwrap();
        assert!(plan.span.len() <= span.len() && plan.span.start() == span.start());
        assert!(plan.header + size_of::<Region>() <= plan.first);
        assert_eq!(
            (span.start() + plan.first + WORD) % GRANULE,
            0,
            "payload aligned"
        );
        assert!(plan.first + MIN_BLOCK <= plan.sentinel);
        assert!(plan.sentinel + WORD <= plan.span.len(), "sentinel inside");
        assert_eq!((plan.sentinel - plan.first) % GRANULE, 0);
        assert!(plan.sentinel - plan.first <= Tlsf::<FL, SL>::MAX_BLOCK);
        plan
    }

    #[test]
    fn plans_near_the_top_of_the_address_space_stay_inside() {
        type Small = Tlsf<8, 4>;
        let top = usize::MAX;
        for len in [
            128,
            200,
            4096,
            Small::MAX_BLOCK - 1,
            Small::MAX_BLOCK + 4096,
        ] {
            for gap in [0, 1, 7, 15, 4095] {
                let span = Span::new(top - gap - len, len).unwrap();
                let plan = assert_plan_inside::<8, 4>(span);
                if len < Small::MAX_BLOCK {
                    assert_eq!(
                        plan.span.len(),
                        len,
                        "a region below the largest block is whole"
                    );
                }
            }
        }
        // The default parameters' largest block is half the 32-bit address space or more:
        // a region whose start is within that distance of the top (SDRAM at 0xC000_0000, a
        // higher-half heap) once placed its sentinel at `first + MAX_BLOCK`, wrapped.
        let len = (Tlsf::<DEFAULT_FL, DEFAULT_SL>::MAX_BLOCK / 2).min(1 << 40);
        for gap in [0, 1, 4096] {
            let plan = assert_plan_inside::<DEFAULT_FL, DEFAULT_SL>(
                Span::new(top - gap - len, len).unwrap(),
            );
            assert_eq!(plan.span.len(), len);
        }
        // Straddling the middle of the address space.
        let middle = usize::MAX / 2 + 1;
        assert_plan_inside::<DEFAULT_FL, DEFAULT_SL>(Span::new(middle - 4099, 1 << 20).unwrap());
    }

    #[test]
    fn too_small_regions_at_the_top_are_refused() {
        for len in [0, 1, 8, 31, 47] {
            let span = Span::new(usize::MAX - len, len).unwrap();
            assert!(
                matches!(
                    Tlsf::<8, 4>::plan(span),
                    Err(ConfigError::RegionTooSmall { given, .. }) if given == len
                ),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn regions_past_the_largest_block_are_split() {
        type Small = Tlsf<8, 4>;
        let mut regions = Regions::new();
        let len = 100 * 1024;
        let mut heap: Small = heap_over(&mut regions, len);
        let blocks = free_blocks(&heap);
        assert!(blocks >= len / Small::MAX_BLOCK, "{blocks} pieces");
        assert!(heap.stats().largest_free <= Small::MAX_BLOCK - WORD);
        assert_eq!(heap.stats().capacity, len);
        let largest = layout(Small::max_request(), 8);
        let block = heap.allocate(largest).unwrap();
        assert!(heap.allocate(layout(Small::max_request() + 1, 8)).is_err());
        // SAFETY: live block, freed once.
        unsafe { heap.deallocate(block.cast(), largest) };
        assert_eq!(free_blocks(&heap), blocks);
    }

    #[test]
    fn a_fresh_region_of_region_len_for_serves_the_request() {
        for (size, align) in [(1, 1), (100, 8), (5000, 64), (70_000, 4096), (1 << 20, 16)] {
            let l = layout(size, align);
            let len = Tlsf::<28, 32>::region_len_for(l).unwrap();
            let mut regions = Regions::new();
            let region = regions.take(len + 1, 16);
            // Misalign the start as badly as a chunk header could.
            let start = region.cast::<u8>().as_ptr().wrapping_add(1);
            let mut heap: Tlsf = Tlsf::new();
            // SAFETY: inside the taken region.
            unsafe { heap.add_region(NonNull::new(start).unwrap(), len) }.unwrap();
            assert!(heap.allocate(l).is_ok(), "{size} bytes aligned to {align}");
        }
        assert!(Tlsf::<8, 4>::region_len_for(layout(1 << 20, 8)).is_none());
    }
}
