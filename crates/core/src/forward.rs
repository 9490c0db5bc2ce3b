//! The one implementation of `Allocator` and `GlobalAlloc` that every adapter shares.
//!
//! Each adapter has a private `with(|backend| …)` that gives one call exclusive access to a
//! [`Backend`](crate::Backend) (`Local` through its `UnsafeCell`, `Locked` through its
//! lock, `Shared` through `&A`); these macros write the trait methods over it, so zero-size
//! requests, in-place resizing and `realloc` are decided in [`resize`](crate::resize) once.

/// `unsafe impl Allocator` for an adapter with a `with` method. Exported (hidden) so a
/// crate whose allocator is its own adapter (heapkit-sharded's `Sharded`) shares it too.
#[doc(hidden)]
#[macro_export]
macro_rules! allocator_through_with {
    ([$($generics:tt)*] $adapter:ty $(where $($bounds:tt)*)?) => {
        // SAFETY: every method forwards to `resize` with the exclusive access `with`
        // gives, which upholds `Allocator`'s contract given `Backend`'s: blocks are valid
        // until freed, and moving or borrowing the adapter does not move the memory the
        // backend manages.
        unsafe impl<$($generics)*> $crate::Allocator for $adapter
        $(where $($bounds)*)?
        {
            #[inline]
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::AllocError> {
                self.with(|backend| $crate::resize::allocate(backend, layout, false))
            }

            #[inline]
            fn allocate_zeroed(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::AllocError> {
                self.with(|backend| $crate::resize::allocate(backend, layout, true))
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                // SAFETY: `Allocator::deallocate`'s contract is `resize::deallocate`'s.
                self.with(|backend| unsafe { $crate::resize::deallocate(backend, ptr, layout) })
            }

            #[inline]
            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old_layout: core::alloc::Layout,
                new_layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::AllocError> {
                // SAFETY: `Allocator::grow`'s contract is `resize::grow`'s.
                self.with(|backend| unsafe {
                    $crate::resize::grow(backend, ptr, old_layout, new_layout, false)
                })
            }

            #[inline]
            unsafe fn grow_zeroed(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old_layout: core::alloc::Layout,
                new_layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::AllocError> {
                // SAFETY: `Allocator::grow_zeroed`'s contract is `resize::grow`'s.
                self.with(|backend| unsafe {
                    $crate::resize::grow(backend, ptr, old_layout, new_layout, true)
                })
            }

            #[inline]
            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old_layout: core::alloc::Layout,
                new_layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::AllocError> {
                // SAFETY: `Allocator::shrink`'s contract is `resize::shrink`'s.
                self.with(|backend| unsafe {
                    $crate::resize::shrink(backend, ptr, old_layout, new_layout)
                })
            }
        }
    };
}

/// `unsafe impl GlobalAlloc` for an adapter with a `with` method (exported as above).
#[doc(hidden)]
#[macro_export]
macro_rules! global_alloc_through_with {
    ([$($generics:tt)*] $adapter:ty $(where $($bounds:tt)*)?) => {
        // SAFETY: `GlobalAlloc`'s rules map onto `resize`'s: null reports failure, and
        // `realloc` keeps the alignment and copies `min(old, new)` bytes when it moves;
        // `with` gives each call exclusive access to the backend.
        unsafe impl<$($generics)*> core::alloc::GlobalAlloc for $adapter
        $(where $($bounds)*)?
        {
            #[inline]
            unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
                self.with(|backend| $crate::resize::allocate(backend, layout, false))
                    .map_or(core::ptr::null_mut(), |block| block.cast::<u8>().as_ptr())
            }

            #[inline]
            unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
                self.with(|backend| $crate::resize::allocate(backend, layout, true))
                    .map_or(core::ptr::null_mut(), |block| block.cast::<u8>().as_ptr())
            }

            #[inline]
            unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
                // `GlobalAlloc` hands back only pointers it returned, never null.
                if let Some(ptr) = core::ptr::NonNull::new(ptr) {
                    // SAFETY: `ptr` came from `alloc` with `layout` (GlobalAlloc's contract).
                    self.with(|backend| unsafe { $crate::resize::deallocate(backend, ptr, layout) })
                }
            }

            #[inline]
            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: core::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                // SAFETY: `GlobalAlloc::realloc`'s contract is `resize::realloc`'s.
                self.with(|backend| unsafe { $crate::resize::realloc(backend, ptr, layout, new_size) })
            }
        }
    };
}
