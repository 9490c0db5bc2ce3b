//! [`Reference`]: a budgeted backend on the system allocator, the one the kit trusts.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use heapkit_core::{invalid_use, AllocError, Backend, Stats};

/// A [`Backend`] that delegates to `std::alloc` with a byte budget, checking every free.
///
/// It is the kit's reference: it passes the contract suite, and the kit's own tests break
/// it on purpose to show the shadow model catches each kind of bug. Usable sizes are the
/// request rounded up to [`Reference::GRANULE`], so the "fits" rule and in-place resizing
/// within that slack are exercised too. `capacity` is the budget; requests past it fail.
#[derive(Debug)]
pub struct Reference {
    budget: usize,
    in_use: usize,
    /// Live blocks by address: the pointer (keeping its provenance for `Drop`), the layout
    /// the system allocator was called with, and the usable size last reported.
    live: BTreeMap<usize, LiveBlock>,
}

#[derive(Debug)]
struct LiveBlock {
    ptr: NonNull<u8>,
    system_layout: Layout,
    usable: usize,
}

// SAFETY: `Reference` owns the blocks its pointers point to; nothing else aliases them
// through it, so moving it to another thread moves that ownership.
unsafe impl Send for Reference {}

impl Reference {
    /// Usable sizes are multiples of this.
    pub const GRANULE: usize = 8;

    /// An empty reference that hands out at most `budget` usable bytes at once.
    pub const fn with_budget(budget: usize) -> Self {
        Self {
            budget,
            in_use: 0,
            live: BTreeMap::new(),
        }
    }

    fn usable_for(size: usize) -> Option<usize> {
        size.max(1).checked_next_multiple_of(Self::GRANULE)
    }

    /// The live block at `ptr`, after checking `layout` fits it; panics on misuse.
    #[track_caller]
    fn fitted(&mut self, ptr: NonNull<u8>, layout: Layout, operation: &str) -> &mut LiveBlock {
        let Some(block) = self.live.get_mut(&ptr.as_ptr().addr()) else {
            invalid_use(
                "heapkit-testkit",
                operation,
                ptr.as_ptr(),
                "not a live block of this Reference",
            )
        };
        if layout.align() != block.system_layout.align() || layout.size() > block.usable {
            invalid_use(
                "heapkit-testkit",
                operation,
                ptr.as_ptr(),
                "layout does not fit the block",
            );
        }
        block
    }
}

// SAFETY: blocks come from the system allocator with the requested alignment and at least
// the usable size reported, and each is handed out once until freed.
unsafe impl Backend for Reference {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let usable = Self::usable_for(layout.size()).ok_or(AllocError)?;
        if usable > self.budget - self.in_use {
            return Err(AllocError);
        }
        let system_layout =
            Layout::from_size_align(usable, layout.align()).map_err(|_| AllocError)?;
        // SAFETY: `system_layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(system_layout) }).ok_or(AllocError)?;
        self.in_use += usable;
        self.live.insert(
            ptr.as_ptr().addr(),
            LiveBlock {
                ptr,
                system_layout,
                usable,
            },
        );
        Ok(NonNull::slice_from_raw_parts(ptr, usable))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let usable = self.fitted(ptr, layout, "deallocate").usable;
        let block = self
            .live
            .remove(&ptr.as_ptr().addr())
            .expect("fitted checked the block is live");
        self.in_use -= usable;
        // SAFETY: the block is live and was allocated with `system_layout`.
        unsafe { dealloc(block.ptr.as_ptr(), block.system_layout) }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.fitted(ptr, old_layout, "grow");
        if new_layout.size() > block.system_layout.size() {
            return Err(AllocError);
        }
        let old_usable = block.usable;
        let usable = Self::usable_for(new_layout.size())
            .ok_or(AllocError)?
            .max(old_usable);
        if usable - old_usable > self.budget - self.in_use {
            return Err(AllocError);
        }
        let block = self
            .live
            .get_mut(&ptr.as_ptr().addr())
            .expect("checked above");
        block.usable = usable;
        self.in_use += usable - old_usable;
        Ok(NonNull::slice_from_raw_parts(ptr, usable))
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.fitted(ptr, old_layout, "shrink");
        let old_usable = block.usable;
        let usable = Self::usable_for(new_layout.size()).ok_or(AllocError)?;
        // The system block keeps its size; only the usable length reported goes down, and
        // the budget gets the difference back.
        block.usable = usable;
        self.in_use -= old_usable - usable;
        Ok(NonNull::slice_from_raw_parts(ptr, usable))
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let addr = ptr.as_ptr().addr();
        self.live
            .range(..=addr)
            .next_back()
            .is_some_and(|(start, block)| addr < start + block.system_layout.size())
    }

    fn stats(&self) -> Stats {
        let free = self.budget - self.in_use;
        Stats {
            capacity: self.budget,
            in_use: self.in_use,
            free,
            largest_free: free,
            metadata: 0,
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        for block in self.live.values() {
            // SAFETY: every live block came from `alloc` with its `system_layout`.
            unsafe { dealloc(block.ptr.as_ptr(), block.system_layout) }
        }
    }
}
