//! The allocators the lab compares, each behind one object-safe interface so the lab can
//! hold them in a list while every replay stays monomorphised for its allocator.

use std::alloc::{Layout, System};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr::NonNull;

use heapkit_bitmap_arena::BitmapArena;
use heapkit_buddy::Buddy;
use heapkit_fit::{
    AddressOrderedFirstFit, BestFit, Deferred, FirstFit, FitHeap, HeaderlessHeap, NextFit, Slob,
};
use heapkit_pool::Pool;
use heapkit_segregated::Heap;

use crate::peers::{buddy_system_over, linked_list_over, rlsf_over, talc_over, tlsf_over};
use heapkit_trace::arena::FromGlobal;
use heapkit_trace::arena::{Arena, FreeStacks, Heapkit};
use heapkit_trace::churn::{replay_churn, Churn};
use heapkit_trace::replay::{
    replay_measured, replay_span, replay_timed, replay_whole, usable_bytes, Footprint, OutOfMemory,
};
use heapkit_trace::trace::{Summary, Trace};
use heapkit_trace::workloads::heap_efficiency_with;

/// One region of memory, leaked once and lent to one allocator at a time, so that a lab
/// run does not leak a region per replay.
#[derive(Debug)]
pub struct Scratch {
    start: NonNull<u8>,
    len: usize,
}

impl Scratch {
    /// A region of `len` bytes aligned to `len` rounded up to a power of two, so a buddy
    /// system gets whole top-order blocks, as its users arrange.
    pub fn new(len: usize) -> Self {
        let region = heapkit_trace::Region::new(len, len.next_power_of_two()).leak();
        Self {
            start: NonNull::from(region).cast(),
            len,
        }
    }

    /// The first `len` bytes, to build one allocator over.
    ///
    /// # Safety
    ///
    /// Nothing built over an earlier loan may be in use any more: the allocator and all
    /// its blocks are gone.
    unsafe fn lend(&mut self, len: usize) -> &'static mut [MaybeUninit<u8>] {
        assert!(
            len <= self.len,
            "the lab's scratch region is {} bytes",
            self.len
        );
        // SAFETY: the region was leaked, so it lives forever; per the caller, no earlier
        // loan is in use, so this is the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr().cast(), len) }
    }
}

/// What [`Contender::time`] times after its warming replay.
#[derive(Debug)]
pub enum Measure<'a> {
    /// One replay timed whole (its ticks returned), then one more appending each call's
    /// ticks here.
    WholeThenEachCall(&'a mut Vec<u64>),
    /// One replay, of which only the events in this span are timed, together (all of
    /// them for the replay whole).
    Span(Range<usize>),
}

/// An allocator under test.
pub trait Contender {
    /// Short name for `--only`.
    fn key(&self) -> &'static str;
    /// Name in tables and plots.
    fn name(&self) -> &'static str;
    /// Whether it can serve a trace with this summary (a pool serves one layout).
    fn fits(&self, summary: &Summary) -> bool;
    /// Builds a fresh instance over `len` bytes and replays `trace` (whose summary is
    /// `summary`) on it once untimed (to warm caches and the allocator's own state, as a
    /// running program's heap is), then times it as `measure` says and returns the ticks.
    ///
    /// # Errors
    ///
    /// The event it ran out of memory at.
    fn time(
        &self,
        trace: &Trace,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
        measure: Measure<'_>,
    ) -> Result<u64, OutOfMemory>;
    /// Builds a fresh instance over `len` bytes and runs `churn` (whose summary is
    /// `summary`) on it twice, the first to warm it as [`time`](Self::time) does; returns
    /// the ticks of the second run's steps.
    ///
    /// # Errors
    ///
    /// The event it ran out of memory at.
    fn time_churn(
        &self,
        churn: &Churn,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
    ) -> Result<u64, OutOfMemory>;
    /// Replays `trace` on a fresh instance over `len` bytes, measuring its footprint.
    fn memory(
        &self,
        trace: &Trace,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
    ) -> Option<Footprint>;
    /// Heap efficiency on a fresh instance over `len` bytes with requests drawn from
    /// `layouts`.
    fn efficiency(
        &self,
        layouts: &[Layout],
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
        seed: u64,
    ) -> Option<f64>;
    /// Bytes the allocator keeps for itself over `len` bytes: its own struct, plus the
    /// bytes of a fresh region a greedy fill cannot get.
    fn metadata(&self, summary: &Summary, scratch: &mut Scratch, len: usize) -> Option<usize>;
}

/// A region allocator built by `build`, which may refuse a trace it cannot serve.
struct InRegion<A> {
    key: &'static str,
    name: &'static str,
    build: fn(&'static mut [MaybeUninit<u8>], &Summary) -> Option<A>,
    fits: fn(&Summary) -> bool,
}

impl<A: Arena> InRegion<A> {
    /// Builds a fresh instance over `len` bytes of `scratch` and runs `with` on it.
    fn with_fresh<R>(
        &self,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
        with: impl FnOnce(&mut A) -> R,
    ) -> Option<R> {
        // SAFETY: every instance is built here and dropped before this returns, with
        // its blocks (each use frees what it allocated), so no earlier loan is in use.
        let region = unsafe { scratch.lend(len) };
        let mut arena = (self.build)(region, summary)?;
        Some(with(&mut arena))
    }
}

impl<A: Arena> Contender for InRegion<A> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn fits(&self, summary: &Summary) -> bool {
        (self.fits)(summary)
    }
    fn time(
        &self,
        trace: &Trace,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
        measure: Measure<'_>,
    ) -> Result<u64, OutOfMemory> {
        self.with_fresh(summary, scratch, len, |arena| time(arena, trace, measure))
            .unwrap_or(Err(OutOfMemory { event: 0 }))
    }
    fn time_churn(
        &self,
        churn: &Churn,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
    ) -> Result<u64, OutOfMemory> {
        self.with_fresh(summary, scratch, len, |arena| time_churn(arena, churn))
            .unwrap_or(Err(OutOfMemory { event: 0 }))
    }
    fn memory(
        &self,
        trace: &Trace,
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
    ) -> Option<Footprint> {
        let every = (trace.events().len() / 400).max(1);
        self.with_fresh(summary, scratch, len, |arena| {
            replay_measured(arena, trace, every)
        })
    }
    fn efficiency(
        &self,
        layouts: &[Layout],
        summary: &Summary,
        scratch: &mut Scratch,
        len: usize,
        seed: u64,
    ) -> Option<f64> {
        // The measure frees blocks at random: it says nothing of an allocator that serves
        // only a stack discipline (a bump region).
        let random_frees = Summary {
            newest_first: false,
            ..*summary
        };
        if layouts.is_empty() || !(self.fits)(&random_frees) {
            return None;
        }
        self.with_fresh(summary, scratch, len, |arena| {
            heap_efficiency_with(arena, len, seed, |rng| layouts[rng.below(layouts.len())])
        })
    }
    fn metadata(&self, summary: &Summary, scratch: &mut Scratch, len: usize) -> Option<usize> {
        self.with_fresh(summary, scratch, len, |arena| {
            std::mem::size_of::<A>() + len - usable_bytes(arena, len)
        })
    }
}

/// A process-wide allocator: timed only.
struct Global<G> {
    key: &'static str,
    name: &'static str,
    allocator: fn() -> G,
}

impl<G: std::alloc::GlobalAlloc> Contender for Global<G> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn fits(&self, _: &Summary) -> bool {
        true
    }
    fn time(
        &self,
        trace: &Trace,
        _: &Summary,
        _: &mut Scratch,
        _: usize,
        measure: Measure<'_>,
    ) -> Result<u64, OutOfMemory> {
        time(&mut FromGlobal((self.allocator)()), trace, measure)
    }
    fn time_churn(
        &self,
        churn: &Churn,
        _: &Summary,
        _: &mut Scratch,
        _: usize,
    ) -> Result<u64, OutOfMemory> {
        time_churn(&mut FromGlobal((self.allocator)()), churn)
    }
    fn memory(&self, _: &Trace, _: &Summary, _: &mut Scratch, _: usize) -> Option<Footprint> {
        None
    }
    fn efficiency(
        &self,
        _: &[Layout],
        _: &Summary,
        _: &mut Scratch,
        _: usize,
        _: u64,
    ) -> Option<f64> {
        None
    }
    fn metadata(&self, _: &Summary, _: &mut Scratch, _: usize) -> Option<usize> {
        None
    }
}

fn time<A: Arena>(arena: &mut A, trace: &Trace, measure: Measure<'_>) -> Result<u64, OutOfMemory> {
    replay_whole(arena, trace)?;
    match measure {
        Measure::WholeThenEachCall(samples) => {
            let whole = replay_whole(arena, trace)?;
            replay_timed(arena, trace, samples)?;
            Ok(whole)
        }
        Measure::Span(span) => replay_span(arena, trace, span),
    }
}

fn time_churn<A: Arena>(arena: &mut A, churn: &Churn) -> Result<u64, OutOfMemory> {
    replay_churn(arena, churn)?;
    replay_churn(arena, churn)
}

/// The smallest block heapkit's buddy and bitmap arena are built with here.
const MIN_BLOCK: usize = 16;

fn any(_: &Summary) -> bool {
    true
}

/// Every allocator the lab knows, heapkit's first.
pub fn all() -> Vec<Box<dyn Contender>> {
    vec![
        Box::new(InRegion {
            key: "heap",
            name: "heapkit Heap",
            build: |region, _| Heap::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
        Box::new(InRegion {
            key: "tlsf",
            name: "heapkit Tlsf",
            build: |region, _| Some(tlsf_over(region)),
            fits: any,
        }),
        Box::new(InRegion {
            key: "buddy",
            name: "heapkit Buddy",
            // 16 B to 64 MiB blocks.
            build: |region, _| {
                Buddy::<23>::with_region(region, MIN_BLOCK)
                    .ok()
                    .map(Heapkit)
            },
            fits: any,
        }),
        Box::new(InRegion {
            key: "bitmap",
            name: "heapkit BitmapArena",
            build: |region, _| {
                BitmapArena::with_region(region, MIN_BLOCK)
                    .ok()
                    .map(Heapkit)
            },
            fits: any,
        }),
        Box::new(InRegion {
            key: "pool",
            name: "heapkit Pool",
            build: |region, summary| {
                let layout = summary.fixed_layout?;
                Pool::with_region(region, layout.size(), layout.align())
                    .ok()
                    .map(Heapkit)
            },
            fits: |summary| {
                summary
                    .fixed_layout
                    .is_some_and(|layout| layout.size() >= Pool::MIN_BLOCK_SIZE)
            },
        }),
        Box::new(InRegion {
            key: "region",
            name: "heapkit Bump",
            build: |region, _| Some(Heapkit(heapkit_region::Bump::new(region))),
            // Frees other than the newest block's are no-ops: only a stack discipline
            // runs in bounded memory.
            fits: |summary| summary.newest_first,
        }),
        Box::new(InRegion {
            key: "rlsf",
            name: "rlsf",
            build: |region, _| Some(rlsf_over(region)),
            fits: any,
        }),
        Box::new(InRegion {
            key: "talc",
            name: "talc",
            build: |region, _| Some(talc_over(region)),
            fits: any,
        }),
        Box::new(InRegion {
            key: "buddy_system_allocator",
            name: "buddy_system_allocator",
            build: |region, _| Some(buddy_system_over(region)),
            fits: any,
        }),
        Box::new(InRegion {
            key: "linked_list_allocator",
            name: "linked_list_allocator",
            build: |region, _| Some(linked_list_over(region)),
            fits: any,
        }),
        Box::new(Global {
            key: "sharded",
            name: "heapkit Sharded",
            allocator: heapkit_sharded::Sharded::new,
        }),
        Box::new(Global {
            key: "system",
            name: "glibc malloc",
            allocator: || System,
        }),
        Box::new(Global {
            key: "mimalloc",
            name: "mimalloc",
            allocator: || mimalloc::MiMalloc,
        }),
    ]
}

/// heapkit-fit's classic policies and SLOB, for the fragmentation study (their list
/// policies search in O(free blocks), which the timed workloads would only confirm).
pub fn classic_fits() -> Vec<Box<dyn Contender>> {
    vec![
        Box::new(InRegion {
            key: "fit-aoff",
            name: "heapkit-fit address-ordered first fit",
            build: |region, _| {
                FitHeap::<AddressOrderedFirstFit>::with_region(region)
                    .ok()
                    .map(Heapkit)
            },
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-best",
            name: "heapkit-fit best fit",
            build: |region, _| FitHeap::<BestFit>::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-aoff-headerless",
            name: "heapkit-fit address-ordered first fit, headerless",
            build: |region, _| {
                HeaderlessHeap::<AddressOrderedFirstFit>::with_region(region)
                    .ok()
                    .map(Heapkit)
            },
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-best-headerless",
            name: "heapkit-fit best fit, headerless",
            build: |region, _| {
                HeaderlessHeap::<BestFit>::with_region(region)
                    .ok()
                    .map(Heapkit)
            },
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-first",
            name: "heapkit-fit first fit (LIFO)",
            build: |region, _| FitHeap::<FirstFit>::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-next",
            name: "heapkit-fit next fit",
            build: |region, _| FitHeap::<NextFit>::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-best-deferred",
            name: "heapkit-fit best fit, deferred coalescing",
            build: |region, _| Deferred::<BestFit>::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
        Box::new(InRegion {
            key: "fit-slob",
            name: "heapkit-fit SLOB",
            build: |region, _| Slob::with_region(region).ok().map(Heapkit),
            fits: any,
        }),
    ]
}

/// The `key` of [`workload_alone`].
pub const WORKLOAD_ALONE: &str = "workload-alone";

/// The scale study's floor: not an allocator but what is left of one when it keeps no
/// books beyond the block freed last and a stack of the others per size ([`FreeStacks`]),
/// so its line is the cost of the study's own work. `name` tells the study's lines apart.
pub fn workload_alone(name: &'static str) -> Box<dyn Contender> {
    Box::new(InRegion {
        key: WORKLOAD_ALONE,
        name,
        build: |region, _| Some(FreeStacks::new(region)),
        fits: |summary| summary.max_align <= FreeStacks::GRANULE,
    })
}
