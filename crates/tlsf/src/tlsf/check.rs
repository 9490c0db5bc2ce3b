//! [`Backend::check`](heapkit_core::Backend::check): every invariant of the heap, walked.

use heapkit_core::Corruption;

use super::block::Block;
use super::{Classes, Region, Tlsf, CRATE_NAME, FLAGS, FREE, GRANULE, MIN_BLOCK, PREV_FREE, TOP};

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The region holding address `addr` in its blocks, if any.
    #[cfg_attr(not(feature = "checked"), allow(dead_code))]
    pub(super) fn region_of(&self, addr: usize) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.first.addr() < addr && addr < r.sentinel.addr())
    }

    /// The header of `block` and its size, when that size can be followed: a whole
    /// number of granules, at least `MIN_BLOCK`, at most `MAX_BLOCK`, and ending at or
    /// before `end`. Every walk over a region's blocks takes this step, so that a damaged
    /// header stops it instead of sending it to a misaligned word or out of the region.
    ///
    /// # Safety
    ///
    /// `block` is a word-aligned header slot of a region, before its sentinel `end`.
    pub(super) unsafe fn step(block: Block, end: Block) -> Result<(usize, usize), Corruption> {
        let corrupt = |what| Corruption::new(CRATE_NAME, block.addr().addr(), what);
        // SAFETY: per the caller.
        let header = unsafe { block.header() };
        let size = header & !FLAGS;
        let room = end.addr().addr() - block.addr().addr();
        if size < MIN_BLOCK || size % GRANULE != 0 {
            return Err(
                corrupt("block size is not a whole number of granules").expected(MIN_BLOCK, size)
            );
        }
        if size > room || size > Self::MAX_BLOCK {
            return Err(corrupt("block runs past its region's end").expected(room, size));
        }
        Ok((header, size))
    }

    /// Every invariant of the heap, walked block by block and list by list: see
    /// [`Backend::check`]. Reads only memory inside the regions, whatever it finds there.
    pub(super) fn check_heap(&self) -> Result<(), Corruption> {
        let corrupt = |at: Block, what| Corruption::new(CRATE_NAME, at.addr().addr(), what);
        let mut free_blocks = 0usize;
        let mut top_met = false;
        for r in self.regions.iter() {
            let (mut block, end) = (Block::at(r.first), Block::at(r.sentinel));
            let mut prev_free = false;
            while block != end {
                // SAFETY: `block` lies in `first..sentinel` (checked by the step below),
                // word-aligned: a header slot inside the region.
                let (h, size) = unsafe { Self::step(block, end) }?;
                if (h & PREV_FREE != 0) != prev_free {
                    return Err(corrupt(block, "PREV_FREE disagrees with the block before")
                        .expected(usize::from(prev_free), usize::from(h & PREV_FREE != 0)));
                }
                // SAFETY: as for the header above.
                let free = unsafe { block.is_free() };
                if free {
                    if prev_free {
                        return Err(corrupt(block, "two free blocks are adjacent (not merged)"));
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
                }
                if (block == self.top) != (h & TOP != 0) {
                    return Err(corrupt(block, "the top bit disagrees with the top block")
                        .expected(usize::from(block == self.top), usize::from(h & TOP != 0)));
                }
                if block == self.top {
                    if !free {
                        return Err(corrupt(block, "the top block is not free"));
                    }
                    // SAFETY: `size <= room`: at most the sentinel.
                    if unsafe { block.add(size) } != end {
                        return Err(corrupt(block, "the top block does not end its region"));
                    }
                    top_met = true;
                }
                prev_free = free;
                // SAFETY: `size <= room`: at most the sentinel.
                block = unsafe { block.add(size) };
            }
            // SAFETY: the sentinel is a header slot inside the region.
            let sentinel = unsafe { end.header() };
            if sentinel & !PREV_FREE != 0 || (sentinel & PREV_FREE != 0) != prev_free {
                return Err(corrupt(end, "region's end sentinel is damaged")
                    .expected(usize::from(prev_free) * PREV_FREE, sentinel));
            }
        }
        if !self.top.is_none() && !top_met {
            return Err(corrupt(
                self.top,
                "the top block is not a block of any region",
            ));
        }
        // Every free block but the top block is on a list.
        let on_lists = free_blocks - usize::from(top_met);
        let listed = self.check_lists(on_lists)?;
        if listed != on_lists {
            return Err(corrupt(Block::NONE, "free blocks missing from the lists")
                .expected(on_lists, listed));
        }
        Ok(())
    }

    /// Walks every list (at most `bound` nodes in all, so a cycle ends) and checks bitmaps,
    /// links and sizes; returns the nodes seen.
    pub(super) fn check_lists(&self, bound: usize) -> Result<usize, Corruption> {
        let corrupt = |at: Block, what| Corruption::new(CRATE_NAME, at.addr().addr(), what);
        let mut seen = 0;
        for fl in 0..FL {
            let sl_map = self.sl_maps[fl];
            if (self.fl_map >> fl) & 1 != u32::from(sl_map != 0) {
                return Err(
                    corrupt(Block::NONE, "first-level bit disagrees with its lists")
                        .expected(usize::from(sl_map != 0), (self.fl_map >> fl) as usize & 1),
                );
            }
            for sl in 0..SL {
                let head = self.heads[fl][sl];
                if (sl_map >> sl) & 1 != u32::from(!head.is_none()) {
                    return Err(corrupt(head, "second-level bit disagrees with its list")
                        .expected(usize::from(!head.is_none()), (sl_map >> sl) as usize & 1));
                }
                let (mut node, mut prev) = (head, Block::list_head(fl * SL + sl));
                while !node.is_none() {
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
                            node_in_region.header(),
                            node_in_region.prev_in_list(),
                            node_in_region.next_in_list(),
                        )
                    };
                    let size = h & !FLAGS;
                    if h & FREE == 0 || size < MIN_BLOCK || size > Self::MAX_BLOCK {
                        return Err(corrupt(node, "list node is not a free block"));
                    }
                    let list = Classes::<FL, SL>::list_index(size);
                    if list != fl * SL + sl {
                        return Err(
                            corrupt(node, "free block is on the wrong list for its size")
                                .expected(fl * SL + sl, list),
                        );
                    }
                    if back.addr().addr() != prev.addr().addr() {
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
    pub(super) fn region_holding_block(&self, block: Block) -> Option<Block> {
        self.regions.iter().find_map(|r| {
            let offset = block.addr().addr().wrapping_sub(r.first.addr());
            (offset < r.sentinel.addr() - r.first.addr() && offset % GRANULE == 0)
                .then(|| Block::at(r.first.wrapping_add(offset)))
        })
    }
}
