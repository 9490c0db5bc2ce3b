//! The short-run index: one byte per word of the free map, at least the length (capped at
//! [`SHORT_RUN`]) of every free run that starts in the word; above those bytes, levels of
//! maxima, each byte at least the largest of the eight below. Address-ordered first fit for
//! a run of up to [`SHORT_RUN`] blocks reads one eight-byte group per level from the top,
//! picking the first byte that holds the run with a few word operations, then that word's
//! bits.
//!
//! Bytes may be higher than what they stand for: taking blocks from a run leaves its
//! word's byte, and the maxima above it, as they were. Only a search that reaches a byte
//! finds out — from the word's bits, or from a group below with no byte that large — and
//! then brings it down and looks on from there. So taking blocks writes one byte, for the
//! free run left after them; freeing them raises the byte of the word where the free run
//! around them starts; either raises the bytes above only while they are lower. Each byte
//! a search brings down was left high by an earlier change, so a search costs O(log n)
//! amortized: a group per level, and a word.
//!
//! The bytes take an eighth of a bit per block, an eighth of the free map; the levels above
//! add an eighth of that again.

use core::ptr::NonNull;

use crate::levels::{longest_ones, run_starts, Levels, MAX_BITS};

/// The longest run the index answers for. Bytes stay below 128, so eight of them compare
/// at once without a carry crossing from one byte into the next.
pub(crate) const SHORT_RUN: usize = 127;

/// Bytes a group holds, and a node's children.
const FAN_OUT: usize = 8;

/// The top bit of each byte of a group.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// One in each byte of a group.
const ONES: u64 = 0x0101_0101_0101_0101;

/// Levels of an index over `MAX_BITS` blocks: enough that the top level is one group.
const MAX_DEPTH: usize = {
    let mut entries = MAX_BITS.div_ceil(64);
    let mut depth = 1;
    while entries > FAN_OUT {
        entries = entries.div_ceil(FAN_OUT);
        depth += 1;
    }
    depth
};

/// Groups (`u64`) of each level, bottom first, for an index over `words` words; the count of
/// levels.
fn level_groups(words: usize) -> ([usize; MAX_DEPTH], usize) {
    let mut groups = [0; MAX_DEPTH];
    let mut entries = words.max(1);
    let mut depth = 0;
    loop {
        groups[depth] = entries.div_ceil(FAN_OUT);
        depth += 1;
        if groups[depth - 1] == 1 {
            return (groups, depth);
        }
        entries = groups[depth - 1];
    }
}

/// Words (`u64`) of storage the index over a free map of `bits` bits takes.
pub(crate) fn storage_words(bits: usize) -> usize {
    let (groups, depth) = level_groups(bits.div_ceil(64));
    groups[..depth].iter().sum()
}

/// The larger of each pair of bytes of `a` and `b` (bytes below 128).
#[inline]
fn max_bytes(a: u64, b: u64) -> u64 {
    // Each byte of `a | HIGH` minus its byte of `b` stays within the byte, and keeps the top
    // bit exactly where `a >= b`.
    let a_wins = (((a | HIGH) - b) & HIGH) >> 7;
    let mask = a_wins * 0xFF;
    (a & mask) | (b & !mask)
}

/// The largest byte of a group.
#[inline]
fn group_max(group: u64) -> u64 {
    let half = max_bytes(group, group >> 32);
    let quarter = max_bytes(half, half >> 16);
    max_bytes(quarter, quarter >> 8) & 0xFF
}

/// The index, over words it does not own; it reads the free map from a [`Levels`] passed to
/// each call.
///
/// Invariant: up to the top level, each byte at level 0 is at least [`longest_start`] of its
/// word, each byte above at least the largest of its eight below, and none above
/// [`SHORT_RUN`]; bytes past a level's end, and those for words past the top's first group,
/// are 0.
pub(crate) struct ShortRuns {
    groups: NonNull<u64>,
    /// Offset (in groups) of each level, bottom first.
    starts: [usize; MAX_DEPTH],
    depth: usize,
    /// The level searched from: its first group covers every word whose byte was ever
    /// raised, so the levels above hold nothing a search needs and are left alone.
    top: usize,
    /// Bits of the free map.
    bits: usize,
    /// Words of the free map.
    words: usize,
}

/// A byte [`ShortRuns::check`] found wrong: its level and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wrong {
    pub(crate) level: usize,
    pub(crate) index: usize,
}

impl ShortRuns {
    /// The index over `bits` bits all free.
    ///
    /// # Safety
    ///
    /// `groups` points to [`storage_words`]`(bits)` writable, aligned `u64`s that nothing
    /// else uses while the index lives. `bits <= MAX_BITS`.
    pub(crate) unsafe fn new(groups: NonNull<u64>, bits: usize) -> Self {
        debug_assert!(bits <= MAX_BITS);
        let words = bits.div_ceil(64);
        let (counts, depth) = level_groups(words);
        let mut starts = [0; MAX_DEPTH];
        for level in 1..depth {
            starts[level] = starts[level - 1] + counts[level - 1];
        }
        // SAFETY: the caller provides `storage_words(bits)` writable words.
        unsafe { groups.as_ptr().write_bytes(0, storage_words(bits)) };
        let mut index = Self {
            groups,
            starts,
            depth,
            top: 0,
            bits,
            words,
        };
        // One free run, from block 0.
        index.raise(0, bits.min(SHORT_RUN) as u64);
        index
    }

    #[inline]
    fn group(&self, level: usize, index: usize) -> u64 {
        // SAFETY: callers pass a group of the level, which lies in the storage (`new`).
        unsafe { self.groups.as_ptr().add(self.starts[level] + index).read() }
    }

    #[inline]
    fn set_group(&mut self, level: usize, index: usize, group: u64) {
        // SAFETY: as in `group`; `&mut self` makes the write exclusive.
        unsafe {
            self.groups
                .as_ptr()
                .add(self.starts[level] + index)
                .write(group)
        }
    }

    /// Byte `index` of `level`.
    #[inline]
    fn byte(&self, level: usize, index: usize) -> u64 {
        (self.group(level, index / FAN_OUT) >> (8 * (index % FAN_OUT))) & 0xFF
    }

    /// Stores byte `index` of `level`; whether it changed.
    #[inline]
    fn set_byte(&mut self, level: usize, index: usize, value: u64) -> bool {
        let shift = 8 * (index % FAN_OUT);
        let group = self.group(level, index / FAN_OUT);
        let updated = (group & !(0xFF << shift)) | (value << shift);
        self.set_group(level, index / FAN_OUT, updated);
        updated != group
    }

    /// Takes note that blocks up to `end` were taken: a free run may start at `end` now.
    #[inline(always)]
    pub(crate) fn taken(&mut self, map: &Levels, end: usize) {
        // A byte at the cap holds any run (the free tail's, mostly): no need to count.
        if end < self.bits && map.get(end) && self.byte(0, end / 64) < SHORT_RUN as u64 {
            let run = free_above(map, self.bits, end, SHORT_RUN).min(SHORT_RUN);
            self.raise(end / 64, run as u64);
        }
    }

    /// Takes note that blocks `start..end` were freed: the free run around them starts in
    /// a word whose byte must hold it. When the free run before them is [`SHORT_RUN`] long
    /// already, the word where it starts holds the cap.
    #[inline(always)]
    pub(crate) fn freed(&mut self, map: &Levels, start: usize, end: usize) {
        let below = free_below(map, start, SHORT_RUN);
        let word = (start - below) / 64;
        if below < SHORT_RUN && self.byte(0, word) < SHORT_RUN as u64 {
            let run = below + (end - start) + free_above(map, self.bits, end, SHORT_RUN);
            self.raise(word, run.min(SHORT_RUN) as u64);
        }
    }

    /// Raises byte `index` of level 0 to `value` if lower, and the bytes above while lower.
    #[inline(always)]
    fn raise(&mut self, mut index: usize, value: u64) {
        if index >> (3 * (self.top + 1)) != 0 {
            self.cover(index);
        }
        // (`top` is below `MAX_DEPTH`: the `min` spares a bounds check per level.)
        for level in 0..=self.top.min(MAX_DEPTH - 1) {
            if self.byte(level, index) >= value {
                return;
            }
            self.set_byte(level, index, value);
            index /= FAN_OUT;
        }
    }

    /// Moves the top up to the lowest level whose first group covers word `word`, working out
    /// the first byte of each level on the way from the group below (the others cover words
    /// no byte was raised for: 0, as they were made).
    #[inline(never)]
    fn cover(&mut self, word: usize) {
        while self.top + 1 < self.depth && word >> (3 * (self.top + 1)) != 0 {
            self.top += 1;
            let largest = group_max(self.group(self.top - 1, 0));
            self.set_byte(self.top, 0, largest);
        }
    }

    /// The lowest start of `count` (2 to [`SHORT_RUN`]) free bits of `map`: from the top, the
    /// first byte of each level's group that holds the run (eight compared at once), then
    /// the word's bits. A word whose byte was too high gets the longest run that starts in
    /// it, a byte above a group with none that large gets the group's largest, and the
    /// search goes on from there in address order: bytes before it in its group, and in the
    /// groups above, are known to be smaller.
    #[inline]
    pub(crate) fn first_fit(&mut self, map: &Levels, count: usize) -> Option<usize> {
        debug_assert!((2..=SHORT_RUN).contains(&count));
        let wanted = count as u64 * ONES;
        // (`top` is below `MAX_DEPTH`: the `min` spares the bounds checks on `starts`.)
        let top = self.top.min(MAX_DEPTH - 1);
        let (mut level, mut group_index) = (top, 0);
        loop {
            let group = self.group(level, group_index);
            let holds = ((group | HIGH) - wanted) & HIGH;
            if holds == 0 {
                if level == top {
                    return None;
                }
                // The byte above this group is the group's index one level up.
                self.set_byte(level + 1, group_index, group_max(group));
                level += 1;
                group_index /= FAN_OUT;
                continue;
            }
            let index = group_index * FAN_OUT + holds.trailing_zeros() as usize / 8;
            if level > 0 {
                level -= 1;
                group_index = index;
                continue;
            }
            if let Some(start) = fit_in_word(map, self.bits, index, count) {
                return Some(start);
            }
            // No run of `count` starts in the word: its byte drops below `count`.
            self.set_byte(0, index, longest_start(map, self.bits, index));
        }
    }

    /// The lowest start at or after `from` of `count` (2 to [`SHORT_RUN`]) free bits of
    /// `map`: in `from`'s word from `from` on (a run through `from` counted from there),
    /// then [`first_fit_after`](Self::first_fit_after) the word.
    pub(crate) fn first_fit_from(
        &mut self,
        map: &Levels,
        count: usize,
        from: usize,
    ) -> Option<usize> {
        debug_assert!((2..=SHORT_RUN).contains(&count));
        if from >= self.bits {
            return None;
        }
        let word = from / 64;
        let from_on = map.leaf(word) & (u64::MAX << (from % 64));
        fit_in_bits(map, self.bits, word, from_on, count)
            .or_else(|| self.first_fit_after(map, count, word))
    }

    /// The lowest start of `count` free bits among the runs that start in the words after
    /// `word`: up the levels from `word`'s byte to the first byte after the path that holds
    /// the run, then down as [`first_fit`](Self::first_fit) goes, bringing down what is too
    /// high on the way and going on after it.
    fn first_fit_after(&mut self, map: &Levels, count: usize, word: usize) -> Option<usize> {
        let wanted = count as u64 * ONES;
        let top = self.top.min(MAX_DEPTH - 1);
        // The bytes to look at: `index` and after, in its group, at `level`.
        let (mut level, mut index) = (0, word + 1);
        loop {
            let group_index = index / FAN_OUT;
            // Nothing is raised past the top's first group.
            let past = if level == top {
                group_index > 0
            } else {
                // Below the top, the level's groups end where the next level's start.
                group_index >= self.starts[level + 1] - self.starts[level]
            };
            let holds = if past {
                0
            } else {
                let group = self.group(level, group_index);
                ((group | HIGH) - wanted) & HIGH & (u64::MAX << (8 * (index % FAN_OUT)))
            };
            if holds == 0 {
                if level == top {
                    return None;
                }
                if index % FAN_OUT == 0 && !past && (level + 1 < top || group_index < FAN_OUT) {
                    // A whole group with no byte that large: the byte above comes down (not
                    // past the top's first group, where nothing is kept).
                    let largest = group_max(self.group(level, group_index));
                    self.set_byte(level + 1, group_index, largest);
                }
                level += 1;
                index = group_index + 1;
                continue;
            }
            let found = group_index * FAN_OUT + holds.trailing_zeros() as usize / 8;
            if level > 0 {
                level -= 1;
                index = found * FAN_OUT;
                continue;
            }
            if let Some(start) = fit_in_word(map, self.bits, found, count) {
                return Some(start);
            }
            self.set_byte(0, found, longest_start(map, self.bits, found));
            index = found + 1;
        }
    }

    /// The first byte that breaks the invariant: below its word's longest run at level 0,
    /// below its group's largest above, over the cap, or not 0 past a level's end, past
    /// the top's first group or above the top.
    pub(crate) fn check(&self, map: &Levels) -> Result<(), Wrong> {
        let (counts, _) = level_groups(self.words);
        let mut entries = self.words;
        for (level, &groups) in counts.iter().enumerate().take(self.depth) {
            for index in 0..groups * FAN_OUT {
                let byte = self.byte(level, index);
                // Above the top nothing is written until `cover` brings a level in.
                let kept = level <= self.top;
                let least = if index >= entries || !kept {
                    0
                } else if level == 0 {
                    longest_start(map, self.bits, index)
                } else {
                    group_max(self.group(level - 1, index))
                };
                let covered = kept && index >> (3 * (self.top + 1 - level)) == 0;
                let most = if index >= entries || !covered {
                    0
                } else {
                    SHORT_RUN as u64
                };
                if !(least..=most).contains(&byte) {
                    return Err(Wrong { level, index });
                }
            }
            entries = groups;
        }
        Ok(())
    }

    /// Writes byte `index` of `level` as a stray write would (for tests of `check`).
    #[cfg(test)]
    pub(crate) fn corrupt(&mut self, level: usize, index: usize, value: u64) {
        self.set_byte(level, index, value);
    }
}

/// The first start of `count` free bits in word `word` of `map` (of `bits` bits), if a
/// run that long starts there: inside the word, or the free run at its top continued into
/// the words after.
#[inline]
pub(crate) fn fit_in_word(map: &Levels, bits: usize, word: usize, count: usize) -> Option<usize> {
    fit_in_bits(map, bits, word, map.leaf(word), count)
}

/// [`fit_in_word`] over `value`, word `word`'s bits or some of them (those from a position
/// on, for a search from there).
#[inline]
fn fit_in_bits(map: &Levels, bits: usize, word: usize, value: u64, count: usize) -> Option<usize> {
    if count <= 64 {
        // Inside the word (the run at its top included, when that long): the lowest start
        // is the answer, since a run reaching into this word from the one before would
        // start a run of `count` there, whose byte comes first.
        let inside = run_starts(value, count);
        if inside != 0 {
            return Some(word * 64 + inside.trailing_zeros() as usize);
        }
    }
    let top = value.leading_ones() as usize;
    let start = word * 64 + (64 - top);
    (top > 0 && top + free_above(map, bits, (word + 1).saturating_mul(64), count - top) >= count)
        .then_some(start)
}

/// The longest free run of `map` (of `bits` bits) that starts in word `word`, capped at
/// [`SHORT_RUN`]: a free run reaching the word's first bit from the word before starts
/// there, not here.
fn longest_start(map: &Levels, bits: usize, word: usize) -> u64 {
    let mut value = map.leaf(word);
    if word > 0 && map.leaf(word - 1) >> 63 == 1 {
        // Clear the run at the bottom: it started in the word before.
        value &= value.wrapping_add(1);
    }
    if value == 0 {
        return 0;
    }
    let top = value.leading_ones() as usize;
    let run = if top > 0 {
        top + free_above(map, bits, (word + 1).saturating_mul(64), SHORT_RUN)
    } else {
        0
    };
    run.max(longest_ones(value)).min(SHORT_RUN) as u64
}

/// Free bits of `map` (of `bits` bits) from bit `at` on, counted up to `most` (perhaps a
/// few more).
#[inline]
fn free_above(map: &Levels, bits: usize, mut at: usize, most: usize) -> usize {
    let mut free = 0;
    while free < most && at < bits {
        let offset = at % 64;
        // Bits past the last block are clear: the count stops there.
        let ones = (map.leaf(at / 64) >> offset).trailing_ones() as usize;
        free += ones;
        if ones < 64 - offset {
            break;
        }
        at += 64 - offset;
    }
    free
}

/// Free bits of `map` just below bit `at`, counted up to `most` (perhaps a few more).
#[inline]
fn free_below(map: &Levels, mut at: usize, most: usize) -> usize {
    let mut free = 0;
    while free < most && at > 0 {
        let index = (at - 1) / 64;
        // The word's bits below `at`, the highest at the top.
        let valid = at - index * 64;
        let ones = (map.leaf(index) << (64 - valid)).leading_ones() as usize;
        free += ones;
        if ones < valid {
            break;
        }
        at = index * 64;
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels;
    use core::fmt;
    use heapkit_trace::Rng;
    use std::vec::Vec;

    #[test]
    fn max_bytes_and_group_max_match_bytewise() {
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        for _ in 0..if cfg!(miri) { 500 } else { 10_000 } {
            let state = rng.next();
            let a = state & !HIGH;
            let b = state.rotate_left(29) & !HIGH;
            let lanes = |x: u64| x.to_le_bytes();
            let expected: Vec<u8> = lanes(a)
                .iter()
                .zip(lanes(b))
                .map(|(x, y)| (*x).max(y))
                .collect();
            assert_eq!(lanes(max_bytes(a, b)).to_vec(), expected);
            assert_eq!(group_max(a), u64::from(*lanes(a).iter().max().unwrap()));
        }
    }

    #[test]
    fn level_groups_end_in_one_group() {
        assert_eq!(level_groups(1).0[0], 1);
        assert_eq!(level_groups(1).1, 1);
        assert_eq!(level_groups(8).1, 1);
        assert_eq!(level_groups(9).1, 2);
        assert_eq!(level_groups(64).1, 2);
        assert_eq!(level_groups(65).1, 3);
        assert_eq!(storage_words(64 * 64), 8 + 1);
        assert_eq!(storage_words(64 * 65), 9 + 2 + 1);
    }

    /// A free map and its index, with a naive first fit to compare against.
    struct Owned {
        _storage: Vec<u64>,
        map: Levels,
        index: ShortRuns,
        bits: usize,
    }

    impl Owned {
        fn new(bits: usize) -> Self {
            let map_words = levels::storage_words(bits);
            let mut storage = std::vec![0u64; map_words + storage_words(bits)];
            let words = NonNull::new(storage.as_mut_ptr()).unwrap();
            // SAFETY: `storage` has the words for both and outlives them (same struct).
            let (map, index) = unsafe {
                let mut map = Levels::new(words, bits);
                map.assign(0, bits, true);
                let index = ShortRuns::new(words.add(map_words), bits);
                (map, index)
            };
            Self {
                _storage: storage,
                map,
                index,
                bits,
            }
        }

        fn assign(&mut self, start: usize, end: usize, free: bool) {
            let index = &mut self.index;
            levels::assign_stretches(&mut self.map, start, end, free, |map, from, to| {
                if free {
                    index.freed(map, from, to);
                } else {
                    index.taken(map, to);
                }
            });
        }

        fn naive(&self, count: usize) -> Option<usize> {
            self.naive_from(count, 0)
        }

        /// Raises `n` random bytes at any level up to the top, inside the words the top
        /// covers, to any value up to the cap, and the bytes above them to match: bytes too
        /// high, which the invariant allows and searches must bring down.
        fn raise_stale(&mut self, rng: &mut Rng, n: usize) {
            let (counts, _) = level_groups(self.index.words);
            // Bytes of each level: the words, then the groups of the level below.
            let mut entries = [self.index.words; MAX_DEPTH];
            entries[1..].copy_from_slice(&counts[..MAX_DEPTH - 1]);
            for _ in 0..n {
                let level = rng.below(self.index.top + 1);
                let covered = 1usize << (3 * (self.index.top + 1 - level)).min(60);
                let index = rng.below(entries[level].min(covered));
                let was = self.index.byte(level, index);
                let value = was + rng.below(SHORT_RUN + 1 - was as usize) as u64;
                let (mut level, mut index) = (level, index);
                self.index.corrupt(level, index, value);
                while level < self.index.top {
                    level += 1;
                    index /= FAN_OUT;
                    if self.index.byte(level, index) < value {
                        self.index.corrupt(level, index, value);
                    }
                }
            }
            self.index.check(&self.map).unwrap();
        }

        fn naive_from(&self, count: usize, from: usize) -> Option<usize> {
            levels::naive_first_fit(&self.map, self.bits, count, from)
        }

        /// `first_fit_from` agrees with the naive scan; `context` leads the failure message.
        fn assert_first_fit_from(&mut self, count: usize, from: usize, context: fmt::Arguments) {
            assert_eq!(
                self.index.first_fit_from(&self.map, count, from),
                self.naive_from(count, from),
                "{context}: run of {count} from {from}"
            );
        }
    }

    #[test]
    fn first_fit_matches_a_naive_scan() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        let mut next = move |below: usize| rng.below(below);
        // Under miri (hours for all of them) fewer maps and steps.
        let (sizes, steps): (&[usize], usize) = if cfg!(miri) {
            (&[65, 64 * 9 + 5], 15)
        } else {
            (
                &[1, 63, 64, 65, 200, 64 * 9 + 5, 64 * 70, 64 * 600 + 17],
                600,
            )
        };
        for &bits in sizes {
            let mut owned = Owned::new(bits);
            owned.index.check(&owned.map).unwrap();
            for _ in 0..steps {
                let start = next(bits);
                let longest = if next(4) == 0 { 300 } else { 40 };
                let end = (start + 1 + next(longest)).min(bits);
                // Free more often past a random point, so both free and used runs form.
                let free = next(3) == 0 || next(bits) < start;
                owned.assign(start, end, free);
                owned.index.check(&owned.map).unwrap();
                for count in [2, 3, 5, 17, 63, 64, 65, 100, SHORT_RUN] {
                    assert_eq!(
                        owned.index.first_fit(&owned.map, count),
                        owned.naive(count),
                        "{bits} bits, run of {count}"
                    );
                }
            }
        }
    }

    #[test]
    fn check_finds_a_byte_too_low_or_over_the_cap() {
        let fresh = || {
            // 597 words: the last group has three bytes past the end.
            let mut owned = Owned::new(64 * 597 - 5);
            owned.assign(100, 38_000, false);
            owned.index.check(&owned.map).unwrap();
            owned
        };
        // The free runs: blocks 0 to 100, and from 38,000 (word 593) to the end.
        let mut owned = fresh();
        assert_eq!(owned.index.top, owned.index.depth - 1);
        owned.index.corrupt(0, 593, 126);
        assert_eq!(
            owned.index.check(&owned.map),
            Err(Wrong {
                level: 0,
                index: 593
            })
        );
        // Too high is allowed, up to the cap, and found out by a search.
        let mut owned = fresh();
        let cap = SHORT_RUN as u64;
        for (level, index) in [(0, 3), (1, 0), (1, 5), (2, 0), (3, 0)] {
            owned.index.corrupt(level, index, cap);
        }
        owned.index.check(&owned.map).unwrap();
        assert_eq!(owned.index.first_fit(&owned.map, 101), Some(38_000));
        owned.index.check(&owned.map).unwrap();
        assert_eq!((owned.index.byte(0, 3), owned.index.byte(1, 5)), (0, 0));
        owned.index.corrupt(0, 3, cap + 1);
        assert_eq!(
            owned.index.check(&owned.map),
            Err(Wrong { level: 0, index: 3 })
        );
        for level in 1..owned.index.depth {
            let mut owned = fresh();
            owned.index.corrupt(level, 0, 0);
            assert_eq!(
                owned.index.check(&owned.map),
                Err(Wrong { level, index: 0 })
            );
        }
        // A byte past the last word.
        let mut owned = fresh();
        owned.index.corrupt(0, 598, 1);
        assert_eq!(
            owned.index.check(&owned.map),
            Err(Wrong {
                level: 0,
                index: 598
            })
        );
    }

    #[test]
    fn check_finds_a_stray_byte_above_the_top() {
        let mut owned = Owned::new(64 * 4096);
        owned.assign(0, 64 * 8, false);
        assert_eq!(owned.index.top, 1);
        owned.index.check(&owned.map).unwrap();
        // A search would follow it past the end of a level once `cover` took that level in.
        owned.index.corrupt(3, 1, 5);
        assert_eq!(
            owned.index.check(&owned.map),
            Err(Wrong { level: 3, index: 1 })
        );
    }

    #[test]
    fn the_top_covers_every_word_raised_and_no_more() {
        let mut owned = Owned::new(64 * 4096);
        assert_eq!(owned.index.top, 0);
        owned.assign(0, 64 * 8, false);
        assert_eq!(owned.index.top, 1);
        owned.assign(64 * 8, 64 * 600, false);
        assert_eq!(owned.index.top, 3);
        owned.index.check(&owned.map).unwrap();
        // Freed again, the top stays: bytes past it are 0 as the check requires.
        owned.assign(0, 64 * 600, true);
        assert_eq!(owned.index.top, 3);
        owned.index.check(&owned.map).unwrap();
        assert_eq!(owned.index.first_fit(&owned.map, SHORT_RUN), Some(0));
    }

    /// The longest free run starting in `word` (a start: a free bit whose bit before is
    /// used, or bit 0), capped, bit by bit.
    fn naive_longest_start(map: &Levels, bits: usize, word: usize) -> u64 {
        let mut best = 0;
        for start in word * 64..((word + 1).saturating_mul(64)).min(bits) {
            if !map.get(start) || (start > 0 && map.get(start - 1)) {
                continue;
            }
            let run = (start..bits).take_while(|&b| map.get(b)).count();
            best = best.max(run.min(SHORT_RUN));
        }
        best as u64
    }

    /// Random free maps (as the arena makes them: whole runs taken or freed), and every
    /// count checked against the naive scan after each change and after random stale-high
    /// raises anywhere (covered or not), which a search must bring down.
    fn stress(bits: usize, seed: u64, steps: usize) {
        let mut rng = Rng::new(seed | 1);
        let mut owned = Owned::new(bits);
        let words = bits.div_ceil(64);
        for _ in 0..steps {
            let start = rng.below(bits);
            let longest = if rng.below(3) == 0 { 300 } else { 70 };
            let end = (start + 1 + rng.below(longest)).min(bits);
            let free = rng.below(2) == 0;
            owned.assign(start, end, free);
            owned.index.check(&owned.map).unwrap();
            for word in 0..words {
                assert_eq!(
                    longest_start(&owned.map, bits, word),
                    naive_longest_start(&owned.map, bits, word),
                    "{bits} bits, word {word}"
                );
            }
            if rng.below(4) == 0 {
                // Stale-high bytes: what taking blocks leaves. Any word, any value.
                for _ in 0..=rng.below(4) {
                    let word = rng.below(words);
                    let value = 1 + rng.below(SHORT_RUN) as u64;
                    owned.index.raise(word, value);
                }
                owned.index.check(&owned.map).unwrap();
            }
            let mut counts: Vec<usize> = (2..=SHORT_RUN).collect();
            // Searches in a random order: each lowers bytes the next one meets.
            for i in (1..counts.len()).rev() {
                counts.swap(i, rng.below(i + 1));
            }
            for &count in &counts {
                assert_eq!(
                    owned.index.first_fit(&owned.map, count),
                    owned.naive(count),
                    "{bits} bits, run of {count}"
                );
            }
            owned.index.check(&owned.map).unwrap();
            // From anywhere, with more bytes left high: runs through the start, later in its
            // word, and after it (up the levels and down again).
            for _ in 0..rng.below(3) {
                owned
                    .index
                    .raise(rng.below(words), 1 + rng.below(SHORT_RUN) as u64);
            }
            let every = if cfg!(miri) { 9 } else { 1 };
            for &count in counts.iter().step_by(every) {
                let from = rng.below(bits + 2);
                owned.assert_first_fit_from(count, from, format_args!("{bits} bits"));
            }
            owned.index.check(&owned.map).unwrap();
        }
    }

    #[test]
    fn first_fit_every_count_with_stale_bytes_small_maps() {
        let (sizes, steps): (Vec<usize>, usize) = if cfg!(miri) {
            (std::vec![1, 65, 200], 4)
        } else {
            ((1..=200).collect(), 40)
        };
        for bits in sizes {
            stress(bits, 0x1234_5678 ^ bits as u64, steps);
        }
    }

    #[test]
    fn first_fit_every_count_with_stale_bytes_deep_maps() {
        // Three and four levels; counts of words not multiples of 8 or 64.
        let sizes: &[usize] = if cfg!(miri) {
            &[64 * 65 + 3]
        } else {
            &[64 * 64, 64 * 65 + 3, 64 * 513 - 1, 64 * 600 + 17]
        };
        for &bits in sizes {
            stress(bits, 0xABCD ^ bits as u64, if cfg!(miri) { 3 } else { 60 });
        }
    }

    /// Searches from anywhere (around word, group and level boundaries too) with bytes
    /// left high at every level, against a naive scan. (From the review of the search.)
    #[test]
    fn first_fit_from_with_bytes_too_high_at_any_level() {
        let sizes: &[usize] = if cfg!(miri) {
            &[65, 64 * 9 + 1]
        } else {
            &[
                1,
                2,
                63,
                64,
                65,
                127,
                128,
                129,
                511,
                512,
                513,
                575,
                576,
                577,
                4095,
                4096,
                4097,
                64 * 600 + 17,
            ]
        };
        let (steps, searches) = if cfg!(miri) { (3, 6) } else { (100, 20) };
        for &bits in sizes {
            let mut rng = Rng::new(0xDEAD_BEEF ^ bits as u64);
            let mut owned = Owned::new(bits);
            for step in 0..steps {
                let start = rng.below(bits);
                let longest = [600, 130, 40, 40][rng.below(4)];
                let end = (start + 1 + rng.below(longest)).min(bits);
                owned.assign(start, end, rng.below(2) == 0);
                let stale = rng.below(6);
                owned.raise_stale(&mut rng, stale);
                for _ in 0..searches {
                    let count = 2 + rng.below(SHORT_RUN - 1);
                    let from = match rng.below(5) {
                        0 => rng.below(bits + 3),
                        1 => (rng.below(bits / 64 + 2) * 64).saturating_sub(rng.below(2)),
                        2 => (rng.below(bits / 512 + 2) * 512).saturating_sub(rng.below(2)),
                        3 => (rng.below(bits / 4096 + 2) * 4096).saturating_sub(rng.below(2)),
                        _ => rng.below(bits),
                    };
                    owned.assert_first_fit_from(
                        count,
                        from,
                        format_args!("{bits} bits, step {step}"),
                    );
                    owned.index.check(&owned.map).unwrap();
                }
            }
        }
    }

    /// Runs only in the first words of a large map, so the top stays below the last level:
    /// searches from past the words it covers find nothing, or a run from before them.
    #[test]
    fn first_fit_from_past_a_partial_top() {
        let (sizes, covers, searches): (&[usize], &[usize], usize) = if cfg!(miri) {
            (&[64 * 80 + 17], &[9], 10)
        } else {
            (
                &[64 * 4096 + 7, 64 * 600 + 17],
                &[8, 9, 64, 65, 512, 513],
                100,
            )
        };
        for &bits in sizes {
            for &covered in covers {
                let mut owned = Owned::new(bits);
                owned.assign(0, bits, false);
                let mut rng = Rng::new(covered as u64 * 31 + bits as u64);
                for _ in 0..40 {
                    let start = rng.below(covered * 64);
                    let end = (start + 1 + rng.below(140)).min(covered * 64);
                    owned.assign(start, end, rng.below(3) != 0);
                }
                owned.raise_stale(&mut rng, 10);
                assert!(owned.index.top + 1 < owned.index.depth || covered >= 512);
                for _ in 0..searches {
                    let count = 2 + rng.below(SHORT_RUN - 1);
                    let from = rng.below((covered + 70) * 64).min(bits + 1);
                    owned.assert_first_fit_from(
                        count,
                        from,
                        format_args!("{bits} bits, {covered} words used"),
                    );
                    owned.index.check(&owned.map).unwrap();
                }
            }
        }
    }

    /// Every byte the check bounds from below, set one lower, is found; any value between
    /// its bound and the cap is not, and first fit stays right over it.
    #[test]
    fn check_bounds_every_byte_exactly() {
        let bits = if cfg!(miri) { 64 * 20 + 5 } else { 64 * 80 + 5 };
        let mut rng = Rng::new(0x5151);
        let mut owned = Owned::new(bits);
        for _ in 0..if cfg!(miri) { 5 } else { 40 } {
            let start = rng.below(bits);
            let end = (start + 1 + rng.below(150)).min(bits);
            owned.assign(start, end, rng.below(2) == 0);
        }
        // Make every byte exact first (every search down to level 0 lowers what it meets).
        for count in (2..=SHORT_RUN).rev() {
            owned.index.first_fit(&owned.map, count);
        }
        owned.index.check(&owned.map).unwrap();
        let (counts, _) = level_groups(owned.index.words);
        for (level, groups) in counts.iter().enumerate().take(owned.index.top + 1) {
            for index in 0..groups * FAN_OUT {
                let was = owned.index.byte(level, index);
                if was > 0 {
                    owned.index.corrupt(level, index, was - 1);
                    let least = if level == 0 {
                        longest_start(&owned.map, bits, index)
                    } else {
                        group_max(owned.index.group(level - 1, index))
                    };
                    if least == was {
                        assert_eq!(
                            owned.index.check(&owned.map),
                            Err(Wrong { level, index }),
                            "byte {index} of level {level} one below {was}"
                        );
                    }
                    owned.index.corrupt(level, index, was);
                }
            }
        }
        owned.index.check(&owned.map).unwrap();
    }

    /// The index writes nothing outside its `storage_words`: guard words on both sides.
    #[test]
    fn index_stays_inside_its_storage() {
        const GUARD: u64 = 0xA5A5_A5A5_A5A5_A5A5;
        let sizes: &[usize] = if cfg!(miri) {
            &[1, 65, 513, 64 * 65 * 8 + 1]
        } else {
            &[
                1,
                63,
                64,
                65,
                511,
                512,
                513,
                64 * 64,
                64 * 64 + 1,
                64 * 65 * 8 + 1,
            ]
        };
        for &bits in sizes {
            let len = storage_words(bits);
            let map_words = levels::storage_words(bits);
            let mut storage = std::vec![GUARD; map_words + len + 4];
            let base = NonNull::new(storage.as_mut_ptr()).unwrap();
            // SAFETY: the map's words, then the index's, then four guard words; `storage`
            // outlives both, which are not used once it is read below.
            let (mut map, mut index) = unsafe {
                let mut map = Levels::new(base, bits);
                map.assign(0, bits, true);
                (map, ShortRuns::new(base.add(map_words), bits))
            };
            let mut rng = Rng::new(bits as u64 * 7 + 1);
            for _ in 0..if cfg!(miri) { 20 } else { 200 } {
                let start = rng.below(bits);
                let end = (start + 1 + rng.below(200)).min(bits);
                if map.get(start) {
                    let end = (start..end).find(|&b| !map.get(b)).unwrap_or(end);
                    map.assign(start, end, false);
                    index.taken(&map, end);
                } else {
                    let end = (start..end).find(|&b| map.get(b)).unwrap_or(end);
                    map.assign(start, end, true);
                    index.freed(&map, start, end);
                }
                for count in [2, 64, 65, SHORT_RUN] {
                    index.first_fit(&map, count);
                    index.first_fit_from(&map, count, rng.below(bits + 1));
                }
                // Raising the last word moves the top to the last level.
                index.raise(bits.div_ceil(64) - 1, 1);
                index.check(&map).unwrap();
            }
            assert!(
                storage[map_words + len..].iter().all(|w| *w == GUARD),
                "{bits} bits: a write past the index"
            );
        }
    }

    /// The cases the design names, one by one, each answer against the naive scan and a
    /// value worked out by hand.
    #[test]
    fn named_edge_cases() {
        let fits = |owned: &mut Owned, count: usize, expected: Option<usize>| {
            owned.index.check(&owned.map).unwrap();
            assert_eq!(owned.naive(count), expected, "the case's own arithmetic");
            assert_eq!(
                owned.index.first_fit(&owned.map, count),
                expected,
                "run of {count}"
            );
            owned.index.check(&owned.map).unwrap();
        };
        // Word 0's top bit free, word 1's bottom bit used: word 1's run at bits 10..21 is its
        // own, not the one from word 0.
        let mut owned = Owned::new(64 * 3);
        owned.assign(0, 64 * 3, false);
        owned.assign(63, 64, true);
        owned.assign(64 + 10, 64 + 21, true);
        fits(&mut owned, 11, Some(74));
        fits(&mut owned, 12, None);
        // Word 0's top run goes on into word 1 (blocks 60..74: 14) and word 1 has one of 11
        // at 84: the bottom run of word 1 is word 0's.
        let mut owned = Owned::new(64 * 3);
        owned.assign(0, 64 * 3, false);
        owned.assign(60, 74, true);
        owned.assign(84, 95, true);
        fits(&mut owned, 14, Some(60));
        fits(&mut owned, 11, Some(60));
        fits(&mut owned, 15, None);
        // Taking 60..64 ends at the word boundary: word 1's 10 blocks start there now.
        owned.assign(60, 64, false);
        fits(&mut owned, 10, Some(64));
        fits(&mut owned, 11, Some(84));
        // Taking the first 10 blocks from a free tail whose byte is at the cap: the run
        // after them is counted by nobody, and is found.
        let mut owned = Owned::new(1000);
        owned.assign(0, 10, false);
        fits(&mut owned, SHORT_RUN, Some(10));
        owned.assign(10, 10 + SHORT_RUN, false);
        fits(&mut owned, SHORT_RUN, Some(10 + SHORT_RUN));
        // Freeing next to a free run of 127 or more: the merged run's start word holds the
        // cap already. Blocks 200..400 free after 0..200 used, then 190..200 freed.
        let mut owned = Owned::new(1000);
        owned.assign(0, 1000, false);
        owned.assign(200, 400, true);
        owned.assign(400, 401, true);
        fits(&mut owned, SHORT_RUN, Some(200));
        owned.assign(190, 200, true);
        fits(&mut owned, SHORT_RUN, Some(190));
        // Runs of exactly 63, 64, 65, 126, 127 and 128 crossing words, the last reaching the
        // last block of a map that is not a multiple of 64.
        let bits = 64 * 40 + 37;
        let mut owned = Owned::new(bits);
        owned.assign(0, bits, false);
        let runs = [(70, 63), (200, 64), (330, 65), (600, 126), (900, 127)];
        for (start, length) in runs {
            owned.assign(start, start + length, true);
        }
        owned.assign(bits - 128, bits, true);
        for (start, length) in runs {
            fits(&mut owned, length, Some(start));
        }
        fits(&mut owned, 66, Some(600));
        fits(&mut owned, SHORT_RUN, Some(900));
        // Take the 127 at 900: the next 127 is the one that ends at the last block.
        owned.assign(900, 900 + SHORT_RUN, false);
        fits(&mut owned, SHORT_RUN, Some(bits - 128));
        fits(&mut owned, 126, Some(600));
        // A word far past the top's group raised from a free: the top moves up.
        let mut owned = Owned::new(64 * 80);
        owned.assign(0, 64 * 80, false);
        assert_eq!(owned.index.top, 0);
        owned.assign(64 * 79 + 3, 64 * 79 + 50, true);
        assert_eq!(owned.index.top, owned.index.depth - 1);
        fits(&mut owned, 47, Some(64 * 79 + 3));
        fits(&mut owned, 48, None);
    }
}
