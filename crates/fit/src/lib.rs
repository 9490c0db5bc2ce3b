#![doc = include_str!("../README.md")]
#![no_std]

mod headerless;
mod heap;
mod policy;
mod slob;
mod smallest;
mod tree;

pub use headerless::HeaderlessHeap;
pub use heap::{Deferred, FitHeap, GRANULE, QUICK_BINS};
pub use policy::{AddressOrderedFirstFit, BestFit, FirstFit, NextFit, Policy, TreePolicy};
pub use slob::{Slob, SLOB_PAGE, SLOB_UNIT};
