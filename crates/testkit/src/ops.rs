//! The operations the shadow model replays, and the [`Profile`] that turns their raw
//! fields into sizes and alignments a backend accepts.

use arbitrary::Arbitrary;

/// One step against an allocator. Fields are raw numbers that a [`Profile`] maps onto
/// sizes, alignments and live blocks, so any value is meaningful: proptest and
/// cargo-fuzz (through `arbitrary`) can generate them freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Arbitrary)]
pub enum Op {
    /// Allocate a block (zero-filled if `zeroed`, then checked to be zero).
    Alloc {
        /// Raw size, mapped by [`Profile::size`].
        size: u32,
        /// Raw alignment, mapped by [`Profile::align`].
        align: u8,
        /// Use `allocate_zeroed`.
        zeroed: bool,
    },
    /// Free a live block, with a layout size anywhere between the requested and the usable
    /// size (the "fits" rule).
    Free {
        /// Which live block, modulo their number.
        slot: u16,
        /// Where in the fitting range the freeing size lies.
        fit: u16,
    },
    /// Grow a live block through the adapter (in place or moving).
    Grow {
        /// Which live block, modulo their number.
        slot: u16,
        /// Raw growth, mapped by [`Profile::size`] and added to the old size plus one.
        by: u32,
        /// Raw new alignment; even values keep the old one.
        align: u8,
        /// Use `grow_zeroed`.
        zeroed: bool,
    },
    /// Shrink a live block through the adapter; shrinking to 0 frees it.
    Shrink {
        /// Which live block, modulo their number.
        slot: u16,
        /// The new size, modulo the old size plus one.
        to: u32,
    },
}

/// The range of requests a backend supports, used to map raw [`Op`] fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // independent switches, each documented
pub struct Profile {
    /// Largest request size generated (sizes are spread over `0..=max_size`, most small).
    pub max_size: usize,
    /// Largest alignment generated, a power of two.
    pub max_align: usize,
    /// Whether `Stats::in_use` must equal the usable sizes handed out exactly (true for
    /// every leaf backend); combinators that trim usable sizes check `>=` instead.
    pub exact_in_use: bool,
    /// Whether the allocator may keep freed memory in caches (a slab heap keeps an empty
    /// chunk per size class): after everything is freed, `in_use` must be 0 and the
    /// capacity unchanged, but free and metadata bytes need not match their start.
    pub caches_memory: bool,
    /// Whether the allocator takes more memory as it needs it (and may give it back), so
    /// its capacity changes: stats must stay consistent, `in_use` exact, but the
    /// capacity need not stay what it was (implies [`caches_memory`](Self::caches_memory)).
    pub grows: bool,
    /// Whether a free may take effect later (a block freed through another thread's heap
    /// counts as in use until its owner collects it; a region frees only its newest
    /// block): `in_use` must be at least the live bytes, not equal, and need not be 0
    /// once everything is freed; the test checks the release its own way.
    pub defers_frees: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            max_size: 4096,
            max_align: 4096,
            exact_in_use: true,
            caches_memory: false,
            grows: false,
            defers_frees: false,
        }
    }
}

impl Profile {
    /// A profile for requests up to `max_size` bytes aligned up to `max_align`.
    pub const fn new(max_size: usize, max_align: usize) -> Self {
        Self {
            max_size,
            max_align,
            exact_in_use: true,
            caches_memory: false,
            grows: false,
            defers_frees: false,
        }
    }

    /// The same profile for an allocator that keeps freed memory cached (see
    /// [`caches_memory`](Self::caches_memory)).
    #[must_use]
    pub const fn caching(mut self) -> Self {
        self.caches_memory = true;
        self
    }

    /// The same profile for an allocator whose frees may take effect later (see
    /// [`defers_frees`](Self::defers_frees)); `in_use` is checked as a lower bound.
    #[must_use]
    pub const fn deferring(mut self) -> Self {
        self.defers_frees = true;
        self.exact_in_use = false;
        self
    }

    /// The same profile for an allocator whose capacity grows and shrinks (see
    /// [`grows`](Self::grows)).
    #[must_use]
    pub const fn growing(mut self) -> Self {
        self.caches_memory = true;
        self.grows = true;
        self
    }

    /// Maps a raw size: a quarter tiny (0–16 bytes, including zero), half small (up to 256),
    /// a quarter spread evenly over the whole range, as real programs allocate.
    pub fn size(&self, raw: u32) -> usize {
        let max = self.max_size;
        let value = (raw >> 2) as usize;
        let size = match raw & 3 {
            0 => value % 17,
            1 | 2 => 1 + value % max.clamp(1, 256),
            _ => 1 + ((value as u64 * max as u64) >> 30) as usize,
        };
        size.min(max)
    }

    /// Maps a raw alignment: mostly 1–16, one time in eight anything up to `max_align`.
    pub fn align(&self, raw: u8) -> usize {
        let top = self.max_align.trailing_zeros();
        let shift = if raw & 0x70 == 0x70 {
            u32::from(raw & 0x0f) % (top + 1)
        } else {
            u32::from(raw & 0x0f) % (top.min(4) + 1)
        };
        1 << shift
    }
}

/// The proptest strategy for operation sequences.
#[cfg(feature = "proptest")]
pub fn op_sequences(max_len: usize) -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
    use proptest::prelude::*;
    let op = prop_oneof![
        4 => (any::<u32>(), any::<u8>(), proptest::bool::weighted(0.1))
            .prop_map(|(size, align, zeroed)| Op::Alloc { size, align, zeroed }),
        3 => (any::<u16>(), any::<u16>()).prop_map(|(slot, fit)| Op::Free { slot, fit }),
        1 => (any::<u16>(), any::<u32>(), any::<u8>(), proptest::bool::weighted(0.1))
            .prop_map(|(slot, by, align, zeroed)| Op::Grow { slot, by, align, zeroed }),
        1 => (any::<u16>(), any::<u32>()).prop_map(|(slot, to)| Op::Shrink { slot, to }),
    ];
    proptest::collection::vec(op, 0..max_len)
}

#[cfg(test)]
mod tests {
    use super::Profile;

    #[test]
    fn sizes_stay_in_range_and_cover_it() {
        let profile = Profile::new(4096, 4096);
        // About 65,000 raw values natively, 1,000 under miri.
        let step = if cfg!(miri) { 65_537 * 61 } else { 65_537 };
        let sizes: Vec<usize> = (0..=u32::MAX)
            .step_by(step)
            .map(|r| profile.size(r))
            .collect();
        assert!(sizes.iter().all(|&s| s <= 4096));
        assert!(sizes.contains(&0));
        assert!(sizes.iter().any(|&s| s > 2048));
        let small = Profile::new(8, 8);
        assert!((0..1_000).all(|r| small.size(r) <= 8));
        assert!((0..1_000).any(|r| small.size(r) == 8));
    }

    #[test]
    fn alignments_are_powers_of_two_up_to_max() {
        for max in [1, 8, 16, 4096] {
            let profile = Profile::new(64, max);
            let aligns: Vec<usize> = (0..=255u8).map(|r| profile.align(r)).collect();
            assert!(aligns.iter().all(|a| a.is_power_of_two() && *a <= max));
            assert!(aligns.contains(&max));
        }
    }
}
