//! What a region promises beyond the contract suite: marks, scopes and resets against a
//! model, the obstack's growing object, chunks given back, and the `checked` reports.

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use allocator_api2::vec::Vec;
use heapkit_core::{Backend, Layout, Local};
use heapkit_region::{Bump, Mark};
use heapkit_testkit::{ChunkSource, Regions};
use proptest::prelude::*;

fn buffer(regions: &mut Regions, len: usize, align: usize) -> &'static mut [MaybeUninit<u8>] {
    let region = regions.take(len, align);
    // SAFETY: the region is the test's alone and outlives every region built over it
    // (each test drops its `Bump` before its `Regions`).
    unsafe { &mut *(region.as_ptr() as *mut [MaybeUninit<u8>]) }
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Step {
    Alloc {
        size: usize,
        align_log: u32,
    },
    Mark,
    /// Release to the `back`-th newest mark still valid.
    Release {
        back: usize,
    },
    /// Free the newest block.
    FreeNewest,
    /// Grow the newest block in place by `by` bytes.
    GrowNewest {
        by: usize,
    },
    Reset,
    Trim,
}

fn steps() -> impl Strategy<Value = std::vec::Vec<Step>> {
    let step = prop_oneof![
        6 => (1usize..600, 0u32..8).prop_map(|(size, align_log)| Step::Alloc { size, align_log }),
        2 => Just(Step::Mark),
        2 => (0usize..4).prop_map(|back| Step::Release { back }),
        1 => Just(Step::FreeNewest),
        1 => (1usize..300).prop_map(|by| Step::GrowNewest { by }),
        1 => Just(Step::Reset),
        1 => Just(Step::Trim),
    ];
    proptest::collection::vec(step, 1..if cfg!(miri) { 30 } else { 200 })
}

/// A live block of the model: where it is and the byte it is filled with.
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: NonNull<u8>,
    len: usize,
    fill: u8,
}

impl Block {
    fn intact(&self) -> bool {
        // SAFETY: a live block of the region under test, filled when it was allocated.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) };
        bytes.iter().all(|b| *b == self.fill)
    }
}

/// The model: blocks in allocation order, marks as the number of blocks before them, and
/// whether the cursor stands at the end of the newest block (only then does its free give
/// bytes back and can it grow). A release to a mark keeps exactly the blocks allocated
/// before it; marks taken after it are no longer valid.
fn run_against_model(region: &mut Bump<'_, ChunkSource<64>>, steps: &[Step]) {
    let mut live: std::vec::Vec<Block> = std::vec::Vec::new();
    let mut marks: std::vec::Vec<(Mark, usize, bool, usize)> = std::vec::Vec::new();
    let mut at_cursor = false;
    for (n, step) in steps.iter().enumerate() {
        let fill = (n % 251) as u8 + 1;
        match *step {
            Step::Alloc { size, align_log } => {
                let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                if let Ok(block) = region.allocate(layout) {
                    let ptr = block.cast::<u8>();
                    assert_eq!(ptr.as_ptr().addr() % layout.align(), 0, "misaligned block");
                    assert!(block.len() >= size);
                    // SAFETY: a fresh block of `block.len()` bytes.
                    unsafe { ptr.as_ptr().write_bytes(fill, block.len()) };
                    live.push(Block {
                        ptr,
                        len: block.len(),
                        fill,
                    });
                    at_cursor = true;
                }
            }
            Step::Mark => marks.push((
                region.mark(),
                live.len(),
                at_cursor,
                live.last().map_or(0, |b| b.len),
            )),
            Step::Release { back } => {
                if let Some(index) = marks.len().checked_sub(1 + back) {
                    let (mark, kept, was_at_cursor, newest_len) = marks[index];
                    marks.truncate(index + 1);
                    region.release(mark);
                    live.truncate(kept);
                    // A block that grew after the mark goes back to its size then.
                    if let Some(newest) = live.last_mut() {
                        newest.len = newest_len;
                    }
                    at_cursor = was_at_cursor;
                    assert_eq!(region.mark(), mark, "release did not return to its mark");
                }
            }
            Step::FreeNewest => {
                if let Some(block) = live.pop() {
                    let before = region.stats().in_use;
                    let layout = Layout::from_size_align(block.len, 1).unwrap();
                    // SAFETY: the newest live block, freed with its usable size.
                    unsafe { region.deallocate(block.ptr, layout) };
                    let given_back = before - region.stats().in_use;
                    if at_cursor {
                        assert_eq!(
                            given_back, block.len,
                            "the newest block's free kept its bytes"
                        );
                        // The cursor is at the block's start now: the end of the block
                        // before only if nothing (padding, a chunk change) lies between.
                        at_cursor = live.last().is_some_and(|prev| {
                            prev.ptr.as_ptr().addr() + prev.len == block.ptr.as_ptr().addr()
                        });
                    } else {
                        assert_eq!(given_back, 0, "a free away from the cursor gave bytes back");
                    }
                    // Marks taken after the block was allocated name points past it: the
                    // model no longer releases to them.
                    marks.retain(|(_, kept, _, _)| *kept <= live.len());
                }
            }
            Step::GrowNewest { by } => {
                if let Some(block) = live.last_mut() {
                    let room = region.room();
                    let old = Layout::from_size_align(block.len, 1).unwrap();
                    let new = Layout::from_size_align(block.len + by, 1).unwrap();
                    // SAFETY: the newest live block, with its usable size.
                    match unsafe { region.grow_in_place(block.ptr, old, new) } {
                        Ok(grown) => {
                            assert!(at_cursor, "a block away from the cursor grew");
                            assert_eq!(grown.cast::<u8>(), block.ptr);
                            let len = grown.len();
                            // SAFETY: the grown block is ours.
                            unsafe { block.ptr.as_ptr().write_bytes(block.fill, len) };
                            block.len = len;
                        }
                        Err(_) => assert!(
                            !at_cursor || by > room,
                            "growth within the room was refused"
                        ),
                    }
                }
            }
            Step::Reset => {
                region.reset();
                live.clear();
                marks.clear();
                assert_eq!(region.stats().in_use, 0);
            }
            Step::Trim => region.trim(),
        }
        check_against(region, &live);
    }
}

/// The region's own checks, its stats against the live blocks, and every live block intact
/// and apart from the others.
fn check_against(region: &Bump<'_, ChunkSource<64>>, live: &[Block]) {
    region.check().unwrap();
    let stats = region.stats();
    assert!(stats.is_consistent(), "{stats:?}");
    let live_bytes: usize = live.iter().map(|b| b.len).sum();
    assert!(stats.in_use >= live_bytes);
    for block in live {
        assert!(block.intact(), "a live block was overwritten: {block:?}");
        assert!(region.owns(block.ptr));
    }
    for pair in live.windows(2) {
        assert!(
            pair[0].ptr.as_ptr().addr() + pair[0].len <= pair[1].ptr.as_ptr().addr()
                || pair[0].ptr.as_ptr().addr() >= pair[1].ptr.as_ptr().addr() + pair[1].len,
            "blocks overlap: {pair:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Over a small buffer and a source of 4 KiB chunks, so releases cross chunks.
    #[test]
    fn marks_releases_and_resets_match_the_model(steps in steps()) {
        let mut regions = Regions::new();
        let first = buffer(&mut regions, 1000, 8);
        let source = ChunkSource::<64>::new(&mut regions, 4096, 64);
        let mut region = Bump::with_buffer_and_source(first, source);
        run_against_model(&mut region, &steps);
        drop(region);
    }
}

#[test]
fn release_is_independent_of_how_many_values_it_frees() {
    let mut regions = Regions::new();
    let mut region = Bump::with_source(ChunkSource::<64>::new(&mut regions, 8 * 1024, 64));
    let start = region.mark();
    for count in [10, 1000, 5000] {
        let mark = region.mark();
        for n in 0..count {
            region.alloc(n as u64);
        }
        assert!(region.stats().in_use >= count * 8);
        region.release(mark);
        assert_eq!(region.mark(), mark);
    }
    region.release(start);
    assert_eq!(region.stats().in_use, 0);
    // Chunks passed over are kept for reuse until a trim.
    assert!(region.stats().capacity >= 5 * 8 * 1024);
    region.trim();
    assert_eq!(region.stats().capacity, 0);
}

#[test]
fn a_vec_built_last_grows_in_place_until_its_chunk_is_full() {
    let mut regions = Regions::new();
    let region = Bump::new(buffer(&mut regions, 4096, 8));
    let _before = region.alloc(1u32);
    let mut text: Vec<u8, _> = Vec::new_in(&region);
    text.push(b'x');
    let start = text.as_ptr();
    while text.len() < 2000 {
        text.push(b'y');
        assert_eq!(
            text.as_ptr(),
            start,
            "the newest block moved while it had room"
        );
    }
    // Capacity grew by doubling, each step in place; one more doubling would not fit.
    assert!(text.try_reserve_exact(4096).is_err());
    assert_eq!(text.as_ptr(), start);
    assert!(text.capacity() <= 4096 - 8);
    // Shrinking the newest block gives the bytes back to the region.
    let room = region.room();
    text.truncate(100);
    text.shrink_to_fit();
    assert_eq!(text.as_ptr(), start);
    assert!(region.room() > room);
}

#[test]
fn reset_keeps_the_largest_chunk_and_drop_gives_every_chunk_back() {
    let mut regions = Regions::new();
    let mut region = Bump::with_source(ChunkSource::<64>::new(&mut regions, 64 * 1024, 16));
    for n in 0..20_000u64 {
        region.alloc(n);
    }
    // 160 KB of values: chunks of 4, 8, 16, 32, 64 KiB (the source's chunks are 64 KiB).
    let chunks_before = region.stats().capacity / (64 * 1024);
    assert!(chunks_before >= 3, "{:?}", region.stats());
    region.reset();
    let stats = region.stats();
    assert_eq!((stats.capacity, stats.in_use), (64 * 1024, 0));
    // The kept chunk serves the next round without the source.
    for n in 0..4_000u64 {
        region.alloc(n);
    }
    assert_eq!(region.stats().capacity, 64 * 1024);
    let source_drop = region;
    drop(source_drop);
}

#[test]
fn chunks_go_back_to_the_source() {
    let mut regions = Regions::new();
    let mut region = Bump::with_source(ChunkSource::<64>::new(&mut regions, 8 * 1024, 64));
    let mark = region.mark();
    for n in 0..10_000u64 {
        region.alloc(n);
    }
    region.release(mark);
    region.trim();
    assert_eq!(region.stats().capacity, 0);
    // The source counts what is out: nothing, once trimmed.
    let size_check = region.alloc([0u8; 100]);
    assert_eq!(size_check.len(), 100);
    region.reset();
    assert_eq!(region.stats().capacity, 8 * 1024);
}

#[test]
fn a_guard_releases_when_the_scope_unwinds() {
    let mut regions = Regions::new();
    let mut region = Bump::new(buffer(&mut regions, 1024, 8));
    region.alloc(1u64);
    let used = region.stats().in_use;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        region.scope(|scratch| {
            scratch.alloc([7u8; 64]);
            panic!("inside the scope");
        })
    }));
    assert!(outcome.is_err());
    assert_eq!(region.stats().in_use, used);
}

#[test]
fn nested_scopes_release_in_order() {
    let mut regions = Regions::new();
    let mut region = Bump::new(buffer(&mut regions, 4096, 8));
    let outer_total = region.scope(|outer| {
        let a = *outer.alloc(10u64);
        let inner_total = outer.scope(|inner| {
            let b = inner.alloc_slice_copy(&[1u64, 2, 3]);
            b.iter().sum::<u64>()
        });
        assert_eq!(outer.stats().in_use, 8);
        a + inner_total
    });
    assert_eq!(outer_total, 16);
    assert_eq!(region.stats().in_use, 0);
}

#[test]
fn stale_and_foreign_marks_change_nothing() {
    let mut regions = Regions::new();
    let mut region = Bump::new(buffer(&mut regions, 4096, 8));
    let other = Bump::new(buffer(&mut regions, 4096, 8));
    let early = region.mark();
    region.alloc([0u8; 64]);
    let late = region.mark();
    region.alloc([0u8; 64]);
    region.release(early);
    region.alloc(0u64);
    let foreign = other.mark();
    other.alloc(0u8);
    // Without `checked` these are ignored; with it they panic (see the checked test).
    if cfg!(not(feature = "checked")) {
        let before = region.mark();
        region.release(late);
        region.release(foreign);
        assert_eq!(region.mark(), before);
    }
}

#[cfg(feature = "checked")]
#[test]
fn checked_reports_name_the_address() {
    use heapkit_testkit::panic_message;
    let mut regions = Regions::new();
    let mut region = Bump::new(buffer(&mut regions, 4096, 8));
    let early = region.mark();
    region.alloc([0u8; 64]);
    let late = region.mark();
    region.release(early);
    let message = panic_message(|| region.release(late));
    assert!(
        message.starts_with("heapkit-region: invalid release of 0x") && message.contains("stale"),
        "{message}"
    );
    let block = core::ptr::from_mut(region.alloc(5u64));
    let layout = Layout::new::<u64>();
    // SAFETY: the block is the newest; freed once, it is then past the cursor.
    unsafe { region.deallocate(NonNull::new(block).unwrap().cast(), layout) };
    let message = panic_message(|| unsafe {
        // SAFETY: intentionally invalid (a double free), to see the report.
        region.deallocate(NonNull::new(block).unwrap().cast(), layout);
    });
    assert!(message.contains("not allocated"), "{message}");
    let outside = 0u64;
    let message = panic_message(|| unsafe {
        // SAFETY: intentionally invalid (a foreign pointer), to see the report.
        region.deallocate(NonNull::from(&outside).cast(), layout);
    });
    assert!(message.contains("not in this region"), "{message}");
}

#[test]
fn values_of_every_alignment_and_zero_size() {
    #[derive(Clone, Copy)]
    #[repr(align(4096))]
    struct Page([u8; 16]);
    let mut regions = Regions::new();
    let region = Bump::new(buffer(&mut regions, 16 * 1024, 8));
    let page = region.alloc(Page([3; 16]));
    assert_eq!(core::ptr::from_ref(page).addr() % 4096, 0);
    assert_eq!(page.0[15], 3);
    let nothing = region.alloc(());
    assert_eq!(*nothing, ());
    let empty: &mut [u64] = region.alloc_slice_copy(&[]);
    assert!(empty.is_empty());
    assert_eq!(region.alloc_str(""), "");
    let built = region.alloc_with(|| [9u16; 8]);
    assert_eq!(built[7], 9);
    // A buffer too small for one grain serves nothing, cleanly.
    let mut tiny = [MaybeUninit::uninit(); 5];
    let tiny = Bump::new(&mut tiny);
    assert!(tiny.try_alloc(1u8).is_err());
    assert_eq!(tiny.stats().capacity, 5);
}

#[test]
fn collections_run_in_a_region() {
    let mut regions = Regions::new();
    let region = Local::new(Bump::new(buffer(&mut regions, 64 * 1024, 8)));
    let mut map = hashbrown::HashMap::new_in(&region);
    for n in 0..100u32 {
        map.insert(n, n * n);
    }
    assert_eq!(map[&9], 81);
    let bump = Bump::new(buffer(&mut regions, 64 * 1024, 8));
    let mut direct = hashbrown::HashMap::new_in(&bump);
    direct.insert("key", 1);
    assert_eq!(direct["key"], 1);
}

/// One step of the nested-scope test.
#[derive(Clone, Copy, Debug)]
enum ScopeStep {
    Alloc { size: usize, align_log: u32 },
    Enter,
    Leave,
}

/// Runs `steps` in `region` until a `Leave` (or the end), entering a nested scope on each
/// `Enter`; every value allocated at this level must still hold its bytes at the end.
fn run_scoped(region: &mut Bump<'_, ChunkSource<64>>, steps: &mut std::slice::Iter<'_, ScopeStep>) {
    let mut mine: std::vec::Vec<(NonNull<u8>, usize, u8)> = std::vec::Vec::new();
    while let Some(step) = steps.next() {
        match *step {
            ScopeStep::Alloc { size, align_log } => {
                let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                if let Ok(block) = region.alloc_layout(layout) {
                    let fill = (mine.len() % 200) as u8 + 1;
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { block.as_ptr().write_bytes(fill, size) };
                    mine.push((block, size, fill));
                }
            }
            ScopeStep::Enter => {
                let before = region.stats().in_use;
                region.scope(|inner| run_scoped(inner, steps));
                assert_eq!(region.stats().in_use, before, "a scope kept memory");
                region.check().unwrap();
            }
            ScopeStep::Leave => break,
        }
    }
    for (block, size, fill) in mine {
        // SAFETY: allocated at this level, which has not been released yet.
        let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), size) };
        assert!(
            bytes.iter().all(|b| *b == fill),
            "a value outlived by a scope changed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn nested_scopes_give_back_exactly_what_they_took(
        steps in proptest::collection::vec(
            prop_oneof![
                4 => (1usize..2000, 0u32..7)
                    .prop_map(|(size, align_log)| ScopeStep::Alloc { size, align_log }),
                1 => Just(ScopeStep::Enter),
                1 => Just(ScopeStep::Leave),
            ],
            1..if cfg!(miri) { 30 } else { 150 },
        )
    ) {
        let mut regions = Regions::new();
        let first = buffer(&mut regions, 512, 8);
        let source = ChunkSource::<64>::new(&mut regions, 4096, 64);
        let mut region = Bump::with_buffer_and_source(first, source);
        let mut iter = steps.iter();
        while iter.len() > 0 {
            run_scoped(&mut region, &mut iter);
        }
        drop(region);
    }
}
