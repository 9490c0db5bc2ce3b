//! The lab's tables, in Markdown.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::plots;
use crate::results::{Row, WorkloadResult};

/// Everything a lab run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// One result per workload.
    pub workloads: Vec<WorkloadResult>,
    /// The region every region allocator got.
    pub region_len: usize,
    /// Timed rounds per allocator and workload.
    pub rounds: usize,
    /// How long the run took.
    pub elapsed: Duration,
    /// The scale study in each pattern, when it ran.
    pub scale: Vec<crate::scale::ScaleResult>,
}

/// One allocator's figures over all workloads it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    /// Display name.
    pub allocator: &'static str,
    /// Workloads it ran (and did not run out of memory in).
    pub workloads: usize,
    /// Workloads it ran out of memory in.
    pub out_of_memory: usize,
    /// Geometric mean of its time per call (throughput) over the best one, per workload.
    pub time_vs_best: f64,
    /// The same for the 99.9th percentile.
    pub p999_vs_best: f64,
    /// Geometric mean of its time per call in ns (what the summary shows when it is the
    /// only allocator, where ×best would be 1 everywhere).
    pub time_ns: f64,
    /// The same for the 99.9th percentile.
    pub p999_ns: f64,
    /// Geometric mean of peak footprint over peak live bytes (region allocators).
    pub fragmentation: Option<f64>,
    /// Mean heap efficiency (region allocators).
    pub efficiency: Option<f64>,
}

impl Report {
    /// Every allocator that ran, in the order first seen.
    fn allocators(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for row in self.workloads.iter().flat_map(|w| &w.rows) {
            if !names.contains(&row.allocator) {
                names.push(row.allocator);
            }
        }
        names
    }

    /// The summary table: each allocator's geometric means over the workloads it ran.
    pub fn headline(&self) -> Vec<Headline> {
        self.allocators()
            .into_iter()
            .map(|allocator| {
                let mut times = Vec::new();
                let mut tails = Vec::new();
                let mut times_ns = Vec::new();
                let mut tails_ns = Vec::new();
                let mut fragmentation = Vec::new();
                let mut efficiency = Vec::new();
                let mut out_of_memory = 0;
                for workload in &self.workloads {
                    let Some(row) = workload.rows.iter().find(|r| r.allocator == allocator) else {
                        continue;
                    };
                    let (best_time, best_tail) = workload.best_times();
                    if let Some(timing) = &row.timing {
                        times.push(timing.mean_ns / best_time);
                        // A counter that reads in steps (a VM's time-stamp counter) can put
                        // the best tail at 0: no ratio to it, so that workload sits out.
                        if best_tail > 0.0 {
                            tails.push(timing.p999_ns / best_tail);
                        }
                        times_ns.push(timing.mean_ns);
                        tails_ns.push(timing.p999_ns);
                    } else {
                        out_of_memory += 1;
                    }
                    if let Some(footprint) =
                        row.footprint.as_ref().filter(|f| f.out_of_memory.is_none())
                    {
                        fragmentation.push(footprint.fragmentation());
                    }
                    efficiency.extend(row.efficiency);
                }
                Headline {
                    allocator,
                    workloads: times.len(),
                    out_of_memory,
                    time_vs_best: geometric_mean(&times).unwrap_or(f64::NAN),
                    p999_vs_best: geometric_mean(&tails).unwrap_or(f64::NAN),
                    time_ns: geometric_mean(&times_ns).unwrap_or(f64::NAN),
                    p999_ns: geometric_mean(&tails_ns).unwrap_or(f64::NAN),
                    fragmentation: geometric_mean(&fragmentation),
                    efficiency: (!efficiency.is_empty())
                        .then(|| efficiency.iter().sum::<f64>() / efficiency.len() as f64),
                }
            })
            .collect()
    }

    /// The headline table in Markdown.
    pub fn headline_markdown(&self) -> String {
        let mut out = String::new();
        // With one allocator there is no best to compare with: absolute times instead.
        let alone = self.allocators().len() == 1;
        let (time, tail) = if alone {
            ("time per call, ns", "p99.9 call, ns")
        } else {
            ("time per call ×best", "p99.9 call ×best")
        };
        let _ = writeln!(
            out,
            "| allocator | workloads | {time} | {tail} | peak footprint / peak live | heap efficiency |\n\
             |---|---:|---:|---:|---:|---:|",
        );
        for line in self.headline() {
            let (time, tail) = if alone {
                (
                    format!("{:.1}", line.time_ns),
                    format!("{:.1}", line.p999_ns),
                )
            } else {
                (ratio(line.time_vs_best), ratio(line.p999_vs_best))
            };
            let oom = if line.out_of_memory > 0 {
                format!(" (+{} out of memory)", line.out_of_memory)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {}{oom} | {time} | {tail} | {} | {} |",
                line.allocator,
                line.workloads,
                line.fragmentation
                    .map_or("time only".into(), |f| format!("{f:.2}")),
                line.efficiency.map_or("—".into(), percent),
            );
        }
        out
    }

    /// The whole report in Markdown: how it was measured, the headline, a median-time
    /// matrix, then a table per workload.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# heapkit lab report\n\n\
             Every allocator replayed each workload in one process; region allocators each got \
             the same {} MiB region, aligned to its size. Each of {} rounds builds a fresh \
             instance, warms it with one untimed replay, times the next replay whole, \
             with no timer between calls (ns per call: alloc, free or realloc, \
             including the replay's own bookkeeping, the same for all), then every call of a third \
             with the time-stamp counter (median and 99.9th percentile call, the counter's \
             overhead taken off); figures are medians over the rounds, and ×best is relative \
             to the best allocator on that workload. \
             Footprint is the span from the lowest live block to the end of the highest, its \
             peak over the peak of live requested bytes (Wilson and Johnstone's \
             fragmentation measure; 1.00 is perfect). Heap efficiency is the share of a \
             region in use when the first request fails, filling it with the workload's own \
             request sizes (two allocations per free, talc's method). Metadata is the \
             allocator's struct plus the bytes of a fresh region a greedy fill cannot get. \
             Run in {:.0} s.\n",
            self.region_len >> 20,
            self.rounds,
            self.elapsed.as_secs_f64()
        );
        out.push_str("## Summary\n\nGeometric means over the workloads each allocator ran.\n\n");
        out.push_str(&self.headline_markdown());
        out.push_str(&self.matrix_markdown());
        for workload in &self.workloads {
            out.push_str(&workload.markdown());
        }
        for study in &self.scale {
            out.push_str(&study.markdown());
        }
        out
    }

    /// Median time ×best (or in ns, for one allocator alone), allocators by workloads.
    fn matrix_markdown(&self) -> String {
        let alone = self.allocators().len() == 1;
        let mut out = String::from(if alone {
            "\n## Time per call by workload, ns\n\n| allocator |"
        } else {
            "\n## Time per call ×best by workload\n\n| allocator |"
        });
        for workload in &self.workloads {
            let _ = write!(out, " {} |", workload.name);
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(self.workloads.len()));
        out.push('\n');
        for allocator in self.allocators() {
            let _ = write!(out, "| {allocator} |");
            for workload in &self.workloads {
                let (best, _) = workload.best_times();
                let cell = match workload.rows.iter().find(|r| r.allocator == allocator) {
                    None => "·".into(),
                    Some(Row {
                        timing: Some(t), ..
                    }) if alone => format!("{:.1}", t.mean_ns),
                    Some(Row {
                        timing: Some(t), ..
                    }) => ratio(t.mean_ns / best),
                    Some(_) => "OOM".into(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out
    }

    /// Writes `report.md` and the plots into `dir`.
    ///
    /// # Errors
    ///
    /// A file that cannot be written, named.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Plots of an earlier run (of workloads not in this one) would sit beside the new
        // report as if they were part of it.
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|ext| ext == "svg") {
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        let path = dir.join("report.md");
        std::fs::write(&path, self.markdown()).map_err(|e| format!("{}: {e}", path.display()))?;
        for study in &self.scale {
            plots::scale(
                &dir.join(format!("scale-{}.svg", study.pattern.name())),
                study,
            )?;
        }
        for workload in &self.workloads {
            if workload.synthetic {
                plots::footprint(
                    &dir.join(format!("footprint-{}.svg", workload.name)),
                    workload,
                )?;
            }
            plots::latency(
                &dir.join(format!("latency-{}.svg", workload.name)),
                workload,
            )?;
        }
        Ok(())
    }
}

impl WorkloadResult {
    /// The lowest time per call and the lowest 99.9th percentile among the rows.
    pub fn best_times(&self) -> (f64, f64) {
        let timings = || self.rows.iter().filter_map(|row| row.timing.as_ref());
        let best = |pick: fn(&crate::results::Timing) -> f64| {
            timings().map(pick).fold(f64::INFINITY, f64::min)
        };
        (best(|t| t.mean_ns), best(|t| t.p999_ns))
    }

    /// This workload's table.
    fn markdown(&self) -> String {
        let summary = &self.summary;
        let mut out = format!(
            "\n## {}\n\n{}. {} events, peak live {}, largest request {} B; heap efficiency in a {} MiB region.\n\n\
             | allocator | ns per call | ×best | median call ns | p99.9 call ns | ×best | footprint / live | heap efficiency | metadata |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.name,
            self.description,
            summary.events,
            bytes(summary.peak_live),
            summary.max_size,
            self.efficiency_region >> 20,
        );
        let (best_time, best_tail) = self.best_times();
        // Alone on the workload, an allocator is its own best: no ratio to show.
        let alone = self.rows.len() == 1;
        let vs_best = |value: f64, best: f64| {
            if alone {
                "—".into()
            } else {
                ratio(value / best)
            }
        };
        for row in &self.rows {
            let [time, time_ratio, median, tail, tail_ratio] = match (&row.timing, row.failure) {
                (Some(t), _) => [
                    format!("{:.1}", t.mean_ns),
                    vs_best(t.mean_ns, best_time),
                    format!("{:.0}", t.median_ns),
                    format!("{:.0}", t.p999_ns),
                    vs_best(t.p999_ns, best_tail),
                ],
                (None, Some(oom)) => [
                    format!("{oom}"),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                ],
                (None, None) => ["—".into(), "—".into(), "—".into(), "—".into(), "—".into()],
            };
            let footprint = match &row.footprint {
                None => "time only".into(),
                Some(f) => match f.out_of_memory {
                    Some(oom) => format!("{oom}"),
                    None => format!("{:.2}", f.fragmentation()),
                },
            };
            let _ = writeln!(
                out,
                "| {} | {time} | {time_ratio} | {median} | {tail} | {tail_ratio} | {footprint} | {} | {} |",
                row.allocator,
                row.efficiency.map_or("—".into(), percent),
                row.metadata.map_or("—".into(), bytes),
            );
        }
        out
    }
}

fn geometric_mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}×")
    } else {
        "—".into()
    }
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// Bytes in the largest unit that keeps a whole number in front.
fn bytes(count: usize) -> String {
    match count {
        0..1024 => format!("{count} B"),
        1024..0x10_0000 => format!("{:.1} KiB", count as f64 / 1024.0),
        _ => format!("{:.1} MiB", count as f64 / f64::from(1 << 20)),
    }
}

impl crate::scale::ScaleResult {
    /// The study's table: ns per call at each size, and the growth from the smallest to
    /// the largest size reached.
    pub fn markdown(&self) -> String {
        let (title, which) = match self.pattern {
            crate::scale::Pattern::Random => ("random block", "a random live block"),
            crate::scale::Pattern::Hot => (
                "hot set",
                "a random one of the newest 1,024 blocks (the program's hot set; the rest \
                 stay live)",
            ),
        };
        let mut out = format!(
            "\n## scale: {title}\n\nTime per call against live blocks: each point fills the \
             heap with that many blocks of 8–256 B (the pool: 64 B), replaces {which} per \
             step, and frees them all; ns per call is the steps' time, taken whole with no \
             timer between the calls, over their number, median of 5 rounds (3 at 10^7 \
             live). The steps are drawn as they run, not read from a stored trace (which \
             stopped fitting in the cache beside the heap); the drawing and the table of live \
             blocks are included (the pool's fixed size is one draw fewer per step). The \
             first two lines are that work alone, in each block mix: the same steps over a \
             stand-in that keeps the block freed last and a stack of the others per size, \
             and nothing else (`heapkit_trace::arena::FreeStacks`, its blocks cut at their \
             size rounded up to 16 bytes), the floor under every allocator's line. Growth \
             is the time at the largest size reached over the time at the smallest (1.00× \
             is flat). \"Above the workload alone\" is the allocator's ns per call less \
             the floor's (in the same block sizes), at the smallest size and at the largest \
             both reached: the part of its time that is its own (below zero, an allocator \
             does as little as the stand-in: the pool, one size, whose free and allocation \
             the compiler fuses, in `lab_ir`'s build keeping its list head in a register \
             across the steps). Plot: `scale-{}.svg` (log-log).\n\n| allocator |",
            self.pattern.name()
        );
        for live in &self.sizes {
            let _ = write!(out, " {live} live |");
        }
        out.push_str(" growth | above the workload alone | note |\n|---|");
        out.push_str(&"---:|".repeat(self.sizes.len() + 2));
        out.push_str("---|\n");
        for row in &self.rows {
            let _ = write!(out, "| {} |", row.allocator);
            for ns in &row.ns {
                let cell = ns.map_or("—".into(), |ns| format!("{ns:.1}"));
                let _ = write!(out, " {cell} |");
            }
            let growth = Self::growth(row).map_or("—".into(), |g| format!("{g:.2}×"));
            let above = self.above_floor(row).map_or("—".into(), |(first, last)| {
                // A difference that rounds to nothing reads 0.0, not -0.0.
                let tenth = |ns: f64| if ns.abs() < 0.05 { 0.0 } else { ns };
                format!("{:.1} → {:.1}", tenth(first), tenth(last))
            });
            let _ = writeln!(
                out,
                " {growth} | {above} | {} |",
                row.note.as_deref().unwrap_or("")
            );
        }
        out
    }
}
