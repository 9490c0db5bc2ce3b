//! Regions: their headers, where a region's parts go, and adding them.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

#[cfg(feature = "checked")]
use heapkit_core::bits::Bits;
use heapkit_core::region::{RegionHeader, Span};
use heapkit_core::ConfigError;

use super::block::Block;
use super::{FitHeap, GRANULE, WORD};
use crate::policy::Policy;

/// Bookkeeping at the start of each region.
pub(crate) struct Region {
    pub(crate) next: *mut Region,
    /// The memory given, header included.
    pub(crate) span: Span,
    /// The first block's header, and the end sentinel's: a zero-size block marked in use,
    /// so no block ever merges past the region's end.
    pub(crate) first: *mut u8,
    pub(crate) sentinel: *mut u8,
    /// One bit per granule from `first`: an allocated block's header starts there.
    #[cfg(feature = "checked")]
    pub(crate) starts: Bits,
}

// SAFETY: `span` is the memory given and `next` the link written at `add_region`.
unsafe impl RegionHeader for Region {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

impl<P: Policy, const DEFERRED: bool> FitHeap<P, DEFERRED> {
    /// Adds `len` bytes at `start` to the heap. The region can start at any address; it
    /// needs room for a header of four words (plus, with `checked`, one bit per granule),
    /// a sentinel word and one block of [`MIN_BLOCK`](Self::MIN_BLOCK) bytes.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the heap or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region reaches past the address space, overlaps one already
    /// added, or is too small; the heap is then unchanged.
    #[allow(clippy::cast_ptr_alignment)] // the offsets below align the header and the map
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        let too_small = |needed: usize| ConfigError::RegionTooSmall { needed, given: len };
        #[allow(unused_mut)]
        let mut meta = size_of::<Region>();
        #[cfg(feature = "checked")]
        let map_words = Bits::words_for(len / GRANULE + 1);
        #[cfg(feature = "checked")]
        {
            meta += map_words * WORD;
        }
        let least = meta + P::MIN_BLOCK + 2 * WORD + GRANULE;
        let header_at = span
            .align_up(0, align_of::<Region>())
            .ok_or(too_small(least))?;
        // The first block's payload (one word past its header) is granule-aligned.
        let first = span
            .align_up(header_at + meta + WORD, GRANULE)
            .map(|payload| payload - WORD)
            .ok_or(too_small(least))?;
        if len < first + P::MIN_BLOCK + WORD {
            return Err(too_small(least.max(first + P::MIN_BLOCK + WORD)));
        }
        // The sentinel sits a whole number of granules past `first`, its word inside.
        let sentinel = first + (len - WORD - first) / GRANULE * GRANULE;
        let base = start.as_ptr();
        // SAFETY: every offset is at most `len` (checked above), so the pointers stay in
        // the caller's region, which is ours from now on; the header and map are aligned.
        unsafe {
            let header = base.add(header_at).cast::<Region>();
            #[cfg(feature = "checked")]
            let starts = {
                let words = NonNull::new_unchecked(base.add(header_at + size_of::<Region>()))
                    .cast::<usize>();
                let mut starts = Bits::new(words, map_words * usize::BITS as usize);
                starts.clear_all();
                starts
            };
            header.write(Region {
                next: self.regions.head(),
                span,
                first: base.add(first),
                sentinel: base.add(sentinel),
                #[cfg(feature = "checked")]
                starts,
            });
            Block::at(base.add(sentinel)).set_header(super::PREV_FREE);
            let block = Block::at(base.add(first));
            let size = sentinel - first;
            block.set_free(size);
            self.index.insert(block, size, None);
            self.free += size - WORD;
            self.regions.push(header);
        }
        self.capacity += len;
        Ok(())
    }
}
