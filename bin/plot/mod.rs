//! Figures, as PNG or SVG (by the file extension): the training curves of `compare --plot`, the
//! per-layer bars of `profile --plot`, the confusion heat map of `eval --plot` ([`confusion`])
//! and the runs of `sweep --plot` ([`sweep`]).
//!
//! Text is drawn with DejaVu Sans embedded in the binary (plotters' `ab_glyph` feature), so no
//! system font or font library is needed. Files are written next to their destination and
//! renamed into place: never a half-written figure.

use crate::outpath::ImageFormat;
use crate::profile_doc::ProfileDoc;
use anyhow::{anyhow, Context, Result};
use bnconv_nn::train::RunReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "sans-serif";

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; should it ever fail to load, text drawing
        // reports the error when the figure is drawn.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Colours per variant (and for fused / unfused bars).
const PALETTE: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const FUSED: RGBColor = RGBColor(31, 119, 180);
const UNFUSED: RGBColor = RGBColor(255, 127, 14);

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A temporary file for plotters to draw into (in the system temp directory, removed when
/// dropped), with the extension plotters picks the encoding by.
pub(crate) fn temp_image(format: ImageFormat) -> std::io::Result<tempfile::NamedTempFile> {
    let suffix = match format {
        ImageFormat::Png => ".png",
        ImageFormat::Svg => ".svg",
    };
    tempfile::Builder::new()
        .prefix("bnconv-plot-")
        .suffix(suffix)
        .tempfile()
}

macro_rules! with_backend {
    ($path:expr, $format:expr, $size:expr, |$root:ident| $body:expr) => {{
        register_fonts();
        let tmp = $crate::plot::temp_image($format)
            .with_context(|| format!("could not draw {}", $path.display()))?;
        let result: DrawResult<()> = match $format {
            ImageFormat::Png => {
                let $root = BitMapBackend::new(tmp.path(), $size).into_drawing_area();
                $body.and_then(|()| $root.present().map_err(|e| e.to_string().into()))
            }
            ImageFormat::Svg => {
                let $root = SVGBackend::new(tmp.path(), $size).into_drawing_area();
                $body.and_then(|()| $root.present().map_err(|e| e.to_string().into()))
            }
        };
        // Drawn aside, then written like every output (atomically; links followed; FIFOs and
        // devices in place).
        result
            .map_err(|e| anyhow!("{e}"))
            .and_then(|()| std::fs::read(tmp.path()).map_err(Into::into))
            .with_context(|| format!("could not draw {}", $path.display()))
            .and_then(|bytes| $crate::outpath::write_output($path, |w| w.write_all(&bytes)))
    }};
}

mod confusion;
mod sweep;

/// An x-axis label formatter for categories drawn at 0, 1, 2, ...: each whole number gets its
/// category's name, every other position nothing.
fn category_labels(names: Vec<String>) -> impl Fn(&f64) -> String {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    }
}

pub use confusion::confusion_heatmap;
pub use sweep::sweep_figure;

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
