//! `Pool` and `AtomicPool` (as a backend) with fuzzed block geometry, driven through the
//! shadow model.
#![no_main]

use arbitrary::Arbitrary;
use heapkit_core::Local;
use heapkit_pool::{AtomicPool, Pool};
use heapkit_testkit::{Harness, Op, Profile};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    atomic: bool,
    /// Block size 8..=263 bytes.
    size: u8,
    /// Block alignment 1..=64.
    align_shift: u8,
    /// Region of up to 64 KiB.
    region_kib: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let size = 8 + usize::from(input.size);
    let align = 1 << (input.align_shift % 7);
    let len = 1024 * (1 + usize::from(input.region_kib % 64));
    let profile = Profile::new(size, align);
    let result = if input.atomic {
        Harness::new(profile, |regions| {
            let region = regions.take(len, align);
            // SAFETY: the harness drops the pool before the region.
            Local::new(unsafe { AtomicPool::from_raw(region.cast(), len, size, align) }.unwrap())
        })
        .run(&input.ops)
    } else {
        Harness::new(profile, |regions| {
            let region = regions.take(len, align);
            // SAFETY: the harness drops the pool before the region.
            Local::new(unsafe { Pool::from_raw(region.cast(), len, size, align) }.unwrap())
        })
        .run(&input.ops)
    };
    if let Err(error) = result {
        panic!("{error}");
    }
});
