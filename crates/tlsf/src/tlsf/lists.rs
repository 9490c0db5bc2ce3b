//! The segregated lists and their bitmaps: linking, unlinking and moving free blocks.

use super::block::Block;
use super::{Classes, Tlsf};

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
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

    /// The head of list `index` (`fl * SL + sl`: the heads laid end to end).
    ///
    /// # Safety
    ///
    /// `index < FL * SL`: from `list_index` of a block size (blocks never exceed
    /// `MAX_BLOCK`), from `find_list`, or from a [`Block::list_head`] back link.
    #[inline(always)]
    pub(super) unsafe fn head_at(&mut self, index: usize) -> &mut Block {
        debug_assert!(
            index < FL * SL,
            "list {index} out of range (a damaged back link?)"
        );
        // SAFETY: in bounds, per the caller.
        unsafe { self.heads.as_flattened_mut().get_unchecked_mut(index) }
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
        unsafe { self.link_free_in(block, size, Classes::<FL, SL>::list_index(size)) }
    }

    /// [`link_free`](Self::link_free) with the block's list already known.
    ///
    /// # Safety
    ///
    /// As for `link_free`; `list` is `list_index(size)`.
    #[inline(always)]
    pub(super) unsafe fn link_free_in(&mut self, block: Block, size: usize, list: usize) {
        // SAFETY: per the caller the block's words are ours; the head is a free block.
        unsafe {
            let head = self.head_at(list);
            let first = *head;
            *head = block;
            block.set_free(size);
            block.set_next_in_list(first);
            block.set_prev_in_list(Block::list_head(list));
            // The list's bits are set whether or not it was empty, and the old first
            // block's back link goes to a spare word when there was none: no branch on
            // whether the list was empty, which a heap of mixed small sizes makes as good
            // as random (the lab's mixed workload: 12.0 -> 10.5 ns per call).
            let (fl, sl) = Classes::<FL, SL>::split(list);
            *self.sl_map_mut(fl) |= 1 << sl;
            self.fl_map |= 1 << fl;
            *self.back_link_of(first) = block;
        }
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

    /// Makes `block` (`size` bytes, off the lists) the top block; the old top block, if
    /// any, goes on its list.
    ///
    /// # Safety
    ///
    /// As for [`insert`](Self::insert).
    #[inline(always)]
    pub(super) unsafe fn make_top(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller; the old top block is a free block off the lists.
        unsafe {
            let old = self.top;
            if !old.is_none() {
                self.link_free(old, old.size());
            }
            self.set_top(block, size);
            block.add(size).set_prev_free(true);
        }
    }

    /// Makes free memory `block..block + size` the top block: its header (with the top
    /// bit) and footer, and `self.top`, written together so that the new top block's bit
    /// and the pointer never disagree. The old top block's header keeps its bit: every
    /// caller rewrites that header or makes it part of this block (the old top block is
    /// listed, merged into this one, or handed out).
    ///
    /// # Safety
    ///
    /// As for [`Block::set_top`]; the block is off the lists and ends its region.
    #[inline(always)]
    pub(super) unsafe fn set_top(&mut self, block: Block, size: usize) {
        // SAFETY: per the caller.
        unsafe { block.set_top(size) };
        self.top = block;
    }

    /// Takes a free block off its list, whichever it is: the back link names the block
    /// before it or, for a list's first block, the list. Its header and the next block's
    /// `PREV_FREE` bit are left for the caller to rewrite.
    ///
    /// # Safety
    ///
    /// `block` is on a list.
    #[inline(always)]
    pub(super) unsafe fn unlink(&mut self, block: Block) {
        // SAFETY: per the caller, `block` and its list neighbours are free blocks, and a
        // list-head back link names a list in range.
        unsafe {
            let next = block.next_in_list();
            let prev = block.prev_in_list();
            *self.back_link_of(next) = prev;
            if let Some(index) = prev.as_list_head() {
                *self.head_at(index) = next;
                self.clear_if_emptied(index, next.is_none());
            } else {
                prev.set_next_in_list(next);
            }
        }
    }

    /// Clears the bitmap bits of list `list` when `emptied` (it has just lost its last
    /// block), without a branch, for `unlink`, as `link_free_in` sets them. (`pop_head`
    /// keeps its branch: taking an exact fit empties its list in a pattern the branch
    /// predictor learns, and there the unconditional writes measured slower.)
    ///
    /// # Safety
    ///
    /// `list < FL * SL`.
    #[inline(always)]
    pub(super) unsafe fn clear_if_emptied(&mut self, list: usize, emptied: bool) {
        let (fl, sl) = Classes::<FL, SL>::split(list);
        // SAFETY: per the caller.
        let map = unsafe { self.sl_map_mut(fl) };
        *map &= !(u32::from(emptied) << sl);
        let class_emptied = *map == 0;
        self.fl_map &= !(u32::from(class_emptied) << fl);
    }

    /// Where a new back link of `next` goes: its back-link word, or a spare word when
    /// there is no `next` (the end of a list). Chosen without a branch, as in
    /// [`clear_if_emptied`](Self::clear_if_emptied).
    ///
    /// # Safety
    ///
    /// `next` is none or a free block.
    #[inline(always)]
    unsafe fn back_link_of(&mut self, next: Block) -> *mut Block {
        if next.is_none() {
            core::ptr::addr_of_mut!(self.spare_link)
        } else {
            // SAFETY: per the caller, a free block's link words are ours.
            unsafe { next.prev_link() }
        }
    }

    /// Takes the first block off list `list`.
    ///
    /// # Safety
    ///
    /// The list is not empty, and `list < FL * SL`.
    #[inline(always)]
    pub(super) unsafe fn pop_head(&mut self, list: usize) {
        // SAFETY: per the caller, the head is a free block; its successor too, if any.
        unsafe {
            let next = self.head_at(list).next_in_list();
            *self.head_at(list) = next;
            if next.is_none() {
                self.clear_if_emptied(list, true);
            } else {
                next.set_prev_in_list(Block::list_head(list));
            }
        }
    }

    /// Moves the first block of list `list` to `to`, now `to_size` bytes and still
    /// of that list: its node changes address, the list and bitmaps stay. What a split
    /// leaving its tail in the same list costs instead of a pop and a link.
    ///
    /// # Safety
    ///
    /// As for [`relocate`](Self::relocate), with `from` the head of list `list`.
    #[inline(always)]
    pub(super) unsafe fn move_head(&mut self, list: usize, from: Block, to: Block, to_size: usize) {
        // SAFETY: per the caller; the link is read before anything at `to` is written.
        unsafe {
            let next = from.next_in_list();
            to.set_next_in_list(next);
            to.set_prev_in_list(Block::list_head(list));
            if !next.is_none() {
                next.set_prev_in_list(to);
            }
            *self.head_at(list) = to;
            to.set_free(to_size);
        }
    }

    /// Moves free block `from` to `to` with size `to_size`, both in `from`'s list: the
    /// list node changes address, the bitmaps stay as they are.
    ///
    /// # Safety
    ///
    /// `from` is on a list; `to..to + to_size` is free memory of the region (it may
    /// overlap `from`) whose size maps to the same list; the block before `to` is in use
    /// and the one after it knows it follows a free block.
    #[inline(always)]
    pub(super) unsafe fn relocate(&mut self, from: Block, to: Block, to_size: usize) {
        // SAFETY: per the caller; both links are read before anything at `to` is written.
        unsafe {
            let next = from.next_in_list();
            let prev = from.prev_in_list();
            to.set_next_in_list(next);
            to.set_prev_in_list(prev);
            if !next.is_none() {
                next.set_prev_in_list(to);
            }
            if let Some(index) = prev.as_list_head() {
                *self.head_at(index) = to;
            } else {
                prev.set_next_in_list(to);
            }
            to.set_free(to_size);
        }
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
        let (list, same) = Classes::<FL, SL>::list_index_sharing(to_size, from_size);
        // SAFETY: per the caller.
        unsafe {
            if same {
                self.relocate(from, to, to_size);
            } else {
                self.unlink(from);
                self.link_free_in(to, to_size, list);
            }
        }
    }

    /// Grows free block `block` (on a list) in place from `old_size` to `new_size` bytes:
    /// a new header and footer when its list stays the same (keeping its place in the
    /// list), else a move to the front of its new list.
    ///
    /// # Safety
    ///
    /// `block` is on a list with `old_size`; the bytes up to `new_size` are free memory of
    /// its region, and the block after them knows it follows a free block.
    #[inline(always)]
    pub(super) unsafe fn resize_free(&mut self, block: Block, old_size: usize, new_size: usize) {
        let (list, same) = Classes::<FL, SL>::list_index_sharing(new_size, old_size);
        // SAFETY: per the caller; the header and footer written are the block's first and
        // last words, inside the free memory it now spans.
        unsafe {
            if same {
                block.set_free(new_size);
            } else {
                self.unlink(block);
                self.link_free_in(block, new_size, list);
            }
        }
    }
}
