//! [`Lent`]: a backend over memory borrowed for a lifetime, so a stack array or a
//! caller's buffer needs no `unsafe` and no `'static`.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use allocator_api2::alloc::AllocError;

use crate::{Backend, ConfigError, Corruption, Stats};

/// A backend that can be built over one region given by its start and length: every
/// heapkit backend that takes regions. [`Lent`] builds it over borrowed memory.
///
/// # Safety
///
/// `from_region` must return a backend that manages memory only inside the region it is
/// given (and inside its own value), so that ending the borrow of that region ends every
/// use of it; its `Drop` may touch the region (a [`Lent`] is dropped before its borrow
/// ends).
pub unsafe trait FromRegion: Backend + Sized {
    /// What the backend needs besides its memory: a block size and alignment for a pool,
    /// the smallest block for a buddy, nothing (`()`) for TLSF.
    type Params;

    /// The backend over `len` bytes at `start`.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else
    /// for as long as the backend or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// The backend's own construction errors (region too small, misaligned, …).
    unsafe fn from_region(
        start: NonNull<u8>,
        len: usize,
        params: Self::Params,
    ) -> Result<Self, ConfigError>;
}

/// A backend over memory borrowed for `'a`: usable for `'a` and no longer, so the memory
/// can be an array on the stack or a caller's buffer, with no `unsafe` and no leak:
///
/// ```ignore
/// let mut buffer = [MaybeUninit::uninit(); 16 * 1024];
/// let heap = Local::new(Lent::<Tlsf>::new(&mut buffer)?);
/// let mut squares = Vec::new_in(&heap);
/// ```
///
/// (Runnable in heapkit-tlsf's documentation, with the program the borrow checker
/// refuses: a block that would outlive the buffer. heapkit-core cannot depend on a
/// backend, even for its tests.)
///
/// The backend is reachable read-only ([`backend`](Self::backend)): with `&mut` access it
/// could be moved out, taking the borrowed memory past `'a`. `Lent` has a `Drop` (that
/// does nothing) so that the borrow lasts until it is dropped: the buffer cannot be used
/// again while a `Lent` over it is still in scope.
pub struct Lent<'a, B> {
    backend: B,
    memory: PhantomData<&'a mut [MaybeUninit<u8>]>,
}

impl<'a, B: FromRegion<Params = ()>> Lent<'a, B> {
    /// `B` over `memory`, for backends that need nothing else (TLSF, `Heap`).
    ///
    /// # Errors
    ///
    /// As for the backend's own constructor.
    pub fn new(memory: &'a mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        Self::with_params(memory, ())
    }
}

impl<'a, B: FromRegion> Lent<'a, B> {
    /// `B` over `memory`, with what else it needs: `Lent::<Pool>::with_params(&mut
    /// buffer, (64, 8))` for 64-byte blocks aligned to 8.
    ///
    /// # Errors
    ///
    /// As for the backend's own constructor.
    pub fn with_params(
        memory: &'a mut [MaybeUninit<u8>],
        params: B::Params,
    ) -> Result<Self, ConfigError> {
        let len = memory.len();
        let start = NonNull::from(memory).cast::<u8>();
        // SAFETY: the exclusive borrow keeps the memory valid and unused by anything else
        // for `'a`, and the `Lent` that owns the backend (and so every block, which
        // borrows the `Lent` through an adapter) cannot outlive `'a`.
        let backend = unsafe { B::from_region(start, len, params)? };
        Ok(Self {
            backend,
            memory: PhantomData,
        })
    }

    /// The backend, read-only.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B> Drop for Lent<'_, B> {
    /// Nothing to do (the backend drops itself); the impl makes the borrow of the memory
    /// last until here.
    fn drop(&mut self) {}
}

impl<B: fmt::Debug> fmt::Debug for Lent<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lent").field(&self.backend).finish()
    }
}

// SAFETY: every call forwards to the backend, whose guarantees are unchanged; the
// borrowed memory outlives the `Lent` by its lifetime.
unsafe impl<B: Backend> Backend for Lent<'_, B> {
    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.backend.allocate(layout)
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.backend.deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.backend.grow_in_place(ptr, old_layout, new_layout) }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.backend.shrink_in_place(ptr, old_layout, new_layout) }
    }

    fn max_align(&self) -> usize {
        self.backend.max_align()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.backend.owns(ptr)
    }

    fn stats(&self) -> Stats {
        self.backend.stats()
    }

    fn check(&self) -> Result<(), Corruption> {
        self.backend.check()
    }

    fn trim(&mut self) {
        self.backend.trim();
    }
}
