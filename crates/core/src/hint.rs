//! Hints to the processor that change how fast code runs, never what it does.

/// Starts loading the cache line holding `addr`, for a read soon after. Any address may be
/// given: a prefetch reads nothing the program sees and never faults. A no-op except on
/// x86-64 targets with SSE enabled (not `x86_64-unknown-none`, whose soft-float build would
/// make it a call), and under miri.
///
/// An allocator whose next read depends on a load that may miss the cache (a block's
/// header, then the header its size leads to) can start the second line from what it
/// already knows, so the two misses overlap instead of following each other.
///
/// ```
/// let words = [0_u64; 16];
/// heapkit_core::hint::prefetch_read(words.as_ptr().wrapping_add(8).cast());
/// assert_eq!(words[8], 0);
/// ```
#[inline(always)]
pub fn prefetch_read(addr: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse", not(miri)))]
    // SAFETY: `prefetcht0` reads no memory the program sees and cannot fault, whatever the
    // address; the target enables SSE, which the instruction belongs to.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse", not(miri))))]
    let _ = addr;
}
