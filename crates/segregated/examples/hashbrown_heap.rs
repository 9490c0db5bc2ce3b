//! hashbrown's `HashMap` and allocator-api2's `Vec` in a heapkit heap, through the
//! `allocator_api2` re-exported by `heapkit_core` (no version to guess). The root README's
//! collections section; `cargo xtask ci` builds and runs it.

use hashbrown::HashMap;
use heapkit_core::allocator_api2::vec::Vec;
use heapkit_core::source::SystemSource;
use heapkit_core::Local;
use heapkit_segregated::Heap;

fn main() {
    let heap = Local::new(Heap::with_source(SystemSource::default()));
    let mut lengths = HashMap::new_in(&heap);
    let mut order = Vec::new_in(&heap);
    for word in "the quick brown fox jumps over the lazy dog".split(' ') {
        *lengths.entry(word).or_insert(0) += word.len();
        order.push(word);
    }
    assert_eq!(lengths["the"], 6);
    assert_eq!(order.len(), 9);
    let in_use = heap.stats().in_use;
    drop((lengths, order));
    assert_eq!(heap.stats().in_use, 0);
    println!("a map and a vector in a heapkit Heap: {in_use} bytes while alive, 0 after");
}
