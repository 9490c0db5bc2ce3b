//! The contract suite for both pools, through every way callers reach them.

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use heapkit_core::{Layout, Local, Locked, Stats};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::{contract_suite, Profile, Regions, Subject};

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

contract_suite!(local_pool, PROFILE, |r: &mut Regions| Local::new(pool(r)));
contract_suite!(locked_pool, PROFILE, |r: &mut Regions| Locked::new(pool(r)));
contract_suite!(atomic_pool_as_backend, PROFILE, |r: &mut Regions| {
    Local::new(atomic_pool(r))
});
contract_suite!(atomic_pool_direct, PROFILE, |r: &mut Regions| Direct(
    atomic_pool(r)
));

/// `AtomicPool` through its own `Allocator` implementation, not an adapter's.
struct Direct(AtomicPool);

// SAFETY: forwards to `AtomicPool`'s implementation.
unsafe impl Allocator for Direct {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.0.allocate(layout)
    }
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.0.allocate_zeroed(layout)
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
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded.
        unsafe { self.0.grow_zeroed(ptr, old, new) }
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
