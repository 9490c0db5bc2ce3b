#![doc = include_str!("../README.md")]
#![no_std]

mod class;
mod growing;
mod tlsf;

pub use class::{GRANULE, MIN_BLOCK};
pub use growing::GrowingTlsf;
pub use tlsf::{Tlsf, DEFAULT_FL, DEFAULT_SL};
