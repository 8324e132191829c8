//! Why a checkpoint could not be written or read.

use safetensors::{Dtype, SafeTensorError};
use std::io;
use std::path::PathBuf;

/// The hint every integrity error ends with: how to load a file that was edited on purpose.
const SKIP_HINT: &str = "to load a file edited on purpose, skip the check with --no-verify \
                         (checkpoint::Verify::Skip in the library)";

/// Why a checkpoint could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The cause is the error's `source()` (printed by `{:#}` chains), not repeated here.
    #[error("checkpoint {}: could not {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Not a well-formed safetensors file: truncated, corrupt header, bad offsets, random bytes.
    #[error("checkpoint {}: truncated or corrupt (not a valid safetensors file)", path.display())]
    Corrupt {
        path: PathBuf,
        source: SafeTensorError,
    },
    /// A valid safetensors file that is not a bnconv checkpoint this build can read, or whose
    /// metadata is malformed.
    #[error("checkpoint {}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    /// A tensor's bytes, or the metadata, differ from what the file's digests say was written:
    /// `what` is `tensor NAME` or `the metadata`.
    #[error(
        "checkpoint {}: {what} does not match the SHA-256 recorded when the file was written \
         (the file is corrupt or was changed since); {SKIP_HINT}",
        path.display()
    )]
    DigestMismatch { path: PathBuf, what: String },
    /// A file of a format that records digests lacks them (or lacks one for a tensor it holds).
    #[error("checkpoint {}: {detail}; {SKIP_HINT}", path.display())]
    MissingDigest { path: PathBuf, detail: String },
    /// NaN or infinite values in a stored tensor: never loaded, whether or not digests are checked.
    #[error(
        "checkpoint {}: tensor {name} holds {count} non-finite value(s) (NaN or infinity) \
         among its {len}; bnconv does not load non-finite weights or training state",
        path.display()
    )]
    NonFinite {
        path: PathBuf,
        name: String,
        count: usize,
        len: usize,
    },
    #[error("checkpoint {}: tensor {name} is {found}, expected {expected}", path.display())]
    Dtype {
        path: PathBuf,
        name: String,
        expected: Dtype,
        found: Dtype,
    },
    #[error("checkpoint {}: tensor {name} is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("checkpoint {}: unexpected tensor {name} (not part of this network)", path.display())]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error(
        "checkpoint {}: tensor {name} has shape {found:?}, the network expects {expected:?}",
        path.display()
    )]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Resuming needs the optimiser and data-order state, which this file does not have.
    #[error("checkpoint {}: holds weights only, no training state to resume from", path.display())]
    NoTrainingState { path: PathBuf },
    /// The training state is present but inconsistent (e.g. the data order is not a
    /// permutation, or the settings cannot run).
    #[error("checkpoint {}: invalid training state: {detail}", path.display())]
    InvalidState { path: PathBuf, detail: String },
}
