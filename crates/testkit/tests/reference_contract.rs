//! The reference backend passes the whole contract suite, through both adapters.

use heapkit_core::{Local, Locked};
use heapkit_testkit::{contract_suite, Profile, Reference, Regions};

const BUDGET: usize = 64 * 1024;

contract_suite!(local_reference, Profile::default(), |_: &mut Regions| {
    Local::new(Reference::with_budget(BUDGET))
});

contract_suite!(
    // The same suite through `Locked`: every backend's own suites cover that adapter
    // under miri.
    #[cfg_attr(miri, ignore = "local_reference runs the kit under miri")]
    locked_reference,
    Profile::default(),
    |_: &mut Regions| Locked::new(Reference::with_budget(BUDGET))
);
