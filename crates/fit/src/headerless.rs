//! [`HeaderlessHeap`]: address-ordered first fit and best fit whose allocated blocks carry
//! no header, the boundary tags kept in two bitmaps beside the blocks.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;

use heapkit_core::bits::Bits;
use heapkit_core::region::{RegionHeader, RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

use crate::heap::block::Block;
use crate::heap::{gap_for, Need, CRATE_NAME, FREE, GRANULE, WORD};
use crate::policy::private::Ordered;
use crate::policy::TreePolicy;
use crate::tree::HeaderlessIndex;

/// Address-ordered first fit or best fit (`P`) over regions, with no byte of metadata in
/// an allocated block: a request of `n` bytes takes `n` rounded up to the [`GRANULE`],
/// and a block is freed by the size its [`Layout`] gives.
///
/// ```
/// use core::mem::MaybeUninit;
/// use core::ptr::NonNull;
/// use heapkit_core::{Backend, Layout};
/// use heapkit_fit::{AddressOrderedFirstFit, HeaderlessHeap, GRANULE};
///
/// let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
/// let mut heap = HeaderlessHeap::<AddressOrderedFirstFit>::new();
/// // SAFETY: the buffer outlives the heap and every block it hands out.
/// unsafe { heap.add_region(NonNull::from(&mut buffer).cast(), buffer.len()) }.unwrap();
///
/// let word = Layout::new::<u64>();
/// let a = heap.allocate(word).unwrap();
/// let b = heap.allocate(word).unwrap();
/// // No header: consecutive 8-byte requests are one granule apart.
/// assert_eq!(b.cast::<u8>().as_ptr() as usize - a.cast::<u8>().as_ptr() as usize, GRANULE);
/// // SAFETY: `a` and `b` are live with this layout.
/// unsafe {
///     heap.deallocate(a.cast(), word);
///     heap.deallocate(b.cast(), word);
/// }
/// heap.check().unwrap();
/// assert_eq!(heap.stats().in_use, 0);
/// ```
///
/// **Why.** A [`FitHeap`](crate::FitHeap) block has a one-word header and is at least four
/// words, so a 10-byte string takes 32 bytes on a 64-bit target; on traces of small
/// objects that overhead, not the placement policy, decides the footprint (Johnstone and
/// Wilson's point). Here the same string takes 16.
///
/// **Blocks.** Sizes are whole granules. Free blocks never touch (frees merge at once with
/// both neighbours); each region keeps two bitmaps of one bit per granule, marking the
/// first and the last granule of every free block, so a free finds a free neighbour on
/// either side in O(1). A free block of one granule is its two index links; a larger one
/// also keeps its size in its first and last word, read from whichever end a neighbour
/// meets. The index is the policy's tree for blocks of six words and more, a treap by
/// address for four-word blocks and one for one-granule blocks (see
/// [`AddressOrderedFirstFit`](crate::AddressOrderedFirstFit)): allocate, free and in-place
/// resizing are O(log n) in the free blocks, plus O(r) to find the region of a pointer
/// among r regions.
///
/// **Costs.** Two bits per granule (1/64 of a region on 64-bit targets), a region header of
/// nine words; `checked` adds a third bitmap, of allocated block starts (and two words to
/// the header), and validates a block by scanning the maps to its end, O(size / 1024). A block's size
/// comes only from its layout, so a layout larger or smaller than the block's is caught
/// only under `checked`; so is a pointer into a block. Without it, a pointer outside every
/// region panics (the region has to be found in any case), and other misuse is undefined
/// behaviour, as the [`Backend`] contract says.
pub struct HeaderlessHeap<P: TreePolicy> {
    index: HeaderlessIndex<<P as Ordered>::Order>,
    regions: RegionList<Region>,
    capacity: usize,
    in_use: usize,
    free: usize,
    policy: PhantomData<fn() -> P>,
}

/// Bookkeeping at the start of each region, followed by its bitmaps, then its blocks.
struct Region {
    next: *mut Region,
    /// The memory given, header included.
    span: Span,
    /// The first granule of the blocks (granule-aligned), and how many granules follow.
    first: *mut u8,
    granules: usize,
    /// Bit g: granule g is the first of a free block.
    free_starts: Bits,
    /// Bit g: granule g is the last of a free block.
    free_ends: Bits,
    /// Bit g: an allocated block starts at granule g.
    #[cfg(feature = "checked")]
    used_starts: Bits,
}

// SAFETY: `span` is the memory given and `next` the link written at `add_region`.
unsafe impl RegionHeader for Region {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

/// Bitmaps per region: free starts, free ends, and under `checked` allocated starts.
const MAPS: usize = if cfg!(feature = "checked") { 3 } else { 2 };

impl Region {
    /// The granule holding `addr`, which lies in `first..first + granules * GRANULE`.
    fn granule(&self, addr: usize) -> usize {
        (addr - self.first.addr()) / GRANULE
    }

    /// Whether `addr` lies among the region's blocks.
    fn holds(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.first.addr()) < self.granules * GRANULE
    }

    /// The block starting at granule `g` (at most `granules`), from the region's pointer.
    fn block_at(&self, g: usize) -> Block {
        Block::at(self.first.wrapping_add(g * GRANULE))
    }

    /// The size of the free block starting at granule `g`, if one does (`g` may be
    /// `granules`: none).
    ///
    /// # Safety
    /// The bitmaps and the free blocks' sizes are as the heap wrote them.
    unsafe fn free_from(&self, g: usize) -> Option<usize> {
        if g >= self.granules || !self.free_starts.get(g) {
            return None;
        }
        if self.free_ends.get(g) {
            return Some(GRANULE);
        }
        // SAFETY: a free block of two granules or more keeps its size in its first word.
        Some(unsafe { self.block_at(g).size() })
    }

    /// The start granule and size of the free block that ends just before granule `g`.
    ///
    /// # Safety
    /// As for [`free_from`](Self::free_from).
    unsafe fn free_before(&self, g: usize) -> Option<(usize, usize)> {
        if g == 0 || !self.free_ends.get(g - 1) {
            return None;
        }
        let size = if self.free_starts.get(g - 1) {
            GRANULE
        } else {
            // SAFETY: a free block of two granules or more keeps its size in its last
            // word, the one before granule `g`.
            unsafe { self.block_at(g).sub(WORD).get(0) }
        };
        Some((g - size / GRANULE, size))
    }

    /// Marks `size` bytes from granule `g` as one free block: its edge bits, and from two
    /// granules on its size at both ends.
    ///
    /// # Safety
    /// The bytes are a whole free block of the region, ours to write.
    unsafe fn mark_free(&mut self, g: usize, size: usize) {
        self.free_starts.set(g, true);
        self.free_ends.set(g + size / GRANULE - 1, true);
        if size > GRANULE {
            // SAFETY: per the caller; `set_free` writes the first and the last word.
            unsafe { self.block_at(g).set_free(size) };
        }
    }

    /// Clears the edge bits of the free block of `size` bytes at granule `g`.
    fn unmark_free(&mut self, g: usize, size: usize) {
        self.free_starts.set(g, false);
        self.free_ends.set(g + size / GRANULE - 1, false);
    }
}

// SAFETY: the heap exclusively manages its regions; nothing is tied to a thread.
unsafe impl<P: TreePolicy> Send for HeaderlessHeap<P> {}

// SAFETY: a heap built by `add_region` manages only that region (and its own value).
unsafe impl<P: TreePolicy> heapkit_core::FromRegion for HeaderlessHeap<P> {
    type Params = ();

    unsafe fn from_region(start: NonNull<u8>, len: usize, (): ()) -> Result<Self, ConfigError> {
        let mut heap = Self::new();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.add_region(start, len)? };
        Ok(heap)
    }
}

impl<P: TreePolicy> Default for HeaderlessHeap<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: TreePolicy> HeaderlessHeap<P> {
    /// A heap with no memory yet: give it some with [`add_region`](Self::add_region).
    /// `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Self {
            index: HeaderlessIndex::NEW,
            regions: RegionList::new(),
            capacity: 0,
            in_use: 0,
            free: 0,
            policy: PhantomData,
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

    /// Adds `len` bytes at `start` to the heap. The region can start at any address; it
    /// needs room for its header, its bitmaps and one granule.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the heap or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region reaches past the address space, overlaps one already
    /// added, or is too small; the heap is then unchanged.
    #[allow(clippy::cast_ptr_alignment)] // the offsets below align the header and the maps
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        // One bit per granule of the whole region in each map: a few words more than the
        // blocks need, and no fixed point to solve.
        let map_words = Bits::words_for(len / GRANULE + 1);
        let meta = size_of::<Region>() + MAPS * map_words * WORD;
        let too_small = |needed: usize| ConfigError::RegionTooSmall { needed, given: len };
        let least = meta + align_of::<Region>() + 2 * GRANULE;
        let header_at = span
            .align_up(0, align_of::<Region>())
            .ok_or(too_small(least))?;
        let first = span
            .align_up(header_at + meta, GRANULE)
            .ok_or(too_small(least))?;
        let granules = (len - first) / GRANULE;
        if granules == 0 {
            return Err(too_small(least.max(first + GRANULE)));
        }
        let base = start.as_ptr();
        // SAFETY: every offset is at most `len` (checked above), so the pointers stay in
        // the caller's region, which is ours from now on; the header and maps are aligned.
        unsafe {
            let header = base.add(header_at).cast::<Region>();
            let map = |k: usize| {
                let words = base.add(header_at + size_of::<Region>() + k * map_words * WORD);
                let mut bits = Bits::new(
                    NonNull::new_unchecked(words).cast::<usize>(),
                    map_words * usize::BITS as usize,
                );
                bits.clear_all();
                bits
            };
            header.write(Region {
                next: self.regions.head(),
                span,
                first: base.add(first),
                granules,
                free_starts: map(0),
                free_ends: map(1),
                #[cfg(feature = "checked")]
                used_starts: map(2),
            });
            self.add_free(&mut *header, 0, granules * GRANULE);
            self.regions.push(header);
        }
        self.capacity += len;
        Ok(())
    }

    /// The block size for a request of `size` bytes: rounded up to the granule, one
    /// granule for zero bytes. `None` past the address space.
    pub const fn block_size(size: usize) -> Option<usize> {
        if size == 0 {
            return Some(GRANULE);
        }
        match size.checked_add(GRANULE - 1) {
            Some(padded) => Some(padded & !(GRANULE - 1)),
            None => None,
        }
    }

    /// The block size of a live block's layout. A `Layout`'s size is at most
    /// `isize::MAX`, so the rounding cannot overflow.
    fn block_of(layout: Layout) -> usize {
        (layout.size().max(1) + GRANULE - 1) & !(GRANULE - 1)
    }

    fn need(layout: Layout) -> Need {
        Need {
            size: Self::block_of(layout),
            align: layout.align(),
            min_block: GRANULE,
            header: 0,
        }
    }

    /// The region whose blocks hold `addr`.
    fn region_of(&self, addr: usize) -> Option<*mut Region> {
        self.regions.find(|r| r.holds(addr))
    }

    /// The region of a block handed back, which must have one.
    fn region_of_block(&self, ptr: NonNull<u8>, operation: &str) -> *mut Region {
        match self.region_of(ptr.as_ptr().addr()) {
            Some(region) => region,
            None => {
                panic!("{CRATE_NAME}: invalid {operation} of {ptr:p}: not in any region's blocks")
            }
        }
    }

    /// Calls `each` with the address and size of every free block, in the order the
    /// policy searches them (address order, or size order). O(free blocks).
    pub fn for_each_free(&self, mut each: impl FnMut(usize, usize)) {
        self.index
            .for_each(&mut |block, size| each(block.addr(), size));
    }

    /// Cuts the block for `need` out of `block`, a free block the index found that fits.
    ///
    /// # Safety
    /// `block` is in the index and `gap_for(block, its size, need)` is `Some`.
    unsafe fn take(&mut self, block: Block, need: Need) -> NonNull<[u8]> {
        let Some(region) = self.region_of(block.addr()) else {
            unreachable!("{CRATE_NAME}: a free block outside every region")
        };
        // SAFETY: the region header is ours and nothing else refers to it now; the block
        // is a free block of it, so its size is there to read, and the gap and the tail
        // are carved inside it, each empty or a whole free block.
        unsafe {
            let region = &mut *region;
            let g = region.granule(block.addr());
            let available = region.free_from(g).unwrap_or(0);
            let gap = gap_for(block, available, need).unwrap_or(0);
            self.remove_free(region, g, available);
            if gap != 0 {
                self.add_free(region, g, gap);
            }
            let at = g + gap / GRANULE;
            let rest = available - gap - need.size;
            if rest != 0 {
                self.add_free(region, at + need.size / GRANULE, rest);
            }
            #[cfg(feature = "checked")]
            region.used_starts.set(at, true);
            self.in_use += need.size;
            let payload = NonNull::new_unchecked(region.block_at(at).start());
            NonNull::slice_from_raw_parts(payload, need.size)
        }
    }

    /// Frees `size` bytes from granule `g` of `region`, merging them with free neighbours.
    ///
    /// # Safety
    /// The bytes are ours and in no free block; the region's header is not otherwise
    /// borrowed.
    unsafe fn release(&mut self, region: &mut Region, g: usize, size: usize) {
        // SAFETY: per the caller; the neighbours are found by the edge bitmaps and leave
        // the index before any of their words is rewritten.
        unsafe {
            let (mut start, mut merged) = (g, size);
            let after = g + size / GRANULE;
            if let Some(next) = region.free_from(after) {
                self.remove_free(region, after, next);
                merged += next;
            }
            if let Some((before, prev)) = region.free_before(g) {
                self.remove_free(region, before, prev);
                (start, merged) = (before, merged + prev);
            }
            self.add_free(region, start, merged);
        }
    }

    /// Makes `size` bytes from granule `g` of `region` a free block: marked, indexed,
    /// counted.
    ///
    /// # Safety
    /// As for [`Region::mark_free`]; the block touches no other free block.
    unsafe fn add_free(&mut self, region: &mut Region, g: usize, size: usize) {
        // SAFETY: per the caller; marked first, so a block of two granules or more has its
        // size in its header when the index reads it.
        unsafe {
            region.mark_free(g, size);
            self.index.insert(region.block_at(g), size);
        }
        self.free += size;
    }

    /// Takes the free block of `size` bytes at granule `g` of `region` out of the index,
    /// the bitmaps and the count; its words are the caller's to reuse.
    ///
    /// # Safety
    /// The block is in the index with `size` bytes.
    unsafe fn remove_free(&mut self, region: &mut Region, g: usize, size: usize) {
        // SAFETY: per the caller; the index reads the block's words before anything else
        // rewrites them.
        unsafe { self.index.remove(region.block_at(g), size) };
        region.unmark_free(g, size);
        self.free -= size;
    }

    /// Panics unless `ptr` starts an allocated block of exactly `size` bytes.
    #[cfg(feature = "checked")]
    fn validate(region: &Region, ptr: NonNull<u8>, size: usize, operation: &str) {
        let fail = |why: &str| -> ! {
            panic!("{CRATE_NAME}: invalid {operation} of {ptr:p}: {why}");
        };
        let addr = ptr.as_ptr().addr();
        if (addr - region.first.addr()) % GRANULE != 0 {
            fail("not the start of a block (a pointer into one?)");
        }
        let g = region.granule(addr);
        if !region.used_starts.get(g) {
            if region.free_starts.get(g) {
                fail("the block is free already (freed twice?)");
            }
            fail("not the start of an allocated block (freed twice, or a pointer into one?)");
        }
        let end = g + size / GRANULE;
        if end > region.granules {
            fail("the layout is larger than the block");
        }
        // The next block starts at `end` (or the region ends there): O(bitmap words).
        let next = [&region.used_starts, &region.free_starts]
            .map(|map| map.next_one(g + 1).unwrap_or(usize::MAX))
            .into_iter()
            .fold(region.granules, usize::min);
        if next < end {
            fail("the layout is larger than the block");
        }
        if next > end {
            fail("the layout is smaller than the block");
        }
    }

    /// The region of a live block handed back, its granule, and under `checked` the
    /// block validated against `size`.
    fn live_block(&self, ptr: NonNull<u8>, size: usize, operation: &str) -> (*mut Region, usize) {
        let region = self.region_of_block(ptr, operation);
        // SAFETY: region headers stay valid while the heap lives.
        let r = unsafe { &*region };
        #[cfg(feature = "checked")]
        Self::validate(r, ptr, size, operation);
        let _ = size;
        let g = r.granule(ptr.as_ptr().addr());
        debug_assert!(
            !r.free_starts.get(g),
            "{CRATE_NAME}: {operation} of {ptr:p}: the block is free already (freed twice?)"
        );
        (region, g)
    }

    /// What `grow_in_place` and `shrink_in_place` start from: the live block's region and
    /// granule (validated under `checked`), its size, and the size `new_layout` needs.
    fn resizing(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
        operation: &str,
    ) -> (*mut Region, usize, usize, usize) {
        let size = Self::block_of(old_layout);
        let (region, g) = self.live_block(ptr, size, operation);
        (region, g, size, Self::block_of(new_layout))
    }

    /// Every invariant: per region the edge bitmaps pair up into free blocks that never
    /// touch, each with its size at both ends (and under `checked`, allocated blocks start
    /// exactly where no free block is: at the region's start and after each free block);
    /// the free bytes and the bytes in use add up to the blocks' area; the index holds
    /// exactly the free blocks, in order. Reads only memory inside the regions.
    /// O(free blocks + bitmap words).
    fn check_heap(&self) -> Result<(), Corruption> {
        let (mut free_blocks, mut free_bytes, mut area) = (0usize, 0usize, 0usize);
        for r in self.regions.iter() {
            let corrupt = |g: usize, what| Corruption::new(CRATE_NAME, r.block_at(g).addr(), what);
            // Where the last free block ended (0: the region's start).
            let mut after_free = 0;
            let mut from = 0;
            #[cfg(feature = "checked")]
            let used_start_at =
                |g: usize| g >= r.granules || r.free_starts.get(g) || r.used_starts.get(g);
            while let Some(start) = r.free_starts.next_one(from) {
                if start == after_free && start != 0 {
                    return Err(corrupt(start, "two free blocks touch (not merged)"));
                }
                if r.free_ends.next_one(after_free).is_some_and(|e| e < start) {
                    return Err(corrupt(start, "a free block ends where none started"));
                }
                #[cfg(feature = "checked")]
                if !used_start_at(after_free) {
                    return Err(corrupt(after_free, "no block starts after a free block"));
                }
                // The maps have spare bits past the last granule: a bit there is no block.
                if start >= r.granules {
                    return Err(corrupt(start, "a free block starts past the region's end"));
                }
                let Some(end) = r.free_ends.next_one(start).filter(|&end| end < r.granules) else {
                    return Err(corrupt(start, "a free block runs past the region's end"));
                };
                if r.free_starts.next_one(start + 1).is_some_and(|s| s <= end) {
                    return Err(corrupt(start, "a free block starts inside another"));
                }
                #[cfg(feature = "checked")]
                if r.used_starts.next_one(start).is_some_and(|u| u <= end) {
                    return Err(corrupt(
                        start,
                        "an allocated block starts inside a free block",
                    ));
                }
                let size = (end + 1 - start) * GRANULE;
                if size > GRANULE {
                    let block = r.block_at(start);
                    // SAFETY: both words lie inside the region's blocks.
                    let (header, footer) = unsafe { (block.header(), block.footer(size)) };
                    if header != (size | FREE) {
                        return Err(corrupt(
                            start,
                            "free block's header disagrees with its bitmaps",
                        )
                        .expected(size | FREE, header));
                    }
                    if footer != size {
                        return Err(corrupt(
                            start,
                            "free block's footer disagrees with its bitmaps",
                        )
                        .expected(size, footer));
                    }
                }
                free_blocks += 1;
                free_bytes += size;
                after_free = end + 1;
                from = end + 1;
            }
            if r.free_ends.next_one(after_free).is_some() {
                return Err(corrupt(after_free, "a free block ends where none started"));
            }
            #[cfg(feature = "checked")]
            if after_free < r.granules && !used_start_at(after_free) {
                return Err(corrupt(after_free, "no block starts after a free block"));
            }
            area += r.granules * GRANULE;
        }
        let heap_error = |what| Corruption::new(CRATE_NAME, 0, what);
        if free_bytes != self.free {
            return Err(
                heap_error("free bytes disagree with the bitmaps").expected(free_bytes, self.free)
            );
        }
        if self.in_use + self.free != area {
            return Err(
                heap_error("bytes in use and free do not add up to the blocks")
                    .expected(area, self.in_use + self.free),
            );
        }
        let valid = |block: Block| {
            let r = self.regions.iter().find(|r| r.holds(block.addr()))?;
            if (block.addr() - r.first.addr()) % GRANULE != 0 {
                return None;
            }
            let g = r.granule(block.addr());
            // SAFETY: the bitmaps were checked to pair up, and sizes to match them.
            let size = unsafe { r.free_from(g)? };
            Some((r.block_at(g), size))
        };
        let indexed = self.index.check(&valid, free_blocks)?;
        if indexed != free_blocks {
            return Err(heap_error("the index misses free blocks").expected(free_blocks, indexed));
        }
        Ok(())
    }
}

// SAFETY: blocks come out of the index, which holds only free blocks of our regions; a
// block is split, or merged only with free neighbours, so live blocks never overlap; the
// payload is the block's start, granule-aligned or aligned by the gap `gap_for` computed.
unsafe impl<P: TreePolicy> Backend for HeaderlessHeap<P> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let need = Self::need(layout);
        let block = self.index.find(need).ok_or(AllocError)?;
        // SAFETY: `find` returns a block of the index that fits.
        Ok(unsafe { self.take(block, need) })
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let size = Self::block_of(layout);
        let (region, g) = self.live_block(ptr, size, "deallocate");
        // SAFETY: per the caller, a live block of ours of this layout's size; the region
        // header is not otherwise borrowed.
        unsafe {
            let region = &mut *region;
            #[cfg(feature = "checked")]
            region.used_starts.set(g, false);
            self.in_use -= size;
            self.release(region, g, size);
        }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (region, g, size, needed) = self.resizing(ptr, old_layout, new_layout, "grow");
        if needed <= size {
            return Ok(NonNull::slice_from_raw_parts(ptr, size));
        }
        // SAFETY: the block is ours (per the caller); the next block is absorbed only when
        // free and large enough, and what is left of it stays a free block in its place.
        unsafe {
            let region = &mut *region;
            let after = g + size / GRANULE;
            let next = region.free_from(after).ok_or(AllocError)?;
            if size + next < needed {
                return Err(AllocError);
            }
            self.remove_free(region, after, next);
            let rest = size + next - needed;
            if rest != 0 {
                self.add_free(region, g + needed / GRANULE, rest);
            }
        }
        self.in_use += needed - size;
        Ok(NonNull::slice_from_raw_parts(ptr, needed))
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (region, g, size, needed) = self.resizing(ptr, old_layout, new_layout, "shrink");
        if needed >= size {
            return Ok(NonNull::slice_from_raw_parts(ptr, size));
        }
        self.in_use -= size - needed;
        // SAFETY: the tail is ours (per the caller) and in no free block; the block before
        // it is the one kept, allocated, so only the next block can merge with it.
        unsafe { self.release(&mut *region, g + needed / GRANULE, size - needed) };
        Ok(NonNull::slice_from_raw_parts(ptr, needed))
    }

    fn check(&self) -> Result<(), Corruption> {
        self.check_heap()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.region_of(ptr.as_ptr().addr()).is_some()
    }

    fn stats(&self) -> Stats {
        Stats {
            capacity: self.capacity,
            in_use: self.in_use,
            free: self.free,
            largest_free: self.index.largest(),
            metadata: self.capacity - self.in_use - self.free,
        }
    }
}

impl<P: TreePolicy> fmt::Debug for HeaderlessHeap<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderlessHeap")
            .field("policy", &<P as crate::policy::private::Index>::NAME)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
