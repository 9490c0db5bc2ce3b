//! Values in the region: `alloc` and friends, through `&self`, so many can be live at once.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{AllocError, Source};

use crate::bump::CRATE;
use crate::Bump;

/// Refuses, at compile time, a type whose drop would do something: the region never runs
/// destructors, so what such a value owns would leak.
struct NoDrop<T>(core::marker::PhantomData<T>);

impl<T> NoDrop<T> {
    const CHECK: () = assert!(
        !core::mem::needs_drop::<T>(),
        "heapkit-region never runs destructors: allocate values that need no drop (copy \
         strings with `alloc_str`, build collections with `Vec::new_in(&region)`)"
    );
}

#[cold]
#[inline(never)]
#[track_caller]
fn out_of_memory(layout: Layout) -> ! {
    panic!(
        "{CRATE}: out of memory allocating {} bytes aligned to {}",
        layout.size(),
        layout.align()
    )
}

impl<S: Source> Bump<'_, S> {
    /// Room for a `layout`, uninitialised; size 0 gets an aligned dangling pointer.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when neither the current chunk nor the source can serve it.
    #[inline(always)]
    pub fn alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if layout.size() == 0 {
            return Ok(heapkit_core::resize::dangling(layout).cast());
        }
        self.bump(Self::grain(layout.size()), layout.align())
    }

    /// Moves `value` into the region.
    ///
    /// # Panics
    ///
    /// When the region is out of memory. Types that need dropping do not build (the check
    /// runs when the call is instantiated, so `cargo check` does not report it):
    ///
    /// ```compile_fail
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 256];
    /// let region = Bump::new(&mut buffer);
    /// region.alloc(String::from("owns a heap buffer"));
    /// ```
    ///
    /// A value stays borrowed from the region, so a release cannot free it while in use:
    ///
    /// ```compile_fail
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 256];
    /// let mut region = Bump::new(&mut buffer);
    /// let mark = region.mark();
    /// let counter = region.alloc(0u32);
    /// region.release(mark);
    /// *counter += 1;
    /// ```
    #[inline(always)]
    #[track_caller]
    #[allow(clippy::mut_from_ref)] // each call hands out fresh, disjoint memory
    pub fn alloc<T>(&self, value: T) -> &mut T {
        self.alloc_with(|| value)
    }

    /// As [`alloc`](Self::alloc), failing instead of panicking.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the region is out of memory.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)] // each call hands out fresh, disjoint memory
    pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, AllocError> {
        () = NoDrop::<T>::CHECK;
        let slot = self.alloc_layout(Layout::new::<T>())?.cast::<T>();
        // SAFETY: fresh memory for one `T`, aligned, not aliased; it stays valid while
        // `self` is borrowed (releases and resets take `&mut self`).
        unsafe {
            slot.write(value);
            Ok(&mut *slot.as_ptr())
        }
    }

    /// Allocates room for a `T`, then writes `make()` into it: the value is built in place
    /// rather than on the stack first.
    ///
    /// # Panics
    ///
    /// When the region is out of memory.
    #[inline(always)]
    #[track_caller]
    #[allow(clippy::mut_from_ref)] // each call hands out fresh, disjoint memory
    pub fn alloc_with<T>(&self, make: impl FnOnce() -> T) -> &mut T {
        () = NoDrop::<T>::CHECK;
        let layout = Layout::new::<T>();
        let slot = self
            .alloc_layout(layout)
            .unwrap_or_else(|AllocError| out_of_memory(layout))
            .cast::<T>();
        // SAFETY: as in `try_alloc`. If `make` panics nothing is written and the room is
        // simply left unused.
        unsafe {
            slot.write(make());
            &mut *slot.as_ptr()
        }
    }

    /// Copies `values` into the region.
    ///
    /// # Panics
    ///
    /// When the region is out of memory.
    #[inline]
    #[track_caller]
    #[allow(clippy::mut_from_ref)] // each call hands out fresh, disjoint memory
    pub fn alloc_slice_copy<T: Copy>(&self, values: &[T]) -> &mut [T] {
        // `values` exists, so its layout is valid.
        let layout = Layout::for_value(values);
        let start = self
            .alloc_layout(layout)
            .unwrap_or_else(|AllocError| out_of_memory(layout))
            .cast::<T>();
        // SAFETY: room for `values.len()` `T`s, aligned, disjoint from `values` (fresh
        // memory), valid while `self` is borrowed.
        unsafe {
            start.copy_from_nonoverlapping(NonNull::from(values).cast(), values.len());
            core::slice::from_raw_parts_mut(start.as_ptr(), values.len())
        }
    }

    /// Copies `text` into the region.
    ///
    /// # Panics
    ///
    /// When the region is out of memory.
    #[inline]
    #[track_caller]
    #[allow(clippy::mut_from_ref)] // each call hands out fresh, disjoint memory
    pub fn alloc_str(&self, text: &str) -> &mut str {
        let bytes = self.alloc_slice_copy(text.as_bytes());
        // SAFETY: a copy of a `str`'s bytes is UTF-8.
        unsafe { core::str::from_utf8_unchecked_mut(bytes) }
    }
}
