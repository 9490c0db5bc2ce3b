//! [`Source`]: where a growing allocator gets more memory when its regions run out.

use core::ptr::NonNull;

/// A supplier of large chunks of memory: the operating system, a parent allocator, a
/// reserved range of physical memory.
///
/// Backends that take regions (TLSF, buddy) are wrapped in a growing allocator that asks
/// its source for a chunk when a request does not fit, adds the chunk as a region, and
/// hands every chunk back with [`release`](Self::release) when it is dropped.
///
/// # Safety
///
/// A chunk returned by [`acquire`](Self::acquire) must be valid for reads and writes, used
/// by nothing else, and stay so until it is passed to [`release`](Self::release); its
/// length must be at least the length asked for, and its start aligned to
/// [`CHUNK_ALIGN`](Self::CHUNK_ALIGN). `acquire` and `release` must not call back into an
/// adapter (`Local`, `Locked`) holding the allocator that owns the source: the adapter
/// lends the allocator out exclusively for the whole call, as [`Backend`](crate::Backend)
/// says. (heapkit-region's `Bump`, used through `&self`, refuses such a call-back on its
/// own: its slow path fails while the source is out.)
pub unsafe trait Source {
    /// Alignment of every chunk's start.
    const CHUNK_ALIGN: usize;

    /// Whether a chunk handed back can be handed out again (by this source, or to the
    /// operating system). A source that cannot take memory back ([`StaticSource`]) says
    /// `false`, and growing allocators then keep their chunks rather than lose them.
    const RETURNS_MEMORY: bool = true;

    /// A chunk of at least `min_len` bytes, or `None` when the source is exhausted.
    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>>;

    /// Hands a chunk back.
    ///
    /// # Safety
    ///
    /// `chunk` must be exactly a slice `acquire` returned from this source, and nothing may
    /// use its memory any more.
    unsafe fn release(&mut self, chunk: NonNull<[u8]>);
}

/// The length of a chunk asked for `min_len` bytes from a source handing out at least
/// `min_chunk`, in whole pages of `page` bytes; `None` when it overflows.
#[cfg(any(feature = "std", all(feature = "mmap", unix, not(miri))))]
fn chunk_len(min_len: usize, min_chunk: usize, page: usize) -> Option<usize> {
    min_len.max(min_chunk).max(1).checked_next_multiple_of(page)
}

/// A source that cannot supply anything: a growing allocator over it never grows.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSource;

// SAFETY: it never returns a chunk.
unsafe impl Source for NoSource {
    const CHUNK_ALIGN: usize = 1;

    fn acquire(&mut self, _min_len: usize) -> Option<NonNull<[u8]>> {
        None
    }

    unsafe fn release(&mut self, _chunk: NonNull<[u8]>) {}
}

/// One static buffer, handed out whole on the first [`acquire`](Source::acquire) that
/// fits in it, and never again: the memory of a `#[global_allocator]` over a fixed array,
/// claimed on first need, so a `std` program whose runtime allocates before `main` works.
///
/// Make one with [`static_source!`](crate::static_source), which declares the buffer and
/// needs no `unsafe`:
///
/// ```
/// use heapkit_core::source::{Source, StaticSource};
///
/// fn sixty_four_kib() -> StaticSource {
///     heapkit_core::static_source!(64 * 1024)
/// }
///
/// let (mut first, mut second) = (sixty_four_kib(), sixty_four_kib());
/// let chunk = first.acquire(100).unwrap();
/// assert_eq!(chunk.len(), 64 * 1024);
/// // Claimed once, for good: another source over the same buffer gets nothing, and so
/// // does the first, asked again.
/// assert!(second.acquire(100).is_none());
/// assert!(first.acquire(100).is_none());
/// ```
#[derive(Debug)]
pub struct StaticSource {
    start: NonNull<u8>,
    len: usize,
    claimed: &'static crate::sync::AtomicBool,
}

// SAFETY: the buffer is `'static` and claimed through an atomic flag, so the source may be
// built in one thread and used from another (as a `#[global_allocator]`'s is).
unsafe impl Send for StaticSource {}

impl StaticSource {
    /// Alignment of the buffer [`static_source!`](crate::static_source) declares.
    pub const ALIGN: usize = 4096;

    /// A source over `len` bytes at `start`, claimed through `claimed`.
    ///
    /// # Safety
    ///
    /// `start..start + len` must be valid for reads and writes for the rest of the
    /// program, aligned to [`ALIGN`](Self::ALIGN), and reached by nothing but sources made
    /// with this same `claimed` flag, which must start `false`.
    pub const unsafe fn new(
        start: NonNull<u8>,
        len: usize,
        claimed: &'static crate::sync::AtomicBool,
    ) -> Self {
        Self {
            start,
            len,
            claimed,
        }
    }
}

// SAFETY: the buffer is handed out at most once over all sources sharing its flag (an
// atomic swap picks one winner, so no two callers ever hold it), whole, `ALIGN`-aligned by
// the constructor's contract, and valid forever.
unsafe impl Source for StaticSource {
    const CHUNK_ALIGN: usize = Self::ALIGN;
    const RETURNS_MEMORY: bool = false;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        // Exclusive ownership, not a handoff of data: nothing was written before the claim,
        // so the swap needs no ordering beyond its own atomicity.
        if min_len > self.len || self.claimed.swap(true, crate::sync::Ordering::Relaxed) {
            return None;
        }
        Some(NonNull::slice_from_raw_parts(self.start, self.len))
    }

    /// A static buffer has no one to go back to: it stays claimed, unused.
    unsafe fn release(&mut self, _chunk: NonNull<[u8]>) {}
}

/// A [`StaticSource`] over a buffer of `$len` bytes that this macro declares as a `static`
/// (in `.bss`, so it costs nothing in the binary); usable in a `static` initialiser, which
/// is how a `#[global_allocator]` gets memory before `main`:
///
/// ```ignore
/// #[global_allocator]
/// static HEAP: Locked<GrowingTlsf<StaticSource>> =
///     Locked::new(GrowingTlsf::new(static_source!(4 << 20)));
/// ```
///
/// (`heapkit-tlsf`'s example `global_static` is that program, built and run by CI.)
///
/// Each expansion declares its own buffer; a function that expands it and is called twice
/// returns two sources over one buffer, of which only the first to allocate gets it.
/// Not available under `cfg(loom)`, whose atomics cannot be `static`.
#[cfg(not(loom))]
#[macro_export]
macro_rules! static_source {
    ($len:expr) => {{
        #[repr(C, align(4096))]
        struct StaticSourceMemory([::core::mem::MaybeUninit<u8>; $len]);
        static mut STATIC_SOURCE_MEMORY: StaticSourceMemory =
            StaticSourceMemory([::core::mem::MaybeUninit::uninit(); $len]);
        static STATIC_SOURCE_CLAIMED: $crate::sync::AtomicBool =
            $crate::sync::AtomicBool::new(false);
        // SAFETY: the buffer is this expansion's own `static`, 4096-aligned, valid forever,
        // and reached only through sources sharing this expansion's flag. A `static` is
        // never null.
        unsafe {
            $crate::source::StaticSource::new(
                ::core::ptr::NonNull::new_unchecked(
                    ::core::ptr::addr_of_mut!(STATIC_SOURCE_MEMORY).cast::<u8>(),
                ),
                $len,
                &STATIC_SOURCE_CLAIMED,
            )
        }
    }};
}

#[cfg(feature = "std")]
pub use system::SystemSource;

#[cfg(feature = "std")]
mod system {
    extern crate std;

    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr::NonNull;
    use std::alloc::System;

    use super::{chunk_len, Source};

    /// Chunks of whole pages from the operating system, through [`std::alloc::System`]
    /// (on Linux glibc serves requests of 128 KiB and more with `mmap`, so chunks of that
    /// size are fresh mappings and `release` unmaps them).
    ///
    /// Every chunk is at least `min_chunk` bytes, so a growing allocator does not ask the
    /// OS once per small request. `SystemSource` never calls the global allocator, so it
    /// can feed a `#[global_allocator]`.
    #[derive(Clone, Copy, Debug)]
    pub struct SystemSource {
        min_chunk: usize,
    }

    impl SystemSource {
        /// Page size chunks are rounded to.
        pub const PAGE: usize = 4096;

        /// A source handing out chunks of at least `min_chunk` bytes (rounded up to pages).
        pub const fn new(min_chunk: usize) -> Self {
            Self { min_chunk }
        }
    }

    impl Default for SystemSource {
        /// 1 MiB chunks.
        fn default() -> Self {
            Self::new(1 << 20)
        }
    }

    // SAFETY: chunks are fresh allocations from `System` of at least the length asked for,
    // page aligned, returned to `System` with the same layout.
    unsafe impl Source for SystemSource {
        const CHUNK_ALIGN: usize = Self::PAGE;

        fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
            let len = chunk_len(min_len, self.min_chunk, Self::PAGE)?;
            let layout = Layout::from_size_align(len, Self::PAGE).ok()?;
            // SAFETY: `layout` has a non-zero size.
            let start = NonNull::new(unsafe { System.alloc(layout) })?;
            Some(NonNull::slice_from_raw_parts(start, len))
        }

        unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
            // SAFETY: `acquire` made this chunk with exactly this layout, which was valid then.
            let layout = unsafe { Layout::from_size_align_unchecked(chunk.len(), Self::PAGE) };
            // SAFETY: the caller hands back a chunk `acquire` returned, no longer in use.
            unsafe { System.dealloc(chunk.cast().as_ptr(), layout) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn chunks_are_page_aligned_rounded_and_writable() {
            let mut source = SystemSource::new(10_000);
            let chunk = source.acquire(100).unwrap();
            assert_eq!(chunk.len(), 12_288);
            assert_eq!(chunk.cast::<u8>().as_ptr().addr() % SystemSource::PAGE, 0);
            // SAFETY: the chunk is ours and writable.
            unsafe { chunk.cast::<u8>().as_ptr().write_bytes(0xA5, chunk.len()) };
            let big = source.acquire(50_000).unwrap();
            assert_eq!(big.len(), 53_248);
            // SAFETY: both came from this source and are no longer used.
            unsafe {
                source.release(chunk);
                source.release(big);
            }
            assert!(SystemSource::new(1).acquire(usize::MAX).is_none());
        }
    }
}

#[cfg(all(feature = "mmap", unix, not(miri)))]
pub use mmap::MmapSource;

#[cfg(all(feature = "mmap", unix, not(miri)))]
mod mmap {
    use core::ptr::{self, NonNull};

    use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

    use super::{chunk_len, Source};

    /// Chunks of fresh anonymous mappings straight from the kernel (`mmap`), unmapped on
    /// release: no C library allocator in between, so it can feed the process's own
    /// `malloc` (heapkit-malloc) without calling itself.
    ///
    /// Every chunk is at least `min_chunk` bytes, rounded up to whole pages.
    ///
    /// ```
    /// use heapkit_core::source::{MmapSource, Source};
    ///
    /// let mut source = MmapSource::new(1 << 20);
    /// let chunk = source.acquire(100).unwrap();
    /// assert_eq!(chunk.len(), 1 << 20);
    /// // SAFETY: the chunk came from this source and is no longer used.
    /// unsafe { source.release(chunk) };
    /// ```
    #[derive(Clone, Copy, Debug)]
    pub struct MmapSource {
        min_chunk: usize,
    }

    impl MmapSource {
        /// The page size chunks are rounded to (the smallest Linux uses; a larger page
        /// size still gives page-aligned mappings, which are aligned to this too).
        pub const PAGE: usize = 4096;

        /// A source handing out chunks of at least `min_chunk` bytes.
        pub const fn new(min_chunk: usize) -> Self {
            Self { min_chunk }
        }
    }

    // SAFETY: every chunk is a fresh private anonymous mapping, readable and writable, of
    // at least the length asked for, page aligned (so `PAGE` aligned), and unmapped only
    // when handed back whole.
    unsafe impl Source for MmapSource {
        const CHUNK_ALIGN: usize = Self::PAGE;

        fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
            let len = chunk_len(min_len, self.min_chunk, Self::PAGE)?;
            // A mapping larger than half the address space cannot exist; refusing it here
            // keeps `len` a valid slice length.
            if len > isize::MAX as usize {
                return None;
            }
            // SAFETY: a new anonymous mapping at an address the kernel picks touches no
            // existing memory.
            let start = unsafe {
                mmap_anonymous(
                    ptr::null_mut(),
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE,
                )
            }
            .ok()?;
            let start = NonNull::new(start.cast::<u8>())?;
            Some(NonNull::slice_from_raw_parts(start, len))
        }

        unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
            // SAFETY: per the caller the chunk is exactly a mapping `acquire` made and
            // nothing uses it any more.
            let unmapped =
                unsafe { munmap(chunk.cast::<core::ffi::c_void>().as_ptr(), chunk.len()) };
            // munmap of a whole mapping we made fails only on a broken caller contract.
            debug_assert!(unmapped.is_ok(), "heapkit-core: munmap failed");
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn chunks_are_fresh_zeroed_page_rounded_mappings() {
            let mut source = MmapSource::new(10_000);
            let chunk = source.acquire(100).unwrap();
            assert_eq!(chunk.len(), 12_288);
            assert_eq!(chunk.cast::<u8>().as_ptr().addr() % MmapSource::PAGE, 0);
            // SAFETY: the chunk is ours, readable and writable.
            unsafe {
                let bytes = chunk.cast::<u8>().as_ptr();
                assert!((0..chunk.len()).all(|i| *bytes.add(i) == 0));
                bytes.write_bytes(0xA5, chunk.len());
            }
            let big = source.acquire(50_000).unwrap();
            assert_eq!(big.len(), 53_248);
            // SAFETY: both came from this source and are no longer used.
            unsafe {
                source.release(chunk);
                source.release(big);
            }
            assert!(MmapSource::new(1).acquire(usize::MAX).is_none());
            assert!(MmapSource::new(1)
                .acquire(isize::MAX as usize + 1)
                .is_none());
        }
    }
}
