//! The lab's SVG plots: footprint over time and latency distributions.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::WorkloadResult;
use heapkit_trace::replay::Sample;

/// Colours by position, distinct on white.
const PALETTE: [RGBColor; 14] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 128, 0),
    RGBColor(0, 100, 0),
    RGBColor(255, 0, 255),
];

fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

fn failed(path: &Path, error: impl std::fmt::Display) -> String {
    format!("{}: {error}", path.display())
}

/// Footprint (span of live blocks) over the events, one line per region allocator, with
/// the live bytes beneath them in black.
pub fn footprint(path: &Path, workload: &WorkloadResult) -> Result<(), String> {
    let series: Vec<(&str, &[Sample])> = workload
        .rows
        .iter()
        .filter_map(|row| Some((row.allocator, row.footprint.as_ref()?.series.as_slice())))
        .collect();
    let kib = |bytes: usize| bytes as f64 / 1024.0;
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| kib(p.footprint)))
        .fold(1.0, f64::max);
    let events = workload.summary.events.max(1);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("footprint over time: {}", workload.name),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0..events, 0.0..top * 1.05)
        .map_err(|e| failed(path, e))?;
    chart
        .configure_mesh()
        .x_desc("event")
        .y_desc("KiB spanned by live blocks")
        .draw()
        .map_err(|e| failed(path, e))?;
    if let Some((_, points)) = series.first() {
        let live = points.iter().map(|p| (p.event, kib(p.live)));
        let style = BLACK.stroke_width(2);
        line(&mut chart, live, "live bytes requested", style, path)?;
    }
    for (index, (name, points)) in series.iter().enumerate() {
        let footprint = points.iter().map(|p| (p.event, kib(p.footprint)));
        line(&mut chart, footprint, name, colour(index).into(), path)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperRight, path)
}

/// One labelled line, with its legend entry.
fn line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    points: impl IntoIterator<Item = (X::ValueType, Y::ValueType)>,
    name: &str,
    style: ShapeStyle,
    path: &Path,
) -> Result<(), String>
where
    X: Ranged<ValueType: Clone + 'static>,
    Y: Ranged<ValueType: Clone + 'static>,
{
    chart
        .draw_series(LineSeries::new(points, style))
        .map_err(|e| failed(path, e))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    Ok(())
}

/// Draws the legend at `position` and writes the file.
fn finish<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(path, e))?;
    root.present().map_err(|e| failed(path, e))
}

/// Latency distribution per allocator: the share of calls (y) that took at most x ns,
/// on a log scale, up to the 99.99th percentile.
pub fn latency(path: &Path, workload: &WorkloadResult) -> Result<(), String> {
    const POINTS: usize = 400;
    let curves: Vec<(&str, Vec<(f64, f64)>)> = workload
        .rows
        .iter()
        .filter_map(|row| {
            let sorted = &row.timing.as_ref()?.sorted_ns;
            if sorted.is_empty() {
                return None;
            }
            let last = sorted.len() - 1;
            let points = (0..=POINTS)
                .map(|step| {
                    let share = 0.9999 * step as f64 / POINTS as f64;
                    let value = f64::from(sorted[(last as f64 * share) as usize]).max(1.0);
                    (value, share)
                })
                .collect();
            Some((row.allocator, points))
        })
        .collect();
    let top = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(10.0, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("latency per call: {}", workload.name),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..top * 1.2).log_scale(), 0.0..1.0)
        .map_err(|e| failed(path, e))?;
    chart
        .configure_mesh()
        .x_desc("ns (log scale)")
        .y_desc("share of calls at most x")
        .draw()
        .map_err(|e| failed(path, e))?;
    for (index, (name, points)) in curves.into_iter().enumerate() {
        line(
            &mut chart,
            points,
            name,
            colour(index).stroke_width(2),
            path,
        )?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight, path)
}

/// ns per call against live blocks, both axes logarithmic, one line per allocator.
pub fn scale(path: &Path, study: &crate::scale::ScaleResult) -> Result<(), String> {
    let points: Vec<(&str, Vec<(f64, f64)>)> = study
        .rows
        .iter()
        .map(|row| {
            let line = study
                .sizes
                .iter()
                .zip(&row.ns)
                .filter_map(|(&live, ns)| Some((live as f64, (*ns)?.max(0.1))))
                .collect();
            (row.allocator, line)
        })
        .collect();
    let (low, high) = points
        .iter()
        .flat_map(|(_, line)| line.iter().map(|&(_, ns)| ns))
        .fold((f64::INFINITY, 1.0f64), |(lo, hi), ns| {
            (lo.min(ns), hi.max(ns))
        });
    let low = if low.is_finite() { low / 2.0 } else { 0.1 };
    let first = *study.sizes.first().unwrap_or(&1) as f64;
    let last = *study.sizes.last().unwrap_or(&10) as f64;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "time per call against live blocks ({})",
                study.pattern.name()
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (first * 0.8..last * 1.25).log_scale(),
            (low..high * 2.0).log_scale(),
        )
        .map_err(|e| failed(path, e))?;
    chart
        .configure_mesh()
        .x_desc("live blocks")
        .y_desc("ns per call")
        .draw()
        .map_err(|e| failed(path, e))?;
    for (index, (name, line)) in points.into_iter().enumerate() {
        self::line(&mut chart, line, name, colour(index).into(), path)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}

/// Peak footprint over peak live bytes (Johnstone and Wilson's #4 plus one) per trace, one
/// line per allocator with its real overhead, on a log scale.
pub fn fragmentation(path: &Path, study: &crate::fragmentation::Study) -> Result<(), String> {
    let lines: Vec<(&str, Vec<(usize, f64)>)> = study
        .rows
        .iter()
        .filter(|row| row.with_overhead)
        .map(|row| {
            let points = row
                .footprints
                .iter()
                .enumerate()
                .filter_map(|(index, footprint)| {
                    let footprint = footprint.as_ref()?;
                    footprint.out_of_memory.is_none().then(|| {
                        let ratio = crate::fragmentation::fragmentation(footprint, false) + 1.0;
                        (index, ratio.max(1.0))
                    })
                })
                .collect();
            (row.allocator, points)
        })
        .collect();
    let top = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(_, ratio)| ratio))
        .fold(2.0, f64::max);
    let names: Vec<&str> = study.traces.iter().map(|t| t.name.as_str()).collect();
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "fragmentation #4 on real programs' traces (with overhead)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0..names.len().saturating_sub(1),
            (1.0..top * 1.2).log_scale(),
        )
        .map_err(|e| failed(path, e))?;
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|index| names.get(*index).copied().unwrap_or("").to_owned())
        .x_desc("trace")
        .y_desc("peak footprint / peak live bytes")
        .draw()
        .map_err(|e| failed(path, e))?;
    for (index, (name, points)) in lines.into_iter().enumerate() {
        line(&mut chart, points, name, colour(index).into(), path)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}
