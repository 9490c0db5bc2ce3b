//! Validation of a pool's parameters, shared by [`Pool`](crate::Pool) and
//! [`AtomicPool`](crate::AtomicPool).

use core::alloc::Layout;

use heapkit_core::ConfigError;

/// A validated block size and alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Distance between block starts: the block size rounded up to the alignment. This is
    /// the usable size every allocation reports.
    pub(crate) stride: usize,
    /// Alignment every block start has.
    pub(crate) align: usize,
}

impl Shape {
    /// Checks `block_size` and `block_align`; `min_size` is the smallest block the pool
    /// can keep its bookkeeping in.
    pub(crate) fn new(
        block_size: usize,
        block_align: usize,
        min_size: usize,
    ) -> Result<Self, ConfigError> {
        if !block_align.is_power_of_two() {
            return Err(ConfigError::NotPowerOfTwo {
                what: "block alignment",
                value: block_align,
            });
        }
        if block_size < min_size {
            return Err(ConfigError::BlockTooSmall {
                block: block_size,
                min: min_size,
            });
        }
        let max = isize::MAX as usize;
        let stride = block_size
            .checked_next_multiple_of(block_align)
            .filter(|stride| *stride <= max)
            .ok_or(ConfigError::OutOfRange {
                what: "block size",
                value: block_size,
                min: min_size,
                max,
            })?;
        Ok(Self {
            stride,
            align: block_align,
        })
    }

    /// Whether one block serves `layout`.
    #[inline]
    pub(crate) fn fits(self, layout: Layout) -> bool {
        layout.size() <= self.stride && layout.align() <= self.align
    }

    /// Checks a region starts at a multiple of the block alignment.
    pub(crate) fn check_start(self, start: usize) -> Result<(), ConfigError> {
        if start % self.align == 0 {
            Ok(())
        } else {
            Err(ConfigError::RegionMisaligned {
                address: start,
                required: self.align,
            })
        }
    }

    /// How many blocks fit in `len` bytes when each block also costs `side_bits` bits of
    /// bookkeeping stored after the blocks, and how many bytes that bookkeeping takes.
    pub(crate) fn fit(self, len: usize, side_bits: usize) -> (usize, usize) {
        let side_bytes = |blocks: usize| (blocks * side_bits).div_ceil(8);
        // n blocks need n * stride + ceil(n * bits / 8) bytes; start from the real-valued
        // solution and step down past rounding.
        let exact = (len as u128 * 8) / (self.stride as u128 * 8 + side_bits as u128);
        let mut blocks = exact as usize;
        while blocks > 0 && blocks * self.stride + side_bytes(blocks) > len {
            blocks -= 1;
        }
        (blocks, side_bytes(blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters_with_their_values() {
        assert_eq!(
            Shape::new(64, 12, 8),
            Err(ConfigError::NotPowerOfTwo {
                what: "block alignment",
                value: 12
            })
        );
        assert_eq!(
            Shape::new(4, 4, 8),
            Err(ConfigError::BlockTooSmall { block: 4, min: 8 })
        );
        assert!(matches!(
            Shape::new(usize::MAX, 16, 8),
            Err(ConfigError::OutOfRange { .. })
        ));
    }

    #[test]
    fn stride_rounds_up_to_alignment() {
        assert_eq!(Shape::new(24, 16, 8).unwrap().stride, 32);
        assert_eq!(Shape::new(24, 8, 8).unwrap().stride, 24);
        assert_eq!(Shape::new(1, 1, 1).unwrap().stride, 1);
    }

    #[test]
    fn fit_leaves_room_for_side_bits() {
        let shape = Shape::new(8, 8, 8).unwrap();
        assert_eq!(shape.fit(64, 0), (8, 0));
        // 7 blocks (56 bytes) + 1 bitmap byte fit in 64; 8 blocks would need 65.
        assert_eq!(shape.fit(64, 1), (7, 1));
        assert_eq!(shape.fit(7, 1), (0, 0));
        let (blocks, side) = shape.fit(1 << 30, 1);
        assert!(blocks * 8 + side <= 1 << 30);
        assert!((blocks + 1) * 8 + (blocks + 1).div_ceil(8) > 1 << 30);
    }
}
