//! Image files as the network's input: a PNG or PGM (any size, grayscale or colour) turned into
//! a 28x28 MNIST-style digit, white on black, pixels in [0, 1].
//!
//! A 28x28 image is taken as it is, so an MNIST image written to a file reads back exactly. Any
//! other size is fitted the way MNIST's digits were made: the digit's bounding box is scaled,
//! keeping its aspect ratio, into a 20x20 box (anti-aliased), which is then placed on a 28x28
//! black field with its centre of mass at the centre ([`Fit::Mnist`]); or, on request, the whole
//! image is stretched to 28x28 ([`Fit::Stretch`]).

use anyhow::{bail, Context, Result};
use bnconv_nn::mnist::{pixel_value, Dataset};
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use std::path::Path;

const SIDE: u32 = 28;
/// The box MNIST scaled each digit into.
const BOX: u32 = 20;
/// A pixel at least this bright belongs to the digit when finding its bounding box.
const INK: u8 = 32;

/// How an image of another size becomes 28x28.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fit {
    /// The digit's bounding box into 20x20, centred by its centre of mass (as MNIST).
    Mnist,
    /// The whole image resized to 28x28, aspect ratio not kept.
    Stretch,
}

impl Fit {
    pub fn name(self) -> &'static str {
        match self {
            Fit::Mnist => "mnist",
            Fit::Stretch => "stretch",
        }
    }
}

/// One image ready for the network, and what was done to it.
#[derive(Debug)]
pub struct DigitImage {
    /// 784 values in [0, 1], row-major, white digit on black.
    pub pixels: Vec<f32>,
    pub width: u32,
    pub height: u32,
    /// The mean brightness of the border after conversion (and inversion): high values suggest
    /// a dark digit on a light background, the opposite of MNIST.
    pub border_mean: f32,
}

/// Reads `path` (PNG or PGM, detected from the contents) and converts it. `invert` turns dark on
/// light into light on dark; transparent pixels count as background either way.
pub fn load(path: &Path, invert: bool, fit: Fit) -> Result<DigitImage> {
    let decoded = image::io::Reader::open(path)
        .context("cannot open it")?
        .with_guessed_format()
        .context("cannot read it")?
        .decode()
        // The decoder's message already includes its cause: no error chain, or it repeats.
        .map_err(|e| anyhow::anyhow!("not a PNG or PGM image this reader can decode ({e})"))?;
    let gray = flatten(&decoded.to_luma_alpha8(), invert);
    convert(&gray, fit)
}

/// Composites luma + alpha over the background (black; white when inverting, before the
/// inversion), so that the digit ends up light on a black background.
fn flatten(image: &image::GrayAlphaImage, invert: bool) -> GrayImage {
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        let [v, a] = image.get_pixel(x, y).0;
        let paper = if invert { 255 } else { 0 };
        let (v, a, paper) = (u32::from(v), u32::from(a), paper as u32);
        let over = (v * a + paper * (255 - a) + 127) / 255;
        let over = over as u8;
        Luma([if invert { 255 - over } else { over }])
    })
}

/// A white-on-black grayscale image as the network's 28x28 input.
pub fn convert(gray: &GrayImage, fit: Fit) -> Result<DigitImage> {
    let (width, height) = gray.dimensions();
    if width == 0 || height == 0 {
        bail!("the image is empty ({width}x{height})");
    }
    let field = if (width, height) == (SIDE, SIDE) {
        gray.clone()
    } else {
        match fit {
            Fit::Stretch => imageops::resize(gray, SIDE, SIDE, FilterType::Triangle),
            Fit::Mnist => mnist_fit(gray)?,
        }
    };
    debug_assert_eq!(field.len(), Dataset::PIXELS);
    Ok(DigitImage {
        pixels: field.pixels().map(|p| pixel_value(p.0[0])).collect(),
        width,
        height,
        border_mean: border_mean(gray),
    })
}

/// The digit's bounding box scaled into 20x20 (aspect kept, anti-aliased) and placed on a 28x28
/// black field with its centre of mass at the field's centre.
fn mnist_fit(gray: &GrayImage) -> Result<GrayImage> {
    let Some((x0, y0, x1, y1)) = ink_bounds(gray) else {
        bail!(
            "no digit found: no pixel is brighter than {INK}/255 (digits are white on black; \
             use --invert for dark digits on a light background)"
        );
    };
    let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = imageops::crop_imm(gray, x0, y0, w, h).to_image();
    let scale = BOX as f64 / w.max(h) as f64;
    let (sw, sh) = (
        ((w as f64 * scale).round() as u32).clamp(1, BOX),
        ((h as f64 * scale).round() as u32).clamp(1, BOX),
    );
    let digit = imageops::resize(&crop, sw, sh, FilterType::Triangle);
    let (cx, cy) = centre_of_mass(&digit).unwrap_or((sw as f64 / 2.0, sh as f64 / 2.0));
    // Offsets that put the centre of mass on the field's centre (14, 14), in pixel units.
    let centre = SIDE as f64 / 2.0;
    let (dx, dy) = ((centre - cx).round() as i64, (centre - cy).round() as i64);
    let mut field = GrayImage::new(SIDE, SIDE);
    imageops::overlay(&mut field, &digit, dx, dy);
    Ok(field)
}

/// The smallest box holding every pixel of at least [`INK`], as inclusive corners.
fn ink_bounds(gray: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in gray.enumerate_pixels() {
        if p.0[0] >= INK {
            bounds = Some(match bounds {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    bounds
}

/// The brightness-weighted mean position of the pixel centres (`x + 0.5`, `y + 0.5`), or `None`
/// for a black image.
fn centre_of_mass(gray: &GrayImage) -> Option<(f64, f64)> {
    let (mut sum, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (x, y, p) in gray.enumerate_pixels() {
        let v = f64::from(p.0[0]);
        sum += v;
        sx += v * (x as f64 + 0.5);
        sy += v * (y as f64 + 0.5);
    }
    (sum > 0.0).then(|| (sx / sum, sy / sum))
}

/// Mean brightness of the outermost rows and columns, in [0, 1].
fn border_mean(gray: &GrayImage) -> f32 {
    let (w, h) = gray.dimensions();
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y, p) in gray.enumerate_pixels() {
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            sum += u64::from(p.0[0]);
            n += 1;
        }
    }
    sum as f32 / (255.0 * n.max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w x h` black image with a white `rw x rh` rectangle at (`x`, `y`).
    fn rectangle(w: u32, h: u32, x: u32, y: u32, rw: u32, rh: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |px, py| {
            let inside = (x..x + rw).contains(&px) && (y..y + rh).contains(&py);
            Luma([if inside { 255 } else { 0 }])
        })
    }

    fn lit(image: &DigitImage) -> Vec<(usize, usize)> {
        (0..784)
            .filter(|&i| image.pixels[i] > 0.5)
            .map(|i| (i % 28, i / 28))
            .collect()
    }

    #[test]
    fn a_28x28_image_is_taken_pixel_for_pixel() {
        let gray = GrayImage::from_fn(28, 28, |x, y| Luma([((x * 7 + y * 3) % 256) as u8]));
        let out = convert(&gray, Fit::Mnist).unwrap();
        for (i, p) in gray.pixels().enumerate() {
            assert_eq!(out.pixels[i].to_bits(), pixel_value(p.0[0]).to_bits());
        }
    }

    #[test]
    fn mnist_fit_scales_the_digit_into_20x20_and_centres_its_mass() {
        // A 10x40 bar off to the side of a 100x100 image becomes a 5x20 bar in the middle.
        let out = convert(&rectangle(100, 100, 70, 5, 10, 40), Fit::Mnist).unwrap();
        let on = lit(&out);
        let xs: Vec<usize> = on.iter().map(|p| p.0).collect();
        let ys: Vec<usize> = on.iter().map(|p| p.1).collect();
        let (w, h) = (
            xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1,
            ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1,
        );
        assert!((4..=6).contains(&w) && (19..=20).contains(&h), "{w}x{h}");
        let cx = xs.iter().sum::<usize>() as f64 / xs.len() as f64 + 0.5;
        let cy = ys.iter().sum::<usize>() as f64 / ys.len() as f64 + 0.5;
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "({cx}, {cy})"
        );
        assert_eq!(out.border_mean, {
            let b = rectangle(100, 100, 70, 5, 10, 40);
            border_mean(&b)
        });
    }

    #[test]
    fn stretch_resizes_the_whole_image() {
        // The right half white: after stretching, the right half of the field is white.
        let out = convert(&rectangle(56, 20, 28, 0, 28, 20), Fit::Stretch).unwrap();
        assert!(out.pixels[14 * 28 + 20] > 0.9 && out.pixels[14 * 28 + 5] < 0.1);
    }

    #[test]
    fn a_black_image_has_no_digit_and_the_error_suggests_invert() {
        let err = convert(&GrayImage::new(40, 40), Fit::Mnist)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no digit") && err.contains("--invert"),
            "{err}"
        );
    }

    #[test]
    fn inversion_and_transparency_give_a_light_digit_on_black() {
        // Dark ink on white paper, and dark ink on transparent: inverted, both are white on black.
        let paper = image::GrayAlphaImage::from_fn(4, 1, |x, _| {
            image::LumaA(if x == 1 { [0, 255] } else { [255, 255] })
        });
        let clear = image::GrayAlphaImage::from_fn(4, 1, |x, _| {
            image::LumaA(if x == 1 { [0, 255] } else { [0, 0] })
        });
        for img in [paper, clear] {
            let flat = flatten(&img, true);
            assert_eq!(flat.as_raw(), &[0, 255, 0, 0]);
        }
        let white_on_clear = image::GrayAlphaImage::from_fn(2, 1, |x, _| {
            image::LumaA(if x == 0 { [255, 255] } else { [255, 0] })
        });
        assert_eq!(flatten(&white_on_clear, false).as_raw(), &[255, 0]);
    }
}
