//! [`Arena`]: the calls every workload and replay makes, implemented here for heapkit's
//! backends ([`Heapkit`]) and for any `GlobalAlloc` ([`FromGlobal`]); `heapkit-lab` adds
//! the peer crates.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use heapkit_core::resize::{self, dangling};
use heapkit_core::Backend;

/// An allocator over a fixed region, as the workloads use it.
pub trait Arena {
    /// A block for `layout` (size non-zero), or `None` when out of memory.
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// Frees a block.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this arena allocated (or last reallocated) with `layout`.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block to `new_size` bytes, in place where the allocator can, otherwise
    /// by moving it (copying the contents). `None` leaves the block as it was.
    ///
    /// The default always moves ([`realloc_by_moving`]), for allocators with no resize of
    /// their own.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free); `new_size` is non-zero.
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: per the caller.
        unsafe { realloc_by_moving(self, ptr, layout, new_size) }
    }
}

/// A heapkit backend as an [`Arena`], resizing the way its adapters do.
#[derive(Debug)]
pub struct Heapkit<B>(pub B);

impl<B: Backend> Arena for Heapkit<B> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(layout).ok().map(NonNull::cast)
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.0.deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: per the caller: `ptr` is live with `layout`, `new_size` non-zero.
        NonNull::new(unsafe { resize::realloc(&mut self.0, ptr.as_ptr(), layout, new_size) })
    }
}

/// A resize for allocators without one (the default [`Arena::realloc`]): a new block, the kept bytes copied, the old block
/// freed. `None` leaves the old block as it was.
///
/// # Safety
///
/// As for [`Arena::realloc`].
pub unsafe fn realloc_by_moving<A: Arena + ?Sized>(
    arena: &mut A,
    ptr: NonNull<u8>,
    layout: Layout,
    new_size: usize,
) -> Option<NonNull<u8>> {
    let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
    let moved = arena.alloc(new_layout)?;
    // SAFETY: per the caller `ptr` is live with `layout`; `moved` is a distinct new block
    // of `new_size` bytes; the old block is freed once.
    unsafe {
        ptr.copy_to_nonoverlapping(moved, layout.size().min(new_size));
        arena.free(ptr, layout);
    }
    Some(moved)
}

/// A `GlobalAlloc` as an `Allocator`; resizing uses `realloc`.
#[derive(Debug, Default)]
pub struct FromGlobal<G>(pub G);

// SAFETY: blocks come from the global allocator with the caller's layout and go back to it
// with that layout; `realloc` keeps the contents up to the smaller size.
unsafe impl<G: GlobalAlloc> Allocator for FromGlobal<G> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: non-zero size.
        let ptr = NonNull::new(unsafe { self.0.alloc(layout) }).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: per the caller, allocated here with `layout`.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: per the caller.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: per the caller.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl<G: GlobalAlloc> FromGlobal<G> {
    /// `realloc` when both sizes are non-zero and the alignment stays; else move by hand.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && new.size() != 0 && old.align() == new.align() {
            // SAFETY: per the caller; same alignment, non-zero sizes.
            let moved = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            let moved = NonNull::new(moved).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(moved, new.size()));
        }
        let block = self.allocate(new)?;
        // SAFETY: both blocks are live and distinct; the smaller size is copied.
        unsafe {
            ptr.copy_to_nonoverlapping(block.cast(), old.size().min(new.size()));
            self.deallocate(ptr, old);
        }
        Ok(block)
    }
}

/// A global allocator (glibc, mimalloc) as an arena, for timing only: its blocks are not
/// in any one region.
impl<G: GlobalAlloc> Arena for FromGlobal<G> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the workloads never request zero bytes.
        NonNull::new(unsafe { self.0.alloc(layout) })
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller, allocated here with `layout`.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }

    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: per the caller; `new_size` is non-zero and the alignment stays.
        NonNull::new(unsafe { self.0.realloc(ptr.as_ptr(), layout, new_size) })
    }
}

/// heapkit's TLSF over a fresh leaked region, for the crate's tests.
#[cfg(test)]
pub(crate) fn heapkit_tlsf(len: usize) -> Heapkit<heapkit_tlsf::Tlsf> {
    let region = crate::Region::new(len, 4096).leak();
    Heapkit(heapkit_tlsf::Tlsf::with_region(region).expect("region fits TLSF"))
}
