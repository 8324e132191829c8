//! `compare --plot` and `train --plot`: accuracy and loss against the batch number, one colour
//! per variant.

use super::{register_fonts, DrawResult, FONT, PALETTE};
use crate::outpath::ImageFormat;
use anyhow::{anyhow, Context, Result};
use bnconv_nn::train::RunReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Validation and training accuracy and loss against the batch number, one colour per variant.
pub fn curves(path: &Path, format: ImageFormat, reports: &[RunReport]) -> Result<()> {
    with_backend!(path, format, (1500, 620), |root| draw_curves(
        &root, reports
    ))
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    reports: &[RunReport],
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let Some(first) = reports.first() else {
        return Ok(());
    };
    let variants: Vec<&str> = reports.iter().map(|r| r.variant.name()).collect();
    let title = format!(
        "Seed CNN on MNIST: {} ({} batches of {}, Adam lr {}, seed {}, BN {})",
        variants.join(" vs "),
        first.batches,
        first.batch_size,
        first.adam.lr,
        first.seed,
        first.bn_path.name(),
    );
    let root = root.titled(&title, (FONT, 26).into_font().style(FontStyle::Bold))?;
    let (left, right) = root.split_horizontally(750);
    let batches = reports.iter().map(|r| r.batches).max().unwrap_or(1) as f64;
    let max_loss = reports
        .iter()
        .flat_map(|r| {
            r.log
                .iter()
                .map(|l| l.loss)
                .chain([r.final_validation.loss])
        })
        .filter(|l| l.is_finite())
        .fold(0.0f32, f32::max)
        .max(0.1) as f64;
    for (area, accuracy) in [(&left, true), (&right, false)] {
        let (y_max, caption, y_desc) = if accuracy {
            (1.0, "Accuracy", "accuracy")
        } else {
            (max_loss * 1.1, "Loss (sigmoid cross-entropy)", "loss")
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..batches * 1.02, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("batch (training step)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(y_desc)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for (k, r) in reports.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let value = |l: &bnconv_nn::train::LogLine| {
                if accuracy {
                    l.accuracy as f64
                } else {
                    l.loss as f64
                }
            };
            let final_v = if accuracy {
                r.final_validation.accuracy
            } else {
                r.final_validation.loss
            } as f64;
            let validation: Vec<(f64, f64)> = r
                .log
                .iter()
                .filter(|l| l.set == "validation")
                .map(|l| (l.batch as f64, value(l)))
                .chain([(r.batches as f64, final_v)])
                .collect();
            let training: Vec<(f64, f64)> = r
                .log
                .iter()
                .filter(|l| l.set == "training")
                .map(|l| (l.batch as f64, value(l)))
                .collect();
            let name = r.variant.name();
            let light = color.mix(0.55);
            chart
                .draw_series(LineSeries::new(
                    training.iter().copied(),
                    light.stroke_width(2),
                ))?
                .label(format!(
                    "{name}: training batch ({} images just trained on)",
                    r.batch_size
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], light.stroke_width(2))
                });
            chart.draw_series(training.iter().map(|&p| Circle::new(p, 3, light.filled())))?;
            let label = if accuracy {
                format!(
                    "{name}: validation, {} images (final {:.3}; test {:.3})",
                    r.final_validation.images, r.final_validation.accuracy, r.test.accuracy
                )
            } else {
                format!(
                    "{name}: validation, {} images (final {:.3})",
                    r.final_validation.images, r.final_validation.loss
                )
            };
            chart
                .draw_series(LineSeries::new(
                    validation.iter().copied(),
                    color.stroke_width(3),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart.draw_series(
                validation
                    .iter()
                    .map(|&p| Circle::new(p, 5, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(if accuracy {
                SeriesLabelPosition::MiddleRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}
