//! Errors reported when a backend is set up, and the hook that reports invalid frees.

use core::fmt;

/// Why a backend could not be built over the memory or parameters it was given.
///
/// Construction never panics on bad input: every problem comes back as one of these, and
/// `Display` says what was wrong with which numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The region cannot hold even one block plus the backend's bookkeeping.
    RegionTooSmall {
        /// Bytes the backend needs at least.
        needed: usize,
        /// Bytes it was given.
        given: usize,
    },
    /// The region's start is not aligned as the backend requires.
    RegionMisaligned {
        /// The region's start address.
        address: usize,
        /// The alignment required.
        required: usize,
    },
    /// A region reaches past the end of the address space or past what the backend indexes.
    RegionTooLarge {
        /// Bytes given.
        given: usize,
        /// Largest number of bytes the backend can manage in one region.
        max: usize,
    },
    /// A region whose end lies past the end of the address space: `address + len` wraps.
    RegionWraps {
        /// The region's start address.
        address: usize,
        /// Bytes given.
        len: usize,
    },
    /// A new region overlaps memory the backend already manages.
    RegionOverlaps {
        /// Start address of the new region.
        address: usize,
    },
    /// A side buffer for bookkeeping (a bitmap) too short for even one block.
    BitmapTooSmall {
        /// Words needed at least.
        needed: usize,
        /// Words given.
        given: usize,
    },
    /// A block size below what the backend needs to store its free-list links.
    BlockTooSmall {
        /// The block size asked for.
        block: usize,
        /// The smallest block size supported.
        min: usize,
    },
    /// An alignment or block size that must be a power of two is not.
    NotPowerOfTwo {
        /// What the value is (for example `"alignment"`).
        what: &'static str,
        /// The value given.
        value: usize,
    },
    /// A parameter outside its supported range.
    OutOfRange {
        /// The parameter's name.
        what: &'static str,
        /// The value given.
        value: usize,
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RegionTooSmall { needed, given } => write!(
                f,
                "region too small: {given} bytes given, at least {needed} needed"
            ),
            Self::RegionMisaligned { address, required } => write!(
                f,
                "region start {address:#x} is not aligned to {required} bytes"
            ),
            Self::RegionTooLarge { given, max } => write!(
                f,
                "region too large: {given} bytes given, at most {max} supported"
            ),
            Self::RegionWraps { address, len } => write!(
                f,
                "region of {len} bytes at {address:#x} reaches past the end of the address space"
            ),
            Self::RegionOverlaps { address } => write!(
                f,
                "region at {address:#x} overlaps memory the allocator already manages"
            ),
            Self::BitmapTooSmall { needed, given } => write!(
                f,
                "bitmap too small: {given} words given, at least {needed} needed"
            ),
            Self::BlockTooSmall { block, min } => write!(
                f,
                "block size {block} is below the minimum of {min} bytes (room for the free-list link)"
            ),
            Self::NotPowerOfTwo { what, value } => {
                write!(f, "{what} {value} is not a power of two")
            }
            Self::OutOfRange {
                what,
                value,
                min,
                max,
            } => write!(f, "{what} {value} is outside {min}..={max}"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// A broken invariant found by [`Backend::check`](crate::Backend::check): the heap's own
/// bookkeeping disagrees with itself, which means memory was written that the allocator
/// did not hand out (a buffer overrun, a use after free) or the allocator has a bug.
///
/// `Display` gives the whole story:
/// `heapkit-tlsf: heap corrupted at 0x1040: free block's footer differs from its header
/// (expected 64, found 48)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The crate whose invariant broke (`"heapkit-tlsf"`).
    pub allocator: &'static str,
    /// The address involved: a block, a list head, a bitmap word.
    pub address: usize,
    /// What is wrong.
    pub what: &'static str,
    /// What was expected and what was found, when numbers tell.
    pub numbers: Option<(usize, usize)>,
}

impl Corruption {
    /// A broken invariant of `allocator` at `address`.
    pub const fn new(allocator: &'static str, address: usize, what: &'static str) -> Self {
        Self {
            allocator,
            address,
            what,
            numbers: None,
        }
    }

    /// The same, with the number expected and the one found.
    #[must_use]
    pub const fn expected(self, expected: usize, found: usize) -> Self {
        Self {
            numbers: Some((expected, found)),
            ..self
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: heap corrupted at {:#x}: {}",
            self.allocator, self.address, self.what
        )?;
        if let Some((expected, found)) = self.numbers {
            write!(f, " (expected {expected}, found {found})")?;
        }
        Ok(())
    }
}

impl core::error::Error for Corruption {}

/// Reports an invalid free, reallocation or ownership query and panics.
///
/// Backends call this from their `checked` code paths (double free, foreign pointer, wrong
/// layout, corrupted header) so every message has one shape:
/// `heapkit-pool: invalid deallocate of 0x1000: block is already free`.
#[cold]
#[inline(never)]
#[track_caller]
pub fn invalid_use(crate_name: &str, operation: &str, address: *const u8, reason: &str) -> ! {
    panic!("{crate_name}: invalid {operation} of {address:p}: {reason}")
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn messages_name_the_numbers() {
        let e = ConfigError::RegionTooSmall {
            needed: 64,
            given: 10,
        };
        assert_eq!(
            e.to_string(),
            "region too small: 10 bytes given, at least 64 needed"
        );
        let e = ConfigError::NotPowerOfTwo {
            what: "alignment",
            value: 12,
        };
        assert_eq!(e.to_string(), "alignment 12 is not a power of two");
        let e = ConfigError::RegionMisaligned {
            address: 0x1001,
            required: 16,
        };
        assert_eq!(
            e.to_string(),
            "region start 0x1001 is not aligned to 16 bytes"
        );
    }

    #[test]
    fn invalid_free_names_crate_operation_and_address() {
        let address = core::ptr::without_provenance::<u8>(0x1230);
        let payload = std::panic::catch_unwind(|| {
            invalid_use(
                "heapkit-demo",
                "deallocate",
                address,
                "block is already free",
            )
        })
        .unwrap_err();
        let message = payload.downcast_ref::<std::string::String>().unwrap();
        assert_eq!(
            message,
            "heapkit-demo: invalid deallocate of 0x1230: block is already free"
        );
    }
}
