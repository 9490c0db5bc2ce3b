//! Resident memory falls when `GrowingTlsf` gives chunks back. Alone in its own test
//! binary: it reads the whole process's resident size, and a test running beside it in
//! the same process (as libtest runs them, on threads) that frees memory made it fail at
//! random (3 runs in 100).

#![cfg(all(target_os = "linux", not(miri)))]

use allocator_api2::vec::Vec;
use heapkit_core::source::MmapSource;
use heapkit_core::Local;
use heapkit_tlsf::GrowingTlsf;

/// Resident memory falls when a large allocation is freed: the chunks were fresh
/// mappings (`MmapSource`), and giving them back unmaps them.
#[test]
fn resident_memory_falls_after_a_large_free() {
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    const MIB: usize = 1 << 20;
    let heap = Local::new(GrowingTlsf::new(MmapSource::new(MIB)));
    let fill = |count: usize| -> std::vec::Vec<Vec<u8, _>> {
        (0..count)
            .map(|_| {
                let mut block = Vec::<u8, _>::with_capacity_in(MIB, &heap);
                block.resize(MIB, 0xA5); // touch every page
                block
            })
            .collect()
    };
    // The last free empties the heap: every chunk but one goes back by itself.
    let before = resident_bytes();
    let blocks = fill(96);
    let peak = resident_bytes();
    assert!(peak >= before + 90 * MIB, "{before} -> {peak}");
    drop(blocks);
    let after = resident_bytes();
    assert!(
        after + 80 * MIB <= peak,
        "resident {before}, then {peak}, then {after}"
    );
    // With a block still live the heap is not empty: `trim` gives the free chunks back.
    let keep = allocator_api2::boxed::Box::new_in([1u8; 64], &heap);
    let blocks = fill(96);
    let peak = resident_bytes();
    drop(blocks);
    heap.trim();
    let after = resident_bytes();
    assert!(after + 80 * MIB <= peak, "peak {peak}, after trim {after}");
    assert_eq!(*keep, [1u8; 64]);
}
