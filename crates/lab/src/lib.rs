//! heapkit's lab: every allocator on every workload, in one process, compared on time per call
//! (median and tail), fragmentation (peak footprint over peak live bytes), heap
//! efficiency and metadata. `cargo xtask lab` runs it; [`run`] is the same from code.
//!
//! ```no_run
//! use heapkit_lab::{run, Config, Scale};
//!
//! let config = Config { scale: Scale::Tiny, only: vec!["plateau".into()], ..Config::default() };
//! let report = run(&config).unwrap();
//! println!("{}", report.markdown());
//! ```

// Counts, byte totals and ticks are far below 2^52, where f64 stops being exact.
#![allow(clippy::cast_precision_loss)]

pub mod contenders;
pub mod fragmentation;
pub mod peers;
mod plots;
mod report;
mod results;
pub mod scale;

use std::alloc::Layout;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use contenders::{Contender, Measure, Scratch};
use heapkit_trace::replay::{Clock, OutOfMemory};
use heapkit_trace::trace::{Summary, Trace};
use heapkit_trace::workloads::{random_actions_trace, synthetic, Lifetimes, SizeMix};
pub use report::Report;
pub use results::{Row, Timing, WorkloadResult};

/// How much work each workload does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A few hundred events per workload: for tests.
    Tiny,
    /// About a minute in all.
    Default,
    /// Twice the events and twice the rounds, and the scale study up to 10^7 live blocks:
    /// about eight minutes (the workloads three, as the list-scanning allocators slow down
    /// with the square of the live blocks; the scale study the rest). (Four times the
    /// events took 19 minutes and overflowed the 32 MiB region on the page workload.)
    Full,
}

impl Scale {
    /// Multiplier on the default event counts.
    fn events(self) -> f64 {
        match self {
            Self::Tiny => 0.02,
            Self::Default => 1.0,
            Self::Full => 2.0,
        }
    }

    /// Timed replays of each workload per allocator.
    fn rounds(self) -> usize {
        match self {
            Self::Tiny => 1,
            Self::Default => 7,
            Self::Full => 15,
        }
    }
}

/// What to run and where to write.
#[derive(Clone, Debug)]
pub struct Config {
    /// Workload sizes and rounds.
    pub scale: Scale,
    /// Bytes of the region every region allocator gets, the same for each.
    pub region_len: usize,
    /// Workload or allocator names (keys) to keep; empty keeps all.
    pub only: Vec<String>,
    /// Trace files to replay instead of the built-in workloads.
    pub traces: Vec<PathBuf>,
    /// Where the report and plots go.
    pub out_dir: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// Seed of the synthetic workloads.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scale: Scale::Default,
            region_len: 32 << 20,
            only: Vec::new(),
            traces: Vec::new(),
            out_dir: PathBuf::from("target/lab"),
            progress: false,
            seed: 0x5eed,
        }
    }
}

/// A named trace.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Short name, for `--only` and file names.
    pub name: String,
    /// What it does, for the report.
    pub description: String,
    /// Whether it was generated (its footprint over time is plotted) rather than recorded.
    pub synthetic: bool,
    /// The events.
    pub trace: Trace,
    /// What they ask of an allocator, worked out once.
    pub summary: Summary,
}

impl Workload {
    /// A workload of `trace`'s events.
    pub fn new(name: &str, description: String, synthetic: bool, trace: Trace) -> Self {
        Self {
            name: name.into(),
            description,
            synthetic,
            summary: trace.summary(),
            trace,
        }
    }
}

/// Traces recorded from real programs: the Rust ones by `examples/record_traces.rs`, the
/// C programs' with heapkit-malloc's `HEAPKIT_TRACE` by `traces/record-programs.sh` (their
/// first events, then frees of what those left live).
const RECORDED: [(&str, &str, &str); 6] = [
    (
        "btreemap",
        "recorded: a `BTreeMap<String, Vec<u32>>` of 5,000 entries built, queried, half removed",
        include_str!("../traces/btreemap.trace"),
    ),
    (
        "json",
        "recorded: a 600-record JSON document built, printed and parsed back with `serde_json`",
        include_str!("../traces/json.trace"),
    ),
    (
        "regex",
        "recorded: 6 regexes compiled as a set and one by one with the `regex` crate, run over 400 lines",
        include_str!("../traces/regex.trace"),
    ),
    (
        "python",
        "recorded (`HEAPKIT_TRACE`): python3 with `PYTHONMALLOC=malloc` starting and building dicts and json, first 30,000 calls",
        include_str!("../traces/python.trace"),
    ),
    (
        "sqlite",
        "recorded (`HEAPKIT_TRACE`): sqlite3 creating and filling a 100k-row table, first 30,000 calls",
        include_str!("../traces/sqlite.trace"),
    ),
    (
        "redis",
        "recorded (`HEAPKIT_TRACE`): redis-server (2 threads) under redis-benchmark, first 40,000 calls",
        include_str!("../traces/redis.trace"),
    ),
];

/// The built-in workloads at `scale`, deterministic for `seed`.
///
/// # Panics
///
/// If a recorded trace shipped in the repository does not parse.
pub fn builtin(scale: Scale, seed: u64) -> Vec<Workload> {
    let n = |count: usize| ((count as f64 * scale.events()) as usize).max(8);
    let workload =
        |name: &str, description: String, trace| Workload::new(name, description, true, trace);
    let plateau = |live, steps| Lifetimes::Plateau {
        live: n(live),
        steps: n(steps),
    };
    let mut workloads = vec![
        workload(
            "random-actions",
            "talc's random actions: 300 slots, sizes rand(4..rand(16..3000)), reallocs up to 9000 B"
                .into(),
            random_actions_trace(3000, n(30_000), seed),
        ),
        workload(
            "ramp",
            format!("ramp: {} power-law blocks allocated, then all freed", n(20_000)),
            synthetic(Lifetimes::Ramp { blocks: n(20_000) }, SizeMix::PowerLaw, seed),
        ),
        workload(
            "peak",
            format!(
                "peak: {} long-lived power-law blocks, then 20 bursts of {} short-lived ones (1 in 16 survives)",
                n(2_000),
                n(2_000)
            ),
            synthetic(
                Lifetimes::Peak {
                    base: n(2_000),
                    bursts: 20,
                    burst: n(2_000),
                },
                SizeMix::PowerLaw,
                seed,
            ),
        ),
        workload(
            "phases",
            format!(
                "phases: 40 batches of {} power-law blocks, each batch freed newest first",
                n(1_000)
            ),
            synthetic(
                Lifetimes::Phases {
                    batch: n(1_000),
                    rounds: 40,
                },
                SizeMix::PowerLaw,
                seed,
            ),
        ),
        workload(
            "plateau",
            format!("plateau: {} live power-law blocks, {} random replacements", n(4_000), n(20_000)),
            synthetic(plateau(4_000, 20_000), SizeMix::PowerLaw, seed),
        ),
        workload(
            "uniform-small",
            format!("plateau of {} live 8–256 B blocks, {} replacements", n(4_000), n(20_000)),
            synthetic(plateau(4_000, 20_000), SizeMix::UniformSmall, seed),
        ),
        workload(
            "mixed",
            format!(
                "plateau of {} live blocks, 90% 16–256 B and 10% 4–64 KiB, {} replacements",
                n(1_000),
                n(20_000)
            ),
            synthetic(plateau(1_000, 20_000), SizeMix::Mixed, seed),
        ),
        workload(
            "fixed-churn",
            format!("plateau of {} live 64 B blocks, {} replacements", n(4_000), n(20_000)),
            synthetic(plateau(4_000, 20_000), SizeMix::Fixed(64), seed),
        ),
        workload(
            "pages",
            format!(
                "plateau of {} live 4–64 KiB page-aligned blocks, {} replacements",
                n(256),
                n(10_000)
            ),
            synthetic(plateau(256, 10_000), SizeMix::Pages, seed),
        ),
    ];
    for (name, description, text) in RECORDED {
        let trace = Trace::parse(text).unwrap_or_else(|error| panic!("{name}.trace: {error}"));
        let trace = if scale == Scale::Tiny {
            trace.truncated(n(trace.events().len()))
        } else {
            trace
        };
        workloads.push(Workload::new(name, description.into(), false, trace));
    }
    workloads
}

/// Workloads read from trace files.
///
/// # Errors
///
/// A file that cannot be read, does not parse (named with the line at fault) or holds no
/// events.
pub fn from_files(paths: &[PathBuf]) -> Result<Vec<Workload>, String> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let trace =
                Trace::parse(&text).map_err(|error| format!("{}: {error}", path.display()))?;
            if trace.events().is_empty() {
                return Err(format!("{}: the trace has no events", path.display()));
            }
            let name = path.file_stem().map_or_else(
                || "trace".into(),
                |stem| stem.to_string_lossy().into_owned(),
            );
            let description = format!("trace file {}", path.display());
            Ok(Workload::new(&name, description, false, trace))
        })
        .collect()
}

/// Runs the lab: every fitting allocator on every selected workload, then writes the
/// report and plots to `config.out_dir`.
///
/// # Errors
///
/// An unknown `--only` name, an unreadable trace file, or a failure to write the output.
pub fn run(config: &Config) -> Result<Report, String> {
    let started = Instant::now();
    let mut workloads = if config.traces.is_empty() {
        builtin(config.scale, config.seed)
    } else {
        from_files(&config.traces)?
    };
    let mut contenders = contenders::all();
    // The scale study runs with the built-in workloads, or alone when `--only scale`
    // names no workload beside it.
    let named_scale = config.only.iter().any(|name| name == SCALE);
    let named_workload = config
        .only
        .iter()
        .any(|name| workloads.iter().any(|w| &w.name == name));
    let with_scale = config.traces.is_empty() && (named_scale || !named_workload);
    let scale_alone = named_scale && !named_workload;
    select(&config.only, &mut workloads, &mut contenders)?;
    if scale_alone {
        workloads.clear();
    }
    workloads.retain(|workload| {
        contenders
            .iter()
            .any(|contender| contender.fits(&workload.summary))
    });
    if workloads.is_empty() && !with_scale {
        return Err("no selected allocator can serve any selected workload".into());
    }

    let mut lab = Lab {
        config,
        clock: Clock::calibrate(Duration::from_millis(50)),
        scratch: Scratch::new(config.region_len),
        progress: ProgressBar::hidden(),
    };
    if config.progress {
        let tasks: usize = workloads
            .iter()
            .map(|workload| {
                let fitting = contenders
                    .iter()
                    .filter(|c| c.fits(&workload.summary))
                    .count();
                fitting * (config.scale.rounds() + 3)
            })
            .sum();
        lab.progress = ProgressBar::new(tasks as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .expect("valid template"),
        );
    }
    let results = workloads
        .iter()
        .map(|workload| lab.workload(workload, &contenders))
        .collect();
    let scale = if with_scale {
        let clock = lab.clock;
        let progress = &lab.progress;
        scale::run(
            config.scale,
            scale_alone,
            config.seed,
            &contenders,
            |ticks| clock.span_nanos(ticks),
            |message| progress.set_message(message.to_owned()),
        )
    } else {
        Vec::new()
    };
    lab.progress.finish_and_clear();
    let report = Report {
        scale,
        workloads: results,
        region_len: config.region_len,
        rounds: config.scale.rounds(),
        elapsed: started.elapsed(),
    };
    report.write(&config.out_dir)?;
    Ok(report)
}

/// What every measurement shares.
struct Lab<'a> {
    config: &'a Config,
    clock: Clock,
    scratch: Scratch,
    progress: ProgressBar,
}

impl Lab<'_> {
    /// Every fitting contender on `workload`: memory first, then the timed rounds.
    fn workload(
        &mut self,
        workload: &Workload,
        contenders: &[Box<dyn Contender>],
    ) -> WorkloadResult {
        let summary = &workload.summary;
        let fitting: Vec<&dyn Contender> = contenders
            .iter()
            .map(AsRef::as_ref)
            .filter(|contender| contender.fits(summary))
            .collect();
        let layouts = workload.trace.alloc_layouts();
        let region_len = self.config.region_len;
        let efficiency_region = efficiency_region(&layouts).min(region_len / 4);
        let mut rows: Vec<Row> = fitting
            .iter()
            .map(|contender| {
                let scratch = &mut self.scratch;
                self.progress
                    .set_message(format!("{} · {}", workload.name, contender.name()));
                let footprint = contender.memory(&workload.trace, summary, scratch, region_len);
                let efficiency = contender.efficiency(
                    &layouts,
                    summary,
                    scratch,
                    efficiency_region,
                    self.config.seed,
                );
                let metadata = contender.metadata(summary, scratch, region_len);
                self.progress.inc(3);
                Row {
                    allocator: contender.name(),
                    key: contender.key(),
                    timing: None,
                    footprint,
                    efficiency,
                    metadata,
                    failure: None,
                }
            })
            .collect();
        for (row, timed) in rows.iter_mut().zip(self.time(workload, &fitting)) {
            match timed {
                Ok(timing) => row.timing = Some(timing),
                Err(error) => row.failure = Some(error),
            }
        }
        WorkloadResult {
            name: workload.name.clone(),
            description: workload.description.clone(),
            synthetic: workload.synthetic,
            summary: *summary,
            efficiency_region,
            rows,
        }
    }

    /// The timed rounds. Rounds interleave the allocators, each starting in turn, so a
    /// noisy moment of the machine is shared out rather than landing on one allocator.
    /// Each round warms a fresh instance with one replay, times the next whole
    /// (throughput), then every call of a third (distribution).
    fn time(
        &mut self,
        workload: &Workload,
        fitting: &[&dyn Contender],
    ) -> Vec<Result<Timing, OutOfMemory>> {
        let events = workload.trace.events().len().max(1) as f64;
        let region_len = self.config.region_len;
        let mut samples: Vec<Vec<u64>> = vec![Vec::new(); fitting.len()];
        let mut per_round: Vec<Vec<[f64; 3]>> = vec![Vec::new(); fitting.len()];
        let mut failures: Vec<Option<OutOfMemory>> = vec![None; fitting.len()];
        for round in 0..self.config.scale.rounds() {
            for turn in 0..fitting.len() {
                let index = (turn + round) % fitting.len();
                let contender = fitting[index];
                self.progress.set_message(format!(
                    "{} · {} · round {}",
                    workload.name,
                    contender.name(),
                    round + 1
                ));
                let scratch = &mut self.scratch;
                let mut calls = Vec::new();
                let timed = contender.time(
                    &workload.trace,
                    &workload.summary,
                    scratch,
                    region_len,
                    Measure::WholeThenEachCall(&mut calls),
                );
                match timed {
                    Ok(whole) => {
                        // Sorted in place: the pooled samples are sorted again anyway.
                        let (median, tail) = percentiles(&self.clock, &mut calls);
                        let mean = self.clock.span_nanos(whole) / events;
                        per_round[index].push([mean, median, tail]);
                        samples[index].extend(calls);
                    }
                    Err(error) => failures[index] = Some(error),
                }
                self.progress.inc(1);
            }
        }
        let clock = self.clock;
        (0..fitting.len())
            .map(|index| {
                if let Some(error) = failures[index] {
                    return Err(error);
                }
                let column = |at: usize| {
                    let mut values: Vec<f64> =
                        per_round[index].iter().map(|round| round[at]).collect();
                    median(&mut values)
                };
                let mut sorted_ns: Vec<f32> = samples[index]
                    .iter()
                    .map(|&t| clock.nanos(t) as f32)
                    .collect();
                sorted_ns.sort_unstable_by(f32::total_cmp);
                Ok(Timing {
                    mean_ns: column(0),
                    median_ns: column(1),
                    p999_ns: column(2),
                    sorted_ns,
                })
            })
            .collect()
    }
}

/// The `--only` name of the scale study.
const SCALE: &str = "scale";

/// Keeps the workloads and allocators `only` names (all of a kind when it names none).
fn select(
    only: &[String],
    workloads: &mut Vec<Workload>,
    contenders: &mut Vec<Box<dyn Contender>>,
) -> Result<(), String> {
    if only.is_empty() {
        return Ok(());
    }
    let is_workload = |name: &str| workloads.iter().any(|w| w.name == name);
    let is_contender = |name: &str| contenders.iter().any(|c| c.key() == name);
    if let Some(unknown) = only
        .iter()
        .find(|name| !is_workload(name) && !is_contender(name) && *name != SCALE)
    {
        let workload_names: Vec<_> = workloads.iter().map(|w| w.name.as_str()).collect();
        let contender_names: Vec<_> = contenders.iter().map(|c| c.key()).collect();
        return Err(format!(
            "--only {unknown}: not a workload ({}, scale) nor an allocator ({})",
            workload_names.join(", "),
            contender_names.join(", ")
        ));
    }
    if only.iter().any(|name| is_workload(name)) {
        workloads.retain(|w| only.contains(&w.name));
    }
    if only.iter().any(|name| is_contender(name)) {
        contenders.retain(|c| only.iter().any(|name| name == c.key()));
    }
    Ok(())
}

/// A region that holds about 16,384 of the workload's average requests, 2 to 8 MiB: small
/// enough that filling it is quick even for a first-fit list, large enough that the
/// largest requests are a small part of it. (The lab caps it at a quarter of its
/// region.)
fn efficiency_region(layouts: &[Layout]) -> usize {
    let total: usize = layouts.iter().map(Layout::size).sum();
    let mean = total / layouts.len().max(1);
    (mean * 16_384).next_power_of_two().clamp(2 << 20, 8 << 20)
}

/// (median, 99.9th percentile) of `samples` in ns.
fn percentiles(clock: &Clock, samples: &mut [u64]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| clock.nanos(samples[((samples.len() - 1) as f64 * q) as usize]);
    (at(0.5), at(0.999))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}
