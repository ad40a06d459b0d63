//! Plots (SVG, with plotters; text is left to the SVG viewer's fonts, so
//! drawing needs no font files): commit rate against thread count, and
//! ingest MB/s per engine.

use super::median_of;
use crate::engines::EngineKind;
use crate::error::{BenchError, BenchResult};
use crate::results::Campaign;
use crate::workloads::Workload;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

fn plot_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(e.to_string())
}

fn colour(engine: EngineKind) -> RGBColor {
    match engine {
        EngineKind::Mailvault => RGBColor(200, 30, 30),
        EngineKind::SqliteFull => RGBColor(30, 90, 200),
        EngineKind::SqliteNormal => RGBColor(120, 160, 230),
        EngineKind::Redb => RGBColor(30, 150, 60),
        EngineKind::Fjall => RGBColor(220, 140, 0),
        EngineKind::Rocksdb => RGBColor(130, 60, 170),
        EngineKind::Raw => RGBColor(90, 90, 90),
    }
}

/// Draws every plot the results allow; returns their paths.
pub fn draw(campaign: &Campaign, dir: &Path) -> BenchResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    let commit_workloads = [
        (1.0, Workload::Commits1),
        (8.0, Workload::Commits8),
        (64.0, Workload::Commits64),
    ];
    if commit_workloads.iter().any(|(_, w)| campaign.workloads.contains(w)) {
        let path = dir.join("commits.svg");
        commits(campaign, &commit_workloads, &path)?;
        files.push(path);
    }
    if campaign.workloads.contains(&Workload::Ingest) {
        let path = dir.join("ingest.svg");
        ingest(campaign, &path)?;
        files.push(path);
    }
    Ok(files)
}

fn commits(campaign: &Campaign, workloads: &[(f64, Workload)], path: &Path) -> BenchResult<()> {
    let series: Vec<(EngineKind, Vec<(f64, f64)>)> = campaign
        .engines
        .iter()
        .map(|&engine| {
            let points = workloads
                .iter()
                .filter_map(|&(threads, w)| median_of(campaign, engine, w, "commits_per_sec").map(|v| (threads, v)))
                .filter(|(_, v)| *v > 0.0)
                .collect();
            (engine, points)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold(10.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Workload 1: durable 1 KiB commits per second", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8f64..80.0f64).log_scale(), (10.0f64..top * 2.0).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("committing threads")
        .y_desc("commits/s (median of rounds)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| super::tables::grouped(*y, 0))
        .draw()
        .map_err(plot_error)?;
    for (engine, points) in series {
        if points.is_empty() {
            continue;
        }
        let style = colour(engine).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(plot_error)?
            .label(engine.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour(engine).filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn ingest(campaign: &Campaign, path: &Path) -> BenchResult<()> {
    let bars: Vec<(EngineKind, f64)> = campaign
        .engines
        .iter()
        .filter_map(|&e| median_of(campaign, e, Workload::Ingest, "mb_per_sec").map(|v| (e, v)))
        .collect();
    let top = bars.iter().map(|(_, v)| *v).fold(1.0f64, f64::max);
    let names: Vec<&str> = bars.iter().map(|(e, _)| e.name()).collect();
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Workload 2: realistic-mix ingest, 16 writers, durable deliveries",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((0..bars.len().max(1)).into_segmented(), 0.0..top * 1.15)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("MB/s of messages given (median of rounds)")
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).copied().unwrap_or("").to_string(),
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, &(engine, value))| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), value)],
                colour(engine).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(plot_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, &(_, value))| {
            Text::new(
                format!("{value:.0}"),
                (SegmentValue::CenterOf(i), value * 1.02 + top * 0.02),
                ("sans-serif", 16),
            )
        }))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
