//! The `checked` feature: a bitmap of allocated block starts, and the validation of every
//! pointer handed back.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::block::{footer_before, header};
use super::regions::Region;
use super::{Tlsf, CRATE, FLAGS, FREE, GRANULE, MIN_BLOCK, PREV_FREE, WORD};

#[cfg(feature = "checked")]
impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The usable size of the allocated block whose payload starts at `ptr`, or `None` if
    /// no allocated block starts there (`checked` only). Lets an allocator built on top
    /// verify a pointer before it reads memory around it.
    pub fn allocated_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let block = ptr.as_ptr().wrapping_sub(WORD);
        let (region, index) = self.start_bit(block)?;
        // SAFETY: `start_bit` found the region and a bit inside its map; a set bit means an
        // allocated block's header is there.
        unsafe {
            (*region)
                .starts
                .get(index)
                .then(|| (header(block) & !FLAGS) - WORD)
        }
    }

    /// The region and bit of the block starting at `block`, if `block` is a block position
    /// in some region.
    pub(super) fn start_bit(&self, block: *mut u8) -> Option<(*mut Region, usize)> {
        // `block` is a payload less a word, wrapped: any pointer may be asked about.
        let addr = block.addr().wrapping_add(WORD);
        let region = self
            .regions
            .find(|r| r.first.addr() < addr && addr < r.sentinel.addr())?;
        // SAFETY: a header on the list: live and ours.
        let first = unsafe { (*region).first };
        let offset = block.addr().checked_sub(first.addr())?;
        (offset % GRANULE == 0).then_some((region, offset / GRANULE))
    }

    pub(super) fn mark_start(&mut self, block: *mut u8, allocated: bool) {
        let (region, index) = self
            .start_bit(block)
            .expect("heapkit-tlsf: an allocated block lies outside every region");
        // SAFETY: `start_bit` found the region, whose map holds `index`; the map is ours.
        unsafe { (*region).starts.set(index, allocated) }
    }

    /// Checks that `ptr` is a live block `layout` fits, or panics naming the problem.
    pub(super) fn validate(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) {
        let fail = |reason: &str| heapkit_core::invalid_use(CRATE, operation, ptr.as_ptr(), reason);
        let block = ptr.as_ptr().wrapping_sub(WORD);
        let Some(region) = self.region_of(ptr.as_ptr().addr()) else {
            fail("pointer is not in memory this allocator manages")
        };
        let live = self.start_bit(block).is_some_and(|(region, index)| {
            // SAFETY: `start_bit` found the region, whose map holds `index`.
            unsafe { (*region).starts.get(index) }
        });
        if !live {
            fail("no allocated block starts here (freed already, or a pointer into a block)");
        }
        // SAFETY: an allocated block starts here, so its header is ours to read; the
        // neighbours read below are checked to lie inside the region first.
        unsafe {
            let h = header(block);
            let size = h & !FLAGS;
            if h & FREE != 0
                || size < MIN_BLOCK
                || size % GRANULE != 0
                || size > region.sentinel.addr() - block.addr()
            {
                fail("block header is corrupted");
            }
            if header(block.add(size)) & PREV_FREE != 0 {
                fail("block header is corrupted (the next block believes this one is free)");
            }
            if h & PREV_FREE != 0 {
                let prev_size = footer_before(block);
                let fits =
                    prev_size >= MIN_BLOCK && prev_size <= block.addr() - region.first.addr();
                if !fits || header(block.sub(prev_size)) != prev_size | FREE {
                    fail("block header is corrupted (the free block before it is damaged)");
                }
            }
            if layout.size() > size - WORD {
                fail("layout is larger than the block");
            }
        }
        if ptr.as_ptr().addr() % layout.align() != 0 {
            fail("pointer is not aligned to the layout's alignment");
        }
    }
}
