//! `sweep --plot`: every run's validation accuracy against the batch number, and each variant's
//! final test accuracies side by side with their mean.

use super::{category_labels, register_fonts, DrawResult, FONT, PALETTE};
use crate::outpath::ImageFormat;
use anyhow::{anyhow, Context, Result};
use bnconv_nn::sweep::SweepRun;
use bnconv_nn::sweep_summary::{VariantSummary, NEAR_CHANCE};
use bnconv_nn::Variant;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Draws the runs of a sweep over `variants` (their order sets the colours) under `title`.
pub fn sweep_figure(
    path: &Path,
    format: ImageFormat,
    title: &str,
    runs: &[SweepRun],
    summaries: &[VariantSummary],
) -> Result<()> {
    with_backend!(path, format, (1500, 650), |root| draw(
        &root, title, runs, summaries
    ))
}

fn colour(summaries: &[VariantSummary], variant: Variant) -> RGBColor {
    let k = summaries
        .iter()
        .position(|s| s.variant == variant)
        .unwrap_or(0);
    PALETTE[k % PALETTE.len()]
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[SweepRun],
    summaries: &[VariantSummary],
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 24).into_font().style(FontStyle::Bold))?;
    let (left, right) = root.split_horizontally(960);
    let finished: Vec<_> = runs
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok().map(|rep| (r, rep)))
        .collect();
    let batches = finished
        .iter()
        .map(|(_, rep)| rep.batches)
        .max()
        .unwrap_or(1) as f64;

    let mut curves = ChartBuilder::on(&left)
        .caption("Validation accuracy of every run (5000 images)", (FONT, 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..batches * 1.02, 0.0..1.0)?;
    curves
        .configure_mesh()
        .x_desc("batch (training step)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("validation accuracy")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for s in summaries {
        let c = colour(summaries, s.variant);
        let mut labelled = false;
        for (run, rep) in finished.iter().filter(|(r, _)| r.variant == s.variant) {
            let points: Vec<(f64, f64)> = rep
                .log
                .iter()
                .filter(|l| l.set == "validation")
                .map(|l| (l.batch as f64, l.accuracy as f64))
                .chain([(rep.batches as f64, rep.final_validation.accuracy as f64)])
                .collect();
            let series = curves.draw_series(LineSeries::new(points, c.mix(0.7).stroke_width(2)))?;
            if !labelled {
                labelled = true;
                let n = s.test_accuracy.len();
                series
                    .label(format!("{}: {n} run(s)", run.variant))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                    });
            }
        }
    }
    curves
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;

    let k = summaries.len().max(1) as f64;
    let mut finals = ChartBuilder::on(&right)
        .caption("Final test accuracy: dots = seeds, bar = mean", (FONT, 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..k - 0.5, 0.0..1.0)?;
    let label = category_labels(
        summaries
            .iter()
            .map(|s| s.variant.name().to_string())
            .collect(),
    );
    finals
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(summaries.len() + 1)
        .x_label_formatter(&label)
        .y_desc("test accuracy")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    finals
        .draw_series(LineSeries::new(
            [(-0.5, NEAR_CHANCE as f64), (k - 0.5, NEAR_CHANCE as f64)],
            BLACK.mix(0.5).stroke_width(1),
        ))?
        .label(format!("near chance (<= {NEAR_CHANCE})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.mix(0.5)));
    for (i, s) in summaries.iter().enumerate() {
        let c = colour(summaries, s.variant);
        let n = s.test_accuracy.len().max(1) as f64;
        // Spread the seeds across the column so that equal accuracies stay visible.
        finals.draw_series(s.test_accuracy.iter().enumerate().map(|(j, a)| {
            let x = i as f64 + 0.5 * ((j as f64 + 0.5) / n - 0.5);
            Circle::new((x, a.accuracy as f64), 6, c.filled())
        }))?;
        if !s.test_accuracy.is_empty() {
            let x = i as f64;
            finals.draw_series(LineSeries::new(
                [(x - 0.35, s.mean), (x + 0.35, s.mean)],
                c.stroke_width(3),
            ))?;
        }
    }
    finals
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}
