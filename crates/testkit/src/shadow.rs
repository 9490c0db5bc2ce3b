//! The shadow model: replays [`Op`]s against an allocator while keeping its own record of
//! every live block, and reports the first [`Violation`] of the allocator contract.

use std::collections::BTreeMap;
use std::fmt;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use heapkit_core::{Corruption, Inspect, Layout, Stats};

use crate::{Op, Profile, Regions};

/// What the harness drives: an allocator that reports its stats and ownership — the
/// adapters over any [`Backend`](heapkit_core::Backend), and the lock-free allocators that
/// are [`Allocator`]s themselves.
pub trait Subject: Allocator + Inspect {}

impl<A: Allocator + Inspect> Subject for A {}

/// A broken promise of the allocator, found by the shadow model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A returned block shares bytes with a live block.
    Overlap {
        /// The new block's address and usable size.
        block: (usize, usize),
        /// The live block it overlaps.
        live: (usize, usize),
    },
    /// A returned block is not aligned as requested.
    Misaligned {
        /// Its address.
        address: usize,
        /// The alignment requested.
        align: usize,
    },
    /// A returned block is shorter than requested.
    TooShort {
        /// Its address.
        address: usize,
        /// The size requested.
        requested: usize,
        /// The usable size returned.
        usable: usize,
    },
    /// A returned block lies (partly) outside every region the backend was given.
    OutOfRegion {
        /// Its address.
        address: usize,
        /// Its usable size.
        usable: usize,
    },
    /// `owns` denies a block the backend handed out.
    NotOwned {
        /// The block's address.
        address: usize,
    },
    /// A block's contents changed while it was live, or were not carried over a resize.
    Corrupted {
        /// The block's address.
        address: usize,
        /// Offset of the first wrong byte.
        offset: usize,
        /// The byte written there.
        expected: u8,
        /// The byte found.
        found: u8,
    },
    /// A zeroed allocation or growth came back with a non-zero byte.
    NotZeroed {
        /// The block's address.
        address: usize,
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// A failed request changed the backend's stats.
    FailureChangedState {
        /// Stats before the request.
        before: Stats,
        /// Stats after it failed.
        after: Stats,
    },
    /// Stats break `in_use + free + metadata == capacity` or `largest_free <= free`, or
    /// the capacity changed.
    StatsInconsistent {
        /// The offending stats.
        stats: Stats,
        /// Capacity at the start.
        initial_capacity: usize,
    },
    /// The allocator's own invariant check ([`Inspect::check`]) found its bookkeeping
    /// broken: caught at the operation that broke it.
    HeapCorrupted(Corruption),
    /// `in_use` disagrees with the usable sizes of the live blocks.
    InUseMismatch {
        /// What the backend reports.
        reported: usize,
        /// The sum of the usable sizes the shadow holds.
        shadow: usize,
    },
    /// With every block freed, the backend is not back to its initial stats (a lost free,
    /// or free blocks that were not coalesced).
    NotRestored {
        /// Stats of the empty backend before the run.
        initial: Stats,
        /// Stats after freeing everything.
        after: Stats,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overlap { block, live } => write!(
                f,
                "overlap: new block {:#x}+{} overlaps live block {:#x}+{}",
                block.0, block.1, live.0, live.1
            ),
            Self::Misaligned { address, align } => {
                write!(f, "misaligned: block {address:#x} is not aligned to {align}")
            }
            Self::TooShort {
                address,
                requested,
                usable,
            } => write!(
                f,
                "too short: block {address:#x} has {usable} usable bytes, {requested} requested"
            ),
            Self::OutOfRegion { address, usable } => write!(
                f,
                "out of region: block {address:#x}+{usable} is outside the backend's regions"
            ),
            Self::NotOwned { address } => {
                write!(f, "not owned: owns() denies live block {address:#x}")
            }
            Self::Corrupted {
                address,
                offset,
                expected,
                found,
            } => write!(
                f,
                "corrupted: block {address:#x} byte {offset} is {found:#04x}, {expected:#04x} was written"
            ),
            Self::NotZeroed { address, offset } => {
                write!(f, "not zeroed: block {address:#x} byte {offset} is not zero")
            }
            Self::FailureChangedState { before, after } => write!(
                f,
                "failure changed state: stats went from {before:?} to {after:?}"
            ),
            Self::StatsInconsistent {
                stats,
                initial_capacity,
            } => write!(
                f,
                "stats inconsistent: {stats:?} (initial capacity {initial_capacity})"
            ),
            Self::HeapCorrupted(corruption) => write!(f, "{corruption}"),
            Self::InUseMismatch { reported, shadow } => write!(
                f,
                "in_use mismatch: backend reports {reported}, live blocks hold {shadow}"
            ),
            Self::NotRestored { initial, after } => write!(
                f,
                "not restored: empty backend had {initial:?}, after freeing all it has {after:?}"
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// A violation together with the step that exposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError {
    /// Index of the operation, or `None` when found while freeing everything at the end.
    pub step: Option<usize>,
    /// The operation.
    pub op: Option<Op>,
    /// What went wrong.
    pub violation: Violation,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.step, self.op) {
            (Some(step), Some(op)) => write!(f, "step {step} ({op:?}): {}", self.violation),
            _ => write!(f, "while freeing everything: {}", self.violation),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: NonNull<u8>,
    /// The layout requested (size and alignment the block fits).
    layout: Layout,
    usable: usize,
    /// Seeds the fill pattern; unique per block handed out.
    id: u64,
}

impl Block {
    /// Where in [`pattern_table`] this block's pattern starts: differs between blocks, so
    /// a neighbour's stray write or a shifted copy shows.
    fn pattern_start(self) -> usize {
        (self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % PATTERN_LEN
    }

    /// The block's pattern as `(offset in block, chunk of the table)` pieces covering
    /// `0..len`: the table repeated from the block's starting point.
    fn pattern_chunks(self, len: usize) -> impl Iterator<Item = (usize, &'static [u8])> {
        let table = pattern_table();
        let mut position = self.pattern_start();
        let mut offset = 0;
        std::iter::from_fn(move || {
            (offset < len).then(|| {
                let take = (PATTERN_LEN - position).min(len - offset);
                let chunk = (offset, &table[position..position + take]);
                offset += take;
                position = 0;
                chunk
            })
        })
    }

    /// Writes the block's pattern over its whole usable size.
    fn fill(self) {
        for (offset, chunk) in self.pattern_chunks(self.usable) {
            let dst = self.ptr.as_ptr().wrapping_add(offset);
            // SAFETY: `offset + chunk.len() <= usable`: the block's usable bytes are ours.
            unsafe { dst.copy_from_nonoverlapping(chunk.as_ptr(), chunk.len()) };
        }
    }

    /// Checks the first `len` bytes still hold the block's pattern.
    fn verify(self, len: usize) -> Result<(), Violation> {
        for (offset, expected) in self.pattern_chunks(len) {
            // SAFETY: `offset + expected.len() <= len <= usable`, inside a live block whose
            // first `len` bytes we wrote (or the allocator copied).
            let found = unsafe { self.bytes(offset, expected.len()) };
            if found != expected {
                let at = found
                    .iter()
                    .zip(expected)
                    .position(|(f, e)| f != e)
                    .unwrap_or(0);
                return Err(Violation::Corrupted {
                    address: self.ptr.as_ptr().addr(),
                    offset: offset + at,
                    expected: expected[at],
                    found: found[at],
                });
            }
        }
        Ok(())
    }

    /// Checks every byte from `from` on is zero.
    fn check_zero(self, from: usize) -> Result<(), Violation> {
        // SAFETY: `from..usable` lies inside a block just handed out and zeroed.
        let bytes = unsafe { self.bytes(from, self.usable.saturating_sub(from)) };
        match bytes.iter().position(|b| *b != 0) {
            None => Ok(()),
            Some(at) => Err(Violation::NotZeroed {
                address: self.ptr.as_ptr().addr(),
                offset: from + at,
            }),
        }
    }

    /// # Safety
    ///
    /// `offset..offset + len` must be initialised bytes inside the block.
    unsafe fn bytes<'a>(self, offset: usize, len: usize) -> &'a [u8] {
        // SAFETY: the caller's guarantee; nothing writes the block while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }
}

/// Length of the fill-pattern table: a prime, so no block size lines up with its period.
const PATTERN_LEN: usize = 4099;

/// Pseudo-random bytes the harness fills blocks with. Copying and comparing slices of it
/// (instead of computing each byte) keeps the harness fast under miri.
fn pattern_table() -> &'static [u8; PATTERN_LEN] {
    static TABLE: std::sync::OnceLock<[u8; PATTERN_LEN]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        std::array::from_fn(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
    })
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("profile yields valid layouts")
}

/// Drives an allocator with [`Op`]s and checks each step against a shadow of live blocks.
///
/// After every step it checks: no overlap, requested alignment, usable size at least the
/// request, blocks inside the backend's regions and owned by it, contents intact (every
/// block is filled with a pattern, verified when it is freed or resized), zeroed memory
/// zero, failed requests changing nothing, and stats consistent with the shadow. At the end
/// [`finish`](Self::finish) frees everything and checks the backend is back to its initial
/// stats, i.e. nothing leaked and free space was fully coalesced.
pub struct Harness<A: Subject> {
    // Field order matters: the allocator must drop before the regions it lives in.
    allocator: A,
    regions: Regions,
    profile: Profile,
    live: Vec<Block>,
    /// Sum of the live blocks' usable sizes.
    live_usable: usize,
    /// Start → end of every live block with a usable size above zero.
    occupied: BTreeMap<usize, usize>,
    initial: Stats,
    next_id: u64,
    /// Operations applied, for the cadence of the allocator's invariant check.
    operations: usize,
}

/// Live blocks per operation between two invariant checks of a full heap.
const CHECK_EVERY_LIVE: usize = 128;
/// Operations between two invariant checks under miri.
const CHECK_EVERY_UNDER_MIRI: usize = 64;

impl<A: Subject> fmt::Debug for Harness<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("profile", &self.profile)
            .field("live", &self.live.len())
            .field("initial", &self.initial)
            .finish_non_exhaustive()
    }
}

impl<A: Subject> Harness<A> {
    /// Builds the allocator with `make`, which takes its memory from the given [`Regions`].
    pub fn new(profile: Profile, make: impl FnOnce(&mut Regions) -> A) -> Self {
        let mut regions = Regions::new();
        let allocator = make(&mut regions);
        let initial = allocator.stats();
        Self {
            allocator,
            regions,
            profile,
            live: Vec::new(),
            live_usable: 0,
            occupied: BTreeMap::new(),
            initial,
            next_id: 0,
            operations: 0,
        }
    }

    /// The allocator under test.
    pub fn allocator(&self) -> &A {
        &self.allocator
    }

    /// The allocator under test, for calls outside the model (a cache trim, say).
    pub fn allocator_mut(&mut self) -> &mut A {
        &mut self.allocator
    }

    /// Number of live blocks.
    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }

    /// Stats of the allocator when the harness was built.
    pub fn initial_stats(&self) -> Stats {
        self.initial
    }

    /// Applies every operation, then [`finish`](Self::finish)es.
    ///
    /// # Errors
    ///
    /// The first violation found, with its step.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), RunError> {
        for (step, &op) in ops.iter().enumerate() {
            self.apply(op).map_err(|violation| RunError {
                step: Some(step),
                op: Some(op),
                violation,
            })?;
        }
        self.finish().map_err(|violation| RunError {
            step: None,
            op: None,
            violation,
        })
    }

    /// Applies one operation and checks the allocator afterwards.
    ///
    /// # Errors
    ///
    /// The violation found.
    pub fn apply(&mut self, op: Op) -> Result<(), Violation> {
        match op {
            Op::Alloc {
                size,
                align,
                zeroed,
            } => {
                let layout = layout(self.profile.size(size), self.profile.align(align));
                self.allocate(layout, zeroed).map(drop)
            }
            Op::Free { slot, fit } => {
                let Some(index) = self.pick(slot) else {
                    return Ok(());
                };
                let block = self.live[index];
                let slack = block.usable - block.layout.size();
                let size = block.layout.size() + usize::from(fit) % (slack + 1);
                self.free_at(index, size)
            }
            Op::Grow {
                slot,
                by,
                align,
                zeroed,
            } => {
                let Some(index) = self.pick(slot) else {
                    return Ok(());
                };
                let old = self.live[index].layout;
                let size = old.size().saturating_add(1 + self.profile.size(by));
                let align = if align % 2 == 0 {
                    old.align()
                } else {
                    self.profile.align(align >> 1)
                };
                self.resize(index, layout(size, align), zeroed)
            }
            Op::Shrink { slot, to } => {
                let Some(index) = self.pick(slot) else {
                    return Ok(());
                };
                let old = self.live[index].layout;
                let size = to as usize % (old.size() + 1);
                self.resize(index, layout(size, old.align()), false)
            }
        }
    }

    /// Allocates `layout` (zeroed or not) and checks the result; `Ok(false)` when the
    /// allocator refused, which is allowed.
    ///
    /// # Errors
    ///
    /// The violation found.
    pub fn allocate(&mut self, layout: Layout, zeroed: bool) -> Result<bool, Violation> {
        self.operations += 1;
        let before = self.walk_due().then(|| self.allocator.stats());
        let result = if zeroed {
            self.allocator.allocate_zeroed(layout)
        } else {
            self.allocator.allocate(layout)
        };
        let Ok(slice) = result else {
            return self.unchanged_since(before).map(|()| false);
        };
        let block = self.admit(slice, layout)?;
        if zeroed {
            block.check_zero(0)?;
        }
        block.fill();
        self.live_usable += block.usable;
        self.live.push(block);
        self.check_stats()?;
        Ok(true)
    }

    /// Frees every live block (checking its contents), then checks the allocator is back
    /// to its initial stats.
    ///
    /// # Errors
    ///
    /// The violation found.
    pub fn finish(&mut self) -> Result<(), Violation> {
        while let Some(index) = self.live.len().checked_sub(1) {
            let size = self.live[index].layout.size();
            self.free_at(index, size)?;
        }
        self.allocator.check().map_err(Violation::HeapCorrupted)?;
        let after = self.allocator.stats();
        // Deferred frees may still count as in use: the caller checks the release itself.
        let released = after.in_use == 0 || self.profile.defers_frees;
        let cached_ok = self.profile.caches_memory
            && released
            && (self.profile.grows || after.capacity == self.initial.capacity);
        let restored = cached_ok
            || after.in_use == 0
                && after.free == self.initial.free
                && after.largest_free == self.initial.largest_free
                && after.metadata == self.initial.metadata
                && after.capacity == self.initial.capacity;
        if restored {
            Ok(())
        } else {
            Err(Violation::NotRestored {
                initial: self.initial,
                after,
            })
        }
    }

    fn pick(&self, slot: u16) -> Option<usize> {
        (!self.live.is_empty()).then(|| usize::from(slot) % self.live.len())
    }

    fn free_at(&mut self, index: usize, size: usize) -> Result<(), Violation> {
        self.operations += 1;
        let block = self.live.swap_remove(index);
        self.live_usable -= block.usable;
        block.verify(block.usable)?;
        self.occupied.remove(&block.ptr.as_ptr().addr());
        let layout = layout(size, block.layout.align());
        // SAFETY: the block is live, came from this allocator, and `layout` fits it: same
        // alignment, size between the requested and the usable size.
        unsafe { self.allocator.deallocate(block.ptr, layout) };
        self.check_stats()
    }

    fn resize(&mut self, index: usize, new_layout: Layout, zeroed: bool) -> Result<(), Violation> {
        self.operations += 1;
        let old = self.live[index];
        old.verify(old.usable)?;
        let before = self.walk_due().then(|| self.allocator.stats());
        let growing = new_layout.size() >= old.layout.size();
        // SAFETY: the block is live, came from this allocator and `old.layout` fits it; the
        // size comparison picks the call whose precondition holds.
        let result = unsafe {
            match (growing, zeroed) {
                (true, false) => self.allocator.grow(old.ptr, old.layout, new_layout),
                (true, true) => self.allocator.grow_zeroed(old.ptr, old.layout, new_layout),
                (false, _) => self.allocator.shrink(old.ptr, old.layout, new_layout),
            }
        };
        let Ok(slice) = result else {
            return self.unchanged_since(before);
        };
        // The old block is gone (moved or resized in place): take it out of the shadow
        // before admitting the new one, which may overlap the old one's place.
        self.live.swap_remove(index);
        self.live_usable -= old.usable;
        self.occupied.remove(&old.ptr.as_ptr().addr());
        let mut block = self.admit(slice, new_layout)?;
        let kept = old.layout.size().min(new_layout.size());
        // The first `kept` bytes must carry over, wherever the block now is.
        block.id = old.id;
        block.verify(kept)?;
        if zeroed {
            block.check_zero(old.layout.size())?;
        }
        block.id = self.fresh_id();
        block.fill();
        self.live_usable += block.usable;
        self.live.push(block);
        self.check_stats()
    }

    /// Checks a block the allocator returned and records it as occupied.
    fn admit(&mut self, slice: NonNull<[u8]>, layout: Layout) -> Result<Block, Violation> {
        let ptr = slice.cast::<u8>();
        let address = ptr.as_ptr().addr();
        let usable = slice.len();
        if address % layout.align() != 0 {
            return Err(Violation::Misaligned {
                address,
                align: layout.align(),
            });
        }
        if usable < layout.size() {
            return Err(Violation::TooShort {
                address,
                requested: layout.size(),
                usable,
            });
        }
        if usable > 0 {
            if !self.regions.contains(address, usable) {
                return Err(Violation::OutOfRegion { address, usable });
            }
            if !self.allocator.owns(ptr) {
                return Err(Violation::NotOwned { address });
            }
            let end = address + usable;
            let before = self.occupied.range(..end).next_back();
            if let Some((&start, &live_end)) = before.filter(|(_, &live_end)| live_end > address) {
                return Err(Violation::Overlap {
                    block: (address, usable),
                    live: (start, live_end - start),
                });
            }
            self.occupied.insert(address, end);
        }
        Ok(Block {
            ptr,
            layout,
            usable,
            id: self.fresh_id(),
        })
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether this operation is one the harness walks the allocator on: every operation
    /// while few blocks are live, and every `live / CHECK_EVERY_LIVE` operations beyond, so
    /// a test that fills the heap with 10^5 blocks does not walk it 10^5 times; under miri
    /// every 64th operation. The walks are the allocator's invariant check and its stats,
    /// which may cost O(blocks) too (heapkit-tlsf keeps no running count). `finish`
    /// always checks, and so does every refusal outside miri.
    fn walk_due(&self) -> bool {
        let every = if cfg!(miri) {
            // Miri interprets each step of a walk over every free list: it checks the
            // check's own memory safety at a coarser cadence.
            CHECK_EVERY_UNDER_MIRI
        } else {
            self.live.len() / CHECK_EVERY_LIVE + 1
        };
        self.operations % every == 0
    }

    /// A refusal must change nothing: the heap stays sound (checked at every refusal, but
    /// at the cadence under miri, where refusals are most of a random run's steps), the
    /// bytes in use match the shadow's, and when the stats were taken before the call,
    /// they are the same after.
    fn unchanged_since(&self, before: Option<Stats>) -> Result<(), Violation> {
        if !cfg!(miri) || self.walk_due() {
            self.allocator.check().map_err(Violation::HeapCorrupted)?;
        }
        if let Some(before) = before {
            let after = self.allocator.stats();
            if after != before {
                return Err(Violation::FailureChangedState { before, after });
            }
        }
        self.compare_stats()
    }

    /// The allocator's check and stats against the shadow, when [`walk_due`](Self::walk_due).
    fn check_stats(&self) -> Result<(), Violation> {
        if !self.walk_due() {
            return Ok(());
        }
        self.allocator.check().map_err(Violation::HeapCorrupted)?;
        self.compare_stats()
    }

    /// Stats consistent, capacity kept (unless the allocator grows), bytes in use as the
    /// shadow counts them.
    fn compare_stats(&self) -> Result<(), Violation> {
        let stats = self.allocator.stats();
        let capacity_moved = !self.profile.grows && stats.capacity != self.initial.capacity;
        if !stats.is_consistent() || capacity_moved {
            return Err(Violation::StatsInconsistent {
                stats,
                initial_capacity: self.initial.capacity,
            });
        }
        let shadow = self.live_usable;
        let matches = if self.profile.exact_in_use {
            stats.in_use == shadow
        } else {
            stats.in_use >= shadow
        };
        if matches {
            Ok(())
        } else {
            Err(Violation::InUseMismatch {
                reported: stats.in_use,
                shadow,
            })
        }
    }
}
