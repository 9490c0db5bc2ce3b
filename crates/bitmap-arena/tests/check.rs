//! `check` finds a bitmap whose summary disagrees with its words: a stray write into a
//! bitmap kept apart from the region.

use heapkit_bitmap_arena::BitmapArena;
use heapkit_core::{Backend, Layout};
use heapkit_testkit::Regions;

#[test]
fn a_stray_write_into_the_bitmap_is_reported() {
    let mut regions = Regions::new();
    let blocks = 4096;
    let region = regions.take(blocks * 16, 16);
    let words = BitmapArena::bitmap_words(blocks);
    let bitmap = regions.take_side_buffer(words * 8, 8).cast::<u64>();
    // SAFETY: `regions` outlives the arena; region and bitmap are disjoint.
    let mut arena =
        unsafe { BitmapArena::from_raw_parts(region.cast(), region.len(), bitmap, words, 16) }
            .unwrap();
    let block = arena
        .allocate(Layout::from_size_align(100, 16).unwrap())
        .unwrap();
    assert_eq!(arena.check(), Ok(()));
    // SAFETY: the bitmap is the test's memory. The first level-0 word loses its free bits
    // for blocks 64..=127: word 1, whose summary bit still says "has free blocks".
    unsafe { bitmap.as_ptr().add(1).write(0) };
    let corruption = arena.check().unwrap_err();
    assert_eq!(corruption.allocator, "heapkit-bitmap-arena");
    assert_eq!(
        corruption.what,
        "free bitmap's summary disagrees with its words"
    );
    let _ = block;
}
