//! [`SharedBackend`], allocators that work through `&self`, and [`Shared`], the one adapter
//! that turns any of them into an [`Allocator`](allocator_api2::alloc::Allocator), a
//! [`GlobalAlloc`](core::alloc::GlobalAlloc) and an [`Inspect`].

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::AllocError;

use crate::{Backend, Corruption, Inspect, Stats};

/// An allocator that many threads call at once through `&self`: lock-free (`AtomicPool`,
/// `AtomicBitmap`) or synchronised inside (a thread-caching heap). The calls and their
/// contract are [`Backend`]'s, through a shared reference.
///
/// Implement it, then use the allocator through [`Shared`]; `&A` is also a [`Backend`], so
/// a shared allocator composes like any other.
///
/// # Safety
///
/// As for [`Backend`], for every interleaving of calls from any number of threads: a block
/// is handed out to one caller at a time, and blocks stay valid until freed.
pub unsafe trait SharedBackend {
    /// As [`Backend::allocate`].
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the request cannot be served; nothing changes then.
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// As [`Backend::deallocate`].
    ///
    /// # Safety
    ///
    /// As for [`Backend::deallocate`].
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout);

    /// As [`Backend::grow_in_place`]; the default refuses.
    ///
    /// # Safety
    ///
    /// As for [`Backend::grow_in_place`].
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block cannot grow where it is; nothing changes then.
    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = (ptr, old_layout, new_layout);
        Err(AllocError)
    }

    /// As [`Backend::shrink_in_place`]; the default refuses.
    ///
    /// # Safety
    ///
    /// As for [`Backend::shrink_in_place`].
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block cannot shrink where it is; nothing changes then.
    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = (ptr, old_layout, new_layout);
        Err(AllocError)
    }

    /// As [`Backend::max_align`].
    fn max_align(&self) -> usize {
        usize::MAX
    }

    /// As [`Backend::owns`].
    fn owns(&self, ptr: NonNull<u8>) -> bool;

    /// As [`Backend::stats`]; under concurrent calls, a snapshot that may be in motion.
    fn stats(&self) -> Stats;

    /// As [`Backend::check`]; meaningful when no other thread is calling.
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    fn check(&self) -> Result<(), Corruption> {
        Ok(())
    }
}

// SAFETY: every call forwards to the shared allocator, whose contract is `Backend`'s for
// any interleaving, so in particular for calls through one `&A`.
unsafe impl<A: SharedBackend + ?Sized> Backend for &A {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        SharedBackend::allocate(*self, layout)
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { SharedBackend::deallocate(*self, ptr, layout) }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { SharedBackend::grow_in_place(*self, ptr, old_layout, new_layout) }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { SharedBackend::shrink_in_place(*self, ptr, old_layout, new_layout) }
    }

    #[inline]
    fn max_align(&self) -> usize {
        SharedBackend::max_align(*self)
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        SharedBackend::owns(*self, ptr)
    }

    #[inline]
    fn stats(&self) -> Stats {
        SharedBackend::stats(*self)
    }

    fn check(&self) -> Result<(), Corruption> {
        SharedBackend::check(*self)
    }
}

/// A [`SharedBackend`] as an [`Allocator`](allocator_api2::alloc::Allocator), a
/// [`GlobalAlloc`](core::alloc::GlobalAlloc) and an [`Inspect`]: zero-size
/// requests answered here, resizes tried in place first, no lock (the allocator is safe to
/// call from any thread by itself). Its constructor is `const`, so it can be a `static`
/// `#[global_allocator]` when the allocator's is.
///
/// ```
/// use heapkit_core::{Shared, SharedBackend, Stats, AllocError, Layout};
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering};
///
/// /// Hands out 16-byte slots of a static buffer once each, from any thread.
/// struct Slots {
///     next: AtomicUsize,
///     buffer: NonNull<[u128]>,
/// }
/// // SAFETY: slots are claimed with an atomic counter, each once.
/// unsafe impl Sync for Slots {}
/// // SAFETY: each slot is handed out once, 16-aligned, inside the buffer, never reused.
/// unsafe impl SharedBackend for Slots {
///     fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
///         if layout.size() > 16 || layout.align() > 16 {
///             return Err(AllocError);
///         }
///         let slot = self.next.fetch_add(1, Ordering::Relaxed);
///         if slot >= self.buffer.len() {
///             return Err(AllocError);
///         }
///         let start = self.buffer.cast::<u128>().as_ptr().wrapping_add(slot).cast::<u8>();
///         Ok(NonNull::slice_from_raw_parts(NonNull::new(start).unwrap(), 16))
///     }
///     unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
///     fn owns(&self, ptr: NonNull<u8>) -> bool {
///         let start = self.buffer.cast::<u8>().as_ptr().addr();
///         (start..start + 16 * self.buffer.len()).contains(&ptr.as_ptr().addr())
///     }
///     fn stats(&self) -> Stats {
///         Stats::all_free(16 * self.buffer.len())
///     }
/// }
///
/// let buffer = NonNull::from(Box::leak(vec![0u128; 64].into_boxed_slice()));
/// let slots = Shared::new(Slots { next: AtomicUsize::new(0), buffer });
/// std::thread::scope(|scope| {
///     for _ in 0..2 {
///         scope.spawn(|| {
///             let boxed = allocator_api2::boxed::Box::new_in(7u64, &slots);
///             assert_eq!(*boxed, 7);
///         });
///     }
/// });
/// ```
pub struct Shared<A> {
    allocator: A,
}

impl<A> Shared<A> {
    /// Wraps `allocator`.
    pub const fn new(allocator: A) -> Self {
        Self { allocator }
    }

    /// The allocator inside: it works through `&self`, so sharing it gives nothing away.
    pub const fn get(&self) -> &A {
        &self.allocator
    }

    /// Unwraps the allocator.
    pub fn into_inner(self) -> A {
        self.allocator
    }
}

/// The allocator's own methods (counts, block size), reached through `&self` like every
/// call it takes.
impl<A> core::ops::Deref for Shared<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.allocator
    }
}

impl<A: SharedBackend> Shared<A> {
    /// Runs one call through `&A`, a [`Backend`] for any number of concurrent calls.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut &A) -> R) -> R {
        f(&mut &self.allocator)
    }
}

impl<A: SharedBackend> Inspect for Shared<A> {
    fn stats(&self) -> Stats {
        self.allocator.stats()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.allocator.owns(ptr)
    }

    fn check(&self) -> Result<(), Corruption> {
        self.allocator.check()
    }
}

impl<A: fmt::Debug> fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&self.allocator).finish()
    }
}

allocator_through_with!([A: SharedBackend] Shared<A>);
global_alloc_through_with!([A: SharedBackend] Shared<A>);

/// Implements [`Backend`] for a [`SharedBackend`] by forwarding every call through `&self`,
/// so the type also composes by value (`Local<AtomicPool>`, a combinator's child): exclusive
/// access is a special case of shared access.
///
/// ```ignore
/// heapkit_core::backend_via_shared!(AtomicPool);
/// ```
#[macro_export]
macro_rules! backend_via_shared {
    ($shared:ty) => {
        // SAFETY: each call forwards to the `SharedBackend` implementation, whose contract
        // is `Backend`'s for any interleaving of calls, so for calls through `&mut self`.
        unsafe impl $crate::Backend for $shared {
            #[inline]
            fn allocate(
                &mut self,
                layout: $crate::Layout,
            ) -> ::core::result::Result<::core::ptr::NonNull<[u8]>, $crate::AllocError> {
                $crate::SharedBackend::allocate(self, layout)
            }

            #[inline]
            unsafe fn deallocate(&mut self, ptr: ::core::ptr::NonNull<u8>, layout: $crate::Layout) {
                // SAFETY: forwarded caller guarantees.
                unsafe { $crate::SharedBackend::deallocate(self, ptr, layout) }
            }

            #[inline]
            unsafe fn grow_in_place(
                &mut self,
                ptr: ::core::ptr::NonNull<u8>,
                old_layout: $crate::Layout,
                new_layout: $crate::Layout,
            ) -> ::core::result::Result<::core::ptr::NonNull<[u8]>, $crate::AllocError> {
                // SAFETY: forwarded caller guarantees.
                unsafe { $crate::SharedBackend::grow_in_place(self, ptr, old_layout, new_layout) }
            }

            #[inline]
            unsafe fn shrink_in_place(
                &mut self,
                ptr: ::core::ptr::NonNull<u8>,
                old_layout: $crate::Layout,
                new_layout: $crate::Layout,
            ) -> ::core::result::Result<::core::ptr::NonNull<[u8]>, $crate::AllocError> {
                // SAFETY: forwarded caller guarantees.
                unsafe { $crate::SharedBackend::shrink_in_place(self, ptr, old_layout, new_layout) }
            }

            #[inline]
            fn max_align(&self) -> usize {
                $crate::SharedBackend::max_align(self)
            }

            #[inline]
            fn owns(&self, ptr: ::core::ptr::NonNull<u8>) -> bool {
                $crate::SharedBackend::owns(self, ptr)
            }

            #[inline]
            fn stats(&self) -> $crate::Stats {
                $crate::SharedBackend::stats(self)
            }

            fn check(&self) -> ::core::result::Result<(), $crate::Corruption> {
                $crate::SharedBackend::check(self)
            }
        }
    };
}
