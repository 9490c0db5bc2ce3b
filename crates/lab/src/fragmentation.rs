//! The fragmentation study (`cargo xtask lab --study fragmentation`): Johnstone and
//! Wilson's experiment ("The memory fragmentation problem: solved?", ISMM 1998) on real
//! programs' traces. Every region allocator replays every recorded trace, and the
//! classic placement policies replay them again on an address line with no per-block
//! overhead ([`model`]).
//!
//! Fragmentation is theirs: the memory used over the most live bytes requested, as a
//! percentage over 100%, at the peak of memory used (#4) and at the moment of peak live
//! bytes (#3). Memory used is the span of the live blocks (see [`Footprint`]), so the
//! headers, footers, alignment and rounding of the real allocators count ("with
//! overhead") and the model's do not ("without overhead").

pub mod model;

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use heapkit_trace::replay::Footprint;
use heapkit_trace::trace::{Summary, Trace};

use crate::contenders::{self, Scratch};
use crate::{builtin, from_files, Config, Scale, Workload};
use model::Policy;

/// The `--study` name.
pub const NAME: &str = "fragmentation";

/// Whole runs of C programs recorded with heapkit-malloc's `HEAPKIT_TRACE` by
/// `traces/study/record.sh`, gzipped: unlike the lab's timing traces they are not cut
/// short, as fragmentation needs every free.
const WHOLE_RUNS: [(&str, &str, &[u8]); 3] = [
    (
        "python-run",
        "python3 (`PYTHONMALLOC=malloc`) starting, then building, printing and parsing JSON records in 4 rounds, one record in 40 kept: the whole run",
        include_bytes!("../traces/study/python.trace.gz"),
    ),
    (
        "sqlite-run",
        "sqlite3 building a 20,000-row table with a small page cache, indexing, updating, deleting and joining: the whole run",
        include_bytes!("../traces/study/sqlite.trace.gz"),
    ),
    (
        "cc1",
        "GCC 12's cc1 compiling heapkit-malloc's tests/c/edges.c with -O2: the whole run",
        include_bytes!("../traces/study/cc1.trace.gz"),
    ),
];

/// The study's traces: the lab's recorded ones (the Rust programs', and the first calls
/// of python3, sqlite3 and redis) and the whole runs.
///
/// # Errors
///
/// A shipped trace that does not decompress or parse.
pub fn traces() -> Result<Vec<Workload>, String> {
    let mut workloads: Vec<Workload> = builtin(Scale::Default, 0)
        .into_iter()
        .filter(|workload| !workload.synthetic)
        .collect();
    for (name, description, gzipped) in WHOLE_RUNS {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gzipped)
            .read_to_string(&mut text)
            .map_err(|error| format!("{name}.trace.gz: {error}"))?;
        let trace = Trace::parse(&text).map_err(|error| format!("{name}.trace.gz: {error}"))?;
        workloads.push(Workload::new(
            name,
            format!("recorded: {description}"),
            false,
            trace,
        ));
    }
    Ok(workloads)
}

/// One allocator's (or model policy's) footprint on each trace, `None` where it does not
/// run (a pool on mixed sizes).
#[derive(Clone, Debug)]
pub struct StudyRow {
    /// Display name.
    pub allocator: &'static str,
    /// Its `--only` key (the model's rows: `model`).
    pub key: &'static str,
    /// Whether blocks carry the allocator's real overhead (false: the zero-overhead model).
    pub with_overhead: bool,
    /// Per trace, in the study's order.
    pub footprints: Vec<Option<Footprint>>,
}

/// A trace's name, description and shape.
#[derive(Clone, Debug)]
pub struct StudyTrace {
    /// Short name.
    pub name: String,
    /// What it recorded.
    pub description: String,
    /// Its shape.
    pub summary: Summary,
}

/// What the study measured.
#[derive(Clone, Debug)]
pub struct Study {
    /// The traces, in column order.
    pub traces: Vec<StudyTrace>,
    /// Real allocators first, then the model's policies.
    pub rows: Vec<StudyRow>,
    /// Bytes of the region each real allocator got.
    pub region_len: usize,
    /// How long the study took.
    pub elapsed: Duration,
}

/// Runs the study on the study's traces (or `config.traces`), keeping the allocators
/// `config.only` names (all when it names none), and writes `fragmentation.md` and
/// `fragmentation.svg` to `config.out_dir`.
///
/// # Errors
///
/// An unreadable trace, an `--only` name that is no allocator, or a failed write.
pub fn run(config: &Config) -> Result<Study, String> {
    let started = Instant::now();
    let workloads = if config.traces.is_empty() {
        traces()?
    } else {
        from_files(&config.traces)?
    };
    let mut contenders = contenders::classic_fits();
    contenders.extend(contenders::all());
    if !config.only.is_empty() {
        let keys: Vec<&str> = contenders.iter().map(|c| c.key()).collect();
        if let Some(unknown) = config
            .only
            .iter()
            .find(|name| !keys.contains(&name.as_str()) && name.as_str() != "model")
        {
            return Err(format!(
                "--only {unknown}: not an allocator of the study ({}, model)",
                keys.join(", ")
            ));
        }
        contenders.retain(|c| config.only.iter().any(|name| name == c.key()));
    }
    let with_model = config.only.is_empty() || config.only.iter().any(|name| name == "model");
    // Room for the largest trace many times over: the list allocators need it, and
    // running out would end a trace early.
    let peak = workloads
        .iter()
        .map(|w| w.summary.peak_live)
        .max()
        .unwrap_or(0);
    let region_len = config
        .region_len
        .max((peak * 8).next_power_of_two())
        .min(1 << 30);
    let mut scratch = Scratch::new(region_len);
    let progress = |message: String| {
        if config.progress {
            eprintln!("fragmentation: {message}");
        }
    };
    let mut rows = Vec::new();
    for contender in &contenders {
        let footprints: Vec<Option<Footprint>> = workloads
            .iter()
            .map(|workload| {
                if !contender.fits(&workload.summary) {
                    return None;
                }
                progress(format!("{} · {}", contender.name(), workload.name));
                contender.memory(&workload.trace, &workload.summary, &mut scratch, region_len)
            })
            .collect();
        if footprints.iter().any(Option::is_some) {
            rows.push(StudyRow {
                allocator: contender.name(),
                key: contender.key(),
                with_overhead: true,
                footprints,
            });
        }
    }
    if with_model {
        for policy in Policy::ALL {
            progress(format!("model: {}", policy.name()));
            rows.push(StudyRow {
                allocator: policy.name(),
                key: "model",
                with_overhead: false,
                footprints: workloads
                    .iter()
                    .map(|workload| Some(model::replay(policy, &workload.trace)))
                    .collect(),
            });
        }
    }
    let study = Study {
        traces: workloads
            .into_iter()
            .map(|workload| StudyTrace {
                name: workload.name,
                description: workload.description,
                summary: workload.summary,
            })
            .collect(),
        rows,
        region_len,
        elapsed: started.elapsed(),
    };
    study.write(&config.out_dir)?;
    Ok(study)
}

/// Fragmentation #4 (`at_peak_live` false) or #3 (true) as a fraction over 1.0.
pub fn fragmentation(footprint: &Footprint, at_peak_live: bool) -> f64 {
    let used = if at_peak_live {
        footprint.footprint_at_peak_live
    } else {
        footprint.peak_footprint
    };
    used as f64 / footprint.peak_live.max(1) as f64 - 1.0
}

impl Study {
    /// The row of `key` (with overhead) or of the model's `policy`.
    fn row(&self, name: &str) -> Option<&StudyRow> {
        self.rows
            .iter()
            .find(|row| row.key == name || row.allocator == name)
    }

    /// The lowest peak footprint on trace `index` among the real allocators
    /// (`with_overhead`) or the model's policies, with its allocator.
    fn lowest(&self, index: usize, with_overhead: bool) -> Option<(&'static str, usize)> {
        self.rows
            .iter()
            .filter(|row| row.with_overhead == with_overhead)
            .filter_map(|row| {
                let footprint = row.footprints[index].as_ref()?;
                footprint
                    .out_of_memory
                    .is_none()
                    .then_some((row.allocator, footprint.peak_footprint))
            })
            .min_by_key(|&(_, bytes)| bytes)
    }

    /// The study's tables, in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Fragmentation on real programs' traces\n\n_{} traces, {} allocators and {} \
             zero-overhead policies, {:.0} s; regions of {} MiB._\n",
            self.traces.len(),
            self.rows.iter().filter(|row| row.with_overhead).count(),
            self.rows.iter().filter(|row| !row.with_overhead).count(),
            self.elapsed.as_secs_f64(),
            self.region_len >> 20
        );
        out.push_str(
            "Fragmentation as Johnstone and Wilson measure it: memory used (the span of \
             the live blocks) over the most live bytes requested, less 100%. **#4** is at \
             the peak of memory used, **#3** at the moment live bytes peak.\n\n",
        );
        self.table(&mut out, true, "With overhead: the allocators as they are");
        self.table(
            &mut out,
            false,
            "Without overhead: the policies alone, blocks exactly the bytes requested",
        );
        self.targets(&mut out);
        out.push_str(
            "\n## Traces\n\n| trace | events | peak live | description |\n|---|---:|---:|---|\n",
        );
        for trace in &self.traces {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} KiB | {} |",
                trace.name,
                trace.summary.events,
                trace.summary.peak_live as f64 / 1024.0,
                trace.description
            );
        }
        out
    }

    /// One table of `#4 / #3` per allocator and trace.
    fn table(&self, out: &mut String, with_overhead: bool, title: &str) {
        let rows: Vec<&StudyRow> = self
            .rows
            .iter()
            .filter(|row| row.with_overhead == with_overhead)
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = write!(out, "## {title}\n\n#4 / #3, per trace.\n\n| allocator |");
        for trace in &self.traces {
            let _ = write!(out, " {} |", trace.name);
        }
        out.push_str(" mean #4 |\n|---|");
        out.push_str(&"---:|".repeat(self.traces.len() + 1));
        out.push('\n');
        for row in rows {
            let _ = write!(out, "| {} |", code_words(row.allocator));
            let mut sum = 0.0;
            let mut count = 0usize;
            for footprint in &row.footprints {
                match footprint {
                    None => out.push_str(" — |"),
                    Some(footprint) if footprint.out_of_memory.is_some() => {
                        out.push_str(" out of memory |");
                    }
                    Some(footprint) => {
                        let peak = fragmentation(footprint, false);
                        sum += peak;
                        count += 1;
                        let _ = write!(
                            out,
                            " {} / {} |",
                            percent(peak),
                            percent(fragmentation(footprint, true))
                        );
                    }
                }
            }
            if count == 0 {
                out.push_str(" — |\n");
            } else {
                let _ = writeln!(out, " {} |", percent(sum / count as f64));
            }
        }
        out.push('\n');
    }

    /// The targets, per trace: address-ordered first fit and best fit against
    /// the lowest footprint, TLSF against best fit.
    fn targets(&self, out: &mut String) {
        let aoff = self.row("fit-aoff");
        let best = self.row("fit-best");
        let aoff_headerless = self.row("fit-aoff-headerless");
        let best_headerless = self.row("fit-best-headerless");
        let tlsf = self.row("tlsf");
        if aoff.is_none() && best.is_none() && tlsf.is_none() {
            return;
        }
        out.push_str(
            "## Against the lowest footprint\n\nPeak footprint over the lowest any \
             allocator reached on the trace (with overhead): address-ordered first fit and \
             best fit with boundary tags (`FitHeap`) and headerless (`HeaderlessHeap`); \
             TLSF's over best fit's (both with boundary tags); and the model's \
             address-ordered first fit and best fit over the lowest policy without \
             overhead.\n\n\
             | trace | lowest | address-ordered first fit | best fit | headerless: \
             address-ordered first fit | best fit | TLSF / best fit | without overhead: \
             address-ordered first fit | best fit |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let peak = |row: Option<&StudyRow>, index: usize| {
            row.and_then(|row| row.footprints[index].as_ref())
                .filter(|footprint| footprint.out_of_memory.is_none())
                .map(|footprint| footprint.peak_footprint as f64)
        };
        let ratio = |value: Option<f64>, base: Option<f64>| match (value, base) {
            (Some(value), Some(base)) if base > 0.0 => format!("{:.3}×", value / base),
            _ => "—".into(),
        };
        let model_aoff = self.row(Policy::AddressOrderedFirstFit.name());
        let model_best = self.row(Policy::BestFit.name());
        for (index, trace) in self.traces.iter().enumerate() {
            let Some((lowest_name, lowest)) = self.lowest(index, true) else {
                continue;
            };
            let lowest = Some(lowest as f64);
            let lowest_model = self.lowest(index, false).map(|(_, bytes)| bytes as f64);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                trace.name,
                code_words(lowest_name),
                ratio(peak(aoff, index), lowest),
                ratio(peak(best, index), lowest),
                ratio(peak(aoff_headerless, index), lowest),
                ratio(peak(best_headerless, index), lowest),
                ratio(peak(tlsf, index), peak(best, index)),
                ratio(peak(model_aoff, index), lowest_model),
                ratio(peak(model_best, index), lowest_model),
            );
        }
    }

    /// Writes `fragmentation.md` and `fragmentation.svg` to `dir`.
    ///
    /// # Errors
    ///
    /// A failed write.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("fragmentation.md");
        std::fs::write(&path, self.markdown()).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::plots::fragmentation(&dir.join("fragmentation.svg"), self)
    }
}

/// `name` with each word that names code (`snake_case`, `CamelCase`) in backticks, so the
/// tables read the same in Markdown and in rustdoc (heapkit-fit's README is its crate
/// documentation).
fn code_words(name: &str) -> String {
    name.split(' ')
        .map(|word| {
            let inner_capital = word
                .chars()
                .zip(word.chars().skip(1))
                .any(|(before, after)| before.is_lowercase() && after.is_uppercase());
            if word.contains('_') || inner_capital {
                format!("`{word}`")
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}
