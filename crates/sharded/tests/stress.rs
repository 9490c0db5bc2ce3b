//! Stress: 2, 4 and 8 threads (oversubscribed on a 2-core machine) on one `ShardedHeap`,
//! 10^7 operations in all in release builds (`cargo xtask ci` runs this test with
//! `--release`; debug builds run 1/50 of it): each thread allocates and frees its own
//! blocks and hands batches to the next thread, which verifies and frees them (remote
//! frees). Every block carries a checksum of its owner and serial number; at the end every
//! block is accounted for and, once collected, every segment is back with the source.
#![cfg(not(miri))]

use std::ptr::NonNull;
use std::sync::mpsc;

use heapkit_core::source::SystemSource;
use heapkit_core::{Backend, Layout};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::ShardedHeap;
use heapkit_trace::Rng;

/// Operations per configuration: 10^7 over the three thread counts in release.
const OPS: u64 = if cfg!(debug_assertions) {
    66_000
} else {
    3_333_334
};

struct Live {
    block: NonNull<u8>,
    layout: Layout,
    stamp: u64,
}

// SAFETY: a block is handed over whole; the sender keeps no reference.
unsafe impl Send for Live {}

fn stamp_of(thread: u64, serial: u64) -> u64 {
    (thread << 40 | serial).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn write(live: &Live) {
    let words = live.layout.size() / 8;
    for i in [0, words / 2, words - 1] {
        // SAFETY: `i < words`: inside the block, which is 8-aligned.
        unsafe {
            live.block
                .cast::<u64>()
                .as_ptr()
                .add(i)
                .write(live.stamp ^ i as u64)
        };
    }
}

fn verify(live: &Live) {
    let words = live.layout.size() / 8;
    for i in [0, words / 2, words - 1] {
        // SAFETY: as in `write`.
        let word = unsafe { live.block.cast::<u64>().as_ptr().add(i).read() };
        assert_eq!(
            word,
            live.stamp ^ i as u64,
            "block {:p} corrupted",
            live.block
        );
    }
}

fn run(threads: u64) {
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let per_thread = OPS / threads;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| mpsc::channel::<Vec<Live>>()).unzip();
    let counts: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(t, receive)| {
                let t = t as u64;
                let send = senders[((t + 1) % threads) as usize].clone();
                let shared = &shared;
                scope.spawn(move || {
                    let mut heap = shared.thread_heap();
                    // Each thread its own stream.
                    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D ^ (t + 1));
                    let mut live: Vec<Live> = Vec::new();
                    let mut batch: Vec<Live> = Vec::new();
                    let (mut allocated, mut freed) = (0u64, 0u64);
                    let free = |heap: &mut heapkit_sharded::ThreadHeap<'_, SystemSource>,
                                block: Live| {
                        verify(&block);
                        // SAFETY: a live block of this heap family, freed once.
                        unsafe { heap.deallocate(block.block, block.layout) };
                    };
                    for serial in 0..per_thread {
                        let roll = rng.next();
                        match roll % 8 {
                            0..=3 => {
                                let size = match roll >> 8 & 15 {
                                    0 => 200_000,
                                    1..=3 => 1024 + (roll >> 16 & 4095) as usize,
                                    _ => 8 + (roll >> 16 & 255) as usize,
                                };
                                let layout = Layout::from_size_align(size & !7, 8).unwrap();
                                let block = heap.allocate(layout).unwrap().cast();
                                let entry = Live {
                                    block,
                                    layout,
                                    stamp: stamp_of(t, serial),
                                };
                                write(&entry);
                                allocated += 1;
                                if (roll >> 32) % 4 == 0 {
                                    batch.push(entry);
                                    if batch.len() == 64 {
                                        send.send(std::mem::take(&mut batch)).unwrap();
                                    }
                                } else {
                                    live.push(entry);
                                }
                            }
                            4..=6 if !live.is_empty() => {
                                let index = (roll >> 20) as usize % live.len();
                                free(&mut heap, live.swap_remove(index));
                                freed += 1;
                            }
                            _ => {
                                while let Ok(blocks) = receive.try_recv() {
                                    for block in blocks {
                                        free(&mut heap, block);
                                        freed += 1;
                                    }
                                }
                            }
                        }
                    }
                    send.send(batch).unwrap();
                    drop(send);
                    for block in live {
                        free(&mut heap, block);
                        freed += 1;
                    }
                    for blocks in receive {
                        for block in blocks {
                            free(&mut heap, block);
                            freed += 1;
                        }
                    }
                    (allocated, freed)
                })
            })
            .collect();
        drop(senders);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let allocated: u64 = counts.iter().map(|c| c.0).sum();
    let freed: u64 = counts.iter().map(|c| c.1).sum();
    assert_eq!(
        allocated, freed,
        "every block allocated was freed exactly once"
    );
    let mut heap = shared.thread_heap();
    heap.collect();
    drop(heap);
    assert_eq!(shared.mapped(), 0, "every segment is back with the source");
}

#[test]
fn two_threads() {
    run(2);
}

#[test]
fn four_threads() {
    run(4);
}

#[test]
fn eight_threads() {
    run(8);
}
