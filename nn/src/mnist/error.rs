//! Every way loading MNIST can fail, each naming the file (or in-memory source) at fault.

use std::io;
use std::path::PathBuf;

use super::checksums::CHECKSUMS;
use super::idx::{IMAGES_MAGIC, LABELS_MAGIC};
use super::Mnist;

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
