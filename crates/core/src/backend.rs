//! The [`Backend`] trait every heapkit allocator implements, and its [`Stats`].

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::AllocError;

use crate::Corruption;

/// A single-owner memory allocator: the algorithm, without locks or interior mutability.
///
/// Every heapkit backend (pool, buddy, bitmap arena, TLSF) and every combinator implements
/// this trait. Callers normally reach a backend through an adapter — [`Local`](crate::Local)
/// for one thread, [`Locked`](crate::Locked) for many and for `#[global_allocator]` — which
/// turn it into an [`allocator_api2::alloc::Allocator`] and a [`core::alloc::GlobalAlloc`].
///
/// # Contract
///
/// *Currently allocated.* A block is currently allocated from the moment `allocate` (or a
/// successful `grow_in_place` / `shrink_in_place`) returns it until it is passed to
/// `deallocate` (or to a successful `grow_in_place` / `shrink_in_place`, which hands back the
/// same block under a new layout). Blocks must stay valid when the backend value is moved:
/// a backend manages memory outside itself.
///
/// *Fits.* A layout `L` fits a currently allocated block if `L.align()` is the alignment the
/// block was requested with and `L.size()` lies between the size requested and the length
/// of the slice the backend returned (the usable size). This is `allocator_api2`'s rule:
/// callers may free a block using any size they were given.
///
/// *Allocate.* On success the returned slice starts at an address aligned to
/// `layout.align()`, its length (the usable size) is at least `layout.size()`, and its
/// memory overlaps no other currently allocated block of this backend. On failure
/// ([`AllocError`]: out of memory, or an alignment the backend cannot honour) the backend
/// is left exactly as it was.
///
/// *Size 0.* The adapters answer zero-size requests themselves, so backends normally never
/// see one. A backend called with size 0 directly either fails or hands out a real block of
/// at least one byte (never a dangling pointer), which must then be freed like any other.
///
/// *In-place resizing.* `grow_in_place` and `shrink_in_place` either return the same
/// address with a usable size of at least (grow) or at least and ideally close to (shrink)
/// `new_layout.size()`, or fail and leave block and backend unchanged. Callers pass layouts
/// of equal alignment. The default implementations always fail, which is correct for a
/// backend that cannot resize; the adapters then move the block.
///
/// *Stats.* [`Stats`] describes the memory under management at the time of the call; see
/// its fields for the exact meaning and the identity they satisfy.
///
/// # Safety
///
/// Implementations must uphold the contract above: an adapter hands the returned memory to
/// safe code (`Vec`, `Box`, `HashMap`), so handing out overlapping, misaligned, too-short or
/// foreign memory is undefined behaviour in the caller. A backend's methods must not call
/// back into an adapter that holds it: the adapter lends out the backend exclusively for
/// the duration of each call.
pub unsafe trait Backend {
    /// Allocates a block that `layout` fits.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block can serve the request or its alignment is beyond
    /// what the backend supports. The backend is then unchanged.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// Returns a block to the backend.
    ///
    /// # Safety
    ///
    /// `ptr` must denote a block currently allocated by this backend, and `layout` must fit
    /// it. With the `checked` feature, backends detect violations they can see (double free,
    /// foreign pointer) and panic with the crate name, the operation and the address.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// Tries to enlarge a block without moving it.
    ///
    /// # Safety
    ///
    /// `ptr` must denote a block currently allocated by this backend, `old_layout` must fit
    /// it, `new_layout.size() >= old_layout.size()` and both layouts have the same alignment.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block cannot grow where it is; nothing has changed then.
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = (ptr, old_layout, new_layout);
        Err(AllocError)
    }

    /// Tries to make a block smaller without moving it, returning the tail to the backend.
    ///
    /// # Safety
    ///
    /// `ptr` must denote a block currently allocated by this backend, `old_layout` must fit
    /// it, `new_layout.size() <= old_layout.size()`, `new_layout.size() > 0`, and both
    /// layouts have the same alignment.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the backend cannot shrink this block in place; nothing has
    /// changed then, and the block is still valid at its old size.
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = (ptr, old_layout, new_layout);
        Err(AllocError)
    }

    /// The largest alignment this backend can serve at all. Combinators send requests with
    /// a larger alignment elsewhere, and route their frees the same way, so the answer
    /// must not change while blocks are live. The default claims no limit: requests are
    /// tried and fail with [`AllocError`] if they cannot be served.
    fn max_align(&self) -> usize {
        usize::MAX
    }

    /// Whether `ptr` lies in memory this backend manages. Combinators route frees by it.
    ///
    /// It answers for the address only: `true` does not mean a block starts there or is live.
    fn owns(&self, ptr: NonNull<u8>) -> bool;

    /// A snapshot of the memory under management.
    fn stats(&self) -> Stats;

    /// Gives memory that no live block uses back to where it came from (a growing heap's
    /// free chunks to its source, a region's kept chunks), beyond what the backend keeps in
    /// reserve on its own. The default does nothing: a backend over fixed regions has
    /// nowhere to give memory back to.
    fn trim(&mut self) {}

    /// Checks the backend's own invariants (free lists against bitmaps, block headers
    /// against their neighbours, counts against lists) and returns the first one broken.
    ///
    /// A heap corruption caught here is caught where it happens rather than when a later
    /// block overlaps a live one: the test kit calls it after every operation, and a
    /// program that suspects a stray write can call it around the code it suspects. It
    /// walks the whole heap, so it costs O(heap), not O(1).
    ///
    /// The default checks nothing; every heapkit backend and combinator overrides it
    /// (combinators check their children too).
    ///
    /// # Errors
    ///
    /// The first broken invariant found, with the address involved.
    fn check(&self) -> Result<(), Corruption> {
        Ok(())
    }
}

/// An allocator that can report on its memory: every heapkit adapter (`Local`, `Locked`,
/// and [`Shared`](crate::Shared) over an allocator that works through `&self`). Test kits
/// and the benchmark lab read allocators through it.
pub trait Inspect {
    /// A snapshot of the memory under management (see [`Stats`]).
    fn stats(&self) -> Stats;

    /// Whether `ptr` lies in memory this allocator manages.
    fn owns(&self, ptr: NonNull<u8>) -> bool;

    /// The allocator's own invariants: see [`Backend::check`]. The default checks nothing.
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    fn check(&self) -> Result<(), Corruption> {
        Ok(())
    }
}

/// What a backend's memory is doing, in bytes.
///
/// The fields satisfy `in_use + free + metadata == capacity` at every call, and
/// `largest_free <= free`. Freeing every block brings `in_use` back to 0 and `free` and
/// `largest_free` back to their values on an empty backend: the test kit checks both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Bytes of memory given to the backend (its regions, and any side buffers it was given
    /// for bookkeeping). Grows only when a region is added.
    pub capacity: usize,
    /// Usable bytes of the currently allocated blocks: the sum of the lengths the backend
    /// returned for them.
    pub in_use: usize,
    /// Bytes the backend could still hand out: the usable size of every free block.
    pub free: usize,
    /// Usable size of the largest free block. A request of this size may still fail where
    /// alignment or a size-class rounding gets in the way.
    pub largest_free: usize,
    /// Bytes that are neither in use nor free: bookkeeping (headers, bitmaps, list heads
    /// stored in the region) and slack no request can use (a region tail too short for a
    /// block, alignment padding).
    pub metadata: usize,
}

impl Stats {
    /// Stats of a backend holding `capacity` bytes, all of them free as one block.
    pub const fn all_free(capacity: usize) -> Self {
        Self {
            capacity,
            in_use: 0,
            free: capacity,
            largest_free: capacity,
            metadata: 0,
        }
    }

    /// Whether the fields satisfy the identities documented on [`Stats`].
    pub const fn is_consistent(&self) -> bool {
        let total = self.in_use.checked_add(self.free);
        let total = match total {
            Some(sum) => sum.checked_add(self.metadata),
            None => None,
        };
        matches!(total, Some(sum) if sum == self.capacity) && self.largest_free <= self.free
    }

    /// Field-wise sum, for a combinator reporting over its children.
    #[must_use]
    pub const fn combine(self, other: Self) -> Self {
        Self {
            capacity: self.capacity + other.capacity,
            in_use: self.in_use + other.in_use,
            free: self.free + other.free,
            largest_free: if self.largest_free > other.largest_free {
                self.largest_free
            } else {
                other.largest_free
            },
            metadata: self.metadata + other.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn consistency_identity() {
        assert!(Stats::all_free(4096).is_consistent());
        let used = Stats {
            capacity: 100,
            in_use: 40,
            free: 50,
            largest_free: 30,
            metadata: 10,
        };
        assert!(used.is_consistent());
        assert!(!Stats {
            metadata: 11,
            ..used
        }
        .is_consistent());
        assert!(!Stats {
            largest_free: 51,
            ..used
        }
        .is_consistent());
        let overflow = Stats {
            capacity: 0,
            in_use: usize::MAX,
            free: 1,
            largest_free: 0,
            metadata: 0,
        };
        assert!(!overflow.is_consistent());
    }

    #[test]
    fn combine_adds_and_keeps_largest() {
        let a = Stats::all_free(64);
        let b = Stats {
            capacity: 32,
            in_use: 16,
            free: 8,
            largest_free: 8,
            metadata: 8,
        };
        let sum = a.combine(b);
        assert_eq!(sum.capacity, 96);
        assert_eq!(sum.in_use, 16);
        assert_eq!(sum.free, 72);
        assert_eq!(sum.largest_free, 64);
        assert!(sum.is_consistent());
    }
}
