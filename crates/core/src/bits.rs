//! [`Bits`]: a fixed-size set of bits over words an allocator keeps in memory it manages
//! (after its blocks, in a region header), the one bit map behind the pool's and TLSF's
//! `checked` maps and the buddy system's per-order maps.
//!
//! ```
//! use core::ptr::NonNull;
//! use heapkit_core::bits::Bits;
//!
//! let mut words = [usize::MAX; 2]; // whatever the memory held
//! let bits = 100;
//! // SAFETY: `words` has `Bits::words_for(100)` words and outlives `map`.
//! let mut map = unsafe { Bits::new(NonNull::from(&mut words).cast(), bits) };
//! map.clear_all();
//! map.set(3, true);
//! map.set(99, true);
//! assert!(map.get(3) && map.get(99) && !map.get(4));
//! assert_eq!(map.count_ones(), 2);
//! ```

use core::ptr::NonNull;

/// Bits per word.
const WORD_BITS: usize = usize::BITS as usize;

/// `len` bits over words the caller provides; bit `i` is bit `i % WORD_BITS` of word
/// `i / WORD_BITS`. Indexing past `len` panics, so a wrong index cannot touch memory
/// outside the map.
#[derive(Debug)]
pub struct Bits {
    words: NonNull<usize>,
    len: usize,
}

impl Bits {
    /// Words needed for `len` bits.
    pub const fn words_for(len: usize) -> usize {
        len.div_ceil(WORD_BITS)
    }

    /// A map of `len` bits over `words`, left as the memory holds them (see
    /// [`clear_all`](Self::clear_all)).
    ///
    /// # Safety
    ///
    /// `words` points to [`words_for`](Self::words_for)`(len)` aligned words, valid for
    /// reads and writes and used through this map only, for as long as it lives. Bits are
    /// read only after they were written (or [`clear_all`](Self::clear_all) ran).
    pub const unsafe fn new(words: NonNull<usize>, len: usize) -> Self {
        Self { words, len }
    }

    /// Number of bits.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no bits.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The word holding bit `index`, and the bit's mask in it.
    #[inline(always)]
    #[track_caller]
    fn locate(&self, index: usize) -> (*mut usize, usize) {
        assert!(index < self.len, "bit {index} of a {}-bit map", self.len);
        // `index < len`: the word is one of the map's (`new`).
        (
            self.words.as_ptr().wrapping_add(index / WORD_BITS),
            1 << (index % WORD_BITS),
        )
    }

    /// Bit `index`.
    #[inline]
    #[track_caller]
    pub fn get(&self, index: usize) -> bool {
        let (word, mask) = self.locate(index);
        // SAFETY: a word of the map (`locate`), initialised before it is read (`new`).
        unsafe { word.read() & mask != 0 }
    }

    /// Sets bit `index` to `value`.
    #[inline]
    #[track_caller]
    pub fn set(&mut self, index: usize, value: bool) {
        let (word, mask) = self.locate(index);
        // SAFETY: a word of the map (`locate`), ours to write.
        unsafe {
            let old = word.read();
            word.write(if value { old | mask } else { old & !mask });
        }
    }

    /// Bit `index`, without the bounds check: for a hot path whose index is in range by
    /// construction.
    ///
    /// # Safety
    ///
    /// `index < self.len()`.
    #[inline(always)]
    pub unsafe fn get_unchecked(&self, index: usize) -> bool {
        debug_assert!(index < self.len);
        // SAFETY: `index < len` (the caller): a word of the map.
        unsafe {
            self.words.as_ptr().add(index / WORD_BITS).read() & (1 << (index % WORD_BITS)) != 0
        }
    }

    /// Sets bit `index` to `value`, without the bounds check.
    ///
    /// # Safety
    ///
    /// `index < self.len()`.
    #[inline(always)]
    pub unsafe fn set_unchecked(&mut self, index: usize, value: bool) {
        debug_assert!(index < self.len);
        // SAFETY: `index < len` (the caller): a word of the map, ours to write.
        unsafe {
            let word = self.words.as_ptr().add(index / WORD_BITS);
            let mask = 1 << (index % WORD_BITS);
            word.write(if value {
                word.read() | mask
            } else {
                word.read() & !mask
            });
        }
    }

    /// Clears the word holding bit `index`: the bits sharing it start out clear (for maps
    /// initialised lazily, one word at a time as their blocks come into use).
    #[inline]
    #[track_caller]
    pub fn clear_word_of(&mut self, index: usize) {
        let (word, _) = self.locate(index);
        // SAFETY: a word of the map (`locate`), ours to write.
        unsafe { word.write(0) }
    }

    /// Clears every bit.
    pub fn clear_all(&mut self) {
        // SAFETY: the map's words (`new`), ours to write.
        unsafe {
            self.words
                .as_ptr()
                .write_bytes(0, Self::words_for(self.len))
        }
    }

    /// The first set bit at `from` or after, if any (every word must have been written).
    /// O(words scanned).
    pub fn next_one(&self, from: usize) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut word = from / WORD_BITS;
        // SAFETY: `from < len`: a word of the map, initialised (the caller's precondition).
        let mut bits = unsafe { self.words.as_ptr().add(word).read() } & (!0 << (from % WORD_BITS));
        loop {
            if bits != 0 {
                let index = word * WORD_BITS + bits.trailing_zeros() as usize;
                return (index < self.len).then_some(index);
            }
            word += 1;
            if word >= Self::words_for(self.len) {
                return None;
            }
            // SAFETY: `word < words_for(len)`: a word of the map, initialised.
            bits = unsafe { self.words.as_ptr().add(word).read() };
        }
    }

    /// Number of set bits (every word must have been written).
    pub fn count_ones(&self) -> usize {
        (0..Self::words_for(self.len))
            // SAFETY: the map's words, initialised (the caller's precondition).
            .map(|word| unsafe { self.words.as_ptr().add(word).read() }.count_ones() as usize)
            .sum()
    }
}

// SAFETY: the map owns its words exclusively (`new`); nothing ties them to a thread.
unsafe impl Send for Bits {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_across_words() {
        let mut words = [0usize; 3];
        let len = 2 * WORD_BITS + 5;
        // SAFETY: three words, enough for `len` bits, outliving the map.
        let mut map = unsafe { Bits::new(NonNull::from(&mut words).cast(), len) };
        for index in [0, WORD_BITS - 1, WORD_BITS, len - 1] {
            map.set(index, true);
            assert!(map.get(index));
        }
        assert_eq!(map.count_ones(), 4);
        map.set(WORD_BITS, false);
        assert!(!map.get(WORD_BITS) && map.get(WORD_BITS - 1));
        map.clear_word_of(1);
        assert!(!map.get(0) && map.get(len - 1));
        map.clear_all();
        assert_eq!(map.count_ones(), 0);
    }

    #[test]
    fn next_one_finds_each_set_bit_in_order_and_nothing_past_the_end() {
        let mut words = [0usize; 3];
        let len = 2 * WORD_BITS + 5;
        // SAFETY: three words, enough for `len` bits, outliving the map.
        let mut map = unsafe { Bits::new(NonNull::from(&mut words).cast(), len) };
        assert_eq!(map.next_one(0), None);
        let set = [3, WORD_BITS - 1, WORD_BITS + 7, len - 1];
        for index in set {
            map.set(index, true);
        }
        let (mut found, mut count, mut from) = ([0; 4], 0, 0);
        while let Some(index) = map.next_one(from) {
            found[count] = index;
            count += 1;
            from = index + 1;
        }
        assert_eq!((found, count), (set, 4));
        assert_eq!(map.next_one(WORD_BITS), Some(WORD_BITS + 7));
        assert_eq!(map.next_one(len), None);
        // A stray bit in the last word past `len` is not a bit of the map.
        words = [0, 0, 1 << 6];
        // SAFETY: as above.
        let map = unsafe { Bits::new(NonNull::from(&mut words).cast(), len) };
        assert_eq!(map.next_one(0), None);
    }

    #[test]
    #[should_panic = "bit 70 of a 70-bit map"]
    fn an_index_past_the_end_panics() {
        let mut words = [0usize; 2];
        // SAFETY: as above.
        let map = unsafe { Bits::new(NonNull::from(&mut words).cast(), 70) };
        let _ = map.get(70);
    }
}
