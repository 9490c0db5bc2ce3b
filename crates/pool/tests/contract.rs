//! The contract suite for both pools, through every way callers reach them.

use heapkit_core::{Local, Locked, Shared};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::{contract_suite, Profile, Regions};

const BLOCK: usize = 64;
const ALIGN: usize = 16;
const REGION: usize = if cfg!(miri) { 4 * 1024 } else { 64 * 1024 };

/// Requests the pools can serve: up to one block, up to the block alignment.
const PROFILE: Profile = Profile::new(BLOCK, ALIGN);

fn pool(regions: &mut Regions) -> Pool {
    let region = regions.take(REGION, ALIGN);
    // SAFETY: the region outlives the pool (the harness drops the pool first).
    unsafe { Pool::from_raw(region.cast(), region.len(), BLOCK, ALIGN) }.unwrap()
}

fn atomic_pool(regions: &mut Regions) -> AtomicPool {
    let region = regions.take(REGION, ALIGN);
    // SAFETY: as above.
    unsafe { AtomicPool::from_raw(region.cast(), region.len(), BLOCK, ALIGN) }.unwrap()
}

// Under miri, which interprets every step, the shapes marked `ignore` are left to native
// runs: each adapter and combinator still runs there over at least one shape.
contract_suite!(local_pool, PROFILE, |r: &mut Regions| Local::new(pool(r)));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    locked_pool,
    PROFILE,
    |r: &mut Regions| Locked::new(pool(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    atomic_pool_as_backend,
    PROFILE,
    |r: &mut Regions| { Local::new(atomic_pool(r)) }
);
contract_suite!(atomic_pool_shared, PROFILE, |r: &mut Regions| Shared::new(
    atomic_pool(r)
));
