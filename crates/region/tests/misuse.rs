//! Misuse and edge cases from the adversarial review of heapkit-region: a source that
//! calls back into its region, a reset inside a scope, ends off the grain, kept chunks
//! that do or do not fit, foreign marks, the i686 empty base; and what held up (many live
//! values beside a growing `Vec`, `Local`/`Fallback`/`Locked`, stats on every path).

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::cell::Cell;
use std::rc::Rc;

use allocator_api2::vec::Vec;
use heapkit_core::source::SystemSource;
use heapkit_core::{Allocator, Backend, Source};
use heapkit_region::Bump;
use heapkit_testkit::{ChunkSource, Regions};

// --- 1. A source that calls back into its own region ------------------------------------

type Me = Bump<'static, Reentrant>;

/// What the source shares with the test: the region it feeds, whether to call back on
/// the next `acquire`, the value the call-back allocated, and whether a chunk holding it
/// went back to the source.
struct Hub {
    me: Cell<*const Me>,
    armed: Cell<bool>,
    live: Cell<Option<NonNull<u64>>>,
    released_live: Cell<bool>,
}

/// `SystemSource`, plus one call back into the region during `acquire`. Everything the
/// `Source` contract asks holds: chunks come from `System`, are valid and unshared until
/// released, as long as asked, page-aligned. The call-back itself is safe code on a
/// shared reference to the region.
struct Reentrant {
    inner: SystemSource,
    hub: Rc<Hub>,
}

// SAFETY: every chunk is `SystemSource`'s, handed out and taken back unchanged.
unsafe impl Source for Reentrant {
    const CHUNK_ALIGN: usize = SystemSource::CHUNK_ALIGN;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        let me = self.hub.me.get();
        if self.hub.armed.replace(false) && !me.is_null() {
            // SAFETY: the test keeps the region boxed and alive while it is armed, and
            // only shared references to it exist.
            let me = unsafe { &*me };
            // The slow path is busy (the source is out): this must fail cleanly.
            if let Ok(value) = me.try_alloc(0xA5A5_A5A5_u64) {
                self.hub.live.set(Some(NonNull::from(value)));
            }
        }
        self.inner.acquire(min_len)
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        if let Some(value) = self.hub.live.get() {
            let start = chunk.cast::<u8>().as_ptr().addr();
            if (start..start + chunk.len()).contains(&value.as_ptr().addr()) {
                self.hub.released_live.set(true);
            }
        }
        // SAFETY: forwarded: the region hands back a chunk this source gave it.
        unsafe { self.inner.release(chunk) };
    }
}

/// A call-back during `acquire` (safe code) cannot allocate: the slow path is busy, so it
/// fails instead of entering a kept chunk under the outer call, and no chunk holding a
/// live value goes back to the source. (Before the fix the call-back entered the kept
/// chunk K1, and the outer call then gave K1 back as "too small" with the call-back's
/// `&mut u64` in it: a use after free, which miri reported.)
#[test]
fn reentrant_source_cannot_allocate_and_nothing_live_is_given_back() {
    let hub = Rc::new(Hub {
        me: Cell::new(core::ptr::null()),
        armed: Cell::new(false),
        live: Cell::new(None),
        released_live: Cell::new(false),
    });
    let mut region: Box<Me> = Box::new(Bump::with_source(Reentrant {
        inner: SystemSource::new(4096),
        hub: hub.clone(),
    }));
    let start = region.mark();
    region.alloc([0u8; 100]); // K1: 4096 bytes
    region.alloc([0u8; 5000]); // K2: 8192 bytes
    region.release(start); // current: the (empty) base; K1, K2 kept
    hub.me.set(core::ptr::from_ref(&*region));
    hub.armed.set(true);
    let big = region.alloc([1u8; 6000]);
    assert_eq!(big[5999], 1);
    assert!(
        hub.live.get().is_none(),
        "the call-back allocated while the source was out"
    );
    assert!(!hub.released_live.get());
    region.check().unwrap();
    hub.me.set(core::ptr::null());
    drop(region);
}

// --- 2. Guard's own release of a mark the scope legitimately made stale -------------------

/// `reset` (or an inner `release`) through the scope's `&mut Bump` is allowed by the
/// types; the guard's drop then has nothing to release and must not panic (under
/// `checked` it did: "mark is stale", aborting a scope that was already unwinding).
#[cfg(feature = "checked")]
#[test]
fn reset_inside_a_scope_leaves_the_guard_nothing_to_do() {
    let mut buffer = [MaybeUninit::uninit(); 256];
    let mut region = Bump::new(&mut buffer);
    region.alloc(1u64);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        region.scope(Bump::reset);
    }));
    assert!(
        outcome.is_ok(),
        "the guard's drop panicked after a reset inside the scope"
    );
}

// --- 3. `room()` and an end that is not on the grain -------------------------------------

/// `room()` is the largest block that fits: with a buffer (or a `ChunkSource<1>` chunk)
/// whose end is not a multiple of 8, the tail no request can use is not room (it was
/// counted before the fix) but metadata.
#[test]
fn room_excludes_a_tail_off_the_grain() {
    #[repr(align(8))]
    struct Aligned([MaybeUninit<u8>; 13]);
    let mut buffer = Aligned([MaybeUninit::uninit(); 13]);
    let region = Bump::new(&mut buffer.0);
    let room = region.room();
    assert_eq!(room, 8);
    assert_eq!(region.stats().metadata, 5);
    let fits = region.alloc_layout(Layout::from_size_align(room, 1).unwrap());
    assert!(
        fits.is_ok(),
        "room() said {room} bytes fit, a {room}-byte request failed"
    );
}

// --- 4. The slow path gives back a kept chunk that would have served the request --------

/// A bounded source: a few chunks of fixed, different lengths, each handed out once (the
/// first free one at least as long as asked), as an embedded system's spare RAM banks.
struct Banks {
    banks: std::vec::Vec<(NonNull<[u8]>, bool)>,
}

// SAFETY: the banks are disjoint pieces of the test's `Regions`, each handed out until it
// is released.
unsafe impl Source for Banks {
    const CHUNK_ALIGN: usize = 64;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        let (chunk, taken) = self
            .banks
            .iter_mut()
            .find(|(chunk, taken)| !*taken && chunk.len() >= min_len)?;
        *taken = true;
        Some(*chunk)
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        let bank = self
            .banks
            .iter_mut()
            .find(|(c, _)| c.cast::<u8>() == chunk.cast::<u8>())
            .unwrap();
        bank.1 = false;
    }
}

/// Kept chunks do not always grow along the list (a large request makes a chunk of its
/// own size; a bounded source hands out what it has). After a release, a request the
/// first kept chunk cannot serve goes to the first kept chunk that can, not to an
/// exhausted source (before the fix it failed, with an empty 16 KiB chunk kept).
#[test]
fn a_later_kept_chunk_that_fits_serves_the_request() {
    let mut regions = Regions::new();
    let small = regions.take(4096, 64);
    let big = regions.take(16384, 64);
    let mut region = Bump::with_source(Banks {
        banks: std::vec![(small, false), (big, false)],
    });
    let start = region.mark();
    region.alloc([0u8; 100]); // the 4 KiB bank
    region.alloc([0u8; 10_000]); // the 16 KiB bank
    region.release(start); // both kept, empty
    let stats = region.stats();
    assert!(stats.largest_free >= 10_000, "{stats:?}");
    assert!(
        region.try_alloc([0u8; 10_000]).is_ok(),
        "10 000 bytes refused with a kept, empty 16 KiB chunk: {stats:?}"
    );
}

// --- 6. Foreign marks of source-only regions ------------------------------------------

/// A mark names a chunk and a place in it, not a region: another region's mark inside
/// one of its chunks is refused, but every buffer-less region's start is the same mark,
/// and releasing to it frees everything (as the rustdoc of `release` says).
#[test]
fn foreign_marks_are_refused_but_empty_starts_are_one_mark() {
    let other = Bump::with_source(SystemSource::new(4096));
    let foreign_start = other.mark();
    other.alloc(1u64);
    let foreign_inside = other.mark();
    let mut region = Bump::with_source(SystemSource::new(4096));
    let start = region.mark();
    assert_eq!(start, foreign_start);
    region.alloc(5u64);
    let before = region.mark();
    if cfg!(not(feature = "checked")) {
        region.release(foreign_inside);
        assert_eq!(region.mark(), before, "another region's mark was accepted");
    }
    region.release(foreign_start);
    assert_eq!(region.stats().in_use, 0);
}

#[test]
fn a_bump_is_eleven_words_as_the_readme_says() {
    assert_eq!(
        core::mem::size_of::<Bump<'static>>() / core::mem::size_of::<usize>(),
        11,
        "Bump<'_, NoSource>"
    );
}

// --- What held up -------------------------------------------------------------------------

/// Many `&mut T` from one region live at once, interleaved with a `Vec` in the region
/// growing in place and by relocation (alignment change included), a `Box` by value, and
/// frees of the newest block; under miri (stacked and tree borrows).
#[test]
fn many_live_values_and_a_growing_vec() {
    let mut regions = Regions::new();
    let source = ChunkSource::<8>::new(&mut regions, 16384, 16);
    let mut region = Bump::with_source(source);
    {
        let counter = region.alloc(1u64);
        let counts = region.alloc_slice_copy(&[2u32; 7]);
        let mut v: Vec<u64, _> = Vec::new_in(&region);
        for n in 0..600 {
            v.push(n);
            *counter += 1;
            counts[n as usize % 7] += 1;
        }
        let text = region.alloc_str("after");
        v.extend(0..10);
        *counter += 1;
        assert_eq!(&*text, "after");
        assert_eq!(v.len(), 610);
        // Grow with a new alignment (relocates), then shrink with another.
        let first = region
            .allocate(Layout::from_size_align(24, 8).unwrap())
            .unwrap()
            .cast::<u8>();
        // SAFETY: `first` is a live block of `&region` with that layout.
        unsafe {
            first.as_ptr().write_bytes(7, 24);
            let grown = region
                .grow(
                    first,
                    Layout::from_size_align(24, 8).unwrap(),
                    Layout::from_size_align(100, 64).unwrap(),
                )
                .unwrap()
                .cast::<u8>();
            assert_eq!(grown.as_ptr().addr() % 64, 0);
            assert_eq!(*grown.as_ptr().add(23), 7);
            let shrunk = region
                .shrink(
                    grown,
                    Layout::from_size_align(100, 64).unwrap(),
                    Layout::from_size_align(10, 256).unwrap(),
                )
                .unwrap()
                .cast::<u8>();
            assert_eq!(shrunk.as_ptr().addr() % 256, 0);
            assert_eq!(*shrunk.as_ptr().add(9), 7);
            region.deallocate(shrunk, Layout::from_size_align(10, 256).unwrap());
        }
        let boxed = allocator_api2::boxed::Box::new_in([5u8; 40], &region);
        assert_eq!(*counter, 602);
        assert_eq!(counts.iter().map(|&x| u64::from(x)).sum::<u64>(), 14 + 600);
        assert_eq!(boxed[39], 5);
        drop(v);
        region.check().unwrap();
        assert!(region.stats().is_consistent());
    }
    region.reset();
    region.check().unwrap();
}

/// Stats identity and `check()` on every path: tiny/misaligned buffers, sources that
/// refuse the geometric ask (chunks of odd length), releases across chunks, the slow
/// path giving back too-small kept chunks, reset keeping the largest, trim, huge layouts.
#[test]
fn stats_identity_on_every_path() {
    fn ok<S: Source>(region: &Bump<'_, S>) {
        region.check().unwrap();
        let stats = region.stats();
        assert!(stats.is_consistent(), "{stats:?}");
    }
    // Buffers shorter than the grain, misaligned.
    let mut raw = [MaybeUninit::<u64>::uninit(); 4];
    // SAFETY: 32 bytes of `MaybeUninit<u64>` viewed as bytes.
    let bytes: &mut [MaybeUninit<u8>] =
        unsafe { core::slice::from_raw_parts_mut(raw.as_mut_ptr().cast(), 32) };
    for (from, to) in [(0, 0), (1, 6), (1, 9), (1, 17), (3, 32), (0, 7), (0, 8)] {
        let region = Bump::new(&mut bytes[from..to]);
        // (`check()` of an empty base fails on i686: see the `fresh_source_only` test.)
        assert!(region.stats().is_consistent());
        let _ = region.try_alloc(1u8);
        let _ = region.try_alloc(1u64);
        assert!(region.stats().is_consistent());
        assert_eq!(region.stats().capacity, to - from);
    }
    let mut regions = Regions::new();
    // Odd-length chunks at odd addresses; the source refuses anything above 5003 bytes.
    let source = ChunkSource::<1>::new(&mut regions, 5003, 40);
    let mut first = [MaybeUninit::<u8>::uninit(); 100];
    let mut region = Bump::with_buffer_and_source(&mut first[3..], source);
    let mut marks = std::vec::Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for step in 0..if cfg!(miri) { 400 } else { 3000 } {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        match seed % 16 {
            0..=7 => {
                let size = (seed >> 8) as usize % 3000 + 1;
                let align = 1 << ((seed >> 20) % 12);
                let _ =
                    Backend::allocate(&mut region, Layout::from_size_align(size, align).unwrap());
            }
            8 | 9 => marks.push(region.mark()),
            10 | 11 => {
                if let Some(mark) = marks.pop() {
                    region.release(mark);
                    assert_eq!(region.mark(), mark);
                }
            }
            12 => region.trim(),
            13 if step % 5 == 0 => {
                region.reset();
                marks.clear();
            }
            _ => {
                for layout in [
                    Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap(),
                    Layout::from_size_align(8, 1 << (usize::BITS - 2)).unwrap(),
                    Layout::from_size_align(1 << (usize::BITS - 2), 1 << (usize::BITS - 2))
                        .unwrap(),
                    Layout::from_size_align(isize::MAX as usize, 1).unwrap(),
                ] {
                    assert!(Backend::allocate(&mut region, layout).is_err());
                    assert!(region.alloc_layout(layout).is_err());
                }
            }
        }
        ok(&region);
    }
    drop(region);
}

/// `Local<Fallback<Bump, Bump<source>>>`: a `Vec` outgrowing the buffer moves to the
/// secondary; frees route by `owns`; a `Locked<Bump>`'s read guard allocates through `&Bump`
/// only while the lock is held. Under miri (stacked and tree borrows).
#[test]
fn local_and_fallback_over_a_bump() {
    use heapkit_core::{Local, Locked};
    use heapkit_segregated::Fallback;
    let mut buffer = [MaybeUninit::uninit(); 512];
    let heap = Local::new(Fallback::new(
        Bump::new(&mut buffer),
        Bump::with_source(SystemSource::new(4096)),
    ));
    {
        let mut small: Vec<u32, _> = Vec::new_in(&heap);
        let mut big: Vec<u64, _> = Vec::new_in(&heap);
        for n in 0..300 {
            small.push(n);
            big.push(u64::from(n) * 3);
        }
        small.shrink_to_fit();
        assert_eq!(small.iter().sum::<u32>(), 299 * 300 / 2);
        assert_eq!(big[299], 897);
        heap.check().unwrap();
    }
    drop(heap);
    let locked = Locked::new(Bump::new(&mut buffer));
    {
        let guard = locked.lock();
        let value = guard.alloc(9u64);
        *value += 1;
        assert_eq!(*value, 10);
    }
    let mut boxed = allocator_api2::boxed::Box::new_in(3u64, &locked);
    *boxed += 1;
    assert_eq!(*boxed, 4);
}
