#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(any(loom, test))]
extern crate std;

#[cfg(target_has_atomic = "64")]
mod atomic;
mod pool;
mod shape;

#[cfg(target_has_atomic = "64")]
pub use atomic::AtomicPool;
pub use pool::Pool;
