//! What a lab run measured, per workload and allocator: the types the run fills in and
//! the report and plots read.

use heapkit_trace::replay::{Footprint, OutOfMemory};
use heapkit_trace::trace::Summary;

/// Time per call over the rounds of one allocator on one workload.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Median over rounds of the whole replay's time over its events, ns: throughput,
    /// with no timer between calls.
    pub mean_ns: f64,
    /// Median over rounds of each round's median call, ns.
    pub median_ns: f64,
    /// Median over rounds of each round's 99.9th percentile, ns.
    pub p999_ns: f64,
    /// Every call's time, sorted, ns, for the latency distribution.
    pub sorted_ns: Vec<f32>,
}

/// One allocator's results on one workload.
#[derive(Clone, Debug)]
pub struct Row {
    /// The allocator's display name.
    pub allocator: &'static str,
    /// Its key.
    pub key: &'static str,
    /// Time per call; `None` when it ran out of memory.
    pub timing: Option<Timing>,
    /// Memory measures, for region allocators.
    pub footprint: Option<Footprint>,
    /// Heap efficiency on the workload's requests.
    pub efficiency: Option<f64>,
    /// Bytes kept for itself.
    pub metadata: Option<usize>,
    /// Why time is missing.
    pub failure: Option<OutOfMemory>,
}

/// Every allocator on one workload.
#[derive(Clone, Debug)]
pub struct WorkloadResult {
    /// The workload's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Whether it is synthetic.
    pub synthetic: bool,
    /// Its shape.
    pub summary: Summary,
    /// Bytes of the region heap efficiency was measured in.
    pub efficiency_region: usize,
    /// One row per allocator that fits it.
    pub rows: Vec<Row>,
}
