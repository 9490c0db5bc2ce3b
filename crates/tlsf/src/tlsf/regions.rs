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
        // SAFETY: forwarded caller guarantees.
        unsafe { self.add_regions(start, len, usize::MAX) }.map(|_| ())
    }

    /// [`add_region`](Self::add_region) that installs at most `most` regions (a span
    /// past the largest block needs several) and returns the bytes used from `start`.
    ///
    /// # Safety
    ///
    /// As for `add_region`.
    pub(crate) unsafe fn add_regions(
        &mut self,
        start: NonNull<u8>,
        len: usize,
        most: usize,
    ) -> Result<usize, ConfigError> {
        let span = Span::of(start, len)?;
        self.regions.check_disjoint(&span)?;
        // A region past the largest block becomes several, each ending in its sentinel.
        let mut plan = Self::plan(span)?;
        let mut used = 0;
        for _ in 0..most {
            // SAFETY: the plan lies in the caller's region, which is ours from now on; its
            // offsets are at most the rest's length (`plan`), so the pointers stay inside.
            unsafe { self.install(start.as_ptr().add(used), &plan) };
            used += plan.span.len();
            let Some(rest) = span.skip(used).filter(|rest| !rest.is_empty()) else {
                break;
            };
            match Self::plan(rest) {
                Ok(next_plan) => plan = next_plan,
                // A tail too short for a block stays unused.
                Err(_) => break,
            }
        }
        Ok(used)
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
            self.make_top(Block::at(first), plan.sentinel - plan.first);
        }
        // SAFETY: the header was just written inside the region, with `next` the old head.
        unsafe { self.regions.push(header) };
        self.capacity += plan.span.len();
    }
}

impl<const FL: usize, const SL: usize> Tlsf<FL, SL> {
    /// Calls `each` with every region's start and whether the region is one free block,
    /// newest region first. O(regions).
    pub(crate) fn for_each_region(&self, mut each: impl FnMut(usize, bool)) {
        for region in self.regions.iter() {
            each(region.span.start(), Self::wholly_free(region));
        }
    }

    fn wholly_free(region: &Region) -> bool {
        // SAFETY: a region's first block header is valid while the region is ours.
        let header = unsafe { Block::at(region.first).header() };
        header & FREE != 0 && header & !FLAGS == region.sentinel.addr() - region.first.addr()
    }

    /// Takes back every region that is one free block and that `give_back` names (by its
    /// start, asked newest region first): unlinks its block and the region and lowers the
    /// capacity, in one pass over the regions. The memory is then no longer the
    /// allocator's.
    pub(crate) fn take_back(&mut self, mut give_back: impl FnMut(usize) -> bool) {
        let mut prev: *mut Region = core::ptr::null_mut();
        let mut next = self.regions.head();
        while !next.is_null() {
            // SAFETY: headers on the list are valid until unlinked below.
            let region = unsafe { &*next };
            let after = region.next;
            if give_back(region.span.start()) && Self::wholly_free(region) {
                let first = region.first;
                self.capacity -= region.span.len();
                // SAFETY: the region's one block is free, on its list; the
                // region leaves the list here, `prev`'s link (or the head) skipping it.
                // (The region's one block is the top block, or on its list.)
                unsafe {
                    if Block::at(first) == self.top {
                        self.top = Block::NONE;
                    } else {
                        self.unlink(Block::at(first));
                    }
                    if prev.is_null() {
                        self.regions.remove(next, |_, _| {});
                    } else {
                        (*prev).next = after;
                    }
                }
            } else {
                prev = next;
            }
            next = after;
        }
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
