//! The `checked` feature: a bitmap of allocated block starts, and the validation of every
//! pointer handed back.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::block::Block;
use super::regions::Region;
use super::{Tlsf, CRATE, FREE, GRANULE, MIN_BLOCK, WORD};

#[cfg(feature = "checked")]
impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// The usable size of the allocated block whose payload starts at `ptr`, or `None` if
    /// no allocated block starts there (`checked` only). Lets an allocator built on top
    /// verify a pointer before it reads memory around it.
    pub fn allocated_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let block = Block::of_payload(ptr.as_ptr());
        let (region, index) = self.start_bit(block)?;
        // SAFETY: `start_bit` found the region and a bit inside its map; a set bit means an
        // allocated block's header is there.
        unsafe { (*region).starts.get(index).then(|| block.size() - WORD) }
    }

    /// The region and bit of the block starting at `block`, if `block` is a block position
    /// in some region.
    pub(super) fn start_bit(&self, block: Block) -> Option<(*mut Region, usize)> {
        // `block` is a payload less a word, wrapped: any pointer may be asked about.
        let addr = block.payload().addr();
        let region = self
            .regions
            .find(|r| r.first.addr() < addr && addr < r.sentinel.addr())?;
        // SAFETY: a header on the list: live and ours.
        let first = unsafe { (*region).first };
        let offset = block.addr().addr().checked_sub(first.addr())?;
        (offset % GRANULE == 0).then_some((region, offset / GRANULE))
    }

    pub(super) fn mark_start(&mut self, block: Block, allocated: bool) {
        let (region, index) = self
            .start_bit(block)
            .expect("heapkit-tlsf: an allocated block lies outside every region");
        // SAFETY: `start_bit` found the region, whose map holds `index`; the map is ours.
        unsafe { (*region).starts.set(index, allocated) }
    }

    /// Checks that `ptr` is a live block `layout` fits, or panics naming the problem.
    pub(super) fn validate(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) {
        let fail = |reason: &str| heapkit_core::invalid_use(CRATE, operation, ptr.as_ptr(), reason);
        let block = Block::of_payload(ptr.as_ptr());
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
            let size = block.size();
            if block.is_free()
                || size < MIN_BLOCK
                || size % GRANULE != 0
                || size > region.sentinel.addr() - block.addr().addr()
            {
                fail("block header is corrupted");
            }
            if block.add(size).prev_free() {
                fail("block header is corrupted (the next block believes this one is free)");
            }
            if block.prev_free() {
                let prev_size = block.footer_before();
                let fits = prev_size >= MIN_BLOCK
                    && prev_size <= block.addr().addr() - region.first.addr();
                if !fits || block.sub(prev_size).header() != prev_size | FREE {
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
