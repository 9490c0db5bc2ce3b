//! The contract suite for TLSF: one aligned region, a misaligned odd-sized one, several
//! regions at once, and small parameters whose largest block forces a region to be split.

use core::ptr::NonNull;

use heapkit_core::{Local, Locked};
use heapkit_testkit::{contract_suite, Profile, Regions};
use heapkit_tlsf::Tlsf;

const REGION: usize = if cfg!(miri) { 64 * 1024 } else { 1024 * 1024 };

fn aligned(regions: &mut Regions) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(REGION, 4096);
    // SAFETY: the harness drops the allocator before the region.
    unsafe { heap.add_region(region.cast(), REGION) }.unwrap();
    heap
}

/// A region starting 3 bytes past a page boundary, with an odd length.
fn odd(regions: &mut Regions) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(REGION, 4096);
    let start = region.cast::<u8>().as_ptr().wrapping_add(3);
    let len = REGION - 3 - 1001;
    // SAFETY: inside the taken region, which outlives the allocator.
    unsafe { heap.add_region(NonNull::new(start).unwrap(), len) }.unwrap();
    heap
}

fn three_regions(regions: &mut Regions) -> Tlsf<20, 16> {
    let mut heap = Tlsf::with_classes();
    for len in [REGION / 4, REGION / 8 + 40, REGION / 2] {
        let region = regions.take(len, 8);
        // SAFETY: as above.
        unsafe { heap.add_region(region.cast(), len) }.unwrap();
    }
    heap
}

/// `Tlsf<8, 4>` holds blocks below 8 KiB (on 64-bit targets): the region becomes many.
fn split_region(regions: &mut Regions) -> Tlsf<8, 4> {
    let mut heap = Tlsf::with_classes();
    let len = REGION / 4 + 123;
    let region = regions.take(len, 16);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
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
contract_suite!(
    local_split_region,
    Profile::new(2048, 1024),
    |r: &mut Regions| Local::new(split_region(r))
);

/// Over a borrowed buffer through `Lent` (here the harness's region, lent for `'static`).
fn lent(regions: &mut Regions) -> heapkit_core::Lent<'static, Tlsf> {
    let region = regions.take(REGION, 16);
    // SAFETY: the region is the allocator's alone and the harness drops the allocator
    // first.
    let buffer = unsafe { &mut *(region.as_ptr() as *mut [core::mem::MaybeUninit<u8>]) };
    heapkit_core::Lent::new(buffer).unwrap()
}

contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    local_lent,
    PROFILE,
    |r: &mut Regions| Local::new(lent(r))
);
