//! Regions: their headers, where a region's parts go (the plan), and adding them.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

#[cfg(feature = "checked")]
use heapkit_core::bits::Bits;
use heapkit_core::region::{RegionHeader, Span};
use heapkit_core::ConfigError;

use super::block::Block;
use super::{Tlsf, FLAGS, FREE, GRANULE, MIN_BLOCK, WORD};

/// Bookkeeping at the start of each region.
pub(super) struct Region {
    pub(super) next: *mut Region,
    /// The memory given, header included.
    pub(super) span: Span,
    /// The first block's header, and the end sentinel's: a zero-size block marked in use,
    /// so no block ever merges past the region's end.
    pub(super) first: *mut u8,
    pub(super) sentinel: *mut u8,
    /// One bit per granule from `first`: an allocated block's header starts there.
    #[cfg(feature = "checked")]
    pub(super) starts: Bits,
}

// SAFETY: `span` is the memory given and `next` the link written at `install`.
unsafe impl RegionHeader for Region {
    fn span(&self) -> Span {
        self.span
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// Adds `len` bytes at `start` to the allocator. The region can start at any address;
    /// it needs room for a header of a few words, a sentinel word and one block
    /// ([`MIN_BLOCK`]).
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes and used by nothing else for
    /// as long as the allocator or any block it handed out is in use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the region reaches past the address space, overlaps one already
    /// added, or is too small; the allocator is then unchanged.
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        // A region past the largest block becomes several, each ending in its sentinel.
        let mut plan = Self::plan(span)?;
        let mut used = 0;
        loop {
            // SAFETY: the plan lies in the caller's region, which is ours from now on; its
            // offsets are at most the rest's length (`plan`), so the pointers stay inside.
            unsafe { self.install(start.as_ptr().add(used), &plan) };
            used += plan.span.len();
            let Some(rest) = span.skip(used).filter(|rest| !rest.is_empty()) else {
                return Ok(());
            };
            match Self::plan(rest) {
                Ok(next_plan) => plan = next_plan,
                // A tail too short for a block stays unused.
                Err(_) => return Ok(()),
            }
        }
    }

    /// Where a region's header, bitmap, blocks and sentinel go within `span`, as offsets
    /// from its start, each at most its length (so adding one to the start cannot wrap);
    /// the region takes at most the bytes one largest block needs.
    pub(super) fn plan(span: Span) -> Result<RegionPlan, ConfigError> {
        let too_small = |needed: usize| ConfigError::RegionTooSmall {
            needed,
            given: span.len(),
        };
        // Sizes of the bookkeeping before the first block, excluding alignment padding:
        // the smallest region that could work, for the error message.
        #[allow(unused_mut)]
        let mut meta = size_of::<Region>();
        #[cfg(feature = "checked")]
        {
            let granules = span.len().min(Self::MAX_BLOCK) / GRANULE + 1;
            meta += granules.div_ceil(usize::BITS as usize) * WORD;
        }
        let least = meta + MIN_BLOCK + 2 * WORD;
        let header_at = span
            .align_up(0, align_of::<Region>())
            .ok_or(too_small(least))?;
        #[cfg(feature = "checked")]
        let starts_at = header_at + size_of::<Region>();
        // The first block's payload (one word past its header) is granule-aligned.
        let first = span
            .align_up(header_at + meta + WORD, GRANULE)
            .map(|payload| payload - WORD)
            .ok_or(too_small(least))?;
        // The sentinel is the last word-aligned header slot whose block boundary is a
        // granule past `first`'s: blocks are whole granules.
        let needed = first + MIN_BLOCK + WORD;
        if span.len() < needed {
            return Err(too_small(needed));
        }
        let last_sentinel = first + (span.len() - WORD - first) / GRANULE * GRANULE;
        // Lengths, not addresses, are compared: `first + MAX_BLOCK` may pass the top of
        // the address space for a region near it.
        let sentinel = if last_sentinel - first > Self::MAX_BLOCK {
            first + Self::MAX_BLOCK
        } else {
            last_sentinel
        };
        let len = if sentinel == last_sentinel {
            span.len()
        } else {
            sentinel + WORD
        };
        Ok(RegionPlan {
            span: span.truncate(len),
            header: header_at,
            first,
            sentinel,
            #[cfg(feature = "checked")]
            starts: starts_at,
        })
    }

    /// Writes a planned region's header and sentinel and frees its one block.
    ///
    /// # Safety
    ///
    /// `plan.span` is valid, unused and ours for good, and starts at `base`.
    #[allow(clippy::cast_ptr_alignment)] // `plan` aligned the header and the bitmap
    pub(super) unsafe fn install(&mut self, base: *mut u8, plan: &RegionPlan) {
        // SAFETY: every offset in the plan is at most its span's length: inside the memory.
        let (header, first, sentinel) = unsafe {
            (
                base.add(plan.header).cast::<Region>(),
                base.add(plan.first),
                base.add(plan.sentinel),
            )
        };
        #[cfg(feature = "checked")]
        // SAFETY: as above; the plan gave the map `(first - starts) / WORD` aligned words,
        // a bit for every granule from `first` to the sentinel.
        let starts = unsafe {
            let words = (plan.first - plan.starts) / WORD;
            let mut starts = Bits::new(
                NonNull::new_unchecked(base.add(plan.starts).cast::<usize>()),
                words * usize::BITS as usize,
            );
            starts.clear_all();
            starts
        };
        let region = Region {
            next: self.regions.head(),
            span: plan.span,
            first,
            sentinel,
            #[cfg(feature = "checked")]
            starts,
        };
        // SAFETY: per the caller; `plan` aligned the header and bitmap and placed the
        // first block and sentinel inside the region, `MIN_BLOCK` or more apart.
        unsafe {
            header.write(region);
            Block::at(sentinel).set_header(0);
            self.insert(Block::at(first), plan.sentinel - plan.first);
        }
        // SAFETY: the header was just written inside the region, with `next` the old head.
        unsafe { self.regions.push(header) };
        self.capacity += plan.span.len();
    }
}

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// Whether some region lies inside `span` and every region inside it is one free
    /// block. O(regions).
    pub(crate) fn all_free(&self, span: Span) -> bool {
        let mut any = false;
        for region in self.regions.iter() {
            if span.start() <= region.span.start() && region.span.end() <= span.end() {
                // SAFETY: a region's first block header is valid while the region is ours.
                let header = unsafe { Block::at(region.first).header() };
                let size = region.sentinel.addr() - region.first.addr();
                if header & FREE == 0 || header & !FLAGS != size {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    /// Takes back the regions lying inside `span` (a growing heap's chunk) if each is one
    /// free block: unlinks those blocks and the regions, lowers the capacity, and returns
    /// whether it did. The memory is then no longer the allocator's. O(regions).
    pub(crate) fn take_back_if_free(&mut self, span: Span) -> bool {
        if !self.all_free(span) {
            return false;
        }
        let inside = |region: &Region| {
            span.start() <= region.span.start() && region.span.end() <= span.end()
        };
        while let Some(header) = self.regions.find(|region| inside(region)) {
            // SAFETY: a header on the list, valid until it is unlinked below.
            let (first, size, len) = unsafe {
                let region = &*header;
                (
                    region.first,
                    region.sentinel.addr() - region.first.addr(),
                    region.span.len(),
                )
            };
            // SAFETY: the region's one block is free, of `size`, on its list; the region
            // is unlinked right after, with `relink` writing the link it reads.
            unsafe {
                self.unlink(Block::at(first), size);
                self.regions
                    .remove(header, |prev, next| (*prev).next = next);
            }
            self.capacity -= len;
        }
        true
    }
}

/// Where [`Tlsf::plan`] puts a region's parts.
/// A region's layout, as offsets from its start: each at most `len`.
pub(super) struct RegionPlan {
    /// The memory the region takes (a region past the largest block takes less than given).
    pub(super) span: Span,
    pub(super) header: usize,
    pub(super) first: usize,
    pub(super) sentinel: usize,
    #[cfg(feature = "checked")]
    pub(super) starts: usize,
}
