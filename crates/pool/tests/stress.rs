//! Real threads hammering one pool. Every block carries its owner's checksum while held:
//! a block handed out twice is overwritten by its second owner and fails the check, and a
//! block lost shows when the pool cannot be drained to exactly its block count at the end.

use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_core::{Inspect, Layout, Locked, Shared, Stats};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::Regions;

const BLOCK: usize = 64;
const BLOCKS: usize = 256;
/// Blocks each thread holds at most, so that together they contend for the last ones.
const HELD: usize = 160;

fn checksum(thread: u64, serial: u64) -> [u64; BLOCK / 8] {
    std::array::from_fn(|word| {
        (thread << 56 | serial).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ word as u64
    })
}

/// One thread's share: allocate, stamp, verify and free in a pseudo-random pattern.
fn churn(pool: &impl Allocator, thread: u64, operations: u64) {
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let mut held: Vec<(NonNull<u8>, u64)> = Vec::with_capacity(HELD);
    let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ thread;
    for serial in 0..operations {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let allocate = held.is_empty() || (held.len() < HELD && rng % 3 != 0);
        if allocate {
            let Ok(block) = pool.allocate(layout) else {
                continue; // the other thread holds the rest: fine
            };
            let block = block.cast::<u8>();
            // SAFETY: a fresh 64-byte block, 8-aligned.
            unsafe {
                block
                    .cast::<[u64; BLOCK / 8]>()
                    .write(checksum(thread, serial))
            };
            held.push((block, serial));
        } else {
            let (block, stamped) = held.swap_remove((rng >> 32) as usize % held.len());
            verify_and_free(pool, block, thread, stamped);
        }
    }
    for (block, stamped) in held {
        verify_and_free(pool, block, thread, stamped);
    }
}

/// Checks a held block still carries this thread's stamp, then frees it.
fn verify_and_free(pool: &impl Allocator, block: NonNull<u8>, thread: u64, stamped: u64) {
    // SAFETY: a block this thread holds and stamped.
    let found = unsafe { block.cast::<[u64; BLOCK / 8]>().read() };
    assert_eq!(
        found,
        checksum(thread, stamped),
        "block {block:p} was handed out twice"
    );
    // SAFETY: live with the churn layout, freed once.
    unsafe { pool.deallocate(block, Layout::from_size_align(BLOCK, 8).unwrap()) };
}

/// Two threads, then a drain that must find every block exactly once.
fn hammer(pool: &(impl Allocator + Sync), operations_per_thread: u64, stats: impl Fn() -> Stats) {
    std::thread::scope(|scope| {
        for thread in 0..2 {
            scope.spawn(move || churn(pool, thread, operations_per_thread));
        }
    });
    assert_eq!(stats().in_use, 0);
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let mut drained = Vec::new();
    while let Ok(block) = pool.allocate(layout) {
        drained.push(block.cast::<u8>());
    }
    assert_eq!(drained.len(), BLOCKS, "a block was lost");
    drained.sort();
    drained.dedup();
    assert_eq!(drained.len(), BLOCKS, "a block is on the free list twice");
    for block in drained {
        // SAFETY: live with `layout`.
        unsafe { pool.deallocate(block, layout) };
    }
}

/// A region holding exactly `BLOCKS` blocks plus `per_block` bookkeeping bytes each and
/// `extra` bytes of padding.
fn region_for(regions: &mut Regions, per_block: usize, extra: usize) -> (NonNull<u8>, usize) {
    let region = regions.take(BLOCKS * (BLOCK + per_block) + extra, 64);
    (region.cast(), region.len())
}

fn atomic_pool(regions: &mut Regions) -> Shared<AtomicPool> {
    // 4-byte links, up to 3 bytes of padding before the link table.
    let (start, len) = region_for(regions, 4, 3);
    // SAFETY: the region outlives the pool.
    let pool = unsafe { AtomicPool::from_raw(start, len, BLOCK, 8) }.unwrap();
    assert_eq!(pool.total_blocks(), BLOCKS);
    Shared::new(pool)
}

fn locked_pool(regions: &mut Regions) -> Locked<Pool> {
    // Room for the `checked` bitmap (one bit per block); slack without it.
    let (start, len) = region_for(regions, 0, BLOCKS / 8);
    // SAFETY: the region outlives the pool.
    let pool = unsafe { Pool::from_raw(start, len, BLOCK, 8) }.unwrap();
    assert_eq!(pool.total_blocks(), BLOCKS);
    Locked::new(pool)
}

/// 2 threads x 500,000 operations: 10^6 in all. Under miri, which checks every access of
/// the two threads for data races, a few hundred.
const OPERATIONS: u64 = if cfg!(miri) { 300 } else { 500_000 };

#[test]
fn atomic_pool_two_threads() {
    let mut regions = Regions::new();
    let pool = atomic_pool(&mut regions);
    hammer(&pool, OPERATIONS, || pool.stats());
}

#[test]
fn locked_pool_two_threads() {
    let mut regions = Regions::new();
    let pool = locked_pool(&mut regions);
    hammer(&pool, OPERATIONS, || pool.stats());
}

/// The long run: `cargo test --release -p heapkit-pool --test stress -- --ignored`.
#[test]
#[ignore = "long run: 2 x 10^8 operations"]
fn atomic_pool_two_threads_long_run() {
    let mut regions = Regions::new();
    let pool = atomic_pool(&mut regions);
    hammer(&pool, 100_000_000, || pool.stats());
}
