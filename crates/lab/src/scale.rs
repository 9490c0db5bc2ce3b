//! The scale study: time per call against the number of live blocks, for every allocator.
//!
//! An allocator whose cost grows with what it holds is what the seed article warns
//! about; TLSF and the buddy system are built not to. Each point builds `live` blocks of
//! 8–256 bytes (64 bytes for the pool), then replaces one per step, `steps` times, and
//! frees them all, in two patterns (see [`Pattern`]): the block replaced is a random one
//! of all, or a random one of the newest [`HOT`]. The time per replacement call is the
//! steps' span, timed whole with no timer between the calls, over their number, so
//! filling and draining do not count. The steps are drawn as they run
//! ([`heapkit_trace::churn`]), not read from a stored trace (24 bytes per event, 9.6 MB
//! and more): from 10^5 live blocks on, the trace and the heap no longer stayed in the
//! cache together, and reading the trace took the pool from 1.2 to 2.3 ns per call in the
//! hot-set pattern. (Timing each call with the time-stamp counter and
//! taking its overhead off, as the study did first, left a few nanoseconds of noise on
//! calls that take a few nanoseconds: the same point read 2.6 and 11.2 ns in two runs.)
//! An allocator whose next size would take longer than half a minute (two under `--full`)
//! skips it (the list allocators: their cost grows with the live blocks).
//!
//! The first two lines of each table are the workload alone, in each block mix: the same
//! steps over a stand-in that keeps the block freed last and a stack of the others per
//! size, and nothing else ([`FreeStacks`](heapkit_trace::arena::FreeStacks), through
//! [`workload_alone`](crate::contenders::workload_alone)), its blocks cut at their size
//! rounded up to 16 bytes. It is the part of every allocator's time that is the
//! study's own (drawing the steps, the table of live blocks, the first byte written to
//! each new block), about a nanosecond of the stand-in's own besides, and it is not flat
//! either: under random replacement, those reads and writes miss the cache once the live
//! blocks outgrow it.

use std::time::Instant;

use heapkit_trace::churn::Churn;
use heapkit_trace::trace::Summary;
use heapkit_trace::workloads::SizeMix;

use crate::contenders::{Contender, Scratch};
use crate::Scale;

/// One allocator's line of the study.
#[derive(Clone, Debug)]
pub struct ScaleRow {
    /// Name in tables and plots.
    pub allocator: &'static str,
    /// Its `--only` key.
    pub key: &'static str,
    /// ns per call at each of the study's sizes; `None` where it did not run.
    pub ns: Vec<Option<f64>>,
    /// Why a size did not run, when one did not.
    pub note: Option<String>,
    /// The block sizes it ran with.
    pub mix: SizeMix,
}

impl ScaleRow {
    /// Whether this is the floor, the workload alone, rather than an allocator.
    pub fn is_floor(&self) -> bool {
        self.key == crate::contenders::WORKLOAD_ALONE
    }
}

/// Which live block each step replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A random one of all the live blocks: what the bitmap-arena figure was
    /// measured with, and what a heap under uniform churn sees (every call misses the
    /// cache at a million blocks, whatever the allocator).
    Random,
    /// A random one of the newest [`HOT`]: the heap holds the rest, the program works on
    /// a hot set, so the allocator's own cost shows rather than the memory system's.
    Hot,
}

impl Pattern {
    /// Short name, for titles and file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Hot => "hot-set",
        }
    }
}

/// The whole study, for one pattern.
#[derive(Clone, Debug)]
pub struct ScaleResult {
    /// Which block each step replaces.
    pub pattern: Pattern,
    /// Live blocks at each point.
    pub sizes: Vec<usize>,
    /// Calls each point's steps make, per size.
    pub steps: Vec<usize>,
    /// One line per allocator.
    pub rows: Vec<ScaleRow>,
}

impl ScaleResult {
    /// ns per call at the largest size each allocator reached over its time at the
    /// smallest: 1.0 is flat.
    pub fn growth(row: &ScaleRow) -> Option<f64> {
        let first = row.ns.first().copied().flatten()?;
        let last = row.ns.iter().rev().find_map(|ns| *ns)?;
        Some(last / first)
    }

    /// ns per call above the workload alone's (in the same block sizes) at the smallest
    /// size and at the largest one both reached: the part of its time that is its own.
    /// `None` for the floor itself, or where the smallest size's figures are missing.
    pub fn above_floor(&self, row: &ScaleRow) -> Option<(f64, f64)> {
        if row.is_floor() {
            return None;
        }
        let floor = self
            .rows
            .iter()
            .find(|floor| floor.is_floor() && floor.mix == row.mix)?;
        let both = |at: usize| Some(row.ns.get(at).copied()?? - floor.ns.get(at).copied()??);
        let first = both(0)?;
        // The largest size both reached (the floor, the cheapest line, reaches the most).
        let last = (0..row.ns.len()).rev().find_map(both)?;
        Some((first, last))
    }
}

/// The sizes of the study at `scale`: up to 10^5 in the default run (it must fit a
/// minute beside the workloads), 10^6 when the study runs alone, 10^7 under `--full`.
pub fn sizes(scale: Scale, alone: bool) -> Vec<usize> {
    match scale {
        Scale::Tiny => vec![100, 1_000],
        Scale::Default if alone => vec![1_000, 10_000, 100_000, 1_000_000],
        Scale::Default => vec![1_000, 10_000, 100_000],
        Scale::Full => vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000],
    }
}

/// Replacements per point: enough calls to time at the small sizes, one per block up to a
/// million (ten million blocks would take a minute per allocator to replace once, and a
/// million random steps sample them as well).
pub fn steps(scale: Scale, live: usize) -> usize {
    match scale {
        Scale::Tiny => 1_000,
        _ => live.clamp(200_000, 1_000_000),
    }
}

/// Timed rounds per point, whose median is the point's figure: fewer at ten million live
/// blocks, where filling and draining the heap is most of a round's time.
pub fn rounds(scale: Scale, live: usize) -> usize {
    match scale {
        Scale::Tiny => 1,
        _ if live >= 10_000_000 => 3,
        _ => 5,
    }
}

/// Allocator calls one round of a point makes: a warming run and the timed one, each
/// filling the heap, replacing blocks and draining it.
fn calls_per_round(scale: Scale, live: usize) -> f64 {
    (2 * (2 * live + 2 * steps(scale, live))) as f64
}

/// The seconds the point at `next` live blocks would take, from the `seconds` the point at
/// `live` took: scaled by the calls each makes in all its rounds, and by `growth`, the
/// cost per call growing again as it did into this point.
pub fn projected_seconds(scale: Scale, live: usize, next: usize, seconds: f64, growth: f64) -> f64 {
    let work = |live| calls_per_round(scale, live) * rounds(scale, live) as f64;
    seconds * work(next) / work(live) * growth
}

/// The floor's name in each of the study's block mixes (in the order of `study`'s mixes),
/// so the plots tell its two lines apart.
const FLOOR_NAMES: [&str; 2] = ["the workload alone (8–256 B)", "the workload alone (64 B)"];

/// The newest blocks the steps replace at random.
pub const HOT: usize = 1024;

/// `live` blocks of `mix`, then `steps` replacements of a block `pattern` picks, then
/// every block freed, newest first; deterministic for `seed`.
pub fn churn(live: usize, steps: usize, mix: SizeMix, pattern: Pattern, seed: u64) -> Churn {
    let hot = match pattern {
        Pattern::Random => live,
        Pattern::Hot => HOT.min(live),
    };
    Churn {
        live,
        steps,
        hot,
        mix,
        seed,
    }
}

/// Bytes of region for `live` blocks of at most 256 bytes: room for a buddy's rounding
/// and for fragmentation.
pub fn region_for(live: usize) -> usize {
    (live * 512).next_power_of_two().max(8 << 20)
}

/// The next size would take longer than this ([`projected_seconds`]): it is skipped, and
/// so are the larger ones. `--full` allows more, so that the allocators built not to grow
/// reach ten million live blocks.
pub fn budget_seconds(scale: Scale) -> f64 {
    if scale == Scale::Full {
        120.0
    } else {
        30.0
    }
}

/// Runs the study in both patterns. `nanos` turns a span of ticks into nanoseconds.
pub fn run(
    scale: Scale,
    alone: bool,
    seed: u64,
    contenders: &[Box<dyn Contender>],
    nanos: impl Fn(u64) -> f64,
    mut progress: impl FnMut(&str),
) -> Vec<ScaleResult> {
    let sizes = sizes(scale, alone);
    let largest = *sizes.last().expect("at least one size");
    let mut scratch = Scratch::new(region_for(largest));
    [Pattern::Random, Pattern::Hot]
        .into_iter()
        .map(|pattern| {
            study(
                pattern,
                scale,
                &sizes,
                seed,
                contenders,
                &mut scratch,
                &nanos,
                &mut progress,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // one study's settings, passed through once
fn study(
    pattern: Pattern,
    scale: Scale,
    sizes: &[usize],
    seed: u64,
    contenders: &[Box<dyn Contender>],
    scratch: &mut Scratch,
    nanos: &impl Fn(u64) -> f64,
    progress: &mut impl FnMut(&str),
) -> ScaleResult {
    let mixes = [SizeMix::UniformSmall, SizeMix::Fixed(64)];
    let churns: Vec<Vec<(Churn, Summary)>> = mixes
        .iter()
        .map(|&mix| {
            sizes
                .iter()
                .map(|&live| {
                    let churn = churn(live, steps(scale, live), mix, pattern, seed);
                    let summary = churn.summary();
                    (churn, summary)
                })
                .collect()
        })
        .collect();
    let mut rows = Vec::new();
    // The floor in both mixes, then each allocator in the mixed sizes where it serves
    // them, else in the one size (the pool).
    let floors: Vec<_> = FLOOR_NAMES
        .iter()
        .map(|&name| crate::contenders::workload_alone(name))
        .collect();
    let floors = floors
        .iter()
        .enumerate()
        .map(|(mix, floor)| (floor, Some(mix)));
    for (contender, mix) in floors.chain(contenders.iter().map(|contender| (contender, None))) {
        let Some(mix) = mix.or_else(|| (0..mixes.len()).find(|&m| contender.fits(&churns[m][0].1)))
        else {
            continue;
        };
        let mut row = ScaleRow {
            allocator: contender.name(),
            key: contender.key(),
            ns: vec![None; sizes.len()],
            note: (mix == 1).then(|| "64-byte blocks".into()),
            mix: mixes[mix],
        };
        for (at, &live) in sizes.iter().enumerate() {
            progress(&format!(
                "scale ({}) · {} · {live} live",
                pattern.name(),
                contender.name()
            ));
            let (churn, summary) = &churns[mix][at];
            let started = Instant::now();
            let len = region_for(live);
            let calls = 2 * churn.steps;
            let mut per_round = Vec::new();
            for _ in 0..rounds(scale, live) {
                match contender.time_churn(churn, summary, scratch, len) {
                    Ok(ticks) => per_round.push(nanos(ticks) / calls as f64),
                    Err(error) => {
                        row.note = Some(format!(
                            "out of memory at {live} live (event {})",
                            error.event
                        ));
                        break;
                    }
                }
            }
            if per_round.is_empty() {
                break;
            }
            per_round.sort_unstable_by(f64::total_cmp);
            let ns = per_round[per_round.len() / 2];
            row.ns[at] = Some(ns);
            let seconds = started.elapsed().as_secs_f64();
            let growth = match at.checked_sub(1).and_then(|before| row.ns[before]) {
                Some(before) if before > 0.0 => (ns / before).max(1.0),
                _ => 1.0,
            };
            let Some(&next) = sizes.get(at + 1) else {
                continue;
            };
            let projected = projected_seconds(scale, live, next, seconds, growth);
            if projected > budget_seconds(scale) {
                row.note = Some(format!(
                    "{live} live took {seconds:.1} s, {next} would take about {projected:.0} s: skipped"
                ));
                break;
            }
        }
        rows.push(row);
    }
    ScaleResult {
        pattern,
        steps: sizes.iter().map(|&live| 2 * steps(scale, live)).collect(),
        sizes: sizes.to_vec(),
        rows,
    }
}
