//! A block's words: its header (size and two flags), its list links and its footer.
//! Every read and write of them goes through these helpers.

use crate::class::WORD;

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
pub(super) unsafe fn word(block: *mut u8, index: usize) -> *mut usize {
    // SAFETY: per the caller, in bounds of the region; word-aligned since `block` is.
    unsafe { block.add(index * WORD).cast::<usize>() }
}

/// # Safety
/// `block` is a block header inside a region.
#[inline(always)]
pub(super) unsafe fn header(block: *mut u8) -> usize {
    // SAFETY: per the caller.
    unsafe { word(block, 0).read() }
}

/// # Safety
/// As for [`header`].
#[inline(always)]
pub(super) unsafe fn set_header(block: *mut u8, value: usize) {
    // SAFETY: per the caller.
    unsafe { word(block, 0).write(value) }
}

/// Writes a free block's footer: its size, in its last word, where the block after it
/// finds it ([`footer_before`]). The one place a footer is written.
///
/// # Safety
/// `block` is a block of `size` bytes inside a region, free or being freed.
#[inline(always)]
pub(super) unsafe fn set_footer(block: *mut u8, size: usize) {
    // SAFETY: per the caller, the block's last word is inside it.
    unsafe { word(block.add(size - WORD), 0).write(size) }
}

/// A free block's footer, read from the block's own end (for checking it).
///
/// # Safety
/// `block` is a block of `size` bytes inside a region.
#[inline(always)]
pub(super) unsafe fn footer(block: *mut u8, size: usize) -> usize {
    // SAFETY: per the caller, the block's last word is inside it.
    unsafe { word(block.add(size - WORD), 0).read() }
}

/// The footer of the block that ends where `block` starts: its size.
///
/// # Safety
/// The block before `block` is free (`block`'s `PREV_FREE` bit).
#[inline(always)]
pub(super) unsafe fn footer_before(block: *mut u8) -> usize {
    // SAFETY: per the caller, the word before the header is the free block's footer.
    unsafe { word(block.sub(WORD), 0).read() }
}

/// # Safety
/// `block` is a block header inside a region and its link words are ours.
#[inline(always)]
pub(super) unsafe fn link(block: *mut u8, which: usize) -> *mut u8 {
    // SAFETY: per the caller.
    unsafe { word(block, which).cast::<*mut u8>().read() }
}

/// # Safety
/// As for [`link`].
#[inline(always)]
pub(super) unsafe fn set_link(block: *mut u8, which: usize, to: *mut u8) {
    // SAFETY: per the caller.
    unsafe { word(block, which).cast::<*mut u8>().write(to) }
}

pub(super) const NEXT: usize = 1;
pub(super) const PREV: usize = 2;
