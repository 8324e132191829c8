//! Reading a data file, gunzipped when its content is gzip.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The first two bytes of a gzip stream.
pub(super) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// MNIST's largest file is 47 MB decompressed; a stream inflating past this is a gzip bomb.
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Gunzips `bytes` if they start with the gzip magic, else returns them unchanged; `path` names the
/// source in errors. (What [`read_maybe_gzipped`] does after reading the file.)
pub fn decompress(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    gunzip_if_gzipped(bytes, path)
}

/// Reads a file, transparently gunzipping when it starts with the gzip magic. Errors name the
/// path.
pub fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    gunzip_if_gzipped(read_file(path)?, path)
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
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
pub(super) fn gunzip_if_gzipped(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
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
