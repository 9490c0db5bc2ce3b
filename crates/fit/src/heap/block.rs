//! A block: its header (size and flags), the link words of a free block and its footer.
//! Every read and write of them goes through [`Block`]'s accessors.

use core::ptr;

use super::{FLAGS, FREE, PREV_FREE, WORD};

/// A block, addressed by its header word; the payload starts one word later.
///
/// ```text
///  used:   │ size | prev_free        │ payload …                        │
///  free:   │ size | FREE             │ link 1 │ link 2 │ (3) │ (4) │ … │ size │
///  quick:  │ size | QUICK | prev_fr. │ next quick │ …                       │
///            header                                               footer ┘
/// ```
///
/// A free block's words after the header belong to the policy's index (list links, or a
/// tree node's children, height and subtree maximum); its last word repeats its size (the
/// footer), which is how the block after it finds its start. Block addresses are `WORD`
/// past a granule boundary, so payloads are granule-aligned and every word is aligned.
///
/// A `Block` is only an address: every accessor is `unsafe`, with the contract that the
/// words it touches are a block's words inside one of the heap's regions. The null block
/// ([`Block::NONE`]) ends a list or a subtree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Block(*mut u8);

impl Block {
    /// The end of a list, an empty subtree.
    pub(crate) const NONE: Self = Self(ptr::null_mut());

    /// The block whose header is at `header`.
    #[inline(always)]
    pub(crate) const fn at(header: *mut u8) -> Self {
        Self(header)
    }

    /// The block whose payload starts at `payload`. Wrapping: any pointer may be asked
    /// about, and only a block's own payload gives a block.
    #[inline(always)]
    pub(crate) fn of_payload(payload: *mut u8) -> Self {
        Self(payload.wrapping_sub(WORD))
    }

    /// The header's address as a number (the key of address order).
    #[inline(always)]
    pub(crate) fn addr(self) -> usize {
        self.0.addr()
    }

    /// The block's first byte (its header's, in a [`FitHeap`](crate::FitHeap)).
    #[inline(always)]
    pub(crate) fn start(self) -> *mut u8 {
        self.0
    }

    /// The payload's address.
    #[inline(always)]
    pub(crate) fn payload(self) -> *mut u8 {
        self.0.wrapping_add(WORD)
    }

    #[inline(always)]
    pub(crate) fn is_none(self) -> bool {
        self.0.is_null()
    }

    /// The block `offset` bytes further on.
    ///
    /// # Safety
    /// The result lies inside the same region (its sentinel at most).
    #[inline(always)]
    pub(crate) unsafe fn add(self, offset: usize) -> Self {
        // SAFETY: per the caller.
        Self(unsafe { self.0.add(offset) })
    }

    /// The block `offset` bytes before this one.
    ///
    /// # Safety
    /// As for [`add`](Self::add).
    #[inline(always)]
    pub(crate) unsafe fn sub(self, offset: usize) -> Self {
        // SAFETY: per the caller.
        Self(unsafe { self.0.sub(offset) })
    }

    /// The word `index` words past the header.
    ///
    /// # Safety
    /// The word lies inside the block's region.
    #[inline(always)]
    #[allow(clippy::cast_ptr_alignment)]
    unsafe fn word(self, index: usize) -> *mut usize {
        // SAFETY: per the caller, in bounds of the region; word-aligned since blocks are.
        unsafe { self.0.add(index * WORD).cast::<usize>() }
    }

    /// Reads word `index` of the block.
    ///
    /// # Safety
    /// As for [`word`](Self::word).
    #[inline(always)]
    pub(crate) unsafe fn get(self, index: usize) -> usize {
        // SAFETY: per the caller.
        unsafe { self.word(index).read() }
    }

    /// Writes word `index` of the block.
    ///
    /// # Safety
    /// As for [`word`](Self::word), and the word is ours to write.
    #[inline(always)]
    pub(crate) unsafe fn put(self, index: usize, value: usize) {
        // SAFETY: per the caller.
        unsafe { self.word(index).write(value) }
    }

    /// Reads word `index` of the block as a block pointer (a link).
    ///
    /// # Safety
    /// As for [`word`](Self::word).
    #[inline(always)]
    pub(crate) unsafe fn link(self, index: usize) -> Self {
        // SAFETY: per the caller; links are stored as pointers, keeping their provenance.
        unsafe { self.word(index).cast::<Self>().read() }
    }

    /// Writes word `index` of the block as a block pointer (a link).
    ///
    /// # Safety
    /// As for [`put`](Self::put).
    #[inline(always)]
    pub(crate) unsafe fn set_link(self, index: usize, to: Self) {
        // SAFETY: per the caller.
        unsafe { self.word(index).cast::<Self>().write(to) }
    }

    /// The raw header: size and flags.
    ///
    /// # Safety
    /// The block's header is a word inside a region (a block or a sentinel).
    #[inline(always)]
    pub(crate) unsafe fn header(self) -> usize {
        // SAFETY: per the caller.
        unsafe { self.get(0) }
    }

    /// # Safety
    /// As for [`header`](Self::header), and the block is ours to rewrite.
    #[inline(always)]
    pub(crate) unsafe fn set_header(self, value: usize) {
        // SAFETY: per the caller.
        unsafe { self.put(0, value) }
    }

    /// Bytes from this header to the next one.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline(always)]
    pub(crate) unsafe fn size(self) -> usize {
        // SAFETY: per the caller.
        unsafe { self.header() & !FLAGS }
    }

    /// Whether the block before this one is free (its footer precedes this header).
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline(always)]
    pub(crate) unsafe fn prev_free(self) -> bool {
        // SAFETY: per the caller.
        unsafe { self.header() & PREV_FREE != 0 }
    }

    /// Sets or clears the `PREV_FREE` flag, keeping the rest of the header.
    ///
    /// # Safety
    /// As for [`set_header`](Self::set_header).
    #[inline(always)]
    pub(crate) unsafe fn set_prev_free(self, prev_free: bool) {
        // SAFETY: per the caller.
        unsafe {
            let h = self.header() & !PREV_FREE;
            self.set_header(if prev_free { h | PREV_FREE } else { h });
        }
    }

    /// Writes a free block's header and footer: the one place a footer is written. A
    /// free block's predecessor is never free (free blocks merge), so no `PREV_FREE`.
    ///
    /// # Safety
    /// `size` bytes from the block are free memory of one region.
    #[inline(always)]
    pub(crate) unsafe fn set_free(self, size: usize) {
        // SAFETY: per the caller, the block's first and last words are inside it.
        unsafe {
            self.set_header(size | FREE);
            self.add(size - WORD).put(0, size);
        }
    }

    /// A free block's footer, read from the block's own end.
    ///
    /// # Safety
    /// The block spans `size` bytes of a region.
    #[inline(always)]
    pub(crate) unsafe fn footer(self, size: usize) -> usize {
        // SAFETY: per the caller, the block's last word is inside it.
        unsafe { self.add(size - WORD).get(0) }
    }

    /// The footer of the block that ends where this one starts: its size.
    ///
    /// # Safety
    /// The block before this one is free ([`prev_free`](Self::prev_free)).
    #[inline(always)]
    pub(crate) unsafe fn footer_before(self) -> usize {
        // SAFETY: per the caller, the word before the header is the free block's footer.
        unsafe { self.sub(WORD).get(0) }
    }
}
