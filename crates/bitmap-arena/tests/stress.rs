//! Two real threads taking and returning `AtomicBitmap` blocks, each stamped with its
//! owner's checksum: a block handed out twice fails the check, a block lost fails the drain.

use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_bitmap_arena::AtomicBitmap;
use heapkit_core::{Layout, Shared};
use heapkit_testkit::Regions;

const BLOCK: usize = 32;
/// Three bit words' worth on 64-bit targets, so threads move between words.
const BLOCKS: usize = 192;
const HELD: usize = 120;
/// 2 threads x 500,000 operations; a few hundred under miri's data-race checker.
const OPERATIONS: u64 = if cfg!(miri) { 300 } else { 500_000 };

fn stamp(thread: u64, serial: u64) -> [u64; BLOCK / 8] {
    std::array::from_fn(|w| (thread << 56 | serial).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w as u64)
}

fn churn(bitmap: &Shared<AtomicBitmap>, thread: u64) {
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let check_and_free = |block: NonNull<u8>, serial: u64| {
        // SAFETY: a block this thread holds and stamped.
        let found = unsafe { block.cast::<[u64; BLOCK / 8]>().read() };
        assert_eq!(
            found,
            stamp(thread, serial),
            "block {block:p} was handed out twice"
        );
        // SAFETY: live, freed once.
        unsafe { bitmap.deallocate(block, layout) };
    };
    let mut held: Vec<(NonNull<u8>, u64)> = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ thread;
    for serial in 0..OPERATIONS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if held.is_empty() || (held.len() < HELD && rng % 3 != 0) {
            if let Ok(block) = bitmap.allocate(layout) {
                let block = block.cast::<u8>();
                // SAFETY: a fresh block of BLOCK bytes, 32-aligned.
                unsafe {
                    block
                        .cast::<[u64; BLOCK / 8]>()
                        .write(stamp(thread, serial))
                };
                held.push((block, serial));
            }
        } else {
            let (block, serial) = held.swap_remove((rng >> 32) as usize % held.len());
            check_and_free(block, serial);
        }
    }
    for (block, serial) in held {
        check_and_free(block, serial);
    }
}

#[test]
fn two_threads_never_share_or_lose_a_block() {
    let mut regions = Regions::new();
    let len = BLOCKS * BLOCK + 3 * 8;
    let region = regions.take(len, BLOCK);
    // SAFETY: `regions` outlives the bitmap.
    let bitmap = Shared::new(unsafe { AtomicBitmap::from_raw(region.cast(), len, BLOCK) }.unwrap());
    assert_eq!(bitmap.total_blocks(), BLOCKS);
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let bitmap = &bitmap;
            scope.spawn(move || churn(bitmap, thread));
        }
    });
    assert_eq!(bitmap.stats().in_use, 0);
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let mut all: Vec<_> = std::iter::from_fn(|| bitmap.allocate(layout).ok()).collect();
    assert_eq!(all.len(), BLOCKS, "a block was lost");
    all.sort_by_key(|b| b.cast::<u8>());
    all.dedup_by_key(|b| b.cast::<u8>());
    assert_eq!(all.len(), BLOCKS);
}
