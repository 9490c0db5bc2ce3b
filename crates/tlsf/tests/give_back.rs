//! Giving memory back: over a `StaticSource` (which cannot take it), chunks split into
//! several regions, regions added by hand beside chunks, the reserve, random operations
//! with `trim`, and a heap of thousands of chunks emptied by one free.

use std::cell::Cell;
use std::ptr::NonNull;
use std::rc::Rc;

use heapkit_core::source::{Source, StaticSource, SystemSource};
use heapkit_core::{Backend, Layout, Local, Locked};
use heapkit_tlsf::{GrowingTlsf, Tlsf};

/// A `SystemSource` that counts live chunks.
struct Counting {
    inner: SystemSource,
    live: Rc<Cell<usize>>,
}

// SAFETY: forwards to `SystemSource`.
unsafe impl Source for Counting {
    const CHUNK_ALIGN: usize = SystemSource::CHUNK_ALIGN;

    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        let chunk = self.inner.acquire(min_len)?;
        self.live.set(self.live.get() + 1);
        Some(chunk)
    }

    unsafe fn release(&mut self, chunk: NonNull<[u8]>) {
        self.live.set(self.live.get() - 1);
        // SAFETY: forwarded.
        unsafe { self.inner.release(chunk) }
    }
}

fn counting(min_chunk: usize) -> (Counting, Rc<Cell<usize>>) {
    let live = Rc::new(Cell::new(0));
    (
        Counting {
            inner: SystemSource::new(min_chunk),
            live: live.clone(),
        },
        live,
    )
}

fn consistent<B: Backend>(heap: &B) {
    let stats = heap.stats();
    assert!(stats.is_consistent(), "{stats:?}");
    heap.check().unwrap();
}

fn fill(block: NonNull<[u8]>, byte: u8) {
    // SAFETY: a live block of `len` bytes.
    unsafe { block.cast::<u8>().as_ptr().write_bytes(byte, block.len()) };
}

fn verify(block: NonNull<[u8]>, byte: u8) {
    // SAFETY: a live block.
    let bytes = unsafe { std::slice::from_raw_parts(block.cast::<u8>().as_ptr(), block.len()) };
    assert!(bytes.iter().all(|&b| b == byte), "block contents changed");
}

/// `trim` keeps the static buffer: a `StaticSource` cannot take memory back
/// (`RETURNS_MEMORY` is false). Before, the heap gave it "back" and could never allocate
/// again: a `#[global_allocator]` over `static_source!` died at its first `HEAP.trim()`.
#[test]
fn trim_over_a_static_source_leaves_the_heap_able_to_allocate() {
    let heap = Local::new(GrowingTlsf::new(heapkit_core::static_source!(64 * 1024)));
    let layout = Layout::from_size_align(256, 8).unwrap();
    let block = allocator_api2::alloc::Allocator::allocate(&heap, layout).unwrap();
    // SAFETY: live block of this heap.
    unsafe { allocator_api2::alloc::Allocator::deallocate(&heap, block.cast(), layout) };
    assert!(
        heap.stats().capacity > 0,
        "the only chunk is kept on the last free"
    );
    heap.trim();
    assert!(
        allocator_api2::alloc::Allocator::allocate(&heap, layout).is_ok(),
        "after trim the heap over a static buffer is out of memory for good"
    );
}

/// Same through `Locked`, as the global allocator example uses it.
#[test]
fn locked_trim_over_a_static_source_keeps_the_heap_usable() {
    static HEAP: Locked<GrowingTlsf<StaticSource>> =
        Locked::new(GrowingTlsf::new(heapkit_core::static_source!(64 * 1024)));
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: `GlobalAlloc` contract: non-zero size.
    let p = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) };
    assert!(!p.is_null());
    // SAFETY: allocated above with `layout`.
    unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, p, layout) };
    HEAP.trim();
    // SAFETY: as above.
    let q = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) };
    assert!(!q.is_null(), "trimmed static heap is dead");
}

/// Two sources from one expansion share the flag: only one gets the buffer.
#[test]
fn one_expansion_twice_hands_the_buffer_out_once() {
    fn make() -> StaticSource {
        heapkit_core::static_source!(8192)
    }
    fn make_small() -> StaticSource {
        heapkit_core::static_source!(4096)
    }
    let (mut a, mut b) = (make(), make());
    let first = a.acquire(1);
    let second = b.acquire(1);
    assert!(first.is_some() != second.is_some());
    assert!(a.acquire(1).is_none());
    // A request larger than the buffer does not claim it.
    let mut c = make_small();
    assert!(c.acquire(4097).is_none());
    assert!(c.acquire(4096).is_some());
}

/// A chunk larger than `Tlsf::<8, 4>::MAX_BLOCK` holds one region (its tail stays unused),
/// and a live block in it keeps the chunk.
#[test]
#[cfg_attr(
    miri,
    ignore = "fills dozens of 4 KiB blocks byte by byte: minutes under miri; the take-back runs there in the other tests"
)]
fn multi_region_chunk_with_one_live_block_is_kept() {
    const FL: usize = 8;
    const SL: usize = 4;
    let max = Tlsf::<FL, SL>::MAX_BLOCK;
    let chunk = if cfg!(miri) { 64 * 1024 } else { 1 << 20 };
    assert!(chunk > 4 * max, "max block {max}");
    let (source, live) = counting(chunk);
    let mut heap = GrowingTlsf::<_, FL, SL>::with_classes(source);
    let layout = Layout::from_size_align(max / 2, 16).unwrap();
    let mut blocks = Vec::new();
    while live.get() < 3 {
        let block = heap.allocate(layout).unwrap();
        fill(block, blocks.len() as u8);
        blocks.push(block);
        consistent(&heap);
    }
    // Keep one block from the middle of the first chunk and one from the second.
    let keep_a = blocks.len() / 4;
    let keep_b = blocks.len() / 2;
    for (i, block) in blocks.iter().enumerate() {
        if i != keep_a && i != keep_b {
            // SAFETY: live block.
            unsafe { heap.deallocate(block.cast(), layout) };
            consistent(&heap);
        }
    }
    let before = live.get();
    heap.trim();
    consistent(&heap);
    assert!(live.get() < before, "a wholly free chunk went back");
    assert!(live.get() >= 1);
    verify(blocks[keep_a], keep_a as u8);
    verify(blocks[keep_b], keep_b as u8);
    // Growth after trim, and a free right after trim.
    let again = heap.allocate(layout).unwrap();
    fill(again, 0xEE);
    consistent(&heap);
    // SAFETY: live blocks.
    unsafe {
        heap.deallocate(blocks[keep_a].cast(), layout);
        consistent(&heap);
        heap.deallocate(again.cast(), layout);
        consistent(&heap);
        verify(blocks[keep_b], keep_b as u8);
        heap.deallocate(blocks[keep_b].cast(), layout);
    }
    consistent(&heap);
    assert_eq!(
        live.get(),
        1,
        "all but the largest went back when the heap emptied"
    );
    heap.trim();
    consistent(&heap);
    assert_eq!(live.get(), 0);
    assert_eq!(heap.stats().capacity, 0);
    drop(heap);
    assert_eq!(live.get(), 0);
}

/// A region added by the caller beside the chunks is never given back, stays usable, and
/// keeps the stats right.
#[test]
fn added_region_survives_trim_and_give_back() {
    let (source, live) = counting(64 * 1024);
    let mut heap = GrowingTlsf::new(source);
    let mut buffer = vec![0u8; 16 * 1024].into_boxed_slice();
    let len = buffer.len();
    // SAFETY: `buffer` outlives `heap` (declared before: dropped after).
    unsafe { heap.add_region(NonNull::new(buffer.as_mut_ptr()).unwrap(), len) }.unwrap();
    let base = heap.stats();
    let small = Layout::from_size_align(1024, 8).unwrap();
    let big = Layout::from_size_align(32 * 1024, 8).unwrap();
    let a = heap.allocate(small).unwrap();
    let b = heap.allocate(big).unwrap();
    let c = heap.allocate(big).unwrap();
    assert!(live.get() >= 1);
    fill(a, 1);
    // SAFETY: live blocks.
    unsafe {
        heap.deallocate(b.cast(), big);
        heap.deallocate(c.cast(), big);
    }
    consistent(&heap);
    heap.trim();
    consistent(&heap);
    verify(a, 1);
    // SAFETY: live.
    unsafe { heap.deallocate(a.cast(), small) };
    consistent(&heap);
    heap.trim();
    consistent(&heap);
    assert_eq!(live.get(), 0);
    assert_eq!(heap.stats(), base, "only the added region is left");
    let d = heap.allocate(small).unwrap();
    // SAFETY: live.
    unsafe { heap.deallocate(d.cast(), small) };
    drop(heap);
    drop(buffer);
}

/// The automatic give-back keeps the largest chunk; a request that needs it again after
/// the heap emptied must not fail.
#[test]
fn empty_heap_keeps_largest_chunk_and_regrows() {
    let (source, live) = counting(64 * 1024);
    let heap = Local::new(GrowingTlsf::new(source));
    for round in 0..4 {
        let big = Layout::from_size_align(200 * 1024, 8).unwrap();
        let small = Layout::from_size_align(48, 8).unwrap();
        let s = allocator_api2::alloc::Allocator::allocate(&heap, small).unwrap();
        let b = allocator_api2::alloc::Allocator::allocate(&heap, big).unwrap();
        // SAFETY: live blocks.
        unsafe {
            allocator_api2::alloc::Allocator::deallocate(&heap, s.cast(), small);
            allocator_api2::alloc::Allocator::deallocate(&heap, b.cast(), big);
        }
        assert_eq!(live.get(), 1, "round {round}");
        heap.check().unwrap();
        assert!(heap.stats().is_consistent());
    }
}

/// Stress: random alloc / free / trim against a model of contents, checked each step.
#[test]
fn random_ops_with_trim() {
    let (source, live) = counting(if cfg!(miri) { 16 * 1024 } else { 64 * 1024 });
    let mut heap = GrowingTlsf::<_, 10, 4>::with_classes(source);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live_blocks: Vec<(NonNull<[u8]>, Layout, u8)> = Vec::new();
    let (steps, largest) = if cfg!(miri) {
        (60, 2_000)
    } else {
        (3_000, 20_000)
    };
    for step in 0..steps {
        match next() % 10 {
            0..=4 => {
                let size = 1 + (next() % largest) as usize;
                let align = 1 << (next() % 7);
                let layout = Layout::from_size_align(size, align).unwrap();
                if let Ok(block) = heap.allocate(layout) {
                    let tag = step as u8;
                    fill(block, tag);
                    live_blocks.push((block, layout, tag));
                }
            }
            5..=8 if !live_blocks.is_empty() => {
                let i = (next() as usize) % live_blocks.len();
                let (block, layout, tag) = live_blocks.swap_remove(i);
                verify(block, tag);
                // SAFETY: live.
                unsafe { heap.deallocate(block.cast(), layout) };
            }
            _ => heap.trim(),
        }
        consistent(&heap);
        if step % 64 == 0 {
            for &(block, _, tag) in &live_blocks {
                verify(block, tag);
            }
        }
    }
    for (block, layout, tag) in live_blocks {
        verify(block, tag);
        // SAFETY: live.
        unsafe { heap.deallocate(block.cast(), layout) };
        consistent(&heap);
    }
    heap.trim();
    assert_eq!(live.get(), 0);
}

/// A heap of 2,000 chunks emptied by one free: every chunk but the reserve goes back,
/// in one pass over chunks and regions (it was O(chunks²): 0.13 s for this free, under a
/// spin lock; `cargo test --release -- --nocapture` prints the time).
#[test]
fn a_free_that_empties_thousands_of_chunks_gives_them_back() {
    let chunks = if cfg!(miri) { 20 } else { 2_000 };
    let (source, live) = counting(64 * 1024);
    let mut heap = GrowingTlsf::new(source);
    let layout = Layout::from_size_align(60 * 1024, 8).unwrap();
    let blocks: Vec<_> = (0..chunks)
        .map(|_| heap.allocate(layout).unwrap())
        .collect();
    assert_eq!(live.get(), chunks);
    let (last, rest) = blocks.split_last().unwrap();
    for block in rest {
        // SAFETY: live blocks of this heap, freed once.
        unsafe { heap.deallocate(block.cast(), layout) };
    }
    assert_eq!(
        live.get(),
        chunks,
        "no chunk goes back while a block is live"
    );
    let started = std::time::Instant::now();
    // SAFETY: as above.
    unsafe { heap.deallocate(last.cast(), layout) };
    println!(
        "{chunks} chunks: the last free took {:?}",
        started.elapsed()
    );
    assert_eq!(live.get(), 1, "all but the reserve went back");
    consistent(&heap);
}

/// The automatic give-back counts live blocks itself: blocks grown and shrunk in place,
/// allocated right after the heap grew, and freed in any order still bring the count to 0
/// (a count that never reaches 0 keeps every chunk).
#[test]
fn last_free_after_resizes_gives_chunks_back() {
    let (source, live) = counting(16 * 1024);
    let mut heap: GrowingTlsf<Counting> = GrowingTlsf::new(source);
    let small = Layout::from_size_align(64, 8).unwrap();
    let mut blocks = Vec::new();
    for i in 0..200 {
        let l = Layout::from_size_align(64 + i * 37 % 3000, 8).unwrap();
        let b = heap.allocate(l).unwrap().cast::<u8>();
        blocks.push((b, l));
    }
    assert!(live.get() > 2, "several chunks taken: {}", live.get());
    // Grow and shrink in place where possible.
    for (b, l) in &mut blocks {
        let bigger = Layout::from_size_align(l.size() + 16, 8).unwrap();
        // SAFETY: live block, same alignment, larger.
        if unsafe { heap.grow_in_place(*b, *l, bigger) }.is_ok() {
            *l = bigger;
        }
        // SAFETY: as above, smaller and non-zero.
        if unsafe { heap.shrink_in_place(*b, *l, small) }.is_ok() {
            *l = small;
        }
    }
    for (b, l) in blocks.into_iter().rev() {
        // SAFETY: live blocks, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    assert_eq!(heap.stats().in_use, 0);
    assert_eq!(
        live.get(),
        1,
        "all chunks but one went back on the last free"
    );
    // And again: the count restarts from 0.
    let b = heap.allocate(small).unwrap().cast::<u8>();
    let big = Layout::from_size_align(64 * 1024, 8).unwrap();
    let c = heap.allocate(big).unwrap().cast::<u8>();
    assert_eq!(live.get(), 2);
    // SAFETY: live blocks, freed once.
    unsafe {
        heap.deallocate(c, big);
        heap.deallocate(b, small);
    }
    assert_eq!(live.get(), 1);
}
