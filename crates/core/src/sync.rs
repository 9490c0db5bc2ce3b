//! The one place heapkit names atomics, cells shared between threads, and locks.
//!
//! Built normally, these are `core`'s types. Built with `RUSTFLAGS="--cfg loom"`, they are
//! [loom](https://docs.rs/loom)'s, so the loom tests model-check exactly the code that ships:
//! every concurrent structure in heapkit must take its atomics from here.
//!
//! Under loom, constructors cannot be `const` (loom's atomics register with the model at
//! run time), so [`SpinLock::new`] is a `const fn` only in ordinary builds.
//!
//! Every ordering stronger than `Relaxed` in shipped code is named with [`ordering`] (and
//! every fence is a named [`fence`]), so that `cargo xtask loom --mutants` can weaken each
//! one in turn to `Relaxed` and check that some loom model then fails.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

cfg_if::cfg_if! {
    if #[cfg(loom)] {
        pub use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
        use loom::sync::atomic::fence as unnamed_fence;
        #[cfg(target_has_atomic = "64")]
        pub use loom::sync::atomic::AtomicU64;
        /// Signals a busy-wait; under loom it yields so the model can run another thread.
        pub use loom::hint::spin_loop;
        pub use loom::cell::{MutPtr, UnsafeCell};
    } else {
        pub use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
        use core::sync::atomic::fence as unnamed_fence;
        #[cfg(target_has_atomic = "64")]
        pub use core::sync::atomic::AtomicU64;
        /// Signals a busy-wait; under loom it yields so the model can run another thread.
        pub use core::hint::spin_loop;
        pub use self::plain_cell::{MutPtr, UnsafeCell};
    }
}

/// The ordering this build weakens to `Relaxed`, by name: loom builds only, from the
/// `HEAPKIT_WEAKEN` environment variable when heapkit-core is compiled (`cargo xtask loom
/// --mutants` sets it; cargo rebuilds when it changes). Ordinary builds never weaken.
#[cfg(loom)]
const WEAKENED: Option<&str> = option_env!("HEAPKIT_WEAKEN");
#[cfg(not(loom))]
const WEAKENED: Option<&str> = None;

/// `order`, named so that `cargo xtask loom --mutants` can weaken it.
///
/// Every `Acquire`, `Release`, `AcqRel` or `SeqCst` in shipped code goes through here with
/// a name unique in the workspace (`"<crate>.<function>.<operation>"`), written as a
/// literal at the call: the mutation run finds the names by scanning the sources. It
/// returns `order` unchanged, at no cost, except in a loom build made with
/// `HEAPKIT_WEAKEN=<name>`, where the ordering of that name is `Relaxed` (valid in every
/// position, a compare-exchange's failure ordering included).
///
/// ```
/// use heapkit_core::sync::{ordering, AtomicBool, Ordering};
///
/// let ready = AtomicBool::new(false);
/// ready.store(true, ordering("doc.example.publish", Ordering::Release));
/// assert!(ready.load(ordering("doc.example.observe", Ordering::Acquire)));
/// ```
#[inline(always)]
#[must_use]
pub const fn ordering(name: &'static str, order: Ordering) -> Ordering {
    if is_weakened(name) {
        Ordering::Relaxed
    } else {
        order
    }
}

/// A memory fence, named as for [`ordering`]; weakened, it is no fence at all (there is no
/// `Relaxed` fence).
#[inline(always)]
pub fn fence(name: &'static str, order: Ordering) {
    if !is_weakened(name) {
        unnamed_fence(order);
    }
}

/// Keeps the compiler from moving this thread's memory accesses across this point, as a
/// signal handler that interrupts the thread would see them: a flag set before a critical
/// stretch is written before it starts. No instruction, and nothing between threads, so
/// loom has nothing to check.
#[inline(always)]
pub fn signal_fence() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Whether this build weakens the ordering called `name`; constant `false` in ordinary
/// builds.
#[inline(always)]
const fn is_weakened(name: &str) -> bool {
    match WEAKENED {
        Some(weakened) => same_name(weakened, name),
        None => false,
    }
}

/// String equality, in a `const fn`.
const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `core::cell::UnsafeCell` behind loom's access-tracking API, so one call site serves both.
#[cfg(not(loom))]
mod plain_cell {
    /// A cell whose contents are reached through raw pointers; see `loom::cell::UnsafeCell`.
    #[derive(Debug, Default)]
    #[repr(transparent)]
    pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        pub const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        /// Unwraps the value.
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        /// Calls `f` with a mutable raw pointer to the contents.
        #[inline]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        /// A mutable pointer to the contents, tracked as one access under loom.
        #[inline]
        pub fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// A raw mutable pointer into an [`UnsafeCell`], mirroring `loom::cell::MutPtr`.
    #[derive(Debug)]
    pub struct MutPtr<T: ?Sized>(*mut T);

    impl<T: ?Sized> MutPtr<T> {
        /// Calls `f` with the raw pointer, as `loom::cell::MutPtr::with` does (where the
        /// pointer must not outlive the `MutPtr`, the tracked access).
        #[inline]
        pub fn with<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0)
        }

        /// Dereferences the pointer.
        ///
        /// # Safety
        ///
        /// No other reference to the contents may exist while the result is used.
        #[inline]
        #[allow(clippy::mut_from_ref)] // mirrors loom's API: exclusivity is the caller's duty
        pub unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller guarantees exclusive access; the pointer comes from a live cell.
            unsafe { &mut *self.0 }
        }
    }
}

/// An atomic type that can be viewed in place in raw memory: what [`AtomicTable`] holds.
pub trait TableAtomic: Sized {
    /// The plain integer the atomic holds.
    type Value: Copy;

    /// A fresh atomic holding `value` (used for loom's boxed tables).
    fn fresh(value: Self::Value) -> Self;

    /// Views the integer at `slot` as an atomic.
    ///
    /// # Safety
    ///
    /// `slot` is aligned and valid for reads and writes for `'a`, and only ever accessed
    /// atomically during it.
    unsafe fn view<'a>(slot: *mut Self::Value) -> &'a Self;
}

macro_rules! table_atomic {
    ($($atomic:ident($value:ty)),*) => {$(
        impl TableAtomic for $atomic {
            type Value = $value;

            fn fresh(value: $value) -> Self {
                Self::new(value)
            }

            #[cfg(not(loom))]
            #[inline]
            unsafe fn view<'a>(slot: *mut $value) -> &'a Self {
                // SAFETY: the caller's guarantees are `from_ptr`'s.
                unsafe { Self::from_ptr(slot) }
            }

            #[cfg(loom)]
            unsafe fn view<'a>(_slot: *mut $value) -> &'a Self {
                unreachable!("loom tables are boxed, never viewed in place")
            }
        }
    )*};
}

table_atomic!(AtomicU32(u32), AtomicUsize(usize));

/// A table of atomics kept in memory an allocator manages: no allocation, and no set-up
/// beyond what the owner writes.
///
/// Loom's atomics are model objects that cannot be laid over raw memory, so under loom the
/// table is a boxed slice instead; the code indexing it is the same.
pub struct AtomicTable<A: TableAtomic> {
    #[cfg(not(loom))]
    slots: core::ptr::NonNull<A::Value>,
    #[cfg(loom)]
    slots: std::boxed::Box<[A]>,
    len: usize,
}

impl<A: TableAtomic> AtomicTable<A> {
    /// A table of `len` slots at `slots`. Ordinary builds leave the slots as they are (each
    /// must be written before it is read); loom's boxed table starts every slot at
    /// `loom_initial`.
    ///
    /// # Safety
    ///
    /// `slots` points to `len` aligned, writable values that the table's owner uses only
    /// through the table for as long as it lives.
    pub unsafe fn new(
        slots: core::ptr::NonNull<A::Value>,
        len: usize,
        loom_initial: A::Value,
    ) -> Self {
        #[cfg(not(loom))]
        let _ = loom_initial;
        #[cfg(loom)]
        let _ = slots;
        Self {
            #[cfg(not(loom))]
            slots,
            #[cfg(loom)]
            slots: (0..len).map(|_| A::fresh(loom_initial)).collect(),
            len,
        }
    }

    /// Slot `index`.
    #[inline]
    pub fn get(&self, index: usize) -> &A {
        assert!(
            index < self.len,
            "atomic table index {index} out of {}",
            self.len
        );
        #[cfg(not(loom))]
        // SAFETY: `index < len`: the slot is inside the table's memory (`new`), aligned,
        // and only accessed atomically.
        unsafe {
            A::view(self.slots.as_ptr().add(index))
        }
        #[cfg(loom)]
        &self.slots[index]
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: the table holds atomics (or pointers to them); sharing them is what atomics are for.
unsafe impl<A: TableAtomic + Sync> Sync for AtomicTable<A> {}
// SAFETY: as above; the memory is the owner's, not tied to a thread.
unsafe impl<A: TableAtomic + Send> Send for AtomicTable<A> {}

impl<A: TableAtomic> fmt::Debug for AtomicTable<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicTable")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A test-and-test-and-set spin lock, for `no_std` targets with no OS to block on.
///
/// Fair enough for an allocator's short critical sections; not a general-purpose mutex
/// (no poisoning, no parking). [`Locked`](crate::Locked) is built on it.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time, so sharing the lock
// only ever moves `T` between threads, which `T: Send` permits.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: owning the lock is owning the `T` inside it.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `value`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// An unlocked lock around `value`.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is free, then holds it until the guard is dropped.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            // Wait on a plain load so waiting threads do not keep stealing the cache line.
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
    }

    /// Takes the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange_weak(
                false,
                true,
                ordering("core.spin_lock.lock", Ordering::Acquire),
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| SpinGuard {
                lock: self,
                value: ManuallyDrop::new(self.value.get_mut()),
                _not_send: PhantomData,
            })
    }

    /// Releases a lock held through a guard that was forgotten (`core::mem::forget`): what
    /// a `fork` handler needs, which takes a lock before the process is copied and
    /// releases it afterwards, in the parent and in the child, in other calls.
    ///
    /// # Safety
    /// The lock is held through a forgotten guard, and the value is not used through that
    /// guard any more.
    pub unsafe fn force_unlock(&self) {
        self.unlock();
    }

    /// Lets the next thread in; every release of the lock goes through here.
    #[inline]
    fn unlock(&self) {
        self.locked
            .store(false, ordering("core.spin_lock.unlock", Ordering::Release));
    }

    /// Runs `f` on the value of a lock this thread holds through a forgotten guard (a
    /// `fork` handler's, see [`force_unlock`](Self::force_unlock)), without locking again:
    /// so the holder can still use what the lock guards before it lets go.
    ///
    /// # Safety
    /// This thread took the lock and forgot its guard, has not released it, and no other
    /// use of the value through that guard is in progress.
    pub unsafe fn with_held<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: per the caller the lock is held on this thread's behalf, so no other
        // thread reaches the value, and nothing else here uses it now.
        self.value.with_mut(|value| f(unsafe { &mut *value }))
    }

    /// The value, reached through exclusive ownership of the lock: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves no guard and no other reference to the value exists,
        // and the returned borrow of `self` keeps it that way for as long as it lives.
        self.value.with_mut(|value| unsafe { &mut *value })
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Exclusive access to a [`SpinLock`]'s value; unlocks when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    // Dropped by hand before unlocking: under loom the pointer marks an access in progress,
    // and it must end before another thread may take the lock.
    value: ManuallyDrop<MutPtr<T>>,
    // Unlocking from another thread than the one that locked is fine for a spin lock, but a
    // guard that migrates would be surprising and is never needed: keep it on one thread.
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // A shared reference straight from the raw pointer: `MutPtr::deref` would make a
        // fresh `&mut` on each call, invalidating (under Stacked Borrows) every `&T` handed
        // out before it while they are still in use.
        // SAFETY: the guard holds the lock, so no other thread reaches the value, and the
        // borrow of `self` keeps `deref_mut` from making a `&mut` while the `&T` lives.
        // The pointer is live (from the lock's cell) for as long as the guard.
        self.value.with(|value| unsafe { &*value })
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only access to the value.
        unsafe { MutPtr::deref(&self.value) }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `value` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        self.lock.unlock();
    }
}

impl<T: fmt::Debug> fmt::Debug for SpinGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{ordering, same_name, Ordering};

    #[test]
    fn names_compare_byte_for_byte() {
        assert!(same_name("pool.push.head_cas", "pool.push.head_cas"));
        assert!(!same_name("pool.push.head_cas", "pool.push.head_ca"));
        assert!(!same_name("pool.push.head_cas", "pool.push.head_cat"));
        assert!(same_name("", ""));
    }

    #[test]
    fn ordinary_builds_keep_every_ordering() {
        for order in [
            Ordering::Acquire,
            Ordering::Release,
            Ordering::AcqRel,
            Ordering::SeqCst,
        ] {
            assert_eq!(ordering("core.spin_lock.lock", order), order);
        }
    }
}
