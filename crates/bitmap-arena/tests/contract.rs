//! The contract suite for the arena (through both adapters, both bitmap placements) and
//! for `AtomicBitmap` through the `Shared` adapter.

use heapkit_bitmap_arena::{AtomicBitmap, BitmapArena};
use heapkit_core::{Local, Locked, Shared};
use heapkit_testkit::{contract_suite, Profile, Regions};

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

// Under miri, which interprets every step, the shapes marked `ignore` are left to native
// runs: each adapter and combinator still runs there over at least one shape.
contract_suite!(local_carved, PROFILE, |r: &mut Regions| Local::new(carved(
    r
)));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    locked_carved,
    PROFILE,
    |r: &mut Regions| Locked::new(carved(r))
);
contract_suite!(
    local_separate_bitmap,
    PROFILE,
    |r: &mut Regions| Local::new(separate(r))
);
contract_suite!(
    atomic_bitmap,
    Profile::new(BLOCK, BLOCK),
    |r: &mut Regions| {
        // Filling it block by block is its longest test: under miri a quarter.
        let len = if cfg!(miri) { REGION / 4 } else { REGION };
        let region = r.take(len, BLOCK);
        // SAFETY: the harness drops the bitmap before the region.
        Shared::new(unsafe { AtomicBitmap::from_raw(region.cast(), len, BLOCK) }.unwrap())
    }
);
