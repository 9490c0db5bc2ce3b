//! [`Buddy`]: power-of-two blocks, split on allocation, merged with their buddy on free.

use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use heapkit_core::bits::Bits;
use heapkit_core::region::{self, RegionList, Span};
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

/// Bitmaps per order: free blocks, and under `checked` allocated blocks.
const BITMAPS: usize = if cfg!(feature = "checked") { 2 } else { 1 };

/// Which of a region's maps a bit is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    /// One bit per block per order: the block is free (on its order's list).
    Free,
    /// Under `checked` only: an allocation of that order starts at the block.
    #[cfg(feature = "checked")]
    Allocated,
}

/// A free block's links, stored in the block: doubly linked, so a buddy found free through
/// the bitmap leaves its list in O(1).
struct FreeNode {
    prev: *mut FreeNode,
    next: *mut FreeNode,
}

/// Bookkeeping at the start of each region: where its blocks are and where its bitmaps are.
struct RegionHeader<const ORDERS: usize> {
    next: *mut RegionHeader<ORDERS>,
    /// The memory given, header and bitmaps included.
    span: Span,
    /// Blocks lie in `start..end`; both multiples of the minimum block.
    start: usize,
    end: usize,
    /// Per order: the address bit 0 of the order's bitmap stands for (`start` rounded down
    /// to the order's block size), and the word where the order's bitmap begins.
    origin: [usize; ORDERS],
    words_at: [usize; ORDERS],
    /// Per order, one bit per block: the block is free (on its order's list).
    free: Bits,
    /// Under `checked`: an allocation of that order starts at the block.
    #[cfg(feature = "checked")]
    allocated: Bits,
}

// SAFETY: `span` is the memory given and `next` the link written at `add_region`.
unsafe impl<const ORDERS: usize> region::RegionHeader for RegionHeader<ORDERS> {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

/// A binary buddy allocator with `ORDERS` block sizes: `min_block << k` for `k` in
/// `0..ORDERS`.
///
/// A request takes the smallest block of at least its size and alignment; a larger free
/// block is split in halves until one fits, the other halves going to their free lists.
/// On free, a block whose buddy (its address XOR its size) is free merges with it into the
/// next order, repeatedly. Free lists are intrusive and doubly linked, and one bit per
/// block per order says whether that block is free, so "is my buddy free?" and taking the
/// buddy off its list are O(1): free is O(orders), allocate is O(orders), with no list
/// scans. A bit mask of non-empty lists finds the smallest usable order with one
/// instruction.
///
/// **Regions.** A region of any size and alignment is carved into the largest aligned
/// power-of-two blocks that fit (nothing is lost beyond one minimum block at each end);
/// [`add_region`](Self::add_region) adds more at any time. Blocks merge only within a
/// region. Each region starts with a small header and its bitmaps.
///
/// **Alignment.** Blocks are aligned to their size in absolute terms, so any alignment up
/// to the largest block is honoured by rounding the order up; beyond it, [`AllocError`].
///
/// **Metadata.** Two bits per minimum block (one per block of each order: 1 + 1/2 + 1/4 +
/// …), so 16 KiB per MiB with 16-byte minimum blocks, 64 bytes per MiB with 4 KiB pages;
/// twice that with `checked`. Plus a header of `48 + 16 * ORDERS` bytes per region.
pub struct Buddy<const ORDERS: usize> {
    min_shift: u32,
    heads: [*mut FreeNode; ORDERS],
    /// Bit `k` set: the order-`k` free list is not empty.
    non_empty: u64,
    regions: RegionList<RegionHeader<ORDERS>>,
    capacity: usize,
    in_use: usize,
    free: usize,
}

// SAFETY: the allocator exclusively manages its regions; nothing is tied to a thread.
unsafe impl<const ORDERS: usize> Send for Buddy<ORDERS> {}

impl<const ORDERS: usize> Buddy<ORDERS> {
    /// The smallest minimum block: a free block holds two links.
    pub const MIN_BLOCK: usize = size_of::<FreeNode>();

    /// An empty allocator whose smallest block is `min_block` bytes; give it memory with
    /// [`add_region`](Self::add_region).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `min_block` is not a power of two or below
    /// [`MIN_BLOCK`](Self::MIN_BLOCK), or `ORDERS` is 0 or more than fits the address space.
    pub const fn new(min_block: usize) -> Result<Self, ConfigError> {
        if !min_block.is_power_of_two() {
            return Err(ConfigError::NotPowerOfTwo {
                what: "minimum block",
                value: min_block,
            });
        }
        if min_block < Self::MIN_BLOCK {
            return Err(ConfigError::BlockTooSmall {
                block: min_block,
                min: Self::MIN_BLOCK,
            });
        }
        let min_shift = min_block.trailing_zeros();
        let max_orders = (usize::BITS - 1 - min_shift) as usize;
        if ORDERS == 0 || ORDERS > max_orders || ORDERS > 64 {
            return Err(ConfigError::OutOfRange {
                what: "orders",
                value: ORDERS,
                min: 1,
                max: if max_orders < 64 { max_orders } else { 64 },
            });
        }
        Ok(Self {
            min_shift,
            heads: [ptr::null_mut(); ORDERS],
            non_empty: 0,
            regions: RegionList::new(),
            capacity: 0,
            in_use: 0,
            free: 0,
        })
    }

    /// An allocator over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new) and [`add_region`](Self::add_region).
    pub fn with_region(
        region: &'static mut [MaybeUninit<u8>],
        min_block: usize,
    ) -> Result<Self, ConfigError> {
        let mut buddy = Self::new(min_block)?;
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { buddy.add_region(start, len)? };
        Ok(buddy)
    }

    /// Size of the smallest block.
    pub fn min_block(&self) -> usize {
        1 << self.min_shift
    }

    /// Size of the largest block.
    pub fn max_block(&self) -> usize {
        self.block_size(ORDERS - 1)
    }

    /// How many free blocks each order's list holds (walks the lists: O(free blocks)).
    pub fn free_blocks_per_order(&self) -> [usize; ORDERS] {
        core::array::from_fn(|order| {
            let mut count = 0;
            let mut node = self.heads[order];
            while !node.is_null() {
                count += 1;
                // SAFETY: nodes on a free list are free blocks holding valid links.
                node = unsafe { (*node).next };
            }
            count
        })
    }

    #[inline]
    fn block_size(&self, order: usize) -> usize {
        1 << (self.min_shift as usize + order)
    }

    /// Adds `len` bytes at `start` to the allocator. The region needs room for its header
    /// and bitmaps and at least one minimum block.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the allocator or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region overlaps one already added or is too small.
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        // Everything below is an offset from the region's start, compared with its length
        // before it is added to an address: a region at the top of the address space must
        // not wrap.
        let min = 1usize << self.min_shift;
        let header_size = size_of::<RegionHeader<ORDERS>>();
        let too_small = |needed: usize| ConfigError::RegionTooSmall { needed, given: len };
        let least = header_size + 2 * min;
        let header_at = span
            .align_up(0, align_of::<RegionHeader<ORDERS>>())
            .ok_or(too_small(least))?;
        let bitmap_at = span
            .align_up(header_at + header_size, align_of::<usize>())
            .ok_or(too_small(least))?;
        // Bitmaps cover a slightly larger area than the blocks will (from just after the
        // header), which keeps their size independent of where the blocks start.
        let tentative_start = span.align_up(bitmap_at, min).ok_or(too_small(least))?;
        let block_end = span
            .align_down_end(tentative_start, min)
            .filter(|end| *end > tentative_start)
            .ok_or(too_small(tentative_start + 2 * min))?;
        // Absolute addresses from here on are at most the region's end: no wrap.
        let block_end_address = span.start() + block_end;
        let mut origin = [0; ORDERS];
        let mut words_at = [0; ORDERS];
        let mut words = 0;
        for order in 0..ORDERS {
            let size = self.block_size(order);
            origin[order] = (span.start() + tentative_start) & !(size - 1);
            words_at[order] = words;
            let blocks = (block_end_address - origin[order]).div_ceil(size);
            words += Bits::words_for(blocks);
        }
        let blocks_start = words
            .checked_mul(BITMAPS * size_of::<usize>())
            .and_then(|bytes| span.align_up(bitmap_at.checked_add(bytes)?, min))
            .filter(|at| *at <= block_end && block_end - *at >= min)
            .ok_or(too_small(
                (bitmap_at + words * BITMAPS * size_of::<usize>()).saturating_add(2 * min),
            ))?;
        // SAFETY: the offsets are inside the region (`align_up` keeps them at most `len`).
        let (header_ptr, bitmap) = unsafe {
            (
                start.as_ptr().add(header_at).cast::<RegionHeader<ORDERS>>(),
                #[allow(clippy::cast_ptr_alignment)] // `bitmap_at` is aligned for usize
                start.as_ptr().add(bitmap_at).cast::<usize>(),
            )
        };
        let bits = words * usize::BITS as usize;
        // SAFETY: header and bitmaps lie inside the region (checked above), aligned; each
        // set of maps is `words` words, the allocated set right after the free one.
        unsafe {
            let mut free = Bits::new(NonNull::new_unchecked(bitmap), bits);
            free.clear_all();
            #[cfg(feature = "checked")]
            let mut allocated = Bits::new(NonNull::new_unchecked(bitmap.add(words)), bits);
            #[cfg(feature = "checked")]
            allocated.clear_all();
            header_ptr.write(RegionHeader {
                next: self.regions.head(),
                span,
                start: span.start() + blocks_start,
                end: block_end_address,
                origin,
                words_at,
                free,
                #[cfg(feature = "checked")]
                allocated,
            });
        }
        // SAFETY: the header was just written inside the region, with `next` the old head.
        unsafe { self.regions.push(header_ptr) };
        self.capacity += len;
        // Carve the largest aligned power-of-two blocks that fit, comparing the room left
        // with the block size (`at + size` can pass the top of the address space).
        let mut at = span.start() + blocks_start;
        while block_end_address - at >= min {
            let mut order = (at.trailing_zeros() - self.min_shift).min(ORDERS as u32 - 1) as usize;
            while self.block_size(order) > block_end_address - at {
                order -= 1;
            }
            // SAFETY: a block inside this region's block area, not in any list yet.
            unsafe { self.push(header_ptr, at, order) };
            self.free += self.block_size(order);
            at += self.block_size(order);
        }
        Ok(())
    }

    /// The order serving `layout`, or `None` beyond the largest block.
    #[inline]
    fn order_for(&self, layout: Layout) -> Option<usize> {
        let needed = layout.size().max(layout.align()).max(1);
        let shift = usize::BITS - (needed - 1).leading_zeros();
        let order = shift.saturating_sub(self.min_shift) as usize;
        (order < ORDERS).then_some(order)
    }

    /// The region holding `address`.
    #[inline]
    fn region_of(&self, address: usize) -> Option<*mut RegionHeader<ORDERS>> {
        self.regions
            .find(|header| (header.start..header.end).contains(&address))
    }

    /// The bit of `address`'s block at `order`, in either set of maps.
    ///
    /// # Safety
    ///
    /// `region` is live and holds `address`.
    #[inline]
    unsafe fn bit_index(
        &self,
        region: *mut RegionHeader<ORDERS>,
        address: usize,
        order: usize,
    ) -> usize {
        // SAFETY: the caller's guarantee.
        let header = unsafe { &*region };
        let index = (address - header.origin[order]) >> (self.min_shift as usize + order);
        // Inside the maps: the order's map covers the whole block area.
        header.words_at[order] * usize::BITS as usize + index
    }

    /// # Safety
    ///
    /// As for [`bit_index`](Self::bit_index).
    #[inline]
    unsafe fn test(
        &self,
        region: *mut RegionHeader<ORDERS>,
        address: usize,
        order: usize,
        set: Set,
    ) -> bool {
        // SAFETY: forwarded; the index is inside the maps.
        unsafe {
            let index = self.bit_index(region, address, order);
            match set {
                Set::Free => (*region).free.get_unchecked(index),
                #[cfg(feature = "checked")]
                Set::Allocated => (*region).allocated.get_unchecked(index),
            }
        }
    }

    /// # Safety
    ///
    /// As for [`bit_index`](Self::bit_index).
    #[inline]
    unsafe fn mark(
        &mut self,
        region: *mut RegionHeader<ORDERS>,
        address: usize,
        order: usize,
        set: Set,
        value: bool,
    ) {
        // SAFETY: forwarded; the index is inside the maps, which are ours.
        unsafe {
            let index = self.bit_index(region, address, order);
            match set {
                Set::Free => (*region).free.set_unchecked(index, value),
                #[cfg(feature = "checked")]
                Set::Allocated => (*region).allocated.set_unchecked(index, value),
            }
        }
    }

    /// Puts a free block on its list and sets its free bit.
    ///
    /// # Safety
    ///
    /// `address` starts a block of `order` inside `region`, not on any list.
    #[inline]
    unsafe fn push(&mut self, region: *mut RegionHeader<ORDERS>, address: usize, order: usize) {
        let node = Self::node_at(region, address);
        let head = self.heads[order];
        // SAFETY: the block is free and ours: its first bytes hold the links.
        unsafe {
            node.write(FreeNode {
                prev: ptr::null_mut(),
                next: head,
            });
            if !head.is_null() {
                (*head).prev = node;
            }
            self.mark(region, address, order, Set::Free, true);
        }
        self.heads[order] = node;
        self.non_empty |= 1 << order;
    }

    /// Takes a free block off its list and clears its free bit.
    ///
    /// # Safety
    ///
    /// `address` starts a free block of `order` inside `region`.
    #[inline]
    unsafe fn unlink(&mut self, region: *mut RegionHeader<ORDERS>, address: usize, order: usize) {
        let node = Self::node_at(region, address);
        // SAFETY: the block is on the order's list, so its links are valid.
        unsafe {
            let FreeNode { prev, next } = node.read();
            if prev.is_null() {
                self.heads[order] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            self.mark(region, address, order, Set::Free, false);
        }
        if self.heads[order].is_null() {
            self.non_empty &= !(1 << order);
        }
    }

    /// A pointer to the block at `address`, with the region's provenance.
    #[inline]
    fn node_at(region: *mut RegionHeader<ORDERS>, address: usize) -> *mut FreeNode {
        region.with_addr(address).cast::<FreeNode>()
    }

    /// Checks a block handed back; with `checked`, panics naming the problem. Returns its
    /// region and order.
    #[inline]
    #[track_caller]
    fn live_block(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        operation: &str,
    ) -> (*mut RegionHeader<ORDERS>, usize) {
        let fail = |reason| -> ! {
            heapkit_core::invalid_use("heapkit-buddy", operation, ptr.as_ptr(), reason)
        };
        let address = ptr.as_ptr().addr();
        let Some(region) = self.region_of(address) else {
            fail("pointer is outside this allocator's regions");
        };
        let Some(order) = self.order_for(layout) else {
            fail("layout is larger than the largest block");
        };
        #[cfg(feature = "checked")]
        {
            if address & (self.block_size(order) - 1) != 0 {
                fail("pointer is not the start of a block of this layout");
            }
            // SAFETY: `region` holds `address`.
            if !unsafe { self.test(region, address, order, Set::Allocated) } {
                // SAFETY: as above.
                if unsafe { self.test(region, address, order, Set::Free) } {
                    fail("block is already free");
                }
                fail("no block of this layout was allocated here");
            }
        }
        (region, order)
    }

    /// Records (`checked` only) that the block at `address` of `order` is allocated or not.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))]
    fn mark_allocated(
        &mut self,
        region: *mut RegionHeader<ORDERS>,
        address: usize,
        order: usize,
        value: bool,
    ) {
        #[cfg(feature = "checked")]
        // SAFETY: `region` holds `address`; the allocated maps exist under `checked`.
        unsafe {
            self.mark(region, address, order, Set::Allocated, value)
        };
        #[cfg(not(feature = "checked"))]
        let _ = (region, address, order, value);
    }

    /// Whether the block at `address` of `order` lies in `region` and is free.
    #[inline]
    fn is_free(&self, region: *mut RegionHeader<ORDERS>, address: usize, order: usize) -> bool {
        // SAFETY: headers are live and ours.
        let header = unsafe { &*region };
        // Lengths compared, not `address + size`: the topmost block's end is 2^N.
        address >= header.start
            && address < header.end
            && header.end - address >= self.block_size(order)
            // SAFETY: `region` holds `address` (just checked).
            && unsafe { self.test(region, address, order, Set::Free) }
    }
}

// SAFETY: a block is handed out only after leaving its free list (each free block is on
// exactly one list once); split halves and merges keep blocks disjoint and inside their
// region; blocks are aligned to their size in absolute terms.
unsafe impl<const ORDERS: usize> Backend for Buddy<ORDERS> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let order = self.order_for(layout).ok_or(AllocError)?;
        let usable = self.non_empty >> order;
        if usable == 0 {
            return Err(AllocError);
        }
        let mut current = order + usable.trailing_zeros() as usize;
        let node = self.heads[current];
        let address = node.addr();
        let region = self.region_of(address).ok_or(AllocError)?;
        // SAFETY: `node` heads a non-empty list of `region`.
        unsafe { self.unlink(region, address, current) };
        while current > order {
            current -= 1;
            // SAFETY: the upper half of a block we own, at the next order down.
            unsafe { self.push(region, address + self.block_size(current), current) };
        }
        self.mark_allocated(region, address, order, true);
        let size = self.block_size(order);
        self.free -= size;
        self.in_use += size;
        let block = NonNull::new(node.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(block, size))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let (region, mut order) = self.live_block(ptr, layout, "deallocate");
        let mut address = ptr.as_ptr().addr();
        self.mark_allocated(region, address, order, false);
        let size = self.block_size(order);
        self.in_use -= size;
        self.free += size;
        while order + 1 < ORDERS {
            let buddy = address ^ self.block_size(order);
            if !self.is_free(region, buddy, order) {
                break;
            }
            // SAFETY: the buddy is a free block of this order in this region.
            unsafe { self.unlink(region, buddy, order) };
            address = address.min(buddy);
            order += 1;
        }
        // SAFETY: the merged block is ours, free, and on no list.
        unsafe { self.push(region, address, order) };
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (region, order) = self.live_block(ptr, old_layout, "grow");
        let target = self.order_for(new_layout).ok_or(AllocError)?;
        let address = ptr.as_ptr().addr();
        // Growing in place needs the block to be the lower half at every order up to the
        // target, with every upper half free.
        // Aligned to the target first: then `address + size(k)` for `k < target` lies
        // inside the target block and cannot wrap.
        if address & (self.block_size(target) - 1) != 0 {
            return Err(AllocError);
        }
        let free_above =
            (order..target).all(|k| self.is_free(region, address + self.block_size(k), k));
        if !free_above {
            return Err(AllocError);
        }
        for k in order..target {
            // SAFETY: checked free just above.
            unsafe { self.unlink(region, address + self.block_size(k), k) };
        }
        let grown = self.block_size(target) - self.block_size(order);
        self.free -= grown;
        self.in_use += grown;
        self.mark_allocated(region, address, order, false);
        self.mark_allocated(region, address, target, true);
        Ok(NonNull::slice_from_raw_parts(ptr, self.block_size(target)))
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (region, order) = self.live_block(ptr, old_layout, "shrink");
        let target = self.order_for(new_layout).ok_or(AllocError)?.min(order);
        let address = ptr.as_ptr().addr();
        for k in (target..order).rev() {
            // SAFETY: the upper half at order `k` is ours; its buddy (our lower half) is in
            // use, so it cannot merge.
            unsafe { self.push(region, address + self.block_size(k), k) };
        }
        let shrunk = self.block_size(order) - self.block_size(target);
        self.free += shrunk;
        self.in_use -= shrunk;
        self.mark_allocated(region, address, order, false);
        self.mark_allocated(region, address, target, true);
        Ok(NonNull::slice_from_raw_parts(ptr, self.block_size(target)))
    }

    fn max_align(&self) -> usize {
        self.max_block()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.region_of(ptr.as_ptr().addr()).is_some()
    }

    fn stats(&self) -> Stats {
        let largest_free = match self.non_empty {
            0 => 0,
            mask => self.block_size(63 - mask.leading_zeros() as usize),
        };
        Stats {
            capacity: self.capacity,
            in_use: self.in_use,
            free: self.free,
            largest_free,
            metadata: self.capacity - self.in_use - self.free,
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        let corrupt = |at: usize, what| Corruption::new("heapkit-buddy", at, what);
        // Free bits in every region's bitmaps: one per free block, whatever its order.
        let mut free_bits = 0usize;
        for header in self.regions.iter() {
            free_bits += header.free.count_ones();
        }
        let (mut listed, mut free_bytes) = (0usize, 0usize);
        for order in 0..ORDERS {
            let head = self.heads[order];
            if (self.non_empty >> order) & 1 != u64::from(!head.is_null()) {
                return Err(corrupt(head.addr(), "non-empty mask disagrees with a list")
                    .expected(usize::from(!head.is_null()), order));
            }
            let size = self.block_size(order);
            let (mut node, mut prev): (*mut FreeNode, *mut FreeNode) = (head, ptr::null_mut());
            while !node.is_null() {
                listed += 1;
                let address = node.addr();
                if listed > free_bits {
                    return Err(corrupt(
                        address,
                        "lists hold more blocks than the bitmaps mark free (a cycle?)",
                    )
                    .expected(free_bits, listed));
                }
                let Some(region) = self
                    .region_of(address)
                    .filter(|_| address & (size - 1) == 0)
                    .filter(|&r| self.is_free(r, address, order))
                else {
                    return Err(
                        corrupt(address, "list node is not a free block of its order")
                            .expected(size, order),
                    );
                };
                let buddy = address ^ size;
                if order + 1 < ORDERS && self.is_free(region, buddy, order) {
                    return Err(corrupt(
                        address,
                        "a free block and its free buddy were not merged",
                    ));
                }
                // Links may hold stray writes: only the address is trusted, and the node
                // read is rebuilt from its region's own pointer.
                let node_in_region = region.cast::<FreeNode>().with_addr(address);
                // SAFETY: a free block of this region (its free bit is set): its first
                // words hold its links.
                let (back, next) = unsafe { ((*node_in_region).prev, (*node_in_region).next) };
                if back.addr() != prev.addr() {
                    return Err(corrupt(address, "list node's back link is wrong"));
                }
                free_bytes += size;
                (prev, node) = (node, next);
            }
        }
        if listed != free_bits {
            return Err(
                corrupt(0, "free blocks marked in the bitmaps but on no list")
                    .expected(free_bits, listed),
            );
        }
        if free_bytes != self.free {
            return Err(corrupt(0, "free byte count differs from the lists")
                .expected(free_bytes, self.free));
        }
        Ok(())
    }
}

impl<const ORDERS: usize> fmt::Debug for Buddy<ORDERS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buddy")
            .field("min_block", &self.min_block())
            .field("orders", &ORDERS)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

// SAFETY: a buddy built by `add_region` manages only that region (and its own value).
unsafe impl<const ORDERS: usize> heapkit_core::FromRegion for Buddy<ORDERS> {
    /// The smallest block.
    type Params = usize;

    unsafe fn from_region(
        start: NonNull<u8>,
        len: usize,
        min_block: usize,
    ) -> Result<Self, ConfigError> {
        let mut buddy = Self::new(min_block)?;
        // SAFETY: forwarded caller guarantees.
        unsafe { buddy.add_region(start, len)? };
        Ok(buddy)
    }
}
