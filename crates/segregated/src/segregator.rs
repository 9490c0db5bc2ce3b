//! [`Segregator`]: small requests to one allocator, the rest to another.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{AllocError, Backend, Corruption, Stats};

/// Sends requests of at most `LIMIT` bytes (and an alignment `Small` can serve) to
/// `Small`, everything else to `Large`.
///
/// **Routing frees.** A free carries only the pointer and a layout the block fits, so the
/// side is chosen again from the layout, by the same rule. That works because a block from
/// `Small` is reported with a usable length of at most `LIMIT`: the caller can never free
/// or resize it with a size above `LIMIT`, which would send it to `Large`. A block from
/// `Large` was requested with more than `LIMIT` bytes (or a larger alignment), so any
/// layout that fits it routes to `Large` too.
///
/// **Resizing across the limit** (growing a small block past `LIMIT`, shrinking a large one
/// to `LIMIT` or less) fails in place, so the adapters move the block to the other side.
///
/// Zero-cost when not used: the struct is the two children side by side, and routing is
/// one comparison against a constant.
#[derive(Debug, Default)]
pub struct Segregator<const LIMIT: usize, Small, Large> {
    small: Small,
    large: Large,
}

impl<const LIMIT: usize, Small: Backend, Large: Backend> Segregator<LIMIT, Small, Large> {
    /// Composes `small` (requests up to `LIMIT` bytes) and `large`.
    pub const fn new(small: Small, large: Large) -> Self {
        Self { small, large }
    }

    /// The two children, read-only.
    pub fn parts(&self) -> (&Small, &Large) {
        (&self.small, &self.large)
    }

    /// The two children, for set-up such as adding memory to one of them.
    ///
    /// # Safety
    ///
    /// While any block handed out through `self` is live, the caller must not replace,
    /// swap, take or drop-in-place a child (the block would be freed into an allocator that
    /// never handed it out), nor allocate or free through it directly. Adding memory
    /// (`add_region`) and reading statistics are fine.
    pub unsafe fn parts_mut(&mut self) -> (&mut Small, &mut Large) {
        (&mut self.small, &mut self.large)
    }

    /// The two children, taking the segregator apart.
    pub fn into_parts(self) -> (Small, Large) {
        (self.small, self.large)
    }

    /// Whether `layout` goes to the small side.
    #[inline(always)]
    pub fn is_small(&self, layout: Layout) -> bool {
        layout.size() <= LIMIT && layout.align() <= self.small.max_align()
    }

    #[inline(always)]
    fn cap_to_limit(block: NonNull<[u8]>) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(block.cast::<u8>(), block.len().min(LIMIT))
    }
}

// SAFETY: every block comes from one child and is returned to the same child, by the
// routing rule documented on the type (usable lengths of small blocks are trimmed to
// `LIMIT`, so no fitting layout of a small block routes to the large side, and vice
// versa); trimming a usable length only hides bytes the child still owns.
unsafe impl<const LIMIT: usize, Small: Backend, Large: Backend> Backend
    for Segregator<LIMIT, Small, Large>
{
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if self.is_small(layout) {
            self.small.allocate(layout).map(Self::cap_to_limit)
        } else {
            self.large.allocate(layout)
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if self.is_small(layout) {
            crate::check_routed(&self.small, ptr, "deallocate", "small");
            // SAFETY: routed to the child that allocated it (see the type's docs).
            unsafe { self.small.deallocate(ptr, layout) }
        } else {
            crate::check_routed(&self.large, ptr, "deallocate", "large");
            // SAFETY: as above.
            unsafe { self.large.deallocate(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (self.is_small(old_layout), self.is_small(new_layout)) {
            (true, true) => {
                crate::check_routed(&self.small, ptr, "grow", "small");
                // SAFETY: the block and both layouts belong to the small side.
                unsafe { self.small.grow_in_place(ptr, old_layout, new_layout) }
                    .map(Self::cap_to_limit)
            }
            (false, false) => {
                crate::check_routed(&self.large, ptr, "grow", "large");
                // SAFETY: as above, for the large side.
                unsafe { self.large.grow_in_place(ptr, old_layout, new_layout) }
            }
            _ => Err(AllocError),
        }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (self.is_small(old_layout), self.is_small(new_layout)) {
            (true, true) => {
                crate::check_routed(&self.small, ptr, "shrink", "small");
                // SAFETY: the block and both layouts belong to the small side.
                unsafe { self.small.shrink_in_place(ptr, old_layout, new_layout) }
                    .map(Self::cap_to_limit)
            }
            (false, false) => {
                crate::check_routed(&self.large, ptr, "shrink", "large");
                // SAFETY: as above, for the large side.
                unsafe { self.large.shrink_in_place(ptr, old_layout, new_layout) }
            }
            _ => Err(AllocError),
        }
    }

    fn max_align(&self) -> usize {
        self.small.max_align().max(self.large.max_align())
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.small.owns(ptr) || self.large.owns(ptr)
    }

    fn stats(&self) -> Stats {
        self.small.stats().combine(self.large.stats())
    }

    fn check(&self) -> Result<(), Corruption> {
        self.small.check()?;
        self.large.check()
    }

    fn trim(&mut self) {
        self.small.trim();
        self.large.trim();
    }
}
