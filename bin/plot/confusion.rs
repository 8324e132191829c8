//! `eval --plot`: the confusion matrix as a heat map, each cell shaded by its share of the true
//! class's images and labelled with its count.

use super::{register_fonts, DrawResult, FONT};
use crate::outpath::ImageFormat;
use anyhow::{anyhow, Context, Result};
use bnconv_nn::confusion::ConfusionMatrix;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Pixels of one cell, and of the margins left of and above the grid (labels).
const CELL: i32 = 72;
const LEFT: i32 = 110;
const TOP: i32 = 120;

/// Draws `matrix` (rows: true class, top to bottom; columns: predicted class) under `title`.
pub fn confusion_heatmap(
    path: &Path,
    format: ImageFormat,
    matrix: &ConfusionMatrix,
    title: &str,
) -> Result<()> {
    let side = (LEFT + CELL * matrix.classes() as i32 + 40) as u32;
    let height = (TOP + CELL * matrix.classes() as i32 + 40) as u32;
    with_backend!(path, format, (side, height), |root| draw(
        &root, matrix, title
    ))
}

/// White for an empty share, deepening to dark blue for a whole row.
fn shade(share: f64) -> RGBColor {
    // The square root lifts small shares (a few errors in a thousand) into view.
    let t = share.clamp(0.0, 1.0).sqrt();
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &ConfusionMatrix,
    title: &str,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let n = m.classes() as i32;
    let centre = Pos::new(HPos::Center, VPos::Center);
    let centred = |size: u32| TextStyle::from((FONT, size).into_font()).pos(centre);
    root.draw(&Text::new(
        title.to_string(),
        (LEFT + n * CELL / 2, 24),
        TextStyle::from((FONT, 20).into_font().style(FontStyle::Bold)).pos(centre),
    ))?;
    root.draw(&Text::new(
        "predicted class",
        (LEFT + n * CELL / 2, TOP - 62),
        centred(18),
    ))?;
    root.draw(&Text::new(
        "true class",
        (28, TOP + n * CELL / 2),
        centred(18).transform(FontTransform::Rotate270),
    ))?;
    for k in 0..n {
        let middle = k * CELL + CELL / 2;
        root.draw(&Text::new(
            k.to_string(),
            (LEFT + middle, TOP - 22),
            centred(18),
        ))?;
        root.draw(&Text::new(
            k.to_string(),
            (LEFT - 28, TOP + middle),
            centred(18),
        ))?;
    }
    for t in 0..m.classes() {
        let total: u64 = m.row(t).iter().sum();
        for (p, &count) in m.row(t).iter().enumerate() {
            let share = count as f64 / total.max(1) as f64;
            let (x, y) = (LEFT + p as i32 * CELL, TOP + t as i32 * CELL);
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                shade(share).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                BLACK.mix(0.15),
            ))?;
            let ink = if share.sqrt() > 0.55 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x + CELL / 2, y + CELL / 2),
                centred(17).color(&ink),
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shades_run_from_white_to_dark_blue() {
        assert_eq!(shade(0.0), RGBColor(255, 255, 255));
        assert_eq!(shade(1.0), RGBColor(8, 48, 107));
        assert!(shade(0.01).0 < 255, "a 1% share is visibly tinted");
    }
}
