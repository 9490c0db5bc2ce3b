//! [`Fallback`]: try one allocator, then another.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{AllocError, Backend, Corruption, Stats};

/// Serves each request from `Primary` if it can, otherwise from `Secondary`. Frees and
/// resizes go to `Primary` when it [owns](Backend::owns) the pointer, else to `Secondary`,
/// so `Primary::owns` must answer exactly for the memory it hands out (every heapkit
/// backend's does: it compares against its regions).
///
/// A pool that overflows into a TLSF heap, or a fast arena backed by the OS, is one
/// `Fallback`.
#[derive(Debug, Default)]
pub struct Fallback<Primary, Secondary> {
    primary: Primary,
    secondary: Secondary,
}

impl<Primary: Backend, Secondary: Backend> Fallback<Primary, Secondary> {
    /// Composes `primary`, tried first, and `secondary`.
    pub const fn new(primary: Primary, secondary: Secondary) -> Self {
        Self { primary, secondary }
    }

    /// The two children.
    pub fn parts(&self) -> (&Primary, &Secondary) {
        (&self.primary, &self.secondary)
    }

    /// The two children, for set-up such as adding memory to one of them.
    ///
    /// # Safety
    ///
    /// While any block handed out through `self` is live, the caller must not replace,
    /// swap, take or drop-in-place a child (the block would be freed into an allocator that
    /// never handed it out), nor allocate or free through it directly. Adding memory
    /// (`add_region`) and reading statistics are fine.
    pub unsafe fn parts_mut(&mut self) -> (&mut Primary, &mut Secondary) {
        (&mut self.primary, &mut self.secondary)
    }

    /// The two children, taking the fallback apart.
    pub fn into_parts(self) -> (Primary, Secondary) {
        (self.primary, self.secondary)
    }
}

// SAFETY: every block comes from one child and goes back to it: `Primary::owns` is true
// exactly for the primary's blocks, and the two children manage disjoint memory.
unsafe impl<Primary: Backend, Secondary: Backend> Backend for Fallback<Primary, Secondary> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.primary
            .allocate(layout)
            .or_else(|AllocError| self.secondary.allocate(layout))
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if self.primary.owns(ptr) {
            // SAFETY: the primary owns the block, so it allocated it.
            unsafe { self.primary.deallocate(ptr, layout) }
        } else {
            crate::check_routed(&self.secondary, ptr, "deallocate", "secondary");
            // SAFETY: not the primary's, so the secondary's.
            unsafe { self.secondary.deallocate(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.primary.owns(ptr) {
            // SAFETY: as in `deallocate`.
            unsafe { self.primary.grow_in_place(ptr, old_layout, new_layout) }
        } else {
            crate::check_routed(&self.secondary, ptr, "grow", "secondary");
            // SAFETY: as in `deallocate`.
            unsafe { self.secondary.grow_in_place(ptr, old_layout, new_layout) }
        }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.primary.owns(ptr) {
            // SAFETY: as in `deallocate`.
            unsafe { self.primary.shrink_in_place(ptr, old_layout, new_layout) }
        } else {
            crate::check_routed(&self.secondary, ptr, "shrink", "secondary");
            // SAFETY: as in `deallocate`.
            unsafe { self.secondary.shrink_in_place(ptr, old_layout, new_layout) }
        }
    }

    fn max_align(&self) -> usize {
        self.primary.max_align().max(self.secondary.max_align())
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.primary.owns(ptr) || self.secondary.owns(ptr)
    }

    fn stats(&self) -> Stats {
        self.primary.stats().combine(self.secondary.stats())
    }

    fn check(&self) -> Result<(), Corruption> {
        self.primary.check()?;
        self.secondary.check()
    }

    fn trim(&mut self) {
        self.primary.trim();
        self.secondary.trim();
    }
}
