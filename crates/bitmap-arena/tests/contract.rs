//! The contract suite for the arena (through both adapters, both bitmap placements) and
//! for `AtomicBitmap` through its own `Allocator` implementation.

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Layout, Local, Locked, Stats};
use heapkit_testkit::{contract_suite, Profile, Regions, Subject};

const REGION: usize = if cfg!(miri) { 16 * 1024 } else { 256 * 1024 };
const BLOCK: usize = 64;

fn carved(regions: &mut Regions) -> BitmapArena {
    let region = regions.take(REGION, 4096);
    // SAFETY: the harness drops the arena before the region.
    unsafe { BitmapArena::from_raw(region.cast(), REGION, BLOCK) }.unwrap()
}

fn separate(regions: &mut Regions) -> BitmapArena {
    let region = regions.take(REGION, 4096);
    let words = BitmapArena::bitmap_words(REGION / BLOCK);
    // Not block memory: the harness flags any block handed out inside it.
    let bitmap = regions.take_side_buffer(words * 8, 8);
    // SAFETY: both buffers outlive the arena and are disjoint.
    unsafe { BitmapArena::from_raw_parts(region.cast(), REGION, bitmap.cast(), words, BLOCK) }
        .unwrap()
}

const PROFILE: Profile = Profile::new(4096, 4096);

contract_suite!(local_carved, PROFILE, |r: &mut Regions| Local::new(carved(
    r
)));
contract_suite!(locked_carved, PROFILE, |r: &mut Regions| Locked::new(
    carved(r)
));
contract_suite!(
    local_separate_bitmap,
    PROFILE,
    |r: &mut Regions| Local::new(separate(r))
);
contract_suite!(
    atomic_bitmap,
    Profile::new(BLOCK, BLOCK),
    |r: &mut Regions| {
        let region = r.take(REGION, BLOCK);
        // SAFETY: the harness drops the bitmap before the region.
        Direct(unsafe { AtomicBitmap::from_raw(region.cast(), REGION, BLOCK) }.unwrap())
    }
);

/// `AtomicBitmap` through its own `Allocator` implementation.
struct Direct(AtomicBitmap);

// SAFETY: forwards to `AtomicBitmap`'s implementation.
unsafe impl Allocator for Direct {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.0.allocate(layout)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(ptr, layout) }
    }
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded.
        unsafe { self.0.grow(ptr, old, new) }
    }
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded.
        unsafe { self.0.shrink(ptr, old, new) }
    }
}

impl Subject for Direct {
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.0.owns(ptr)
    }
}
