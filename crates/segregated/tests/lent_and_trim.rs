//! `Lent` over borrowed byte buffers at any offset for each region backend, and
//! `Heap::trim` with live slab and large blocks, over a source that takes memory back and
//! one that cannot.

use core::mem::MaybeUninit;
use std::ptr::NonNull;

use heapkit_buddy::Buddy;
use heapkit_core::source::{StaticSource, SystemSource};
use heapkit_core::{Backend, Layout, Lent, Local};
use heapkit_pool::Pool;
use heapkit_segregated::Heap;
use heapkit_tlsf::Tlsf;

#[repr(C, align(64))]
struct Aligned([MaybeUninit<u8>; 8192]);

fn in_bounds(block: NonNull<[u8]>, (start, len): (usize, usize)) {
    let end = start + len;
    let b = block.cast::<u8>().as_ptr().addr();
    assert!(
        b >= start && b + block.len() <= end,
        "block outside the lent buffer"
    );
}

/// `Lent::<Pool>::with_params(&mut buffer, (256, 8))` over a byte array works wherever the
/// array lands: the pool (and the bitmap arena) start at the first aligned byte, as TLSF
/// and Buddy do. (They refused a misaligned start, so the README's recipe over a
/// `[MaybeUninit<u8>; N]`, alignment 1, depended on the stack's layout.)
#[test]
fn lent_pool_over_a_byte_buffer_at_any_offset() {
    let mut storage = Aligned([MaybeUninit::uninit(); 8192]);
    for offset in 0..8 {
        let buffer = &mut storage.0[offset..];
        let lent = Lent::<Pool>::with_params(buffer, (256, 8));
        assert!(lent.is_ok(), "offset {offset}: {:?}", lent.err());
    }
}

/// TLSF, Heap and Buddy over a buffer at every small offset and of awkward lengths: an
/// error or a working heap whose blocks stay inside the buffer, never a panic.
#[test]
fn lent_region_backends_at_odd_offsets_and_lengths() {
    let mut storage = Box::new(Aligned([MaybeUninit::uninit(); 8192]));
    let layout = Layout::from_size_align(24, 8).unwrap();
    // Under miri, which interprets every step, a few of each.
    let (offsets, lens): (&[usize], &[usize]) = if cfg!(miri) {
        (&[0, 3], &[1, 255, 8192 - 15])
    } else {
        (
            &[0, 1, 3, 7, 8, 15],
            &[0, 1, 15, 64, 255, 1000, 4096, 8192 - 15],
        )
    };
    for &offset in offsets {
        for &len in lens {
            let buffer = &mut storage.0[offset..offset + len];
            let snapshot = (buffer.as_ptr().addr(), buffer.len());
            if let Ok(lent) = Lent::<Tlsf>::new(&mut *buffer) {
                let heap = Local::new(lent);
                if let Ok(b) = allocator_api2::alloc::Allocator::allocate(&heap, layout) {
                    in_bounds(b, snapshot);
                }
                assert!(heap.stats().is_consistent());
            }
            let buffer = &mut storage.0[offset..offset + len];
            if let Ok(lent) = Lent::<Heap>::new(buffer) {
                let heap = Local::new(lent);
                let _ = allocator_api2::alloc::Allocator::allocate(&heap, layout);
                assert!(heap.stats().is_consistent());
                heap.check().unwrap();
            }
            let buffer = &mut storage.0[offset..offset + len];
            if let Ok(lent) = Lent::<Buddy<8>>::with_params(buffer, 16) {
                let heap = Local::new(lent);
                let _ = allocator_api2::alloc::Allocator::allocate(&heap, layout);
                assert!(heap.stats().is_consistent());
                heap.check().unwrap();
            }
        }
    }
}

fn fill(block: NonNull<[u8]>, byte: u8) {
    // SAFETY: a live block.
    unsafe { block.cast::<u8>().as_ptr().write_bytes(byte, block.len()) };
}

fn verify(block: NonNull<[u8]>, byte: u8) {
    // SAFETY: a live block.
    let bytes = unsafe { std::slice::from_raw_parts(block.cast::<u8>().as_ptr(), block.len()) };
    assert!(bytes.iter().all(|&b| b == byte));
}

fn consistent<B: Backend>(heap: &B) {
    assert!(heap.stats().is_consistent(), "{:?}", heap.stats());
    heap.check().unwrap();
}

/// `Heap::trim` with live slab and large blocks, over chunks from the system: slab chunks
/// inside TLSF chunks must keep those chunks.
#[test]
fn heap_trim_keeps_chunks_under_live_slab_and_large_blocks() {
    let mut heap = Heap::with_source(SystemSource::new(256 * 1024));
    let mut blocks = Vec::new();
    let n = if cfg!(miri) { 150 } else { 6000 };
    for i in 0..n {
        let size = if i % 50 == 0 {
            40_000
        } else {
            8 + (i * 37) % 240
        };
        let layout = Layout::from_size_align(size, 8).unwrap();
        let block = heap.allocate(layout).unwrap();
        fill(block, i as u8);
        blocks.push((block, layout, i as u8));
    }
    consistent(&heap);
    // Free all but every 97th, then trim.
    let mut kept = Vec::new();
    for (j, entry) in blocks.into_iter().enumerate() {
        if j % 97 == 0 {
            kept.push(entry);
        } else {
            // SAFETY: live.
            unsafe { heap.deallocate(entry.0.cast(), entry.1) };
        }
    }
    consistent(&heap);
    let before = heap.stats().capacity;
    heap.trim();
    consistent(&heap);
    assert!(heap.stats().capacity <= before);
    for &(block, _, tag) in &kept {
        verify(block, tag);
    }
    // Grow after trim, then free a block right after another trim.
    let extra = Layout::from_size_align(100_000, 16).unwrap();
    let e = heap.allocate(extra).unwrap();
    fill(e, 0x5A);
    heap.trim();
    // SAFETY: live.
    unsafe { heap.deallocate(e.cast(), extra) };
    consistent(&heap);
    for (block, layout, tag) in kept {
        verify(block, tag);
        // SAFETY: live.
        unsafe { heap.deallocate(block.cast(), layout) };
        consistent(&heap);
    }
    heap.trim();
    consistent(&heap);
    assert_eq!(heap.stats().capacity, 0);
}

/// As for `GrowingTlsf`, `Heap::trim` over a `StaticSource` keeps the one static buffer.
#[test]
fn heap_trim_over_a_static_source_keeps_the_heap_usable() {
    let mut heap: Heap<StaticSource> = Heap::with_source(heapkit_core::static_source!(512 * 1024));
    let layout = Layout::from_size_align(32, 8).unwrap();
    let b = heap.allocate(layout).unwrap();
    // SAFETY: live.
    unsafe { heap.deallocate(b.cast(), layout) };
    heap.trim();
    assert!(
        heap.allocate(layout).is_ok(),
        "trimmed Heap<StaticSource> is dead"
    );
}
