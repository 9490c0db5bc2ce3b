//! [`Backend::check`](heapkit_core::Backend::check): every invariant of the heap, walked;
//! and, with `checked`, the map of allocated block starts that validates every pointer
//! handed back.

#[cfg(feature = "checked")]
use core::alloc::Layout;
#[cfg(feature = "checked")]
use core::ptr::NonNull;

use heapkit_core::Corruption;

use super::block::Block;
use super::regions::Region;
use super::{FitHeap, CRATE_NAME, FLAGS, FREE, GRANULE, PREV_FREE, QUICK, QUICK_BINS, WORD};
use crate::policy::Policy;

impl<P: Policy, const DEFERRED: bool> FitHeap<P, DEFERRED> {
    /// The region whose blocks hold address `addr`, if any.
    pub(super) fn region_of(&self, addr: usize) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.first.addr() <= addr && addr < r.sentinel.addr())
    }

    /// `block` rebuilt from its region's pointer, if it is a block position of some
    /// region (a whole number of granules past `first`, before the sentinel), with its
    /// header.
    fn block_slot(&self, block: Block) -> Option<(Block, usize, &Region)> {
        let region = self.region_of(block.addr())?;
        let offset = block.addr() - region.first.addr();
        if offset % GRANULE != 0 {
            return None;
        }
        let at = Block::at(region.first.wrapping_add(offset));
        // SAFETY: a block position inside the region: a word of region memory.
        Some((at, unsafe { at.header() }, region))
    }

    /// Every invariant of the heap, walked block by block, then the index and the quick
    /// lists: see [`Backend::check`](heapkit_core::Backend::check). Reads only memory
    /// inside the regions, whatever it finds there.
    #[allow(clippy::too_many_lines)] // one walk, one invariant after another
    pub(super) fn check_heap(&self) -> Result<(), Corruption> {
        let corrupt = |at: Block, what| Corruption::new(CRATE_NAME, at.addr(), what);
        let (mut free_blocks, mut free_bytes, mut used_bytes) = (0usize, 0usize, 0usize);
        let (mut quick_blocks, mut quick_bytes) = (0usize, 0usize);
        for r in self.regions.iter() {
            let (mut block, end) = (Block::at(r.first), Block::at(r.sentinel));
            let mut prev_free = false;
            #[cfg(feature = "checked")]
            let mut starts = 0usize;
            while block != end {
                // SAFETY: `block` lies in `first..sentinel` (checked by the step below),
                // word-aligned: a header slot inside the region.
                let h = unsafe { block.header() };
                let size = h & !FLAGS;
                let room = end.addr() - block.addr();
                if size < P::MIN_BLOCK || size % GRANULE != 0 {
                    return Err(
                        corrupt(block, "block size is not a whole number of granules")
                            .expected(P::MIN_BLOCK, size),
                    );
                }
                if size > room {
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
                    if h & QUICK != 0 {
                        return Err(corrupt(block, "a free block is also marked quick"));
                    }
                    // SAFETY: `size <= room`: the footer is the block's last word, inside.
                    let footer = unsafe { block.footer(size) };
                    if footer != size {
                        return Err(
                            corrupt(block, "free block's footer differs from its header")
                                .expected(size, footer),
                        );
                    }
                    free_blocks += 1;
                    free_bytes += size - WORD;
                } else if h & QUICK != 0 {
                    if !DEFERRED || Self::quick_bin(size).is_none() {
                        return Err(corrupt(block, "a block is marked quick but cannot be"));
                    }
                    quick_blocks += 1;
                    quick_bytes += size - WORD;
                } else {
                    used_bytes += size - WORD;
                }
                #[cfg(feature = "checked")]
                {
                    // The map `validate` trusts: a bit at every allocated block's start.
                    let allocated = h & (FREE | QUICK) == 0;
                    let index = (block.addr() - r.first.addr()) / GRANULE;
                    if r.starts.get(index) != allocated {
                        return Err(corrupt(
                            block,
                            "the map of allocated block starts disagrees with the block",
                        ));
                    }
                    starts += usize::from(allocated);
                }
                prev_free = free;
                // SAFETY: `size <= room`: at most the sentinel.
                block = unsafe { block.add(size) };
            }
            #[cfg(feature = "checked")]
            if r.starts.count_ones() != starts {
                return Err(corrupt(
                    Block::at(r.first),
                    "the map of allocated block starts marks a place no block starts",
                )
                .expected(starts, r.starts.count_ones()));
            }
            // SAFETY: the sentinel is a header slot inside the region.
            let sentinel = unsafe { end.header() };
            if sentinel & !PREV_FREE != 0 || (sentinel & PREV_FREE != 0) != prev_free {
                return Err(corrupt(end, "region's end sentinel is damaged")
                    .expected(usize::from(prev_free) * PREV_FREE, sentinel));
            }
        }
        // The node rebuilt from its region's pointer: the index reads it through that, not
        // through whatever pointer a (possibly damaged) link held.
        let valid = |node: Block| {
            let (at, h, region) = self.block_slot(node)?;
            let size = h & !FLAGS;
            (h & (FREE | QUICK) == FREE
                && size >= P::MIN_BLOCK
                && size <= region.sentinel.addr() - node.addr())
            .then_some((at, size))
        };
        let indexed = self.index.check(&valid, free_blocks)?;
        if indexed != free_blocks {
            return Err(corrupt(Block::NONE, "free blocks missing from the index")
                .expected(free_blocks, indexed));
        }
        self.check_quick(quick_blocks)?;
        let counts = [
            (
                free_bytes,
                self.free,
                "free byte count differs from the blocks",
            ),
            (
                used_bytes,
                self.in_use,
                "in-use byte count differs from the blocks",
            ),
            (
                quick_blocks,
                self.quick_blocks,
                "quick block count differs from the blocks",
            ),
            (
                quick_bytes,
                self.quick_free,
                "quick byte count differs from the blocks",
            ),
        ];
        for (walked, kept, what) in counts {
            if walked != kept {
                return Err(corrupt(Block::NONE, what).expected(walked, kept));
            }
        }
        Ok(())
    }

    /// Walks the quick lists (at most `bound` nodes in all): every node a quick block of
    /// its bin's size.
    fn check_quick(&self, bound: usize) -> Result<(), Corruption> {
        let corrupt = |at: Block, what| Corruption::new(CRATE_NAME, at.addr(), what);
        let mut seen = 0;
        for bin in 0..QUICK_BINS {
            let mut node = self.quick[bin];
            while !node.is_none() {
                seen += 1;
                if seen > bound {
                    return Err(corrupt(node, "quick lists hold more blocks than are quick")
                        .expected(bound, seen));
                }
                let Some((node_in_region, h, _)) = self.block_slot(node) else {
                    return Err(corrupt(
                        node,
                        "quick-list node is not a block of any region",
                    ));
                };
                if h & (QUICK | FREE) != QUICK || h & !FLAGS != P::MIN_BLOCK + bin * GRANULE {
                    return Err(corrupt(
                        node,
                        "quick-list node is not a quick block of its bin",
                    ));
                }
                // SAFETY: a block of the region of at least `MIN_BLOCK` bytes: its first
                // payload word is region memory.
                node = unsafe { node_in_region.link(1) };
            }
        }
        if seen == bound {
            Ok(())
        } else {
            Err(
                corrupt(Block::NONE, "quick blocks missing from the quick lists")
                    .expected(bound, seen),
            )
        }
    }
}

#[cfg(feature = "checked")]
impl<P: Policy, const DEFERRED: bool> FitHeap<P, DEFERRED> {
    /// The region and bit of the block starting at `block`, if `block` is a block position
    /// in some region.
    fn start_bit(&self, block: Block) -> Option<(*mut Region, usize)> {
        let addr = block.addr();
        let region = self
            .regions
            .find(|r| r.first.addr() <= addr && addr < r.sentinel.addr())?;
        // SAFETY: a header on the list: live and ours.
        let first = unsafe { (*region).first };
        let offset = addr - first.addr();
        (offset % GRANULE == 0).then_some((region, offset / GRANULE))
    }

    pub(super) fn mark_start(&mut self, block: Block, allocated: bool) {
        let (region, index) = self
            .start_bit(block)
            .expect("heapkit-fit: an allocated block lies outside every region");
        // SAFETY: `start_bit` found the region, whose map holds `index`; the map is ours.
        unsafe { (*region).starts.set(index, allocated) }
    }

    /// The usable size of the allocated block whose payload starts at `ptr`, or `None` if
    /// no allocated block starts there (`checked` only).
    pub fn allocated_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let block = Block::of_payload(ptr.as_ptr());
        let (region, index) = self.start_bit(block)?;
        // SAFETY: `start_bit` found the region and a bit inside its map; a set bit means an
        // allocated block's header is there.
        unsafe { (*region).starts.get(index).then(|| block.size() - WORD) }
    }

    /// Checks that `ptr` is a live block `layout` fits, or panics naming the problem.
    pub(super) fn validate(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) {
        let fail =
            |reason: &str| heapkit_core::invalid_use(CRATE_NAME, operation, ptr.as_ptr(), reason);
        let block = Block::of_payload(ptr.as_ptr());
        let Some(region) = self.region_of(block.addr()) else {
            fail("pointer is not in memory this allocator manages")
        };
        let live = self.start_bit(block).is_some_and(|(region, index)| {
            // SAFETY: `start_bit` found the region, whose map holds `index`.
            unsafe { (*region).starts.get(index) }
        });
        if !live {
            fail("no allocated block starts here (freed already, or a pointer into a block)");
        }
        // SAFETY: an allocated block starts here, so its header is ours to read; the
        // neighbours read below are checked to lie inside the region first.
        unsafe {
            let h = block.header();
            let size = h & !FLAGS;
            if h & (FREE | QUICK) != 0
                || size < P::MIN_BLOCK
                || size % GRANULE != 0
                || size > region.sentinel.addr() - block.addr()
            {
                fail("block header is corrupted");
            }
            if block.add(size).prev_free() {
                fail("block header is corrupted (the next block believes this one is free)");
            }
            if block.prev_free() {
                let prev_size = block.footer_before();
                // A whole number of granules, so the header read below is an aligned word
                // (a damaged footer could hold any number).
                let fits = prev_size >= P::MIN_BLOCK
                    && prev_size % GRANULE == 0
                    && prev_size <= block.addr() - region.first.addr();
                if !fits || block.sub(prev_size).header() != prev_size | FREE {
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

#[cfg(all(test, feature = "checked"))]
mod tests {
    extern crate std;

    use core::alloc::Layout;
    use core::mem::MaybeUninit;
    use core::ptr::NonNull;
    use std::string::ToString;
    use std::vec;

    use heapkit_core::Backend;

    use super::super::FitHeap;
    use crate::BestFit;

    /// A stray write into the map of block starts (it sits in the region, before the first
    /// block) is a corruption `check` reports: `validate` trusts the map, so a bit set
    /// inside a live block would let a free of that interior pointer through.
    #[test]
    fn check_catches_a_damaged_map_of_block_starts() {
        let mut memory = vec![MaybeUninit::<u8>::uninit(); 4096];
        let mut heap = FitHeap::<BestFit>::new();
        let start = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the vector outlives the heap (declared after it, so dropped first).
        unsafe { heap.add_region(start, memory.len()) }.unwrap();
        let layout = Layout::from_size_align(200, 8).unwrap();
        let a = heap.allocate(layout).unwrap();
        heap.check().unwrap();
        let region = heap.regions.find(|_| true).unwrap();
        // SAFETY: the heap's own region header; nothing else uses it during this write.
        unsafe {
            // Granule 2 of the region lies inside `a` (the first block, 208 bytes).
            assert!(!(*region).starts.get(2));
            (*region).starts.set(2, true);
        }
        let error = heap.check().unwrap_err().to_string();
        assert!(error.contains("map of allocated block starts"), "{error}");
        // SAFETY: undo the damage; `a` is live.
        unsafe {
            (*region).starts.set(2, false);
            (*region).starts.set(0, false);
        }
        let error = heap.check().unwrap_err().to_string();
        assert!(error.contains("map of allocated block starts"), "{error}");
        // SAFETY: as above.
        unsafe { (*region).starts.set(0, true) };
        heap.check().unwrap();
        // SAFETY: a live block, freed with its layout.
        unsafe { heap.deallocate(a.cast(), layout) };
    }
}
