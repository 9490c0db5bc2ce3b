#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(any(loom, test))]
extern crate std;

mod arena;
mod atomic;
mod levels;
mod tree;

pub use arena::BitmapArena;
pub use atomic::AtomicBitmap;
