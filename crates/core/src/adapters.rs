//! [`Local`] and [`Locked`]: a [`Backend`] turned into what Rust code allocates through.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::AllocError;

use crate::sync::{SpinGuard, SpinLock};
use crate::{Backend, Corruption, Inspect, Stats};

/// A backend used from one thread, as an [`allocator_api2::alloc::Allocator`].
///
/// `Local` is `!Sync`: no lock, no atomics, one pointer indirection. Collections take it by
/// reference (`Vec::new_in(&local)`), since `&A` is an allocator whenever `A` is.
///
/// ```
/// use allocator_api2::vec::Vec;
/// use heapkit_core::Local;
/// use heapkit_testkit::Reference;
///
/// let heap = Local::new(Reference::with_budget(4096));
/// let mut squares = Vec::new_in(&heap);
/// squares.extend((1..=10u32).map(|n| n * n));
/// assert_eq!(squares.iter().sum::<u32>(), 385);
/// assert!(heap.owns(core::ptr::NonNull::from(&squares[0]).cast()));
/// assert!(heap.stats().in_use >= 10 * 4);
/// ```
pub struct Local<B> {
    backend: UnsafeCell<B>,
}

impl<B> Local<B> {
    /// Wraps `backend`.
    pub const fn new(backend: B) -> Self {
        Self {
            backend: UnsafeCell::new(backend),
        }
    }

    /// The backend, for set-up such as adding memory.
    ///
    /// # Safety
    ///
    /// While any block allocated through this `Local` is live, the caller must not
    /// replace, swap, take or reset the backend (the block would later be freed into an
    /// allocator that never handed it out), nor allocate or free through it directly.
    /// Adding memory and reading statistics are fine. See the crate's soundness rules.
    pub unsafe fn get_mut(&mut self) -> &mut B {
        self.backend.get_mut()
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.backend.into_inner()
    }

    /// Runs one backend call with exclusive access.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        // SAFETY: `Local` is `!Sync`, so only this thread can be here, and `f` is always one
        // of our own calls into the backend, which by `Backend`'s contract never re-enters
        // this adapter: no other reference to the backend exists while `f` runs.
        f(unsafe { &mut *self.backend.get() })
    }
}

impl<B: Backend> Local<B> {
    /// The backend's [`Stats`].
    pub fn stats(&self) -> Stats {
        self.with(|backend| backend.stats())
    }

    /// Whether `ptr` lies in memory the backend manages.
    pub fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.with(|backend| backend.owns(ptr))
    }

    /// The backend's invariants: see [`Backend::check`].
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), Corruption> {
        self.with(|backend| backend.check())
    }

    /// Gives free memory back: see [`Backend::trim`].
    pub fn trim(&self) {
        self.with(Backend::trim);
    }
}

impl<B: Backend> Inspect for Local<B> {
    fn stats(&self) -> Stats {
        Local::stats(self)
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        Local::owns(self, ptr)
    }

    fn check(&self) -> Result<(), Corruption> {
        Local::check(self)
    }
}

impl<B: Default> Default for Local<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B: Backend> fmt::Debug for Local<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local")
            .field("stats", &self.stats())
            .finish()
    }
}

allocator_through_with!([B: Backend] Local<B>);

/// A backend behind a spin lock: `Sync`, an [`Allocator`](allocator_api2::alloc::Allocator) and a
/// [`GlobalAlloc`](core::alloc::GlobalAlloc).
///
/// Use it for a heap shared between threads or as `#[global_allocator]`; its constructor is
/// `const`, so it can live in a `static`. [`lock`](Self::lock) gives read access to the
/// backend (statistics, per-list counts); [`lock_mut`](Self::lock_mut) is the one `unsafe`
/// way to change it, for set-up such as adding memory after the static is created.
///
/// With the `checked` feature, a panic raised inside the backend (an invalid free detected)
/// happens while the lock is held; in a `#[global_allocator]` the panic machinery's own
/// allocation then waits for that lock forever. Use `checked` global allocators in tests
/// that expect no invalid frees, and exercise invalid frees through `Local` or `&Locked`.
///
/// ```
/// use heapkit_core::Locked;
/// use heapkit_testkit::Reference;
///
/// static HEAP: Locked<Reference> = Locked::new(Reference::with_budget(1 << 20));
///
/// let handles: Vec<_> = (0..2u64)
///     .map(|t| {
///         std::thread::spawn(move || {
///             let mut v = allocator_api2::vec::Vec::new_in(&HEAP);
///             v.extend(0..1000 * (t + 1));
///             v.iter().sum::<u64>()
///         })
///     })
///     .collect();
/// let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(sums, [499_500, 1_999_000]);
/// assert_eq!(HEAP.stats().in_use, 0);
/// ```
pub struct Locked<B> {
    backend: SpinLock<B>,
}

impl<B> Locked<B> {
    /// Wraps `backend`.
    #[cfg(not(loom))]
    pub const fn new(backend: B) -> Self {
        Self {
            backend: SpinLock::new(backend),
        }
    }

    /// Wraps `backend`.
    #[cfg(loom)]
    pub fn new(backend: B) -> Self {
        Self {
            backend: SpinLock::new(backend),
        }
    }

    /// Locks the backend until the guard is dropped, for inspection: the guard gives `&B`.
    ///
    /// Allocating through this `Locked` while holding the guard on the same thread deadlocks.
    ///
    /// Safe code gets no `&mut B` from a shared `Locked`: blocks allocated through it may
    /// be live, and replacing the backend under them would hand their memory out again.
    ///
    /// ```compile_fail
    /// use heapkit_core::Locked;
    /// use heapkit_testkit::Reference;
    ///
    /// let heap = Locked::new(Reference::with_budget(4096));
    /// let _live = allocator_api2::boxed::Box::new_in(1u64, &heap);
    /// *heap.lock() = Reference::with_budget(4096); // error: the guard is read-only
    /// ```
    pub fn lock(&self) -> LockedRef<'_, B> {
        LockedRef {
            guard: self.backend.lock(),
        }
    }

    /// Locks the backend until the guard is dropped, with write access: the one way to set
    /// up a shared backend, such as adding a region to a `static` heap.
    ///
    /// Allocating through this `Locked` while holding the guard on the same thread deadlocks.
    ///
    /// # Safety
    ///
    /// While any block allocated through this `Locked` is live, the caller must not
    /// replace, swap, take or reset the backend (`*guard = …`, `mem::swap`, `mem::take`):
    /// the block would later be freed into an allocator that never handed it out, and its
    /// memory handed out twice. Nor may it allocate or free through the guard directly.
    /// Adding memory and reading statistics are fine. See the crate's soundness rules.
    pub unsafe fn lock_mut(&self) -> SpinGuard<'_, B> {
        self.backend.lock()
    }

    /// The backend, reached through exclusive ownership (no lock needed).
    ///
    /// # Safety
    ///
    /// As for [`lock_mut`](Self::lock_mut): blocks allocated through this `Locked` with
    /// the raw `Allocator` or `GlobalAlloc` calls may still be live.
    pub unsafe fn get_mut(&mut self) -> &mut B {
        self.backend.get_mut()
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.backend.into_inner()
    }

    /// Runs one backend call with the lock held.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        f(&mut self.backend.lock())
    }
}

/// Read access to a [`Locked`] backend: holds the lock, and gives `&B` only.
pub struct LockedRef<'a, B> {
    guard: SpinGuard<'a, B>,
}

impl<B> core::ops::Deref for LockedRef<'_, B> {
    type Target = B;

    #[inline]
    fn deref(&self) -> &B {
        &self.guard
    }
}

impl<B: fmt::Debug> fmt::Debug for LockedRef<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<B: Backend> Locked<B> {
    /// The backend's [`Stats`].
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    /// Whether `ptr` lies in memory the backend manages.
    pub fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.lock().owns(ptr)
    }

    /// The backend's invariants, with the lock held: see [`Backend::check`].
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), Corruption> {
        self.lock().check()
    }

    /// Gives free memory back, with the lock held: see [`Backend::trim`]. Safe through a
    /// shared `Locked` (a `#[global_allocator]` too): it moves no live block. Like every
    /// call here it spins on the lock, so calling it while this thread holds a
    /// [`lock`](Self::lock) guard never returns.
    pub fn trim(&self) {
        self.with(Backend::trim);
    }
}

impl<B: Backend> Inspect for Locked<B> {
    fn stats(&self) -> Stats {
        Locked::stats(self)
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        Locked::owns(self, ptr)
    }

    fn check(&self) -> Result<(), Corruption> {
        Locked::check(self)
    }
}

impl<B: Default> Default for Locked<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> fmt::Debug for Locked<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locked").finish_non_exhaustive()
    }
}

allocator_through_with!([B: Backend + Send] Locked<B>);
global_alloc_through_with!([B: Backend + Send] Locked<B>);

// SAFETY: forwarding to the borrowed backend keeps every guarantee it makes.
unsafe impl<B: Backend + ?Sized> Backend for &mut B {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        (**self).allocate(layout)
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { (**self).deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { (**self).grow_in_place(ptr, old_layout, new_layout) }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { (**self).shrink_in_place(ptr, old_layout, new_layout) }
    }

    #[inline]
    fn max_align(&self) -> usize {
        (**self).max_align()
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        (**self).owns(ptr)
    }

    #[inline]
    fn stats(&self) -> Stats {
        (**self).stats()
    }

    fn check(&self) -> Result<(), Corruption> {
        (**self).check()
    }

    fn trim(&mut self) {
        (**self).trim();
    }
}
