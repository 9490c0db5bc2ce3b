//! A block: its header (size and three flags), its list links and its footer.
//! Every read and write of them goes through [`Block`]'s accessors.

use core::ptr;

use super::{FLAGS, FREE, PREV_FREE, TOP, WORD};

/// A block, addressed by its header word; the payload starts one word later.
///
/// ```text
///  used:  │ size | prev_free │ payload …                              │
///  free:  │ size | FREE      │ next_in_list │ prev_in_list │ … │ size │
///           header                                           footer ┘
/// ```
///
/// Free blocks hold two list links after the header and their size in their last word
/// (the footer), which is how the block after them finds their start. Block addresses are
/// `WORD` past a granule boundary, so payloads are granule-aligned; being word-aligned by
/// construction is what lets the accessors cast the address to `*mut usize`.
///
/// A `Block` is only an address: every accessor is `unsafe`, with the contract that the
/// words it touches are a block's words inside one of the allocator's regions. The null
/// block ([`Block::NONE`]) ends a list, and the first block of a list links back to
/// [`Block::list_head`] of its list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(super) struct Block(*mut u8);

impl Block {
    /// The end of a list.
    pub(super) const NONE: Self = Self(ptr::null_mut());

    /// The block whose header is at `header`.
    #[inline(always)]
    pub(super) const fn at(header: *mut u8) -> Self {
        Self(header)
    }

    /// The block whose payload starts at `payload`. Wrapping: any pointer may be asked
    /// about, and only a block's own payload gives a block.
    #[inline(always)]
    pub(super) fn of_payload(payload: *mut u8) -> Self {
        Self(payload.wrapping_sub(WORD))
    }

    /// The header's address.
    #[inline(always)]
    pub(super) const fn addr(self) -> *mut u8 {
        self.0
    }

    /// The payload's address.
    #[inline(always)]
    pub(super) fn payload(self) -> *mut u8 {
        self.0.wrapping_add(WORD)
    }

    #[inline(always)]
    pub(super) fn is_none(self) -> bool {
        self.0.is_null()
    }

    /// The back link of the first block of list `index` (`fl * SL + sl`): not an address
    /// but the list's number, tagged in the low bit (block addresses are word-aligned, so
    /// never odd). Unlinking a block then needs no size class: a back link names either
    /// the block before it or the list head to rewrite.
    #[inline(always)]
    pub(super) const fn list_head(index: usize) -> Self {
        Self(ptr::without_provenance_mut(index << 1 | 1))
    }

    /// The list number a back link names, if it names a list head rather than a block.
    #[inline(always)]
    pub(super) fn as_list_head(self) -> Option<usize> {
        let addr = self.0.addr();
        (addr & 1 != 0).then_some(addr >> 1)
    }

    /// The block `offset` bytes further on (`offset` a block size or a gap).
    ///
    /// # Safety
    /// The result lies inside the same region (its sentinel at most).
    #[inline(always)]
    pub(super) unsafe fn add(self, offset: usize) -> Self {
        // SAFETY: per the caller.
        Self(unsafe { self.0.add(offset) })
    }

    /// The block `offset` bytes before this one.
    ///
    /// # Safety
    /// As for [`add`](Self::add).
    #[inline(always)]
    pub(super) unsafe fn sub(self, offset: usize) -> Self {
        // SAFETY: per the caller.
        Self(unsafe { self.0.sub(offset) })
    }

    /// The word `index` words past the header.
    ///
    /// # Safety
    /// The block is inside a region and the word lies in the same region.
    #[inline(always)]
    #[allow(clippy::cast_ptr_alignment)]
    unsafe fn word(self, index: usize) -> *mut usize {
        // SAFETY: per the caller, in bounds of the region; word-aligned since blocks are.
        unsafe { self.0.add(index * WORD).cast::<usize>() }
    }

    /// The raw header: size and flags.
    ///
    /// # Safety
    /// The block's header is a word inside a region (a block or a sentinel).
    #[inline(always)]
    pub(super) unsafe fn header(self) -> usize {
        // SAFETY: per the caller.
        unsafe { self.word(0).read() }
    }

    /// # Safety
    /// As for [`header`](Self::header), and the block is ours to rewrite.
    #[inline(always)]
    pub(super) unsafe fn set_header(self, value: usize) {
        // SAFETY: per the caller.
        unsafe { self.word(0).write(value) }
    }

    /// Bytes from this header to the next one.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline(always)]
    pub(super) unsafe fn size(self) -> usize {
        // SAFETY: per the caller.
        unsafe { self.header() & !FLAGS }
    }

    /// # Safety
    /// As for [`header`](Self::header).
    #[inline(always)]
    pub(super) unsafe fn is_free(self) -> bool {
        // SAFETY: per the caller.
        unsafe { self.header() & FREE != 0 }
    }

    /// Whether the block before this one is free (its footer precedes this header).
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[cfg(feature = "checked")]
    #[inline(always)]
    pub(super) unsafe fn prev_free(self) -> bool {
        // SAFETY: per the caller.
        unsafe { self.header() & PREV_FREE != 0 }
    }

    /// Sets or clears the `PREV_FREE` flag, keeping the rest of the header.
    ///
    /// # Safety
    /// As for [`set_header`](Self::set_header).
    #[inline(always)]
    pub(super) unsafe fn set_prev_free(self, prev_free: bool) {
        // SAFETY: per the caller.
        unsafe {
            let h = self.header() & !PREV_FREE;
            self.set_header(if prev_free { h | PREV_FREE } else { h });
        }
    }

    /// Marks the block in use with `size` bytes, keeping its `PREV_FREE` flag.
    ///
    /// # Safety
    /// As for [`set_header`](Self::set_header).
    #[inline(always)]
    pub(super) unsafe fn set_used(self, size: usize) {
        // SAFETY: per the caller.
        unsafe { self.set_header(size | (self.header() & PREV_FREE)) }
    }

    /// Writes a free block's header and footer: the one place a footer is written. A
    /// free block's predecessor is never free (free blocks merge), so no `PREV_FREE`.
    ///
    /// # Safety
    /// `size` bytes from the block are free memory of one region.
    #[inline(always)]
    pub(super) unsafe fn set_free(self, size: usize) {
        // SAFETY: per the caller, the block's first and last words are inside it.
        unsafe {
            self.set_header(size | FREE);
            self.add(size - WORD).word(0).write(size);
        }
    }

    /// [`set_free`](Self::set_free) for the top block: its header says so too.
    ///
    /// # Safety
    /// As for `set_free`.
    #[inline(always)]
    pub(super) unsafe fn set_top(self, size: usize) {
        // SAFETY: per the caller.
        unsafe {
            self.set_header(size | FREE | TOP);
            self.add(size - WORD).word(0).write(size);
        }
    }

    /// A free block's footer, read from the block's own end (for checking it).
    ///
    /// # Safety
    /// The block spans `size` bytes of a region.
    #[inline(always)]
    pub(super) unsafe fn footer(self, size: usize) -> usize {
        // SAFETY: per the caller, the block's last word is inside it.
        unsafe { self.add(size - WORD).word(0).read() }
    }

    /// The footer of the block that ends where this one starts: its size.
    ///
    /// # Safety
    /// The block before this one is free ([`prev_free`](Self::prev_free)).
    #[inline(always)]
    pub(super) unsafe fn footer_before(self) -> usize {
        // SAFETY: per the caller, the word before the header is the free block's footer.
        unsafe { self.sub(WORD).word(0).read() }
    }

    /// # Safety
    /// The block is free (its link words are list links).
    #[inline(always)]
    pub(super) unsafe fn next_in_list(self) -> Self {
        // SAFETY: per the caller.
        unsafe { self.word(1).cast::<Self>().read() }
    }

    /// # Safety
    /// As for [`next_in_list`](Self::next_in_list).
    #[inline(always)]
    pub(super) unsafe fn prev_in_list(self) -> Self {
        // SAFETY: per the caller.
        unsafe { self.word(2).cast::<Self>().read() }
    }

    /// Where the back link is stored.
    ///
    /// # Safety
    /// The block is free or being freed: its link words are ours.
    #[inline(always)]
    pub(super) unsafe fn prev_link(self) -> *mut Self {
        // SAFETY: per the caller.
        unsafe { self.word(2).cast::<Self>() }
    }

    /// # Safety
    /// The block is free or being freed: its link words are ours.
    #[inline(always)]
    pub(super) unsafe fn set_next_in_list(self, to: Self) {
        // SAFETY: per the caller.
        unsafe { self.word(1).cast::<Self>().write(to) }
    }

    /// # Safety
    /// As for [`set_next_in_list`](Self::set_next_in_list).
    #[inline(always)]
    pub(super) unsafe fn set_prev_in_list(self, to: Self) {
        // SAFETY: per the caller.
        unsafe { self.word(2).cast::<Self>().write(to) }
    }

    /// Writes a raw word of the block (tests corrupt heaps with it).
    ///
    /// # Safety
    /// The word is inside the block's region.
    #[cfg(test)]
    pub(super) unsafe fn write_word(self, index: usize, value: usize) {
        // SAFETY: per the caller.
        unsafe { self.word(index).write(value) }
    }
}
