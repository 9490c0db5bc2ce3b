//! The segregated lists and their bitmaps: linking, unlinking and moving free blocks.

use super::block::Block;
use super::{Classes, Tlsf, WORD};

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The head of list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// `fl < FL` and `sl < SL`: indices from `list_of` of a block size (blocks never
    /// exceed `MAX_BLOCK`) or from `find_list`.
    #[inline(always)]
    pub(super) unsafe fn head(&mut self, fl: usize, sl: usize) -> &mut Block {
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
    pub(super) unsafe fn sl_map(&self, fl: usize) -> u32 {
        debug_assert!(fl < FL);
        // SAFETY: in bounds, per the caller.
        unsafe { *self.sl_maps.get_unchecked(fl) }
    }

    /// # Safety
    ///
    /// As for [`sl_map`](Self::sl_map).
    #[inline(always)]
    pub(super) unsafe fn sl_map_mut(&mut self, fl: usize) -> &mut u32 {
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
    pub(super) unsafe fn link_free(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller.
        unsafe { self.link_free_in(block, size, Classes::<FL, SL>::list_of(size)) }
    }

    /// [`link_free`](Self::link_free) with the block's list already known.
    ///
    /// # Safety
    ///
    /// As for `link_free`; `(fl, sl)` is `list_of(size)`.
    #[inline(always)]
    pub(super) unsafe fn link_free_in(
        &mut self,
        block: Block,
        size: usize,
        (fl, sl): (usize, usize),
    ) {
        // SAFETY: per the caller the block's words are ours; the head is a free block.
        unsafe {
            let head = self.head(fl, sl);
            let first = *head;
            *head = block;
            block.set_free(size);
            block.set_next_in_list(first);
            block.set_prev_in_list(Block::NONE);
            if first.is_none() {
                // The list was empty: its bits were clear. (A list with blocks has both
                // set already, so most links skip two read-modify-writes.)
                *self.sl_map_mut(fl) |= 1 << sl;
                self.fl_map |= 1 << fl;
            } else {
                first.set_prev_in_list(block);
            }
        }
        self.free += size - WORD;
    }

    /// [`link_free`](Self::link_free), then tells the next block.
    ///
    /// # Safety
    ///
    /// As for `link_free`, and a valid header follows the block.
    #[inline(always)]
    pub(super) unsafe fn insert(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller.
        unsafe {
            self.link_free(block, size);
            block.add(size).set_prev_free(true);
        }
    }

    /// Takes a free block of `size` off its list. Its header and the next block's
    /// `PREV_FREE` bit are left for the caller to rewrite.
    ///
    /// # Safety
    ///
    /// `block` is on a list, with size `size`.
    #[inline(always)]
    pub(super) unsafe fn unlink(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller.
        unsafe { self.unlink_from(block, size, Classes::<FL, SL>::list_of(size)) }
    }

    /// [`unlink`](Self::unlink) with the block's list already known.
    ///
    /// # Safety
    ///
    /// As for `unlink`; `(fl, sl)` is `list_of(size)`.
    #[inline(always)]
    pub(super) unsafe fn unlink_from(
        &mut self,
        block: Block,
        size: usize,
        (fl, sl): (usize, usize),
    ) {
        // SAFETY: per the caller, `block` and its list neighbours are free blocks.
        unsafe {
            let next = block.next_in_list();
            let prev = block.prev_in_list();
            if !next.is_none() {
                next.set_prev_in_list(prev);
            }
            if prev.is_none() {
                *self.head(fl, sl) = next;
                if next.is_none() {
                    self.mark_empty(fl, sl);
                }
            } else {
                prev.set_next_in_list(next);
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
    pub(super) unsafe fn mark_empty(&mut self, fl: usize, sl: usize) {
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
    pub(super) unsafe fn pop_head(&mut self, fl: usize, sl: usize, size: usize) {
        // SAFETY: per the caller, the head is a free block; its successor too, if any.
        unsafe {
            let head = self.head(fl, sl);
            let next = head.next_in_list();
            *head = next;
            if next.is_none() {
                self.mark_empty(fl, sl);
            } else {
                next.set_prev_in_list(Block::NONE);
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
    pub(super) unsafe fn relocate(
        &mut self,
        from: Block,
        from_size: usize,
        to: Block,
        to_size: usize,
        (fl, sl): (usize, usize),
    ) {
        // SAFETY: per the caller; both links are read before anything at `to` is written.
        unsafe {
            let next = from.next_in_list();
            let prev = from.prev_in_list();
            to.set_next_in_list(next);
            to.set_prev_in_list(prev);
            if !next.is_none() {
                next.set_prev_in_list(to);
            }
            if prev.is_none() {
                *self.head(fl, sl) = to;
            } else {
                prev.set_next_in_list(to);
            }
            to.set_free(to_size);
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
    pub(super) unsafe fn replace_free(
        &mut self,
        from: Block,
        from_size: usize,
        to: Block,
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
    pub(super) unsafe fn resize_free(&mut self, block: Block, old_size: usize, new_size: usize) {
        let list = Classes::<FL, SL>::list_of(new_size);
        let old_list = Classes::<FL, SL>::list_of(old_size);
        // SAFETY: per the caller.
        unsafe {
            if list == old_list {
                block.set_free(new_size);
                self.free = self.free + new_size - old_size;
            } else {
                self.unlink_from(block, old_size, old_list);
                self.link_free_in(block, new_size, list);
            }
        }
    }
}
