//! The contract suite for the sharded heap: a `LocalHeap` over segments from a fixed
//! number of chunks (so filling it ends), and the locked heap behind `ShardedHeap`.

use core::ptr::NonNull;

use heapkit_core::{AllocError, Backend, Corruption, Layout, Local, Shared, Stats};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::{LocalHeap, ShardedHeap};
use heapkit_testkit::{contract_suite, ChunkSource, Profile, Regions};

type Source = ChunkSource<SEGMENT>;

/// Segments the heap may take: enough for the suite's classes, few enough that filling
/// them ends (8-byte blocks: half a million per segment natively).
const CHUNKS: usize = if cfg!(miri) { 3 } else { 2 };

/// A `LocalHeap` with the shared heap it belongs to, as one owned backend: the shared
/// heap is leaked for the heap's `'static` borrow and reclaimed after it is abandoned.
struct Owned {
    /// The box, kept raw: freed through this pointer, not the shared reference.
    boxed: *mut ShardedHeap<Source>,
    shared: &'static ShardedHeap<Source>,
    local: Option<LocalHeap<'static>>,
}

impl Owned {
    fn new(regions: &mut Regions) -> Self {
        let boxed = Box::into_raw(Box::new(ShardedHeap::new(Source::new(
            regions, SEGMENT, CHUNKS,
        ))));
        // SAFETY: freed only in `drop`, after the heap borrowing it is gone.
        let shared: &'static ShardedHeap<Source> = unsafe { &*boxed };
        let local = Some(shared.local_heap());
        Self {
            boxed,
            shared,
            local,
        }
    }

    fn local(&mut self) -> &mut LocalHeap<'static> {
        self.local.as_mut().unwrap()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.local.take().unwrap().abandon(self.shared);
        // SAFETY: leaked in `new`; the only heap borrowing it is gone.
        drop(unsafe { Box::from_raw(self.boxed) });
    }
}

// SAFETY: forwards to the `LocalHeap`, whose blocks follow `Backend`'s contract.
unsafe impl Backend for Owned {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let local = self.local.as_mut().unwrap();
        local.allocate(self.shared, layout)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let local = self.local.as_mut().unwrap();
        // SAFETY: forwarded caller guarantees.
        unsafe { local.deallocate(self.shared, ptr, layout) }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let shared = self.shared;
        // SAFETY: forwarded caller guarantees.
        unsafe {
            self.local()
                .resize_in_place(shared, ptr, old_layout, new_layout)
        }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let shared = self.shared;
        // SAFETY: forwarded caller guarantees.
        unsafe {
            self.local()
                .resize_in_place(shared, ptr, old_layout, new_layout)
        }
    }

    fn max_align(&self) -> usize {
        SEGMENT / 2
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.shared.contains(ptr)
    }

    fn stats(&self) -> Stats {
        self.local.as_ref().unwrap().stats(self.shared)
    }

    fn check(&self) -> Result<(), Corruption> {
        self.local.as_ref().unwrap().check()
    }
}

fn profile() -> Profile {
    Profile::new(4096, 4096).growing()
}

contract_suite!(local_heap, profile(), |regions: &mut Regions| Local::new(
    Owned::new(regions)
));

contract_suite!(
    // The same `LocalHeap` code as above, behind a lock: native runs only.
    #[cfg_attr(miri, ignore = "the local_heap suite runs this code under miri")]
    locked_fallback,
    profile(),
    |regions: &mut Regions| Shared::new(ShardedHeap::new(Source::new(regions, SEGMENT, CHUNKS)))
);

// Requests up to a quarter segment, so many are huge blocks with segments of their own.
contract_suite!(
    with_huge_blocks,
    Profile::new(SEGMENT / 4, 4096).growing(),
    |regions: &mut Regions| Shared::new(ShardedHeap::new(Source::new(regions, SEGMENT, CHUNKS)))
);

#[test]
fn a_huge_block_grows_into_the_rest_of_its_mapping_and_no_further() {
    use heapkit_core::SharedBackend;
    use heapkit_sharded::classes::MAX_SMALL;

    let mut regions = Regions::new();
    // Chunks of exactly one segment: a huge block's mapping is the whole chunk.
    let heap = ShardedHeap::new(Source::new(&mut regions, SEGMENT, 1));
    let small = Layout::from_size_align(MAX_SMALL + 1, 8).unwrap();
    let block = SharedBackend::allocate(&heap, small).unwrap();
    let start = block.cast::<u8>();
    // SAFETY: the block holds `small.size()` writable bytes.
    unsafe { start.as_ptr().write_bytes(0x5A, small.size()) };
    let half = Layout::from_size_align(SEGMENT / 2, 8).unwrap();
    // SAFETY: a live block allocated for `small`.
    let grown = unsafe { SharedBackend::grow_in_place(&heap, start, small, half) }
        .expect("half a segment fits in the chunk past the block");
    assert_eq!(grown.cast::<u8>(), start, "in place");
    assert!(grown.len() >= SEGMENT / 2);
    // SAFETY: the first `small.size()` bytes were written above and kept.
    assert!((0..small.size()).all(|i| unsafe { *start.as_ptr().add(i) } == 0x5A));
    let whole = Layout::from_size_align(SEGMENT, 8).unwrap();
    // SAFETY: live, now of `half`'s size.
    let too_far = unsafe { SharedBackend::grow_in_place(&heap, start, half, whole) };
    assert!(
        too_far.is_err(),
        "a segment and its header do not fit in one chunk"
    );
    // SAFETY: live, allocated and grown through this heap.
    unsafe { SharedBackend::deallocate(&heap, start, half) };
}
