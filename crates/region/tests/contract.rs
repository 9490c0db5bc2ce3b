//! The contract suite for `Bump`, with the profile of an allocator whose frees are
//! deferred: only the newest block's free gives bytes back, the rest wait for a release.

use core::mem::MaybeUninit;

use heapkit_core::{Local, Locked, Shared};
use heapkit_region::Bump;
use heapkit_testkit::{contract_suite, ChunkSource, Profile, Regions};

const REGION: usize = if cfg!(miri) { 16 * 1024 } else { 256 * 1024 };
const CHUNK: usize = if cfg!(miri) { 16 * 1024 } else { 64 * 1024 };
/// Chunks a source hands out before it refuses: under miri, filling 16 took 30 s.
const CHUNKS: usize = if cfg!(miri) { 4 } else { 16 };

/// Frees of older blocks wait for a release, and a region keeps what it was given.
const FIXED: Profile = Profile::new(4096, 4096).deferring().caching();
/// The same over chunks taken and given back.
const GROWING: Profile = Profile::new(4096, 4096).deferring().growing();

fn buffer(regions: &mut Regions, len: usize, align: usize) -> &'static mut [MaybeUninit<u8>] {
    let region = regions.take(len, align);
    // SAFETY: the region is the allocator's alone, and the harness drops the allocator
    // before its regions.
    unsafe { &mut *(region.as_ptr() as *mut [MaybeUninit<u8>]) }
}

fn fixed(regions: &mut Regions) -> Bump<'static> {
    Bump::new(buffer(regions, REGION, 4096))
}

/// A buffer starting 3 bytes past an alignment, with an odd length.
fn odd(regions: &mut Regions) -> Bump<'static> {
    let whole = buffer(regions, REGION, 4096);
    let len = whole.len() - 1001;
    Bump::new(&mut whole[3..len])
}

fn growing(regions: &mut Regions) -> Bump<'static, ChunkSource<4096>> {
    Bump::with_source(ChunkSource::new(regions, CHUNK, CHUNKS))
}

/// A small buffer first, then chunks aligned to 8 only.
fn buffer_then_chunks(regions: &mut Regions) -> Bump<'static, ChunkSource<8>> {
    let first = buffer(regions, 1000, 8);
    Bump::with_buffer_and_source(first, ChunkSource::new(regions, CHUNK, CHUNKS))
}

/// Chunks at odd addresses, longer than the region's first ask and shorter than its
/// second (which the source refuses, so the region asks again for what it needs).
fn odd_chunks(regions: &mut Regions) -> Bump<'static, ChunkSource<1>> {
    Bump::with_source(ChunkSource::new(regions, CHUNK + 3, CHUNKS))
}

// Under miri, which interprets every step, the shapes marked `ignore` are left to native
// runs: each way of reaching the region still runs there over at least one shape.
contract_suite!(bump_itself, FIXED, |r: &mut Regions| fixed(r));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    local_bump,
    FIXED,
    |r: &mut Regions| Local::new(fixed(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    locked_odd,
    FIXED,
    |r: &mut Regions| Locked::new(odd(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    shared_bump,
    FIXED,
    |r: &mut Regions| Shared::new(fixed(r))
);
contract_suite!(growing_bump, GROWING, |r: &mut Regions| growing(r));
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    local_buffer_then_chunks,
    GROWING,
    |r: &mut Regions| Local::new(buffer_then_chunks(r))
);
contract_suite!(
    #[cfg_attr(miri, ignore = "another shape of this backend runs under miri")]
    odd_chunks_bump,
    GROWING,
    |r: &mut Regions| odd_chunks(r)
);
