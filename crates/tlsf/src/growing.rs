//! [`GrowingTlsf`]: a TLSF heap that takes more memory from a [`Source`] when it runs out.

use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Source, Stats};

use crate::tlsf::{DEFAULT_FL, DEFAULT_SL};
use crate::Tlsf;

/// The header of each chunk taken from the source: chunks form a list for `Drop`.
struct Chunk {
    next: *mut Chunk,
    /// The chunk exactly as the source returned it.
    memory: NonNull<[u8]>,
    /// The start of the chunk's one region.
    region: usize,
    /// Bytes of the chunk outside its region: this header, its alignment, and a tail
    /// past the largest region (counted as metadata).
    overhead: usize,
    /// Marked for giving back, during [`GrowingTlsf::trim`] and the automatic give-back.
    releasing: bool,
}

/// A [`Tlsf`] that grows: when a request does not fit, it asks its [`Source`] for a chunk
/// large enough (at least the source's minimum chunk), adds it as a region and retries.
/// A free that leaves no block live gives every chunk but the largest back to the source;
/// [`trim`](Self::trim) gives back every wholly free chunk at any time, and dropping the
/// heap gives back the rest.
///
/// With `heapkit_core::source::SystemSource` (feature `std`) this is a
/// general-purpose heap that can back `#[global_allocator]` through
/// [`Locked`](heapkit_core::Locked); with a source over reserved physical memory it is a
/// kernel heap. Allocation stays O(1) except when the source is called.
pub struct GrowingTlsf<
    S: Source,
    const FL: usize = { DEFAULT_FL },
    const SL: usize = { DEFAULT_SL },
> {
    tlsf: Tlsf<FL, SL>,
    source: S,
    chunks: *mut Chunk,
    /// Bytes of the chunks' own headers (and their alignment), reported as metadata.
    chunk_overhead: usize,
    /// Blocks handed out and not yet freed: when it falls to 0 the free chunks go back.
    /// (The inner `Tlsf` keeps no running count; see its statistics.)
    live: usize,
}

// SAFETY: the heap exclusively owns its chunks; the source moves with it.
unsafe impl<S: Source + Send, const FL: usize, const SL: usize> Send for GrowingTlsf<S, FL, SL> {}

/// The constructor of the default classes, on that type alone so that
/// `GrowingTlsf::new(source)` needs no annotation; other parameters go through
/// [`with_classes`](GrowingTlsf::with_classes).
impl<S: Source> GrowingTlsf<S> {
    /// An empty heap that takes all its memory from `source`, on demand.
    pub const fn new(source: S) -> Self {
        Self::with_classes(source)
    }
}

impl<S: Source, const FL: usize, const SL: usize> GrowingTlsf<S, FL, SL> {
    /// An empty heap of any TLSF parameters that takes all its memory from `source`:
    /// `GrowingTlsf::<_, 20, 16>::with_classes(source)`.
    pub const fn with_classes(source: S) -> Self {
        Self {
            tlsf: Tlsf::with_classes(),
            source,
            chunks: ptr::null_mut(),
            chunk_overhead: 0,
            live: 0,
        }
    }

    /// The TLSF heap inside, read-only: for statistics and per-list counts.
    ///
    /// There is no `&mut` access: the inner heap's regions include the chunks this value
    /// returns to its source when dropped, so a `Tlsf` taken out of it (`mem::take`) would
    /// outlive its memory.
    ///
    /// ```compile_fail
    /// use heapkit_core::source::NoSource;
    /// use heapkit_tlsf::{GrowingTlsf, Tlsf};
    ///
    /// let mut heap: GrowingTlsf<NoSource> = GrowingTlsf::new(NoSource);
    /// let stolen: Tlsf = core::mem::take(heap.tlsf()); // error: behind a `&` reference
    /// ```
    pub fn tlsf(&self) -> &Tlsf<FL, SL> {
        &self.tlsf
    }

    /// Adds `len` bytes at `start` to the heap, beside the chunks it takes from its source.
    /// The region is never returned to the source.
    ///
    /// # Safety
    ///
    /// As for [`Tlsf::add_region`].
    ///
    /// # Errors
    ///
    /// As for `Tlsf::add_region`; the heap is then unchanged.
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.tlsf.add_region(start, len) }
    }

    /// Gives every chunk whose memory is all free back to the source, the reserve
    /// included (see the type's documentation). One pass over the chunks and one over the
    /// regions: O(chunks + regions).
    pub fn trim(&mut self) {
        self.give_back_free_chunks(false);
    }

    /// Gives the wholly free chunks back to the source; with `keep_one`, all but the
    /// largest of them. Chunks and regions are both listed newest first, and each chunk
    /// holds one region, so a walk of the regions meets the chunks' regions in the
    /// chunks' order (regions from `add_region` in between): the two lists are paired in
    /// one pass, with no search.
    fn give_back_free_chunks(&mut self, keep_one: bool) {
        if !S::RETURNS_MEMORY || self.chunks.is_null() {
            return;
        }
        // Which chunks are wholly free.
        let mut chunk = self.chunks;
        self.tlsf.for_each_region(|start, free| {
            // SAFETY: `chunk` is null or a live chunk header on the list.
            unsafe {
                if !chunk.is_null() && (*chunk).region == start {
                    (*chunk).releasing = free;
                    chunk = (*chunk).next;
                }
            }
        });
        if keep_one {
            let mut largest: *mut Chunk = ptr::null_mut();
            let mut chunk = self.chunks;
            while !chunk.is_null() {
                // SAFETY: live chunk headers on the list.
                unsafe {
                    if (*chunk).releasing
                        && (largest.is_null() || (*chunk).memory.len() > (*largest).memory.len())
                    {
                        largest = chunk;
                    }
                    chunk = (*chunk).next;
                }
            }
            if !largest.is_null() {
                // SAFETY: a live chunk header.
                unsafe { (*largest).releasing = false };
            }
        }
        // Their regions leave the allocator.
        let mut chunk = self.chunks;
        self.tlsf.take_back(|start| {
            // SAFETY: as above.
            unsafe {
                if !chunk.is_null() && (*chunk).region == start {
                    let releasing = (*chunk).releasing;
                    chunk = (*chunk).next;
                    releasing
                } else {
                    false
                }
            }
        });
        // Their memory goes back to the source.
        let mut prev: *mut Chunk = ptr::null_mut();
        let mut chunk = self.chunks;
        while !chunk.is_null() {
            // SAFETY: chunk headers on the list are live.
            let Chunk {
                next,
                memory,
                overhead,
                releasing,
                ..
            } = unsafe { chunk.read() };
            if releasing {
                if prev.is_null() {
                    self.chunks = next;
                } else {
                    // SAFETY: `prev` is a live chunk header on the list.
                    unsafe { (*prev).next = next };
                }
                self.chunk_overhead -= overhead;
                // SAFETY: the chunk's region is no longer the allocator's (its block was
                // wholly free, checked in the same call with no allocation between) and
                // the chunk is off the list: nothing refers to its memory any more.
                unsafe { self.source.release(memory) };
            } else {
                prev = chunk;
            }
            chunk = next;
        }
    }

    /// Takes a chunk that can serve `layout` from the source and adds it.
    #[cold]
    #[allow(clippy::cast_ptr_alignment)] // the chunk header is placed at `align_offset`
    fn grow(&mut self, layout: Layout) -> Result<(), AllocError> {
        let header = size_of::<Chunk>() + align_of::<Chunk>().saturating_sub(S::CHUNK_ALIGN);
        let needed = Tlsf::<FL, SL>::region_len_for(layout)
            .and_then(|len| len.checked_add(header))
            .ok_or(AllocError)?;
        let memory = self.source.acquire(needed).ok_or(AllocError)?;
        let start = memory.cast::<u8>().as_ptr();
        let offset = start.align_offset(align_of::<Chunk>());
        let region = start.wrapping_add(offset + size_of::<Chunk>());
        let region_len = memory.len() - offset - size_of::<Chunk>();
        // One region per chunk (past the largest block, the chunk's tail stays unused), so
        // the give-back pairs chunks with regions in one pass.
        // SAFETY: the source hands us `memory` for our exclusive use until we release it;
        // the region after the header lies inside it (`needed` covers both).
        let added = unsafe {
            self.tlsf
                .add_regions(NonNull::new_unchecked(region), region_len, 1)
        };
        let Ok(used) = added else {
            // SAFETY: nothing refers to the chunk: the region was not added.
            unsafe { self.source.release(memory) };
            return Err(AllocError);
        };
        let overhead = offset + size_of::<Chunk>() + (region_len - used);
        // SAFETY: the header's place is inside the chunk, aligned, and ours.
        unsafe {
            start.add(offset).cast::<Chunk>().write(Chunk {
                next: self.chunks,
                memory,
                region: region.addr(),
                overhead,
                releasing: false,
            });
        }
        self.chunks = start.wrapping_add(offset).cast();
        self.chunk_overhead += overhead;
        Ok(())
    }
}

impl<S: Source, const FL: usize, const SL: usize> Drop for GrowingTlsf<S, FL, SL> {
    fn drop(&mut self) {
        let mut chunk = self.chunks;
        while !chunk.is_null() {
            // SAFETY: chunk headers on the list are live; with the heap gone, nothing uses
            // the chunk any more (blocks cannot outlive their allocator's owner).
            unsafe {
                let Chunk { next, memory, .. } = chunk.read();
                self.source.release(memory);
                chunk = next;
            }
        }
    }
}

// SAFETY: every block comes from the inner `Tlsf`, which upholds the contract over the
// chunks; chunks stay valid until `drop`.
unsafe impl<S: Source, const FL: usize, const SL: usize> Backend for GrowingTlsf<S, FL, SL> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if let Ok(block) = self.tlsf.allocate(layout) {
            self.live += 1;
            return Ok(block);
        }
        self.grow(layout)?;
        let block = self.tlsf.allocate(layout)?;
        self.live += 1;
        Ok(block)
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.tlsf.deallocate(ptr, layout) };
        self.live -= 1;
        if self.live == 0 && !self.chunks.is_null() {
            self.give_back_free_chunks(true);
        }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.tlsf.grow_in_place(ptr, old_layout, new_layout) }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.tlsf.shrink_in_place(ptr, old_layout, new_layout) }
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.tlsf.owns(ptr)
    }

    fn stats(&self) -> Stats {
        let inner = self.tlsf.stats();
        Stats {
            capacity: inner.capacity + self.chunk_overhead,
            metadata: inner.metadata + self.chunk_overhead,
            ..inner
        }
    }

    fn check(&self) -> Result<(), Corruption> {
        self.tlsf.check()
    }

    fn trim(&mut self) {
        Self::trim(self);
    }
}

impl<S: Source + fmt::Debug, const FL: usize, const SL: usize> fmt::Debug
    for GrowingTlsf<S, FL, SL>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrowingTlsf")
            .field("tlsf", &self.tlsf)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}
