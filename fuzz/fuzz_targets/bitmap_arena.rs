//! `BitmapArena` (bitmap carved or apart) and `AtomicBitmap` with fuzzed geometry, driven
//! through the shadow model.
#![no_main]

use std::alloc::Layout;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{AllocError, Local, Stats};
use heapkit_testkit::{Harness, Op, Profile, Subject};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Kind {
    Carved,
    SeparateBitmap,
    Atomic,
}

#[derive(Debug, Arbitrary)]
struct Input {
    kind: Kind,
    /// Block size 1..=256 (a power of two).
    block_shift: u8,
    /// Region of up to 64 KiB.
    region_kib: u8,
    ops: Vec<Op>,
}

/// `AtomicBitmap` through its own `Allocator` implementation.
struct Direct(AtomicBitmap);

// SAFETY: forwards to `AtomicBitmap`'s implementation.
unsafe impl allocator_api2::alloc::Allocator for Direct {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        allocator_api2::alloc::Allocator::allocate(&self.0, layout)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { allocator_api2::alloc::Allocator::deallocate(&self.0, ptr, layout) }
    }
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded.
        unsafe { allocator_api2::alloc::Allocator::grow(&self.0, ptr, old, new) }
    }
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded.
        unsafe { allocator_api2::alloc::Allocator::shrink(&self.0, ptr, old, new) }
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

fuzz_target!(|input: Input| {
    let block = 1usize << (input.block_shift % 9);
    let len = 1024 * (1 + usize::from(input.region_kib % 64));
    let result = match input.kind {
        Kind::Carved => Harness::new(Profile::new(4096, 4096), |regions| {
            let region = regions.take(len, 4096);
            // SAFETY: the harness drops the arena before the region.
            Local::new(unsafe { BitmapArena::from_raw(region.cast(), len, block) }.unwrap())
        })
        .run(&input.ops),
        Kind::SeparateBitmap => Harness::new(Profile::new(4096, 4096), |regions| {
            let region = regions.take(len, 4096);
            let words = BitmapArena::bitmap_words(len / block);
            let bitmap = regions.take_side_buffer(words * 8, 8);
            // SAFETY: the harness drops the arena before both buffers.
            let arena = unsafe {
                BitmapArena::from_raw_parts(region.cast(), len, bitmap.cast(), words, block)
            };
            Local::new(arena.unwrap())
        })
        .run(&input.ops),
        Kind::Atomic => Harness::new(Profile::new(block, block), |regions| {
            let region = regions.take(len, block);
            // SAFETY: the harness drops the bitmap before the region.
            Direct(unsafe { AtomicBitmap::from_raw(region.cast(), len, block) }.unwrap())
        })
        .run(&input.ops),
    };
    if let Err(error) = result {
        panic!("{error}");
    }
});
