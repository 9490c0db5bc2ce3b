//! [`Bucketizer`]: one child allocator per size class.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Stats};

/// Routes each request to the child of the smallest size class that holds it: child `i`
/// serves sizes in `limits[i - 1] + 1 ..= limits[i]`. Requests above the last limit, or
/// aligned beyond what their child serves, fail.
///
/// Each block's usable length is trimmed to its class limit, so every layout that fits a
/// block routes back to the child that made it (as in [`Segregator`](crate::Segregator)).
/// Resizing within a class is the child's; across classes it fails in place, and the
/// adapters move the block.
///
/// With pools as children this is a slab allocator: one pool of fixed-size blocks per
/// class, no per-block header.
#[derive(Debug)]
pub struct Bucketizer<B, const N: usize> {
    children: [B; N],
    limits: [usize; N],
}

impl<B: Backend, const N: usize> Bucketizer<B, N> {
    /// Children with their class limits, ascending.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when a limit is 0 or not above the one before.
    pub fn new(children: [B; N], limits: [usize; N]) -> Result<Self, ConfigError> {
        let mut previous = 0;
        for &limit in &limits {
            if limit <= previous {
                return Err(ConfigError::OutOfRange {
                    what: "bucket limit",
                    value: limit,
                    min: previous + 1,
                    max: usize::MAX,
                });
            }
            previous = limit;
        }
        Ok(Self { children, limits })
    }

    /// `N` limits `step`, `2 * step`, ..., `N * step`.
    pub const fn linear_limits(step: usize) -> [usize; N] {
        let mut limits = [0; N];
        let mut i = 0;
        while i < N {
            limits[i] = (i + 1) * step;
            i += 1;
        }
        limits
    }

    /// The class limits.
    pub fn limits(&self) -> &[usize; N] {
        &self.limits
    }

    /// The children, smallest class first.
    pub fn children(&self) -> &[B; N] {
        &self.children
    }

    /// The children, for set-up such as adding memory to one of them.
    ///
    /// # Safety
    ///
    /// While any block handed out through `self` is live, the caller must not replace,
    /// swap, take or drop-in-place a child (the block would be freed into an allocator that
    /// never handed it out), nor allocate or free through it directly. Adding memory
    /// (`add_region`) and reading statistics are fine.
    pub unsafe fn children_mut(&mut self) -> &mut [B; N] {
        &mut self.children
    }

    /// The children, taking the bucketizer apart.
    pub fn into_children(self) -> [B; N] {
        self.children
    }

    /// The class serving `size` bytes, if any.
    #[inline(always)]
    pub fn class_of(&self, size: usize) -> Option<usize> {
        let class = self.limits.partition_point(|&limit| limit < size);
        (class < N).then_some(class)
    }

    #[inline(always)]
    fn cap_to_class(&self, class: usize, block: NonNull<[u8]>) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(block.cast::<u8>(), block.len().min(self.limits[class]))
    }
}

// SAFETY: each block comes from the child of its size class and goes back to it: usable
// lengths are trimmed to the class limit, so every layout that fits a block selects the
// same class; trimming only hides bytes the child still owns.
unsafe impl<B: Backend, const N: usize> Backend for Bucketizer<B, N> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let class = self.class_of(layout.size()).ok_or(AllocError)?;
        let block = self.children[class].allocate(layout)?;
        Ok(self.cap_to_class(class, block))
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let Some(class) = self.class_of(layout.size()) else {
            crate::routing_failed(ptr, "deallocate", "(no) size-class");
        };
        crate::check_routed(&self.children[class], ptr, "deallocate", "size-class");
        // SAFETY: the layout's class is the one that allocated the block.
        unsafe { self.children[class].deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let class = self.class_of(old_layout.size()).ok_or(AllocError)?;
        if self.class_of(new_layout.size()) != Some(class) {
            return Err(AllocError);
        }
        crate::check_routed(&self.children[class], ptr, "grow", "size-class");
        // SAFETY: the block and both layouts belong to this class's child.
        let block = unsafe { self.children[class].grow_in_place(ptr, old_layout, new_layout) }?;
        Ok(self.cap_to_class(class, block))
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let class = self.class_of(old_layout.size()).ok_or(AllocError)?;
        if self.class_of(new_layout.size()) != Some(class) {
            return Err(AllocError);
        }
        crate::check_routed(&self.children[class], ptr, "shrink", "size-class");
        // SAFETY: the block and both layouts belong to this class's child.
        let block = unsafe { self.children[class].shrink_in_place(ptr, old_layout, new_layout) }?;
        Ok(self.cap_to_class(class, block))
    }

    fn max_align(&self) -> usize {
        self.children
            .iter()
            .map(Backend::max_align)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.children.iter().any(|child| child.owns(ptr))
    }

    fn stats(&self) -> Stats {
        self.children
            .iter()
            .map(Backend::stats)
            .fold(Stats::default(), Stats::combine)
    }

    fn check(&self) -> Result<(), Corruption> {
        self.children.iter().try_for_each(Backend::check)
    }

    fn trim(&mut self) {
        self.children.iter_mut().for_each(Backend::trim);
    }
}
