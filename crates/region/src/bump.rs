//! [`Bump`]: the region itself — chunks, the cursor, and the calls every other module of
//! this crate builds on.

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use heapkit_core::source::NoSource;
use heapkit_core::{AllocError, Backend, Corruption, Inspect, SharedBackend, Source, Stats};

/// Every block's size is rounded up to this, so the cursor is always a multiple of it:
/// a request aligned to at most `GRAIN` needs no alignment arithmetic at all, and a block
/// freed newest-first always meets the cursor (no padding hides between blocks).
pub(crate) const GRAIN: usize = 8;

pub(crate) const CRATE: &str = "heapkit-region";

/// The smallest chunk a growing region asks its source for.
const FIRST_CHUNK: usize = 4096;

/// Chunk lengths double up to this, then stay: a region that grew to gigabytes should not
/// ask for gigabytes more to serve one more small request.
const LARGEST_STEP: usize = 1 << 28;

/// The bookkeeping at the start of every chunk taken from a source: 6 words (48 bytes on
/// 64-bit targets), plus up to 7 bytes to align it when the source's chunks are not
/// 8-aligned.
#[repr(C)]
pub(crate) struct ChunkHeader {
    /// The chunk exactly as the source handed it out, for giving it back.
    chunk: NonNull<[u8]>,
    /// The chunk before, or `None` for the base (the buffer the region was made over, or
    /// nothing).
    prev: Option<NonNull<ChunkHeader>>,
    /// The chunk after: newer, or kept for reuse after a release.
    next: Option<NonNull<ChunkHeader>>,
    /// Position in the list: the base is 0.
    depth: usize,
    /// Where the cursor stood when the region moved on to the next chunk.
    stopped_at: usize,
}

const HEADER: usize = size_of::<ChunkHeader>();
const _: () = assert!(HEADER % GRAIN == 0 && core::mem::align_of::<ChunkHeader>() <= GRAIN);

/// A chunk of the list: `None` is the base.
type Chunk = Option<NonNull<ChunkHeader>>;

/// A fresh id for a region, never 0 and never repeated (a 64-bit count does not wrap).
/// Uniqueness needs only the increment's atomicity, so it is `Relaxed`.
#[cfg(all(target_has_atomic = "64", not(loom)))]
fn next_region_id() -> u64 {
    use heapkit_core::sync::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Without 64-bit atomics regions have no id; a release then walks the list to check a
/// mark.
#[cfg(not(all(target_has_atomic = "64", not(loom))))]
fn next_region_id() -> u64 {
    0
}

/// A bump region: memory handed out by moving a cursor, given back all at once
/// ([`reset`](Self::reset)), back to a [`Mark`](crate::Mark), at the end of a
/// [`scope`](Self::scope), or newest block first.
///
/// It runs over a buffer the caller lends it for `'a` ([`new`](Self::new): a stack array,
/// a `static`, a caller's `Vec`), over chunks from a [`Source`]
/// ([`with_source`](Self::with_source)), or over a buffer first and a source after
/// ([`with_buffer_and_source`](Self::with_buffer_and_source)).
///
/// **The cursor moves up.** Allocation rounds the cursor up to the alignment and adds the
/// size; a downward cursor (bumpalo's) saves an instruction when sizes are not known at
/// compile time, but then the newest block cannot grow without moving, and growing the
/// newest block in place is what makes a region an obstack: a `Vec` or `String` built
/// last in the region never copies while its chunk has room.
///
/// **Frees.** Freeing the newest block moves the cursor back over it; every other free is
/// a no-op, and its bytes come back at the next [`release`](Self::release) or
/// [`reset`](Self::reset). [`Stats::in_use`] therefore counts every byte below the cursor:
/// live blocks, blocks freed out of order, and alignment padding.
///
/// **Destructors never run**: [`alloc`](Self::alloc) refuses, at compile time, a type
/// that needs dropping (a region that forgets values would leak what they own).
///
/// `Bump` is `!Sync` (its cursor is a `Cell`) and `Send` when its source is.
pub struct Bump<'a, S: Source = NoSource> {
    /// The next free byte of the current chunk; always a multiple of [`GRAIN`].
    cursor: Cell<NonNull<u8>>,
    /// The end address of the current chunk's data.
    limit: Cell<usize>,
    current: Cell<Chunk>,
    /// The base's data: the buffer from its first [`GRAIN`]-aligned byte, or an empty
    /// range.
    base: NonNull<u8>,
    base_end: usize,
    /// The buffer's whole length, as lent.
    base_len: usize,
    base_stopped: Cell<usize>,
    /// This region's id among all regions of the program (0: none, on targets without
    /// 64-bit atomics), and how many chunks it has given back: together they tell a
    /// mark's chunk is still this region's, with no walk.
    id: u64,
    generation: Cell<u64>,
    /// The first chunk after the base.
    first: Cell<Chunk>,
    /// Taken out while a chunk is acquired, so a source that calls back into this region
    /// finds none and fails rather than aliasing it.
    source: Cell<Option<S>>,
    buffer: PhantomData<&'a mut [MaybeUninit<u8>]>,
}

// SAFETY: a `Bump` owns its chunks and borrows its buffer exclusively; nothing in it is
// shared with another value, so it may move to another thread with its source.
unsafe impl<S: Source + Send> Send for Bump<'_, S> {}

impl<'a> Bump<'a, NoSource> {
    /// A region over `buffer`, which it uses for `'a` and no longer; it never grows.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use heapkit_region::Bump;
    ///
    /// let mut buffer = [MaybeUninit::uninit(); 256];
    /// let region = Bump::new(&mut buffer);
    /// let point = region.alloc((3u32, 4u32));
    /// point.0 += 1;
    /// assert_eq!(*point, (4, 4));
    /// ```
    pub fn new(buffer: &'a mut [MaybeUninit<u8>]) -> Self {
        Self::with_buffer_and_source(buffer, NoSource)
    }
}

impl<S: Source> Bump<'static, S> {
    /// An empty region that takes chunks from `source` as it needs them, each at least
    /// twice the last (from 4 KiB, up to 256 MiB steps), and gives them back on
    /// [`reset`](Self::reset) (all but the largest), [`trim`](Self::trim) and drop.
    pub fn with_source(source: S) -> Self {
        Self::with_buffer_and_source(&mut [], source)
    }
}

impl<'a, S: Source> Bump<'a, S> {
    /// A region that uses `buffer` first and then takes chunks from `source`.
    pub fn with_buffer_and_source(buffer: &'a mut [MaybeUninit<u8>], source: S) -> Self {
        let len = buffer.len();
        let start = NonNull::from(buffer).cast::<u8>();
        let skip = start.as_ptr().addr().wrapping_neg() & (GRAIN - 1);
        // The buffer's end fits in a `usize`, like every live allocation's; rounding it
        // down to the grain keeps every byte of the room usable.
        let end = (start.as_ptr().addr() + len) & !(GRAIN - 1);
        let (base, base_end) = if skip < len && start.as_ptr().addr() + skip < end {
            // SAFETY: `skip < len`: the aligned start is inside the buffer.
            (unsafe { start.add(skip) }, end)
        } else {
            // An empty base on the grain, like every cursor (it is never dereferenced).
            // SAFETY: `GRAIN` is not zero.
            let empty = unsafe { NonNull::new_unchecked(core::ptr::without_provenance_mut(GRAIN)) };
            (empty, GRAIN)
        };
        Self {
            cursor: Cell::new(base),
            limit: Cell::new(base_end),
            current: Cell::new(None),
            base,
            base_end,
            base_len: len,
            base_stopped: Cell::new(base.as_ptr().addr()),
            first: Cell::new(None),
            source: Cell::new(Some(source)),
            buffer: PhantomData,
            id: next_region_id(),
            generation: Cell::new(0),
        }
    }

    /// `size` rounded up to the grain; `size` comes from a `Layout`, so this cannot
    /// overflow.
    #[inline(always)]
    pub(crate) const fn grain(size: usize) -> usize {
        (size + (GRAIN - 1)) & !(GRAIN - 1)
    }

    /// Allocates `size` bytes (a multiple of [`GRAIN`], from a `Layout` rounded up)
    /// aligned to `align`.
    #[inline(always)]
    pub(crate) fn bump(&self, size: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        match self.bump_here(size, align) {
            Some(block) => Ok(block),
            None => self.bump_in_next_chunk(size, align),
        }
    }

    /// The fast path: one bounds check and a pointer move in the current chunk.
    #[inline(always)]
    fn bump_here(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let cursor = self.cursor.get();
        let pad = if align <= GRAIN {
            0
        } else {
            cursor.as_ptr().addr().wrapping_neg() & (align - 1)
        };
        // `cursor <= limit` always. `size + pad` cannot overflow: the layout's size rounded
        // up to its alignment fits an `isize`, and `pad < align`.
        if size + pad > self.limit.get() - cursor.as_ptr().addr() {
            return None;
        }
        // SAFETY: `pad + size` bytes from the cursor lie inside the current chunk's data.
        let block = unsafe { cursor.add(pad) };
        // SAFETY: as above.
        self.cursor.set(unsafe { block.add(size) });
        Some(block)
    }

    /// The slow path: the first kept chunk that fits, otherwise a new chunk from the
    /// source. On failure nothing has changed.
    #[cold]
    #[inline(never)]
    fn bump_in_next_chunk(&self, size: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        // Every change to the list happens while the source is out of its cell: a source
        // that calls back into this region finds none there and fails in the slow path,
        // before it could change the list under this call.
        self.lending_source(|source| self.move_on(source, size, align))
            .ok_or(AllocError)??;
        self.bump_here(size, align).ok_or(AllocError)
    }

    /// Makes a chunk that serves `size` bytes aligned to `align` the current one: the
    /// first kept chunk that fits (the kept chunks before it, too small for this request,
    /// go back to the source), or a new one put right after the current chunk.
    fn move_on(&self, source: &mut S, size: usize, align: usize) -> Result<(), AllocError> {
        let current = self.current.get();
        let mut fitting = self.next_of(current);
        while let Some(kept) = fitting {
            if Self::fits(self.data_range(Some(kept)), size, align) {
                break;
            }
            fitting = self.next_of(Some(kept));
        }
        let chunk = if let Some(kept) = fitting {
            self.give_back_between(source, current, kept);
            kept
        } else {
            let fresh = self.acquire(source, size, align)?;
            self.insert_after(current, fresh);
            fresh
        };
        self.renumber_from(chunk);
        self.enter(Some(chunk));
        Ok(())
    }

    /// Runs `f` on the source, taken out of its cell meanwhile (and put back even if `f`
    /// panics); `None` when it is already out.
    fn lending_source<R>(&self, f: impl FnOnce(&mut S) -> R) -> Option<R> {
        struct PutBack<'c, S> {
            cell: &'c Cell<Option<S>>,
            source: Option<S>,
        }
        impl<S> Drop for PutBack<'_, S> {
            fn drop(&mut self) {
                self.cell.set(self.source.take());
            }
        }
        let mut out = PutBack {
            cell: &self.source,
            source: Some(self.source.take()?),
        };
        out.source.as_mut().map(f)
    }

    /// Whether an empty chunk with `data` serves `size` bytes aligned to `align`.
    fn fits((start, end): (NonNull<u8>, usize), size: usize, align: usize) -> bool {
        let pad = start.as_ptr().addr().wrapping_neg() & (align - 1);
        size.checked_add(pad)
            .is_some_and(|need| need <= end - start.as_ptr().addr())
    }

    /// A new chunk from the source, big enough for `size` bytes aligned to `align` after
    /// its header; not yet linked.
    fn acquire(
        &self,
        source: &mut S,
        size: usize,
        align: usize,
    ) -> Result<NonNull<ChunkHeader>, AllocError> {
        // The header, the grain's slack at either end, the alignment's, the block.
        let need = (HEADER + 2 * (GRAIN - 1))
            .checked_add(align.saturating_sub(GRAIN))
            .and_then(|n| n.checked_add(size))
            .ok_or(AllocError)?;
        let step = self.total_len(self.current.get()).saturating_mul(2);
        let ask = step.clamp(FIRST_CHUNK, LARGEST_STEP).max(need);
        let chunk = match source.acquire(ask) {
            None if ask > need => source.acquire(need),
            chunk => chunk,
        };
        let chunk = chunk.ok_or(AllocError)?;
        debug_assert!(chunk.len() >= need, "the source handed out a short chunk");
        let start = chunk.cast::<u8>();
        let skip = start.as_ptr().addr().wrapping_neg() & (GRAIN - 1);
        // SAFETY: the chunk is at least `need > skip + HEADER` bytes long.
        let header = unsafe { start.add(skip) }.cast::<ChunkHeader>();
        let data = header.as_ptr().addr() + HEADER;
        // SAFETY: the header is inside the chunk, aligned, and the chunk is ours.
        unsafe {
            header.write(ChunkHeader {
                chunk,
                prev: None,
                next: None,
                depth: 0,
                stopped_at: data,
            });
        }
        Ok(header)
    }

    /// Puts `fresh` right after `chunk`, as the last chunk of the list.
    fn link_after(&self, chunk: Chunk, fresh: NonNull<ChunkHeader>) {
        self.set_next(chunk, Some(fresh));
        // SAFETY: `fresh` is a header this region wrote and owns.
        unsafe {
            let header = &mut *fresh.as_ptr();
            header.prev = chunk;
            header.next = None;
        }
        self.renumber_from(fresh);
    }

    /// Puts `fresh` right after `chunk`, before the chunks kept after it.
    fn insert_after(&self, chunk: Chunk, fresh: NonNull<ChunkHeader>) {
        let kept = self.next_of(chunk);
        if let Some(after) = kept {
            // SAFETY: a live header of this region.
            unsafe { (*after.as_ptr()).prev = Some(fresh) };
        }
        // SAFETY: `fresh` is a header this region wrote and owns.
        unsafe {
            let header = &mut *fresh.as_ptr();
            header.prev = chunk;
            header.next = kept;
        }
        self.set_next(chunk, Some(fresh));
    }

    /// Makes `chunk` the current one, empty; the old current chunk remembers where its
    /// cursor stopped.
    fn enter(&self, chunk: Chunk) {
        self.set_stopped(self.current.get(), self.cursor.get().as_ptr().addr());
        let (start, end) = self.data_range(chunk);
        self.current.set(chunk);
        self.cursor.set(start);
        self.limit.set(end);
    }

    /// Gives each chunk from `chunk` to the end of the list its place as its depth.
    fn renumber_from(&self, chunk: NonNull<ChunkHeader>) {
        let mut depth = Self::depth(Self::prev_of(chunk));
        let mut next = Some(chunk);
        while let Some(header) = next {
            depth += 1;
            // SAFETY: a live header of this region, written through its own pointer.
            unsafe { (*header.as_ptr()).depth = depth };
            next = self.next_of(Some(header));
        }
    }

    /// Gives the chunks strictly between `chunk` and `keep` (kept chunks after the
    /// current one) to the source, and links the two.
    fn give_back_between(&self, source: &mut S, chunk: Chunk, keep: NonNull<ChunkHeader>) {
        if !S::RETURNS_MEMORY {
            // The source cannot take them: they stay where they are, passed over (empty,
            // their room counted as slack until a release or reset comes back to them).
            let mut next = self.next_of(chunk);
            while let Some(header) = next.filter(|header| *header != keep) {
                let (start, _) = self.data_range(Some(header));
                self.set_stopped(Some(header), start.as_ptr().addr());
                next = self.next_of(Some(header));
            }
            return;
        }
        // Unlink first, release after: a source that panics in `release` then leaves a
        // list that reaches no freed chunk.
        let passed = self.next_of(chunk).filter(|header| *header != keep);
        self.set_next(chunk, Some(keep));
        // SAFETY: a live header of this region.
        unsafe { (*keep.as_ptr()).prev = chunk };
        self.renumber_from(keep);
        self.release_list(source, passed, Some(keep));
    }

    /// Gives the chunks from `first` up to `stop` (excluded), already unlinked, to the
    /// source. The count of chunks given back goes up before each: a mark into a chunk
    /// already on its way back must never pass the O(1) check, even if `release` panics.
    fn release_list(&self, source: &mut S, first: Chunk, stop: Chunk) {
        let mut next = first;
        while let Some(header) = next.filter(|header| Some(*header) != stop) {
            // SAFETY: a header of this region, read before its chunk goes back.
            let (whole, after) = unsafe { (header.as_ref().chunk, header.as_ref().next) };
            self.generation.set(self.generation.get() + 1);
            // SAFETY: the chunk came from this source and nothing uses it any more: it is
            // unlinked, and no live block is in it (callers give back only chunks after
            // the current one, or every chunk from `&mut self`).
            unsafe { source.release(whole) };
            next = after;
        }
    }

    /// Unlinks `chunk` and every chunk after it and gives them to the source.
    fn give_back_from(&self, source: &mut S, chunk: NonNull<ChunkHeader>) {
        self.set_next(Self::prev_of(chunk), None);
        self.release_list(source, Some(chunk), None);
    }

    /// [`give_back_from`](Self::give_back_from) from `&mut self`. With the source out
    /// (only inside a call of its own), the chunks stay allocated: a leak, which is safe.
    fn give_back_all_from(&mut self, chunk: NonNull<ChunkHeader>) {
        if self
            .lending_source(|source| self.give_back_from(source, chunk))
            .is_none()
        {
            self.set_next(Self::prev_of(chunk), None);
        }
    }

    // --- The list, the base included -------------------------------------------------

    /// The data of `chunk`: its first byte after the header, and its end address.
    #[inline]
    fn data_range(&self, chunk: Chunk) -> (NonNull<u8>, usize) {
        match chunk {
            None => (self.base, self.base_end),
            Some(header) => {
                // SAFETY: a live header of this region.
                let whole = unsafe { header.as_ref().chunk };
                // SAFETY: the data starts `HEADER` bytes after the header, inside the
                // chunk (`acquire` asked for more).
                let start = unsafe { header.cast::<u8>().add(HEADER) };
                let end = (whole.cast::<u8>().as_ptr().addr() + whole.len()) & !(GRAIN - 1);
                (start, end)
            }
        }
    }

    fn total_len(&self, chunk: Chunk) -> usize {
        match chunk {
            None => self.base_len,
            // SAFETY: a live header of this region.
            Some(header) => unsafe { header.as_ref().chunk.len() },
        }
    }

    fn next_of(&self, chunk: Chunk) -> Chunk {
        match chunk {
            None => self.first.get(),
            // SAFETY: a live header of this region.
            Some(header) => unsafe { header.as_ref().next },
        }
    }

    fn set_next(&self, chunk: Chunk, next: Chunk) {
        match chunk {
            None => self.first.set(next),
            // SAFETY: a live header of this region, written through its own pointer (no
            // reference to it is held anywhere).
            Some(header) => unsafe { (*header.as_ptr()).next = next },
        }
    }

    fn depth(chunk: Chunk) -> usize {
        // SAFETY: a live header of this region.
        chunk.map_or(0, |header| unsafe { header.as_ref().depth })
    }

    fn prev_of(chunk: NonNull<ChunkHeader>) -> Chunk {
        // SAFETY: a live header of this region.
        unsafe { chunk.as_ref().prev }
    }

    /// Where the cursor stopped in `chunk`, or stands if it is the current one.
    fn top(&self, chunk: Chunk) -> usize {
        if chunk == self.current.get() {
            return self.cursor.get().as_ptr().addr();
        }
        match chunk {
            None => self.base_stopped.get(),
            // SAFETY: a live header of this region.
            Some(header) => unsafe { header.as_ref().stopped_at },
        }
    }

    fn set_stopped(&self, chunk: Chunk, at: usize) {
        match chunk {
            None => self.base_stopped.set(at),
            // SAFETY: a live header of this region, written through its own pointer.
            Some(header) => unsafe { (*header.as_ptr()).stopped_at = at },
        }
    }

    /// Every chunk of the list, base first.
    fn chunks(&self) -> impl Iterator<Item = Chunk> + '_ {
        let mut next = Some(None);
        core::iter::from_fn(move || {
            let chunk = next?;
            next = self.next_of(chunk).map(Some);
            Some(chunk)
        })
    }

    // --- Marks -----------------------------------------------------------------------

    pub(crate) fn position(&self) -> crate::Mark {
        let current = self.current.get();
        crate::Mark {
            chunk: current,
            depth: Self::depth(current),
            cursor: self.cursor.get().as_ptr().addr(),
            region: self.id,
            generation: self.generation.get(),
        }
    }

    /// Moves the cursor back to a position [`position`](Self::position) returned, if it
    /// is still at or before the cursor in this region's list; chunks passed over are
    /// kept for reuse. Returns whether it was.
    pub(crate) fn rewind(&mut self, mark: crate::Mark) -> bool {
        let current = self.current.get();
        let here = Self::depth(current);
        let chunk = if mark.depth > here {
            return false;
        } else if mark.depth == here {
            current
        } else if mark.depth == 0 {
            None
        } else if self.id != 0 && mark.region == self.id && mark.generation == self.generation.get()
        {
            // No chunk has gone back since this region took the mark: its chunk is still
            // one of ours, and live. Its depth, read now, says whether it is still before
            // the current chunk (the list is a line numbered from the base; a chunk kept
            // after the current one is deeper).
            match mark.chunk {
                Some(header) if Self::depth(Some(header)) == mark.depth => Some(header),
                _ => return false,
            }
        } else {
            // No id to go by: walk back to the mark's depth, one step per chunk.
            let mut chunk = current;
            while Self::depth(chunk) > mark.depth {
                chunk = chunk.and_then(Self::prev_of);
            }
            chunk
        };
        let (start, end) = self.data_range(chunk);
        let valid = chunk == mark.chunk
            && (start.as_ptr().addr()..=self.top(chunk)).contains(&mark.cursor)
            && mark.cursor % GRAIN == 0;
        if !valid {
            return false;
        }
        // A valid cursor is at least the chunk's start, which is not null.
        let Some(cursor) = NonZeroUsize::new(mark.cursor) else {
            return false;
        };
        self.current.set(chunk);
        self.cursor.set(start.with_addr(cursor));
        self.limit.set(end);
        true
    }

    // --- Whole-region operations -----------------------------------------------------

    /// Frees everything: the region starts again from its buffer, or from its largest
    /// chunk, which it keeps; every other chunk goes back to the source.
    ///
    /// Borrows end here, so no value allocated before survives (`&mut self`).
    pub fn reset(&mut self) {
        if !S::RETURNS_MEMORY {
            // A source that cannot take chunks back: keep them all, emptied, and start
            // again from the buffer, or from the first chunk.
            let mut chunk: Chunk = None;
            loop {
                let (start, _) = self.data_range(chunk);
                self.set_stopped(chunk, start.as_ptr().addr());
                match self.next_of(chunk) {
                    Some(next) => chunk = Some(next),
                    None => break,
                }
            }
            let start_in = if self.base_end == self.base.as_ptr().addr() {
                self.first.get()
            } else {
                None
            };
            let (start, end) = self.data_range(start_in);
            self.current.set(start_in);
            self.cursor.set(start);
            self.limit.set(end);
            return;
        }
        let largest = self
            .chunks()
            .flatten()
            .max_by_key(|header| self.total_len(Some(*header)));
        if let Some(keep) = largest {
            // Take the keeper out of the list, then give back the rest.
            let (prev, next) = {
                // SAFETY: a live header of this region.
                let header = unsafe { keep.as_ref() };
                (header.prev, header.next)
            };
            self.set_next(prev, next);
            if let Some(after) = next {
                // SAFETY: a live header of this region.
                unsafe { (*after.as_ptr()).prev = prev };
            }
            // The region's new state first (the keeper alone after the base), the other
            // chunks given back after: a source that panics in `release` leaves a region
            // that reaches none of them.
            let rest = self.first.get();
            self.link_after(None, keep);
            self.start_again(keep);
            // (With the source out, only inside a call of its own, they stay allocated.)
            self.lending_source(|source| self.release_list(source, rest, None));
            return;
        }
        self.start_again_from(None);
    }

    /// Makes the region start again, empty, from its buffer, or from `keep` when it has
    /// no buffer.
    fn start_again(&mut self, keep: NonNull<ChunkHeader>) {
        let start_in = if self.base_end == self.base.as_ptr().addr() {
            Some(keep)
        } else {
            None
        };
        self.start_again_from(start_in);
    }

    fn start_again_from(&mut self, chunk: Chunk) {
        let (start, end) = self.data_range(chunk);
        self.current.set(chunk);
        self.cursor.set(start);
        self.limit.set(end);
    }

    /// Gives the chunks kept after the current one (those a release passed over) back to
    /// the source.
    pub fn trim(&mut self) {
        if !S::RETURNS_MEMORY {
            return;
        }
        if let Some(kept) = self.next_of(self.current.get()) {
            self.give_back_all_from(kept);
        }
    }

    /// Bytes left in the current chunk: the largest block that can be allocated (aligned
    /// to at most 8) without taking another chunk, which is also how far the newest
    /// block can grow in place.
    pub fn room(&self) -> usize {
        self.limit.get() - self.cursor.get().as_ptr().addr()
    }

    // --- Backend calls, through `&self` ------------------------------------------------

    #[inline]
    fn allocate_block(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // A backend never hands out a zero-length block (see `Backend`'s contract).
        let size = Self::grain(layout.size().max(1));
        let block = self.bump(size, layout.align())?;
        Ok(NonNull::slice_from_raw_parts(block, size))
    }

    /// Whether the block at `ptr` of `len` bytes (a multiple of the grain) is the newest.
    #[inline]
    fn is_newest(&self, ptr: NonNull<u8>, len: usize) -> bool {
        ptr.as_ptr().addr().wrapping_add(len) == self.cursor.get().as_ptr().addr()
    }

    #[inline]
    fn free_block(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.is_newest(ptr, Self::grain(layout.size().max(1))) {
            self.cursor.set(ptr);
        } else {
            #[cfg(feature = "checked")]
            self.check_free(ptr);
        }
    }

    /// With `checked`: a free that is a no-op must still be of a block this region holds.
    #[cfg(feature = "checked")]
    fn check_free(&self, ptr: NonNull<u8>) {
        let address = ptr.as_ptr().addr();
        let mut chunk = Some(self.current.get());
        while let Some(here) = chunk {
            let (start, _) = self.data_range(here);
            if (start.as_ptr().addr()..self.top(here)).contains(&address) {
                return;
            }
            chunk = here.map(Self::prev_of);
        }
        let reason = if self.owns_address(address) {
            "block is not allocated (at or past the cursor)"
        } else {
            "pointer is not in this region"
        };
        heapkit_core::invalid_use(CRATE, "deallocate", ptr.as_ptr(), reason);
    }

    #[inline]
    fn grow_block(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let old_len = Self::grain(old_layout.size().max(1));
        let new_len = Self::grain(new_layout.size());
        if !self.is_newest(ptr, old_len) || new_len - old_len > self.room() {
            return Err(AllocError);
        }
        // SAFETY: the block is the newest, so `ptr + new_len` lies within the room left.
        self.cursor.set(unsafe { ptr.add(new_len) });
        Ok(NonNull::slice_from_raw_parts(ptr, new_len))
    }

    #[inline]
    fn shrink_block(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> NonNull<[u8]> {
        let old_len = Self::grain(old_layout.size().max(1));
        let new_len = Self::grain(new_layout.size().max(1));
        if self.is_newest(ptr, old_len) {
            // SAFETY: `new_len <= old_len`: inside the block.
            self.cursor.set(unsafe { ptr.add(new_len) });
            NonNull::slice_from_raw_parts(ptr, new_len)
        } else {
            // An older block keeps its bytes until the region is released past it.
            NonNull::slice_from_raw_parts(ptr, old_len)
        }
    }

    fn owns_address(&self, address: usize) -> bool {
        self.chunks().any(|chunk| {
            let (start, end) = self.data_range(chunk);
            (start.as_ptr().addr()..end).contains(&address)
        })
    }

    /// A snapshot of the region's memory: every chunk's bytes (`capacity`), the bytes below
    /// the cursor in the current and earlier chunks (`in_use`: live blocks, blocks freed
    /// out of order, padding), the room in the current chunk and whole kept chunks
    /// (`free`), headers and the tails earlier chunks were left with (`metadata`).
    /// Walks the chunks: O(chunks).
    pub fn stats(&self) -> Stats {
        let current = self.current.get();
        let mut stats = Stats {
            capacity: self.base_len,
            metadata: self.base_len - (self.base_end - self.base.as_ptr().addr()),
            ..Stats::default()
        };
        let mut passed_current = false;
        for chunk in self.chunks() {
            let (start, end) = self.data_range(chunk);
            let start = start.as_ptr().addr();
            if let Some(header) = chunk {
                let len = self.total_len(chunk);
                stats.capacity += len;
                // SAFETY: a live header of this region.
                let whole = unsafe { header.as_ref().chunk };
                let whole_start = whole.cast::<u8>().as_ptr().addr();
                // The header in front, the grain's remainder behind.
                stats.metadata += start - whole_start + (whole_start + len - end);
            }
            let free = if passed_current {
                end - start
            } else {
                let top = self.top(chunk);
                stats.in_use += top - start;
                if chunk == current {
                    passed_current = true;
                    end - top
                } else {
                    // The tail a chunk was left with can no longer be used.
                    stats.metadata += end - top;
                    0
                }
            };
            stats.free += free;
            stats.largest_free = stats.largest_free.max(free);
        }
        stats
    }

    /// Checks the list of chunks and the cursor against each other (see
    /// [`Backend::check`]); O(chunks).
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), Corruption> {
        let corrupt = |at: usize, what| Err(Corruption::new(CRATE, at, what));
        let mut prev: Chunk = None;
        let mut seen_current = false;
        for (depth, chunk) in self.chunks().enumerate() {
            let (start, end) = self.data_range(chunk);
            let start = start.as_ptr().addr();
            if let Some(header) = chunk {
                // SAFETY: a header reached through the list.
                let h = unsafe { header.as_ref() };
                let at = header.as_ptr().addr();
                if h.depth != depth {
                    return Err(Corruption::new(
                        CRATE,
                        at,
                        "chunk's depth is not its place in the list",
                    )
                    .expected(depth, h.depth));
                }
                if h.prev != prev {
                    return corrupt(at, "chunk's back link is not the chunk before it");
                }
                let whole = h.chunk.cast::<u8>().as_ptr().addr();
                if !(whole..=whole + h.chunk.len()).contains(&(at + HEADER)) {
                    return corrupt(at, "chunk header lies outside its chunk");
                }
            }
            let top = self.top(chunk);
            if !(start..=end).contains(&top) || top % GRAIN != 0 {
                return Err(Corruption::new(
                    CRATE,
                    top,
                    "cursor outside its chunk or off the grain",
                )
                .expected(start, top));
            }
            if chunk == self.current.get() {
                seen_current = true;
                if self.limit.get() != end {
                    return Err(Corruption::new(
                        CRATE,
                        start,
                        "limit is not the current chunk's end",
                    )
                    .expected(end, self.limit.get()));
                }
            }
            prev = chunk;
        }
        if seen_current {
            Ok(())
        } else {
            corrupt(
                self.cursor.get().as_ptr().addr(),
                "current chunk is not in the list",
            )
        }
    }
}

impl<S: Source> Drop for Bump<'_, S> {
    fn drop(&mut self) {
        if let Some(first) = self.first.get() {
            self.give_back_all_from(first);
        }
    }
}

impl<S: Source> fmt::Debug for Bump<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bump")
            .field("chunks", &self.chunks().count())
            .field("room", &self.room())
            .field("stats", &Self::stats(self))
            .finish()
    }
}

// SAFETY: blocks are carved below a cursor that only moves forward over memory no live
// block uses: inside the current chunk (bounds checked in `bump_here`), aligned (the
// cursor stays on the grain, padding covers larger alignments). A free or shrink moves the
// cursor back only over the newest block, which the caller gives up; releases and resets
// take `&mut self`, so no block handed out through `&self` outlives them unless the
// caller keeps a raw pointer past the call, which the release documents as freeing it.
// A `Bump` is `!Sync`, so "any interleaving" is one thread's sequence of calls.
unsafe impl<S: Source> SharedBackend for Bump<'_, S> {
    #[inline(always)]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_block(layout)
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.free_block(ptr, layout);
    }

    #[inline]
    unsafe fn grow_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.grow_block(ptr, old_layout, new_layout)
    }

    #[inline]
    unsafe fn shrink_in_place(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        Ok(self.shrink_block(ptr, old_layout, new_layout))
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.owns_address(ptr.as_ptr().addr())
    }

    fn stats(&self) -> Stats {
        Self::stats(self)
    }

    fn check(&self) -> Result<(), Corruption> {
        Self::check(self)
    }
}

// SAFETY: each call is the `SharedBackend` call above, whose contract is `Backend`'s.
unsafe impl<S: Source> Backend for Bump<'_, S> {
    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_block(layout)
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.free_block(ptr, layout);
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.grow_block(ptr, old_layout, new_layout)
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        Ok(self.shrink_block(ptr, old_layout, new_layout))
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.owns_address(ptr.as_ptr().addr())
    }

    fn stats(&self) -> Stats {
        Self::stats(self)
    }

    fn trim(&mut self) {
        Self::trim(self);
    }

    fn check(&self) -> Result<(), Corruption> {
        Self::check(self)
    }
}

/// So `&Bump`, the region's own allocator, is inspected like every heapkit adapter.
impl<S: Source> Inspect for Bump<'_, S> {
    fn stats(&self) -> Stats {
        Self::stats(self)
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.owns_address(ptr.as_ptr().addr())
    }

    fn check(&self) -> Result<(), Corruption> {
        Self::check(self)
    }
}

impl<S: Source> Bump<'_, S> {
    /// Gives one call exclusive use of the region as a [`Backend`] (`&Bump` is one, through
    /// [`SharedBackend`]), so the shared `Allocator` implementation can drive it.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut &Self) -> R) -> R {
        f(&mut &*self)
    }
}

heapkit_core::allocator_through_with!(['a, S: Source] Bump<'a, S>);
