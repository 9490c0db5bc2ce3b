#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(loom)]
extern crate std;

#[macro_use]
mod forward;
mod adapters;
mod backend;
pub mod bits;
mod error;
pub mod hint;
mod lent;
pub mod region;
pub mod resize;
mod shared;
pub mod source;
pub mod sync;

pub use adapters::{Local, Locked, LockedRef};
/// The `allocator-api2` crate (0.2) whose [`Allocator`] heapkit's adapters implement, so
/// its collections need no version guess: `heapkit_core::allocator_api2::vec::Vec::new_in`.
///
/// ```
/// use heapkit_core::allocator_api2::vec::Vec;
/// use heapkit_core::Local;
/// use heapkit_testkit::Reference;
///
/// let heap = Local::new(Reference::with_budget(4096));
/// let mut v = Vec::new_in(&heap);
/// v.extend([1, 2, 3]);
/// assert_eq!(v.iter().sum::<i32>(), 6);
/// ```
pub use allocator_api2;
pub use allocator_api2::alloc::{AllocError, Allocator};
pub use backend::{Backend, Inspect, Stats};
pub use error::{invalid_use, ConfigError, Corruption};
pub use lent::{FromRegion, Lent};
pub use shared::{Shared, SharedBackend};
pub use source::Source;

pub use core::alloc::Layout;
