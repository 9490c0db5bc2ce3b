//! Allocate+free pairs of one size through `Sharded` as the global allocator, for
//! instruction counts: `valgrind --tool=callgrind target/release/examples/pairs 64`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use heapkit_sharded::Sharded;

#[global_allocator]
static GLOBAL: Sharded = Sharded::new();

fn main() {
    let size: usize = std::env::args().nth(1).map_or(64, |s| s.parse().unwrap());
    let pairs: u64 = std::env::args()
        .nth(2)
        .map_or(1_000_000, |s| s.parse().unwrap());
    let layout = Layout::from_size_align(size, 8).unwrap();
    for _ in 0..pairs {
        // SAFETY: a non-zero layout; the block is freed with it.
        unsafe {
            let block = GLOBAL.alloc(black_box(layout));
            GLOBAL.dealloc(black_box(block), layout);
        }
    }
    println!("{pairs} pairs of {size} B");
}
