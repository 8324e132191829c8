//! Figures, as PNG or SVG (by the file extension): the training curves of `compare --plot`, the
//! per-layer bars of `profile --plot` (one file each: `curves.rs`, `profile.rs`), the confusion
//! heat map of `eval --plot` (`confusion.rs`) and the runs of `sweep --plot` (`sweep.rs`). This
//! module holds what they share: fonts, colours, drawing aside and writing the file.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (plotters' `ab_glyph` feature), so no
//! system font or font library is needed. Files are written next to their destination and
//! renamed into place: never a half-written figure.

use crate::outpath::ImageFormat;
use plotters::prelude::*;
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
mod curves;
mod profile;
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
pub use curves::curves;
pub use profile::profile_bars;
pub use sweep::sweep_figure;
