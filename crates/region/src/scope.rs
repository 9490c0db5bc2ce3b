//! Marks and scopes: giving back everything allocated after a point, in O(1) plus one
//! step per chunk passed over.

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use heapkit_core::Source;

use crate::bump::CRATE;
use crate::Bump;

/// A point in a region's history, from [`Bump::mark`]; [`Bump::release`] frees everything
/// allocated after it.
///
/// A mark is plain data: copying it, keeping it past a reset, or handing it to another
/// region is safe. A release checks the mark against the region's list of chunks and
/// refuses one that no longer names a point at or before the cursor.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// The chunk's header (`None`: the base). Dereferenced only once the region has
    /// checked that it is one of its live chunks.
    pub(crate) chunk: Option<NonNull<crate::bump::ChunkHeader>>,
    pub(crate) depth: usize,
    pub(crate) cursor: usize,
    /// The region's id (0 where it has none) and how many chunks it had given back when
    /// the mark was taken: while both still match, the chunk is this region's and live.
    pub(crate) region: u64,
    pub(crate) generation: u64,
}

impl<'a, S: Source> Bump<'a, S> {
    /// The current point, for a later [`release`](Self::release).
    pub fn mark(&self) -> Mark {
        self.position()
    }

    /// Frees every block allocated after `mark`; a block that grew in place after the mark
    /// goes back to its size then. The chunks passed over are kept for the allocations that
    /// follow ([`trim`](Self::trim) gives them back). O(1), whatever the number of blocks
    /// freed: the mark carries the region's id and its count of chunks given back, and
    /// while both match the mark's chunk is known to be this region's and live, so one
    /// read of its header checks it. (On a target without 64-bit atomics, where regions
    /// have no id, the check walks back one step per chunk passed over.)
    ///
    /// Taking `&mut self` ends every borrow of a value allocated through `&self`, so no
    /// reference into the freed blocks survives. (Pointers from the raw
    /// [`Backend`](heapkit_core::Backend) calls are the caller's to stop using.)
    ///
    /// A mark that is no longer at or before the cursor in this region (the region was
    /// already released or reset past it, or the mark belongs to another region) changes
    /// nothing; with the `checked` feature it panics, naming the mark's address. A mark
    /// names a chunk and a place in it, not a region: the start of any region that has no
    /// buffer is the same mark, so releasing to another such region's start mark frees
    /// everything, as releasing to this region's own would.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// let keep = *region.alloc(1u64);
    /// let mark = region.mark();
    /// for n in 0..10u64 {
    ///     region.alloc(n);
    /// }
    /// region.release(mark);
    /// assert_eq!(region.mark(), mark);
    /// assert_eq!(keep, 1);
    /// ```
    #[track_caller]
    pub fn release(&mut self, mark: Mark) {
        if !self.rewind(mark) {
            Self::stale(mark);
        }
    }

    #[cfg(feature = "checked")]
    #[cold]
    #[track_caller]
    fn stale(mark: Mark) {
        heapkit_core::invalid_use(
            CRATE,
            "release",
            core::ptr::without_provenance(mark.cursor),
            "mark is stale (the region was released or reset past it) or from another region",
        );
    }

    #[cfg(not(feature = "checked"))]
    #[inline]
    fn stale(mark: Mark) {
        let _ = (mark, CRATE);
    }

    /// Runs `f` on the region and frees everything it allocated when it returns (or
    /// unwinds). References to values allocated inside cannot leave it: the borrow checker
    /// ties them to the `&mut` that `f` is given.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// let total = region.scope(|scratch| {
    ///     let squares = scratch.alloc_slice_copy(&[1u32, 4, 9, 16]);
    ///     squares.iter().sum::<u32>()
    /// });
    /// assert_eq!(total, 30);
    /// assert_eq!(region.stats().in_use, 0);
    /// ```
    ///
    /// A value allocated in the scope cannot be returned from it:
    ///
    /// ```compile_fail
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// let escaped: &mut u32 = region.scope(|scratch| scratch.alloc(7u32));
    /// ```
    ///
    /// nor stored outside it:
    ///
    /// ```compile_fail
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// let mut outside: Option<&u32> = None;
    /// region.scope(|scratch| outside = Some(scratch.alloc(7u32)));
    /// ```
    pub fn scope<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let mut guard = self.guard();
        f(&mut guard)
    }

    /// A guard that frees everything allocated through it when dropped: a scope without a
    /// closure. It dereferences to the region.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// {
    ///     let scratch = region.guard();
    ///     let name = scratch.alloc_str("temporary");
    ///     assert_eq!(name, "temporary");
    /// }
    /// assert_eq!(region.stats().in_use, 0);
    /// ```
    ///
    /// Values allocated through the guard do not outlive it:
    ///
    /// ```compile_fail
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 1024];
    /// let mut region = Bump::new(&mut buffer);
    /// let value;
    /// {
    ///     let scratch = region.guard();
    ///     value = scratch.alloc(5u8);
    /// }
    /// assert_eq!(*value, 5);
    /// ```
    pub fn guard(&mut self) -> Guard<'_, 'a, S> {
        Guard {
            mark: self.mark(),
            region: self,
        }
    }
}

/// Two marks are equal when they name the same point (chunk and place in it), whatever the
/// region's count of chunks given back when each was taken.
impl PartialEq for Mark {
    fn eq(&self, other: &Self) -> bool {
        (self.chunk, self.depth, self.cursor) == (other.chunk, other.depth, other.cursor)
    }
}

impl Eq for Mark {}

// SAFETY: a mark is plain data: its chunk pointer is only compared, and dereferenced only
// by the region it names after checking it is one of that region's live chunks.
unsafe impl Send for Mark {}
// SAFETY: as above; `&Mark` gives nothing but copies of the data.
unsafe impl Sync for Mark {}

/// Frees everything allocated after its creation when dropped; see [`Bump::guard`].
#[derive(Debug)]
pub struct Guard<'g, 'a, S: Source> {
    region: &'g mut Bump<'a, S>,
    mark: Mark,
}

impl<'a, S: Source> Deref for Guard<'_, 'a, S> {
    type Target = Bump<'a, S>;

    fn deref(&self) -> &Self::Target {
        self.region
    }
}

impl<S: Source> DerefMut for Guard<'_, '_, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.region
    }
}

impl<S: Source> Drop for Guard<'_, '_, S> {
    fn drop(&mut self) {
        // A reset inside the scope already freed everything: the mark may no longer name
        // a point in the region, and there is nothing left to release. Never panic here
        // (the scope may be unwinding).
        let _ = self.region.rewind(self.mark);
    }
}
