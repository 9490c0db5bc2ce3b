#![doc = include_str!("../README.md")]
#![no_std]

mod buddy;

pub use buddy::Buddy;
