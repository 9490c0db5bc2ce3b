//! With `checked`, a report must come back as a panic, whatever heap the panic machinery
//! itself allocates from: an invalid free through the locked heap, when that heap is the
//! global allocator, is validated before the lock is taken (else the panic's own
//! allocation spins on the lock forever); and a report on a thread's own heap leaves the
//! thread on that heap afterwards. (Both found by adversarial review.)
#![cfg(all(feature = "checked", not(miri)))]

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::time::Duration;

use heapkit_core::source::SystemSource;
use heapkit_core::{Allocator, Shared, SharedBackend};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::{Sharded, ShardedHeap};

#[global_allocator]
static GLOBAL: Shared<ShardedHeap<SystemSource>> =
    Shared::new(ShardedHeap::new(SystemSource::new(SEGMENT)));

#[test]
fn an_invalid_free_through_the_locked_heap_is_reported() {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid layout.
        let block = unsafe { GLOBAL.alloc(layout) };
        let caught = std::panic::catch_unwind(|| {
            // SAFETY: deliberately invalid (an interior pointer): `checked` reports it.
            unsafe { GLOBAL.dealloc(block.add(8), layout) }
        });
        done.send(caught.is_err()).unwrap();
    });
    assert_eq!(
        wait.recv_timeout(Duration::from_secs(20)),
        Ok(true),
        "the checked report never came back (deadlock on the locked heap)"
    );
}

#[test]
fn a_report_on_a_threads_heap_leaves_the_thread_on_it() {
    std::thread::spawn(|| {
        let sharded = Sharded::new();
        let layout = Layout::from_size_align(64, 8).unwrap();
        let block = sharded.allocate(layout).unwrap().cast::<u8>();
        // SAFETY: stays inside the block.
        let inside = unsafe { block.add(8) };
        let caught = std::panic::catch_unwind(|| {
            // SAFETY: deliberately invalid: `checked` reports it with a panic.
            unsafe { sharded.deallocate(inside, layout) }
        });
        assert!(caught.is_err());
        let locked = || SharedBackend::stats(Sharded::process_heap()).in_use;
        let before = locked();
        let blocks: Vec<_> = (0..100)
            .map(|_| sharded.allocate(layout).unwrap())
            .collect();
        assert_eq!(
            before,
            locked(),
            "the thread's calls went to the locked heap"
        );
        for b in blocks.into_iter().map(NonNull::cast::<u8>).chain([block]) {
            // SAFETY: live blocks of this heap, freed once.
            unsafe { sharded.deallocate(b, layout) };
        }
    })
    .join()
    .unwrap();
}
