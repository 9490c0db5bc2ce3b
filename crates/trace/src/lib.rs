#![doc = include_str!("../README.md")]

pub mod arena;
pub mod churn;
pub mod record;
pub mod replay;
pub mod trace;
pub mod workloads;

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

/// An owned, aligned, uninitialised region of memory handed to an allocator under test.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Region {
    /// `len` bytes aligned to `align`.
    ///
    /// # Panics
    ///
    /// If `len` is zero, `align` is not a power of two, or memory runs out.
    pub fn new(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len, align).expect("region layout");
        assert!(len > 0, "empty region");
        // SAFETY: non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) }).expect("out of memory for a region");
        Self { ptr, layout }
    }

    /// Start of the region.
    pub fn start(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false: regions have at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Leaks the region as a `'static` slice, for allocators that require one (the region
    /// then lives until the process ends, which is what a benchmark process wants).
    pub fn leak(self) -> &'static mut [std::mem::MaybeUninit<u8>] {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len());
        std::mem::forget(self);
        // SAFETY: the allocation is never freed (forgotten above) and nothing else uses it.
        unsafe { &mut *slice }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A xorshift64 generator: the same deterministic sequence for every contender.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed` (any non-zero value).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next pseudo-random number.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`), by multiply-and-shift rather than a division, so
    /// workloads spend their time in the allocators.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}
