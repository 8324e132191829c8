//! One labelled image set in memory, as the IDX files store it, and its batches as the network
//! reads them (f32 pixels, one-hot labels).

use std::ops::Range;

use bnconv_kernels::runtime::profile::Phase;
use bnconv_kernels::runtime::task_log::ForEachTask;
use rayon::prelude::*;

use super::DataError;

/// TF1 scales with `numpy.multiply(images, 1.0 / 255.0)` on `float32`, i.e. a multiply by the
/// rounded reciprocal, which differs from `p / 255.0` in the last bit for about half the values.
const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// A stored pixel byte as the network sees it: `p * (1/255)` in f32, exactly as TF1 scales.
pub fn pixel_value(p: u8) -> f32 {
    f32::from(p) * PIXEL_SCALE
}

/// [`pixel_value`] of every byte of `pixels` into `out` (same length).
///
/// # Panics
/// If the lengths differ.
pub fn pixels_to_f32(pixels: &[u8], out: &mut [f32]) {
    assert_eq!(pixels.len(), out.len(), "one f32 per pixel");
    for (dst, &p) in out.iter_mut().zip(pixels) {
        *dst = pixel_value(p);
    }
}

/// One labelled image set: 28x28 grey images as the IDX files store them (one byte per pixel,
/// row-major), and their labels 0-9. Batches are copied out as f32 in `[0, 1]`
/// ([`pixel_value`]), NHWC with H=W=28, C=1.
#[derive(Clone, Debug)]
pub struct Dataset {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Dataset {
    pub const ROWS: usize = 28;
    pub const COLS: usize = 28;
    pub const PIXELS: usize = Self::ROWS * Self::COLS;
    pub const CLASSES: usize = 10;

    /// Errors if lengths disagree (`pixels.len() != labels.len() * 784`) or a label is above 9,
    /// so that every later indexing and one-hot write is in bounds.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        const WHAT: &str = "Dataset::new";
        if labels.len().checked_mul(Self::PIXELS) != Some(pixels.len()) {
            return Err(DataError::BadDimensions {
                what: WHAT.into(),
                detail: format!(
                    "{} pixels for {} labels; each image needs {}",
                    pixels.len(),
                    labels.len(),
                    Self::PIXELS
                ),
            });
        }
        check_labels(&labels, WHAT)?;
        Ok(Self { pixels, labels })
    }

    /// Builds from raw IDX pixels that the caller has already matched to validated labels.
    pub(super) fn from_raw(pixels: Vec<u8>, labels: Vec<u8>) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * Self::PIXELS);
        Self { pixels, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Every image's pixel bytes, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The 784 pixel bytes of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * Self::PIXELS..(i + 1) * Self::PIXELS]
    }

    /// A contiguous sub-range as a new Dataset (copies) — used for the validation split.
    ///
    /// # Panics
    /// If `range` is not within `0..self.len()`.
    pub fn slice(&self, range: Range<usize>) -> Dataset {
        // Slicing the labels first bounds-checks `range`, so the pixel offsets cannot overflow.
        let labels = self.labels[range.clone()].to_vec();
        let pixels = self.pixels[range.start * Self::PIXELS..range.end * Self::PIXELS].to_vec();
        Dataset { pixels, labels }
    }

    /// Writes the images of `range` as f32 ([`pixel_value`]) into `x` (len `range.len() * 784`)
    /// and one-hot labels into `y` (len `range.len() * 10`).
    ///
    /// # Panics
    /// If `range` is out of bounds or `x` / `y` have the wrong length.
    pub fn copy_range(&self, range: Range<usize>, x: &mut [f32], y: &mut [f32]) {
        let labels = &self.labels[range.clone()];
        check_batch_buffers(labels.len(), x, y);
        pixels_to_f32(
            &self.pixels[range.start * Self::PIXELS..range.end * Self::PIXELS],
            x,
        );
        write_one_hot(labels.iter().copied(), y);
    }

    /// Same as [`Dataset::copy_range`] for an arbitrary list of indices (a shuffled batch).
    ///
    /// # Panics
    /// If an index is out of bounds or `x` / `y` have the wrong length.
    pub fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [f32]) {
        check_batch_buffers(indices.len(), x, y);
        // Images scattered over the set are read cold: [`GATHER_IMAGES`] at a time in parallel
        // (each pixel converted alone, so the split changes nothing).
        indices
            .par_chunks(GATHER_IMAGES)
            .zip(x.par_chunks_mut(GATHER_IMAGES * Self::PIXELS))
            .for_each_task(Phase::Data, |(indices, x)| {
                for (&i, dst) in indices.iter().zip(x.chunks_exact_mut(Self::PIXELS)) {
                    pixels_to_f32(self.image(i), dst);
                }
            });
        write_one_hot(indices.iter().map(|&i| self.labels[i]), y);
    }
}

/// Images per task of [`Dataset::gather`].
const GATHER_IMAGES: usize = 8;

/// Mismatched buffers are a caller bug; failing loudly beats training on a half-filled batch.
fn check_batch_buffers(batch: usize, x: &[f32], y: &[f32]) {
    assert_eq!(
        x.len(),
        batch * Dataset::PIXELS,
        "x must hold {batch} images"
    );
    assert_eq!(
        y.len(),
        batch * Dataset::CLASSES,
        "y must hold {batch} one-hot rows"
    );
}

/// Labels are validated to be `<= 9` on construction, so the write is always in bounds.
fn write_one_hot(labels: impl Iterator<Item = u8>, y: &mut [f32]) {
    y.fill(0.0);
    for (row, label) in y.chunks_exact_mut(Dataset::CLASSES).zip(labels) {
        row[usize::from(label)] = 1.0;
    }
}

pub(super) fn check_labels(labels: &[u8], what: &str) -> Result<(), DataError> {
    match labels
        .iter()
        .position(|&l| usize::from(l) >= Dataset::CLASSES)
    {
        Some(index) => Err(DataError::BadLabel {
            what: what.into(),
            index,
            label: labels[index],
        }),
        None => Ok(()),
    }
}
