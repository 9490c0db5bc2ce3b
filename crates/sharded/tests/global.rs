//! The thread-local front, `Sharded`, as the global allocator of this test binary:
//! collections on several threads, and allocation through thread exit.
//!
//! Not built under miri, like every global-allocator test here: `std::boxed::Box` hands
//! its pointer back to `dealloc` with a borrow tag covering the box's bytes only, and the
//! heap finds the block's segment header through that pointer, which Stacked and Tree
//! Borrows reject (rust-lang/unsafe-code-guidelines#256). `threads.rs` runs the same heap
//! under miri through raw pointers.
#![cfg(not(miri))]

use std::cell::RefCell;
use std::ptr::NonNull;

use heapkit_core::Inspect;
use heapkit_sharded::Sharded;

// Everything this binary allocates, the test harness included, goes through the
// thread-caching front.
#[global_allocator]
static GLOBAL: Sharded = Sharded::new();

struct AllocatesOnExit(RefCell<Vec<Box<[u8]>>>);

impl Drop for AllocatesOnExit {
    fn drop(&mut self) {
        // Runs after the thread's heap is gone: frees blocks that heap allocated and
        // allocates new ones, all through the locked fallback.
        let old = self.0.take();
        let fresh: Vec<Box<[u8]>> = (0..100).map(|i| vec![i as u8; 100 + i].into()).collect();
        for (i, b) in fresh.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8));
        }
        drop(old);
        drop(fresh);
    }
}

thread_local! {
    static ON_EXIT: AllocatesOnExit = const { AllocatesOnExit(RefCell::new(Vec::new())) };
}

/// Thread-local destructors that run after the heap's own (registered before it, so
/// torn down after it) still allocate and free: the calls fall back to the locked heap.
#[test]
fn allocation_works_while_and_after_thread_locals_are_torn_down() {
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                // Registered first: its destructor runs after the heap's.
                ON_EXIT.with(|on_exit| on_exit.0.borrow_mut().push(vec![t; 10].into()));
                let mut blocks: Vec<Box<[u8]>> = Vec::new();
                for i in 0..1000 {
                    blocks.push(vec![i as u8; i % 300 + 1].into());
                }
                ON_EXIT.with(|on_exit| on_exit.0.borrow_mut().extend(blocks));
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

/// The global front serves collections from several threads at once.
#[test]
fn the_global_front_serves_collections_on_every_thread() {
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut map = std::collections::HashMap::new();
                for i in 0..if cfg!(miri) { 100 } else { 20_000 } {
                    map.insert(i, format!("{t}-{i}"));
                }
                map.retain(|k, _| k % 3 == 0);
                map.values().map(String::len).sum::<usize>()
            })
        })
        .collect();
    let lengths: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(lengths.windows(2).all(|w| w[0] == w[1]));
    assert!(GLOBAL.owns(NonNull::from(&*Box::new(5u8))));
}
