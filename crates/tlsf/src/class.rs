//! Size classes: which free list (first level, second level) a block size belongs to.
//!
//! Sizes are counted in granules. The first level splits sizes by powers of two, the
//! second splits each power-of-two range into `SL` equal lists; sizes below `SL` granules
//! each get a list of their own (first level 0), so small sizes fit exactly.

use core::mem::size_of;

/// Bytes in a machine word: the size of a block header.
pub(crate) const WORD: usize = size_of::<usize>();
/// Block sizes and payload addresses are multiples of the granule: two words.
pub const GRANULE: usize = 2 * WORD;
const GRANULE_SHIFT: u32 = GRANULE.trailing_zeros();
/// The smallest block: a header, two free-list links and a footer.
pub const MIN_BLOCK: usize = 4 * WORD;

/// The size-class arithmetic for `FL` first-level and `SL` second-level lists.
pub(crate) struct Classes<const FL: usize, const SL: usize>;

impl<const FL: usize, const SL: usize> Classes<FL, SL> {
    const SL_SHIFT: u32 = SL.trailing_zeros();

    /// Evaluated by `Tlsf::new`, so bad parameters fail the build, not the program.
    pub(crate) const VALID: () = {
        assert!(
            SL.is_power_of_two() && SL <= 32,
            "heapkit-tlsf: SL must be a power of two from 1 to 32"
        );
        assert!(FL >= 1 && FL <= 32, "heapkit-tlsf: FL must be from 1 to 32");
        assert!(
            ((GRANULE * SL) as u128) << (FL - 1) <= isize::MAX as u128 + 1,
            "heapkit-tlsf: FL and SL cover sizes beyond the address space"
        );
        assert!(
            Self::LIMIT >= 1024,
            "heapkit-tlsf: FL and SL cover blocks below 1 KiB only"
        );
    };

    /// One past the largest block size the lists hold.
    pub(crate) const LIMIT: usize = (GRANULE * SL) << (FL - 1);
    /// The largest block: a region's blocks never merge beyond it.
    pub(crate) const MAX_BLOCK: usize = Self::LIMIT - GRANULE;

    /// The list a free block of `size` bytes (a multiple of the granule, below `LIMIT`)
    /// lives in, as one number: `fl * SL + sl`, the list's place in the heads laid end to
    /// end. Small sizes (the common case, and a well-predicted branch) skip the logarithm;
    /// above, the class and the list within it add up in one shift and one add.
    #[inline(always)]
    pub(crate) fn list_index(size: usize) -> usize {
        let units = size >> GRANULE_SHIFT;
        if units < SL {
            units
        } else {
            // Class `shift + 1`, list `(units >> shift) - SL` within it.
            let shift = units.ilog2() - Self::SL_SHIFT;
            ((shift as usize) << Self::SL_SHIFT) + (units >> shift)
        }
    }

    /// [`list_index`](Self::list_index) of `size`, and whether `other` is on the same list:
    /// from the bits they share, without working out `other`'s list. Above the first
    /// class, two sizes share a list when they agree on every bit from `size`'s
    /// second-level step up (a higher top bit in `other` differs there too).
    #[inline(always)]
    pub(crate) fn list_index_sharing(size: usize, other: usize) -> (usize, bool) {
        let (units, other_units) = (size >> GRANULE_SHIFT, other >> GRANULE_SHIFT);
        if units < SL {
            (units, other_units == units)
        } else {
            let shift = units.ilog2() - Self::SL_SHIFT;
            let index = ((shift as usize) << Self::SL_SHIFT) + (units >> shift);
            (index, (units ^ other_units) >> shift == 0)
        }
    }

    /// [`list_index`](Self::list_index) as `(fl, sl)`, for tests that name lists so.
    #[cfg(test)]
    pub(crate) fn list_of(size: usize) -> (usize, usize) {
        Self::split(Self::list_index(size))
    }

    /// A list's number as `(fl, sl)`.
    #[inline(always)]
    pub(crate) const fn split(index: usize) -> (usize, usize) {
        (index >> Self::SL_SHIFT, index & (SL - 1))
    }

    /// The first list all of whose blocks are at least `size` bytes (a multiple of the
    /// granule): `size` rounded up to the next list boundary. `None` past the last list.
    ///
    /// Small sizes have exact lists. Above, one `ilog2`: the units are rounded up to the
    /// class's list width, and a carry out of the last list of a class lands on the first
    /// list of the next, which is the next list number.
    #[inline(always)]
    pub(crate) fn first_list_fitting(size: usize) -> Option<(usize, usize)> {
        let units = size >> GRANULE_SHIFT;
        if units < SL {
            return Some((0, units));
        }
        let shift = units.ilog2() - Self::SL_SHIFT;
        let rounded = (units + (1 << shift) - 1) >> shift;
        let index = ((shift as usize) << Self::SL_SHIFT) + rounded;
        (index < FL * SL).then(|| Self::split(index))
    }

    /// The smallest block size list `(fl, sl)` holds.
    pub(crate) const fn list_floor(fl: usize, sl: usize) -> usize {
        let units = if fl == 0 { sl } else { (SL + sl) << (fl - 1) };
        units << GRANULE_SHIFT
    }
}

/// The block size serving a request of `size` bytes: payload plus header, rounded up to
/// the granule, at least [`MIN_BLOCK`]. `size` is at most `isize::MAX` (a `Layout`'s).
#[inline(always)]
pub(crate) const fn block_size_for(size: usize) -> usize {
    let block = (size + WORD + GRANULE - 1) & !(GRANULE - 1);
    if block < MIN_BLOCK {
        MIN_BLOCK
    } else {
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Small = Classes<8, 4>;
    type Default = Classes<28, 32>;

    #[test]
    fn sizes_map_to_the_expected_lists() {
        // SL = 4: sizes below 4 granules are exact lists, then 4 lists per power of two.
        let g = GRANULE;
        let expected = [
            (g, (0, 1)),
            (2 * g, (0, 2)),
            (3 * g, (0, 3)),
            (4 * g, (1, 0)),
            (5 * g, (1, 1)),
            (7 * g, (1, 3)),
            (8 * g, (2, 0)),
            (9 * g, (2, 0)),
            (10 * g, (2, 1)),
            (15 * g, (2, 3)),
            (16 * g, (3, 0)),
            (31 * g, (3, 3)),
            (511 * g, (7, 3)),
        ];
        for (size, list) in expected {
            assert_eq!(Small::list_of(size), list, "size {size}");
        }
        assert_eq!(Small::LIMIT, 512 * g);
        assert_eq!(Default::list_of(31 * g), (0, 31));
        assert_eq!(Default::list_of(32 * g), (1, 0));
        assert_eq!(Default::list_of(64 * g + 2 * g), (2, 1));
    }

    #[test]
    fn sharing_a_list_agrees_with_the_lists() {
        fn check<const FL: usize, const SL: usize>(most: usize) {
            for a in 1..most {
                for b in (1..most).step_by(3) {
                    let (size, other) = (a * GRANULE, b * GRANULE);
                    let (index, same) = Classes::<FL, SL>::list_index_sharing(size, other);
                    assert_eq!(index, Classes::<FL, SL>::list_index(size));
                    let expected = index == Classes::<FL, SL>::list_index(other);
                    assert_eq!(same, expected, "sizes {size} and {other}");
                }
            }
        }
        // Every size of the small classes; under miri, the first classes and the lowest
        // second-level steps of the default ones.
        check::<8, 4>(if cfg!(miri) { 80 } else { 512 });
        check::<28, 32>(if cfg!(miri) { 130 } else { 1100 });
    }

    #[test]
    fn requests_round_up_to_the_next_list() {
        let g = GRANULE;
        assert_eq!(Small::first_list_fitting(3 * g), Some((0, 3)));
        assert_eq!(Small::first_list_fitting(8 * g), Some((2, 0)));
        // 9 granules sit in list (2, 0), which also holds 8: round up to (2, 1).
        assert_eq!(Small::first_list_fitting(9 * g), Some((2, 1)));
        // 15 granules round up past the first level's end to (3, 0).
        assert_eq!(Small::first_list_fitting(15 * g), Some((3, 0)));
        assert_eq!(Small::first_list_fitting(448 * g), Some((7, 3)));
        assert_eq!(Small::first_list_fitting(449 * g), None);
        assert_eq!(Small::first_list_fitting(Small::MAX_BLOCK + g), None);
    }

    #[test]
    fn block_sizes_cover_payload_and_header() {
        assert_eq!(block_size_for(0), MIN_BLOCK);
        assert_eq!(block_size_for(MIN_BLOCK - WORD), MIN_BLOCK);
        assert_eq!(block_size_for(MIN_BLOCK - WORD + 1), MIN_BLOCK + GRANULE);
        assert_eq!(
            block_size_for(1000),
            (1000 + WORD).next_multiple_of(GRANULE)
        );
    }

    fn check_good_fit<const FL: usize, const SL: usize>(units: usize) {
        let size = units * GRANULE;
        let (fl, sl) = Classes::<FL, SL>::list_of(size);
        let floor = Classes::<FL, SL>::list_floor(fl, sl);
        assert!(floor <= size, "{size} below its list's floor {floor}");
        let next_floor = if sl + 1 < SL {
            Classes::<FL, SL>::list_floor(fl, sl + 1)
        } else {
            Classes::<FL, SL>::list_floor(fl + 1, 0)
        };
        assert!(size < next_floor, "{size} beyond its list ({fl}, {sl})");
        if let Some((fl, sl)) = Classes::<FL, SL>::first_list_fitting(size) {
            let floor = Classes::<FL, SL>::list_floor(fl, sl);
            assert!(
                floor >= size,
                "list ({fl}, {sl}) starts at {floor} < {size}"
            );
            // Good fit, not worse: the list is the first whose floor reaches the size.
            let width = if fl <= 1 {
                GRANULE
            } else {
                GRANULE << (fl - 1)
            };
            assert!(
                floor < size + width,
                "{size} rounded to {floor}, past one list"
            );
        } else {
            let last = Classes::<FL, SL>::list_floor(FL - 1, SL - 1);
            assert!(
                size > last,
                "{size} fits list ({}, {}) yet was refused",
                FL - 1,
                SL - 1
            );
        }
    }

    proptest! {
        // No failure files (miri runs isolated) and fewer cases under miri.
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 16 } else { 2048 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn every_size_lies_in_its_list_and_rounding_always_fits(units in 1usize..(1 << 20)) {
            check_good_fit::<8, 4>(units.min(511));
            check_good_fit::<28, 32>(units);
            check_good_fit::<20, 1>(units);
            check_good_fit::<16, 16>(units);
        }
    }
}
