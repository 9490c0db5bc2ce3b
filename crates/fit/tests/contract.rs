//! The contract suite for every policy: an aligned region through `Local` and `Locked`,
//! a misaligned odd-sized one, two regions, a lent buffer, and deferred coalescing.

use core::ptr::NonNull;

use heapkit_core::{Local, Locked};
use heapkit_fit::{AddressOrderedFirstFit, BestFit, Deferred, FirstFit, FitHeap, NextFit, Policy};
use heapkit_testkit::{contract_suite, Profile, Regions};

mod common;
use common::{lent, odd, two_regions, REGION};

fn aligned<P: Policy, const D: bool>(regions: &mut Regions) -> FitHeap<P, D> {
    common::heap(regions, REGION, 4096)
}

const PROFILE: Profile = Profile::new(4096, 4096);

macro_rules! policy_suites {
    ($module:ident, $policy:ty $(, #[$miri:meta])?) => {
        mod $module {
            use super::*;

            // Under miri, which interprets every step, deferred best fit (below) runs the
            // heap, the tree code and the quick lists, and SLOB its own; the list policies
            // run under miri in tests/model.rs. The rest run natively.
            contract_suite!(
                $(#[$miri])?
                local_aligned,
                PROFILE,
                |r: &mut Regions| Local::new(aligned::<$policy, false>(r))
            );
            contract_suite!(
                #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
                locked_odd_region,
                PROFILE,
                |r: &mut Regions| Locked::new(odd::<FitHeap<$policy>>(r))
            );
            contract_suite!(
                #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
                local_two_regions,
                PROFILE,
                |r: &mut Regions| Local::new(two_regions::<FitHeap<$policy>>(r))
            );
            contract_suite!(
                #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
                local_lent,
                PROFILE,
                |r: &mut Regions| Local::new(lent::<FitHeap<$policy>>(r))
            );
            contract_suite!(
                #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
                local_deferred,
                PROFILE,
                |r: &mut Regions| Local::new(aligned::<$policy, true>(r))
            );
        }
    };
}

policy_suites!(
    first_fit,
    FirstFit,
    #[cfg_attr(miri, ignore = "the list code runs under miri in tests/model.rs")]
);
policy_suites!(
    next_fit,
    NextFit,
    #[cfg_attr(miri, ignore = "the list code runs under miri in tests/model.rs")]
);
policy_suites!(
    address_ordered,
    AddressOrderedFirstFit,
    #[cfg_attr(miri, ignore = "best fit's shape runs the tree code under miri")]
);
policy_suites!(
    best_fit,
    BestFit,
    #[cfg_attr(miri, ignore = "deferred best fit runs the tree code under miri")]
);

// Deferred coalescing through `Locked`: under miri, the shape that runs the tree code and
// the quick lists.
contract_suite!(deferred_best_fit, PROFILE, |r: &mut Regions| Locked::new(
    aligned::<BestFit, true>(r)
));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    deferred_next_fit,
    PROFILE,
    |r: &mut Regions| Local::new(aligned::<NextFit, true>(r)) as Local<Deferred<NextFit>>
);

/// SLOB packs blocks to 2 bytes: 64 KiB already holds 32,768 one-byte blocks, as many
/// steps as the shadow model should take to fill it.
const SLOB_REGION: usize = if cfg!(miri) { 32 * 1024 } else { 64 * 1024 };

fn slob(regions: &mut Regions) -> heapkit_fit::Slob {
    let mut slob = heapkit_fit::Slob::new();
    let region = regions.take(SLOB_REGION, 4096);
    // SAFETY: the harness drops the allocator before the region.
    unsafe { slob.add_region(region.cast(), SLOB_REGION) }.unwrap();
    slob
}

/// A region 3 bytes past a page boundary with an odd length: the pages are aligned
/// inside it, and two regions.
fn slob_odd_two_regions(regions: &mut Regions) -> heapkit_fit::Slob {
    let mut slob = heapkit_fit::Slob::new();
    for len in [SLOB_REGION / 2, SLOB_REGION / 4 + 1000] {
        let region = regions.take(len, 4096);
        let start = region.cast::<u8>().as_ptr().wrapping_add(3);
        // SAFETY: inside the taken region, which outlives the allocator.
        unsafe { slob.add_region(NonNull::new(start).unwrap(), len - 3) }.unwrap();
    }
    slob
}

contract_suite!(slob_local, PROFILE, |r: &mut Regions| Local::new(slob(r)));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    slob_locked_odd_two_regions,
    PROFILE,
    |r: &mut Regions| Locked::new(slob_odd_two_regions(r))
);
