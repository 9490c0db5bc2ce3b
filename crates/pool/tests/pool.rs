//! Construction errors, block geometry, exhaustion, reuse and the `checked` reports.

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_core::{Backend, ConfigError, Layout, Shared};
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::Regions;

fn raw(regions: &mut Regions, len: usize, align: usize) -> (NonNull<u8>, usize) {
    let region = regions.take(len, align);
    (region.cast(), region.len())
}

/// A pool over memory `regions` owns; `regions` outlives every pool in these tests.
fn pool_at(start: NonNull<u8>, len: usize, size: usize, align: usize) -> Result<Pool, ConfigError> {
    // SAFETY: `start..start + len` lies in a region kept alive by the test's `Regions`,
    // which is dropped after every pool built over it.
    unsafe { Pool::from_raw(start, len, size, align) }
}

/// As [`pool_at`], for the lock-free pool.
fn atomic_at(
    start: NonNull<u8>,
    len: usize,
    size: usize,
    align: usize,
) -> Result<AtomicPool, ConfigError> {
    // SAFETY: as in `pool_at`.
    unsafe { AtomicPool::from_raw(start, len, size, align) }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn construction_errors_name_the_problem() {
    let mut regions = Regions::new();
    let (start, len) = raw(&mut regions, 1024, 64);
    let too_small = pool_at(start, 8, 16, 8).unwrap_err();
    assert!(matches!(
        too_small,
        ConfigError::RegionTooSmall { given: 8, .. }
    ));
    assert_eq!(
        pool_at(start, len, 4, 4).unwrap_err(),
        ConfigError::BlockTooSmall {
            block: 4,
            min: Pool::MIN_BLOCK_SIZE
        }
    );
    assert_eq!(
        pool_at(start, len, 64, 24).unwrap_err(),
        ConfigError::NotPowerOfTwo {
            what: "block alignment",
            value: 24
        }
    );
    // SAFETY: one byte in, still inside the region.
    let odd = unsafe { start.add(1) };
    assert_eq!(
        pool_at(odd, len - 1, 64, 16).unwrap_err(),
        ConfigError::RegionMisaligned {
            address: odd.as_ptr().addr(),
            required: 16
        }
    );
    assert!(atomic_at(start, 4, 4, 4).is_err());
    assert!(atomic_at(odd, len - 1, 64, 16).is_err());
    assert!(atomic_at(start, len, 0, 8).is_err());
    let message = too_small.to_string();
    assert!(
        message.starts_with("region too small: 8 bytes given"),
        "{message}"
    );
}

#[test]
fn geometry_and_metadata_are_reported() {
    let mut regions = Regions::new();
    let (start, len) = raw(&mut regions, 1000, 16);
    let pool = pool_at(start, len, 24, 16).unwrap();
    assert_eq!(
        pool.block_size(),
        32,
        "24 bytes rounded up to the 16-byte alignment"
    );
    assert_eq!(pool.block_align(), 16);
    // 31 blocks take 992 bytes; the `checked` bitmap's 4 bytes still fit in the slack.
    assert_eq!(pool.total_blocks(), 31);
    let stats = pool.stats();
    assert_eq!(stats.capacity, 1000);
    assert_eq!(stats.free, 31 * 32);
    assert_eq!(stats.metadata, 1000 - 31 * 32);
    assert!(stats.is_consistent());

    let atomic = atomic_at(start, len, 24, 16).unwrap();
    // 36 bytes per block (32 + a 4-byte link): 27 blocks.
    assert_eq!(atomic.total_blocks(), 27);
    assert_eq!(atomic.stats().metadata, 1000 - 27 * 32);
}

fn exhaust_and_refill(backend: &mut impl Backend, blocks: usize, block: usize) {
    let empty = backend.stats();
    let request = layout(block, 8);
    let handed: Vec<_> = (0..blocks)
        .map(|_| backend.allocate(request).unwrap())
        .collect();
    assert!(handed.iter().all(|b| b.len() == block));
    let before = backend.stats();
    assert_eq!(before.free, 0);
    assert!(
        backend.allocate(layout(1, 1)).is_err(),
        "every block is in use"
    );
    assert_eq!(backend.stats(), before, "a failed request changes nothing");
    for b in &handed {
        // SAFETY: live blocks of this backend, freed once.
        unsafe { backend.deallocate(b.cast(), request) };
    }
    assert_eq!(backend.stats(), empty);
    // LIFO reuse: the last block freed is the first handed out again.
    let again = backend.allocate(request).unwrap();
    assert_eq!(again.cast::<u8>(), handed.last().unwrap().cast::<u8>());
    // SAFETY: live, freed once.
    unsafe { backend.deallocate(again.cast(), request) };
}

#[test]
fn every_block_once_then_refused_then_reused() {
    let mut regions = Regions::new();
    let (start, len) = raw(&mut regions, 4096, 64);
    let mut pool = pool_at(start, len, 64, 64).unwrap();
    let blocks = pool.total_blocks();
    exhaust_and_refill(&mut pool, blocks, 64);
    let mut atomic = atomic_at(start, len, 64, 64).unwrap();
    let blocks = atomic.total_blocks();
    exhaust_and_refill(&mut atomic, blocks, 64);
}

#[test]
fn oversized_or_overaligned_requests_fail_cleanly() {
    let mut regions = Regions::new();
    let (start, len) = raw(&mut regions, 4096, 4096);
    let mut pool = pool_at(start, len, 64, 16).unwrap();
    let before = pool.stats();
    assert!(pool.allocate(layout(65, 1)).is_err());
    assert!(
        pool.allocate(layout(8, 32)).is_err(),
        "blocks are only 16-aligned"
    );
    assert_eq!(pool.stats(), before);
    let atomic = Shared::new(atomic_at(start, len, 64, 16).unwrap());
    assert!(Allocator::allocate(&atomic, layout(65, 1)).is_err());
    assert!(Allocator::allocate(&atomic, layout(8, 32)).is_err());
    assert_eq!(atomic.stats().in_use, 0);
}

#[test]
fn resizing_within_a_block_stays_in_place() {
    let mut regions = Regions::new();
    let (start, len) = raw(&mut regions, 4096, 16);
    let atomic = Shared::new(atomic_at(start, len, 64, 16).unwrap());
    let block = Allocator::allocate(&atomic, layout(10, 8)).unwrap();
    // SAFETY: live with the old layout each time.
    let grown = unsafe { atomic.grow(block.cast(), layout(10, 8), layout(60, 8)) }.unwrap();
    assert_eq!(grown.cast::<u8>(), block.cast::<u8>());
    // SAFETY: live with layout(60, 8).
    let shrunk = unsafe { atomic.shrink(grown.cast(), layout(60, 8), layout(1, 8)) }.unwrap();
    assert_eq!(shrunk.cast::<u8>(), block.cast::<u8>());
    // SAFETY: live with layout(1, 8); growing past a block fails and keeps it.
    assert!(unsafe { atomic.grow(shrunk.cast(), layout(1, 8), layout(65, 8)) }.is_err());
    // SAFETY: still live with layout(1, 8).
    unsafe { Allocator::deallocate(&atomic, shrunk.cast(), layout(1, 8)) };
    assert_eq!(atomic.stats().in_use, 0);
}

#[test]
#[cfg_attr(miri, ignore = "allocates a 1 GiB region")]
fn a_gigabyte_pool_starts_without_touching_its_memory() {
    let mut regions = Regions::new();
    // The system allocator maps this lazily: building the pool must not fault it in.
    let (start, len) = raw(&mut regions, 1 << 30, 4096);
    let started = std::time::Instant::now();
    let mut pool = pool_at(start, len, 64, 64).unwrap();
    let built = started.elapsed();
    assert!(pool.total_blocks() > 16_000_000);
    let block = pool.allocate(layout(64, 64)).unwrap();
    // SAFETY: live, freed once.
    unsafe { pool.deallocate(block.cast(), layout(64, 64)) };
    // A structural check, not a timing test: threading 16M blocks onto a list would take
    // far more than this on any machine.
    assert!(built.as_millis() < 100, "set-up took {built:?}");
}

#[test]
fn static_region_constructor_works() {
    #[repr(align(8))]
    struct Region([MaybeUninit<u8>; 512]);
    static mut REGION: Region = Region([MaybeUninit::uninit(); 512]);
    // SAFETY: the only reference ever made to REGION.
    let region = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
    let mut pool = Pool::with_region(region, 32, 8).unwrap();
    let block = pool.allocate(layout(32, 8)).unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.capacity, stats.in_use, stats.largest_free),
        (512, 32, 32)
    );
    assert_eq!(stats.free, (pool.total_blocks() - 1) * 32);
    assert!(stats.is_consistent());
    // SAFETY: live, freed once.
    unsafe { pool.deallocate(block.cast(), layout(32, 8)) };
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_testkit::panic_message;

    fn assert_report(message: &str, operation: &str, reason: &str) {
        let prefix = format!("heapkit-pool: invalid {operation} of 0x");
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.ends_with(reason), "{message}");
    }

    /// Frees `block` with `layout` and returns the panic message it must cause.
    fn refused(pool: &mut dyn Backend, block: NonNull<u8>, layout: Layout) -> String {
        // SAFETY: deliberately invalid; the `checked` build must refuse it before touching
        // memory, and the caller expects the panic.
        panic_message(|| unsafe { pool.deallocate(block, layout) })
    }

    fn offset(block: NonNull<u8>, bytes: usize) -> NonNull<u8> {
        NonNull::new(block.as_ptr().wrapping_add(bytes)).unwrap()
    }

    fn misuse(backend: &mut dyn FnMut() -> Box<dyn Backend>) {
        let small = layout(16, 8);
        let mut pool = backend();
        let block = pool.allocate(small).unwrap().cast::<u8>();
        // SAFETY: a live block freed once.
        unsafe { pool.deallocate(block, small) };
        let message = refused(&mut *pool, block, small);
        assert_report(&message, "deallocate", "block is already free");

        let mut pool = backend();
        let first = pool.allocate(small).unwrap().cast::<u8>();
        // Two blocks further: inside the region, never handed out.
        let unused = offset(first, 2 * 64);
        let message = refused(&mut *pool, unused, small);
        assert_report(&message, "deallocate", "block is already free");

        let mut outside = [0u8; 16];
        let foreign = NonNull::from(&mut outside).cast::<u8>();
        let message = refused(&mut *pool, foreign, small);
        assert_report(&message, "deallocate", "pointer is outside this pool");

        let message = refused(&mut *pool, offset(first, 8), small);
        assert_report(
            &message,
            "deallocate",
            "pointer is not the start of a block",
        );

        let message = refused(&mut *pool, first, layout(128, 8));
        assert_report(
            &message,
            "deallocate",
            "layout does not fit this pool's blocks",
        );
    }

    #[test]
    fn invalid_frees_panic_with_crate_operation_and_address() {
        let mut regions = Regions::new();
        let (start, len) = raw(&mut regions, 4096, 64);
        misuse(&mut || Box::new(pool_at(start, len, 64, 64).unwrap()));
        misuse(&mut || Box::new(atomic_at(start, len, 64, 64).unwrap()));
    }
}

/// Odd strides from starts off a word boundary: the blocks and the `checked` live map
/// (kept in whole words after the blocks) never overlap or leave the region (a canary
/// after it stays intact), and every block can be handed out and given back. Miri checks
/// the map's words are aligned.
#[test]
fn odd_strides_from_unaligned_starts_use_every_block() {
    let mut regions = Regions::new();
    for misalign in [0, 1, 3, 7] {
        for (size, len) in [(9, 200), (13, 517), (8, 64), (31, 1000)] {
            let (base, _) = raw(&mut regions, len + misalign + 8, 64);
            // SAFETY: `misalign < 8` bytes into a region of `len + misalign + 8`.
            let start = unsafe { base.add(misalign) };
            // SAFETY: the 8 bytes after `len` are inside the region taken.
            let canary = unsafe { start.add(len) };
            // SAFETY: as above.
            unsafe { canary.as_ptr().write_bytes(0xA5, 8) };
            let mut pool = pool_at(start, len, size, 1).unwrap();
            let blocks = pool.total_blocks();
            assert!(
                blocks > 0 && blocks * size <= len,
                "{size} in {len}: {blocks}"
            );
            let taken: Vec<_> = (0..blocks)
                .map(|_| pool.allocate(layout(size, 1)).unwrap().cast::<u8>())
                .collect();
            assert!(pool.allocate(layout(1, 1)).is_err());
            for (i, block) in taken.iter().enumerate() {
                // SAFETY: each block is live and `size` bytes long.
                unsafe { block.as_ptr().write_bytes(i as u8, size) };
            }
            assert_eq!(pool.check(), Ok(()));
            for (i, block) in taken.into_iter().enumerate().rev() {
                // SAFETY: each block is live, with its own fill intact.
                unsafe {
                    assert_eq!(block.as_ptr().add(size - 1).read(), i as u8);
                    pool.deallocate(block, layout(size, 1));
                }
            }
            assert_eq!(pool.free_blocks(), blocks);
            assert_eq!(pool.check(), Ok(()));
            // SAFETY: as above.
            let after = unsafe { core::slice::from_raw_parts(canary.as_ptr(), 8) };
            assert_eq!(after, [0xA5; 8], "{size} in {len} wrote past its region");
        }
    }
}
