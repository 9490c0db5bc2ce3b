//! [`Heap`]: slab pools for small requests over a TLSF heap for everything else.

use core::alloc::Layout;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use heapkit_core::region::Span;
use heapkit_core::source::NoSource;
use heapkit_core::{AllocError, Backend, ConfigError, Corruption, Source, Stats};
use heapkit_pool::Pool;
use heapkit_tlsf::GrowingTlsf;

/// Requests up to this many bytes (aligned to at most [`SLAB_ALIGN`]) are served by slabs.
pub const SLAB_LIMIT: usize = 256;
/// Slab blocks are aligned to 16 bytes; a request for more goes to TLSF.
pub const SLAB_ALIGN: usize = 16;
/// Size classes: 16, 32, 48, ..., 256 bytes.
pub const CLASSES: usize = SLAB_LIMIT / SLAB_ALIGN;
/// Bytes of a slab chunk, taken from TLSF aligned to its size so that a block finds its
/// chunk by masking its address.
pub const CHUNK: usize = 64 * 1024;

/// The header at the start of each slab chunk; the chunk's blocks follow it.
struct Chunk {
    pool: Pool,
    /// Neighbours on the class's list of chunks with free blocks.
    next: *mut Chunk,
    prev: *mut Chunk,
    /// On that list: a full chunk is not.
    listed: bool,
    class: usize,
    /// Usable bytes of the TLSF block holding the chunk.
    held: usize,
}

const CHUNK_HEADER: usize = size_of::<Chunk>().next_multiple_of(SLAB_ALIGN);

/// What a chunk asks of TLSF: `CHUNK` bytes at a `CHUNK` boundary, less one TLSF granule.
/// TLSF puts a one-word header before each payload and sizes blocks in granules, so this
/// request makes the block exactly `CHUNK` bytes: the next chunk's header then ends at the
/// next boundary and chunks pack with no gap. Asking for the full `CHUNK` left a gap of
/// almost a whole chunk between neighbours (the lab found it: a 2 MiB heap ran out of
/// chunk-sized holes with 8% of it in use).
const CHUNK_REQUEST: usize = CHUNK - heapkit_tlsf::GRANULE;

const fn chunk_layout() -> Layout {
    match Layout::from_size_align(CHUNK_REQUEST, CHUNK) {
        Ok(layout) => layout,
        Err(_) => panic!("CHUNK is a power of two"),
    }
}

/// A general-purpose heap: size-classed slab pools for small requests, a TLSF heap for the
/// rest and for the slabs' own memory, and (with a [`Source`]) more memory from the
/// operating system on demand.
///
/// **Small requests** (at most [`SLAB_LIMIT`] = 256 bytes, alignment at most 16) go to one
/// of 16 classes, 16 bytes apart. Each class is a list of 64 KiB chunks carved from TLSF
/// at 64 KiB alignment; a chunk is a [`Pool`] of equal blocks with no per-block header,
/// and a freed block finds its chunk by masking its address. Allocate and free are O(1).
/// A class takes a new chunk when none of its chunks has a free block, and a chunk goes
/// back to TLSF as soon as its pool's count of free blocks equals its block count — except
/// the class's last chunk, kept so that a program allocating and freeing one object does
/// not take and return 64 KiB each time ([`trim`](Self::trim) returns those too).
///
/// **Everything else** goes to TLSF (O(1), good fit, in-place resize). Under a source,
/// TLSF takes chunks of at least the source's minimum size, or the request's, so large
/// requests are served from fresh OS memory.
///
/// **Fragmentation.** The worst internal waste of a slab block is 15 bytes (a 17-byte
/// request in a 32-byte block): at most 47% for 17 bytes, 6% above 240. Above 256 bytes it
/// is TLSF's: one 8-byte header plus rounding to 16, and at most 1/32 of the block above
/// 512 bytes. Each chunk spends 96 bytes on its header (about 0.15%).
pub struct Heap<S: Source = NoSource> {
    /// Per class, the first chunk with free blocks.
    classes: [*mut Chunk; CLASSES],
    tlsf: GrowingTlsf<S>,
    /// Usable bytes of the TLSF blocks held as chunks.
    chunk_bytes: usize,
    /// Usable bytes of slab blocks allocated, and free in held chunks.
    slab_in_use: usize,
    slab_free: usize,
}

// SAFETY: the heap exclusively owns its chunks and TLSF regions; nothing is tied to a
// thread, and the source moves with it.
unsafe impl<S: Source + Send> Send for Heap<S> {}

impl Heap<NoSource> {
    /// An empty heap over no memory yet: give it some with [`add_region`](Self::add_region).
    pub const fn new() -> Self {
        Self::with_source(NoSource)
    }

    /// A heap over one `'static` region.
    ///
    /// # Errors
    ///
    /// As for [`add_region`](Self::add_region).
    pub fn with_region(region: &'static mut [MaybeUninit<u8>]) -> Result<Self, ConfigError> {
        let mut heap = Self::new();
        let (start, len) = Span::raw_parts(region);
        // SAFETY: a `'static` exclusive borrow is ours to manage forever.
        unsafe { heap.add_region(start, len)? };
        Ok(heap)
    }
}

// SAFETY: a heap built by `add_region` manages only that region (and its own value).
unsafe impl heapkit_core::FromRegion for Heap<NoSource> {
    type Params = ();

    unsafe fn from_region(start: NonNull<u8>, len: usize, (): ()) -> Result<Self, ConfigError> {
        let mut heap = Self::new();
        // SAFETY: forwarded caller guarantees.
        unsafe { heap.add_region(start, len)? };
        Ok(heap)
    }
}

impl Default for Heap<NoSource> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Source> Heap<S> {
    /// An empty heap that takes its memory from `source` when it needs more.
    pub const fn with_source(source: S) -> Self {
        Self {
            classes: [ptr::null_mut(); CLASSES],
            tlsf: GrowingTlsf::new(source),
            chunk_bytes: 0,
            slab_in_use: 0,
            slab_free: 0,
        }
    }

    /// Adds `len` bytes at `start` to the heap's TLSF part.
    ///
    /// # Safety
    ///
    /// As for [`Tlsf::add_region`](heapkit_tlsf::Tlsf::add_region).
    ///
    /// # Errors
    ///
    /// As for `Tlsf::add_region`; the heap is then unchanged.
    pub unsafe fn add_region(&mut self, start: NonNull<u8>, len: usize) -> Result<(), ConfigError> {
        // SAFETY: forwarded caller guarantees.
        unsafe { self.tlsf.add_region(start, len) }
    }

    /// Returns every slab chunk with no live block to TLSF, including the one each class
    /// keeps, then every wholly free chunk TLSF took from the source back to the source
    /// ([`GrowingTlsf::trim`]). With no block live, the heap's stats are then as after its
    /// regions were added.
    pub fn trim(&mut self) {
        for class in 0..CLASSES {
            let mut chunk = self.classes[class];
            while !chunk.is_null() {
                // SAFETY: chunks on a class list are live chunk headers.
                let (next, empty) = unsafe {
                    let c = &*chunk;
                    (c.next, c.pool.free_blocks() == c.pool.total_blocks())
                };
                if empty {
                    // SAFETY: an empty chunk of this class, on its list.
                    unsafe { self.release(chunk) };
                }
                chunk = next;
            }
        }
        self.tlsf.trim();
    }

    /// Chunks held per class (walks the lists of chunks with free blocks; full chunks are
    /// not counted).
    pub fn chunks_with_free_blocks(&self) -> [usize; CLASSES] {
        core::array::from_fn(|class| {
            let mut count = 0;
            let mut chunk = self.classes[class];
            while !chunk.is_null() {
                count += 1;
                // SAFETY: chunks on a class list are live chunk headers.
                chunk = unsafe { (*chunk).next };
            }
            count
        })
    }

    /// The slab class of `layout`, if it is small.
    #[inline(always)]
    fn class_of(layout: Layout) -> Option<usize> {
        (layout.size() <= SLAB_LIMIT && layout.align() <= SLAB_ALIGN)
            .then(|| layout.size().saturating_sub(1) / SLAB_ALIGN)
    }

    #[inline(always)]
    const fn class_size(class: usize) -> usize {
        (class + 1) * SLAB_ALIGN
    }

    /// Puts `chunk` first on its class's list.
    ///
    /// # Safety
    ///
    /// `chunk` is a live chunk header of `class`, not on the list.
    unsafe fn list(&mut self, chunk: *mut Chunk, class: usize) {
        let head = self.classes[class];
        // SAFETY: per the caller; `head` is a live chunk header or null.
        unsafe {
            (*chunk).next = head;
            (*chunk).prev = ptr::null_mut();
            (*chunk).listed = true;
            if !head.is_null() {
                (*head).prev = chunk;
            }
        }
        self.classes[class] = chunk;
    }

    /// Takes `chunk` off its class's list.
    ///
    /// # Safety
    ///
    /// `chunk` is a live chunk header of `class`, on the list.
    unsafe fn unlist(&mut self, chunk: *mut Chunk, class: usize) {
        // SAFETY: per the caller; its list neighbours are live chunk headers.
        unsafe {
            let (next, prev) = ((*chunk).next, (*chunk).prev);
            if !next.is_null() {
                (*next).prev = prev;
            }
            if prev.is_null() {
                self.classes[class] = next;
            } else {
                (*prev).next = next;
            }
            (*chunk).listed = false;
        }
    }

    /// Takes a chunk for `class` from TLSF and lists it.
    #[cold]
    fn new_chunk(&mut self, class: usize) -> Result<*mut Chunk, AllocError> {
        let memory = self.tlsf.allocate(chunk_layout())?;
        let base = memory.cast::<u8>();
        // Blocks must stay below the next boundary, where masking would find another chunk.
        let usable = memory.len().min(CHUNK);
        // SAFETY: the chunk is ours: its blocks start after the header, inside it.
        let pool = unsafe {
            Pool::from_raw(
                base.add(CHUNK_HEADER),
                usable - CHUNK_HEADER,
                Self::class_size(class),
                SLAB_ALIGN,
            )
        };
        let Ok(pool) = pool else {
            // SAFETY: just allocated with this layout and not handed out.
            unsafe { self.tlsf.deallocate(base, chunk_layout()) };
            return Err(AllocError);
        };
        let chunk = base.cast::<Chunk>().as_ptr();
        self.chunk_bytes += memory.len();
        self.slab_free += pool.free_blocks() * Self::class_size(class);
        // SAFETY: the header fits at the chunk's start, which is aligned to `CHUNK`.
        unsafe {
            chunk.write(Chunk {
                pool,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                listed: false,
                class,
                held: memory.len(),
            });
            self.list(chunk, class);
        }
        Ok(chunk)
    }

    /// Returns an empty, listed chunk to TLSF.
    ///
    /// # Safety
    ///
    /// `chunk` is a live chunk header on its class's list, with no live block.
    unsafe fn release(&mut self, chunk: *mut Chunk) {
        // SAFETY: per the caller; the chunk was allocated from TLSF with `chunk_layout`.
        unsafe {
            let (class, held, blocks) =
                ((*chunk).class, (*chunk).held, (*chunk).pool.total_blocks());
            self.unlist(chunk, class);
            self.chunk_bytes -= held;
            self.slab_free -= blocks * Self::class_size(class);
            self.tlsf
                .deallocate(NonNull::new_unchecked(chunk.cast()), chunk_layout());
        }
    }

    #[inline]
    fn slab_allocate(&mut self, class: usize, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let mut chunk = self.classes[class];
        if chunk.is_null() {
            chunk = self.new_chunk(class)?;
        }
        // SAFETY: listed chunks are live chunk headers with at least one free block.
        unsafe {
            let c = &mut *chunk;
            let block = c.pool.allocate(layout)?;
            if c.pool.free_blocks() == 0 {
                self.unlist(chunk, class);
            }
            let size = Self::class_size(class);
            self.slab_in_use += size;
            self.slab_free -= size;
            Ok(block)
        }
    }

    /// The chunk header of a slab block.
    #[inline(always)]
    fn chunk_of(ptr: NonNull<u8>) -> *mut Chunk {
        ptr.as_ptr().map_addr(|addr| addr & !(CHUNK - 1)).cast()
    }

    /// With `checked`, panics unless `ptr` lies in a live slab chunk of `class`.
    #[inline(always)]
    #[cfg_attr(not(feature = "checked"), allow(clippy::unused_self))]
    fn check_slab_block(&self, ptr: NonNull<u8>, class: usize, operation: &str) {
        #[cfg(feature = "checked")]
        {
            let chunk = Self::chunk_of(ptr);
            let fail = |reason: &str| {
                heapkit_core::invalid_use("heapkit-segregated", operation, ptr.as_ptr(), reason)
            };
            let held = NonNull::new(chunk.cast::<u8>())
                .and_then(|start| self.tlsf.tlsf().allocated_size(start));
            if held.is_none_or(|held| held < CHUNK_REQUEST) {
                fail("its layout routes it to the slab classes, but it lies in no slab chunk");
            }
            // SAFETY: a TLSF block of chunk size starts at the chunk address: a chunk
            // header the heap wrote.
            let actual = unsafe { (*chunk).class };
            if actual != class {
                fail("its layout routes it to one size class, but its chunk is another's");
            }
        }
        #[cfg(not(feature = "checked"))]
        let _ = (ptr, class, operation);
    }
}

// SAFETY: small blocks come from the pools of chunks that TLSF handed out and that stay
// allocated while they hold a live block; the rest come from TLSF. Frees are routed by the
// layout with the rule used to allocate (a slab block's usable size is its class size, at
// most `SLAB_LIMIT`, so every fitting layout selects the same class).
unsafe impl<S: Source> Backend for Heap<S> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match Self::class_of(layout) {
            Some(class) => self.slab_allocate(class, layout),
            None => self.tlsf.allocate(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let Some(class) = Self::class_of(layout) else {
            // SAFETY: a large layout: the block came from TLSF.
            return unsafe { self.tlsf.deallocate(ptr, layout) };
        };
        self.check_slab_block(ptr, class, "deallocate");
        let chunk = Self::chunk_of(ptr);
        // SAFETY: a slab block's chunk header sits at its address rounded down to `CHUNK`
        // and stays live while the block is.
        unsafe {
            let c = &mut *chunk;
            c.pool.deallocate(ptr, layout);
            let size = Self::class_size(class);
            self.slab_in_use -= size;
            self.slab_free += size;
            if !c.listed {
                self.list(chunk, class);
            } else if c.pool.free_blocks() == c.pool.total_blocks()
                && !(c.next.is_null() && c.prev.is_null())
            {
                self.release(chunk);
            }
        }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (Self::class_of(old_layout), Self::class_of(new_layout)) {
            (None, None) => {
                // SAFETY: a large block: TLSF's.
                unsafe { self.tlsf.grow_in_place(ptr, old_layout, new_layout) }
            }
            (Some(old), Some(new)) if old == new => {
                self.check_slab_block(ptr, old, "grow");
                Ok(NonNull::slice_from_raw_parts(ptr, Self::class_size(old)))
            }
            _ => Err(AllocError),
        }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (Self::class_of(old_layout), Self::class_of(new_layout)) {
            (None, None) => {
                // SAFETY: a large block: TLSF's.
                unsafe { self.tlsf.shrink_in_place(ptr, old_layout, new_layout) }
            }
            (Some(old), Some(new)) if old == new => {
                self.check_slab_block(ptr, old, "shrink");
                Ok(NonNull::slice_from_raw_parts(ptr, Self::class_size(old)))
            }
            _ => Err(AllocError),
        }
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.tlsf.owns(ptr)
    }

    fn stats(&self) -> Stats {
        let tlsf = self.tlsf.stats();
        let in_use = tlsf.in_use - self.chunk_bytes + self.slab_in_use;
        let free = tlsf.free + self.slab_free;
        let largest_slab = (0..CLASSES)
            .rev()
            .find(|&class| !self.classes[class].is_null())
            .map_or(0, Self::class_size);
        Stats {
            capacity: tlsf.capacity,
            in_use,
            free,
            largest_free: tlsf.largest_free.max(largest_slab),
            metadata: tlsf.capacity - in_use - free,
        }
    }

    fn trim(&mut self) {
        Self::trim(self);
    }

    fn check(&self) -> Result<(), Corruption> {
        self.tlsf.check()?;
        let corrupt = |at: usize, what| Corruption::new("heapkit-segregated", at, what);
        // Chunks with free blocks are on their class's list; full chunks are on none. At
        // most `chunk_bytes / CHUNK_REQUEST` chunks exist (each holds at least that much),
        // which bounds each walk.
        let most = self.chunk_bytes / CHUNK_REQUEST;
        let mut listed_free = 0;
        for class in 0..CLASSES {
            let (mut chunk, mut prev) = (self.classes[class], ptr::null_mut());
            let mut seen = 0;
            while !chunk.is_null() {
                seen += 1;
                if seen > most || chunk.addr() % CHUNK != 0 {
                    return Err(corrupt(
                        chunk.addr(),
                        "class list holds a chunk the heap never took",
                    ));
                }
                // SAFETY: a chunk-aligned header on a class list, inside memory TLSF
                // handed out for chunks (bounded by the chunk count).
                let c = unsafe { &*chunk };
                if c.class != class || !c.listed || c.prev != prev {
                    return Err(corrupt(
                        chunk.addr(),
                        "chunk header disagrees with its class list",
                    )
                    .expected(class, c.class));
                }
                c.pool.check()?;
                if c.pool.free_blocks() == 0 {
                    return Err(corrupt(chunk.addr(), "a full chunk is on its class list"));
                }
                if c.pool.block_size() != Self::class_size(class) {
                    return Err(corrupt(
                        chunk.addr(),
                        "chunk's pool has another class's block size",
                    )
                    .expected(Self::class_size(class), c.pool.block_size()));
                }
                listed_free += c.pool.free_blocks() * Self::class_size(class);
                (prev, chunk) = (chunk, c.next);
            }
        }
        if listed_free != self.slab_free {
            return Err(corrupt(0, "free slab bytes differ from the chunks' pools")
                .expected(listed_free, self.slab_free));
        }
        Ok(())
    }
}

impl<S: Source> fmt::Debug for Heap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("stats", &self.stats())
            .field("chunks_with_free_blocks", &self.chunks_with_free_blocks())
            .finish_non_exhaustive()
    }
}
