//! What the test files share: the proptest configuration, the oracle's free gaps, and
//! heaps over the region shapes the contract suite runs (aligned, odd, two regions, lent).
#![allow(dead_code)] // each test file uses its own part

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use heapkit_core::{ConfigError, FromRegion, Lent};
use heapkit_fit::{FitHeap, HeaderlessHeap, Policy, TreePolicy};
use heapkit_testkit::Regions;
use proptest::prelude::ProptestConfig;

/// A heap that takes regions: `FitHeap` and `HeaderlessHeap` alike.
pub trait AddRegion: Default {
    /// The heap's own `add_region`.
    ///
    /// # Safety
    /// As for it.
    unsafe fn add(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError>;
}

impl<P: Policy, const D: bool> AddRegion for FitHeap<P, D> {
    unsafe fn add(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.add_region(start, len) }
    }
}

impl<P: TreePolicy> AddRegion for HeaderlessHeap<P> {
    unsafe fn add(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.add_region(start, len) }
    }
}

/// The contract suite's region: small under miri, which interprets every step.
pub const REGION: usize = if cfg!(miri) { 32 * 1024 } else { 256 * 1024 };

/// A heap over `len` bytes from `regions`, aligned to `align`.
pub fn heap<H: AddRegion>(regions: &mut Regions, len: usize, align: usize) -> H {
    let mut heap = H::default();
    let region = regions.take(len, align);
    // SAFETY: every test and the harness drop the heap before its regions.
    unsafe { heap.add(region.cast(), len) }.unwrap();
    heap
}

/// A heap over a region starting 3 bytes past a page boundary, with an odd length.
pub fn odd<H: AddRegion>(regions: &mut Regions) -> H {
    let mut heap = H::default();
    let region = regions.take(REGION, 4096);
    let start = region.cast::<u8>().as_ptr().wrapping_add(3);
    // SAFETY: inside the taken region, which outlives the heap.
    unsafe { heap.add(NonNull::new(start).unwrap(), REGION - 3 - 1001) }.unwrap();
    heap
}

/// A heap over two regions, the second smaller and aligned to 8 only.
pub fn two_regions<H: AddRegion>(regions: &mut Regions) -> H {
    let mut heap = H::default();
    for len in [REGION / 2, REGION / 4 + 40] {
        let region = regions.take(len, 8);
        // SAFETY: as above.
        unsafe { heap.add(region.cast(), len) }.unwrap();
    }
    heap
}

/// A heap over a borrowed buffer through `Lent` (here the harness's region, lent for
/// `'static`).
pub fn lent<H: FromRegion<Params = ()>>(regions: &mut Regions) -> Lent<'static, H> {
    let region = regions.take(REGION, 16);
    // SAFETY: the region is the heap's alone and the harness drops the heap first.
    let buffer = unsafe { &mut *(region.as_ptr() as *mut [MaybeUninit<u8>]) };
    Lent::new(buffer).unwrap()
}

/// The proptest configuration of the oracle tests: few cases under miri.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A live block as the oracle knows it: start, size, pointer, layout.
pub type Live = (usize, usize, NonNull<u8>, Layout);

/// The free gaps between the live blocks in `first..end`, in address order (`live` is
/// sorted by start on the way): with immediate coalescing, the heap's free blocks.
pub fn gaps(live: &mut [Live], first: usize, end: usize) -> Vec<(usize, usize)> {
    live.sort_by_key(|b| b.0);
    let mut gaps = Vec::new();
    let mut at = first;
    for &(start, size, _, _) in live.iter() {
        if start > at {
            gaps.push((at, start - at));
        }
        at = start + size;
    }
    if end > at {
        gaps.push((at, end - at));
    }
    gaps
}
