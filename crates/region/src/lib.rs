#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(test)]
extern crate std;

mod bump;
mod scope;
mod typed;

pub use bump::Bump;
pub use scope::{Guard, Mark};
