//! The IDX file format of the MNIST files: a magic number, big-endian dimensions, then the bytes.
//! Every size the header claims is checked against the bytes present before anything is
//! allocated.

use std::path::Path;

use super::dataset::check_labels;
use super::file::gunzip_if_gzipped;
use super::{DataError, Dataset};

/// IDX magic numbers: two zero bytes, element type 0x08 (unsigned byte), number of dimensions.
pub(super) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(super) const LABELS_MAGIC: u32 = 0x0000_0801;

/// Decodes an images file and a labels file from their bytes exactly as [`Mnist::load`](super::Mnist::load) does once
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

pub(super) fn decode_raw_pair(
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
