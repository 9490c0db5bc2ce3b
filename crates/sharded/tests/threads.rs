//! Real threads on one `ShardedHeap`: blocks handed between threads and freed remotely,
//! and threads that come and go. Raw pointers only, so miri runs it (with several
//! schedules, in `cargo xtask ci`'s miri-threads step); the thread-local front is tested
//! as a global allocator in `global.rs`.

use std::ptr::NonNull;
use std::sync::mpsc;

use heapkit_core::source::SystemSource;
use heapkit_core::{Backend, Layout};
use heapkit_sharded::geometry::SEGMENT;
use heapkit_sharded::ShardedHeap;

/// A block sent to another thread, with the value written in every word of it.
struct Sent {
    block: NonNull<u8>,
    layout: Layout,
    value: u64,
}

// SAFETY: the block is handed over whole; the sender no longer touches it.
unsafe impl Send for Sent {}

fn fill(block: NonNull<u8>, layout: Layout, value: u64) {
    for i in 0..layout.size() / 8 {
        // SAFETY: `i * 8 + 8 <= size`, inside the block; blocks are 8-aligned.
        unsafe { block.cast::<u64>().as_ptr().add(i).write(value ^ i as u64) };
    }
}

fn verify(block: NonNull<u8>, layout: Layout, value: u64) {
    for i in 0..layout.size() / 8 {
        // SAFETY: as in `fill`.
        let word = unsafe { block.cast::<u64>().as_ptr().add(i).read() };
        assert_eq!(word, value ^ i as u64, "block {block:p} was overwritten");
    }
}

/// Sizes of every kind: small classes, large ones, and (the last) huge blocks with a
/// segment of their own. Under miri, whose segments are 64 KiB, they are smaller so the
/// checksums stay cheap to interpret.
fn layout_for(i: u64) -> Layout {
    let sizes = if cfg!(miri) {
        [8, 24, 64, 200, 1000, 2048, 6000, 20_000]
    } else {
        [8, 24, 64, 200, 1000, 4096, 20_000, 300_000]
    };
    let size = sizes[(i % 8) as usize];
    Layout::from_size_align(size, 8).unwrap()
}

/// Four threads in a ring: each allocates, keeps half of its blocks and sends the other
/// half to the next thread, which checks and frees them (remote frees). The blocks a
/// thread still keeps at its end outlive it (freed later by the main thread, into
/// abandoned segments). Every block's contents survive, and once all is freed and
/// collected the heap holds no memory.
#[test]
fn blocks_freed_by_other_threads_come_back() {
    const THREADS: usize = 4;
    let rounds: u64 = if cfg!(miri) { 12 } else { 20_000 };
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Sent>()).unzip();
    let (leftovers, left) = mpsc::channel::<Sent>();
    std::thread::scope(|scope| {
        for (t, receive) in receivers.into_iter().enumerate() {
            let send = senders[(t + 1) % THREADS].clone();
            let leftovers = leftovers.clone();
            let shared = &shared;
            scope.spawn(move || {
                let mut heap = shared.thread_heap();
                let mut kept = Vec::new();
                for i in 0..rounds {
                    let layout = layout_for(i);
                    let block = heap.allocate(layout).unwrap().cast::<u8>();
                    let value = (t as u64) << 48 | i;
                    fill(block, layout, value);
                    if i % 2 == 0 {
                        send.send(Sent {
                            block,
                            layout,
                            value,
                        })
                        .unwrap();
                    } else {
                        kept.push((block, layout, value));
                    }
                    while let Ok(sent) = receive.try_recv() {
                        verify(sent.block, sent.layout, sent.value);
                        // SAFETY: a live block of this heap family, freed once.
                        unsafe { heap.deallocate(sent.block, sent.layout) };
                    }
                    if kept.len() > 64 {
                        let (block, layout, value) = kept.swap_remove((i % 64) as usize);
                        verify(block, layout, value);
                        // SAFETY: as above.
                        unsafe { heap.deallocate(block, layout) };
                    }
                }
                drop(send);
                for (block, layout, value) in kept {
                    leftovers
                        .send(Sent {
                            block,
                            layout,
                            value,
                        })
                        .unwrap();
                }
                heap.check().unwrap();
                // The rest of the blocks sent here arrive until every sender is gone.
                for sent in receive {
                    verify(sent.block, sent.layout, sent.value);
                    // SAFETY: as above.
                    unsafe { heap.deallocate(sent.block, sent.layout) };
                }
            });
        }
        drop(senders);
        drop(leftovers);
    });
    let mut heap = shared.thread_heap();
    for sent in left {
        verify(sent.block, sent.layout, sent.value);
        // SAFETY: as above.
        unsafe { heap.deallocate(sent.block, sent.layout) };
    }
    assert!(
        shared.mapped() > 0,
        "the leftovers' segments wait, abandoned"
    );
    heap.collect();
    drop(heap);
    assert_eq!(
        shared.mapped(),
        0,
        "every block was freed: every segment goes back"
    );
}

/// Short-lived threads one after another, each taking blocks from the one before and
/// leaving blocks to the one after: exited threads' segments are adopted, so the memory
/// held stays bounded however many threads come and go.
#[test]
fn threads_that_come_and_go_do_not_grow_the_heap() {
    let threads = if cfg!(miri) { 3 } else { 2_000 };
    let shared = ShardedHeap::new(SystemSource::new(SEGMENT));
    let mut handed: Vec<Sent> = Vec::new();
    let mut peak = 0;
    for t in 0..threads {
        let shared = &shared;
        handed = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let mut heap = shared.thread_heap();
                    for sent in handed {
                        verify(sent.block, sent.layout, sent.value);
                        // SAFETY: a live block handed over, freed once.
                        unsafe { heap.deallocate(sent.block, sent.layout) };
                    }
                    (0..50u64)
                        .map(|i| {
                            let layout = layout_for(i % 6);
                            let block = heap.allocate(layout).unwrap().cast::<u8>();
                            let value = t << 32 | i;
                            fill(block, layout, value);
                            Sent {
                                block,
                                layout,
                                value,
                            }
                        })
                        .collect()
                })
                .join()
                .unwrap()
        });
        peak = peak.max(shared.mapped());
    }
    // 50 live blocks of six classes need a few segments (each mapped with up to a segment
    // of slack for alignment), whatever the thread count.
    assert!(peak <= 8 * 2 * SEGMENT, "peak {peak} bytes mapped");
    let mut heap = shared.thread_heap();
    for sent in handed {
        // SAFETY: as above.
        unsafe { heap.deallocate(sent.block, sent.layout) };
    }
    heap.collect();
    drop(heap);
    assert_eq!(shared.mapped(), 0);
}
