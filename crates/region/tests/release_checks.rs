//! The O(1) release (a mark names its chunk, depth and place, the region's id and its
//! count of chunks given back) against marks of swapped regions, chunks renumbered or
//! passed over, resets, a source that cannot take memory back, and a source whose
//! `release` panics after freeing its chunk (legal for an `unsafe impl Source`).

// Chunks A to D and the region `r`, as the scenarios describe them.
#![allow(clippy::many_single_char_names)]

use core::alloc::Layout;
use core::ptr::NonNull;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use heapkit_core::source::SystemSource;
use heapkit_core::{SharedBackend, Source};
use heapkit_region::Bump;

fn raw<S: Source>(r: &Bump<'_, S>, n: usize) -> NonNull<u8> {
    let b = SharedBackend::allocate(r, Layout::from_size_align(n, 8).unwrap()).unwrap();
    // SAFETY: a fresh block of `n` bytes; every byte is touched, so miri sees a freed or
    // foreign chunk.
    unsafe { b.cast::<u8>().as_ptr().write_bytes(0x5A, n) };
    b.cast()
}

/// Releases `region` to `mark`. A stale or foreign mark changes nothing; with `checked`
/// it panics, which this catches (the scenarios check what the region does either way).
fn release<S: Source>(region: &mut Bump<'_, S>, mark: heapkit_region::Mark) {
    let _ = catch_unwind(AssertUnwindSafe(|| region.release(mark)));
}

/// Four chunks of 4, 8, 16, 32 KiB; returns the mark taken in each.
fn four<S: Source>(r: &Bump<'_, S>) -> [heapkit_region::Mark; 4] {
    raw(r, 3000);
    let a = r.mark();
    raw(r, 3000);
    let b = r.mark();
    raw(r, 7000);
    let c = r.mark();
    raw(r, 15000);
    let d = r.mark();
    [a, b, c, d]
}

#[test]
fn swap_regions_marks_follow_chunks() {
    let mut r1 = Bump::with_source(SystemSource::new(4096));
    let mut r2 = Bump::with_source(SystemSource::new(4096));
    let [a1, b1, ..] = four(&r1);
    four(&r2);
    core::mem::swap(&mut r1, &mut r2);
    release(&mut r1, b1); // foreign now: walk, refused (no-op)
    r1.check().unwrap();
    release(&mut r2, b1);
    assert_eq!(r2.mark(), b1);
    release(&mut r2, a1);
    r1.check().unwrap();
    r2.check().unwrap();
    raw(&r1, 20000);
    raw(&r2, 20000);
}

#[test]
fn guard_swapped_out() {
    let mut r1 = Bump::with_source(SystemSource::new(4096));
    let mut r2 = Bump::with_source(SystemSource::new(4096));
    four(&r2);
    four(&r1);
    {
        let mut g = r1.guard();
        raw(&g, 40000);
        core::mem::swap(&mut *g, &mut r2);
        raw(&g, 40000);
    }
    r1.check().unwrap();
    r2.check().unwrap();
    raw(&r1, 50000);
    raw(&r2, 50000);
}

#[test]
fn inserted_chunk_renumbers_mark_chunk() {
    let mut r = Bump::with_source(SystemSource::new(4096));
    let [a, b, c, _] = four(&r);
    release(&mut r, a);
    raw(&r, 40000); // fits no kept chunk: fresh one inserted after A, B..D deeper
    r.check().unwrap();
    release(&mut r, b); // same depth as current, other chunk: refused
    release(&mut r, c); // B is now at depth 3 != c.depth ... refused or exact
    r.check().unwrap();
    raw(&r, 40000);
    raw(&r, 6000);
    raw(&r, 14000);
    release(&mut r, b);
    release(&mut r, c);
    r.check().unwrap();
    release(&mut r, a);
    r.check().unwrap();
    r.trim();
    release(&mut r, b);
    release(&mut r, c);
    r.check().unwrap();
    raw(&r, 100);
}

#[test]
fn skip_over_then_mark_in_skipped() {
    let mut r = Bump::with_source(SystemSource::new(4096));
    let [a, b, c, d] = four(&r);
    release(&mut r, a);
    raw(&r, 20000); // only D fits: B and C given back, generation moves
    r.check().unwrap();
    for m in [b, c, d, a] {
        release(&mut r, m);
        r.check().unwrap();
    }
    raw(&r, 100);
}

#[test]
fn reset_single_chunk_keeps_generation() {
    let mut buf = [core::mem::MaybeUninit::uninit(); 256];
    let mut r = Bump::with_buffer_and_source(&mut buf, SystemSource::new(4096));
    raw(&r, 200);
    raw(&r, 1000);
    let m = r.mark();
    raw(&r, 1000);
    r.reset(); // keeps the one chunk, frees nothing
    release(&mut r, m);
    r.check().unwrap();
    raw(&r, 200);
    raw(&r, 1000);
    raw(&r, 1000);
    release(&mut r, m); // accepted: same chunk, depth, cursor below top
    r.check().unwrap();
    raw(&r, 3000);
    r.check().unwrap();
}

#[test]
fn static_source_reset_and_pass_over() {
    let mut r = Bump::with_source(heapkit_core::static_source!(64 * 1024));
    raw(&r, 100);
    let m = r.mark();
    raw(&r, 100);
    r.reset();
    release(&mut r, m);
    r.check().unwrap();
    raw(&r, 300);
    release(&mut r, m);
    r.check().unwrap();
}

// --- a release that frees its chunk, then panics (legal for an `unsafe impl Source`) ---

thread_local!(static CALLS: Cell<usize> = const { Cell::new(0) });

struct Flaky {
    inner: SystemSource,
    panic_on: usize,
}

// SAFETY: `SystemSource`'s chunks, handed out and taken back unchanged; a panicking
// `release` has freed its chunk first.
unsafe impl Source for Flaky {
    const CHUNK_ALIGN: usize = SystemSource::CHUNK_ALIGN;
    fn acquire(&mut self, n: usize) -> Option<NonNull<[u8]>> {
        self.inner.acquire(n)
    }
    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        let n = CALLS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        // SAFETY: forwarded: the region hands back a chunk this source gave it.
        unsafe { self.inner.release(chunk) };
        // Freed, then the panic: a region still reaching the chunk would use freed memory
        // (miri would say so), and nothing leaks.
        assert_ne!(
            n, self.panic_on,
            "release #{n} panics after freeing its chunk"
        );
    }
}

/// The chunks passed over are unlinked before any goes back: a `release` that panics
/// midway leaves a list that reaches no freed chunk (it reached B, freed, before).
#[test]
fn a_release_that_panics_while_passing_over_chunks_leaves_the_region_sound() {
    CALLS.with(|c| c.set(0));
    let mut r = Bump::with_source(Flaky {
        inner: SystemSource::new(4096),
        panic_on: 2,
    });
    let [a, ..] = four(&r);
    release(&mut r, a);
    // Only D fits: B is released (freed), C's release panics; the source is put back,
    // but A.next still points at B.
    assert!(catch_unwind(AssertUnwindSafe(|| raw(&r, 20000))).is_err());
    r.check().unwrap();
    raw(&r, 100);
    r.check().unwrap();
    drop(r); // walks the list: no freed chunk on it
}

/// `reset` sets the region's new state before giving chunks back: a `release` that panics
/// leaves the cursor in the kept chunk, not in one unlinked (where a base mark then took
/// a pointer with no provenance).
#[test]
fn a_release_that_panics_in_reset_leaves_the_region_sound() {
    CALLS.with(|c| c.set(0));
    let mut r = Bump::with_source(Flaky {
        inner: SystemSource::new(4096),
        panic_on: 1,
    });
    raw(&r, 3000);
    raw(&r, 3000); // A (4 KiB), B (8 KiB, largest, current)
    assert!(catch_unwind(AssertUnwindSafe(|| r.reset())).is_err()); // A's release panics
    r.check().unwrap();
    assert_eq!(r.stats().in_use, 0);
    let m = r.mark();
    raw(&r, 8);
    release(&mut r, m);
    assert_eq!(r.mark(), m);
    raw(&r, 8);
    r.check().unwrap();
}
