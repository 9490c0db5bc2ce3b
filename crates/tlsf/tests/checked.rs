//! With `checked`, every invalid free or resize panics naming the crate, the operation,
//! the address and the problem, before anything changes.
#![cfg(feature = "checked")]

use core::alloc::Layout;
use core::ptr::NonNull;

use heapkit_core::Backend;
use heapkit_testkit::{panic_message, Regions};
use heapkit_tlsf::Tlsf;

fn heap(regions: &mut Regions) -> Tlsf {
    let mut heap = Tlsf::new();
    let region = regions.take(64 * 1024, 4096);
    // SAFETY: `regions` outlives the heap.
    unsafe { heap.add_region(region.cast(), 64 * 1024) }.unwrap();
    heap
}

const L: Layout = match Layout::from_size_align(100, 8) {
    Ok(layout) => layout,
    Err(_) => panic!(),
};

fn expect(message: &str, operation: &str, address: NonNull<u8>, reason: &str) {
    let prefix = format!(
        "heapkit-tlsf: invalid {operation} of {:p}: ",
        address.as_ptr()
    );
    assert!(message.starts_with(&prefix), "{message:?} lacks {prefix:?}");
    assert!(message.contains(reason), "{message:?} lacks {reason:?}");
}

#[test]
fn double_free() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let block = heap.allocate(L).unwrap().cast::<u8>();
    // SAFETY: live block.
    unsafe { heap.deallocate(block, L) };
    let before = heap.stats();
    // SAFETY: deliberately invalid; `checked` must catch it before touching anything.
    let message = panic_message(|| unsafe { heap.deallocate(block, L) });
    expect(
        &message,
        "deallocate",
        block,
        "no allocated block starts here",
    );
    assert_eq!(heap.stats(), before);
}

#[test]
fn foreign_pointer() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let mut elsewhere = [0u64; 4];
    let foreign = NonNull::from(&mut elsewhere[2]).cast::<u8>();
    // SAFETY: deliberately invalid.
    let message = panic_message(|| unsafe { heap.deallocate(foreign, L) });
    expect(
        &message,
        "deallocate",
        foreign,
        "not in memory this allocator manages",
    );
}

#[test]
fn interior_pointer() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let block = heap.allocate(L).unwrap().cast::<u8>();
    // SAFETY: 32 bytes into a 100-byte block.
    let inside = unsafe { block.add(32) };
    let message = panic_message(|| {
        // SAFETY: deliberately invalid.
        let _ = unsafe { heap.grow_in_place(inside, L, L) };
    });
    expect(&message, "grow", inside, "a pointer into a block");
}

#[test]
fn corrupted_header() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let block = heap.allocate(L).unwrap().cast::<u8>();
    // A buffer underrun overwrites the header word before the payload.
    // SAFETY: the header word is inside the region; we corrupt it on purpose.
    unsafe { block.cast::<usize>().sub(1).write(0xdead_beef_0000) };
    // SAFETY: deliberately invalid.
    let message = panic_message(|| unsafe { heap.deallocate(block, L) });
    expect(&message, "deallocate", block, "block header is corrupted");
}

#[test]
fn layout_larger_than_the_block() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let block = heap.allocate(L).unwrap().cast::<u8>();
    let wrong = Layout::from_size_align(4000, 8).unwrap();
    let message = panic_message(|| {
        // SAFETY: deliberately invalid.
        let _ = unsafe { heap.shrink_in_place(block, wrong, L) };
    });
    expect(&message, "shrink", block, "layout is larger than the block");
}

#[test]
fn valid_use_passes_every_check() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let empty = heap.stats();
    let blocks: Vec<_> = (1..50)
        .map(|i| {
            let l = Layout::from_size_align(i * 24, 1 << (i % 7)).unwrap();
            (heap.allocate(l).unwrap().cast::<u8>(), l)
        })
        .collect();
    for &(block, l) in blocks
        .iter()
        .rev()
        .step_by(2)
        .chain(blocks.iter().skip(1).step_by(2))
    {
        // SAFETY: each block freed once with its layout.
        unsafe { heap.deallocate(block, l) };
    }
    assert_eq!(heap.stats(), empty);
}

#[test]
fn allocated_size_answers_for_any_pointer() {
    let mut regions = Regions::new();
    let mut heap = heap(&mut regions);
    let block = heap.allocate(L).unwrap().cast::<u8>();
    assert!(heap.allocated_size(block).is_some_and(|size| size >= 100));
    // The pointer every empty `Vec<u8>` holds (its address less a word wrapped), one a
    // byte into the region's first block, and the region's last byte: none starts a block.
    let region_start = regions.bounds()[0].start;
    let region_end = regions.bounds()[0].end;
    for address in [1, region_start + 1, region_end - 1, usize::MAX] {
        let ptr = NonNull::new(block.as_ptr().with_addr(address)).unwrap();
        assert_eq!(heap.allocated_size(ptr), None, "{address:#x}");
    }
}
