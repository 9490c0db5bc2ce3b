#![cfg(not(miri))] // leaks its region and replays whole workloads: minutes under miri
//! The lab end to end on a tiny configuration: every workload and allocator, the report
//! and the plots.

use std::path::PathBuf;

use heapkit_lab::{contenders, run, Config, Row, Scale, WorkloadResult};
use heapkit_trace::trace::Trace;
use heapkit_trace::workloads::{synthetic, Lifetimes, SizeMix};

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("heapkit-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tiny(name: &str) -> Config {
    Config {
        scale: Scale::Tiny,
        region_len: 4 << 20,
        out_dir: out_dir(name),
        ..Config::default()
    }
}

#[test]
fn the_lab_runs_every_allocator_on_every_workload_and_writes_report_and_plots() {
    let config = tiny("all");
    let report = run(&config).unwrap();
    let names: Vec<&str> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "random-actions",
            "ramp",
            "peak",
            "phases",
            "plateau",
            "uniform-small",
            "mixed",
            "fixed-churn",
            "pages",
            "btreemap",
            "json",
            "regex",
            "python",
            "sqlite",
            "redis"
        ]
    );
    for workload in &report.workloads {
        let pool = workload.rows.iter().any(|row| row.key == "pool");
        assert_eq!(
            pool,
            workload.name == "fixed-churn",
            "the pool runs where one layout is asked"
        );
        let region = workload.rows.iter().any(|row| row.key == "region");
        assert_eq!(
            region,
            workload.name == "phases",
            "the bump region runs where frees come newest first"
        );
        assert_eq!(
            workload.rows.len(),
            contenders::all().len() - usize::from(!pool) - usize::from(!region)
        );
        for row in &workload.rows {
            check_row(row, workload, config.region_len);
        }
    }
    let markdown = std::fs::read_to_string(config.out_dir.join("report.md")).unwrap();
    assert_eq!(markdown, report.markdown());
    for contender in contenders::all() {
        assert!(markdown.contains(contender.name()), "{}", contender.name());
    }
    for workload in &report.workloads {
        assert!(markdown.contains(&format!("## {}\n", workload.name)));
        let latency = config
            .out_dir
            .join(format!("latency-{}.svg", workload.name));
        assert!(std::fs::read_to_string(latency)
            .unwrap()
            .starts_with("<svg"));
        let footprint = config
            .out_dir
            .join(format!("footprint-{}.svg", workload.name));
        assert_eq!(footprint.exists(), workload.synthetic, "{}", workload.name);
    }
    let headline = report.headline();
    assert_eq!(headline.len(), contenders::all().len());
    assert!(headline.iter().all(|line| line.time_vs_best >= 1.0));
    for workload in &report.workloads {
        let (best, _) = workload.best_times();
        // The best is one of the values itself, so equality is exact.
        #[allow(clippy::float_cmp)]
        let fastest = workload
            .rows
            .iter()
            .filter(|row| row.timing.as_ref().is_some_and(|t| t.mean_ns == best));
        // Two allocators may tie at the timer's resolution.
        assert!(
            fastest.count() >= 1,
            "{}: an allocator is the 1.00× of its table",
            workload.name
        );
    }
    std::fs::remove_dir_all(&config.out_dir).unwrap();
}

/// A row's figures are all there and in their ranges.
fn check_row(row: &Row, workload: &WorkloadResult, region_len: usize) {
    let what = format!("{} on {}", row.allocator, workload.name);
    let timing = row
        .timing
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: {:?}", row.failure));
    assert!(
        timing.mean_ns > 0.0 && timing.p999_ns >= timing.median_ns,
        "{what}"
    );
    assert_eq!(
        timing.sorted_ns.len(),
        workload.summary.events,
        "{what}: one sample a call"
    );
    let Some(footprint) = &row.footprint else {
        assert!(
            ["system", "mimalloc", "sharded"].contains(&row.key),
            "{what}: time only"
        );
        return;
    };
    assert_eq!(footprint.peak_live, workload.summary.peak_live, "{what}");
    assert!(
        footprint.fragmentation() >= 1.0,
        "{what}: live blocks cannot overlap"
    );
    // Heap efficiency frees at random: it does not apply to a bump region.
    if row.key == "region" {
        assert!(row.efficiency.is_none(), "{what}");
    } else {
        let efficiency = row.efficiency.unwrap();
        assert!(
            efficiency > 0.0 && efficiency <= 1.0,
            "{what}: {efficiency}"
        );
    }
    assert!(row.metadata.unwrap() < region_len, "{what}");
}

#[test]
fn only_keeps_the_named_workloads_and_allocators_and_refuses_unknown_names() {
    let mut config = tiny("only");
    config.only = vec!["pages".into(), "tlsf".into(), "rlsf".into()];
    let report = run(&config).unwrap();
    assert_eq!(report.workloads.len(), 1);
    let keys: Vec<_> = report.workloads[0].rows.iter().map(|row| row.key).collect();
    assert_eq!(keys, ["tlsf", "rlsf"]);

    // The pool serves one layout: of the built-in workloads, only fixed-size churn.
    std::fs::write(config.out_dir.join("footprint-stale.svg"), "<svg/>").unwrap();
    config.only = vec!["pool".into()];
    let report = run(&config).unwrap();
    let names: Vec<_> = report.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["fixed-churn"]);
    // Alone, an allocator is reported in ns, not as ×best (1.00 everywhere).
    let markdown = std::fs::read_to_string(config.out_dir.join("report.md")).unwrap();
    // (The scale study that follows the workloads has its own growth column.)
    let (workloads, _) = markdown
        .split_once("## scale")
        .expect("the scale study ran too");
    assert!(workloads.contains("time per call, ns"), "{markdown}");
    assert!(!workloads.contains("1.00×"), "{markdown}");
    assert!(
        !config.out_dir.join("footprint-stale.svg").exists(),
        "an earlier run's plot left beside the new report"
    );
    config.only = vec!["pool".into(), "json".into()];
    let error = run(&config).unwrap_err();
    assert!(error.contains("no selected allocator"), "{error}");

    config.only = vec!["no-such-thing".into()];
    let error = run(&config).unwrap_err();
    assert!(
        error.contains("--only no-such-thing")
            && error.contains("plateau")
            && error.contains("talc"),
        "{error}"
    );
    std::fs::remove_dir_all(&config.out_dir).unwrap();
}

#[test]
fn a_trace_file_is_replayed_instead_of_the_built_in_workloads() {
    let mut config = tiny("trace");
    std::fs::create_dir_all(&config.out_dir).unwrap();
    let trace = synthetic(
        Lifetimes::Plateau {
            live: 50,
            steps: 200,
        },
        SizeMix::Mixed,
        3,
    );
    let path = config.out_dir.join("mine.trace");
    std::fs::write(&path, trace.to_text()).unwrap();
    config.traces = vec![path.clone()];
    config.only = vec!["talc".into()];
    let report = run(&config).unwrap();
    assert_eq!(report.workloads.len(), 1);
    assert_eq!(report.workloads[0].name, "mine");
    assert_eq!(report.workloads[0].summary, trace.summary());
    assert_eq!(
        Trace::parse(&std::fs::read_to_string(&path).unwrap()).unwrap(),
        trace
    );

    std::fs::write(&path, "a 1 16 8\nf 2\n").unwrap();
    let error = run(&config).unwrap_err();
    assert!(
        error.contains("mine.trace") && error.contains("line 2"),
        "{error}"
    );
    std::fs::write(&path, "# nothing but a comment\n").unwrap();
    let error = run(&config).unwrap_err();
    assert!(
        error.contains("mine.trace: the trace has no events"),
        "{error}"
    );
    std::fs::remove_dir_all(&config.out_dir).unwrap();
}

#[test]
#[allow(clippy::float_cmp)] // the same subtraction on the same figures: the same bits
fn the_scale_study_runs_alone_for_every_allocator_that_frees_at_random() {
    use heapkit_lab::scale::ScaleRow;
    let mut config = tiny("scale");
    config.only = vec!["scale".into()];
    let report = run(&config).unwrap();
    assert!(report.workloads.is_empty());
    assert_eq!(report.scale.len(), 2, "both patterns");
    let scale = &report.scale[0];
    assert_eq!(scale.sizes, [100, 1_000]);
    let keys: Vec<&str> = scale.rows.iter().map(|row| row.key).collect();
    for key in [
        "heap", "tlsf", "buddy", "bitmap", "pool", "rlsf", "talc", "system",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // Its frees are no-ops but the newest block's: random replacement is not for it.
    assert!(!keys.contains(&"region"));
    for row in &scale.rows {
        assert!(
            row.ns
                .iter()
                .all(|ns| ns.is_some_and(|ns| ns.is_finite() && ns >= 0.0)),
            "{}: {:?} {:?}",
            row.allocator,
            row.ns,
            row.note
        );
    }
    let pool = scale.rows.iter().find(|row| row.key == "pool").unwrap();
    assert_eq!(pool.note.as_deref(), Some("64-byte blocks"));
    // The floor runs first, once in each mix; every allocator's own part is its time less
    // the floor's in its own mix.
    let floors: Vec<_> = scale.rows.iter().filter(|row| row.is_floor()).collect();
    assert_eq!(floors.len(), 2);
    assert_ne!(floors[0].mix, floors[1].mix);
    assert!(scale.rows[..2].iter().all(ScaleRow::is_floor));
    for row in &scale.rows {
        let Some((first, last)) = scale.above_floor(row) else {
            assert!(
                row.is_floor(),
                "{} has no part above the floor",
                row.allocator
            );
            continue;
        };
        let floor = floors.iter().find(|floor| floor.mix == row.mix).unwrap();
        assert_eq!(first, row.ns[0].unwrap() - floor.ns[0].unwrap());
        assert_eq!(last, row.ns[1].unwrap() - floor.ns[1].unwrap());
    }
    let markdown = std::fs::read_to_string(config.out_dir.join("report.md")).unwrap();
    assert!(markdown.contains("## scale: random block") && markdown.contains("## scale: hot set"));
    for plot in ["scale-random.svg", "scale-hot-set.svg"] {
        assert!(std::fs::read_to_string(config.out_dir.join(plot))
            .unwrap()
            .starts_with("<svg"));
    }
    std::fs::remove_dir_all(&config.out_dir).unwrap();
}

#[test]
fn the_fragmentation_study_measures_holes_with_and_without_overhead() {
    // A fence, a 100-byte block, a fence, then a 100-byte block freed under a 150-byte
    // request that cannot reuse it: without overhead every policy leaves that hole, 366
    // bytes spanned for 266 live (#4 and #3: 37.6%).
    let base = tiny("fragmentation");
    let dir = base.out_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hole.trace");
    std::fs::write(
        &path,
        "a 0 8 8\na 1 100 8\na 2 8 8\na 3 100 8\nf 1\na 4 150 8\nf 0\nf 2\nf 3\nf 4\n",
    )
    .unwrap();
    let config = Config {
        traces: vec![path],
        only: vec!["tlsf".into(), "fit-best".into(), "model".into()],
        ..base
    };
    let study = heapkit_lab::fragmentation::run(&config).unwrap();
    let names: Vec<&str> = study.rows.iter().map(|row| row.allocator).collect();
    assert_eq!(
        names,
        [
            "heapkit-fit best fit",
            "heapkit Tlsf",
            "first fit (address-ordered)",
            "best fit",
            "first fit (LIFO)",
            "next fit",
        ]
    );
    for row in &study.rows {
        let footprint = row.footprints[0]
            .as_ref()
            .expect("every row runs the trace");
        assert_eq!(footprint.peak_live, 266, "{}", row.allocator);
        let peak = heapkit_lab::fragmentation::fragmentation(footprint, false);
        let at_peak_live = heapkit_lab::fragmentation::fragmentation(footprint, true);
        if row.with_overhead {
            // Headers add to the hole: more than the model, never less.
            assert!(peak >= 100.0 / 266.0, "{}: {peak}", row.allocator);
        } else {
            assert!(
                (peak - 100.0 / 266.0).abs() < 1e-9,
                "{}: {peak}",
                row.allocator
            );
            assert!((at_peak_live - peak).abs() < 1e-9, "{}", row.allocator);
        }
    }
    let markdown = study.markdown();
    assert!(
        markdown.contains("| best fit | 37.6% / 37.6% |"),
        "{markdown}"
    );
    assert!(markdown.contains("| hole | heapkit"), "{markdown}");
    assert!(dir.join("fragmentation.md").is_file());
    assert!(dir.join("fragmentation.svg").is_file());
    assert!(heapkit_lab::fragmentation::run(&Config {
        only: vec!["no-such".into()],
        ..config
    })
    .unwrap_err()
    .contains("no-such"));
}

#[test]
#[allow(clippy::float_cmp)] // figures exact in binary, so their differences are too
fn the_part_above_the_floor_is_taken_at_the_largest_size_an_allocator_reached() {
    use heapkit_lab::scale::{Pattern, ScaleResult, ScaleRow};
    use heapkit_trace::workloads::SizeMix;
    let row = |key, ns: &[Option<f64>], mix| ScaleRow {
        allocator: key,
        key,
        ns: ns.to_vec(),
        note: None,
        mix,
    };
    let (small, fixed) = (SizeMix::UniformSmall, SizeMix::Fixed(64));
    let study = ScaleResult {
        pattern: Pattern::Random,
        sizes: vec![10, 100, 1000],
        steps: vec![20, 200, 2000],
        rows: vec![
            row("workload-alone", &[Some(1.0), Some(2.0), Some(8.0)], small),
            row("workload-alone", &[Some(0.5), Some(0.5), Some(4.0)], fixed),
            row("tlsf", &[Some(3.0), Some(5.0), Some(20.0)], small),
            row("pool", &[Some(1.5), Some(2.5), Some(4.5)], fixed),
            row("list", &[Some(4.0), Some(40.0), None], small),
            row("nothing", &[None, None, None], small),
        ],
    };
    // A floor that stopped before the allocator did: the largest size both reached.
    let mut stopped = study.clone();
    stopped.rows[1].ns[2] = None;
    let above = |at: usize| study.above_floor(&study.rows[at]);
    assert_eq!(above(0), None, "the floor itself");
    assert_eq!(above(2), Some((2.0, 12.0)));
    assert_eq!(
        above(3),
        Some((1.0, 0.5)),
        "against the floor in its own sizes"
    );
    assert_eq!(
        above(4),
        Some((3.0, 38.0)),
        "at 100, the largest it reached"
    );
    assert_eq!(above(5), None);
    assert_eq!(stopped.above_floor(&stopped.rows[3]), Some((1.0, 2.0)));
}

#[test]
fn the_scale_schedule_reaches_ten_million_live_blocks_only_for_allocators_that_stay_cheap() {
    use heapkit_lab::scale::{budget_seconds, projected_seconds, rounds, steps};
    assert_eq!(steps(Scale::Tiny, 100), 1_000);
    assert_eq!(steps(Scale::Default, 1_000), 200_000);
    assert_eq!(steps(Scale::Default, 1_000_000), 1_000_000);
    assert_eq!(steps(Scale::Full, 10_000_000), 1_000_000);
    assert_eq!(rounds(Scale::Tiny, 100), 1);
    assert_eq!(rounds(Scale::Full, 1_000_000), 5);
    assert_eq!(rounds(Scale::Full, 10_000_000), 3);
    assert!(budget_seconds(Scale::Full) > budget_seconds(Scale::Default));
    // TLSF's 10^6 point under --full took 2.8 s, its cost per call having grown 4.7 times
    // from 10^5: 10^7 makes 3.3 times the calls (a capped million steps, 3 rounds), about
    // 43 s, inside the budget. With ten times the calls it would be 132 s.
    let tlsf = projected_seconds(Scale::Full, 1_000_000, 10_000_000, 2.8, 4.7);
    assert!((tlsf - 43.4).abs() < 0.1, "{tlsf}");
    assert!(tlsf < budget_seconds(Scale::Full));
    // linked_list_allocator's 10^4 point took 13.6 s, 22 times the cost per call of 10^3:
    // 10^5 would take about 430 s, skipped.
    let list = projected_seconds(Scale::Full, 10_000, 100_000, 13.6, 22.0);
    assert!((list - 427.4).abs() < 0.1, "{list}");
    assert!(list > budget_seconds(Scale::Full));
}
