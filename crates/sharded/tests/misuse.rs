//! Misuse from safe code is refused with a panic, never undefined behaviour: a
//! `LocalHeap` called with a `ShardedHeap` it does not belong to, used before it is
//! assigned, or assigned twice; and, with `checked`, frees of pointers that are not blocks
//! in use, which are reported (naming the crate and the address) before anything around
//! them is read. Races between a remote free (and its `checked` validation) and the
//! owner's page updates run under miri here too. (Found by adversarial review.)

use std::ptr::NonNull;

use heapkit_core::source::SystemSource;
use heapkit_core::Layout;
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::{LocalHeap, ShardedHeap};
use heapkit_testkit::panic_message;

const L: Layout = Layout::new::<u64>();

fn shared() -> ShardedHeap<SystemSource> {
    ShardedHeap::new(SystemSource::new(SEGMENT))
}

#[test]
fn a_local_heap_refuses_a_shared_heap_it_does_not_belong_to() {
    let (a, b) = (shared(), shared());
    let mut heap = a.local_heap();
    let block = heap.allocate(&a, L).unwrap().cast::<u8>();
    let message = panic_message(|| {
        let _ = heap.allocate(&b, L);
    });
    assert!(message.contains("does not belong"), "{message}");
    // SAFETY: a live block of `a`'s heap; the call panics before touching it.
    let message = panic_message(|| unsafe { heap.deallocate(&b, block, L) });
    assert!(message.contains("does not belong"), "{message}");
    let message = panic_message(|| heap.collect(&b));
    assert!(message.contains("does not belong"), "{message}");
    // Nothing changed: the block is still ours, and goes back to `a`.
    heap.check().unwrap();
    // SAFETY: as above.
    unsafe { heap.deallocate(&a, block, L) };
    heap.abandon(&a);
    assert_eq!(a.mapped(), 0);
}

#[test]
fn an_unassigned_heap_refuses_every_call_until_assigned() {
    let shared = shared();
    let mut heap = LocalHeap::unassigned();
    let message = panic_message(|| {
        let _ = heap.allocate(&shared, L);
    });
    assert!(message.contains("before it was assigned"), "{message}");
    shared.assign(&mut heap);
    let block = heap.allocate(&shared, L).unwrap().cast::<u8>();
    let message = panic_message(|| shared.assign(&mut heap));
    assert!(message.contains("assigned once"), "{message}");
    // SAFETY: a live block of this heap, freed once.
    unsafe { heap.deallocate(&shared, block, L) };
    heap.abandon(&shared);
    // An unassigned heap holds nothing: giving it up is a no-op with any shared heap.
    LocalHeap::unassigned().abandon(&shared);
}

/// A block crossing threads.
struct Sent(NonNull<u8>);
// SAFETY: handed over whole.
unsafe impl Send for Sent {}

/// A remote free (validated under `checked`) while the owner carves and frees blocks of
/// the same page: the freeing thread reads only fields that stay put while the page is in
/// use, and never the page as a whole.
#[test]
fn a_remote_free_runs_beside_the_owners_page_updates() {
    let shared = shared();
    let shared = &shared;
    std::thread::scope(|scope| {
        let mut owner = shared.local_heap();
        let given = Sent(owner.allocate(shared, L).unwrap().cast());
        let freer = scope.spawn(move || {
            let mut other = shared.local_heap();
            let given = given;
            // SAFETY: a live block handed over, freed once.
            unsafe { other.deallocate(shared, given.0, L) };
            other.abandon(shared);
        });
        let mine: Vec<_> = (0..16)
            .map(|_| owner.allocate(shared, L).unwrap())
            .collect();
        freer.join().unwrap();
        for block in mine {
            // SAFETY: ours, freed once.
            unsafe { owner.deallocate(shared, block.cast(), L) };
        }
        owner.collect(shared);
        owner.abandon(shared);
    });
    assert_eq!(shared.mapped(), 0);
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;
    use heapkit_core::Backend;

    fn reported(message: &str) {
        assert!(
            message.starts_with("heapkit-sharded: invalid deallocate"),
            "{message}"
        );
    }

    #[test]
    fn frees_of_foreign_and_interior_pointers_are_reported() {
        let shared = shared();
        let mut heap = shared.thread_heap();
        let mut elsewhere = Box::new([0u64; 4]);
        let foreign = NonNull::from(&mut elsewhere[1]).cast::<u8>();
        // SAFETY: deliberately invalid: `checked` reports it before reading around it.
        reported(&panic_message(|| unsafe { heap.deallocate(foreign, L) }));
        let block = heap.allocate(L).unwrap().cast::<u8>();
        // SAFETY: inside the block; deliberately invalid.
        let inside = unsafe { block.add(4) };
        // SAFETY: as above.
        reported(&panic_message(|| unsafe { heap.deallocate(inside, L) }));
        let huge = Layout::from_size_align(1 << 20, 8).unwrap();
        let big = heap.allocate(huge).unwrap().cast::<u8>();
        // SAFETY: inside the huge block; deliberately invalid.
        reported(&panic_message(|| unsafe {
            heap.deallocate(big.add(64), huge)
        }));
        // SAFETY: the real blocks, freed once.
        unsafe {
            heap.deallocate(block, L);
            heap.deallocate(big, huge);
        }
        heap.check().unwrap();
    }
}
