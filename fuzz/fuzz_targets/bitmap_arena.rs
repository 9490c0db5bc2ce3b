//! `BitmapArena` (bitmap carved or apart) and `AtomicBitmap` with fuzzed geometry, driven
//! through the shadow model.
#![no_main]

use arbitrary::Arbitrary;
use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Local, Shared};
use heapkit_testkit::{Harness, Op, Profile};
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
            Shared::new(unsafe { AtomicBitmap::from_raw(region.cast(), len, block) }.unwrap())
        })
        .run(&input.ops),
    };
    if let Err(error) = result {
        panic!("{error}");
    }
});
