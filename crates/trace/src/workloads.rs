//! Workloads shared by the criterion benches and the lab. Each is deterministic for its
//! seed, so every contender sees the same sequence of requests.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::arena::Arena;
use crate::trace::{Trace, TraceBuilder};
use crate::Rng;

/// talc's "random actions" (its benchmark suite's definition, reused so figures compare):
/// 300 slots; a step picks a slot at random and allocates into it if empty, else frees or
/// reallocates it, even odds. Sizes are `rand(4..rand(16..max))`, reallocations up to
/// `3 * max`; alignment 8 for 75% of requests, 16 for 19%, 32–256 for the rest.
#[derive(Debug)]
pub struct RandomActions {
    max_size: usize,
    realloc: bool,
    slots: Vec<Option<(NonNull<u8>, Layout)>>,
    rng: Rng,
}

impl RandomActions {
    /// Live slots.
    pub const SLOTS: usize = 300;

    /// The workload with requests up to `max_size` bytes.
    pub fn new(max_size: usize, seed: u64) -> Self {
        Self {
            max_size,
            realloc: true,
            slots: vec![None; Self::SLOTS],
            rng: Rng::new(seed),
        }
    }

    /// talc's "no-realloc" variant: an occupied slot is always freed, so every call is an
    /// allocate or a free (and latencies carry no memory copies).
    #[must_use]
    pub fn without_realloc(mut self) -> Self {
        self.realloc = false;
        self
    }

    /// `rand(4..rand(16..max))`: most requests small, a long tail up to `max`.
    pub fn size(rng: &mut Rng, max: usize) -> usize {
        let bound = 16 + rng.below(max.max(17) - 16);
        4 + rng.below(bound - 4)
    }

    /// 8 (75%), 16 (19%), or 32–256 (6%).
    pub fn align(rng: &mut Rng) -> usize {
        match rng.below(100) {
            0..75 => 8,
            75..94 => 16,
            _ => 32 << rng.below(4),
        }
    }

    /// The operation the next step will make on `slot`, without making it.
    fn next_action(&mut self) -> (usize, Action) {
        let slots = std::mem::take(&mut self.slots);
        let next = self.next_action_given(|slot| slots[slot].is_some());
        self.slots = slots;
        next
    }

    /// As `next_action`, with the slots' occupancy told by `occupied`.
    fn next_action_given(&mut self, occupied: impl Fn(usize) -> bool) -> (usize, Action) {
        let slot = self.rng.below(Self::SLOTS);
        let action = if !occupied(slot) {
            let size = Self::size(&mut self.rng, self.max_size);
            let align = Self::align(&mut self.rng);
            Action::Alloc(Layout::from_size_align(size, align).expect("valid layout"))
        } else if !self.realloc || self.rng.next() & 1 == 0 {
            Action::Free
        } else {
            Action::Realloc(Self::size(&mut self.rng, 3 * self.max_size))
        };
        (slot, action)
    }

    /// One step on `arena`. Each new or moved block gets its first byte written, as a
    /// program would. `timer` wraps the allocator call alone, for latency measurements.
    ///
    /// # Panics
    ///
    /// If the arena runs out of memory: regions are sized so this never happens.
    #[inline]
    pub fn step<A: Arena>(&mut self, arena: &mut A, timer: &mut impl FnMut(&mut dyn FnMut())) {
        let (slot, action) = self.next_action();
        let current = self.slots[slot];
        match (action, current) {
            (Action::Alloc(layout), None) => {
                let mut block = None;
                timer(&mut || block = arena.alloc(layout));
                let block = block.expect("region too small for the workload");
                // SAFETY: a fresh block of at least one byte.
                unsafe { block.as_ptr().write(slot as u8) };
                self.slots[slot] = Some((block, layout));
            }
            (Action::Free, Some((block, layout))) => {
                // SAFETY: a live block with its layout, freed once.
                timer(&mut || unsafe { arena.free(block, layout) });
                self.slots[slot] = None;
            }
            (Action::Realloc(size), Some((block, layout))) => {
                let mut moved = None;
                // SAFETY: a live block with its layout.
                timer(&mut || moved = unsafe { arena.realloc(block, layout, size) });
                let moved = moved.expect("region too small for the workload");
                // SAFETY: the block keeps its first byte across a resize.
                let first = unsafe { moved.as_ptr().read() };
                assert_eq!(first, slot as u8, "contents lost");
                let layout = Layout::from_size_align(size, layout.align()).expect("valid");
                self.slots[slot] = Some((moved, layout));
            }
            _ => unreachable!("actions follow the slot's state"),
        }
    }

    /// Frees every live block.
    pub fn drain<A: Arena>(&mut self, arena: &mut A) {
        for (block, layout) in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: live blocks with their layouts, freed once.
            unsafe { arena.free(block, layout) };
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Alloc(Layout),
    Free,
    Realloc(usize),
}

/// A timer that only runs the call.
pub fn untimed(call: &mut dyn FnMut()) {
    call();
}

/// Heap efficiency as talc measures it: random actions without the slot limit (two
/// allocations for every free, sizes `rand(4..rand(16..max))`, talc's alignments) until the
/// first request fails; returns the requested bytes then live, over the region's length.
pub fn heap_efficiency<A: Arena>(arena: &mut A, region_len: usize, max: usize, seed: u64) -> f64 {
    heap_efficiency_with(arena, region_len, seed, |rng| {
        let size = RandomActions::size(rng, max);
        Layout::from_size_align(size, RandomActions::align(rng)).expect("valid")
    })
}

/// [`heap_efficiency`] with requests drawn by `request` instead of talc's mix, so a
/// workload's own sizes fill the region.
#[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
pub fn heap_efficiency_with<A: Arena>(
    arena: &mut A,
    region_len: usize,
    seed: u64,
    mut request: impl FnMut(&mut Rng) -> Layout,
) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut live_bytes = 0usize;
    loop {
        if !live.is_empty() && rng.next() % 3 == 0 {
            let (block, layout) = live.swap_remove(rng.below(live.len()));
            // SAFETY: a live block with its layout, freed once.
            unsafe { arena.free(block, layout) };
            live_bytes -= layout.size();
            continue;
        }
        let layout = request(&mut rng);
        match arena.alloc(layout) {
            Some(block) => {
                live.push((block, layout));
                live_bytes += layout.size();
            }
            None => break,
        }
    }
    for (block, layout) in live {
        // SAFETY: as above.
        unsafe { arena.free(block, layout) };
    }
    live_bytes as f64 / region_len as f64
}

/// How large a workload's requests are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeMix {
    /// 8–256 bytes, evenly spread: small objects, a slab allocator's home ground.
    UniformSmall,
    /// Pareto-distributed (shape 1.5) from 16 bytes, capped at 64 KiB: most requests
    /// tiny, a few large, the heavy tail real programs' size histograms show.
    PowerLaw,
    /// 90% 16–256 bytes, 10% 4–64 KiB: small objects beside buffers.
    Mixed,
    /// One size, always (a pool's home ground).
    Fixed(usize),
    /// 4, 8, 16, 32 or 64 KiB, page aligned (a buddy system's home ground).
    Pages,
}

impl SizeMix {
    /// One request from the mix.
    #[allow(clippy::cast_precision_loss)] // small integers
    pub fn layout(self, rng: &mut Rng) -> Layout {
        let (size, align) = match self {
            Self::UniformSmall => (8 + rng.below(249), 8),
            Self::PowerLaw => {
                // Inverse transform of a Pareto tail: 16 / u^(1/1.5), u in (0, 1].
                let uniform = (rng.below(1 << 24) + 1) as f64 / f64::from(1 << 24);
                let size = 16.0 / uniform.powf(1.0 / 1.5);
                ((size as usize).min(64 << 10), 8)
            }
            Self::Mixed if rng.below(10) == 0 => ((4 << 10) + rng.below(60 << 10), 8),
            Self::Mixed => (16 + rng.below(241), 8),
            Self::Fixed(size) => (size, 8),
            Self::Pages => (4096 << rng.below(5), 4096),
        };
        Layout::from_size_align(size, align).expect("valid layout")
    }
}

/// How long a workload's blocks live, after Wilson, Johnstone et al.'s survey of real
/// programs' heap profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetimes {
    /// Allocate `blocks` steadily, free everything at the end (in random order): a
    /// program building one large structure.
    Ramp { blocks: usize },
    /// A long-lived base of `base` blocks, then `bursts` bursts of `burst` short-lived
    /// blocks each freed when its burst ends; one block in 16 of a burst outlives it and
    /// joins the base, pinning memory the burst used (the classic cause of
    /// fragmentation).
    Peak {
        base: usize,
        bursts: usize,
        burst: usize,
    },
    /// Grow to `live` blocks, then `steps` times free a random block and allocate a new
    /// one: a steady state.
    Plateau { live: usize, steps: usize },
    /// `rounds` times allocate `batch` blocks, then free them all, newest first: a
    /// program working in phases (a request, a frame, a compiler pass), the home ground
    /// of a bump region.
    Phases { batch: usize, rounds: usize },
}

/// A synthetic workload: a lifetime pattern over a size mix, deterministic per seed.
///
/// ```
/// use heapkit_trace::workloads::{Lifetimes, SizeMix, synthetic};
///
/// let plateau = Lifetimes::Plateau { live: 100, steps: 1_000 };
/// let trace = synthetic(plateau, SizeMix::UniformSmall, 7);
/// assert_eq!(trace, synthetic(plateau, SizeMix::UniformSmall, 7));
/// assert_eq!(trace.events().len(), 100 + 2 * 1_000 + 100);
/// ```
pub fn synthetic(lifetimes: Lifetimes, sizes: SizeMix, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut trace = TraceBuilder::new();
    let mut live: Vec<u64> = Vec::new();
    let mut next_id = 0u64;
    let mut alloc = |trace: &mut TraceBuilder, rng: &mut Rng| {
        let layout = sizes.layout(rng);
        next_id += 1;
        trace
            .alloc(next_id, layout.size(), layout.align())
            .expect("fresh ids");
        next_id
    };
    let free_random = |trace: &mut TraceBuilder, live: &mut Vec<u64>, rng: &mut Rng| {
        let id = live.swap_remove(rng.below(live.len()));
        trace.free(id).expect("live id");
    };
    match lifetimes {
        Lifetimes::Ramp { blocks } => {
            for _ in 0..blocks {
                live.push(alloc(&mut trace, &mut rng));
            }
        }
        Lifetimes::Peak {
            base,
            bursts,
            burst,
        } => {
            for _ in 0..base {
                live.push(alloc(&mut trace, &mut rng));
            }
            let mut short_lived = Vec::with_capacity(burst);
            for _ in 0..bursts {
                for _ in 0..burst {
                    let id = alloc(&mut trace, &mut rng);
                    if rng.below(16) == 0 {
                        live.push(id);
                    } else {
                        short_lived.push(id);
                    }
                }
                while !short_lived.is_empty() {
                    free_random(&mut trace, &mut short_lived, &mut rng);
                }
            }
        }
        Lifetimes::Phases { batch, rounds } => {
            for _ in 0..rounds {
                for _ in 0..batch {
                    live.push(alloc(&mut trace, &mut rng));
                }
                while let Some(id) = live.pop() {
                    trace.free(id).expect("live id");
                }
            }
        }
        Lifetimes::Plateau {
            live: target,
            steps,
        } => {
            for _ in 0..target {
                live.push(alloc(&mut trace, &mut rng));
            }
            for _ in 0..steps {
                free_random(&mut trace, &mut live, &mut rng);
                live.push(alloc(&mut trace, &mut rng));
            }
        }
    }
    while !live.is_empty() {
        free_random(&mut trace, &mut live, &mut rng);
    }
    trace.finish()
}

/// talc's random actions ([`RandomActions`]) as a trace of `steps` events: the same
/// slots, sizes, alignments and choices, so replaying it asks what the live workload asks.
pub fn random_actions_trace(max_size: usize, steps: usize, seed: u64) -> Trace {
    let mut workload = RandomActions::new(max_size, seed);
    let mut occupied = vec![false; RandomActions::SLOTS];
    let mut trace = TraceBuilder::new();
    for _ in 0..steps {
        let (slot, action) = workload.next_action_given(|slot| occupied[slot]);
        let id = slot as u64;
        match action {
            Action::Alloc(layout) => {
                trace
                    .alloc(id, layout.size(), layout.align())
                    .expect("empty slot");
                occupied[slot] = true;
            }
            Action::Free => {
                trace.free(id).expect("occupied slot");
                occupied[slot] = false;
            }
            Action::Realloc(size) => trace.realloc(id, size).expect("occupied slot"),
        }
    }
    trace.free_all();
    trace.finish()
}

/// A program's worth of collection churn on any allocator: a hashbrown map of `entries`
/// byte-string keys to 0–39-byte values, its keys sorted in a vector, a vector grown and
/// shrunk ten times, then half the map removed and the rest dropped. Returns a checksum
/// so the work cannot be optimised away.
pub fn collections_churn<A: allocator_api2::alloc::Allocator + Copy>(
    alloc: A,
    entries: usize,
    seed: u64,
) -> usize {
    use allocator_api2::vec::Vec as AVec;
    let mut rng = Rng::new(seed);
    let mut map = hashbrown::HashMap::new_in(alloc);
    for i in 0..entries {
        let mut key = AVec::with_capacity_in(12, alloc);
        key.extend_from_slice(b"key-");
        key.extend_from_slice(&rng.next().to_le_bytes());
        let mut value = AVec::new_in(alloc);
        value.resize(rng.below(40), i as u8);
        map.insert(key, value);
    }
    let mut keys = AVec::with_capacity_in(map.len(), alloc);
    keys.extend(map.keys().map(allocator_api2::vec::Vec::as_slice));
    keys.sort_unstable();
    let sorted = keys.len();
    drop(keys);
    let mut grown: AVec<u64, A> = AVec::new_in(alloc);
    for _ in 0..10 {
        grown.extend(0..(entries / 10) as u64);
        grown.truncate(grown.len() / 2);
        grown.shrink_to_fit();
    }
    map.retain(|key, _| key[4] & 1 == 0);
    sorted + grown.len() + map.len()
}

// Not under miri: the benchmark regions are leaked on purpose (a benchmark process keeps
// them), which miri reports, and interpreting whole workloads takes minutes. The
// allocators themselves are checked under miri in their own crates.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::arena::{heapkit_tlsf, Arena};
    use heapkit_core::Backend;

    #[test]
    fn collection_churn_gives_the_same_answer_on_every_allocator() {
        use crate::arena::FromGlobal;
        let entries = if cfg!(miri) { 200 } else { 2_000 };
        let glibc = collections_churn(&FromGlobal(std::alloc::System), entries, 5);
        let tlsf = heapkit_core::Locked::new(heapkit_tlsf(8 << 20).0);
        assert_eq!(collections_churn(&tlsf, entries, 5), glibc);
        assert_eq!(tlsf.stats().in_use, 0, "everything was freed");
        assert_ne!(
            collections_churn(&FromGlobal(std::alloc::System), 2_000, 6),
            glibc
        );
    }

    #[test]
    fn random_actions_are_deterministic_and_balanced() {
        let record = |seed| {
            let mut workload = RandomActions::new(3000, seed);
            (0..10_000)
                .map(|_| workload.next_action().0)
                .collect::<Vec<_>>()
        };
        assert_eq!(record(5), record(5));
        assert_ne!(record(5), record(6));
        let mut rng = Rng::new(1);
        let sizes: Vec<_> = (0..10_000)
            .map(|_| RandomActions::size(&mut rng, 200))
            .collect();
        assert!(sizes.iter().all(|&s| (4..200).contains(&s)));
        let aligns: Vec<_> = (0..10_000)
            .map(|_| RandomActions::align(&mut rng))
            .collect();
        let eights = aligns.iter().filter(|&&a| a == 8).count();
        assert!(
            (7_000..8_000).contains(&eights),
            "{eights} of 10000 aligned to 8"
        );
    }

    #[test]
    fn synthetic_workloads_are_deterministic_per_seed_and_shaped_as_named() {
        let shapes = [
            Lifetimes::Ramp { blocks: 500 },
            Lifetimes::Peak {
                base: 100,
                bursts: 5,
                burst: 200,
            },
            Lifetimes::Plateau {
                live: 100,
                steps: 1000,
            },
            Lifetimes::Phases {
                batch: 50,
                rounds: 4,
            },
        ];
        let mixes = [
            SizeMix::UniformSmall,
            SizeMix::PowerLaw,
            SizeMix::Mixed,
            SizeMix::Fixed(48),
            SizeMix::Pages,
        ];
        for lifetimes in shapes {
            for sizes in mixes {
                let trace = synthetic(lifetimes, sizes, 11);
                assert_eq!(
                    trace,
                    synthetic(lifetimes, sizes, 11),
                    "{lifetimes:?} {sizes:?}"
                );
                if sizes != SizeMix::Fixed(48) {
                    assert_ne!(
                        trace,
                        synthetic(lifetimes, sizes, 12),
                        "{lifetimes:?} {sizes:?}"
                    );
                }
            }
        }
        let ramp = synthetic(Lifetimes::Ramp { blocks: 500 }, SizeMix::Fixed(48), 1).summary();
        assert_eq!((ramp.allocs, ramp.peak_live), (500, 500 * 48));
        // Ramp frees in random order; phases free each batch newest first.
        assert!(!ramp.newest_first);
        let phases = Lifetimes::Phases {
            batch: 50,
            rounds: 4,
        };
        let phases = synthetic(phases, SizeMix::Fixed(16), 1).summary();
        assert_eq!((phases.allocs, phases.peak_live), (200, 50 * 16));
        assert!(phases.newest_first);
        assert_eq!(
            ramp.fixed_layout,
            Some(Layout::from_size_align(48, 8).unwrap())
        );
        // Peak: the base plus, at most, one burst and the survivors of earlier bursts.
        let peak = synthetic(
            Lifetimes::Peak {
                base: 100,
                bursts: 5,
                burst: 200,
            },
            SizeMix::Fixed(8),
            1,
        );
        let peak = peak.summary();
        assert_eq!(peak.allocs, 100 + 5 * 200);
        assert!(
            (300 * 8..=(300 + 4 * 200 / 8) * 8).contains(&peak.peak_live),
            "{peak:?}"
        );
        let plateau = synthetic(
            Lifetimes::Plateau {
                live: 100,
                steps: 1000,
            },
            SizeMix::Fixed(8),
            1,
        );
        assert_eq!(plateau.summary().peak_live, 100 * 8);
        assert_eq!(
            plateau.slots(),
            100,
            "each step frees first, and the new block takes that slot"
        );
    }

    #[test]
    fn size_mixes_stay_in_their_ranges() {
        let mut rng = Rng::new(3);
        let sample = |mix: SizeMix, rng: &mut Rng| -> Vec<Layout> {
            (0..20_000).map(|_| mix.layout(rng)).collect()
        };
        assert!(sample(SizeMix::UniformSmall, &mut rng)
            .iter()
            .all(|l| (8..=256).contains(&l.size())));
        let power = sample(SizeMix::PowerLaw, &mut rng);
        assert!(power.iter().all(|l| (16..=64 << 10).contains(&l.size())));
        let small = power.iter().filter(|l| l.size() < 64).count();
        assert!(
            small > 15_000,
            "{small} of 20000 below 64 B: most requests are tiny"
        );
        assert!(power.iter().any(|l| l.size() > 4096), "and a few are large");
        let mixed = sample(SizeMix::Mixed, &mut rng);
        let large = mixed.iter().filter(|l| l.size() >= 4096).count();
        assert!((1_600..2_400).contains(&large), "{large} of 20000 large");
        let pages = sample(SizeMix::Pages, &mut rng);
        assert!(pages.iter().all(|l| l.align() == 4096
            && l.size().is_power_of_two()
            && (4096..=65536).contains(&l.size())));
    }

    #[test]
    fn the_random_actions_trace_asks_what_the_live_workload_asks() {
        // The live workload's allocations, in order, with their slots...
        let mut arena = heapkit_tlsf(8 << 20);
        let mut live = RandomActions::new(1000, 4);
        let mut sizes = Vec::new();
        for _ in 0..2_000 {
            let mut timer = |call: &mut dyn FnMut()| call();
            live.step(&mut arena, &mut timer);
            sizes.push(
                live.slots
                    .iter()
                    .flatten()
                    .map(|(_, l)| l.size())
                    .sum::<usize>(),
            );
        }
        live.drain(&mut arena);
        // ... are the trace's: the live bytes after every step agree.
        let trace = random_actions_trace(1000, 2_000, 4);
        let mut live_bytes = 0usize;
        let mut slot_sizes = vec![0usize; trace.slots()];
        for (event, expected) in trace.events().iter().zip(&sizes) {
            match *event {
                crate::trace::Event::Alloc { slot, size, .. }
                | crate::trace::Event::Realloc { slot, size } => {
                    live_bytes = live_bytes - slot_sizes[slot as usize] + size;
                    slot_sizes[slot as usize] = size;
                }
                crate::trace::Event::Free { slot } => {
                    live_bytes -= std::mem::take(&mut slot_sizes[slot as usize])
                }
            }
            assert_eq!(live_bytes, *expected);
        }
        assert_eq!(trace, random_actions_trace(1000, 2_000, 4));
    }

    #[test]
    fn random_actions_run_and_drain_against_heapkit_tlsf() {
        let mut arena = heapkit_tlsf(8 << 20);
        let mut workload = RandomActions::new(3000, 9);
        for _ in 0..20_000 {
            workload.step(&mut arena, &mut untimed);
        }
        workload.drain(&mut arena);
        assert_eq!(arena.0.stats().in_use, 0);
        let efficiency = heap_efficiency(&mut arena, 8 << 20, 3000, 3);
        assert!((0.5..1.0).contains(&efficiency), "{efficiency}");
        assert!(arena
            .alloc(Layout::from_size_align(7 << 20, 8).unwrap())
            .is_some());
    }
}

/// A size from a server-like mix: mostly small, some of a page (16 B to 4 KiB, 8-aligned).
pub fn server_layout(rng: &mut Rng) -> Layout {
    let size = [16, 32, 48, 64, 96, 128, 256, 512, 1024, 4096][rng.below(10)];
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// A block on its way between threads.
struct InFlight(NonNull<u8>, Layout);

// SAFETY: the block is handed over whole; the sender keeps no reference to it.
unsafe impl Send for InFlight {}

/// Producer–consumer: one thread allocates `batches` batches of 256 blocks of
/// [`server_layout`] sizes and sends them to a second thread, which frees them (every free
/// is a cross-thread free). Returns the blocks allocated.
///
/// # Panics
///
/// When `alloc` runs out of memory.
pub fn producer_consumer<A>(alloc: A, batches: u64) -> u64
where
    A: allocator_api2::alloc::Allocator + Copy + Send,
{
    const BATCH: usize = 256;
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<InFlight>>(16);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut rng = Rng::new(3);
            for _ in 0..batches {
                let batch = (0..BATCH)
                    .map(|_| {
                        let layout = server_layout(&mut rng);
                        InFlight(alloc.allocate(layout).expect("memory").cast(), layout)
                    })
                    .collect();
                send.send(batch)
                    .expect("the consumer runs until the producer ends");
            }
        });
        scope.spawn(move || {
            for batch in receive {
                for InFlight(block, layout) in batch {
                    // SAFETY: allocated by the producer with `layout`, freed once.
                    unsafe { alloc.deallocate(block, layout) };
                }
            }
        });
    });
    batches * BATCH as u64
}

/// Larson-like server loop (Larson and Krishnan 1998): two threads each replace random
/// slots of their own array of `slots` blocks `replacements` times a round, and after every
/// round the arrays change threads, so each thread frees blocks the other allocated.
/// Returns the replacements made.
///
/// # Panics
///
/// When `alloc` runs out of memory, or `slots` is 0.
pub fn larson<A>(alloc: A, rounds: u64, slots: usize, replacements: usize) -> u64
where
    A: allocator_api2::alloc::Allocator + Copy + Send,
{
    let fill = |seed| {
        let mut rng = Rng::new(seed);
        (0..slots)
            .map(|_| {
                let layout = server_layout(&mut rng);
                InFlight(alloc.allocate(layout).expect("memory").cast(), layout)
            })
            .collect::<Vec<_>>()
    };
    let run = move |mut array: Vec<InFlight>, seed: u64| {
        let mut rng = Rng::new(seed);
        for _ in 0..replacements {
            let slot = &mut array[rng.below(slots)];
            let layout = server_layout(&mut rng);
            let fresh = InFlight(alloc.allocate(layout).expect("memory").cast(), layout);
            let InFlight(old, old_layout) = std::mem::replace(slot, fresh);
            // SAFETY: allocated with `old_layout`, replaced in its slot, freed once.
            unsafe { alloc.deallocate(old, old_layout) };
        }
        array
    };
    let mut arrays = [fill(1), fill(2)];
    for round in 0..rounds {
        let [a, b] = arrays;
        arrays = std::thread::scope(|scope| {
            let first = scope.spawn(move || run(b, round * 2));
            let second = scope.spawn(move || run(a, round * 2 + 1));
            [
                first.join().expect("worker"),
                second.join().expect("worker"),
            ]
        });
    }
    for InFlight(block, layout) in arrays.into_iter().flatten() {
        // SAFETY: each slot's block, allocated with its layout, freed once.
        unsafe { alloc.deallocate(block, layout) };
    }
    rounds * 2 * replacements as u64
}
