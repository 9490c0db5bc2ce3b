//! `GrowingTlsf`: takes chunks from its source when it runs out, returns them on drop,
//! and fails cleanly when the source is exhausted.

use std::cell::Cell;
use std::ptr::NonNull;
use std::rc::Rc;

use allocator_api2::vec::Vec;
use heapkit_core::source::{NoSource, SystemSource};
use heapkit_core::{Backend, Layout, Local, Source};
use heapkit_tlsf::GrowingTlsf;

/// A `SystemSource` that counts its chunks and can be capped.
struct Counting {
    inner: SystemSource,
    live: Rc<Cell<usize>>,
    acquired: Rc<Cell<usize>>,
    cap: usize,
}

// SAFETY: forwards to `SystemSource`.
unsafe impl Source for Counting {
    const CHUNK_ALIGN: usize = SystemSource::CHUNK_ALIGN;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        if self.acquired.get() == self.cap {
            return None;
        }
        let chunk = self.inner.acquire(min_len)?;
        self.live.set(self.live.get() + 1);
        self.acquired.set(self.acquired.get() + 1);
        Some(chunk)
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        self.live.set(self.live.get() - 1);
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.inner.release(chunk) }
    }
}

fn counting(min_chunk: usize, cap: usize) -> (Counting, Rc<Cell<usize>>, Rc<Cell<usize>>) {
    let live = Rc::new(Cell::new(0));
    let acquired = Rc::new(Cell::new(0));
    let source = Counting {
        inner: SystemSource::new(min_chunk),
        live: live.clone(),
        acquired: acquired.clone(),
        cap,
    };
    (source, live, acquired)
}

#[test]
fn grows_chunk_by_chunk_and_gives_chunks_back() {
    let n = if cfg!(miri) { 2_000 } else { 200_000 };
    let (source, live, acquired) = counting(64 * 1024, usize::MAX);
    let heap = Local::new(GrowingTlsf::new(source));
    {
        let mut vectors: std::vec::Vec<Vec<u64, _>> = std::vec::Vec::new();
        for v in 0..8u64 {
            let mut numbers = Vec::new_in(&heap);
            numbers.extend((0..n as u64).map(|i| i * v));
            vectors.push(numbers);
        }
        for (v, numbers) in vectors.iter().enumerate() {
            assert!(numbers
                .iter()
                .enumerate()
                .all(|(i, &x)| x == i as u64 * v as u64));
        }
        assert!(acquired.get() > 1, "the heap never grew");
        assert!(heap.stats().in_use >= 8 * n * 8);
        assert!(heap.stats().is_consistent());
    }
    // Everything freed: every chunk but the largest went back at the last free.
    assert_eq!(heap.stats().in_use, 0);
    assert_eq!(live.get(), 1, "{} chunks acquired", acquired.get());
    let reserve = heap.stats().capacity;
    heap.trim();
    assert_eq!(live.get(), 0, "trim keeps nothing back");
    assert_eq!(heap.stats().capacity, 0, "the reserve was {reserve} bytes");
    // And the heap grows again. (A `Vec`, not a `Box`: under Stacked Borrows a `Box`
    // hands `deallocate` a pointer whose tag covers only its value, and TLSF reads the
    // header in front of it.)
    let mut again = Vec::new_in(&heap);
    again.push(7u64);
    assert_eq!(again[0], 7);
    drop(again);
    drop(heap);
    assert_eq!(live.get(), 0, "chunks leaked");
}

#[test]
fn an_exhausted_source_is_an_allocation_error_that_changes_nothing() {
    let mut empty = GrowingTlsf::<NoSource>::new(NoSource);
    let layout = Layout::from_size_align(64, 8).unwrap();
    assert!(empty.allocate(layout).is_err());
    assert_eq!(empty.stats().capacity, 0);

    let (source, live, _) = counting(4096, 1);
    let mut capped = GrowingTlsf::new(source);
    let first = capped.allocate(layout).unwrap();
    let before = capped.stats();
    let huge = Layout::from_size_align(1 << 20, 8).unwrap();
    assert!(capped.allocate(huge).is_err());
    assert_eq!(capped.stats(), before);
    // SAFETY: live block of this heap.
    unsafe { capped.deallocate(first.cast(), layout) };
    drop(capped);
    assert_eq!(live.get(), 0);
}

#[test]
fn a_request_larger_than_the_minimum_chunk_gets_a_chunk_its_size() {
    let (source, _, acquired) = counting(4096, usize::MAX);
    let mut heap = GrowingTlsf::new(source);
    let big = Layout::from_size_align(3 << 20, 4096).unwrap();
    let block = heap.allocate(big).unwrap();
    assert_eq!(block.cast::<u8>().as_ptr().addr() % 4096, 0);
    assert_eq!(acquired.get(), 1);
    // SAFETY: live block.
    unsafe { heap.deallocate(block.cast(), big) };
}
