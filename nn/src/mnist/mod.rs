//! MNIST as TF1's `input_data.read_data_sets(one_hot=True, reshape=False)` delivers it.
//!
//! The first 5000 training images are the validation set and the other 55000 the training set;
//! pixels are `u8 * (1/255)` in `f32` exactly as TF1 computes them, and labels become one-hot rows.
//! A run here therefore sees the same examples, split the same way, as the TF1 reference it is
//! compared with. Images stay in memory as the bytes the files hold (55 MB for all 70000, a
//! quarter of the f32 pixels); a batch is converted to f32 when it is copied out.
//!
//! Everything read from disk is untrusted: checksums are verified before parsing, header sizes are
//! checked against the real byte count before anything is allocated, and every failure is a
//! [`DataError`] that names the file.
//!
//! This module loads the four files and splits the sets ([`Mnist`]); beside it, `dataset.rs`
//! holds one labelled set in memory with its batches copied out as f32 ([`Dataset`]), `idx.rs`
//! the IDX file format, `file.rs` reading a file (gunzipped when its content is gzip),
//! `checksums.rs` the `SHA256SUMS` list and each file's check against it, and `error.rs` every
//! way loading can fail ([`DataError`]).

mod checksums;
mod dataset;
mod error;
mod file;
mod idx;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use checksums::{read_checksums, verify_checksum, ChecksumEntry};
pub use dataset::{pixel_value, pixels_to_f32, Dataset};
pub use error::DataError;
use file::read_file;
pub use file::{decompress, read_maybe_gzipped};
use idx::decode_raw_pair;
pub use idx::{decode_idx_pair, parse_idx_images, parse_idx_labels};

/// The published file names; each may also be stored gzipped as `NAME.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The protocol's three sets: the first 5000 training images are validation, the other 55000
/// training; test = t10k.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Dataset,
    pub validation: Dataset,
    pub test: Dataset,
}

impl Mnist {
    pub const VALIDATION_SIZE: usize = 5000;

    /// Loads the four files from `dir`. Each may be gzipped (detected by the gzip magic bytes, not
    /// the name) or raw; `NAME.gz` is looked for first, then `NAME`.
    ///
    /// If `dir/SHA256SUMS` exists, each file about to be loaded that it lists is checked against it
    /// before anything is parsed; files it does not list are not checked.
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(DataError::Missing {
                    path: dir.into(),
                    detail: "is not a directory (expected the MNIST directory)",
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DataError::Missing {
                    path: dir.into(),
                    detail: "MNIST directory does not exist",
                })
            }
            Err(source) => {
                return Err(DataError::Io {
                    path: dir.into(),
                    source,
                })
            }
        }
        let sums = read_checksums(dir)?;
        // Verify all four first: a bad download then reports as a checksum mismatch rather than
        // as whatever parse error its corruption happens to cause.
        let train_images = RawFile::read_verified(dir, TRAIN_IMAGES, &sums)?;
        let train_labels = RawFile::read_verified(dir, TRAIN_LABELS, &sums)?;
        let test_images = RawFile::read_verified(dir, TEST_IMAGES, &sums)?;
        let test_labels = RawFile::read_verified(dir, TEST_LABELS, &sums)?;

        let train_what = train_images.what();
        // The two pairs decode at once (the training images alone take most of the time); a
        // failure of the training pair is reported first, as when they decoded in turn.
        let (train_pair, test_pair) = std::thread::scope(|s| {
            let test = s.spawn(|| parse_pair(test_images, test_labels));
            let train = parse_pair(train_images, train_labels);
            (train, test.join())
        });
        let (mut train_pixels, mut train_labels) = train_pair?;
        let count = train_labels.len();
        if count <= Self::VALIDATION_SIZE {
            return Err(DataError::TooFewTraining {
                what: train_what,
                count,
            });
        }
        // The validation images are copied out; the training images stay in the decoded buffer
        // (moved to its front), so the set is never held twice.
        let split = Self::VALIDATION_SIZE * Dataset::PIXELS;
        let validation = Dataset::from_raw(
            train_pixels[..split].to_vec(),
            train_labels[..Self::VALIDATION_SIZE].to_vec(),
        );
        train_pixels.drain(..split);
        train_pixels.shrink_to_fit();
        train_labels.drain(..Self::VALIDATION_SIZE);
        let train = Dataset::from_raw(train_pixels, train_labels);

        let (test_pixels, test_labels) =
            test_pair.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let test = Dataset::from_raw(test_pixels, test_labels);
        Ok(Mnist {
            train,
            validation,
            test,
        })
    }
}

/// A file's bytes exactly as stored, so the checksum covers what `SHA256SUMS` describes.
struct RawFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl RawFile {
    fn read_verified(dir: &Path, name: &str, sums: &[ChecksumEntry]) -> Result<Self, DataError> {
        let gz = dir.join(format!("{name}.gz"));
        let raw = dir.join(name);
        let path = if gz.is_file() {
            gz
        } else if raw.is_file() {
            raw
        } else {
            return Err(DataError::Missing {
                path: raw,
                detail: "neither this file nor its .gz exists",
            });
        };
        let bytes = read_file(&path)?;
        verify_checksum(&path, &bytes, sums)?;
        Ok(Self { path, bytes })
    }

    fn what(&self) -> String {
        self.path.display().to_string()
    }
}

/// Parses an images/labels pair into raw pixels and labels, checking their counts agree.
fn parse_pair(images: RawFile, labels: RawFile) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    decode_raw_pair(images.bytes, &images.path, labels.bytes, &labels.path)
}
