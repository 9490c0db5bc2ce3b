//! Allocation on top of a [`Backend`] as the adapters do it: zero-size requests answered here,
//! resizing tried in place first, then by allocate-copy-free.
//!
//! [`Local`](crate::Local) and [`Locked`](crate::Locked) are thin shells around these
//! functions, and combinators that move blocks between children reuse them, so the rules
//! live in one place.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::AllocError;

use crate::Backend;

/// An aligned, non-null pointer that owns nothing: the answer to every zero-size request.
#[inline]
pub fn dangling(layout: Layout) -> NonNull<[u8]> {
    let addr = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: an alignment is a power of two, so never zero.
    let data = unsafe { NonNull::new_unchecked(addr) };
    NonNull::slice_from_raw_parts(data, 0)
}

/// Allocates `layout` from `backend`, answering size 0 without it; zeroes the whole usable
/// length when `zeroed`.
///
/// # Errors
///
/// [`AllocError`] when the backend cannot serve the request.
#[inline(always)]
pub fn allocate<B: Backend + ?Sized>(
    backend: &mut B,
    layout: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    if layout.size() == 0 {
        return Ok(dangling(layout));
    }
    let block = backend.allocate(layout)?;
    if zeroed {
        // SAFETY: the backend just handed out `block.len()` writable bytes.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0, block.len()) };
    }
    Ok(block)
}

/// Frees a block obtained from [`allocate`], [`grow`] or [`shrink`]; size 0 is a no-op.
///
/// # Safety
///
/// `ptr` must come from those functions on this backend and `layout` must fit it.
#[inline(always)]
pub unsafe fn deallocate<B: Backend + ?Sized>(backend: &mut B, ptr: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        check_owned(backend, ptr, "deallocate");
        // SAFETY: non-zero blocks came from `backend.allocate` and `layout` fits (caller).
        unsafe { backend.deallocate(ptr, layout) }
    }
}

/// Enlarges a block: in place when the backend can, otherwise allocate, copy, free.
///
/// With `zeroed`, every byte past `old_layout.size()` in the returned block is zero.
///
/// # Safety
///
/// `ptr` must come from this module's functions on this backend, `old_layout` must fit it,
/// and `new_layout.size() >= old_layout.size()`.
///
/// # Errors
///
/// [`AllocError`] when neither path succeeds; the old block is then untouched and valid.
pub unsafe fn grow<B: Backend + ?Sized>(
    backend: &mut B,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    debug_assert!(
        new_layout.size() >= old_layout.size(),
        "grow to a smaller size"
    );
    if old_layout.size() != 0 {
        check_owned(backend, ptr, "grow");
        if old_layout.align() == new_layout.align() {
            // SAFETY: the caller's guarantees are `grow_in_place`'s, and the alignments match.
            if let Ok(block) = unsafe { backend.grow_in_place(ptr, old_layout, new_layout) } {
                if zeroed {
                    zero_tail(block, old_layout.size());
                }
                return Ok(block);
            }
        }
    }
    // SAFETY: forwarded caller guarantees.
    unsafe {
        if zeroed {
            grow_by_moving::<B, true>(backend, ptr, old_layout, new_layout)
        } else {
            grow_by_moving::<B, false>(backend, ptr, old_layout, new_layout)
        }
    }
}

/// [`grow`] when the block has no bytes yet or cannot grow in place: a new block, the old
/// bytes copied, the old block freed. Out of line, so that a resize done in place (the
/// common case for most backends) saves none of the registers the move keeps across its
/// calls: on the lab's sqlite trace, 4% of the replay's instructions. Whether to zero is a
/// const parameter, each value its own copy chosen by [`grow`], so that a move keeps no
/// flag across its calls (and where `grow` is inlined with a constant, no branch either).
///
/// # Safety
///
/// As for [`grow`].
#[inline(never)]
unsafe fn grow_by_moving<B: Backend + ?Sized, const ZEROED: bool>(
    backend: &mut B,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    if old_layout.size() == 0 {
        return allocate(backend, new_layout, ZEROED);
    }
    // SAFETY: `old_layout.size() <= new_layout.size()` bytes are copied, both blocks are
    // live and distinct, and the old block fits `old_layout`.
    unsafe {
        relocate(
            backend,
            ptr,
            old_layout,
            new_layout,
            old_layout.size(),
            ZEROED,
        )
    }
}

/// Makes a block smaller: in place when the backend can, otherwise allocate, copy, free.
///
/// Shrinking to size 0 frees the block and returns a dangling pointer.
///
/// # Safety
///
/// `ptr` must come from this module's functions on this backend, `old_layout` must fit it,
/// and `new_layout.size() <= old_layout.size()`.
///
/// # Errors
///
/// [`AllocError`] when the block has to move and no new block can be had; the old block is
/// then untouched and valid.
pub unsafe fn shrink<B: Backend + ?Sized>(
    backend: &mut B,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    debug_assert!(
        new_layout.size() <= old_layout.size(),
        "shrink to a larger size"
    );
    if new_layout.size() != 0 {
        check_owned(backend, ptr, "shrink");
        if old_layout.align() == new_layout.align() {
            // SAFETY: the caller's guarantees are `shrink_in_place`'s, the alignments match
            // and the new size is non-zero.
            if let Ok(block) = unsafe { backend.shrink_in_place(ptr, old_layout, new_layout) } {
                return Ok(block);
            }
        }
    }
    // SAFETY: forwarded caller guarantees.
    unsafe { shrink_by_moving(backend, ptr, old_layout, new_layout) }
}

/// [`shrink`] to no bytes (the block is freed) or when the block cannot shrink in place:
/// a new block, the kept bytes copied, the old block freed. Out of line, as
/// [`grow_by_moving`] is.
///
/// # Safety
///
/// As for [`shrink`].
#[inline(never)]
unsafe fn shrink_by_moving<B: Backend + ?Sized>(
    backend: &mut B,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    if new_layout.size() == 0 {
        // SAFETY: forwarded caller guarantees.
        unsafe { deallocate(backend, ptr, old_layout) };
        return Ok(dangling(new_layout));
    }
    // Keeping the old block would leave it freed later with a smaller layout than the one
    // it was allocated with, which size-computing backends (buddy, bitmap) cannot accept.
    // SAFETY: `new_layout.size()` bytes are copied, both blocks are live and distinct, and
    // the old block fits `old_layout`.
    unsafe {
        relocate(
            backend,
            ptr,
            old_layout,
            new_layout,
            new_layout.size(),
            false,
        )
    }
}

/// `GlobalAlloc::realloc` over a backend: [`grow`] or [`shrink`] by the new size, in place
/// when the backend can. Null for failure, for a null `ptr`, and for a size that makes an
/// invalid layout; the old block is then untouched.
///
/// # Safety
///
/// As for `GlobalAlloc::realloc`: `ptr` is null or a live block of `backend` allocated
/// with `layout`, and `new_size` is non-zero.
#[inline]
pub unsafe fn realloc<B: Backend + ?Sized>(
    backend: &mut B,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let (Some(ptr), Some(new_layout)) = (NonNull::new(ptr), resized(layout, new_size)) else {
        return ptr::null_mut();
    };
    // SAFETY: `ptr` is live with `layout` (the caller), and the size comparison picks the
    // function whose precondition holds.
    let block = unsafe {
        if new_size >= layout.size() {
            grow(backend, ptr, layout, new_layout, false)
        } else {
            shrink(backend, ptr, layout, new_layout)
        }
    };
    block.map_or(ptr::null_mut(), |block| block.cast::<u8>().as_ptr())
}

/// `layout` with its size changed to `new_size`, `None` when that size rounded up to the
/// alignment would pass `isize::MAX`. What `Layout::from_size_align(new_size,
/// layout.align())` gives, without testing again on every resize that the alignment is a
/// power of two.
#[inline(always)]
#[must_use]
pub fn resized(layout: Layout, new_size: usize) -> Option<Layout> {
    if new_size > isize::MAX as usize - (layout.align() - 1) {
        return None;
    }
    // SAFETY: the alignment is a `Layout`'s, and the size rounded up to it stays within
    // `isize::MAX` (checked above).
    Some(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) })
}

/// Moves a block: allocate `new_layout`, copy `keep` bytes, free the old block.
///
/// # Safety
///
/// `ptr` is a live, non-zero block of `backend` that `old_layout` fits, `new_layout.size()`
/// is non-zero, and `keep <= min(old_layout.size(), new_layout.size())`.
#[inline(always)]
unsafe fn relocate<B: Backend + ?Sized>(
    backend: &mut B,
    ptr: NonNull<u8>,
    old_layout: Layout,
    new_layout: Layout,
    keep: usize,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    let block = backend.allocate(new_layout)?;
    let (old_start, new_start) = (ptr.as_ptr().addr(), block.cast::<u8>().as_ptr().addr());
    debug_assert!(
        new_start >= old_start + keep || old_start >= new_start + keep,
        "heapkit-core: the backend handed out a block overlapping the live block being moved"
    );
    // SAFETY: both blocks are live and distinct (the new one overlaps no live block), and
    // each has at least `keep` bytes.
    unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), block.cast::<u8>().as_ptr(), keep) };
    if zeroed {
        zero_tail(block, keep);
    }
    // SAFETY: the old block is live and `old_layout` fits it (caller).
    unsafe { backend.deallocate(ptr, old_layout) };
    Ok(block)
}

fn zero_tail(block: NonNull<[u8]>, from: usize) {
    let len = block.len();
    if from < len {
        let tail = block.cast::<u8>().as_ptr().wrapping_add(from);
        // SAFETY: `from..len` lies inside a block the caller just received from the backend.
        unsafe { tail.write_bytes(0, len - from) };
    }
}

/// With the `checked` feature, a pointer the backend does not own is reported and panics;
/// without it this compiles to nothing.
#[inline]
#[track_caller]
fn check_owned<B: Backend + ?Sized>(backend: &B, ptr: NonNull<u8>, operation: &str) {
    if cfg!(feature = "checked") && !backend.owns(ptr) {
        crate::invalid_use(
            "heapkit-core",
            operation,
            ptr.as_ptr(),
            "pointer is not in memory this allocator manages",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_agrees_with_from_size_align_at_the_size_limit() {
        // Up to the largest alignment, where only size 0 is left.
        for align in [1, 2, 8, 16, 4096, 1 << 20, 1 << (usize::BITS - 1)] {
            let layout = Layout::from_size_align(0, align).expect("valid");
            let limit = isize::MAX as usize - (align - 1);
            let sizes = [
                0,
                1,
                align,
                limit.saturating_sub(1),
                limit,
                limit + 1,
                usize::MAX,
            ];
            for new_size in sizes {
                assert_eq!(
                    resized(layout, new_size),
                    Layout::from_size_align(new_size, align).ok(),
                    "size {new_size}, align {align}"
                );
            }
        }
    }
}
