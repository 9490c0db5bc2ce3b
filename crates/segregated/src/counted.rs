//! [`Counted`]: an allocator that counts what goes through it.

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::{AllocError, Backend, Corruption, Stats};

/// Buckets of the size histogram: `sizes[k]` counts requests of `2^(k-1) + 1 ..= 2^k`
/// bytes (`sizes[0]`: 0 and 1 byte), and the last bucket everything larger.
pub const SIZE_BUCKETS: usize = 28;

/// What a [`Counted`] allocator has seen. Byte figures are the sizes callers asked for
/// and freed with (not usable sizes), so `live_bytes` is the program's live heap. That is
/// exact when blocks are freed with the size they were requested with, as Rust's
/// collections and `GlobalAlloc` do; the `Allocator` API also lets a caller free with any
/// size up to the usable one, which makes `live_bytes` an underestimate (it never wraps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Successful allocations.
    pub allocations: u64,
    /// Frees.
    pub deallocations: u64,
    /// Successful in-place grows.
    pub grows: u64,
    /// Successful in-place shrinks.
    pub shrinks: u64,
    /// Allocations that failed.
    pub failures: u64,
    /// Bytes asked for by successful allocations, in total.
    pub bytes_allocated: u64,
    /// Bytes live now.
    pub live_bytes: usize,
    /// The most bytes ever live at once.
    pub peak_live_bytes: usize,
    /// Requests by size: see [`SIZE_BUCKETS`].
    pub sizes: [u64; SIZE_BUCKETS],
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            allocations: 0,
            deallocations: 0,
            grows: 0,
            shrinks: 0,
            failures: 0,
            bytes_allocated: 0,
            live_bytes: 0,
            peak_live_bytes: 0,
            sizes: [0; SIZE_BUCKETS],
        }
    }
}

impl Counts {
    /// The histogram bucket of a request of `size` bytes.
    pub const fn bucket(size: usize) -> usize {
        let bits = (usize::BITS - size.saturating_sub(1).leading_zeros()) as usize;
        if bits < SIZE_BUCKETS {
            bits
        } else {
            SIZE_BUCKETS - 1
        }
    }

    fn live(&mut self, more: usize, less: usize) {
        self.live_bytes = (self.live_bytes + more).saturating_sub(less);
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }
}

/// Wraps a backend and counts calls, bytes, failures, live and peak bytes, and request
/// sizes: the lab reads it to measure fragmentation (peak footprint over peak live bytes).
/// One add or compare per call; nothing else changes.
#[derive(Debug, Default)]
pub struct Counted<B> {
    inner: B,
    counts: Counts,
}

impl<B: Backend> Counted<B> {
    /// Starts counting calls to `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            counts: Counts::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The wrapped backend, read-only.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The wrapped backend, for set-up such as adding memory (not counted).
    ///
    /// # Safety
    ///
    /// While any block handed out through `self` is live, the caller must not replace,
    /// swap, take or drop-in-place the backend (the block would be freed into an allocator that
    /// never handed it out), nor allocate or free through it directly. Adding memory
    /// (`add_region`) and reading statistics are fine.
    pub unsafe fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The wrapped backend, with the counts dropped.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

// SAFETY: every call is forwarded unchanged; only counters are added.
unsafe impl<B: Backend> Backend for Counted<B> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let result = self.inner.allocate(layout);
        let counts = &mut self.counts;
        counts.sizes[Counts::bucket(layout.size())] += 1;
        if result.is_ok() {
            counts.allocations += 1;
            counts.bytes_allocated += layout.size() as u64;
            counts.live(layout.size(), 0);
        } else {
            counts.failures += 1;
        }
        result
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.inner.deallocate(ptr, layout) };
        self.counts.deallocations += 1;
        self.counts.live(0, layout.size());
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        let result = unsafe { self.inner.grow_in_place(ptr, old_layout, new_layout) };
        if result.is_ok() {
            self.counts.grows += 1;
            self.counts.live(new_layout.size(), old_layout.size());
        }
        result
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller guarantees.
        let result = unsafe { self.inner.shrink_in_place(ptr, old_layout, new_layout) };
        if result.is_ok() {
            self.counts.shrinks += 1;
            self.counts.live(new_layout.size(), old_layout.size());
        }
        result
    }

    fn max_align(&self) -> usize {
        self.inner.max_align()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.inner.owns(ptr)
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn check(&self) -> Result<(), Corruption> {
        self.inner.check()
    }

    fn trim(&mut self) {
        self.inner.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let expected = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (16, 4),
            (17, 5),
        ];
        for (size, bucket) in expected {
            assert_eq!(Counts::bucket(size), bucket, "size {size}");
        }
        assert_eq!(Counts::bucket(usize::MAX), super::SIZE_BUCKETS - 1);
    }
}
