//! The contract suite: the tests every backend runs, one function each, and the
//! [`contract_suite!`](crate::contract_suite) macro that instantiates them.

use heapkit_core::Layout;

use crate::{Harness, Profile, Regions, Subject};

/// Generates a test module running the whole contract suite against one allocator.
///
/// `make` is an expression of type `impl Fn(&mut Regions) -> A` where `A` is an adapter
/// ([`Local`](heapkit_core::Local) or [`Locked`](heapkit_core::Locked)) over the backend;
/// it takes the backend's memory from the [`Regions`] it is given. It is evaluated once
/// per test, and called once per harness.
///
/// Attributes before the name go on every test: a crate that runs the suite over several
/// region shapes of one backend marks the redundant ones
/// `#[cfg_attr(miri, ignore = "...")]`, so miri, which interprets every step, runs one or
/// two shapes and native runs all.
///
/// ```
/// use heapkit_core::Local;
/// use heapkit_testkit::{contract_suite, Profile, Reference};
///
/// contract_suite!(reference, Profile::default(), |_regions: &mut heapkit_testkit::Regions| {
///     Local::new(Reference::with_budget(64 * 1024))
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! contract_suite {
    ($(#[$attr:meta])* $name:ident, $profile:expr, $make:expr $(,)?) => {
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            #[test]
            fn random_operations() {
                $crate::contract::random_operations($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn serves_every_alignment_when_empty() {
                $crate::contract::serves_every_alignment_when_empty($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn fill_until_failure_then_free_all() {
                $crate::contract::fill_until_failure_then_free_all($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn frees_in_every_order_restore_the_heap() {
                $crate::contract::frees_in_every_order_restore_the_heap($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn resizing_keeps_contents() {
                $crate::contract::resizing_keeps_contents($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn impossible_requests_fail_cleanly() {
                $crate::contract::impossible_requests_fail_cleanly($profile, $make);
            }

            $(#[$attr])*
            #[test]
            fn zero_size_requests_never_reach_the_backend() {
                $crate::contract::zero_size_requests_never_reach_the_backend($profile, $make);
            }
        }
    };
}

fn expect_ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("contract violated: {e}"))
}

/// Number of random operation sequences: proptest's default (256, or `PROPTEST_CASES`)
/// natively, a handful under miri where every step is interpreted.
#[cfg(feature = "proptest")]
fn cases() -> u32 {
    if cfg!(miri) {
        4
    } else {
        proptest::test_runner::Config::default().cases
    }
}

/// Longest operation sequence generated.
#[cfg(feature = "proptest")]
fn max_ops() -> usize {
    if cfg!(miri) {
        24
    } else {
        300
    }
}

/// Runs random operation sequences through the shadow model and returns the first
/// (shrunk) violation, if any. The self-tests use this to show the kit catches bugs.
#[cfg(feature = "proptest")]
pub fn find_violation<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) -> Option<crate::RunError> {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::cell::RefCell;

    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let last_failure = RefCell::new(None);
    let outcome = TestRunner::new(config).run(&crate::op_sequences(max_ops()), |ops| {
        let mut harness = Harness::new(profile, &make);
        harness.run(&ops).map_err(|error| {
            let message = error.to_string();
            // Shrinking runs smaller failing cases after the first: the last one stored is
            // the minimal case proptest reports.
            *last_failure.borrow_mut() = Some(error);
            TestCaseError::fail(message)
        })
    });
    match outcome {
        Ok(()) => None,
        Err(error) => Some(
            last_failure
                .into_inner()
                .unwrap_or_else(|| panic!("proptest failed without a shadow violation: {error}")),
        ),
    }
}

/// Random alloc/free/grow/shrink sequences leave no violation.
#[cfg(feature = "proptest")]
pub fn random_operations<A: Subject>(profile: Profile, make: impl Fn(&mut Regions) -> A) {
    if let Some(error) = find_violation(profile, make) {
        panic!("contract violated; minimal failing sequence ends at {error}");
    }
}

/// Random sequences need proptest; without it the suite relies on the other tests.
#[cfg(not(feature = "proptest"))]
pub fn random_operations<A: Subject>(_profile: Profile, _make: impl Fn(&mut Regions) -> A) {}

/// Fresh, the allocator serves the profile's largest request at every alignment up to
/// the profile's largest, and a one-byte request at each alignment.
pub fn serves_every_alignment_when_empty<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) {
    let mut harness = Harness::new(profile, &make);
    let mut align = 1;
    while align <= profile.max_align {
        for size in [1, profile.max_size] {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            let served = expect_ok(harness.allocate(layout, false));
            assert!(served, "an empty allocator refused {layout:?}");
            expect_ok(harness.finish());
        }
        align *= 2;
    }
}

/// Allocating until the first refusal changes nothing at the refusal, and freeing all of
/// it afterwards restores the initial stats.
pub fn fill_until_failure_then_free_all<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) {
    let limit = if cfg!(miri) { 2_000 } else { 200_000 };
    // Under miri, small blocks would take too many interpreted steps to exhaust a region;
    // a growing allocator takes memory from its source in pieces of megabytes.
    let sizes: &[usize] = if cfg!(miri) || profile.grows {
        &[profile.max_size / 3, profile.max_size]
    } else {
        &[1, 24, profile.max_size / 3, profile.max_size, 8]
    };
    for size in sizes.iter().map(|s| (*s).clamp(1, profile.max_size.max(1))) {
        let mut harness = Harness::new(profile, &make);
        let layout = Layout::from_size_align(size, 8.min(profile.max_align)).expect("layout");
        let mut count = 0;
        while expect_ok(harness.allocate(layout, false)) {
            count += 1;
            assert!(
                count < limit,
                "allocator served {limit} blocks of {size} bytes without running out"
            );
        }
        assert!(count > 0, "an empty allocator refused {layout:?}");
        expect_ok(harness.finish());
    }
}

/// Blocks freed first-to-last, last-to-first and interleaved all return the allocator to
/// its initial stats (for merging allocators: fully coalesced).
pub fn frees_in_every_order_restore_the_heap<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) {
    use crate::Op;
    let count: u16 = if cfg!(miri) { 12 } else { 64 };
    let allocs: Vec<Op> = (0..u32::from(count))
        .map(|i| Op::Alloc {
            size: i.wrapping_mul(2_654_435_761),
            align: (i % 5) as u8,
            zeroed: false,
        })
        .collect();
    // `Free { slot }` picks `slot % live` and the harness swap-removes, so these three slot
    // choices free front-first (reshuffling), strictly last-to-first, and by a stride.
    let orders: [&dyn Fn(u16) -> u16; 3] = [&|_| 0, &|i| count - 1 - i, &|i| i.wrapping_mul(7)];
    for order in orders {
        let mut harness = Harness::new(profile, &make);
        let mut ops = allocs.clone();
        ops.extend((0..count).map(|i| Op::Free {
            slot: order(i),
            fit: i,
        }));
        expect_ok(harness.run(&ops));
    }
}

/// Grow and shrink, in place or moving, keep the bytes that must survive.
pub fn resizing_keeps_contents<A: Subject>(profile: Profile, make: impl Fn(&mut Regions) -> A) {
    use crate::Op;
    let mut ops = Vec::new();
    for round in 0..8u32 {
        ops.push(Op::Alloc {
            size: 4 * round + 1,
            align: round as u8,
            zeroed: round % 3 == 0,
        });
        ops.push(Op::Grow {
            slot: 0,
            by: round * 13,
            align: 0,
            zeroed: round % 2 == 0,
        });
        ops.push(Op::Grow {
            slot: round as u16,
            by: 4 * round + 3,
            align: 3,
            zeroed: false,
        });
        ops.push(Op::Shrink {
            slot: 1,
            to: round * 5 + 1,
        });
    }
    let mut harness = Harness::new(profile, &make);
    expect_ok(harness.run(&ops));
}

/// Requests no allocator can serve fail and leave it unchanged.
pub fn impossible_requests_fail_cleanly<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) {
    let mut harness = Harness::new(profile, &make);
    let capacity = harness.initial_stats().capacity;
    let huge = [
        Layout::from_size_align(isize::MAX as usize - 4095, 1).expect("layout"),
        // More than the capacity, or, for an allocator that grows, than any source gives.
        Layout::from_size_align(
            if profile.grows {
                isize::MAX as usize / 2
            } else {
                capacity.saturating_add(1).min(isize::MAX as usize / 2)
            },
            8,
        )
        .expect("layout"),
    ];
    for layout in huge {
        assert!(
            !expect_ok(harness.allocate(layout, false)),
            "{layout:?} was served from a capacity of {capacity} bytes"
        );
    }
    expect_ok(harness.finish());
}

/// Zero-size requests are answered by the adapter with aligned dangling pointers: the
/// backend's stats do not move.
pub fn zero_size_requests_never_reach_the_backend<A: Subject>(
    profile: Profile,
    make: impl Fn(&mut Regions) -> A,
) {
    let mut harness = Harness::new(profile, &make);
    let before = harness.allocator().stats();
    let mut align = 1;
    while align <= profile.max_align {
        let layout = Layout::from_size_align(0, align).expect("layout");
        assert!(expect_ok(harness.allocate(layout, align % 2 == 0)));
        align *= 2;
    }
    assert_eq!(harness.allocator().stats(), before);
    expect_ok(harness.finish());
}
