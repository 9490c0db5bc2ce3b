#![doc = include_str!("../README.md")]
#![no_std]

mod bucketizer;
mod counted;
mod fallback;
mod heap;
mod segregator;

pub use bucketizer::Bucketizer;
pub use counted::{Counted, Counts, SIZE_BUCKETS};
pub use fallback::Fallback;
pub use heap::{Heap, CHUNK, CLASSES, SLAB_ALIGN, SLAB_LIMIT};
pub use segregator::Segregator;

use core::ptr::NonNull;

use heapkit_core::Backend;

/// With `checked`, panics unless the child a free or resize was routed to owns `ptr`: a
/// layout that routes a block to the wrong child is caught here, before the child is
/// handed memory it never gave out. `child_name` says which child ("small", "large").
#[inline(always)]
#[track_caller]
fn check_routed<B: Backend + ?Sized>(
    child: &B,
    ptr: NonNull<u8>,
    operation: &str,
    child_name: &str,
) {
    if cfg!(feature = "checked") && !child.owns(ptr) {
        routing_failed(ptr, operation, child_name);
    }
}

/// Reports a block whose layout routes it to a child that did not allocate it.
#[cold]
#[inline(never)]
#[track_caller]
fn routing_failed(ptr: NonNull<u8>, operation: &str, child_name: &str) -> ! {
    panic!(
        "heapkit-segregated: invalid {operation} of {:p}: its layout routes it to the \
         {child_name} allocator, which does not own it",
        ptr.as_ptr()
    )
}
