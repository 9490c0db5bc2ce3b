//! Regions as address ranges that cannot wrap, and the arithmetic that lays a backend out
//! inside one.
//!
//! A region handed to a backend can sit anywhere, including the top of the address space
//! (external SDRAM at `0xC000_0000` on a Cortex-M7, a higher-half kernel heap). Adding an
//! offset to an address there wraps to zero, and in release builds a wrapped address is a
//! header written gigabytes away from the region. So backends never add to an address they
//! have not bounded: they check once, in [`Span::new`], that the region's end fits in a
//! `usize`, and from then on work in offsets from its start that they compare with its
//! length. Every offset `Span` returns is at most `len`, so `start + offset` cannot wrap.
//!
//! ```
//! use heapkit_core::region::Span;
//! use heapkit_core::ConfigError;
//!
//! // 4 KiB at the top of a 32-bit address space.
//! let top = Span::new(0xFFFF_E000, 0x1000).unwrap();
//! assert_eq!(top.end(), 0xFFFF_F000);
//! // The first 64-byte boundary after a 40-byte header, as an offset from the start.
//! assert_eq!(top.align_up(40, 64), Some(64));
//! // Nothing 8 KiB-aligned lies inside.
//! assert_eq!(top.align_up(1, 0x2000), None);
//! # #[cfg(target_pointer_width = "64")]
//! assert!(matches!(Span::new(usize::MAX - 10, 11), Err(ConfigError::RegionWraps { .. })));
//! ```

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::ConfigError;

/// `len` bytes at address `start`, where `start + len` fits in a `usize`.
///
/// That is Rust's own rule for allocations (a pointer one past the end must not wrap), so a
/// region ends at `usize::MAX` at the highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: usize,
    len: usize,
}

impl Span {
    /// The range `start..start + len`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::RegionWraps`] when `start + len` passes the end of the address space.
    pub const fn new(start: usize, len: usize) -> Result<Self, ConfigError> {
        if start.checked_add(len).is_some() {
            Ok(Self { start, len })
        } else {
            Err(ConfigError::RegionWraps {
                address: start,
                len,
            })
        }
    }

    /// The range of `len` bytes at `start`.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn of(start: NonNull<u8>, len: usize) -> Result<Self, ConfigError> {
        Self::new(start.as_ptr().addr(), len)
    }

    /// The start and length of a `'static` region, as the backends' raw constructors take
    /// them.
    pub fn raw_parts(region: &'static mut [MaybeUninit<u8>]) -> (NonNull<u8>, usize) {
        let len = region.len();
        (NonNull::from(region).cast(), len)
    }

    /// The first address.
    pub const fn start(&self) -> usize {
        self.start
    }

    /// The number of bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last address.
    pub const fn end(&self) -> usize {
        self.start + self.len
    }

    /// Whether `address` lies inside.
    pub const fn contains(&self, address: usize) -> bool {
        address.wrapping_sub(self.start) < self.len
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &Span) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && self.start < other.end()
            && other.start < self.end()
    }

    /// The smallest offset `at >= from` such that `start + at` is a multiple of `align`, if
    /// it is at most `len` (an offset of exactly `len` is the end of the region).
    ///
    /// `align` must be a power of two.
    pub const fn align_up(&self, from: usize, align: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two());
        if from > self.len {
            return None;
        }
        // `start + from <= end`, which fits.
        let pad = (self.start + from).wrapping_neg() & (align - 1);
        match from.checked_add(pad) {
            Some(at) if at <= self.len => Some(at),
            _ => None,
        }
    }

    /// The largest offset `at <= len` such that `start + at` is a multiple of `align`, if it
    /// is at least `from`.
    ///
    /// `align` must be a power of two.
    pub const fn align_down_end(&self, from: usize, align: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two());
        let excess = self.end() & (align - 1);
        if excess > self.len {
            return None;
        }
        let at = self.len - excess;
        if at < from {
            None
        } else {
            Some(at)
        }
    }

    /// The first `len` bytes (all of them if there are fewer).
    #[must_use]
    pub const fn truncate(&self, len: usize) -> Span {
        Span {
            start: self.start,
            len: if len < self.len { len } else { self.len },
        }
    }

    /// The part from offset `from` on, if `from <= len`.
    pub const fn skip(&self, from: usize) -> Option<Span> {
        if from > self.len {
            return None;
        }
        Some(Span {
            start: self.start + from,
            len: self.len - from,
        })
    }
}

/// The part of `len` bytes at `start` that begins at the first multiple of `align`: for
/// constructors over a lent byte buffer, which may start anywhere.
///
/// # Errors
///
/// [`ConfigError::RegionWraps`] for a range past the address space,
/// [`ConfigError::NotPowerOfTwo`] for such an `align`, [`ConfigError::RegionTooSmall`]
/// when no aligned byte lies inside.
pub fn aligned_part(
    start: NonNull<u8>,
    len: usize,
    align: usize,
) -> Result<(NonNull<u8>, usize), ConfigError> {
    let span = Span::of(start, len)?;
    if !align.is_power_of_two() {
        return Err(ConfigError::NotPowerOfTwo {
            what: "alignment",
            value: align,
        });
    }
    let at = span.align_up(0, align).ok_or(ConfigError::RegionTooSmall {
        needed: align,
        given: len,
    })?;
    // SAFETY: `at <= len`: the aligned start lies in the region or at its end.
    Ok((unsafe { start.add(at) }, len - at))
}

/// A header a backend keeps at the start of each region it manages, linked into a
/// [`RegionList`].
///
/// # Safety
///
/// `span` is the memory the region was given (header included) and never changes, and
/// `next` returns the link the header was written with (the list's head when it was
/// pushed), or the one [`RegionList::remove`]'s `relink` last wrote.
pub unsafe trait RegionHeader {
    /// The memory given for this region.
    fn span(&self) -> Span;

    /// The region pushed before this one, or null.
    fn next(&self) -> *mut Self;
}

/// The regions of a backend, newest first, linked through headers that live in the regions
/// themselves: the walk behind `owns`, the overlap check of `add_region` and finding the
/// region of a block, written once for TLSF and the buddy system.
pub struct RegionList<H> {
    head: *mut H,
}

impl<H> RegionList<H> {
    /// No regions.
    pub const fn new() -> Self {
        Self {
            head: core::ptr::null_mut(),
        }
    }

    /// The newest region's header, or null: what a new header's `next` is written with.
    pub const fn head(&self) -> *mut H {
        self.head
    }

    /// Unlinks `target`, so the list no longer reaches it. Links are the backend's own
    /// fields, so `relink(prev, next)` is called to write `next` as `prev`'s link, for the
    /// header `prev` in front of `target`. O(regions).
    ///
    /// # Safety
    ///
    /// `target` is on this list, and `relink` writes exactly that link (so `next()`
    /// returns it afterwards).
    pub unsafe fn remove(&mut self, target: *mut H, mut relink: impl FnMut(*mut H, *mut H))
    where
        H: RegionHeader,
    {
        // SAFETY: headers on the list are valid (`push`), and `target` is one of them.
        let after = unsafe { (*target).next() };
        if self.head == target {
            self.head = after;
            return;
        }
        let mut prev = self.head;
        while !prev.is_null() {
            // SAFETY: as above.
            let next = unsafe { (*prev).next() };
            if next == target {
                relink(prev, after);
                return;
            }
            prev = next;
        }
    }

    /// Links `header` in front.
    ///
    /// # Safety
    ///
    /// `header` points to a header written with `next == self.head()`, inside its region,
    /// valid and unmoved for as long as this list is used.
    pub unsafe fn push(&mut self, header: *mut H) {
        self.head = header;
    }
}

impl<H: RegionHeader> RegionList<H> {
    /// Every region's header, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &H> + '_ {
        let mut next = self.head;
        core::iter::from_fn(move || {
            // SAFETY: every header on the list is valid while the list is (`push`).
            let header = unsafe { next.as_ref()? };
            next = header.next();
            Some(header)
        })
    }

    /// The first header `pred` accepts, as the pointer it was pushed as (for a backend that
    /// writes through it).
    pub fn find(&self, mut pred: impl FnMut(&H) -> bool) -> Option<*mut H> {
        let mut next = self.head;
        while !next.is_null() {
            // SAFETY: every header on the list is valid while the list is (`push`).
            let header = unsafe { &*next };
            if pred(header) {
                return Some(next);
            }
            next = header.next();
        }
        None
    }

    /// The region whose memory holds `address`.
    pub fn containing(&self, address: usize) -> Option<&H> {
        self.iter().find(|header| header.span().contains(address))
    }

    /// Refuses a new region that shares a byte with one already added.
    ///
    /// # Errors
    ///
    /// [`ConfigError::RegionOverlaps`] naming the new region's start.
    pub fn check_disjoint(&self, span: &Span) -> Result<(), ConfigError> {
        if self.iter().any(|header| header.span().overlaps(span)) {
            Err(ConfigError::RegionOverlaps {
                address: span.start(),
            })
        } else {
            Ok(())
        }
    }
}

impl<H> Default for RegionList<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> core::fmt::Debug for RegionList<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegionList")
            .field("head", &self.head)
            .finish()
    }
}

/// Spans at the edges of the address space: run under miri for a 32-bit target too
/// (`cargo xtask miri-edges`).
#[cfg(test)]
mod address_edges {
    use super::*;

    const TOP: usize = usize::MAX;

    #[test]
    fn a_region_may_end_at_the_top_but_not_past_it() {
        assert_eq!(Span::new(TOP - 4096, 4096).unwrap().end(), TOP);
        assert_eq!(
            Span::new(TOP - 4095, 4096),
            Err(ConfigError::RegionWraps {
                address: TOP - 4095,
                len: 4096
            })
        );
        assert!(Span::new(TOP, 1).is_err());
        assert!(Span::new(0, TOP).is_ok());
        assert!(Span::new(1, TOP).is_err());
        assert!(Span::new(TOP, 0).is_ok());
    }

    #[test]
    fn alignment_near_the_top_stays_inside() {
        // TOP + 1 is a power of two: TOP - 0xFFF is 4 KiB-aligned.
        let top = Span::new(TOP - 0xFFF, 0xFFF).unwrap();
        assert_eq!(top.align_up(0, 16), Some(0));
        assert_eq!(top.align_up(1, 16), Some(16));
        assert_eq!(
            top.align_up(0xFF1, 16),
            None,
            "the next boundary is past the end"
        );
        assert_eq!(top.align_up(0xFF0, 16), Some(0xFF0));
        assert_eq!(top.align_up(0x1000, 1), None);
        assert_eq!(top.align_up(1, 0x2000), None);
        assert_eq!(top.align_down_end(0, 0x100), Some(0xF00));
        let odd = Span::new(TOP - 0x1002, 0x1000).unwrap();
        assert_eq!(odd.align_down_end(0, 16), Some(0x1000 - 0xD));
        assert_eq!(odd.align_up(0, 16), Some(3));
        assert_eq!(Span::new(3, 5).unwrap().align_down_end(0, 16), None);
        assert_eq!(Span::new(17, 20).unwrap().align_down_end(16, 16), None);
    }

    #[test]
    fn contains_and_overlaps_at_the_edges() {
        let top = Span::new(TOP - 16, 16).unwrap();
        assert!(top.contains(TOP - 1));
        assert!(!top.contains(TOP));
        assert!(!top.contains(TOP - 17));
        assert!(!top.contains(0), "no wrap to address 0");
        let below = Span::new(TOP - 32, 16).unwrap();
        assert!(!top.overlaps(&below) && !below.overlaps(&top), "neighbours");
        let straddle = Span::new(TOP - 21, 10).unwrap();
        assert!(top.overlaps(&straddle) && straddle.overlaps(&top));
        assert!(!Span::new(0, 0)
            .unwrap()
            .overlaps(&Span::new(0, 10).unwrap()));
        let a = Span::new(100, 50).unwrap();
        let b = Span::new(149, 1).unwrap();
        let c = Span::new(150, 1).unwrap();
        assert!(a.overlaps(&b) && !a.overlaps(&c) && !c.overlaps(&a));
        let inner = Span::new(110, 5).unwrap();
        assert!(a.overlaps(&inner) && inner.overlaps(&a));
    }

    #[test]
    fn skip_keeps_the_end() {
        let s = Span::new(TOP - 100, 100).unwrap();
        let rest = s.skip(40).unwrap();
        assert_eq!((rest.start(), rest.len()), (TOP - 60, 60));
        assert_eq!(rest.end(), TOP);
        assert_eq!(s.skip(100).unwrap().len(), 0);
        assert_eq!(s.skip(101), None);
    }

    struct Header {
        span: Span,
        next: *mut Header,
    }

    // SAFETY: the test writes each header with the list's head as `next`.
    unsafe impl RegionHeader for Header {
        fn span(&self) -> Span {
            self.span
        }
        fn next(&self) -> *mut Self {
            self.next
        }
    }

    #[test]
    fn region_list_walks_newest_first_and_refuses_overlaps() {
        let mut list = RegionList::<Header>::new();
        assert!(list.iter().next().is_none());
        let mut first = Header {
            span: Span::new(0x1000, 0x100).unwrap(),
            next: list.head(),
        };
        // SAFETY: `first` outlives the list's use, written with the old head.
        unsafe { list.push(core::ptr::addr_of_mut!(first)) };
        let mut second = Header {
            span: Span::new(0x1100, 0x100).unwrap(),
            next: list.head(),
        };
        // SAFETY: as above.
        unsafe { list.push(core::ptr::addr_of_mut!(second)) };
        let starts: [usize; 2] = core::array::from_fn(|i| list.iter().nth(i).unwrap().span.start());
        assert_eq!(starts, [0x1100, 0x1000]);
        assert_eq!(list.containing(0x10ff).unwrap().span.start(), 0x1000);
        assert!(list.containing(0x1200).is_none());
        assert_eq!(
            list.find(|h| h.span.start() == 0x1000),
            Some(core::ptr::addr_of_mut!(first))
        );
        assert_eq!(
            list.check_disjoint(&Span::new(0x10f0, 0x20).unwrap()),
            Err(ConfigError::RegionOverlaps { address: 0x10f0 })
        );
        assert_eq!(
            list.check_disjoint(&Span::new(0x1200, 0x20).unwrap()),
            Ok(())
        );
    }
}
