//! The classic placement policies on an address line with no per-block overhead: blocks
//! are exactly the bytes requested (no header, no footer, no alignment, no minimum size),
//! so what the model's footprint adds to the live bytes is the policy's fragmentation
//! alone. It is Johnstone and Wilson's "without overhead" measure; the real allocators
//! give the "with overhead" one.
//!
//! The heap is one free block to begin with, far larger than any trace needs, as a
//! heapkit-fit heap over one region is: the untouched end (the "wilderness") is a free
//! block like any other, at the end of the LIFO list and the top of the address order.
//! Frees coalesce at once with both neighbours. Resizes stay in place where the block's
//! tail or its free successor allows, as real allocators do, and move otherwise. The list
//! policies keep heapkit-fit's list order: a freed block goes to the front unless it
//! merges, and then takes the place of the free neighbour it merged with (the lower one
//! when both).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

use heapkit_trace::replay::Footprint;
use heapkit_trace::trace::{Event, Trace};

/// Where a request goes among the free blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The first block that fits in a LIFO list: freed blocks go to the front; the
    /// remainder of a split block keeps its place.
    LifoFirstFit,
    /// The lowest-addressed block that fits.
    AddressOrderedFirstFit,
    /// First fit over the same LIFO list, starting where the last search ended (Knuth's
    /// roving pointer) and wrapping around.
    NextFit,
    /// The smallest block that fits, the lowest-addressed among equals.
    BestFit,
}

impl Policy {
    /// Every policy, in the order the study lists them.
    pub const ALL: [Self; 4] = [
        Self::AddressOrderedFirstFit,
        Self::BestFit,
        Self::LifoFirstFit,
        Self::NextFit,
    ];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::LifoFirstFit => "first fit (LIFO)",
            Self::AddressOrderedFirstFit => "first fit (address-ordered)",
            Self::NextFit => "next fit",
            Self::BestFit => "best fit",
        }
    }
}

/// The free blocks, in the indexes the policies search.
#[derive(Debug)]
struct Model {
    policy: Policy,
    /// Start → length, in address order.
    free: BTreeMap<usize, usize>,
    /// (length, start): best fit's index.
    by_size: BTreeSet<(usize, usize)>,
    /// Stamp → start, newest last: the LIFO list.
    lifo: BTreeMap<u64, usize>,
    /// Start → stamp.
    stamps: BTreeMap<usize, u64>,
    next_stamp: u64,
    /// Next fit's roving pointer: the stamp of the block its next search starts at
    /// (`None`: the front of the list).
    rover: Option<u64>,
}

/// The model's address space: room for any trace.
const SPACE: usize = 1 << 60;

impl Model {
    fn new(policy: Policy) -> Self {
        let mut model = Self {
            policy,
            free: BTreeMap::new(),
            by_size: BTreeSet::new(),
            lifo: BTreeMap::new(),
            stamps: BTreeMap::new(),
            next_stamp: 0,
            rover: None,
        };
        model.insert(0, SPACE, None);
        model
    }

    /// Adds a free block; `stamp` keeps a split block's place in the LIFO list.
    fn insert(&mut self, start: usize, len: usize, stamp: Option<u64>) {
        let stamp = stamp.unwrap_or_else(|| {
            self.next_stamp += 1;
            self.next_stamp
        });
        self.free.insert(start, len);
        self.by_size.insert((len, start));
        self.lifo.insert(stamp, start);
        self.stamps.insert(start, stamp);
    }

    /// Removes the free block at `start`, returning its length and stamp.
    fn remove(&mut self, start: usize) -> (usize, u64) {
        let len = self.free.remove(&start).expect("a free block starts here");
        self.by_size.remove(&(len, start));
        let stamp = self
            .stamps
            .remove(&start)
            .expect("every free block has a stamp");
        self.lifo.remove(&stamp);
        (len, stamp)
    }

    /// The free block the policy picks for `size` bytes.
    fn pick(&self, size: usize) -> Option<usize> {
        match self.policy {
            Policy::LifoFirstFit => self
                .lifo
                .values()
                .rev()
                .copied()
                .find(|start| self.free[start] >= size),
            Policy::AddressOrderedFirstFit => self
                .free
                .iter()
                .find(|&(_, &len)| len >= size)
                .map(|(&start, _)| start),
            Policy::NextFit => {
                // From the rover towards the back (older stamps), then from the front.
                let rover = self.rover.unwrap_or(u64::MAX);
                self.lifo
                    .range(..=rover)
                    .rev()
                    .chain(self.lifo.range((Excluded(rover), Unbounded)).rev())
                    .map(|(_, &start)| start)
                    .find(|start| self.free[start] >= size)
            }
            Policy::BestFit => self
                .by_size
                .range((size, 0)..)
                .next()
                .map(|&(_, start)| start),
        }
    }

    fn allocate(&mut self, size: usize) -> usize {
        let start = self
            .pick(size)
            .expect("the model's space outlasts any trace");
        let (len, stamp) = self.remove(start);
        if len > size {
            self.insert(start + size, len - size, Some(stamp));
            // The rover stays on what is left of the block, in its place.
            self.rover = Some(stamp);
        } else {
            // Taken whole: the rover moves on to the block after it in the list.
            self.rover = self.lifo.range(..stamp).next_back().map(|(&s, _)| s);
        }
        start
    }

    /// Frees `len` bytes at `start`, coalescing with free neighbours.
    fn deallocate(&mut self, mut start: usize, mut len: usize) {
        let end = start + len;
        let mut place = None;
        let mut had_rover = false;
        if self.free.contains_key(&end) {
            let (next, stamp) = self.remove(end);
            len += next;
            place = Some(stamp);
            had_rover |= self.rover == Some(stamp);
        }
        if let Some((&before, &before_len)) = self.free.range(..start).next_back() {
            if before + before_len == start {
                let (_, stamp) = self.remove(before);
                start = before;
                len += before_len;
                place = Some(stamp);
                had_rover |= self.rover == Some(stamp);
            }
        }
        self.insert(start, len, place);
        if had_rover {
            self.rover = Some(self.stamps[&start]);
        }
    }

    /// Resizes the block of `len` bytes at `start` to `new` bytes; returns its new start.
    fn reallocate(&mut self, start: usize, len: usize, new: usize) -> usize {
        if new <= len {
            if new < len {
                self.deallocate(start + new, len - new);
            }
            return start;
        }
        let end = start + len;
        let more = new - len;
        if let Some(&next) = self.free.get(&end) {
            if next >= more {
                let (_, stamp) = self.remove(end);
                if next > more {
                    self.insert(end + more, next - more, Some(stamp));
                }
                return start;
            }
        }
        let moved = self.allocate(new);
        self.deallocate(start, len);
        moved
    }
}

/// Replays `trace` on `policy` with no per-block overhead, measuring what the lab
/// measures on the real allocators: the span of the live blocks against the live bytes.
pub fn replay(policy: Policy, trace: &Trace) -> Footprint {
    let mut model = Model::new(policy);
    let mut slots: Vec<(usize, usize)> = vec![(0, 0); trace.slots()];
    // Live blocks by start, for the lowest start and the highest end (they never overlap).
    let mut live_blocks: BTreeMap<usize, usize> = BTreeMap::new();
    let mut live = 0usize;
    let mut result = Footprint::default();
    for &event in trace.events() {
        match event {
            Event::Alloc { slot, size, .. } => {
                let size = size.max(1);
                let start = model.allocate(size);
                slots[slot as usize] = (start, size);
                live_blocks.insert(start, size);
                live += size;
            }
            Event::Realloc { slot, size } => {
                let (start, len) = slots[slot as usize];
                let size = size.max(1);
                live_blocks.remove(&start);
                let moved = model.reallocate(start, len, size);
                slots[slot as usize] = (moved, size);
                live_blocks.insert(moved, size);
                live = live - len + size;
            }
            Event::Free { slot } => {
                let (start, len) = slots[slot as usize];
                model.deallocate(start, len);
                live_blocks.remove(&start);
                live -= len;
            }
        }
        let footprint = match (live_blocks.first_key_value(), live_blocks.last_key_value()) {
            (Some((&low, _)), Some((&high, &len))) => high + len - low,
            _ => 0,
        };
        result.observe(live, footprint);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapkit_trace::trace::TraceBuilder;

    /// Blocks of `sizes` allocated in turn, then the ones at `holes` freed, then one
    /// more request of `size`: where does it go?
    fn placed(policy: Policy, sizes: &[usize], holes: &[usize], size: usize) -> usize {
        let mut model = Model::new(policy);
        let starts: Vec<usize> = sizes.iter().map(|&s| model.allocate(s)).collect();
        for &hole in holes {
            model.deallocate(starts[hole], sizes[hole]);
        }
        model.allocate(size)
    }

    #[test]
    fn each_policy_picks_its_hole() {
        // Holes of 100 at 0, 30 at 110, 60 at 150, with 10-byte blocks between; freed in
        // the order 60, 100, 30 so LIFO's front is the 30 (too small) then the 100.
        let sizes = [100, 10, 30, 10, 60, 10];
        let holes = [4, 0, 2];
        assert_eq!(
            placed(Policy::AddressOrderedFirstFit, &sizes, &holes, 50),
            0
        );
        assert_eq!(placed(Policy::BestFit, &sizes, &holes, 50), 150);
        assert_eq!(placed(Policy::LifoFirstFit, &sizes, &holes, 50), 0);
        assert_eq!(placed(Policy::BestFit, &sizes, &holes, 25), 110);
        // Nothing fits 200: it comes from the untouched space after the blocks (220).
        for policy in Policy::ALL {
            assert_eq!(placed(policy, &sizes, &holes, 200), 220, "{policy:?}");
        }
    }

    #[test]
    fn next_fit_searches_from_the_rover_where_first_fit_starts_at_the_front() {
        let mut model = Model::new(Policy::NextFit);
        let starts: Vec<usize> = [40, 10, 40, 10, 40, 10]
            .iter()
            .map(|&s| model.allocate(s))
            .collect();
        // Freed 0, 50, 100: the list runs 100, 50, 0, then the untouched space.
        for index in [0, 2, 4] {
            model.deallocate(starts[index], 40);
        }
        model.rover = None;
        assert_eq!(model.allocate(30), 100, "the front, left (130, 10)");
        assert_eq!(model.allocate(30), 50, "(130, 10) is too small: on to 50");
        // The rover is on (80, 10): next fit takes it where first fit takes the front.
        assert_eq!(model.allocate(5), 80);
        let mut first_fit = Model::new(Policy::LifoFirstFit);
        let starts: Vec<usize> = [40, 10, 40, 10, 40, 10]
            .iter()
            .map(|&s| first_fit.allocate(s))
            .collect();
        for index in [0, 2, 4] {
            first_fit.deallocate(starts[index], 40);
        }
        assert_eq!(first_fit.allocate(30), 100);
        assert_eq!(first_fit.allocate(30), 50);
        assert_eq!(first_fit.allocate(5), 130);
    }

    #[test]
    fn frees_merge_into_their_neighbours_place_and_resizes_stay_in_place_when_they_can() {
        let mut model = Model::new(Policy::LifoFirstFit);
        let blocks: Vec<usize> = [10, 10, 10, 10, 10]
            .iter()
            .map(|&s| model.allocate(s))
            .collect();
        model.deallocate(blocks[0], 10);
        model.deallocate(blocks[3], 10);
        // 2 merges with 3 and takes its place at the front; 1 merges with both, in 0's.
        model.deallocate(blocks[2], 10);
        assert_eq!(model.lifo.values().next_back(), Some(&20));
        model.deallocate(blocks[1], 10);
        assert_eq!(model.free[&0], 40, "four neighbours merge into one");
        assert_eq!(model.free.len(), 2, "the block and the untouched space");
        assert_eq!(model.lifo.values().next_back(), Some(&0));
        let again = model.allocate(10);
        assert_eq!(
            model.reallocate(again, 10, 25),
            again,
            "grows into its free successor"
        );
        assert_eq!(model.free[&25], 15);
        let fence = model.allocate(15);
        assert_eq!(fence, 25);
        assert_eq!(
            model.reallocate(again, 25, 30),
            50,
            "a block between two moves"
        );
        assert_eq!(model.reallocate(fence, 15, 10), 25, "shrinks in place");
        assert_eq!(model.free[&0], 25, "the place the moved block left");
        assert_eq!(model.free[&35], 5, "the shrunk tail");
    }

    #[test]
    fn footprint_counts_holes_between_live_blocks() {
        // 100 and 100, free the first, then 150 (does not fit the hole): span 350 with
        // 250 live at the end; peak live is 250 there.
        let mut builder = TraceBuilder::new();
        builder.alloc(0, 100, 8).unwrap();
        builder.alloc(1, 100, 8).unwrap();
        builder.free(0).unwrap();
        builder.alloc(2, 150, 8).unwrap();
        builder.free_all();
        let trace = builder.finish();
        for policy in Policy::ALL {
            let measured = replay(policy, &trace);
            assert_eq!(measured.peak_live, 250, "{policy:?}");
            assert_eq!(measured.footprint_at_peak_live, 250, "{policy:?}");
            assert_eq!(measured.peak_footprint, 250, "{policy:?}");
        }
        // The hole is at the bottom, so the span starts at the second block: no loss.
        // A live block below the hole makes the hole count.
        let mut builder = TraceBuilder::new();
        builder.alloc(0, 8, 8).unwrap();
        builder.alloc(1, 100, 8).unwrap();
        builder.alloc(2, 100, 8).unwrap();
        builder.free(1).unwrap();
        builder.alloc(3, 150, 8).unwrap();
        builder.free_all();
        let measured = replay(Policy::BestFit, &builder.finish());
        assert_eq!(measured.peak_live, 258);
        assert_eq!(measured.footprint_at_peak_live, 358);
    }
}
