//! `Locked<Reference>` driven through the shadow model: the fuzz plumbing every backend's
//! target repeats with its own allocator.
#![no_main]

use heapkit_core::Locked;
use heapkit_testkit::{Harness, Op, Profile, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<Op>| {
    let mut harness = Harness::new(Profile::default(), |_regions| {
        Locked::new(Reference::with_budget(64 * 1024))
    });
    if let Err(error) = harness.run(&ops) {
        panic!("{error}");
    }
});
