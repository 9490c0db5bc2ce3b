#![doc = include_str!("../README.md")]
#![no_std]

pub mod classes;
pub mod geometry;
mod heap;
mod segment;

#[cfg(all(feature = "std", not(loom)))]
mod global;

pub use heap::{keeps_block, LocalHeap, ShardedHeap, ThreadHeap};

#[cfg(all(feature = "std", not(loom)))]
pub use global::Sharded;
