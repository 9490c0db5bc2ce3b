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
pub mod region;
pub mod resize;
mod shared;
pub mod source;
pub mod sync;

pub use adapters::{Local, Locked, LockedRef};
pub use allocator_api2::alloc::{AllocError, Allocator};
pub use backend::{Backend, Inspect, Stats};
pub use error::{invalid_use, ConfigError, Corruption};
pub use shared::{Shared, SharedBackend};
pub use source::Source;

pub use core::alloc::Layout;
