#![doc = include_str!("../README.md")]

mod ops;
mod reference;
mod regions;
mod shadow;

pub mod chunks;
pub mod contract;
pub mod edges;

pub use chunks::ChunkSource;
#[cfg(feature = "proptest")]
pub use ops::op_sequences;
pub use ops::{Op, Profile};
pub use reference::Reference;
pub use regions::Regions;
pub use shadow::{Harness, RunError, Subject, Violation};

/// Runs `f`, which must panic, and returns its panic message; for testing the `checked`
/// reports (`heapkit-pool: invalid deallocate of 0x…: block is already free`).
///
/// # Panics
///
/// If `f` returns normally.
#[track_caller]
pub fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("expected a panic, but the call returned");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}
