//! Buddy allocators: heapkit's `Buddy` beside `buddy_system_allocator` (whose free scans a
//! singly linked list for the buddy), each over its own 64 MiB region, in one run.
//!
//! (a) churn with 100 live blocks of random sizes 16–4096 B (free a random live block,
//! allocate a new one); (b) the same with 5,000 live blocks; (c) 5,000 and 50,000 blocks of
//! 64 B allocated, then all freed in random order; (d) heap efficiency, printed: the bytes
//! of random requests served before the first failure, over the region size.
//!
//! `cargo xtask bench buddy` runs it and prints each group's medians as ratios.

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heapkit_buddy::Buddy;
use heapkit_core::Backend;
use heapkit_trace::{Region, Rng};

const REGION: usize = 64 << 20;
/// 16 B .. 64 MiB.
type Ours = Buddy<23>;
type Theirs = buddy_system_allocator::Heap<33>;

/// The operations the workloads need, for both allocators.
trait Contender {
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout);
}

impl Contender for Ours {
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.allocate(layout).ok().map(NonNull::cast)
    }
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the workloads free only live blocks, with their layouts.
        unsafe { self.deallocate(ptr, layout) }
    }
}

impl Contender for Theirs {
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        Theirs::alloc(self, layout).ok()
    }
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.dealloc(ptr, layout) }
    }
}

fn ours() -> Ours {
    Ours::with_region(Region::new(REGION, 4096).leak(), 16).unwrap()
}

fn theirs() -> Theirs {
    let region = Region::new(REGION, 4096).leak();
    let mut heap = Theirs::new();
    // SAFETY: the leaked region is the heap's alone, for the rest of the process.
    unsafe { heap.init(region.as_mut_ptr().addr(), REGION) };
    heap
}

/// A request of 16–4096 bytes, evenly spread.
fn random_layout(rng: &mut Rng) -> Layout {
    let size = 16 + rng.next() as usize % (4096 - 16 + 1);
    Layout::from_size_align(size, 8).unwrap()
}

/// Per step: free a random live block, allocate a new one of a random size.
fn churn(c: &mut Criterion) {
    for live_blocks in [100, 5000] {
        let mut group = c.benchmark_group(format!("buddy/churn_{live_blocks}_live"));
        let mut run = |name: &str, heap: &mut dyn Contender| {
            let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
            let mut live: Vec<(NonNull<u8>, Layout)> = (0..live_blocks)
                .map(|_| {
                    let l = random_layout(&mut rng);
                    (heap.alloc(l).unwrap(), l)
                })
                .collect();
            group.bench_function(name, |b| {
                b.iter(|| {
                    let slot = rng.next() as usize % live_blocks;
                    let (ptr, l) = live[slot];
                    heap.free(black_box(ptr), l);
                    let l = random_layout(&mut rng);
                    live[slot] = (heap.alloc(black_box(l)).unwrap(), l);
                });
            });
            for (ptr, l) in live {
                heap.free(ptr, l);
            }
        };
        run("heapkit Buddy", &mut ours());
        run("buddy_system_allocator", &mut theirs());
        group.finish();
    }
}

/// N blocks of 64 B, then all freed in a shuffled order; time per operation.
fn alloc_then_free_shuffled(c: &mut Criterion) {
    let mut group = c.benchmark_group("buddy/64B_then_shuffled_free");
    let layout = Layout::from_size_align(64, 8).unwrap();
    for count in [5_000, 50_000] {
        group.throughput(Throughput::Elements(2 * count as u64));
        let mut order: Vec<usize> = (0..count).collect();
        let mut rng = Rng::new(99);
        for i in (1..count).rev() {
            order.swap(i, rng.next() as usize % (i + 1));
        }
        let mut run = |name: &str, heap: &mut dyn Contender| {
            let mut blocks = Vec::with_capacity(count);
            group.bench_function(BenchmarkId::new(name, count), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let started = Instant::now();
                        blocks.extend((0..count).map(|_| heap.alloc(layout).unwrap()));
                        for &i in &order {
                            heap.free(black_box(blocks[i]), layout);
                        }
                        total += started.elapsed();
                        blocks.clear();
                    }
                    total
                });
            });
        };
        run("heapkit Buddy", &mut ours());
        run("buddy_system_allocator", &mut theirs());
    }
    group.finish();
}

/// Random requests of 16–4096 B until the first failure, on a 1 MiB region each.
#[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
fn heap_efficiency(_: &mut Criterion) {
    const SMALL: usize = 1 << 20;
    let mut ours = Ours::with_region(Region::new(SMALL, 4096).leak(), 16).unwrap();
    let mut theirs = {
        let region = Region::new(SMALL, 4096).leak();
        let mut heap = Theirs::new();
        // SAFETY: the leaked region is the heap's alone.
        unsafe { heap.init(region.as_mut_ptr().addr(), SMALL) };
        heap
    };
    let bytes = |heap: &mut dyn Contender| {
        let mut rng = Rng::new(7);
        let mut served = 0usize;
        loop {
            let l = random_layout(&mut rng);
            if heap.alloc(l).is_none() {
                break served;
            }
            served += l.size();
        }
    };
    let ours_bytes = bytes(&mut ours);
    let theirs_bytes = bytes(&mut theirs);
    println!(
        "heap efficiency (bytes of random 16-4096 B requests served before the first failure, 1 MiB region): \
         heapkit Buddy {:.1}%, buddy_system_allocator {:.1}%",
        ours_bytes as f64 * 100.0 / SMALL as f64,
        theirs_bytes as f64 * 100.0 / SMALL as f64
    );
}

criterion_group!(buddy, heap_efficiency, churn, alloc_then_free_shuffled);
criterion_main!(buddy);
