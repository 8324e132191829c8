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

use std::fs;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// The published file names; each may also be stored gzipped as `NAME.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const CHECKSUMS: &str = "SHA256SUMS";

/// IDX magic numbers: two zero bytes, element type 0x08 (unsigned byte), number of dimensions.
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// MNIST's largest file is 47 MB decompressed; a stream inflating past this is a gzip bomb.
const MAX_DECOMPRESSED: u64 = 1 << 30;

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

/// Why MNIST could not be loaded; every variant names the file (or in-memory source) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A required directory or file does not exist; `detail` says which kind and what was tried.
    #[error("{}: {detail}", path.display())]
    Missing { path: PathBuf, detail: &'static str },
    /// The cause is the error's `source()` (printed by `{:#}` chains), not repeated here.
    #[error("{}: could not read", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: corrupt or truncated gzip data", path.display())]
    Gzip { path: PathBuf, source: io::Error },
    #[error(
        "{}: SHA-256 mismatch: {CHECKSUMS} expects {expected}, file has {actual}",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A line of `SHA256SUMS` that is not `<64 hex digits>  <file name>`.
    #[error("{}:{line}: {detail}", path.display())]
    BadChecksumList {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error(
        "{what}: bad magic 0x{found:08x}, an IDX {} file starts with 0x{expected:08x}",
        idx_kind(*expected)
    )]
    BadMagic {
        what: String,
        expected: u32,
        found: u32,
    },
    #[error("{what}: {detail}")]
    BadDimensions { what: String, detail: String },
    /// Fewer bytes than the IDX header (or the body the header declares) needs.
    #[error("{what}: truncated: {detail}")]
    Truncated { what: String, detail: String },
    #[error("{what}: label {label} at index {index} is not a digit 0-9")]
    BadLabel {
        what: String,
        index: usize,
        label: u8,
    },
    #[error("{images_what} holds {images} images but {labels_what} holds {labels} labels")]
    CountMismatch {
        images_what: String,
        images: usize,
        labels_what: String,
        labels: usize,
    },
    #[error("{what}: empty (no bytes, or a header that declares zero items)")]
    Empty { what: String },
    #[error(
        "{what}: only {count} training images, but the first {} are held out for validation \
         and at least one must remain for training",
        Mnist::VALIDATION_SIZE
    )]
    TooFewTraining { what: String, count: usize },
}

/// Names the file kind a magic number belongs to, for error messages.
fn idx_kind(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "images",
        LABELS_MAGIC => "labels",
        _ => "unknown",
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
    fn from_raw(pixels: Vec<u8>, labels: Vec<u8>) -> Self {
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
        for (&i, dst) in indices.iter().zip(x.chunks_exact_mut(Self::PIXELS)) {
            pixels_to_f32(self.image(i), dst);
        }
        write_one_hot(indices.iter().map(|&i| self.labels[i]), y);
    }
}

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

fn check_labels(labels: &[u8], what: &str) -> Result<(), DataError> {
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
        let (mut train_pixels, mut train_labels) = parse_pair(train_images, train_labels)?;
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

        let (test_pixels, test_labels) = parse_pair(test_images, test_labels)?;
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

/// Decodes an images file and a labels file from their bytes exactly as [`Mnist::load`] does once
/// the checksums have passed: each is gunzipped if it starts with the gzip magic, parsed with
/// [`parse_idx_images`] / [`parse_idx_labels`], and the two counts must agree. The paths only name
/// the sources in errors; nothing is read from disk. The byte-level entry point for fuzzing.
pub fn decode_idx_pair(
    images: Vec<u8>,
    images_path: &Path,
    labels: Vec<u8>,
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let (pixels, labels) = decode_raw_pair(images, images_path, labels, labels_path)?;
    Ok(Dataset::from_raw(pixels, labels))
}

/// Gunzips `bytes` if they start with the gzip magic, else returns them unchanged; `path` names the
/// source in errors. (What [`read_maybe_gzipped`] does after reading the file.)
pub fn decompress(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    gunzip_if_gzipped(bytes, path)
}

fn decode_raw_pair(
    images: Vec<u8>,
    images_path: &Path,
    labels: Vec<u8>,
    labels_path: &Path,
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let images_what = images_path.display().to_string();
    let (count, pixels) =
        idx_images_in_place(gunzip_if_gzipped(images, images_path)?, &images_what)?;
    let labels_what = labels_path.display().to_string();
    let labels_vec = parse_idx_labels(&gunzip_if_gzipped(labels, labels_path)?, &labels_what)?;
    if count != labels_vec.len() {
        return Err(DataError::CountMismatch {
            images_what,
            images: count,
            labels_what,
            labels: labels_vec.len(),
        });
    }
    Ok((pixels, labels_vec))
}

/// Parses IDX image bytes (already decompressed). `what` names the source in errors.
///
/// Returns `(count, raw pixels)`; requires magic `0x00000803` and 28x28 images, and a body of
/// exactly `count * 784` bytes (truncated or trailing data are both errors).
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<(usize, Vec<u8>), DataError> {
    let (count, start) = check_idx_images(bytes, what)?;
    Ok((count, bytes[start..].to_vec()))
}

/// [`parse_idx_images`] that reuses the file's buffer for the pixels (the header is removed from
/// its front) instead of copying them.
fn idx_images_in_place(mut bytes: Vec<u8>, what: &str) -> Result<(usize, Vec<u8>), DataError> {
    let (count, start) = check_idx_images(&bytes, what)?;
    bytes.drain(..start);
    Ok((count, bytes))
}

/// Checks IDX image bytes; returns the image count and where the pixels start.
fn check_idx_images(bytes: &[u8], what: &str) -> Result<(usize, usize), DataError> {
    let ([count, rows, cols], body) = parse_idx_header(bytes, what, IMAGES_MAGIC)?;
    if rows != Dataset::ROWS || cols != Dataset::COLS {
        return Err(DataError::BadDimensions {
            what: what.into(),
            detail: format!(
                "images are {rows}x{cols}, expected {}x{}",
                Dataset::ROWS,
                Dataset::COLS
            ),
        });
    }
    let body = check_body(body, count, Dataset::PIXELS, "images", what)?;
    Ok((count, bytes.len() - body.len()))
}

/// Parses IDX label bytes (already decompressed): magic `0x00000801`, every label `<= 9`.
pub fn parse_idx_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    let ([count], body) = parse_idx_header(bytes, what, LABELS_MAGIC)?;
    let body = check_body(body, count, 1, "labels", what)?;
    check_labels(body, what)?;
    Ok(body.to_vec())
}

/// Reads the magic and `N` big-endian dimension words; returns the dimensions and the body.
fn parse_idx_header<'a, const N: usize>(
    bytes: &'a [u8],
    what: &str,
    magic: u32,
) -> Result<([usize; N], &'a [u8]), DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty { what: what.into() });
    }
    let header_len = 4 * (N + 1);
    let truncated = || DataError::Truncated {
        what: what.into(),
        detail: format!("{} bytes, the IDX header needs {header_len}", bytes.len()),
    };
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(truncated)
    };
    let found = word(0)?;
    if found != magic {
        return Err(DataError::BadMagic {
            what: what.into(),
            expected: magic,
            found,
        });
    }
    let mut dims = [0; N];
    for (i, dim) in dims.iter_mut().enumerate() {
        let value = word(i + 1)?;
        *dim = usize::try_from(value).map_err(|_| DataError::BadDimensions {
            what: what.into(),
            detail: format!("dimension {value} does not fit in memory on this platform"),
        })?;
    }
    let body = bytes.get(header_len..).ok_or_else(truncated)?;
    Ok((dims, body))
}

/// Checks the header's claimed size against the bytes actually present, before any allocation.
fn check_body<'a>(
    body: &'a [u8],
    count: usize,
    item_len: usize,
    noun: &str,
    what: &str,
) -> Result<&'a [u8], DataError> {
    if count == 0 {
        return Err(DataError::Empty { what: what.into() });
    }
    let bad = |detail| DataError::BadDimensions {
        what: what.into(),
        detail,
    };
    let expected = count
        .checked_mul(item_len)
        .ok_or_else(|| bad(format!("header claims {count} {noun}, too many to address")))?;
    match body.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(DataError::Truncated {
            what: what.into(),
            detail: format!(
                "header claims {count} {noun} ({expected} bytes) but only {} bytes follow",
                body.len()
            ),
        }),
        std::cmp::Ordering::Greater => Err(bad(format!(
            "{} trailing bytes after the {count} {noun} the header declares",
            body.len() - expected
        ))),
        std::cmp::Ordering::Equal => Ok(body),
    }
}

/// Reads a file, transparently gunzipping when it starts with the gzip magic. Errors name the
/// path.
pub fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    gunzip_if_gzipped(read_file(path)?, path)
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.into(),
                detail: "file does not exist",
            }
        } else {
            DataError::Io {
                path: path.into(),
                source,
            }
        }
    })
}

/// Decides by content, not name, so a `.gz` that was unpacked in place (or vice versa) still loads.
fn gunzip_if_gzipped(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let gzip_error = |source| DataError::Gzip {
        path: path.into(),
        source,
    };
    let mut out = Vec::new();
    // MultiGzDecoder reads concatenated members (as `gzip -d` does) and fails with
    // `UnexpectedEof` on a truncated stream instead of returning short data.
    MultiGzDecoder::new(bytes.as_slice())
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(gzip_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
        )));
    }
    Ok(out)
}

/// One `SHA256SUMS` entry; the digest is stored lower-case.
struct ChecksumEntry {
    name: String,
    sha256: String,
}

/// An absent `SHA256SUMS` means "nothing to check", so it yields an empty list.
fn read_checksums(dir: &Path) -> Result<Vec<ChecksumEntry>, DataError> {
    let path = dir.join(CHECKSUMS);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DataError::Io { path, source }),
    };
    let mut sums = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |detail: &str| DataError::BadChecksumList {
            path: path.clone(),
            line: i + 1,
            detail: format!("{detail}; expected `<sha256 hex>  <file name>`"),
        };
        let (hex, rest) = line.split_once(' ').ok_or_else(|| bad("no file name"))?;
        // sha256sum writes "  name" in text mode and " *name" in binary mode.
        let name = rest
            .strip_prefix([' ', '*'])
            .filter(|name| !name.is_empty())
            .ok_or_else(|| bad("no file name"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not 64 hex digits"));
        }
        sums.push(ChecksumEntry {
            name: name.to_owned(),
            sha256: hex.to_ascii_lowercase(),
        });
    }
    Ok(sums)
}

fn verify_checksum(path: &Path, bytes: &[u8], sums: &[ChecksumEntry]) -> Result<(), DataError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let mut actual = None;
    for sum in sums.iter().filter(|sum| sum.name == name) {
        let actual = actual.get_or_insert_with(|| {
            Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        if *actual != sum.sha256 {
            return Err(DataError::Checksum {
                path: path.into(),
                expected: sum.sha256.clone(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist");
    const NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

    /// The real data set, loaded once for all tests that need it.
    fn real() -> &'static Mnist {
        static REAL: OnceLock<Mnist> = OnceLock::new();
        REAL.get_or_init(|| Mnist::load(Path::new(DATA)).expect("load data/mnist"))
    }

    /// A unique directory under the system temp dir, removed on drop (even when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("bnconv-nn-mnist-{}-{tag}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, bytes).expect("write temp file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn idx_images(count: usize, rows: u32, cols: u32) -> Vec<u8> {
        let mut bytes = [IMAGES_MAGIC, count as u32, rows, cols]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        let pixels = count * rows as usize * cols as usize;
        bytes.extend((0..pixels).map(|i| (i % 251) as u8));
        bytes
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut bytes = [LABELS_MAGIC, labels.len() as u32]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        bytes.extend_from_slice(labels);
        bytes
    }

    fn digits(count: usize) -> Vec<u8> {
        (0..count).map(|i| (i % 10) as u8).collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A small but valid MNIST directory: 5001 training images (one left after validation).
    fn synthetic(tag: &str, train: usize, train_labels: usize, test: usize) -> TempDir {
        let dir = TempDir::new(tag);
        dir.write(TRAIN_IMAGES, &idx_images(train, 28, 28));
        dir.write(TRAIN_LABELS, &idx_labels(&digits(train_labels)));
        dir.write(TEST_IMAGES, &idx_images(test, 28, 28));
        dir.write(TEST_LABELS, &idx_labels(&digits(test)));
        dir
    }

    fn load_err(dir: &Path) -> DataError {
        Mnist::load(dir).expect_err("load should fail")
    }

    #[test]
    fn loads_real_mnist_like_tf1() {
        let m = real();
        assert_eq!(m.train.len(), 55_000);
        assert_eq!(m.validation.len(), 5_000);
        assert_eq!(m.test.len(), 10_000);
        for set in [&m.train, &m.validation, &m.test] {
            assert_eq!(set.pixels().len(), set.len() * Dataset::PIXELS);
            assert!(set.pixels().contains(&255) && set.pixels().contains(&0));
        }
        // Index 0 of the raw training file is validation[0]; index 5000 is train[0].
        assert_eq!(m.validation.labels()[0], 5);
        assert_eq!(m.test.labels()[0], 7);

        let raw_path = Path::new(DATA).join(format!("{TRAIN_LABELS}.gz"));
        let raw = read_maybe_gzipped(&raw_path).expect("read labels");
        let raw = parse_idx_labels(&raw, "train labels").expect("parse labels");
        assert_eq!(m.validation.labels(), &raw[..5000]);
        assert_eq!(m.train.labels(), &raw[5000..]);

        let raw_path = Path::new(DATA).join(format!("{TRAIN_IMAGES}.gz"));
        let raw = read_maybe_gzipped(&raw_path).expect("read images");
        let (count, pixels) = parse_idx_images(&raw, "train images").expect("parse images");
        assert_eq!(count, 60_000);
        assert_eq!(m.validation.pixels(), &pixels[..5000 * 784]);
        assert_eq!(m.train.pixels(), &pixels[5000 * 784..]);
        // A copied-out batch is TF1's `float32(p) * float32(1/255)`: 1.0 exactly for 255, and
        // the rounded reciprocal's product (not `p / 255`) elsewhere.
        let mut x = vec![f32::NAN; 784];
        let mut y = vec![0.0; 10];
        m.train.copy_range(0..1, &mut x, &mut y);
        for (&p, &x) in m.train.image(0).iter().zip(&x) {
            assert_eq!(x.to_bits(), (f32::from(p) * (1.0f32 / 255.0)).to_bits());
        }
        assert_eq!(pixel_value(255), 1.0);
        assert_eq!(pixel_value(0), 0.0);
        assert_ne!(
            pixel_value(3),
            3.0 / 255.0,
            "TF1 multiplies by the reciprocal"
        );
    }

    #[test]
    fn raw_files_load_identically_to_gzipped() {
        let dir = TempDir::new("raw");
        let mut sums = String::new();
        for name in NAMES {
            let raw = read_maybe_gzipped(&Path::new(DATA).join(format!("{name}.gz")))
                .expect("read real file");
            assert!(!raw.starts_with(&GZIP_MAGIC));
            dir.write(name, &raw);
            sums += &format!("{}  {name}\n", sha256_hex(&raw));
        }
        // Listed but absent files are skipped; the present ones verify.
        sums += &format!("{}  not-here.gz\n", "0".repeat(64));
        dir.write(CHECKSUMS, sums.as_bytes());

        let raw = Mnist::load(&dir.0).expect("load raw files");
        let gz = real();
        for (a, b) in [
            (&raw.train, &gz.train),
            (&raw.validation, &gz.validation),
            (&raw.test, &gz.test),
        ] {
            assert_eq!(a.labels(), b.labels());
            assert!(a.pixels() == b.pixels());
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = synthetic("magic", 5001, 5001, 3);
        // Gzipped data under the plain name, plain data under the .gz name.
        let labels = fs::read(dir.0.join(TRAIN_LABELS)).expect("read");
        dir.write(TRAIN_LABELS, &gzip(&labels));
        let images = fs::read(dir.0.join(TEST_IMAGES)).expect("read");
        fs::remove_file(dir.0.join(TEST_IMAGES)).expect("remove");
        dir.write(&format!("{TEST_IMAGES}.gz"), &images);

        let m = Mnist::load(&dir.0).expect("load");
        assert_eq!(
            (m.train.len(), m.validation.len(), m.test.len()),
            (1, 5000, 3)
        );
        assert_eq!(m.train.labels(), &[0]);
        assert_eq!(m.test.labels(), &[0, 1, 2]);
        assert_eq!(m.test.image(1)[0], (784 % 251) as u8);
    }

    #[test]
    fn gz_is_preferred_over_raw() {
        let dir = synthetic("prefer", 5001, 5001, 3);
        dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels(&[9, 9, 9])));
        let m = Mnist::load(&dir.0).expect("load");
        assert_eq!(m.test.labels(), &[9, 9, 9]);
    }

    #[test]
    fn idx_header_errors() {
        let what = "crafted.idx";
        let check = |err: DataError, expect: &str| {
            let msg = err.to_string();
            assert!(msg.contains(what), "{msg:?} does not name the source");
            assert!(msg.contains(expect), "{msg:?} does not mention {expect:?}");
            err
        };

        let mut bad_magic = idx_images(1, 28, 28);
        bad_magic[3] = 0x01;
        let err = parse_idx_images(&bad_magic, what).expect_err("bad magic");
        let err = check(err, "0x00000801");
        assert!(matches!(
            err,
            DataError::BadMagic {
                expected: 0x803,
                found: 0x801,
                ..
            }
        ));
        let err = parse_idx_labels(&idx_images(1, 28, 28), what).expect_err("images as labels");
        assert!(matches!(check(err, "magic"), DataError::BadMagic { .. }));

        let err = parse_idx_images(&idx_images(2, 27, 28), what).expect_err("rows 27");
        assert!(matches!(
            check(err, "27x28"),
            DataError::BadDimensions { .. }
        ));
        let err = parse_idx_images(&idx_images(2, 28, 27), what).expect_err("cols 27");
        assert!(matches!(
            check(err, "28x27"),
            DataError::BadDimensions { .. }
        ));

        let full = idx_images(3, 28, 28);
        let err = parse_idx_images(&full[..full.len() - 1], what).expect_err("truncated");
        assert!(matches!(
            check(err, "truncated"),
            DataError::Truncated { .. }
        ));
        let err = parse_idx_images(&full[..10], what).expect_err("truncated header");
        assert!(matches!(check(err, "header"), DataError::Truncated { .. }));
        let mut trailing = full.clone();
        trailing.push(0);
        let err = parse_idx_images(&trailing, what).expect_err("trailing");
        assert!(matches!(
            check(err, "1 trailing"),
            DataError::BadDimensions { .. }
        ));

        let labels = idx_labels(&[1, 2, 3]);
        let err = parse_idx_labels(&labels[..labels.len() - 2], what).expect_err("truncated");
        assert!(matches!(
            check(err, "truncated"),
            DataError::Truncated { .. }
        ));
        let err = parse_idx_labels(&[labels.as_slice(), &[4]].concat(), what).expect_err("trail");
        assert!(matches!(
            check(err, "trailing"),
            DataError::BadDimensions { .. }
        ));

        let err = parse_idx_labels(&idx_labels(&[0, 9, 10, 3]), what).expect_err("label 10");
        let err = check(err, "label 10 at index 2");
        assert!(matches!(
            err,
            DataError::BadLabel {
                index: 2,
                label: 10,
                ..
            }
        ));

        let err = parse_idx_images(&[], what).expect_err("empty");
        assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
        let err = parse_idx_labels(&idx_labels(&[]), what).expect_err("zero labels");
        assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
        let err = parse_idx_images(&idx_images(0, 28, 28), what).expect_err("zero images");
        assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
    }

    #[test]
    fn hostile_header_is_rejected_before_allocating() {
        // Claims 4 billion images (3 TB) with a 100-byte body.
        let mut bytes = idx_images(0, 28, 28);
        bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend([0; 100]);
        let err = parse_idx_images(&bytes, "hostile").expect_err("hostile header");
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("only 100 bytes follow"), "{err}");

        let mut labels = idx_labels(&[1]);
        labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = parse_idx_labels(&labels, "hostile").expect_err("hostile header");
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    }

    #[test]
    fn corrupt_and_truncated_gzip_are_errors() {
        let real = fs::read(Path::new(DATA).join(format!("{TEST_LABELS}.gz"))).expect("read");
        let dir = TempDir::new("gzip");
        let expect_gzip_error = |name: &str, bytes: &[u8]| {
            let path = dir.write(name, bytes);
            let err = read_maybe_gzipped(&path).expect_err("bad gzip must fail");
            assert!(matches!(err, DataError::Gzip { .. }), "{name}: {err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        };

        let mut flipped = real.clone();
        for b in &mut flipped[200..210] {
            *b ^= 0xa5;
        }
        expect_gzip_error("flipped.gz", &flipped);
        let mut bad_crc = real.clone();
        let crc = bad_crc.len() - 8;
        bad_crc[crc] ^= 0xff;
        expect_gzip_error("bad-crc.gz", &bad_crc);
        expect_gzip_error("truncated-body.gz", &real[..real.len() / 2]);
        expect_gzip_error("truncated-trailer.gz", &real[..real.len() - 4]);
        expect_gzip_error("header-only.gz", &real[..5]);
        expect_gzip_error("trailing-junk.gz", &[real.as_slice(), b"junk"].concat());

        // Concatenated members are one stream, as `gzip -d` reads them.
        let two = [gzip(b"ab").as_slice(), &gzip(b"cd")].concat();
        let path = dir.write("two.gz", &two);
        assert_eq!(read_maybe_gzipped(&path).expect("multi-member"), b"abcd");
    }

    #[test]
    fn missing_directory_and_files() {
        let gone = std::env::temp_dir().join("bnconv-nn-mnist-definitely-not-here");
        let err = load_err(&gone);
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&gone.display().to_string()) && msg.contains("directory"),
            "{msg}"
        );

        let dir = synthetic("missing", 5001, 5001, 2);
        fs::remove_file(dir.0.join(TEST_LABELS)).expect("remove");
        let err = load_err(&dir.0);
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.0.join(TEST_LABELS).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains(".gz"), "{msg}");

        let err = read_maybe_gzipped(&dir.0.join("nope")).expect_err("missing file");
        assert!(matches!(err, DataError::Missing { .. }) && err.to_string().contains("nope"));

        let file = dir.0.join(TEST_IMAGES);
        let err = load_err(&file);
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");

        // Reading a directory is an I/O error, not "missing".
        let err = read_maybe_gzipped(&dir.0).expect_err("a directory is not a file");
        assert!(matches!(err, DataError::Io { .. }), "{err}");
        assert!(
            err.to_string().contains(&dir.0.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_named() {
        let dir = synthetic("empty", 5001, 5001, 2);
        let path = dir.write(TRAIN_LABELS, &[]);
        let err = load_err(&dir.0);
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn bad_file_in_directory_is_named() {
        let dir = synthetic("badmagic", 5001, 5001, 2);
        let path = dir.write(TEST_IMAGES, &idx_labels(&[1, 2]));
        let err = load_err(&dir.0);
        assert!(matches!(err, DataError::BadMagic { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = synthetic("count", 5001, 5002, 2);
        let err = load_err(&dir.0);
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    images: 5001,
                    labels: 5002,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(TRAIN_IMAGES) && msg.contains(TRAIN_LABELS),
            "{msg}"
        );
    }

    #[test]
    fn too_few_training_images() {
        let dir = synthetic("few", 5000, 5000, 2);
        let err = load_err(&dir.0);
        assert!(
            matches!(err, DataError::TooFewTraining { count: 5000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(TRAIN_IMAGES), "{err}");

        let dir = synthetic("enough", 5001, 5001, 2);
        let m = Mnist::load(&dir.0).expect("5001 images leave one for training");
        assert_eq!(
            (m.train.len(), m.validation.len(), m.test.len()),
            (1, 5000, 2)
        );
    }

    #[test]
    fn checksum_mismatch_is_caught_before_parsing() {
        let dir = synthetic("sha", 5001, 5001, 2);
        // Unparseable content: the checksum error must win over the parse error.
        let bad = dir.write(TRAIN_LABELS, b"not an idx file");
        let expected = "ab".repeat(32);
        let listed = format!(
            "{}  {TEST_IMAGES}\n{}  {TRAIN_LABELS}\n",
            sha256_hex(&fs::read(dir.0.join(TEST_IMAGES)).expect("read")),
            expected.to_uppercase()
        );
        dir.write(CHECKSUMS, listed.as_bytes());
        let err = load_err(&dir.0);
        let actual = sha256_hex(b"not an idx file");
        match &err {
            DataError::Checksum {
                path,
                expected: e,
                actual: a,
            } => assert_eq!((path, e, a), (&bad, &expected, &actual)),
            other => panic!("expected a checksum error, got {other}"),
        }
        let msg = err.to_string();
        for part in [&bad.display().to_string(), &expected, &actual] {
            assert!(msg.contains(part.as_str()), "{msg:?} lacks {part}");
        }

        // Files SHA256SUMS does not list are not checked.
        dir.write(TRAIN_LABELS, &idx_labels(&digits(5001)));
        dir.write(CHECKSUMS, listed.lines().next().unwrap_or("").as_bytes());
        Mnist::load(&dir.0).expect("unlisted files are not checked");
    }

    #[test]
    fn malformed_checksum_list_is_an_error() {
        let dir = synthetic("sums", 5001, 5001, 2);
        let path = dir.write(CHECKSUMS, b"# comment\n\nxyz  train-images-idx3-ubyte\n");
        let err = load_err(&dir.0);
        assert!(
            matches!(err, DataError::BadChecksumList { line: 3, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        let binary_mode = format!(
            "{} *{TEST_LABELS}\n",
            sha256_hex(&fs::read(dir.0.join(TEST_LABELS)).expect("read"))
        );
        dir.write(CHECKSUMS, binary_mode.as_bytes());
        Mnist::load(&dir.0).expect("binary-mode entries are accepted");
    }

    #[test]
    fn dataset_new_validates() {
        let err = Dataset::new(vec![0; 783], vec![1]).expect_err("short images");
        assert!(matches!(err, DataError::BadDimensions { .. }), "{err}");
        let err = Dataset::new(vec![0; 784 * 2], vec![1, 10]).expect_err("label 10");
        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
        let empty = Dataset::new(Vec::new(), Vec::new()).expect("empty is valid");
        assert!(empty.is_empty());
    }

    #[test]
    fn batches_copy_pixels_and_one_hot_labels() {
        // Every image distinct, every byte value present.
        let pixels: Vec<u8> = (0..4 * 784).map(|i| ((i * 7) % 256) as u8).collect();
        let set = Dataset::new(pixels, vec![3, 0, 9, 5]).expect("valid");
        let mut x = vec![f32::NAN; 2 * 784];
        let mut y = vec![f32::NAN; 2 * 10];
        let scaled =
            |i: usize| -> Vec<f32> { set.image(i).iter().map(|&p| pixel_value(p)).collect() };

        set.copy_range(1..3, &mut x, &mut y);
        assert_eq!(&x[..784], scaled(1));
        assert_eq!(&x[784..], scaled(2));
        let mut expected = [0.0; 20];
        expected[0] = 1.0;
        expected[10 + 9] = 1.0;
        assert_eq!(y, expected);

        set.gather(&[3, 0], &mut x, &mut y);
        assert_eq!(&x[..784], scaled(3));
        assert_eq!(&x[784..], scaled(0));
        let mut expected = [0.0; 20];
        expected[5] = 1.0;
        expected[10 + 3] = 1.0;
        assert_eq!(y, expected);

        let tail = set.slice(2..4);
        assert_eq!(tail.labels(), &[9, 5]);
        assert_eq!(tail.pixels(), &set.pixels()[2 * 784..]);
    }
}
