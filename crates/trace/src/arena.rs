//! [`Arena`]: the calls every workload and replay makes, implemented here for heapkit's
//! backends ([`Heapkit`]) and for any `GlobalAlloc` ([`FromGlobal`]); `heapkit-lab` adds
//! the peer crates. [`FromGlobal`] and [`LockedArena`] are also `Allocator`s, so one
//! workload of real collections runs on each.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use heapkit_core::resize::{self, dangling};
use heapkit_core::sync::SpinLock;
use heapkit_core::Backend;

/// An allocator over a fixed region, as the workloads use it.
pub trait Arena {
    /// A block for `layout`, or `None` when out of memory. The workloads never ask for
    /// zero bytes; an implementation over an allocator that cannot take them refuses them.
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
    let new_layout = resize::resized(layout, new_size)?;
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

/// A global allocator (glibc, mimalloc) as an arena, for timing only: its blocks are not
/// in any one region.
impl<G: GlobalAlloc> Arena for FromGlobal<G> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        GlobalRef(&self.0).alloc(layout)
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { GlobalRef(&self.0).free(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: per the caller.
        unsafe { GlobalRef(&self.0).realloc(ptr, layout, new_size) }
    }
}

/// A shared reference to a global allocator as an [`Arena`]: `GlobalAlloc` works through
/// `&self`, so `FromGlobal`'s `Allocator` needs no lock.
struct GlobalRef<'a, G>(&'a G);

impl<G: GlobalAlloc> Arena for GlobalRef<'_, G> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: not zero bytes, which `GlobalAlloc::alloc` may not be asked for.
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

/// A region allocator behind heapkit's spin lock (the lock `Locked` uses, so the lock costs
/// every contender the same), as an `Allocator`.
#[derive(Debug)]
pub struct LockedArena<A>(pub SpinLock<A>);

impl<A> LockedArena<A> {
    /// Puts `arena` behind the lock.
    pub fn new(arena: A) -> Self {
        Self(SpinLock::new(arena))
    }
}

impl<G: GlobalAlloc> FromGlobal<G> {
    #[inline(always)]
    fn with_arena<R>(&self, f: impl FnOnce(&mut GlobalRef<'_, G>) -> R) -> R {
        f(&mut GlobalRef(&self.0))
    }
}

impl<A: Arena> LockedArena<A> {
    #[inline(always)]
    fn with_arena<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        f(&mut self.0.lock())
    }
}

/// `Allocator` for a type whose `with_arena` gives one call an [`Arena`]: zero sizes are
/// answered here, a resize goes through [`Arena::realloc`] when both sizes are non-zero and
/// the alignment stays, and moves by hand otherwise.
macro_rules! allocator_over_arena {
    ([$($generics:tt)*] $wrapper:ty) => {
        // SAFETY: the arena hands out blocks of at least the requested size and alignment,
        // one call at a time through `with_arena`; resizing keeps the smaller size's bytes.
        unsafe impl<$($generics)*> Allocator for $wrapper {
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                if layout.size() == 0 {
                    return Ok(dangling(layout));
                }
                let block = self.with_arena(|arena| arena.alloc(layout)).ok_or(AllocError)?;
                Ok(NonNull::slice_from_raw_parts(block, layout.size()))
            }

            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                if layout.size() != 0 {
                    self.with_arena(|arena| {
                        // SAFETY: per the caller, allocated here with `layout`.
                        unsafe { arena.free(ptr, layout) }
                    })
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

        impl<$($generics)*> $wrapper {
            /// `Allocator::grow`/`shrink`: `ptr` is live with `old` (the caller).
            unsafe fn resize(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                if old.size() != 0 && new.size() != 0 && old.align() == new.align() {
                    let moved = self
                        .with_arena(|arena| {
                            // SAFETY: per the caller; same alignment, non-zero sizes.
                            unsafe { arena.realloc(ptr, old, new.size()) }
                        })
                        .ok_or(AllocError)?;
                    return Ok(NonNull::slice_from_raw_parts(moved, new.size()));
                }
                let block = self.allocate(new)?;
                // SAFETY: both blocks are live and distinct (or zero-sized); the smaller
                // size is copied, then the old block freed once.
                unsafe {
                    ptr.copy_to_nonoverlapping(block.cast(), old.size().min(new.size()));
                    self.deallocate(ptr, old);
                }
                Ok(block)
            }
        }
    };
}

allocator_over_arena!([G: GlobalAlloc] FromGlobal<G>);
allocator_over_arena!([A: Arena] LockedArena<A>);

/// heapkit's TLSF over a fresh leaked region, for the crate's tests.
#[cfg(test)]
#[cfg_attr(miri, allow(dead_code))] // its tests are too slow for miri
pub(crate) fn heapkit_tlsf(len: usize) -> Heapkit<heapkit_tlsf::Tlsf> {
    let region = crate::Region::new(len, 4096).leak();
    Heapkit(heapkit_tlsf::Tlsf::with_region(region).expect("region fits TLSF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_allocator_is_never_asked_for_zero_bytes() {
        let mut arena = FromGlobal(std::alloc::System);
        let empty = Layout::from_size_align(0, 8).unwrap();
        assert_eq!(arena.alloc(empty), None);
        let byte = Layout::from_size_align(1, 8).unwrap();
        let block = arena.alloc(byte).expect("one byte");
        // SAFETY: allocated just above with `byte`.
        unsafe { arena.free(block, byte) };
    }
}
