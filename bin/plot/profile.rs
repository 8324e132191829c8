//! `profile --plot`: per-layer wall time per step, fused against unfused BN+ReLU.

use super::{category_labels, register_fonts, DrawResult, FONT, FUSED, UNFUSED};
use crate::outpath::ImageFormat;
use crate::profile_doc::ProfileDoc;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Per-layer wall ms per step, fused vs unfused: convolution and dense layers on top, the other
/// layers (BN, ReLU) and the step's own work (loss, Adam, data, other) below.
pub fn profile_bars(path: &Path, format: ImageFormat, doc: &ProfileDoc) -> Result<()> {
    with_backend!(path, format, (1500, 950), |root| draw_profile(&root, doc))
}

fn draw_profile<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    doc: &ProfileDoc,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let title = format!(
        "bnconv profile: {} network, batch {}, {} thread(s), {} steps: median step {:.2} ms fused, {:.2} ms unfused ({:.2}x)",
        doc.variant,
        doc.batch_size,
        doc.profile_threads,
        doc.steps,
        doc.total.fused.unprofiled_ms_per_step,
        doc.total.unfused.unprofiled_ms_per_step,
        doc.total.speedup_unprofiled,
    );
    let root = root.titled(&title, (FONT, 24).into_font().style(FontStyle::Bold))?;
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    let panels = [
        (
            &top,
            true,
            "Convolution and dense layers (im2col, GEMMs, col2im)",
        ),
        (
            &bottom,
            false,
            "Batch-norm / ReLU layers, and the rest of the step (loss, Adam, batch gather, other)",
        ),
    ];
    for (area, gemm, caption) in panels {
        let layers: Vec<_> = doc
            .breakdown
            .layers
            .iter()
            .filter(|l| l.gemm == gemm)
            .collect();
        let n = layers.len().max(1);
        let y_max = layers
            .iter()
            .map(|l| l.fused_ms_per_step.max(l.unfused_ms_per_step))
            .fold(0.0, f64::max)
            .max(1e-3)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_max)?;
        let label = category_labels(layers.iter().map(|l| l.layer.clone()).collect());
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&label)
            .y_desc("median wall ms per step")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        let bars = |fused: bool| {
            layers.iter().enumerate().map(move |(i, l)| {
                let (x0, v, c) = if fused {
                    (i as f64 - 0.4, l.fused_ms_per_step, FUSED)
                } else {
                    (i as f64, l.unfused_ms_per_step, UNFUSED)
                };
                Rectangle::new([(x0, 0.0), (x0 + 0.4, v)], c.filled())
            })
        };
        chart
            .draw_series(bars(true))?
            .label("fused BN+ReLU")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], FUSED.filled()));
        chart
            .draw_series(bars(false))?
            .label("unfused (BN pass, then ReLU pass)")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], UNFUSED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}
