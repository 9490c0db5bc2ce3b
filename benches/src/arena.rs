//! [`Arena`]: the calls every workload makes, implemented for heapkit's backends and for
//! the peer crates that manage a fixed region, so one workload drives them all alike.

use std::alloc::{GlobalAlloc, Layout};
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use heapkit_core::{resize, Backend};

use crate::global::FromGlobal;
use crate::Region;

/// An allocator over a fixed region, as the workloads use it.
pub trait Arena {
    /// A block for `layout` (size non-zero), or `None` when out of memory.
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
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // SAFETY: per the caller.
        let block = unsafe {
            if new_size >= layout.size() {
                resize::grow(&mut self.0, ptr, layout, new_layout, false)
            } else {
                resize::shrink(&mut self.0, ptr, layout, new_layout)
            }
        };
        block.ok().map(NonNull::cast)
    }
}

/// rlsf's TLSF with the parameters its documentation suggests for large pools.
pub type RlsfTlsf = rlsf::Tlsf<'static, u32, u32, 28, 32>;

impl Arena for RlsfTlsf {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.allocate(layout)
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.deallocate(ptr, layout.align()) }
    }

    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // SAFETY: per the caller.
        unsafe { self.reallocate(ptr, new_layout) }
    }
}

/// talc's core allocator over a region it was given by hand.
pub type TalcArena = talc::base::Talc<talc::source::Manual, talc::DefaultBinning>;

impl Arena for TalcArena {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the workloads never request zero bytes.
        unsafe { self.allocate(layout) }
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.deallocate(ptr.as_ptr(), layout) }
    }

    #[inline]
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: per the caller.
        unsafe {
            if self.try_realloc_in_place(ptr.as_ptr(), layout, new_size) {
                return Some(ptr);
            }
            realloc_by_moving(self, ptr, layout, new_size)
        }
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
    let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
    let moved = arena.alloc(new_layout)?;
    // SAFETY: per the caller `ptr` is live with `layout`; `moved` is a distinct new block
    // of `new_size` bytes; the old block is freed once.
    unsafe {
        ptr.copy_to_nonoverlapping(moved, layout.size().min(new_size));
        arena.free(ptr, layout);
    }
    Some(moved)
}

/// `buddy_system_allocator`'s heap with the 33 orders its documentation uses.
pub type BuddySystem = buddy_system_allocator::Heap<33>;

impl Arena for BuddySystem {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        BuddySystem::alloc(self, layout).ok()
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.dealloc(ptr, layout) }
    }
}

/// `linked_list_allocator`'s first-fit heap.
pub type LinkedList = linked_list_allocator::Heap;

impl Arena for LinkedList {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.allocate_first_fit(layout).ok()
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.deallocate(ptr, layout) }
    }
}

/// A global allocator (glibc, mimalloc) as an arena, for timing only: its blocks are not
/// in any one region.
impl<G: GlobalAlloc> Arena for FromGlobal<G> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the workloads never request zero bytes.
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

/// A leaked region of `len` bytes (page aligned) as the `'static` slice the peers take.
fn leaked(len: usize) -> &'static mut [MaybeUninit<u8>] {
    Region::new(len, 4096).leak()
}

/// heapkit's TLSF (default parameters) over a fresh `len`-byte region.
pub fn heapkit_tlsf(len: usize) -> Heapkit<heapkit_tlsf::Tlsf> {
    tlsf_over(leaked(len))
}

/// rlsf over a fresh `len`-byte region.
pub fn rlsf(len: usize) -> RlsfTlsf {
    rlsf_over(leaked(len))
}

/// talc over a fresh `len`-byte region.
pub fn talc(len: usize) -> TalcArena {
    talc_over(leaked(len))
}

/// heapkit's TLSF over `region`.
pub fn tlsf_over(region: &'static mut [MaybeUninit<u8>]) -> Heapkit<heapkit_tlsf::Tlsf> {
    Heapkit(heapkit_tlsf::Tlsf::with_region(region).expect("region fits TLSF"))
}

/// rlsf over `region`.
pub fn rlsf_over(region: &'static mut [MaybeUninit<u8>]) -> RlsfTlsf {
    let mut tlsf = RlsfTlsf::new();
    tlsf.insert_free_block(region);
    tlsf
}

/// talc over `region`.
pub fn talc_over(region: &'static mut [MaybeUninit<u8>]) -> TalcArena {
    let len = region.len();
    let mut talc = TalcArena::new(talc::source::Manual);
    // SAFETY: the region is talc's alone for the rest of the process.
    unsafe { talc.claim(region.as_mut_ptr().cast(), len) }.expect("talc claims the region");
    talc
}

/// `buddy_system_allocator` over `region`.
pub fn buddy_system_over(region: &'static mut [MaybeUninit<u8>]) -> BuddySystem {
    let mut heap = BuddySystem::new();
    // SAFETY: the region is the heap's alone for the rest of the process.
    unsafe { heap.init(region.as_mut_ptr().addr(), region.len()) };
    heap
}

/// `linked_list_allocator` over `region`.
pub fn linked_list_over(region: &'static mut [MaybeUninit<u8>]) -> LinkedList {
    // SAFETY: the region is the heap's alone for the rest of the process.
    unsafe { LinkedList::new(region.as_mut_ptr().cast(), region.len()) }
}
