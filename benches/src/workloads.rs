//! Workloads shared by the criterion benches and the lab. Each is deterministic for its
//! seed, so every contender sees the same sequence of requests.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::arena::Arena;
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
        let slot = self.rng.below(Self::SLOTS);
        let action = match self.slots[slot] {
            None => {
                let size = Self::size(&mut self.rng, self.max_size);
                let align = Self::align(&mut self.rng);
                Action::Alloc(Layout::from_size_align(size, align).expect("valid layout"))
            }
            Some(_) if !self.realloc || self.rng.next() & 1 == 0 => Action::Free,
            Some(_) => Action::Realloc(Self::size(&mut self.rng, 3 * self.max_size)),
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
#[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
pub fn heap_efficiency<A: Arena>(arena: &mut A, region_len: usize, max: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut live_bytes = 0usize;
    loop {
        if !live.is_empty() && rng.next().is_multiple_of(3) {
            let (block, layout) = live.swap_remove(rng.below(live.len()));
            // SAFETY: a live block with its layout, freed once.
            unsafe { arena.free(block, layout) };
            live_bytes -= layout.size();
            continue;
        }
        let size = RandomActions::size(&mut rng, max);
        let layout = Layout::from_size_align(size, RandomActions::align(&mut rng)).expect("valid");
        match arena.alloc(layout) {
            Some(block) => {
                live.push((block, layout));
                live_bytes += size;
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
        use crate::global::{FromGlobal, LockedArena};
        let entries = if cfg!(miri) { 200 } else { 2_000 };
        let glibc = collections_churn(&FromGlobal(std::alloc::System), entries, 5);
        let tlsf = LockedArena::new(heapkit_tlsf(8 << 20));
        assert_eq!(collections_churn(&tlsf, entries, 5), glibc);
        assert_eq!(tlsf.0.lock().0.stats().in_use, 0, "everything was freed");
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
