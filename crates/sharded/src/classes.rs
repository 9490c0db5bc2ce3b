//! Size classes: 8-byte steps up to 64 bytes, then eight classes per doubling, so a
//! request above 64 bytes wastes less than 1/8 (12.5%) of its size.
//!
//! | sizes | step | classes |
//! |---|---:|---|
//! | 8 – 64 | 8 | 8, 16, 24, …, 64 |
//! | 64 – 128 | 8 | 72, 80, …, 128 |
//! | 128 – 256 | 16 | 144, 160, …, 256 |
//! | 2ᵏ – 2ᵏ⁺¹ | 2ᵏ⁻³ | 2ᵏ + j·2ᵏ⁻³, j = 1…8 |
//! | … up to [`MAX_SMALL`] | | |
//!
//! A request of `n` bytes in class `c` above 64 bytes has `size(c) < n + size(c)/9`: the
//! step is an eighth of the doubling's base, which the request exceeds.

use crate::geometry::{MAX_SPAN, SLOT};

/// Largest request served from size-class pages; larger ones get a mapping of their own.
pub const MAX_SMALL: usize = SLOT * 2;

/// Number of size classes.
pub const CLASSES: usize = class_of(MAX_SMALL) + 1;

/// The class serving `size` bytes (`1 <= size <= MAX_SMALL`; 0 is served as 1).
#[inline(always)]
pub const fn class_of(size: usize) -> usize {
    if size <= 64 {
        (size.saturating_sub(1)) / 8
    } else {
        let s = size - 1;
        let power = (usize::BITS - 1 - s.leading_zeros()) as usize; // >= 6
        let step = s >> (power - 3); // 8..=15
        8 + (power - 6) * 8 + (step - 8)
    }
}

/// The block size of class `class`.
#[inline(always)]
pub const fn class_size(class: usize) -> usize {
    if class < 8 {
        (class + 1) * 8
    } else {
        let power = (class - 8) / 8 + 6;
        let step = (class - 8) % 8 + 9;
        step << (power - 3)
    }
}

/// Slots a page of class `class` spans: room for at least eight blocks, capped at
/// [`MAX_SPAN`] slots (the largest classes get fewer blocks per page).
#[inline]
pub const fn span_slots(class: usize) -> usize {
    let wanted = (class_size(class) * 8).div_ceil(SLOT);
    if wanted > MAX_SPAN {
        MAX_SPAN
    } else if wanted == 0 {
        1
    } else {
        wanted
    }
}

/// The class for a request of `size` bytes aligned to `align` (a power of two, as a
/// `Layout`'s), or `None` when it is served by a mapping of its own (too large, or
/// aligned beyond what pages give).
///
/// Blocks of a class start at multiples of its size from a slot boundary, so a block is
/// aligned to the largest power of two dividing the size; a request needing more gets the
/// class of its size rounded up to the alignment, or of the next power of two.
///
/// Every call of C's `malloc` comes here with alignment 8 or 16, so the rounding is done
/// with masks (a division costs tens of cycles), and alignments up to 16 skip the check:
/// a multiple of 16 up to 128 bytes is a class size itself, and every class above 128
/// bytes is a multiple of 16 (the tests go through every size).
#[inline(always)]
pub const fn class_for(size: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    if size > MAX_SMALL || align > SLOT {
        return None;
    }
    let mask = align - 1;
    // No overflow: both terms are at most `SLOT * 2`.
    let rounded = (if size == 0 { 1 } else { size } + mask) & !mask;
    if rounded > MAX_SMALL {
        return None;
    }
    let class = class_of(rounded);
    if align <= 16 || class_size(class) & mask == 0 {
        return Some(class);
    }
    // A power of two at least `align` is a class size, and aligned to itself.
    let power = rounded.next_power_of_two();
    if power > MAX_SMALL {
        None
    } else {
        Some(class_of(power))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_class_that_holds_it() {
        for size in 1..=MAX_SMALL {
            let class = class_of(size);
            assert!(class < CLASSES);
            assert!(class_size(class) >= size, "{size}");
            if class > 0 {
                assert!(class_size(class - 1) < size, "{size}");
            }
        }
        assert_eq!(class_size(CLASSES - 1), MAX_SMALL);
    }

    #[test]
    fn waste_above_64_bytes_stays_under_an_eighth() {
        for size in 65..=MAX_SMALL {
            let waste = class_size(class_of(size)) - size;
            assert!(waste * 8 < size, "{size}: {waste} wasted");
        }
    }

    #[test]
    fn aligned_requests_get_aligned_classes() {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096, SLOT] {
            for size in [0, 1, 7, 24, 33, 72, 100, 1000, 5000, MAX_SMALL / 2] {
                if let Some(class) = class_for(size, align) {
                    assert_eq!(class_size(class) % align.clamp(1, 8), 0);
                    if align > 8 {
                        assert_eq!(class_size(class) % align, 0, "{size} {align}");
                    }
                    assert!(class_size(class) >= size);
                }
            }
        }
        assert_eq!(class_for(MAX_SMALL + 1, 8), None);
        assert_eq!(class_for(8, SLOT * 2), None);
    }

    /// The alignments C's `malloc` uses skip the alignment check: every size proves it.
    #[test]
    fn every_size_with_an_alignment_up_to_16_gets_the_smallest_aligned_class() {
        // Miri interprets: every 61st size there (its geometry is small, 8 KiB at most).
        let step = if cfg!(miri) { 61 } else { 1 };
        for align in [1, 2, 4, 8, 16] {
            for size in (0..=MAX_SMALL).step_by(step) {
                let class = class_for(size, align).expect("a small request");
                let block = class_size(class);
                assert_eq!(block % align.max(8), 0, "{size} {align}");
                assert!(block >= size.max(1), "{size} {align}");
                // The smallest: no smaller class is both large enough and aligned.
                let smaller = (0..class)
                    .find(|&c| class_size(c) >= size.max(1) && class_size(c) % align == 0);
                assert_eq!(smaller, None, "{size} {align}: class {class}");
            }
        }
    }

    #[test]
    fn every_class_fills_at_least_one_block_per_page() {
        for class in 0..CLASSES {
            let span = span_slots(class);
            assert!((1..=MAX_SPAN).contains(&span));
            assert!(span * SLOT / class_size(class) >= 2, "class {class}");
        }
    }
}
