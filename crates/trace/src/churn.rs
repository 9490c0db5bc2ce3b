//! The scale study's workload, drawn as it runs: `live` blocks, then `steps` replacements
//! of a random one of the newest `hot`, then every block freed.
//!
//! A stored [`Trace`] of the same calls takes 24 bytes per event, 96 MB at a million live
//! blocks (48 MB of them the steps'), and its replay reads them from memory between the
//! calls it times: once the trace and the heap no longer fit in the cache together, that
//! read is most of what grows with the heap for an allocator whose call takes a
//! nanosecond or two (the pool's hot set went from 1.2 to 2.3 ns per call).
//! [`replay_churn`] draws each step from the generators instead, so what it reads besides
//! the allocator's own memory is the table of live blocks, as a program holds its
//! pointers. [`Churn::to_trace`] writes the same calls as a trace.
//!
//! ```
//! use heapkit_trace::arena::Heapkit;
//! use heapkit_trace::churn::{replay_churn, Churn};
//! use heapkit_trace::workloads::SizeMix;
//! use heapkit_trace::Region;
//!
//! let churn = Churn {
//!     live: 1_000,
//!     steps: 5_000,
//!     hot: 1_000,
//!     mix: SizeMix::UniformSmall,
//!     seed: 7,
//! };
//! let region = Region::new(1 << 20, 16).leak();
//! let mut arena = Heapkit(heapkit_tlsf::Tlsf::with_region(region).unwrap());
//! let ticks = replay_churn(&mut arena, &churn).expect("1 MiB holds 1,000 blocks of 256 B");
//! assert!(ticks > 0);
//! assert_eq!(churn.summary(), churn.to_trace().summary());
//! ```

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::arena::Arena;
use crate::replay::{Clock, OutOfMemory};
use crate::trace::{Summary, Trace, TraceBuilder};
use crate::workloads::SizeMix;
use crate::Rng;

/// The calls of a churn: fill, replace, drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Churn {
    /// Blocks allocated first, and kept live.
    pub live: usize,
    /// Replacements: each frees a live block and allocates one in its place (none without
    /// live blocks: the churn's readers panic).
    pub steps: usize,
    /// Each step replaces a random one of the newest `hot` blocks (`live` for any; taken
    /// as 1 to `live`).
    pub hot: usize,
    /// The sizes of the blocks.
    pub mix: SizeMix,
    /// The generators' seed: the same calls for every allocator.
    pub seed: u64,
}

/// The churn's random choices, in the order every reader of it takes them.
struct Draws {
    fill: Rng,
    choose: Rng,
    mix: SizeMix,
    first_hot: usize,
    hot: usize,
}

impl Draws {
    fn new(churn: &Churn) -> Self {
        assert!(
            churn.live > 0 || churn.steps == 0,
            "heapkit-trace: a churn's steps replace live blocks, and it has none"
        );
        // The other mixes never ask for zero bytes.
        assert!(
            churn.mix != SizeMix::Fixed(0),
            "heapkit-trace: a churn's blocks have at least one byte"
        );
        let hot = churn.hot.clamp(1, churn.live.max(1));
        Self {
            fill: Rng::new(churn.seed),
            choose: Rng::new(churn.seed ^ 0x9e37_79b9_7f4a_7c15),
            mix: churn.mix,
            first_hot: churn.live.saturating_sub(hot),
            hot,
        }
    }

    /// The layout of the next block of the fill.
    #[inline(always)]
    fn fill(&mut self) -> Layout {
        self.mix.layout(&mut self.fill)
    }

    /// The next step: which live block (by position) is replaced, and the new one's layout.
    #[inline(always)]
    fn step(&mut self) -> (usize, Layout) {
        let at = self.first_hot + self.choose.below(self.hot);
        (at, self.mix.layout(&mut self.choose))
    }
}

impl Churn {
    /// Events of the churn as a trace: the fill, two per step, the drain.
    pub fn events(&self) -> usize {
        2 * (self.live + self.steps)
    }

    /// What the churn asks of an allocator, as [`Trace::summary`] of
    /// [`to_trace`](Self::to_trace) gives it, without building the trace.
    ///
    /// # Panics
    ///
    /// On steps with no live blocks, and on blocks of zero bytes (`SizeMix::Fixed(0)`).
    pub fn summary(&self) -> Summary {
        let mut draws = Draws::new(self);
        let mut sizes = Vec::with_capacity(self.live);
        let mut summary = Summary {
            events: self.events(),
            allocs: self.live + self.steps,
            max_size: 0,
            max_align: 1,
            fixed_layout: None,
            peak_live: 0,
            newest_first: true,
        };
        let mut first = None;
        let mut single = true;
        let mut note = |summary: &mut Summary, layout: Layout| {
            summary.max_size = summary.max_size.max(layout.size());
            summary.max_align = summary.max_align.max(layout.align());
            single &= *first.get_or_insert(layout) == layout;
        };
        let mut live_bytes = 0;
        for _ in 0..self.live {
            let layout = draws.fill();
            note(&mut summary, layout);
            live_bytes += layout.size();
            sizes.push(layout.size());
        }
        summary.peak_live = live_bytes;
        for _ in 0..self.steps {
            let (at, layout) = draws.step();
            note(&mut summary, layout);
            // Each block replaced so far was the newest (the last one, whose replacement
            // is the newest again) only if this one is too; the drain then frees from the
            // last down.
            summary.newest_first &= at + 1 == self.live;
            // A step frees first: the peak is reached after the allocation.
            live_bytes = live_bytes - sizes[at] + layout.size();
            sizes[at] = layout.size();
            summary.peak_live = summary.peak_live.max(live_bytes);
        }
        if single {
            summary.fixed_layout = first;
        }
        summary
    }

    /// The churn's calls as a trace, for tools that replay traces.
    ///
    /// # Panics
    ///
    /// As [`summary`](Self::summary) does.
    pub fn to_trace(&self) -> Trace {
        let mut draws = Draws::new(self);
        let mut trace = TraceBuilder::new();
        let mut ids: Vec<u64> = Vec::with_capacity(self.live);
        let alloc = |trace: &mut TraceBuilder, id: u64, layout: Layout| {
            trace
                .alloc(id, layout.size(), layout.align())
                .expect("fresh ids");
        };
        for id in 0..self.live as u64 {
            alloc(&mut trace, id, draws.fill());
            ids.push(id);
        }
        for next in (self.live as u64..).take(self.steps) {
            let (at, layout) = draws.step();
            trace.free(ids[at]).expect("live id");
            alloc(&mut trace, next, layout);
            ids[at] = next;
        }
        for &id in ids.iter().rev() {
            trace.free(id).expect("live id");
        }
        trace.finish()
    }
}

/// Runs `churn` on `arena` and returns the ticks its steps took, timed together with no
/// timer between the calls. Each new block's first byte is written, as a replay does.
///
/// # Errors
///
/// The event (numbered as in [`Churn::to_trace`]) the arena could not serve; the blocks
/// allocated until then are freed.
///
/// # Panics
///
/// As [`Churn::summary`] does. A panic from the arena leaks the live blocks (freeing them
/// while a step is under way could free its block twice).
pub fn replay_churn<A: Arena>(arena: &mut A, churn: &Churn) -> Result<u64, OutOfMemory> {
    let mut draws = Draws::new(churn);
    let mut blocks: Vec<(NonNull<u8>, Layout)> = Vec::with_capacity(churn.live);
    let result = run(arena, churn, &mut draws, &mut blocks);
    for &(block, layout) in blocks.iter().rev() {
        // SAFETY: every block in the table is live, allocated by `arena` with `layout`.
        unsafe { arena.free(block, layout) };
    }
    result
}

/// The fill and the steps; on failure `blocks` holds exactly the live blocks.
#[inline(always)]
fn run<A: Arena>(
    arena: &mut A,
    churn: &Churn,
    draws: &mut Draws,
    blocks: &mut Vec<(NonNull<u8>, Layout)>,
) -> Result<u64, OutOfMemory> {
    for event in 0..churn.live {
        let layout = draws.fill();
        let block = arena.alloc(layout).ok_or(OutOfMemory { event })?;
        // SAFETY: a fresh block of at least one byte (`Draws::new` refuses zero).
        unsafe { block.as_ptr().write(event as u8) };
        blocks.push((block, layout));
    }
    let started = Clock::ticks();
    for step in 0..churn.steps {
        let (at, layout) = draws.step();
        let (old, old_layout) = blocks[at];
        // SAFETY: the table's blocks are live, allocated by `arena` with their layouts.
        unsafe { arena.free(old, old_layout) };
        let Some(block) = arena.alloc(layout) else {
            blocks.swap_remove(at);
            return Err(OutOfMemory {
                event: churn.live + 2 * step + 1,
            });
        };
        // SAFETY: as in the fill.
        unsafe { block.as_ptr().write(at as u8) };
        blocks[at] = (block, layout);
    }
    Ok(Clock::ticks().wrapping_sub(started))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::replay_whole;
    use std::alloc::System;

    /// Passes calls to the system allocator, noting each one's layout in order.
    #[derive(Default)]
    struct Noted {
        calls: Vec<(char, Layout)>,
    }

    impl Arena for Noted {
        fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
            self.calls.push(('a', layout));
            // SAFETY: the mixes never ask for zero bytes.
            NonNull::new(unsafe { std::alloc::GlobalAlloc::alloc(&System, layout) })
        }

        unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
            self.calls.push(('f', layout));
            // SAFETY: per the caller, allocated above with `layout`.
            unsafe { std::alloc::GlobalAlloc::dealloc(&System, ptr.as_ptr(), layout) }
        }
    }

    fn churns() -> Vec<Churn> {
        let mut churns = Vec::new();
        // A tenth of the blocks under miri, which interprets every call.
        let n = if cfg!(miri) { 30 } else { 300 };
        let shapes = [
            (n, 3 * n, n),
            (n, 3 * n, 16),
            (n, 50, 1),
            (1, 5, 1),
            (0, 0, 1),
        ];
        for (live, steps, hot) in shapes {
            for mix in [SizeMix::UniformSmall, SizeMix::Fixed(64), SizeMix::Mixed] {
                churns.push(Churn {
                    live,
                    steps,
                    hot,
                    mix,
                    seed: 5,
                });
            }
        }
        churns
    }

    #[test]
    fn the_generated_calls_are_the_trace_s() {
        for churn in churns() {
            let mut generated = Noted::default();
            replay_churn(&mut generated, &churn).unwrap();
            let mut replayed = Noted::default();
            let trace = churn.to_trace();
            replay_whole(&mut replayed, &trace).unwrap();
            assert_eq!(generated.calls, replayed.calls, "{churn:?}");
            assert_eq!(generated.calls.len(), churn.events(), "{churn:?}");
            assert_eq!(churn.summary(), trace.summary(), "{churn:?}");
        }
    }

    #[test]
    fn steps_replace_only_the_newest_hot_blocks() {
        let churn = Churn {
            live: 100,
            steps: if cfg!(miri) { 200 } else { 1_000 },
            hot: 10,
            mix: SizeMix::UniformSmall,
            seed: 9,
        };
        let mut draws = Draws::new(&churn);
        let picked: Vec<usize> = (0..churn.steps).map(|_| draws.step().0).collect();
        assert!(picked.iter().all(|&at| (90..100).contains(&at)));
        assert!(
            (90..100).all(|at| picked.contains(&at)),
            "every hot block is picked"
        );
    }

    #[test]
    #[should_panic(expected = "at least one byte")]
    fn blocks_of_zero_bytes_are_refused_before_any_call() {
        let churn = Churn {
            live: 2,
            steps: 1,
            hot: 2,
            mix: SizeMix::Fixed(0),
            seed: 0,
        };
        let _ = replay_churn(&mut Noted::default(), &churn);
    }

    /// Refuses every allocation from the `refuse_at`-th on.
    struct Refusing {
        inner: Noted,
        refuse_at: usize,
        allocs: usize,
        live: isize,
    }

    impl Arena for Refusing {
        fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
            self.allocs += 1;
            if self.allocs > self.refuse_at {
                return None;
            }
            self.live += 1;
            self.inner.alloc(layout)
        }

        unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
            self.live -= 1;
            // SAFETY: forwarded.
            unsafe { self.inner.free(ptr, layout) }
        }
    }

    #[test]
    fn running_out_names_the_event_and_frees_every_live_block() {
        let churn = Churn {
            live: 50,
            steps: 100,
            hot: 50,
            mix: SizeMix::UniformSmall,
            seed: 3,
        };
        // In the fill (the 31st allocation is event 30), then in the steps (the 61st is
        // the allocation of step 10: event 50 + 2 * 10 + 1).
        for (refuse_at, event) in [(30, 30), (60, 71)] {
            let mut arena = Refusing {
                inner: Noted::default(),
                refuse_at,
                allocs: 0,
                live: 0,
            };
            assert_eq!(replay_churn(&mut arena, &churn), Err(OutOfMemory { event }));
            assert_eq!(
                arena.live, 0,
                "refused at {refuse_at}: blocks leaked or freed twice"
            );
        }
    }
}
