//! [`Arena`]: the calls every workload and replay makes, implemented here for heapkit's
//! backends ([`Heapkit`]) and for any `GlobalAlloc` ([`FromGlobal`]); `heapkit-lab` adds
//! the peer crates. [`FromGlobal`] and [`LockedArena`] are also `Allocator`s, so one
//! workload of real collections runs on each.

use std::alloc::{GlobalAlloc, Layout};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
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

/// The least an allocator can do for the same calls: the block freed last kept at hand, a
/// stack of the others per size (in steps of [`FreeStacks::GRANULE`] bytes), new blocks
/// cut from the front of the region at their size rounded up to the granule; no header,
/// no search, no coalescing, and no memory of the region touched. Its books are the
/// pointer to the block freed last and, on the heap, one pointer per other freed block
/// (a vector per size up to the largest freed). Timed on a workload, what remains is the
/// workload's own work (drawing or reading its calls, its table of live blocks, the bytes
/// it writes to its blocks): the floor under an allocator's time on the same calls. Not a
/// usable allocator: memory freed in one size is never reused for another, so each size
/// drifts on its own (replacing random 8–256-byte blocks, it spans about 140 bytes per live
/// block at 10^5 and 10^6 live, 200 at 10^3).
///
/// ```
/// use std::alloc::Layout;
/// use std::mem::MaybeUninit;
/// use heapkit_trace::arena::{Arena, FreeStacks};
///
/// let mut memory = [MaybeUninit::<u8>::uninit(); 256];
/// let mut floor = FreeStacks::new(&mut memory);
/// let layout = Layout::from_size_align(24, 8).unwrap();
/// let block = floor.alloc(layout).unwrap();
/// // SAFETY: allocated just above with `layout`.
/// unsafe { floor.free(block, layout) };
/// assert_eq!(floor.alloc(layout), Some(block)); // its size's block freed last
/// ```
#[derive(Debug)]
pub struct FreeStacks<'a> {
    base: NonNull<u8>,
    len: usize,
    /// Bytes cut from the front so far.
    used: usize,
    /// The block freed last and its size class, until it is handed out again or another
    /// block is freed: a workload that frees a block and asks for one of its size (a pool's
    /// whole life) touches no stack.
    last: Option<(NonNull<u8>, usize)>,
    /// The other freed blocks of `(class + 1) * GRANULE` bytes at index `class`, the last
    /// freed last.
    stacks: Vec<Vec<NonNull<u8>>>,
    region: PhantomData<&'a mut [MaybeUninit<u8>]>,
}

impl<'a> FreeStacks<'a> {
    /// Sizes are rounded up to a multiple of this, and blocks aligned to it.
    pub const GRANULE: usize = 16;

    /// A stand-in over `region`.
    pub fn new(region: &'a mut [MaybeUninit<u8>]) -> Self {
        let skip = region
            .as_ptr()
            .align_offset(Self::GRANULE)
            .min(region.len());
        let region = &mut region[skip..];
        Self {
            len: region.len(),
            base: NonNull::from(region).cast(),
            used: 0,
            last: None,
            stacks: Vec::new(),
            region: PhantomData,
        }
    }

    /// The stack of blocks for `size` bytes (not zero): sizes `16k - 15..=16k` share one.
    #[inline]
    fn class(size: usize) -> usize {
        size.saturating_sub(1) / Self::GRANULE
    }

    /// Puts a freed block on its size's stack.
    #[inline]
    fn push(&mut self, block: NonNull<u8>, class: usize) {
        match self.stacks.get_mut(class) {
            Some(stack) => stack.push(block),
            None => self.push_to_new_stack(block, class),
        }
    }

    /// The first block stacked of a size larger than any before.
    #[cold]
    #[inline(never)]
    fn push_to_new_stack(&mut self, block: NonNull<u8>, class: usize) {
        self.stacks.resize_with(class + 1, Vec::new);
        self.stacks[class].push(block);
    }
}

impl Arena for FreeStacks<'_> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 || layout.align() > Self::GRANULE {
            return None;
        }
        let class = Self::class(layout.size());
        if let Some((block, last_class)) = self.last {
            if last_class == class {
                self.last = None;
                return Some(block);
            }
        }
        if let Some(block) = self.stacks.get_mut(class).and_then(Vec::pop) {
            return Some(block);
        }
        // At most `isize::MAX + GRANULE`: no overflow.
        let bytes = (class + 1) * Self::GRANULE;
        if bytes > self.len - self.used {
            return None;
        }
        // SAFETY: `used + bytes <= len`: the block lies inside the region, after every block
        // cut before it; `base` (the region being non-empty) and `used` are multiples of the
        // granule, so it is aligned.
        let block = unsafe { self.base.add(self.used) };
        self.used += bytes;
        Some(block)
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // Per the caller, a block allocated here: its class was cut from the region, so the
        // vector of stacks has at most one entry per granule of the region.
        let class = Self::class(layout.size());
        if let Some((before, before_class)) = self.last.replace((ptr, class)) {
            self.push(before, before_class);
        }
    }
}

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

    #[test]
    fn free_stacks_reuse_the_last_block_freed_of_a_size_before_cutting_new_ones() {
        #[repr(align(16))]
        struct Memory([MaybeUninit<u8>; 1000]);
        let mut memory = Memory([MaybeUninit::uninit(); 1000]);
        let mut floor = FreeStacks::new(&mut memory.0);
        let layout = |size| Layout::from_size_align(size, 8).unwrap();
        // Packed: 24 and 32 bytes take 32, 33 takes 48, 1 takes 16, each after the last.
        let a = floor.alloc(layout(24)).unwrap();
        let b = floor.alloc(layout(32)).unwrap();
        let c = floor.alloc(layout(33)).unwrap();
        let d = floor.alloc(layout(1)).unwrap();
        let offset = |block: NonNull<u8>| block.as_ptr().addr() - a.as_ptr().addr();
        assert_eq!([offset(b), offset(c), offset(d)], [32, 64, 112]);
        // SAFETY: each block is live, allocated above with the layout it is freed with.
        unsafe {
            floor.free(a, layout(24));
            floor.free(b, layout(32));
            floor.free(c, layout(33));
        }
        // A freed block of the size comes back, the last freed first, while fresh memory
        // remains; a size with none freed gets fresh memory.
        assert_eq!(floor.alloc(layout(17)), Some(b));
        assert_eq!(floor.alloc(layout(48)), Some(c));
        assert_eq!(offset(floor.alloc(layout(40)).unwrap()), 128);
        assert_eq!(floor.alloc(layout(32)), Some(a));
        assert_eq!(offset(floor.alloc(layout(32)).unwrap()), 176);
        // Refused: zero bytes, an alignment past the granule, more than the 792 bytes left.
        assert_eq!(floor.alloc(layout(0)), None);
        assert_eq!(floor.alloc(Layout::from_size_align(16, 32).unwrap()), None);
        assert_eq!(floor.alloc(layout(793)), None);
        assert_eq!(offset(floor.alloc(layout(777)).unwrap()), 208);
        assert_eq!(floor.alloc(layout(1)), None);
    }
}
