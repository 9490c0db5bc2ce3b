//! The peer crates as [`Arena`]s, over regions the lab leaks for them.

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use heapkit_trace::arena::{realloc_by_moving, Arena, Heapkit};
use heapkit_trace::Region;

/// `Debug` (the peers have none) and `Deref`/`DerefMut` to the peer's own type for a
/// newtype over a peer crate's allocator: the newtypes exist only because `Arena` is
/// foreign to the peers' crates.
macro_rules! peer_newtype {
    ($name:ident, $ty:ty) => {
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl core::ops::Deref for $name {
            type Target = $ty;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl core::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}

/// rlsf's TLSF with the parameters its documentation suggests for large pools.
pub struct RlsfTlsf(pub rlsf::Tlsf<'static, u32, u32, 28, 32>);
peer_newtype!(RlsfTlsf, rlsf::Tlsf<'static, u32, u32, 28, 32>);

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
        let new_layout = heapkit_core::resize::resized(layout, new_size)?;
        // SAFETY: per the caller.
        unsafe { self.reallocate(ptr, new_layout) }
    }
}

/// talc's core allocator over a region it was given by hand.
pub struct TalcArena(pub talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);
peer_newtype!(TalcArena, talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

impl Arena for TalcArena {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: not zero bytes, which talc's `allocate` may not be asked for.
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

/// `buddy_system_allocator`'s heap with the 33 orders its documentation uses.
pub struct BuddySystem(pub buddy_system_allocator::Heap<33>);
peer_newtype!(BuddySystem, buddy_system_allocator::Heap<33>);

impl Arena for BuddySystem {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.alloc(layout).ok()
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller.
        unsafe { self.dealloc(ptr, layout) }
    }
}

/// `linked_list_allocator`'s first-fit heap.
pub struct LinkedList(pub linked_list_allocator::Heap);
peer_newtype!(LinkedList, linked_list_allocator::Heap);

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
    let mut tlsf = RlsfTlsf(rlsf::Tlsf::new());
    tlsf.insert_free_block(region);
    tlsf
}

/// talc over `region`.
pub fn talc_over(region: &'static mut [MaybeUninit<u8>]) -> TalcArena {
    let len = region.len();
    let mut talc = TalcArena(talc::base::Talc::new(talc::source::Manual));
    // SAFETY: the region is talc's alone for the rest of the process.
    unsafe { talc.claim(region.as_mut_ptr().cast(), len) }.expect("talc claims the region");
    talc
}

/// `buddy_system_allocator` over `region`.
pub fn buddy_system_over(region: &'static mut [MaybeUninit<u8>]) -> BuddySystem {
    let mut heap = BuddySystem(buddy_system_allocator::Heap::new());
    // SAFETY: the region is the heap's alone for the rest of the process.
    unsafe { heap.init(region.as_mut_ptr().addr(), region.len()) };
    heap
}

/// `linked_list_allocator` over `region`.
pub fn linked_list_over(region: &'static mut [MaybeUninit<u8>]) -> LinkedList {
    // SAFETY: the region is the heap's alone for the rest of the process.
    LinkedList(unsafe {
        linked_list_allocator::Heap::new(region.as_mut_ptr().cast(), region.len())
    })
}
