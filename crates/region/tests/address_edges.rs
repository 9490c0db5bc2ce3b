//! Regions over buffers at the edges of the address space: straddling 2 GiB and ending at
//! the top of a 32-bit space (under miri for i686, where `cargo xtask miri-edges` runs this
//! file; elsewhere it prints why it skips). A buffer is a slice, so it cannot wrap: there
//! is no wrapping region to refuse.

use core::mem::MaybeUninit;

use heapkit_core::source::SystemSource;
use heapkit_core::Local;
use heapkit_region::Bump;
use heapkit_testkit::edges::exercise_at_edges;
use heapkit_testkit::Profile;

#[test]
fn regions_work_at_the_edges() {
    let profile = Profile::new(1024, 256).deferring().caching();
    exercise_at_edges(profile, 16 * 1024, |start, len| {
        // SAFETY: edge memory, reserved for the process, used by one test at a time, and
        // kept past the region the harness builds over it.
        let buffer = unsafe {
            core::slice::from_raw_parts_mut(start.as_ptr().cast::<MaybeUninit<u8>>(), len)
        };
        Local::new(Bump::new(buffer))
    });
}

/// A region with no buffer has its empty base on the 8-byte grain on every target (it
/// was at `NonNull::<u64>::dangling()`, address 4 on i686, where marks before the first
/// chunk were then refused and `check()` failed). `cargo xtask miri-edges` runs this file
/// for i686.
#[test]
fn a_fresh_source_only_region_releases_to_its_start() {
    let mut region = Bump::with_source(SystemSource::new(4096));
    let start = region.mark();
    region.alloc([7u8; 100]);
    region.release(start);
    assert_eq!(region.mark(), start, "the release to the start was refused");
    region.scope(|scratch| {
        scratch.alloc([7u8; 100]);
    });
    assert_eq!(region.stats().in_use, 0, "the scope freed nothing");
    Bump::with_source(SystemSource::new(4096)).check().unwrap();
    let mut empty: [MaybeUninit<u8>; 0] = [];
    Bump::new(&mut empty).check().unwrap();
}
