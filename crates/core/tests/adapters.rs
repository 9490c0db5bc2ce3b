//! The adapters as callers use them: collections, `GlobalAlloc`, zero-size requests,
//! resizing in place and by moving, and the `checked` ownership test.

use core::alloc::GlobalAlloc;
use core::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_core::{Layout, Local, Locked};
use heapkit_testkit::Reference;

#[test]
fn hashbrown_map_allocates_through_local() {
    let heap = Local::new(Reference::with_budget(1 << 20));
    let mut map = hashbrown::HashMap::new_in(&heap);
    for i in 0..1000u32 {
        map.insert(i, i * i);
    }
    assert_eq!(map.len(), 1000);
    assert_eq!(map[&31], 961);
    assert!(heap.stats().in_use > 1000 * 8);
    map.retain(|k, _| k % 2 == 0);
    map.shrink_to_fit();
    assert_eq!(map.values().filter(|v| **v % 2 == 1).count(), 0);
    drop(map);
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn vec_in_local_fails_cleanly_when_the_budget_is_gone() {
    let heap = Local::new(Reference::with_budget(256));
    let mut v = allocator_api2::vec::Vec::<u8, _>::new_in(&heap);
    assert!(v.try_reserve_exact(128).is_ok());
    assert!(v.try_reserve_exact(4096).is_err());
    assert_eq!(v.capacity(), 128);
    assert_eq!(heap.stats().in_use, 128);
}

#[test]
fn zero_size_requests_are_dangling_and_aligned() {
    let heap = Local::new(Reference::with_budget(1024));
    for align in [1, 8, 64, 4096] {
        let layout = Layout::from_size_align(0, align).unwrap();
        let block = heap.allocate(layout).unwrap();
        assert_eq!(block.len(), 0);
        assert_eq!(block.cast::<u8>().as_ptr().addr(), align);
        // SAFETY: freeing what was just handed out, with its layout.
        unsafe { heap.deallocate(block.cast(), layout) };
    }
    assert_eq!(heap.stats().in_use, 0);

    // Growing a zero-size block is a fresh allocation.
    let zero = Layout::from_size_align(0, 16).unwrap();
    let block = heap.allocate(zero).unwrap();
    let sixteen = Layout::from_size_align(16, 16).unwrap();
    // SAFETY: `block` is live with layout `zero`, and the new size is larger.
    let grown = unsafe { heap.grow_zeroed(block.cast(), zero, sixteen) }.unwrap();
    assert!(grown.len() >= 16);
    // SAFETY: `grown` is live with 16 initialised (zeroed) bytes.
    assert!(unsafe { grown.as_ref() }.iter().all(|b| *b == 0));
    // Shrinking to zero frees it.
    // SAFETY: `grown` is live with layout `sixteen`.
    let gone = unsafe { heap.shrink(grown.cast(), sixteen, zero) }.unwrap();
    assert_eq!(gone.len(), 0);
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn grow_stays_in_place_when_the_backend_can() {
    let heap = Local::new(Reference::with_budget(1024));
    // The reference rounds usable sizes up to 8 bytes and grows in place within that.
    let small = Layout::from_size_align(3, 1).unwrap();
    let block = heap.allocate(small).unwrap();
    let ptr = block.cast::<u8>();
    // SAFETY: three writable bytes.
    unsafe {
        ptr.as_ptr()
            .copy_from_nonoverlapping([1u8, 2, 3].as_ptr(), 3)
    };
    let seven = Layout::from_size_align(7, 1).unwrap();
    // SAFETY: `ptr` is live with layout `small`.
    let grown = unsafe { heap.grow(ptr, small, seven) }.unwrap();
    assert_eq!(
        grown.cast::<u8>(),
        ptr,
        "a grow within the usable size must not move"
    );
    let far = Layout::from_size_align(100, 1).unwrap();
    // SAFETY: `ptr` is live with layout `seven`.
    let moved = unsafe { heap.grow(ptr, seven, far) }.unwrap();
    // SAFETY: the first three bytes were carried over.
    assert_eq!(unsafe { &moved.as_ref()[..3] }, &[1, 2, 3]);
    // SAFETY: live with layout `far`.
    unsafe { heap.deallocate(moved.cast(), far) };
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn global_alloc_realloc_keeps_contents_both_ways() {
    let heap = Locked::new(Reference::with_budget(1 << 16));
    let layout = Layout::from_size_align(64, 16).unwrap();
    // SAFETY: the layout has a non-zero size; every pointer below is used within its size.
    unsafe {
        let ptr = heap.alloc_zeroed(layout);
        assert!(!ptr.is_null());
        assert!((0..64).all(|i| ptr.add(i).read() == 0));
        for i in 0..64 {
            ptr.add(i).write(i as u8);
        }
        let grown = heap.realloc(ptr, layout, 1000);
        assert!(!grown.is_null());
        assert_eq!(grown.addr() % 16, 0);
        assert!((0..64).all(|i| grown.add(i).read() == i as u8));
        let big = Layout::from_size_align(1000, 16).unwrap();
        let shrunk = heap.realloc(grown, big, 10);
        assert!((0..10).all(|i| shrunk.add(i).read() == i as u8));
        heap.dealloc(shrunk, Layout::from_size_align(10, 16).unwrap());
        // Out of budget: null, and nothing changes.
        let before = heap.stats();
        assert!(heap
            .alloc(Layout::from_size_align(1 << 20, 8).unwrap())
            .is_null());
        assert_eq!(heap.stats(), before);
    }
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn locked_is_shared_across_threads() {
    let heap = Locked::new(Reference::with_budget(1 << 20));
    std::thread::scope(|scope| {
        for t in 0..2u8 {
            let heap = &heap;
            scope.spawn(move || {
                let rounds = if cfg!(miri) { 20 } else { 200 };
                for round in 0..rounds {
                    let mut v = allocator_api2::vec::Vec::new_in(heap);
                    v.resize(round % 97 + 1, t);
                    assert!(v.iter().all(|b| *b == t));
                }
            });
        }
    });
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn lock_gives_read_access_and_excludes() {
    let heap = Locked::new(Reference::with_budget(100));
    let guard = heap.lock();
    assert_eq!(guard.capacity_hint(), 100);
    drop(guard);
    // SAFETY: nothing was allocated, and the backend is only read.
    let guard = unsafe { heap.lock_mut() };
    assert_eq!(guard.capacity_hint(), 100);
    drop(guard);
    let mut heap = heap;
    // SAFETY: as above.
    assert_eq!(unsafe { heap.get_mut() }.capacity_hint(), 100);
}

/// Reads the budget through the `Backend` trait, as set-up code would.
trait CapacityHint {
    fn capacity_hint(&self) -> usize;
}

impl<B: heapkit_core::Backend> CapacityHint for B {
    fn capacity_hint(&self) -> usize {
        self.stats().capacity
    }
}

#[cfg(feature = "checked")]
#[test]
fn checked_adapters_reject_foreign_pointers() {
    let heap = Local::new(Reference::with_budget(1024));
    let mut outside = [0u8; 8];
    let foreign = NonNull::from(&mut outside).cast::<u8>();
    let layout = Layout::from_size_align(8, 1).unwrap();
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: deliberately invalid; the checked adapter must refuse it before the
        // backend sees it.
        unsafe { heap.deallocate(foreign, layout) }
    }))
    .unwrap_err();
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("heapkit-core: invalid deallocate of 0x"),
        "{message}"
    );
    assert!(message.ends_with("pointer is not in memory this allocator manages"));
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn owns_answers_for_live_memory_only() {
    let heap = Local::new(Reference::with_budget(1024));
    let layout = Layout::from_size_align(32, 8).unwrap();
    let block = heap.allocate(layout).unwrap();
    let inside = block.cast::<u8>();
    assert!(heap.owns(inside));
    let stack = 0u64;
    assert!(!heap.owns(NonNull::from(&stack).cast()));
    // SAFETY: live with `layout`.
    unsafe { heap.deallocate(inside, layout) };
}
