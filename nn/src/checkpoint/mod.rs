//! Checkpoints: the seed network's parameters and batch-norm moving statistics, and optionally
//! the whole training state, in one [safetensors](https://github.com/huggingface/safetensors)
//! file that any safetensors reader (Python `safetensors.numpy`, PyTorch, ...) opens.
//!
//! Tensors, all little-endian, named as the network's visitor names them
//! ([`crate::ParamMut::full_name`]):
//!
//! | name | dtype | shape | what |
//! |---|---|---|---|
//! | `convNN.weight` | F32 | `[3, 3, Cin, Cout]` (HWIO) | conv kernels, NN = 01..19 |
//! | `convNN.bias` | F32 | `[Cout]` | plain variant only |
//! | `bnNN.gamma`, `bnNN.beta` | F32 | `[Cout]` | bn variants only |
//! | `bnNN.moving_mean`, `bnNN.moving_var` | F32 | `[Cout]` | BN moving statistics (eval mode) |
//! | `fc1.weight`, `fc2.weight` | F32 | `[in, out]` | dense kernels: `[76, 100]`, `[100, 10]` |
//! | `fc1.bias` | F32 | `[100]` | plain only |
//! | `bn_fc1.*` | F32 | `[100]` | bn variants only |
//! | `fc2.bias` | F32 | `[10]` | logits bias |
//! | `adam.m.<param>`, `adam.v.<param>` | F32 | as `<param>` | training state: Adam moments |
//! | `sampler.order` | U64 | `[55000]` | training state: the current epoch's data order |
//!
//! String metadata (`__metadata__`): `format` = `bnconv`, `format_version` = `2`, `variant`,
//! `steps` (training steps the weights have had), `bnconv_version`, and, when the file can
//! resume training, `training_state`: a JSON object with the total batches the run was asked
//! for, the seed, batch size, Adam hyper-parameters and update count, the reduction shard count
//! (kept on resume), the BN path and GEMM backend it ran with (informational), and the data
//! sampler's position, completed epochs and
//! ChaCha8 generator state (seed as hex, stream, word position as a decimal string). Since
//! format 2, `tensor_sha256` and `metadata_sha256` record digests of every tensor and of the
//! metadata ([`integrity`] defines them).
//!
//! Reproducible: the same state always gives the same bytes (the header's keys are sorted and
//! nothing in the file depends on the time, the host or the thread count).
//!
//! Trustworthy on reading: the digests are checked before anything is loaded (a mismatch names
//! the tensor; [`Verify::Skip`] loads a file edited on purpose; format-1 files, which have no
//! digests, load as [`Integrity::NoDigests`] for the caller to warn about), and a tensor holding
//! a NaN or an infinity is refused, checked or not.
//!
//! Files are written atomically ([`crate::atomic_write`]). Reading never panics: every problem is
//! a [`CheckpointError`] naming the file and, where it applies, the tensor.

mod error;
pub mod integrity;
mod read;
mod training_state;
mod write;

pub use error::CheckpointError;

use crate::layer::Exec;
use crate::network::Network;
use crate::seed::{seed_network, Variant};
use crate::train::{TrainConfig, Trainer};
use read::File;
use std::path::{Path, PathBuf};
use training_state::TrainingMeta;

/// The value of the `format` metadata key.
pub const FORMAT: &str = "bnconv";
/// The layout version this build writes and the newest it reads. Version 2 added the digests;
/// version 1 files still load, unverified.
pub const FORMAT_VERSION: u32 = 2;
/// The first format version whose files carry digests.
const FIRST_VERSION_WITH_DIGESTS: u32 = 2;
/// The tensor holding the sampler's current data order.
pub const SAMPLER_ORDER: &str = "sampler.order";

/// Whether reading checks the file's digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Refuse a file whose tensors or metadata differ from the digests written with it.
    #[default]
    Digests,
    /// Do not check (a file edited on purpose). Non-finite values are refused all the same.
    Skip,
}

/// What the integrity check concluded about a file that was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Every tensor and the metadata are exactly as written.
    Verified,
    /// Written in format 1, before files carried digests: changed bytes cannot be detected.
    NoDigests,
    /// Not checked: the caller asked for [`Verify::Skip`].
    Skipped,
}

/// What a checkpoint's metadata says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    pub format_version: u32,
    pub variant: Variant,
    /// Training steps the stored weights have had.
    pub steps: usize,
    /// The bnconv version that wrote it.
    pub bnconv_version: String,
    /// Whether it can resume training ([`load_trainer`]).
    pub has_training_state: bool,
    /// How far its bytes were checked when it was read.
    pub integrity: Integrity,
}

/// A checkpoint read into memory, its integrity checked and its values known to be finite.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    info: CheckpointInfo,
}

impl Checkpoint {
    /// Reads `path`, checks its layout and metadata, its digests (unless `verify` is
    /// [`Verify::Skip`], or the file predates them), and that no float in it is NaN or infinite.
    pub fn read(path: &Path, verify: Verify) -> Result<Checkpoint, CheckpointError> {
        let bytes = read::read_file(path)?;
        let info = Checkpoint::check(path, &bytes, verify)?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            bytes,
            info,
        })
    }

    /// Every check [`Checkpoint::read`] makes, on the bytes of a checkpoint already in memory
    /// (`path` only names them in errors): layout and metadata, digests (unless `verify` is
    /// [`Verify::Skip`], or the bytes predate them), and finite values. Returns what they hold.
    pub fn check(
        path: &Path,
        bytes: &[u8],
        verify: Verify,
    ) -> Result<CheckpointInfo, CheckpointError> {
        let file = File::parse(path, bytes)?;
        let integrity = match verify {
            Verify::Skip => Integrity::Skipped,
            Verify::Digests if file.format_version < FIRST_VERSION_WITH_DIGESTS => {
                Integrity::NoDigests
            }
            Verify::Digests => {
                integrity::verify(path, &file.tensors, &file.meta)?;
                Integrity::Verified
            }
        };
        integrity::check_finite(path, &file.tensors)?;
        Ok(file.info(integrity))
    }

    pub fn info(&self) -> &CheckpointInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> Result<File<'_>, CheckpointError> {
        File::parse(&self.path, &self.bytes)
    }

    /// The network the checkpoint describes (its variant) with its weights and statistics:
    /// ready to evaluate.
    pub fn network(&self, exec: Exec) -> Result<Network, CheckpointError> {
        let mut net = seed_network(self.info.variant, 0, exec);
        self.file()?.load_params(&mut net)?;
        Ok(net)
    }

    /// Loads the weights and statistics into `net`, which must have exactly the checkpoint's
    /// tensors (names, shapes, F32). Training-state tensors are allowed and ignored. On error
    /// `net` is unchanged.
    pub fn load_into(&self, net: &mut Network) -> Result<(), CheckpointError> {
        self.file()?.load_params(net)
    }

    /// The trainer exactly as it was when the checkpoint was saved, and the configuration it ran
    /// with (`batches` = the total the run was asked for, `eval_batch` = the protocol's 500;
    /// `exec` is the caller's except for the shard count, which is the run's: BN path, thread
    /// and process count do not change results, the GEMM backend may in the last bits, see
    /// [`Checkpoint::trained_with_gemm`]). Continuing it with
    /// [`crate::train::continue_protocol`] gives the weights an uninterrupted run would have.
    pub fn trainer(&self, exec: Exec) -> Result<(Trainer, TrainConfig), CheckpointError> {
        training_state::restore(&self.file()?, exec)
    }

    /// The name of the GEMM backend the saved run trained with, when the file has a readable
    /// training state.
    pub fn trained_with_gemm(&self) -> Option<String> {
        let file = self.file().ok()?;
        TrainingMeta::read(&file).ok().map(|m| m.gemm().to_string())
    }
}

/// Writes the weights and BN statistics of `net` (the seed network of `variant`, trained for
/// `steps` steps): enough to evaluate, not to resume.
pub fn save_network(
    path: &Path,
    net: &mut Network,
    variant: Variant,
    steps: usize,
) -> Result<(), CheckpointError> {
    let bytes =
        write::encode(net, variant, steps, None).map_err(|e| write::encode_error(path, e))?;
    write::write_file(path, &bytes)
}

/// Writes everything needed to continue `trainer`'s run exactly: weights, BN statistics, Adam
/// moments and update count, the data order and its generator, and the settings of `cfg`
/// (`cfg.batches` is recorded as the run's intended total).
pub fn save_trainer(
    path: &Path,
    trainer: &mut Trainer,
    cfg: &TrainConfig,
) -> Result<(), CheckpointError> {
    let sampler = trainer.sampler.state();
    let training = write::Training {
        json: TrainingMeta::of(trainer, cfg).to_json(),
        adam: &trainer.adam,
        order: &sampler.order,
    };
    let bytes = write::encode(&mut trainer.net, cfg.variant, trainer.steps, Some(training))
        .map_err(|e| write::encode_error(path, e))?;
    write::write_file(path, &bytes)
}

/// Reads a checkpoint's metadata, after the same checks as loading it ([`Checkpoint::read`]
/// with [`Verify::Digests`]); no network is built.
pub fn read_info(path: &Path) -> Result<CheckpointInfo, CheckpointError> {
    Ok(Checkpoint::read(path, Verify::Digests)?.info)
}

/// [`Checkpoint::network`] of a verified file, with its info.
pub fn load_network(path: &Path, exec: Exec) -> Result<(Network, CheckpointInfo), CheckpointError> {
    let checkpoint = Checkpoint::read(path, Verify::Digests)?;
    Ok((checkpoint.network(exec)?, checkpoint.info))
}

/// [`Checkpoint::load_into`] from a verified file.
pub fn load_into(path: &Path, net: &mut Network) -> Result<CheckpointInfo, CheckpointError> {
    let checkpoint = Checkpoint::read(path, Verify::Digests)?;
    checkpoint.load_into(net)?;
    Ok(checkpoint.info)
}

/// [`Checkpoint::trainer`] of a verified file.
pub fn load_trainer(path: &Path, exec: Exec) -> Result<(Trainer, TrainConfig), CheckpointError> {
    Checkpoint::read(path, Verify::Digests)?.trainer(exec)
}
