//! The contract suite for the buddy allocator: one aligned region, a misaligned odd-sized
//! one, and several regions at once.

use heapkit_buddy::Buddy;
use heapkit_core::{Local, Locked};
use heapkit_testkit::{contract_suite, Profile, Regions};

const REGION: usize = if cfg!(miri) { 64 * 1024 } else { 1024 * 1024 };
/// 16-byte minimum blocks, 13 orders: up to 64 KiB blocks.
type Heap = Buddy<13>;

fn aligned(regions: &mut Regions) -> Heap {
    let mut heap = Heap::new(16).unwrap();
    let region = regions.take(REGION, 4096);
    // SAFETY: the harness drops the allocator before the region.
    unsafe { heap.add_region(region.cast(), REGION) }.unwrap();
    heap
}

/// A region starting 24 bytes past a page boundary, 3 KiB short of a power of two.
fn odd(regions: &mut Regions) -> Heap {
    let mut heap = Heap::new(16).unwrap();
    let region = regions.take(REGION, 4096);
    let start = region.cast::<u8>().as_ptr().wrapping_add(24);
    let len = REGION - 24 - 3 * 1024;
    // SAFETY: inside the taken region, which outlives the allocator.
    unsafe { heap.add_region(core::ptr::NonNull::new(start).unwrap(), len) }.unwrap();
    heap
}

fn three_regions(regions: &mut Regions) -> Heap {
    let mut heap = Heap::new(16).unwrap();
    for len in [REGION / 4, REGION / 8, REGION / 2] {
        let region = regions.take(len, 64);
        // SAFETY: as above.
        unsafe { heap.add_region(region.cast(), len) }.unwrap();
    }
    heap
}

const PROFILE: Profile = Profile::new(4096, 4096);

// Under miri, which interprets every step, the shapes marked `ignore` are left to native
// runs: each adapter and combinator still runs there over at least one shape.
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    local_aligned,
    PROFILE,
    |r: &mut Regions| Local::new(aligned(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    locked_aligned,
    PROFILE,
    |r: &mut Regions| Locked::new(aligned(r))
);
contract_suite!(local_odd_region, PROFILE, |r: &mut Regions| Local::new(
    odd(r)
));
contract_suite!(local_three_regions, PROFILE, |r: &mut Regions| Local::new(
    three_regions(r)
));
