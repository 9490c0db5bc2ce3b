//! The test kit every heapkit backend is checked with: a shadow model of live blocks, a
//! contract suite instantiated by one macro call, and [`Reference`], a backend on the system
//! allocator that passes it.
//!
//! ```
//! use heapkit_core::Local;
//! use heapkit_testkit::{Harness, Op, Profile, Reference};
//!
//! let mut harness = Harness::new(Profile::default(), |_regions| {
//!     Local::new(Reference::with_budget(1 << 16))
//! });
//! let ops = [
//!     Op::Alloc { size: 100, align: 3, zeroed: false },
//!     Op::Grow { slot: 0, by: 4000, align: 0, zeroed: true },
//!     Op::Free { slot: 0, fit: 0 },
//! ];
//! harness.run(&ops).expect("the reference allocator keeps the contract");
//! ```
//!
//! What the shadow model checks after every step, and how a backend runs the suite, is
//! described on [`Harness`] and [`contract_suite!`]. Fuzz targets feed [`Op`]s decoded
//! with `arbitrary` to the same [`Harness`].

mod ops;
mod reference;
mod regions;
mod shadow;

pub mod contract;

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
