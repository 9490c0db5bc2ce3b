//! [`ChunkSource`]: a [`Source`] over a test's [`Regions`], with a fixed number of chunks,
//! so a growing allocator under test runs out at a known point and hands everything back.

use core::ptr::NonNull;

use heapkit_core::Source;

use crate::Regions;

/// `count` chunks of `chunk_len` bytes, each aligned to `ALIGN`, taken from a test's
/// [`Regions`] (which outlive the allocator, as in every test). A chunk handed back can be
/// handed out again; [`outstanding`](Self::outstanding) counts the ones not back.
#[derive(Debug)]
pub struct ChunkSource<const ALIGN: usize> {
    base: NonNull<u8>,
    chunk_len: usize,
    count: usize,
    /// Bit `i`: chunk `i` is handed out.
    taken: u64,
}

// SAFETY: the chunks are plain memory the source hands out; it holds no thread-bound state.
unsafe impl<const ALIGN: usize> Send for ChunkSource<ALIGN> {}

impl<const ALIGN: usize> ChunkSource<ALIGN> {
    /// `count` (at most 64) chunks of `chunk_len` bytes (a multiple of `ALIGN`).
    ///
    /// # Panics
    ///
    /// When `count` is 0 or above 64, or `chunk_len` is not a positive multiple of `ALIGN`.
    pub fn new(regions: &mut Regions, chunk_len: usize, count: usize) -> Self {
        assert!((1..=64).contains(&count), "1 to 64 chunks");
        assert!(
            chunk_len > 0 && chunk_len % ALIGN == 0,
            "chunks are whole alignments"
        );
        let region = regions.take(chunk_len * count, ALIGN);
        Self {
            base: region.cast(),
            chunk_len,
            count,
            taken: 0,
        }
    }

    /// Chunks handed out and not handed back.
    pub fn outstanding(&self) -> usize {
        self.taken.count_ones() as usize
    }
}

// SAFETY: chunks are disjoint `chunk_len`-byte pieces of a region the test keeps alive,
// aligned to `ALIGN` (the region is, and `chunk_len` is a multiple), each handed out until
// it is released.
unsafe impl<const ALIGN: usize> Source for ChunkSource<ALIGN> {
    const CHUNK_ALIGN: usize = ALIGN;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        if min_len > self.chunk_len {
            return None;
        }
        let index = (!self.taken).trailing_zeros() as usize;
        if index >= self.count {
            return None;
        }
        self.taken |= 1 << index;
        // SAFETY: chunk `index < count` lies inside the region.
        let start = unsafe { self.base.add(index * self.chunk_len) };
        Some(NonNull::slice_from_raw_parts(start, self.chunk_len))
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        let offset = chunk.cast::<u8>().as_ptr().addr() - self.base.as_ptr().addr();
        let index = offset / self.chunk_len;
        assert!(
            chunk.len() == self.chunk_len && offset % self.chunk_len == 0 && index < self.count,
            "released a chunk this source did not hand out"
        );
        assert!(
            self.taken & (1 << index) != 0,
            "chunk {index} released twice"
        );
        self.taken &= !(1 << index);
    }
}
