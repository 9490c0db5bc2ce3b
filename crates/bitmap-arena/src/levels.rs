//! A hierarchical bitset: one bit per block at level 0 (set: free), and above it one bit
//! per word of the level below (set: that word has a set bit). Finding the first set bit at
//! or after a position reads one word per level: O(log64 n).

use core::ptr::NonNull;

/// Most levels: 64^6 = 2^36 blocks.
const MAX_LEVELS: usize = 6;

/// Words needed for each level, bottom first, for `bits` bits; the count of levels used.
fn level_words(bits: usize) -> ([usize; MAX_LEVELS], usize) {
    let mut words = [0; MAX_LEVELS];
    let mut width = bits;
    let mut levels = 0;
    loop {
        let count = width.div_ceil(64).max(1);
        words[levels] = count;
        levels += 1;
        if count == 1 || levels == MAX_LEVELS {
            return (words, levels);
        }
        width = count;
    }
}

/// Words of storage a [`Levels`] over `bits` bits takes.
pub(crate) fn storage_words(bits: usize) -> usize {
    let (words, levels) = level_words(bits);
    words[..levels].iter().sum()
}

/// Largest number of bits supported: 2^36, or all of `usize` on 32-bit targets.
pub(crate) const MAX_BITS: usize = {
    let levels_cover = 1u64 << (6 * MAX_LEVELS);
    if levels_cover > usize::MAX as u64 {
        usize::MAX
    } else {
        levels_cover as usize
    }
};

/// The bitset, over words it does not own.
pub(crate) struct Levels {
    words: NonNull<u64>,
    /// Start of each level in `words`, bottom first.
    starts: [usize; MAX_LEVELS],
    depth: usize,
    bits: usize,
}

impl Levels {
    /// A bitset of `bits` clear bits over `words`.
    ///
    /// # Safety
    ///
    /// `words` points to [`storage_words`]`(bits)` writable, aligned `u64`s that nothing
    /// else uses while the bitset lives. `bits <= MAX_BITS`.
    pub(crate) unsafe fn new(words: NonNull<u64>, bits: usize) -> Self {
        debug_assert!(bits <= MAX_BITS);
        let (counts, levels) = level_words(bits);
        let mut starts = [0; MAX_LEVELS];
        for level in 1..levels {
            starts[level] = starts[level - 1] + counts[level - 1];
        }
        let total = storage_words(bits);
        // SAFETY: the caller provides `total` writable words.
        unsafe { words.as_ptr().write_bytes(0, total) };
        Self {
            words,
            starts,
            depth: levels,
            bits,
        }
    }

    #[inline]
    fn word(&self, level: usize, index: usize) -> u64 {
        // SAFETY: callers stay within the level's words, which lie in the storage.
        unsafe { self.words.as_ptr().add(self.starts[level] + index).read() }
    }

    #[inline]
    fn word_mut(&mut self, level: usize, index: usize) -> &mut u64 {
        // SAFETY: as in `word`; `&mut self` makes the access exclusive.
        unsafe { &mut *self.words.as_ptr().add(self.starts[level] + index) }
    }

    /// Whether bit `index` is set.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> bool {
        self.word(0, index / 64) & (1 << (index % 64)) != 0
    }

    /// The first set bit: one word per level, from the top down.
    #[inline]
    pub(crate) fn first_set(&self) -> Option<usize> {
        let top = self.depth - 1;
        if self.word(top, 0) == 0 {
            return None;
        }
        let mut position = 0;
        for level in (0..=top).rev() {
            position = position * 64 + self.word(level, position).trailing_zeros() as usize;
        }
        Some(position)
    }

    /// Word `index` of level 0 (bit set: free).
    #[inline]
    pub(crate) fn leaf(&self, index: usize) -> u64 {
        self.word(0, index)
    }

    /// Sets or clears one bit, keeping the summaries exact.
    #[inline]
    pub(crate) fn assign_one(&mut self, index: usize, value: bool) {
        self.assign_in_word(index / 64, 1 << (index % 64), value);
    }

    /// Sets or clears the bits of `mask` in word `word_index` of level 0, keeping the
    /// summaries exact.
    #[inline]
    fn assign_in_word(&mut self, word_index: usize, mask: u64, value: bool) {
        let word = self.word_mut(0, word_index);
        let before = *word;
        *word = if value { before | mask } else { before & !mask };
        if (before == 0) != (*word == 0) {
            self.propagate(0, word_index, value);
        }
    }

    /// The first set bit at or after `from`.
    #[inline]
    pub(crate) fn next_set(&self, from: usize) -> Option<usize> {
        if from >= self.bits {
            return None;
        }
        let top = self.depth - 1;
        let mut level = 0;
        let mut position = from;
        // Climb until a word has a set bit at or after `position`.
        loop {
            let word_index = position / 64;
            let bits_here = if level == 0 {
                self.bits
            } else {
                self.level_len(level - 1)
            };
            if position < bits_here {
                let masked = self.word(level, word_index) & (u64::MAX << (position % 64));
                if masked != 0 {
                    position = word_index * 64 + masked.trailing_zeros() as usize;
                    break;
                }
            }
            if level == top {
                return None;
            }
            level += 1;
            position = word_index + 1;
        }
        // Descend to the first set bit under it.
        while level > 0 {
            level -= 1;
            position = position * 64 + self.word(level, position).trailing_zeros() as usize;
        }
        Some(position)
    }

    /// Words at `level`.
    fn level_len(&self, level: usize) -> usize {
        let end = if level + 1 < self.depth {
            self.starts[level + 1]
        } else {
            storage_words(self.bits)
        };
        end - self.starts[level]
    }

    /// The first bit in `start..end` that is set (`set`) or clear (`!set`), a word at a
    /// time.
    #[inline]
    fn first_in(&self, start: usize, end: usize, set: bool) -> Option<usize> {
        let mut position = start;
        while position < end {
            let word_index = position / 64;
            let offset = position % 64;
            let span = (64 - offset).min(end - position);
            let word = self.word(0, word_index);
            let wanted = if set { word } else { !word } & span_mask(offset, span);
            if wanted != 0 {
                return Some(word_index * 64 + wanted.trailing_zeros() as usize);
            }
            position += span;
        }
        None
    }

    /// The first clear bit in `start..end`.
    #[inline]
    pub(crate) fn first_clear_in(&self, start: usize, end: usize) -> Option<usize> {
        self.first_in(start, end, false)
    }

    /// Whether every bit in `start..end` is set.
    #[inline]
    pub(crate) fn all_set(&self, start: usize, end: usize) -> bool {
        self.first_in(start, end, false).is_none()
    }

    /// Whether every bit in `start..end` is clear.
    #[cfg_attr(not(any(test, feature = "checked")), allow(dead_code))]
    pub(crate) fn all_clear(&self, start: usize, end: usize) -> bool {
        self.first_in(start, end, true).is_none()
    }

    /// Sets (`value`) or clears every bit in `start..end`, keeping the summaries exact.
    #[inline]
    pub(crate) fn assign(&mut self, start: usize, end: usize, value: bool) {
        debug_assert!(start <= end && end <= self.bits);
        let offset = start % 64;
        if end - start <= 64 - offset {
            // Within one word (or empty): one masked store, not the loop over words.
            if end > start {
                self.assign_in_word(start / 64, span_mask(offset, end - start), value);
            }
        } else {
            // Across words: out of line.
            self.assign_at(0, start, end, value);
        }
    }

    /// Sets or clears bits `start..end` of `level` and brings the summaries above up to
    /// date: the words the range covers whole are filled, and their summary bits assigned
    /// as one range a level up; the partial words at either end go a bit at a time.
    #[inline(never)]
    fn assign_at(&mut self, level: usize, start: usize, end: usize, value: bool) {
        let whole_start = start.div_ceil(64);
        let whole_end = end / 64;
        if whole_start >= whole_end {
            self.assign_partial(level, start, end, value);
            return;
        }
        self.assign_partial(level, start, whole_start * 64, value);
        let fill = if value { u64::MAX } else { 0 };
        for index in whole_start..whole_end {
            *self.word_mut(level, index) = fill;
        }
        if level + 1 < self.depth {
            // Every word filled is non-empty (set) or empty (cleared) now.
            self.assign_at(level + 1, whole_start, whole_end, value);
        }
        self.assign_partial(level, whole_end * 64, end, value);
    }

    /// Sets or clears bits `start..end` of `level` a word at a time, each word's change
    /// carried to the summaries above as far as it reaches.
    #[inline]
    fn assign_partial(&mut self, level: usize, start: usize, end: usize, value: bool) {
        let mut position = start;
        while position < end {
            let word_index = position / 64;
            let offset = position % 64;
            let span = (64 - offset).min(end - position);
            let mask = span_mask(offset, span);
            let word = self.word_mut(level, word_index);
            let before = *word;
            *word = if value { before | mask } else { before & !mask };
            let after = *word;
            if (before == 0) != (after == 0) {
                self.propagate(level, word_index, after != 0);
            }
            position += span;
        }
    }

    /// Word `index` of `level` became empty (`false`) or non-empty (`true`): update the
    /// summary bits above it, as far as each change reaches.
    fn propagate(&mut self, level: usize, mut index: usize, mut non_empty: bool) {
        for level in level + 1..self.depth {
            let word = self.word_mut(level, index / 64);
            let before = *word;
            let bit = 1 << (index % 64);
            *word = if non_empty {
                before | bit
            } else {
                before & !bit
            };
            let after = *word;
            if (before == 0) == (after == 0) {
                return;
            }
            index /= 64;
            non_empty = after != 0;
        }
    }

    /// Checks every summary bit against the word below it and that no bit past the last
    /// is set; returns the number of set bits, or the level and word index at fault.
    pub(crate) fn check(&self) -> Result<usize, (usize, usize)> {
        let mut set = 0;
        for index in 0..self.level_len(0) {
            let word = self.word(0, index);
            let valid = self.bits.saturating_sub(index * 64).min(64);
            let past = if valid == 64 { 0 } else { u64::MAX << valid };
            if word & past != 0 {
                return Err((0, index));
            }
            set += word.count_ones() as usize;
        }
        for level in 1..self.depth {
            let below = self.level_len(level - 1);
            for index in 0..self.level_len(level) {
                let word = self.word(level, index);
                for bit in 0..64 {
                    let child = index * 64 + bit;
                    let non_empty = child < below && self.word(level - 1, child) != 0;
                    if (word >> bit) & 1 != u64::from(non_empty) {
                        return Err((level, index));
                    }
                }
            }
        }
        Ok(set)
    }

    /// Length of the longest run of set bits: O(n / 64) plus the runs inside words.
    pub(crate) fn longest_run(&self) -> usize {
        let mut best = 0;
        // Length of the run reaching the end of the previous word.
        let mut carried = 0;
        for word_index in 0..self.bits.div_ceil(64) {
            let valid = (self.bits - word_index * 64).min(64);
            let word = self.word(0, word_index);
            if word == span_mask(0, valid) {
                carried += valid;
                best = best.max(carried);
                continue;
            }
            best = best.max(carried + word.trailing_ones() as usize);
            best = best.max(longest_ones(word));
            carried = (word << (64 - valid)).leading_ones() as usize;
        }
        best
    }
}

/// The lowest start at or after `from` of `count` set bits of `map`'s first `bits`, bit by
/// bit (the oracle of the indexes' tests).
#[cfg(test)]
pub(crate) fn naive_first_fit(
    map: &Levels,
    bits: usize,
    count: usize,
    from: usize,
) -> Option<usize> {
    let mut run = 0;
    for bit in from..bits {
        run = if map.get(bit) { run + 1 } else { 0 };
        if run == count {
            return Some(bit + 1 - count);
        }
    }
    None
}

/// Sets bits `start..end` of `map` to `value` as the arena changes its free map: a stretch
/// of bits that all differ from `value` at a time, each then passed to `changed` (for the
/// tests of the indexes kept beside the map).
#[cfg(test)]
pub(crate) fn assign_stretches(
    map: &mut Levels,
    start: usize,
    end: usize,
    value: bool,
    mut changed: impl FnMut(&Levels, usize, usize),
) {
    let mut at = start;
    while at < end {
        if map.get(at) == value {
            at += 1;
            continue;
        }
        let stretch = (at..end).find(|&bit| map.get(bit) == value).unwrap_or(end);
        map.assign(at, stretch, value);
        changed(map, at, stretch);
        at = stretch;
    }
}

/// Length of the longest run of set bits in `word`, in a fixed number of steps whatever
/// the run: the starts of runs of 2, 4, … 32 bits by doubling, then the longest length
/// put together from those parts, the largest first.
#[inline]
pub(crate) fn longest_ones(word: u64) -> usize {
    if word == u64::MAX {
        return 64;
    }
    let mut parts = [word; 6];
    for part in 1..6 {
        parts[part] = parts[part - 1] & (parts[part - 1] >> (1 << (part - 1)));
    }
    // Starts of runs of `length` set bits (every bit, for length 0); `length` stays below 64.
    let mut starts = u64::MAX;
    let mut length = 0;
    for part in (0..6).rev() {
        let longer = starts & (parts[part] >> length);
        if longer != 0 {
            starts = longer;
            length += 1 << part;
        }
    }
    length
}

/// Bits of `word` at which `count` consecutive set bits start (within the word).
#[inline]
pub(crate) fn run_starts(word: u64, count: usize) -> u64 {
    let mut starts = word;
    let mut covered = 1;
    // Each step doubles (at most) the length every remaining bit vouches for.
    while covered < count && starts != 0 {
        let shift = covered.min(count - covered);
        starts &= starts >> shift;
        covered += shift;
    }
    starts
}

/// `span` set bits starting at bit `offset` (`offset + span <= 64`).
#[inline]
fn span_mask(offset: usize, span: usize) -> u64 {
    if span == 64 {
        u64::MAX
    } else {
        ((1u64 << span) - 1) << offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    struct Owned {
        _storage: Vec<u64>,
        levels: Levels,
    }

    fn bitset(bits: usize) -> Owned {
        let mut storage = std::vec![0u64; storage_words(bits)];
        let words = NonNull::new(storage.as_mut_ptr()).unwrap();
        // SAFETY: `storage` has the words and outlives `levels` (same struct, kept).
        let levels = unsafe { Levels::new(words, bits) };
        Owned {
            _storage: storage,
            levels,
        }
    }

    /// An empty range changes nothing and reads nothing past the storage, wherever it lies:
    /// up to `start == bits` at a word boundary, whose word would lie past level 0. (Under
    /// miri, which CI runs on these tests, a read there is an error; the storage is exactly
    /// `storage_words` long.)
    #[test]
    fn empty_ranges_touch_nothing() {
        for bits in [1, 63, 64, 65, 128, 64 * 64, 64 * 64 + 1] {
            let mut owned = bitset(bits);
            let levels = &mut owned.levels;
            levels.assign(bits / 3, bits / 2, true);
            for start in 0..=bits {
                levels.assign(start, start, true);
                levels.assign(start, start, false);
            }
            assert_eq!(levels.check(), Ok(bits / 2 - bits / 3), "{bits} bits");
            for bit in 0..bits {
                assert_eq!(
                    levels.get(bit),
                    (bits / 3..bits / 2).contains(&bit),
                    "{bits} bits"
                );
            }
        }
    }

    #[test]
    fn longest_ones_matches_a_bit_by_bit_count() {
        let naive = |word: u64| {
            let (mut best, mut run) = (0, 0);
            for bit in 0..64 {
                run = if word >> bit & 1 == 1 { run + 1 } else { 0 };
                best = best.max(run);
            }
            best
        };
        let mut words = std::vec![0, u64::MAX, 1, 1 << 63, u64::MAX - 1, u64::MAX >> 1];
        for length in 1..=64 {
            for offset in 0..=64 - length {
                let run = span_mask(offset, length);
                words.extend([
                    run,
                    run | 0xAAAA_AAAA_AAAA_AAAA,
                    run | 0x8421_8421_8421_8421,
                ]);
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..if cfg!(miri) { 200 } else { 10_000 } {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Denser words have longer runs.
            words.push(state | state.rotate_left(state as u32 % 64));
        }
        // Under miri (minutes for all of them) every 16th word.
        for word in words.into_iter().step_by(if cfg!(miri) { 16 } else { 1 }) {
            assert_eq!(longest_ones(word), naive(word), "{word:#066b}");
        }
    }

    #[test]
    fn level_sizes() {
        assert_eq!(level_words(1).1, 1);
        assert_eq!(level_words(64).1, 1);
        assert_eq!(level_words(65), ([2, 1, 0, 0, 0, 0], 2));
        assert_eq!(level_words(1 << 20), ([16384, 256, 4, 1, 0, 0], 4));
        assert_eq!(storage_words(1 << 20), 16384 + 256 + 4 + 1);
    }

    #[test]
    fn next_set_crosses_words_and_summary_words() {
        // The largest map has four levels; under miri it is left to native runs.
        let largest = if cfg!(miri) { 4097 } else { 300_000 };
        for bits in [1, 63, 64, 65, 4095, 4096, 4097, largest] {
            let mut set = bitset(bits);
            let b = &mut set.levels;
            assert_eq!(b.next_set(0), None);
            let last = bits - 1;
            b.assign(last, bits, true);
            assert_eq!(b.next_set(0), Some(last), "{bits}");
            assert_eq!(b.next_set(last), Some(last));
            if bits > 1 {
                b.assign(bits / 2, bits / 2 + 1, true);
                assert_eq!(b.next_set(0), Some(bits / 2));
                assert_eq!(
                    b.next_set(bits / 2 + 1),
                    Some(last).filter(|l| *l > bits / 2)
                );
            }
            b.assign(0, bits, false);
            assert_eq!(b.next_set(0), None);
            // Summaries went back to empty too.
            assert!((0..b.depth).all(|l| (0..b.level_len(l)).all(|w| b.word(l, w) == 0)));
        }
    }

    #[test]
    fn ranges_and_runs() {
        let mut set = bitset(200);
        let b = &mut set.levels;
        b.assign(10, 150, true);
        assert!(b.all_set(10, 150));
        assert_eq!(b.first_clear_in(10, 151), Some(150));
        assert_eq!(b.first_clear_in(5, 20), Some(5));
        assert_eq!(b.longest_run(), 140);
        b.assign(64, 70, false);
        assert_eq!(b.first_clear_in(10, 150), Some(64));
        assert!(b.all_clear(64, 70));
        assert!(!b.all_clear(63, 70));
        assert_eq!(b.longest_run(), 80); // 70..150
        b.assign(190, 200, true);
        assert_eq!(b.next_set(151), Some(190));
        assert_eq!(b.longest_run(), 80);
    }

    #[test]
    fn long_assigns_keep_every_level_exact() {
        // Three levels natively (whole summary words filled a level up); two under miri.
        let bits = if cfg!(miri) { 5000 } else { 300_000 };
        let mut set = bitset(bits);
        let b = &mut set.levels;
        let mut model = std::vec![false; bits];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for _ in 0..if cfg!(miri) { 8 } else { 300 } {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let start = (state % bits as u64) as usize;
            let end = (start + (state >> 24) as usize % (bits / 2)).min(bits);
            let value = state & (1 << 60) != 0;
            b.assign(start, end, value);
            model[start..end].fill(value);
            assert_eq!(b.check(), Ok(model.iter().filter(|f| **f).count()));
            let probe = (state >> 33) as usize % bits;
            assert_eq!(b.next_set(probe), (probe..bits).find(|&i| model[i]));
        }
    }

    #[test]
    fn longest_run_matches_a_naive_count() {
        let mut set = bitset(1000);
        let b = &mut set.levels;
        let mut state = 0x9E37_79B9_u64;
        for _ in 0..if cfg!(miri) { 30 } else { 200 } {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let start = (state % 1000) as usize;
            let end = (start + (state >> 20) as usize % 130).min(1000);
            b.assign(start, end, state & (1 << 40) != 0);
            assert!(b.check().is_ok());
            let mut naive = 0;
            let mut run = 0;
            for i in 0..1000 {
                run = if b.get(i) { run + 1 } else { 0 };
                naive = naive.max(run);
            }
            assert_eq!(b.longest_run(), naive);
        }
    }
}
