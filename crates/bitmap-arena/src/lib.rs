#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(any(loom, test))]
extern crate std;

mod arena;
mod atomic;
mod levels;
mod short;
mod tree;

pub use arena::BitmapArena;
pub use atomic::AtomicBitmap;

// SAFETY: an arena built by `from_raw` manages only that region (its bitmap included).
unsafe impl heapkit_core::FromRegion for BitmapArena {
    /// The block size.
    type Params = usize;

    unsafe fn from_region(
        start: core::ptr::NonNull<u8>,
        len: usize,
        block_size: usize,
    ) -> Result<Self, heapkit_core::ConfigError> {
        // The bitmap's words need an 8-aligned start; a lent byte buffer may not have one.
        let (start, len) = heapkit_core::region::aligned_part(start, len, 8)?;
        // SAFETY: forwarded caller guarantees, for a part of the region.
        unsafe { Self::from_raw(start, len, block_size) }
    }
}
