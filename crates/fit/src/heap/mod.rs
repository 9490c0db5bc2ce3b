//! [`FitHeap`]: one boundary-tag heap over regions, its placement policy a type parameter.

use core::alloc::Layout;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr::NonNull;

use heapkit_core::region::{RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::policy::Policy;

pub(crate) mod block;
mod check;
mod regions;

use block::Block;
use regions::Region;

/// Bytes in a machine word: the size of a block header.
pub(crate) const WORD: usize = size_of::<usize>();
/// Block sizes and payload addresses are multiples of the granule: two words (16 bytes on
/// 64-bit targets, 8 on 32-bit ones).
pub const GRANULE: usize = 2 * WORD;
/// Exact-size quick lists of a deferred-coalescing heap: blocks from the policy's smallest
/// up to `QUICK_BINS - 1` granules larger.
pub const QUICK_BINS: usize = 8;

/// Header bit: this block is free (in the policy's index).
pub(crate) const FREE: usize = 1;
/// Header bit: the block physically before this one is free, so the word just before this
/// header is that block's footer (its size).
pub(crate) const PREV_FREE: usize = 2;
/// Header bit: this block was freed to a quick list and waits there, unmerged (it looks
/// allocated to its neighbours).
pub(crate) const QUICK: usize = 4;
pub(crate) const FLAGS: usize = FREE | PREV_FREE | QUICK;

pub(crate) const CRATE_NAME: &str = "heapkit-fit";

/// What an allocation needs: a block of `size` bytes (header included) whose payload,
/// `header` bytes past the block's start, is aligned to `align`, leaving either nothing or
/// a whole block (`min_block`) in front.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) min_block: usize,
    /// [`WORD`] for a [`FitHeap`]'s blocks, 0 for a
    /// [`HeaderlessHeap`](crate::HeaderlessHeap)'s.
    pub(crate) header: usize,
}

/// Where in the free block `block` (of `available` bytes) a block for `need` starts, as
/// bytes from `block`: 0, or a gap that can stand as a free block of its own. `None` when
/// it does not fit. The one definition of "fits" every policy searches with.
#[inline]
pub(crate) fn gap_for(block: Block, available: usize, need: Need) -> Option<usize> {
    let mut gap = if need.align <= GRANULE {
        0
    } else {
        (block.addr() + need.header).wrapping_neg() & (need.align - 1)
    };
    while gap != 0 && gap < need.min_block {
        gap += need.align;
    }
    let end = gap.checked_add(need.size)?;
    (end <= available).then_some(gap)
}

/// A boundary-tag heap whose placement policy is `P` — [`FirstFit`](crate::FirstFit),
/// [`NextFit`](crate::NextFit), [`AddressOrderedFirstFit`](crate::AddressOrderedFirstFit)
/// or [`BestFit`](crate::BestFit) — over regions of memory it is given.
///
/// ```text
///  a region:
///  ┌────────┬──────────────────┬──────────────────────────┬──────────────┬──────────┐
///  │ Region │ header │ payload │ header  │ index… │ footer │ header       │ sentinel │
///  │ header │ size   │ (used)  │size|FREE│        │ size   │ … |PREV_FREE │ size 0   │
///  └────────┴──────────────────┴──────────────────────────┴──────────────┴──────────┘
///            allocated block      free block                next block knows
/// ```
///
/// **Blocks.** Every block starts with a one-word header: its size (a multiple of
/// [`GRANULE`]) and three flag bits. An allocated block carries nothing else, so a request
/// of `n` bytes takes `n + WORD` bytes rounded up to the granule, at least the policy's
/// smallest block ([`MIN_BLOCK`](Self::MIN_BLOCK)). A free block also carries the policy's
/// index words and a footer repeating its size, and the block after it has its
/// `PREV_FREE` bit set (dlmalloc's scheme): a free merges with both neighbours in O(1).
///
/// **Coalescing.** Immediate by default: no two free blocks are ever adjacent. With
/// `DEFERRED = true` ([`Deferred`](crate::Deferred)), small blocks freed go to one of
/// [`QUICK_BINS`] exact-size quick lists instead, stay marked allocated to their
/// neighbours, and are handed out again to a request of exactly their size in O(1). They
/// are merged (all of them) when an allocation finds no block in the index and merging
/// would make one fit, and when the heap becomes empty.
///
/// **Alignment.** Payloads are granule-aligned. A larger alignment takes a block where an
/// aligned payload fits with either nothing or a whole free block in front; that leading
/// gap stays free. No alignment is refused as such: a request fails only when no block can
/// hold it.
///
/// **Regions.** [`add_region`](Self::add_region) at any time; each region starts with a
/// header of four words (plus the `checked` map) and ends with a one-word sentinel;
/// blocks never merge across regions.
pub struct FitHeap<P: Policy, const DEFERRED: bool = false> {
    index: P,
    regions: RegionList<Region>,
    capacity: usize,
    in_use: usize,
    /// Usable bytes of the blocks in the index (their sizes less one header each).
    free: usize,
    /// Heads of the quick lists (deferred coalescing): bin `i` holds blocks of
    /// `MIN_BLOCK + i * GRANULE` bytes, linked through their first payload word.
    quick: [Block; QUICK_BINS],
    /// Blocks on the quick lists, and their usable bytes.
    quick_blocks: usize,
    quick_free: usize,
}

/// A [`FitHeap`] with deferred coalescing: frees of small blocks wait on exact-size quick
/// lists and are merged when an allocation needs them merged.
pub type Deferred<P> = FitHeap<P, true>;

// SAFETY: the heap exclusively manages its regions; nothing is tied to a thread.
unsafe impl<P: Policy, const DEFERRED: bool> Send for FitHeap<P, DEFERRED> {}

// SAFETY: a heap built by `add_region` manages only that region (and its own value).
unsafe impl<P: Policy, const DEFERRED: bool> heapkit_core::FromRegion for FitHeap<P, DEFERRED> {
    type Params = ();

    unsafe fn from_region(start: NonNull<u8>, len: usize, (): ()) -> Result<Self, ConfigError> {
        let mut heap = Self::new();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.add_region(start, len)? };
        Ok(heap)
    }
}

impl<P: Policy, const DEFERRED: bool> Default for FitHeap<P, DEFERRED> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Policy, const DEFERRED: bool> FitHeap<P, DEFERRED> {
    /// The smallest block, header and footer included: four words (32 bytes on 64-bit
    /// targets) for every policy.
    pub const MIN_BLOCK: usize = P::MIN_BLOCK;

    /// A heap with no memory yet: give it some with [`add_region`](Self::add_region).
    /// `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Self {
            index: P::NEW,
            regions: RegionList::new(),
            capacity: 0,
            in_use: 0,
            free: 0,
            quick: [Block::NONE; QUICK_BINS],
            quick_blocks: 0,
            quick_free: 0,
        }
    }

    /// A heap over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_region(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        let mut heap = Self::new();
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { heap.add_region(start, len)? };
        Ok(heap)
    }

    /// What `grow_in_place` and `shrink_in_place` start from: the block at `ptr`, its
    /// size, and the size `new_layout` needs (checked first under `checked`).
    ///
    /// # Safety
    /// As for those functions: `ptr` is a live block of ours allocated for `old_layout`.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))] // `checked` validates
    unsafe fn resizing(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
        operation: &str,
    ) -> Result<(Block, usize, usize), AllocError> {
        #[cfg(feature = "checked")]
        self.validate(ptr, old_layout, operation);
        let _ = (old_layout, operation);
        let needed = Self::block_size(new_layout.size()).ok_or(AllocError)?;
        let block = Block::of_payload(ptr.as_ptr());
        // SAFETY: per the caller, an allocated block of ours: its header precedes it.
        Ok((block, unsafe { block.size() }, needed))
    }

    /// The block size for a request of `size` bytes: header added, rounded up to the
    /// granule, at least [`MIN_BLOCK`](Self::MIN_BLOCK). `None` past the address space.
    pub const fn block_size(size: usize) -> Option<usize> {
        match size.checked_add(WORD + GRANULE - 1) {
            Some(padded) => {
                let rounded = padded & !(GRANULE - 1);
                Some(if rounded < P::MIN_BLOCK {
                    P::MIN_BLOCK
                } else {
                    rounded
                })
            }
            None => None,
        }
    }

    fn need(layout: Layout) -> Option<Need> {
        Some(Need {
            size: Self::block_size(layout.size())?,
            align: layout.align(),
            min_block: P::MIN_BLOCK,
            header: WORD,
        })
    }

    /// Calls `each` with the payload address and usable size of every free block in the
    /// policy's index, in the order the policy searches them (list order from the front,
    /// from the rover for next fit, address order, size order). Blocks waiting on quick
    /// lists are not included. O(free blocks).
    pub fn for_each_free(&self, mut each: impl FnMut(usize, usize)) {
        self.index.for_each(&mut |block| {
            // SAFETY: blocks in the index are free blocks with valid headers.
            let size = unsafe { block.size() };
            each(block.payload().addr(), size - WORD);
        });
    }

    /// Blocks waiting on the quick lists (always 0 without deferred coalescing).
    pub const fn quick_blocks(&self) -> usize {
        self.quick_blocks
    }

    /// Cuts the block for `need` out of `block`, a free block the index found that fits.
    ///
    /// # Safety
    /// `block` is in the index and `gap_for(block, its size, need)` is `Some`.
    unsafe fn take(&mut self, block: Block, need: Need) -> NonNull<[u8]> {
        self.index.taking(block);
        // SAFETY: per the caller; the gap and the tail are carved inside the block, each
        // empty or a whole block; the block's predecessor is not free (free blocks never
        // touch), and its successor already says "free before me".
        unsafe {
            let available = block.size();
            let gap = gap_for(block, available, need).unwrap_or(0);
            let mut slot = Some(self.index.remove(block, available));
            self.free -= available - WORD;
            let (at, avail) = if gap == 0 {
                (block, available)
            } else {
                block.set_free(gap);
                self.index.insert(block, gap, slot.take());
                self.free += gap - WORD;
                (block.add(gap), available - gap)
            };
            let rest = avail - need.size;
            let size = if rest >= P::MIN_BLOCK {
                let tail = at.add(need.size);
                tail.set_free(rest);
                self.index.insert(tail, rest, slot.take());
                self.free += rest - WORD;
                need.size
            } else {
                at.add(avail).set_prev_free(false);
                avail
            };
            at.set_header(size | if gap == 0 { 0 } else { PREV_FREE });
            self.allocated(at, size)
        }
    }

    /// Books `block` (`size` bytes, header written) as allocated and returns its payload.
    fn allocated(&mut self, block: Block, size: usize) -> NonNull<[u8]> {
        self.in_use += size - WORD;
        #[cfg(feature = "checked")]
        self.mark_start(block, true);
        // SAFETY: a block's payload follows its header inside a region: not null.
        let payload = unsafe { NonNull::new_unchecked(block.payload()) };
        NonNull::slice_from_raw_parts(payload, size - WORD)
    }

    /// Frees `block` (`size` bytes, marked allocated or quick) at once, merging it with
    /// free neighbours: the boundary-tag free.
    ///
    /// # Safety
    /// `block` is a block of ours that is allocated (or on no quick list any more).
    unsafe fn release(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller, `block` is a block of ours, so a header follows it
        // (block or sentinel), and `PREV_FREE` says when the word before it is a free
        // block's footer. Neighbours leave the index before any header is rewritten.
        unsafe {
            let next = block.add(size);
            let next_header = next.header();
            let next_free = next_header & FREE != 0;
            let next_size = next_header & !FLAGS;
            let next_slot = if next_free {
                self.free -= next_size - WORD;
                Some(self.index.remove(next, next_size))
            } else {
                None
            };
            let tail = if next_free { next_size } else { 0 };
            if block.prev_free() {
                let prev_size = block.footer_before();
                let prev = block.sub(prev_size);
                let prev_slot = self.index.remove(prev, prev_size);
                self.free -= prev_size - WORD;
                let slot = match next_slot {
                    Some(gone) => P::merge_slots(gone, prev_slot),
                    None => prev_slot,
                };
                let merged = prev_size + size + tail;
                prev.set_free(merged);
                if !next_free {
                    next.set_prev_free(true);
                }
                self.index.insert(prev, merged, Some(slot));
                self.free += merged - WORD;
            } else {
                let merged = size + tail;
                block.set_free(merged);
                if !next_free {
                    next.set_prev_free(true);
                }
                self.index.insert(block, merged, next_slot);
                self.free += merged - WORD;
            }
        }
    }

    /// The quick list for blocks of `size` bytes, if any.
    fn quick_bin(size: usize) -> Option<usize> {
        let bin = size.checked_sub(P::MIN_BLOCK)? / GRANULE;
        (bin < QUICK_BINS).then_some(bin)
    }

    /// Serves `need` from its quick list, if it has an exact block there.
    fn pop_quick(&mut self, need: Need) -> Option<NonNull<[u8]>> {
        if need.align > GRANULE {
            return None;
        }
        let bin = Self::quick_bin(need.size)?;
        let block = self.quick[bin];
        if block.is_none() {
            return None;
        }
        // SAFETY: blocks on a quick list are blocks of ours of the bin's size, marked
        // QUICK, their first payload word the list link.
        unsafe {
            self.quick[bin] = block.link(1);
            block.set_header(block.header() & !QUICK);
        }
        self.quick_blocks -= 1;
        self.quick_free -= need.size - WORD;
        Some(self.allocated(block, need.size))
    }

    /// Merges every block waiting on a quick list into the heap.
    fn flush_quick(&mut self) {
        for bin in 0..QUICK_BINS {
            while !self.quick[bin].is_none() {
                let block = self.quick[bin];
                // SAFETY: as in `pop_quick`; the block leaves its list, then is freed.
                unsafe {
                    self.quick[bin] = block.link(1);
                    let size = block.size();
                    block.set_header(block.header() & !QUICK);
                    self.quick_blocks -= 1;
                    self.quick_free -= size - WORD;
                    self.release(block, size);
                }
            }
        }
    }

    /// Whether merging the quick lists would make a block that fits `need`: the run of
    /// free and quick blocks around each quick block, measured without changing anything
    /// (so a request that fails even so leaves the heap as it was). O(blocks in the runs).
    fn merging_would_fit(&self, need: Need) -> bool {
        self.quick.iter().any(|&head| {
            let mut quick = head;
            while !quick.is_none() {
                // SAFETY: quick blocks are blocks of ours; a free block before one is found
                // by its footer; the walk steps block by block up to the first block that
                // is neither free nor quick, at the latest the region's sentinel.
                unsafe {
                    let start = if quick.prev_free() {
                        quick.sub(quick.footer_before())
                    } else {
                        quick
                    };
                    let (mut at, mut run) = (start, 0);
                    loop {
                        let header = at.header();
                        let size = header & !FLAGS;
                        if size == 0 || header & (FREE | QUICK) == 0 {
                            break;
                        }
                        run += size;
                        at = at.add(size);
                    }
                    if gap_for(start, run, need).is_some() {
                        return true;
                    }
                    quick = quick.link(1);
                }
            }
            false
        })
    }
}

// SAFETY: blocks come out of the policy's index, which holds only free memory of our
// regions, or off a quick list of blocks freed to it; a block is split, or merged only
// with free neighbours, so live blocks never overlap; the payload starts granule-aligned,
// or aligned by the gap `gap_for` computed.
unsafe impl<P: Policy, const DEFERRED: bool> Backend for FitHeap<P, DEFERRED> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let need = Self::need(layout).ok_or(AllocError)?;
        if DEFERRED {
            if let Some(block) = self.pop_quick(need) {
                return Ok(block);
            }
        }
        let block = match self.index.find(need) {
            Some(block) => block,
            None if DEFERRED && self.quick_blocks > 0 && self.merging_would_fit(need) => {
                self.flush_quick();
                self.index.find(need).ok_or(AllocError)?
            }
            None => return Err(AllocError),
        };
        // SAFETY: `find` returns a block of the index that fits.
        Ok(unsafe { self.take(block, need) })
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        #[cfg(feature = "checked")]
        {
            self.validate(ptr, layout, "deallocate");
            self.mark_start(Block::of_payload(ptr.as_ptr()), false);
        }
        let _ = layout;
        let block = Block::of_payload(ptr.as_ptr());
        // SAFETY: per the caller, `ptr` is a live block of ours, so its header precedes it.
        let header = unsafe { block.header() };
        // What an O(1) look can catch without `checked`, before anything changes: a block
        // still free or on a quick list (freed twice, unless it merged with the block
        // before it), or a header that is no block's.
        debug_assert!(
            header & (FREE | QUICK) == 0,
            "heapkit-fit: deallocate of {ptr:p}: the block is free already (freed twice?)"
        );
        debug_assert!(
            header & !FLAGS >= P::MIN_BLOCK && (header & !FLAGS) % GRANULE == 0,
            "heapkit-fit: deallocate of {ptr:p}: no block header before the pointer"
        );
        let size = header & !FLAGS;
        self.in_use -= size - WORD;
        if DEFERRED {
            if let Some(bin) = Self::quick_bin(size) {
                // SAFETY: the block is ours and no longer handed out: its first payload
                // word becomes the quick-list link.
                unsafe {
                    block.set_header(block.header() | QUICK);
                    block.set_link(1, self.quick[bin]);
                }
                self.quick[bin] = block;
                self.quick_blocks += 1;
                self.quick_free += size - WORD;
                if self.in_use == 0 {
                    self.flush_quick();
                }
                return;
            }
        }
        // SAFETY: per the caller, an allocated block of ours.
        unsafe { self.release(block, size) };
        if DEFERRED && self.in_use == 0 {
            self.flush_quick();
        }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        let (block, size, needed) = unsafe { self.resizing(ptr, old_layout, new_layout, "grow")? };
        // SAFETY: as in `deallocate`; the next block is absorbed only when free and large
        // enough, and what is left of it stays a free block in its place.
        unsafe {
            if needed <= size {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            let next = block.add(size);
            let next_header = next.header();
            let next_size = next_header & !FLAGS;
            if next_header & FREE == 0 || size + next_size < needed {
                return Err(AllocError);
            }
            let slot = self.index.remove(next, next_size);
            self.free -= next_size - WORD;
            let rest = size + next_size - needed;
            let grown = if rest >= P::MIN_BLOCK {
                let tail = block.add(needed);
                tail.set_free(rest);
                self.index.insert(tail, rest, Some(slot));
                self.free += rest - WORD;
                needed
            } else {
                next.add(next_size).set_prev_free(false);
                size + next_size
            };
            block.set_header(grown | (block.header() & PREV_FREE));
            self.in_use += grown - size;
            Ok(NonNull::slice_from_raw_parts(ptr, grown - WORD))
        }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        let (block, size, needed) =
            unsafe { self.resizing(ptr, old_layout, new_layout, "shrink")? };
        // SAFETY: as in `deallocate`; the tail handed back lies inside the block, merged
        // with the next block when that one is free.
        unsafe {
            if needed >= size {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            let tail = size - needed;
            let next = block.add(size);
            let next_header = next.header();
            let freed = block.add(needed);
            if next_header & FREE != 0 {
                let next_size = next_header & !FLAGS;
                let slot = self.index.remove(next, next_size);
                self.free -= next_size - WORD;
                freed.set_free(tail + next_size);
                self.index.insert(freed, tail + next_size, Some(slot));
                self.free += tail + next_size - WORD;
            } else if tail >= P::MIN_BLOCK {
                freed.set_free(tail);
                next.set_prev_free(true);
                self.index.insert(freed, tail, None);
                self.free += tail - WORD;
            } else {
                return Ok(NonNull::slice_from_raw_parts(ptr, size - WORD));
            }
            block.set_header(needed | (block.header() & PREV_FREE));
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
        let mut largest = self.index.largest();
        if let Some(bin) = self.quick.iter().rposition(|head| !head.is_none()) {
            largest = largest.max(P::MIN_BLOCK + bin * GRANULE);
        }
        let free = self.free + self.quick_free;
        Stats {
            capacity: self.capacity,
            in_use: self.in_use,
            free,
            largest_free: largest.saturating_sub(WORD),
            metadata: self.capacity - self.in_use - free,
        }
    }
}

impl<P: Policy, const DEFERRED: bool> fmt::Debug for FitHeap<P, DEFERRED> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FitHeap")
            .field("policy", &P::NAME)
            .field("deferred", &DEFERRED)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
