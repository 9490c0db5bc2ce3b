//! The shared core of heapkit: the [`Backend`] trait every allocator implements, the
//! [`Local`] and [`Locked`] adapters that turn a backend into an
//! [`allocator_api2::alloc::Allocator`] or a `#[global_allocator]`, the [`sync`] shim that
//! lets loom model-check heapkit's concurrent code, and the [`ConfigError`] type.
//!
//! A backend is a plain single-owner data structure. This one hands out memory from a
//! buffer and never reuses it (a bump allocator), which is enough to allocate a `Vec`:
//!
//! ```
//! use core::{alloc::Layout, mem::MaybeUninit, ptr::NonNull};
//! use allocator_api2::{alloc::AllocError, vec::Vec};
//! use heapkit_core::{Backend, Local, Stats};
//!
//! struct Bump {
//!     buffer: &'static mut [MaybeUninit<u8>],
//!     used: usize,
//! }
//!
//! // SAFETY: blocks come from distinct, aligned, in-bounds parts of `buffer`.
//! unsafe impl Backend for Bump {
//!     fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
//!         let base = self.buffer.as_mut_ptr().cast::<u8>();
//!         let pad = base.wrapping_add(self.used).align_offset(layout.align());
//!         let start = self.used.checked_add(pad).ok_or(AllocError)?;
//!         let end = start.checked_add(layout.size()).ok_or(AllocError)?;
//!         if end > self.buffer.len() {
//!             return Err(AllocError);
//!         }
//!         self.used = end;
//!         let block = NonNull::new(base.wrapping_add(start)).ok_or(AllocError)?;
//!         Ok(NonNull::slice_from_raw_parts(block, layout.size()))
//!     }
//!
//!     unsafe fn deallocate(&mut self, _: NonNull<u8>, _: Layout) {}
//!
//!     fn owns(&self, ptr: NonNull<u8>) -> bool {
//!         self.buffer.as_ptr_range().contains(&ptr.as_ptr().cast_const().cast())
//!     }
//!
//!     fn stats(&self) -> Stats {
//!         let free = self.buffer.len() - self.used;
//!         // Freed blocks are never reused, so they count as neither in use nor free.
//!         Stats { capacity: self.buffer.len(), in_use: 0, free, largest_free: free, metadata: self.used }
//!     }
//! }
//!
//! static mut BUFFER: [MaybeUninit<u8>; 4096] = [MaybeUninit::uninit(); 4096];
//! // SAFETY: the only reference ever made to BUFFER.
//! let buffer = unsafe { &mut *core::ptr::addr_of_mut!(BUFFER) };
//! let heap = Local::new(Bump { buffer, used: 0 });
//!
//! let mut words = Vec::new_in(&heap);
//! words.extend(["buddy", "pool", "tlsf"]);
//! assert_eq!(words.join("+"), "buddy+pool+tlsf");
//! assert!(heap.stats().free < 4096);
//! ```
//!
//! # Features
//!
//! - `checked`: the adapters check every free and resize against [`Backend::owns`] and
//!   panic naming the address on a foreign pointer. Backends have a feature of the same name
//!   for the checks only they can make (double free, wrong layout).
//! - `std`: enables `allocator-api2`'s `std` support; heapkit-core itself needs only `core`.

#![no_std]

mod adapters;
mod backend;
mod error;
pub mod resize;
pub mod sync;

pub use adapters::{Local, Locked};
pub use allocator_api2::alloc::{AllocError, Allocator};
pub use backend::{Backend, Stats};
pub use error::{invalid_free, ConfigError};

pub use core::alloc::Layout;
