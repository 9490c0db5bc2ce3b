//! [`AtomicBitmap`]: single blocks from many threads, one atomic bit each.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use heapkit_core::region::Span;
use heapkit_core::sync::{ordering, AtomicTable, AtomicUsize, Ordering};
use heapkit_core::{AllocError, ConfigError, SharedBackend, Stats};

const WORD_BITS: usize = usize::BITS as usize;

/// Equal blocks handed out one at a time, lock-free, from one bit per block: for handles,
/// pages or slots shared by many threads.
///
/// Allocating clears the lowest set bit of a bitmap word with a compare-exchange; freeing
/// sets it again with `fetch_or`. Bit words are `usize`, so this works on every target with
/// pointer-sized atomics (32-bit ones included). A shared hint remembers the word that last
/// had a free block, so threads do not rescan full words from the start each time.
///
/// The bit words sit after the blocks in the region (one bit per block, reported as
/// metadata). Requests larger than one block, or aligned beyond the block size, fail.
///
/// ```
/// use core::mem::MaybeUninit;
/// use heapkit_bitmap_arena::AtomicBitmap;
/// use heapkit_core::Shared;
///
/// #[repr(align(4096))]
/// struct Pages([MaybeUninit<u8>; 17 * 4096]);
/// static mut PAGES: Pages = Pages([MaybeUninit::uninit(); 17 * 4096]);
/// // SAFETY: the only reference ever made to PAGES.
/// let pages = unsafe { &mut (*core::ptr::addr_of_mut!(PAGES)).0 };
/// let frames = AtomicBitmap::with_region(pages, 4096).unwrap();
/// // `Shared` makes it an `Allocator`, callable from every thread at once.
/// let frames: &'static Shared<AtomicBitmap> = Box::leak(Box::new(Shared::new(frames)));
/// assert_eq!(frames.total_blocks(), 16); // the 17th page holds the bitmap's word
///
/// let threads: Vec<_> = (0..2)
///     .map(|_| std::thread::spawn(move || {
///         let page = allocator_api2::boxed::Box::new_in([7u8; 4096], frames);
///         page.iter().map(|b| usize::from(*b)).sum::<usize>()
///     }))
///     .collect();
/// for t in threads {
///     assert_eq!(t.join().unwrap(), 7 * 4096);
/// }
/// assert_eq!(frames.stats().in_use, 0);
/// ```
pub struct AtomicBitmap {
    base: NonNull<u8>,
    block_shift: u32,
    blocks: usize,
    /// Set bit: free block.
    words: AtomicTable<AtomicUsize>,
    /// A word that recently had a free block: where searches start.
    hint: AtomicUsize,
    capacity: usize,
}

// SAFETY: all shared state is atomic; the region is not tied to a thread.
unsafe impl Send for AtomicBitmap {}
// SAFETY: every method takes `&self` and touches shared state only atomically.
unsafe impl Sync for AtomicBitmap {}

impl AtomicBitmap {
    /// A lock-free single-block allocator of `block_size`-byte blocks over `region`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `block_size` is not a power of two, the region does not start
    /// at a multiple of it, or it cannot hold one block and its bit word.
    pub fn with_region(
        region: &'static mut [MaybeUninit<u8>],
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { Self::from_raw(start, len, block_size) }
    }

    /// As [`with_region`](Self::with_region), over raw memory.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the bitmap or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// As for [`with_region`](Self::with_region).
    pub unsafe fn from_raw(
        start: NonNull<u8>,
        len: usize,
        block_size: usize,
    ) -> Result<Self, ConfigError> {
        if !block_size.is_power_of_two() {
            return Err(ConfigError::NotPowerOfTwo {
                what: "block size",
                value: block_size,
            });
        }
        let span = Span::of(start, len)?;
        if span.start() % block_size != 0 {
            return Err(ConfigError::RegionMisaligned {
                address: span.start(),
                required: block_size,
            });
        }
        let word_bytes = size_of::<usize>();
        // n blocks need n * block_size bytes, then (after padding to a word boundary)
        // ceil(n / WORD_BITS) words; offsets, compared with the length before use.
        let words_at = |blocks: usize| span.align_up(blocks * block_size, word_bytes);
        let fits = |blocks: usize| {
            words_at(blocks).is_some_and(|at| len - at >= blocks.div_ceil(WORD_BITS) * word_bytes)
        };
        let mut blocks = len / block_size;
        while blocks > 0 && !fits(blocks) {
            blocks -= 1;
        }
        if blocks == 0 {
            return Err(ConfigError::RegionTooSmall {
                needed: block_size + 2 * word_bytes,
                given: len,
            });
        }
        let word_count = blocks.div_ceil(WORD_BITS);
        let words_offset = words_at(blocks).unwrap_or_default();
        // SAFETY: `fits(blocks)`: the words lie inside the region, at an address rounded up
        // to a word boundary; each is written below before any read.
        let words: AtomicTable<AtomicUsize> = unsafe {
            #[allow(clippy::cast_ptr_alignment)] // `words_at` rounds up to a word boundary
            let slots = start.add(words_offset).cast::<usize>();
            AtomicTable::new(slots, word_count, 0)
        };
        for word in 0..word_count {
            let valid = (blocks - word * WORD_BITS).min(WORD_BITS);
            let all_free = if valid == WORD_BITS {
                usize::MAX
            } else {
                (1 << valid) - 1
            };
            words.get(word).store(all_free, Ordering::Relaxed);
        }
        Ok(Self {
            base: start,
            block_shift: block_size.trailing_zeros(),
            blocks,
            words,
            hint: AtomicUsize::new(0),
            capacity: len,
        })
    }

    /// Size of every block.
    pub fn block_size(&self) -> usize {
        1 << self.block_shift
    }

    /// Number of blocks.
    pub fn total_blocks(&self) -> usize {
        self.blocks
    }

    /// Whether `ptr` lies inside the blocks.
    pub fn owns(&self, ptr: NonNull<u8>) -> bool {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        offset < self.blocks << self.block_shift
    }

    /// A snapshot of the blocks in use (a population count of the bitmap); exact when no
    /// other thread is allocating or freeing.
    pub fn stats(&self) -> Stats {
        let free_blocks: usize = (0..self.words.len())
            .map(|w| self.words.get(w).load(Ordering::Relaxed).count_ones() as usize)
            .sum();
        let block = self.block_size();
        let free = free_blocks * block;
        Stats {
            capacity: self.capacity,
            in_use: (self.blocks - free_blocks) * block,
            free,
            largest_free: if free > 0 { block } else { 0 },
            metadata: self.capacity - self.blocks * block,
        }
    }

    /// Takes one free block: clears the lowest set bit of the first word that has one,
    /// starting at the hint.
    fn take(&self) -> Option<usize> {
        let count = self.words.len();
        let first = self.hint.load(Ordering::Relaxed);
        let mut word_index = if first < count { first } else { 0 };
        for _ in 0..count {
            let word = self.words.get(word_index);
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let bit = bits & bits.wrapping_neg();
                // Acquire pairs with the Release in `give`: the previous owner's writes to
                // the block happen before ours.
                match word.compare_exchange_weak(
                    bits,
                    bits & !bit,
                    ordering("bitmap.take.word_cas", Ordering::Acquire),
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        if word_index != first {
                            self.hint.store(word_index, Ordering::Relaxed);
                        }
                        return Some(word_index * WORD_BITS + bit.trailing_zeros() as usize);
                    }
                    Err(current) => bits = current,
                }
            }
            word_index += 1;
            if word_index == count {
                word_index = 0;
            }
        }
        None
    }

    /// Returns block `index`; with `checked`, a block already free is reported.
    #[track_caller]
    fn give(&self, ptr: NonNull<u8>, layout: Layout, operation: &str) {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        let index = offset >> self.block_shift;
        let fail = |reason| {
            heapkit_core::invalid_use("heapkit-bitmap-arena", operation, ptr.as_ptr(), reason)
        };
        if cfg!(feature = "checked") {
            if !self.owns(ptr) {
                fail("pointer is outside this bitmap");
            }
            if offset % self.block_size() != 0 {
                fail("pointer is not the start of a block");
            }
            if layout.size() > self.block_size() || layout.align() > self.block_size() {
                fail("layout does not fit one block");
            }
        } else {
            debug_assert!(
                self.owns(ptr),
                "heapkit-bitmap-arena: {operation} of a foreign pointer"
            );
        }
        let bit = 1 << (index % WORD_BITS);
        let before = self.words.get(index / WORD_BITS).fetch_or(
            bit,
            ordering("bitmap.give.word_fetch_or", Ordering::Release),
        );
        if cfg!(feature = "checked") && before & bit != 0 {
            fail("block is already free");
        }
    }

    fn fits(&self, layout: Layout) -> bool {
        layout.size() <= self.block_size() && layout.align() <= self.block_size()
    }
}

// SAFETY: a block is handed out only by clearing its bit with a successful compare-exchange,
// which exactly one thread can do until the bit is set again by the block's free.
unsafe impl SharedBackend for AtomicBitmap {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !self.fits(layout) {
            return Err(AllocError);
        }
        let index = self.take().ok_or(AllocError)?;
        // SAFETY: `index < blocks`: bits past the last block are never set.
        let block = unsafe { self.base.add(index << self.block_shift) };
        Ok(NonNull::slice_from_raw_parts(block, self.block_size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.give(ptr, layout, "deallocate");
    }

    // Every block is the same size and alignment: a resize that fits stays, and moving
    // never helps one that does not.
    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.fits(new_layout) {
            Ok(NonNull::slice_from_raw_parts(ptr, self.block_size()))
        } else {
            Err(AllocError)
        }
    }

    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        _new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        Ok(NonNull::slice_from_raw_parts(ptr, self.block_size()))
    }

    fn max_align(&self) -> usize {
        self.block_size()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        AtomicBitmap::owns(self, ptr)
    }

    fn stats(&self) -> Stats {
        AtomicBitmap::stats(self)
    }
}

heapkit_core::backend_via_shared!(AtomicBitmap);

impl fmt::Debug for AtomicBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicBitmap")
            .field("base", &self.base)
            .field("block_size", &self.block_size())
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}
