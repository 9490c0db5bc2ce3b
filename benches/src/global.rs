//! Global-allocator-style contenders as `allocator_api2` allocators, so one workload of
//! real collections runs on each: a `GlobalAlloc` (glibc, mimalloc) through
//! [`FromGlobal`], and a region allocator behind a spin lock through [`LockedArena`] — the
//! same lock heapkit's `Locked` uses, so the lock costs every contender the same.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use heapkit_core::resize::dangling;
use heapkit_core::sync::SpinLock;

use crate::arena::Arena;

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

/// A region allocator behind heapkit's spin lock.
#[derive(Debug)]
pub struct LockedArena<A>(pub SpinLock<A>);

impl<A> LockedArena<A> {
    /// Puts `arena` behind the lock.
    pub fn new(arena: A) -> Self {
        Self(SpinLock::new(arena))
    }
}

// SAFETY: the arena hands out blocks of at least the requested size and alignment, one
// caller at a time under the lock; resizing copies the kept bytes.
unsafe impl<A: Arena> Allocator for LockedArena<A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let block = self.0.lock().alloc(layout).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(block, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: per the caller.
            unsafe { self.0.lock().free(ptr, layout) }
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

impl<A: Arena> LockedArena<A> {
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 || old.align() != new.align() {
            let block = self.allocate(new)?;
            // SAFETY: as in `FromGlobal::resize`.
            unsafe {
                ptr.copy_to_nonoverlapping(block.cast(), old.size().min(new.size()));
                self.deallocate(ptr, old);
            }
            return Ok(block);
        }
        if new.size() == 0 {
            // SAFETY: per the caller.
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        // SAFETY: per the caller; the arena resizes in place or moves with a copy.
        let moved = unsafe { self.0.lock().realloc(ptr, old, new.size()) }.ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(moved, new.size()))
    }
}
