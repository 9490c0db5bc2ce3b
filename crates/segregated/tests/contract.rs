//! The contract suite for every combinator over real children, a user's own composition,
//! and the ready `Heap`.

use heapkit_buddy::Buddy;
use heapkit_core::{Local, Locked};
use heapkit_pool::Pool;
use heapkit_segregated::{Bucketizer, Counted, Fallback, Heap, Segregator};
use heapkit_testkit::{contract_suite, Profile, Regions};
use heapkit_tlsf::Tlsf;

const REGION: usize = if cfg!(miri) { 64 * 1024 } else { 512 * 1024 };

fn pool(regions: &mut Regions, block: usize, len: usize) -> Pool {
    let region = regions.take(len, 4096);
    // SAFETY: the harness drops the allocator before its regions.
    unsafe { Pool::from_raw(region.cast(), len, block, 16) }.unwrap()
}

fn tlsf(regions: &mut Regions, len: usize) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(len, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

fn buddy(regions: &mut Regions, len: usize) -> Buddy<16> {
    let mut heap = Buddy::new(16).unwrap();
    let region = regions.take(len, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

fn bucketizer(regions: &mut Regions) -> Bucketizer<Pool, 4> {
    let limits = [32, 64, 128, 256];
    let children = limits.map(|limit| pool(regions, limit, REGION / 8));
    Bucketizer::new(children, limits).unwrap()
}

/// 512-byte pool blocks behind a 256-byte limit: usable lengths are trimmed.
type Split = Segregator<256, Pool, Tlsf>;

fn split(regions: &mut Regions) -> Split {
    Segregator::new(pool(regions, 512, REGION / 4), tlsf(regions, REGION))
}

/// A small pool that overflows into TLSF.
fn overflow(regions: &mut Regions) -> Fallback<Pool, Tlsf> {
    Fallback::new(pool(regions, 64, 64 * 40), tlsf(regions, REGION))
}

/// What a user writes: slabs up to 256 bytes, TLSF above, a buddy when TLSF is full.
type Custom = Segregator<256, Bucketizer<Pool, 4>, Fallback<Tlsf, Buddy<16>>>;

fn custom(regions: &mut Regions) -> Custom {
    let large = Fallback::new(tlsf(regions, REGION / 4), buddy(regions, REGION));
    Segregator::new(bucketizer(regions), large)
}

fn heap(regions: &mut Regions) -> Heap {
    let mut heap = Heap::new();
    // Room for the slab chunks a class keeps (64 KiB each) beside the largest request at
    // the largest alignment. Under miri a quarter: filling 1 MiB took two minutes there.
    let len = if cfg!(miri) { 256 << 10 } else { 1 << 20 };
    let region = regions.take(len, 4096);
    // SAFETY: as above.
    unsafe { heap.add_region(region.cast(), len) }.unwrap();
    heap
}

const WIDE: Profile = Profile::new(4096, 4096);
/// Trimmed usable lengths: children report more in use than the caller sees.
const TRIMMED: Profile = Profile {
    exact_in_use: false,
    ..WIDE
};

// Under miri, which interprets every step, the shapes marked `ignore` are left to native
// runs: each adapter and combinator still runs there over at least one shape.
contract_suite!(segregator_pool_tlsf, TRIMMED, |r: &mut Regions| Local::new(
    split(r)
));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    fallback_pool_tlsf,
    WIDE,
    |r: &mut Regions| Local::new(overflow(r))
);
contract_suite!(
    #[cfg_attr(
        miri,
        ignore = "pools run under miri in heapkit-pool, routing in routing.rs"
    )]
    bucketizer_of_pools,
    Profile::new(256, 16),
    |r: &mut Regions| Local::new(bucketizer(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    counted_tlsf,
    WIDE,
    |r: &mut Regions| Local::new(Counted::new(tlsf(r, REGION)))
);
contract_suite!(
    #[cfg_attr(
        miri,
        ignore = "its parts (Segregator, Bucketizer, TLSF) run under miri above"
    )]
    custom_composition,
    WIDE,
    |r: &mut Regions| Local::new(custom(r))
);
contract_suite!(heap_local, WIDE.caching(), |r: &mut Regions| Local::new(
    heap(r)
));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    heap_locked,
    WIDE.caching(),
    |r: &mut Regions| Locked::new(heap(r))
);
