//! The lab's workloads under criterion: each built-in workload (or those named in
//! `LAB_WORKLOADS`, comma-separated) replayed whole by every allocator that fits it, each
//! over the same 32 MiB region, in one run. Where `cargo xtask lab` gives one figure per
//! round, this gives criterion's statistics over many replays.
//!
//! `cargo xtask bench lab` runs it and prints each group's medians (ns per event) as
//! ratios to the fastest.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heapkit_lab::contenders::{self, Measure, Scratch};
use heapkit_lab::{builtin, Scale};
use heapkit_trace::replay::Clock;

const REGION: usize = 32 << 20;

fn workloads(c: &mut Criterion) {
    let clock = Clock::calibrate(Duration::from_millis(50));
    let mut scratch = Scratch::new(REGION);
    let wanted: Option<Vec<String>> = std::env::var("LAB_WORKLOADS")
        .ok()
        .map(|names| names.split(',').map(str::to_owned).collect());
    let contenders = contenders::all();
    for workload in builtin(Scale::Default, 0x5eed) {
        if wanted
            .as_ref()
            .is_some_and(|names| !names.contains(&workload.name))
        {
            continue;
        }
        let mut group = c.benchmark_group(format!("lab/{}", workload.name));
        group.throughput(Throughput::Elements(workload.summary.events as u64));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(2));
        for contender in contenders.iter().filter(|c| c.fits(&workload.summary)) {
            group.bench_function(contender.name(), |b| {
                b.iter_custom(|replays| {
                    let mut nanos = 0.0;
                    for _ in 0..replays {
                        let ticks = contender
                            .time(
                                &workload.trace,
                                &workload.summary,
                                &mut scratch,
                                REGION,
                                Measure::Span(0..workload.summary.events),
                            )
                            .expect("the region holds every workload");
                        nanos += clock.span_nanos(ticks);
                    }
                    Duration::from_nanos(nanos as u64)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(lab, workloads);
criterion_main!(lab);
