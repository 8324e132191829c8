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
//! String metadata (`__metadata__`): `format` = `bnconv`, `format_version` = `1`, `variant`,
//! `steps` (training steps the weights have had), `bnconv_version`, and, when the file can
//! resume training, `training_state`: a JSON object with the total batches the run was asked
//! for, the seed, batch size, Adam hyper-parameters and update count, the BN path and GEMM
//! backend it ran with (informational), and the data sampler's position, completed epochs and
//! ChaCha8 generator state (seed as hex, stream, word position as a decimal string).
//!
//! Files are written atomically ([`crate::atomic_write`]). Reading never panics: every problem is
//! a [`CheckpointError`] naming the file and, where it applies, the tensor.

use crate::adam::{Adam, AdamConfig};
use crate::atomic_write::write_atomic;
use crate::batches::{BatchSampler, SamplerState};
use crate::layer::{Exec, ParamKind, ParamMut};
use crate::network::Network;
use crate::seed::{seed_network, Variant};
use crate::train::{TrainConfig, Trainer};
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "bnconv";
/// The layout version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The tensor holding the sampler's current data order.
pub const SAMPLER_ORDER: &str = "sampler.order";

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
}

/// The `training_state` metadata entry (JSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TrainingMeta {
    total_batches: usize,
    seed: u64,
    batch_size: usize,
    lr: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    adam_step: u64,
    bn_path: String,
    gemm: String,
    sampler_position: usize,
    sampler_epochs: usize,
    /// 32 bytes as 64 hex digits.
    sampler_rng_seed: String,
    sampler_rng_stream: u64,
    /// A u128, as a decimal string (JSON readers differ on integers that large).
    sampler_rng_word_pos: String,
}

/// Writes the weights and BN statistics of `net` (the seed network of `variant`, trained for
/// `steps` steps): enough to evaluate, not to resume.
pub fn save_network(
    path: &Path,
    net: &mut Network,
    variant: Variant,
    steps: usize,
) -> Result<(), CheckpointError> {
    let bytes = encode(net, variant, steps, None).map_err(|e| encode_error(path, e))?;
    write_file(path, &bytes)
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
    let meta = TrainingMeta {
        total_batches: cfg.batches,
        seed: cfg.seed,
        batch_size: trainer.batch_size(),
        lr: trainer.adam.config.lr,
        beta1: trainer.adam.config.beta1,
        beta2: trainer.adam.config.beta2,
        epsilon: trainer.adam.config.epsilon,
        adam_step: trainer.adam.steps(),
        bn_path: cfg.exec.bn_path.name().to_string(),
        gemm: cfg.exec.gemm.name().to_string(),
        sampler_position: sampler.position,
        sampler_epochs: sampler.epochs,
        sampler_rng_seed: sampler
            .rng_seed
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        sampler_rng_stream: sampler.rng_stream,
        sampler_rng_word_pos: sampler.rng_word_pos.to_string(),
    };
    let steps = trainer.steps;
    let training = Training {
        meta,
        adam: &trainer.adam,
        order: &sampler.order,
    };
    let bytes = encode(&mut trainer.net, cfg.variant, steps, Some(training))
        .map_err(|e| encode_error(path, e))?;
    write_file(path, &bytes)
}

/// Reads a checkpoint's metadata only (no network is built).
pub fn read_info(path: &Path) -> Result<CheckpointInfo, CheckpointError> {
    let bytes = read_file(path)?;
    let file = File::parse(path, &bytes)?;
    Ok(file.info)
}

/// Builds the network the checkpoint describes (its variant) and loads its weights and
/// statistics: ready to evaluate.
pub fn load_network(path: &Path, exec: Exec) -> Result<(Network, CheckpointInfo), CheckpointError> {
    let bytes = read_file(path)?;
    let file = File::parse(path, &bytes)?;
    let mut net = seed_network(file.info.variant, 0, exec);
    file.load_params(&mut net)?;
    Ok((net, file.info))
}

/// Loads the weights and statistics of a checkpoint into `net`, which must have exactly the
/// checkpoint's tensors (names, shapes, F32). Training-state tensors are allowed and ignored.
/// On error `net` is unchanged.
pub fn load_into(path: &Path, net: &mut Network) -> Result<CheckpointInfo, CheckpointError> {
    let bytes = read_file(path)?;
    let file = File::parse(path, &bytes)?;
    file.load_params(net)?;
    Ok(file.info)
}

/// Rebuilds the trainer exactly as it was when the checkpoint was saved, and the configuration
/// it ran with (`batches` = the total the run was asked for, `eval_batch` = the protocol's 500;
/// `exec` is the caller's: BN path and thread count do not change results, the GEMM backend may
/// in the last bits). Continuing it with [`crate::train::continue_protocol`] gives the weights
/// an uninterrupted run would have.
pub fn load_trainer(path: &Path, exec: Exec) -> Result<(Trainer, TrainConfig), CheckpointError> {
    let bytes = read_file(path)?;
    let file = File::parse(path, &bytes)?;
    let meta = file.training_meta()?;
    let invalid = |detail: String| CheckpointError::InvalidState {
        path: path.to_path_buf(),
        detail,
    };
    let order = file.sampler_order()?;
    let sampler = BatchSampler::from_state(SamplerState {
        order,
        position: meta.sampler_position,
        epochs: meta.sampler_epochs,
        rng_seed: parse_seed(&meta.sampler_rng_seed).ok_or_else(|| {
            invalid(format!(
                "sampler_rng_seed {:?} is not 64 hex digits",
                meta.sampler_rng_seed
            ))
        })?,
        rng_stream: meta.sampler_rng_stream,
        rng_word_pos: meta.sampler_rng_word_pos.parse().map_err(|_| {
            invalid(format!(
                "sampler_rng_word_pos {:?} is not an unsigned integer",
                meta.sampler_rng_word_pos
            ))
        })?,
    })
    .map_err(invalid)?;
    let cfg = TrainConfig {
        variant: file.info.variant,
        batches: meta.total_batches,
        batch_size: meta.batch_size,
        adam: AdamConfig {
            lr: meta.lr,
            beta1: meta.beta1,
            beta2: meta.beta2,
            epsilon: meta.epsilon,
        },
        seed: meta.seed,
        exec,
        eval_batch: TrainConfig::protocol(file.info.variant).eval_batch,
    };
    // The caller may change `batches`; everything else must be able to run as stored.
    let check = TrainConfig {
        batches: 1,
        ..cfg.clone()
    };
    check
        .validate(sampler.set_size())
        .map_err(|e| invalid(e.to_string()))?;
    if !(0.0..1.0).contains(&cfg.adam.beta1)
        || !(0.0..1.0).contains(&cfg.adam.beta2)
        || !cfg.adam.epsilon.is_finite()
        || cfg.adam.epsilon < 0.0
    {
        return Err(invalid(format!(
            "Adam settings {:?} are out of range",
            cfg.adam
        )));
    }
    if meta.adam_step > file.info.steps as u64 {
        return Err(invalid(format!(
            "{} Adam updates in {} steps",
            meta.adam_step, file.info.steps
        )));
    }
    let mut trainer = Trainer::new(&cfg, sampler.set_size());
    file.load_params(&mut trainer.net)?;
    let (m, v) = file.adam_moments(&mut trainer.net)?;
    trainer.adam.restore(meta.adam_step, m, v);
    trainer.sampler = sampler;
    trainer.steps = file.info.steps;
    Ok((trainer, cfg))
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Training<'a> {
    meta: TrainingMeta,
    adam: &'a Adam,
    order: &'a [usize],
}

/// A tensor owned for serialisation.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn f32_tensor(shape: &[usize], values: &[f32]) -> Owned {
    Owned {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn encode(
    net: &mut Network,
    variant: Variant,
    steps: usize,
    training: Option<Training<'_>>,
) -> Result<Vec<u8>, SafeTensorError> {
    let mut tensors: Vec<(String, Owned)> = Vec::new();
    let mut trainable = 0;
    let adam = training.as_ref().map(|t| t.adam.moments());
    net.visit_params(&mut |p: ParamMut<'_>| {
        let name = p.full_name();
        if let (Some((m, v)), ParamKind::Trainable) = (adam, p.kind) {
            // Before the first update Adam has no moments yet: they are zeros.
            let zeros = vec![0.0; p.value.len()];
            let m = m.get(trainable).unwrap_or(&zeros);
            let v = v.get(trainable).unwrap_or(&zeros);
            tensors.push((format!("adam.m.{name}"), f32_tensor(p.shape, m)));
            tensors.push((format!("adam.v.{name}"), f32_tensor(p.shape, v)));
            trainable += 1;
        }
        tensors.push((name, f32_tensor(p.shape, p.value)));
    });
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("variant".to_string(), variant.name().to_string()),
        ("steps".to_string(), steps.to_string()),
        (
            "bnconv_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    if let Some(t) = training {
        let json = serde_json::to_string(&t.meta)
            .map_err(|e| SafeTensorError::IoError(io::Error::other(e)))?;
        meta.insert("training_state".into(), json);
        tensors.push((
            SAMPLER_ORDER.to_string(),
            Owned {
                dtype: Dtype::U64,
                shape: vec![t.order.len()],
                data: t
                    .order
                    .iter()
                    .flat_map(|&i| (i as u64).to_le_bytes())
                    .collect(),
            },
        ));
    }
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
}

fn encode_error(path: &Path, e: SafeTensorError) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        action: "encode",
        source: io::Error::other(e),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomic(path, |w| w.write_all(bytes)).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "write",
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })
}

fn parse_seed(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(seed)
}

/// A parsed checkpoint: the safetensors view over the file's bytes and its metadata.
struct File<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
    info: CheckpointInfo,
    training_json: Option<String>,
}

impl<'a> File<'a> {
    fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<File<'a>, CheckpointError> {
        let corrupt = |source| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let format = |detail: String| CheckpointError::Format {
            path: path.to_path_buf(),
            detail,
        };
        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| format(format!("not a bnconv checkpoint: no {key:?} metadata")))
        };
        let kind = get("format")?;
        if kind != FORMAT {
            return Err(format(format!(
                "not a bnconv checkpoint: metadata format is {kind:?}, expected {FORMAT:?}"
            )));
        }
        let version = get("format_version")?;
        let format_version: u32 = version
            .parse()
            .map_err(|_| format(format!("format_version {version:?} is not a number")))?;
        if format_version == 0 || format_version > FORMAT_VERSION {
            return Err(format(format!(
                "format version {format_version} is not supported (this bnconv reads 1 to \
                 {FORMAT_VERSION}; a newer bnconv wrote it?)"
            )));
        }
        let variant = Variant::from_name(get("variant")?).map_err(format)?;
        let steps = get("steps")?;
        let steps: usize = steps
            .parse()
            .map_err(|_| format(format!("steps {steps:?} is not a number")))?;
        let training_json = meta.get("training_state").cloned();
        Ok(File {
            path,
            tensors,
            info: CheckpointInfo {
                format_version,
                variant,
                steps,
                bnconv_version: meta.get("bnconv_version").cloned().unwrap_or_default(),
                has_training_state: training_json.is_some(),
            },
            training_json,
        })
    }

    /// The tensor `name`, checked to be `dtype` with `shape`.
    fn tensor(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<&'a [u8], CheckpointError> {
        let path = self.path.to_path_buf();
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| CheckpointError::MissingTensor {
                path: path.clone(),
                name: name.to_string(),
            })?;
        if view.dtype() != dtype {
            return Err(CheckpointError::Dtype {
                path,
                name: name.to_string(),
                expected: dtype,
                found: view.dtype(),
            });
        }
        if view.shape() != shape {
            return Err(CheckpointError::Shape {
                path,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        if data.len() != shape.iter().product::<usize>() * dtype.bitsize() / 8 {
            return Err(CheckpointError::Format {
                path,
                detail: format!("tensor {name}: {} bytes for shape {shape:?}", data.len()),
            });
        }
        Ok(data)
    }

    /// Every tensor name the file may hold for `net`: its parameters, plus the training state
    /// when the metadata declares one.
    fn allowed_names(&self, net: &mut Network) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let training = self.training_json.is_some();
        net.visit_params(&mut |p| {
            let name = p.full_name();
            if training && p.kind == ParamKind::Trainable {
                names.insert(format!("adam.m.{name}"));
                names.insert(format!("adam.v.{name}"));
            }
            names.insert(name);
        });
        if training {
            names.insert(SAMPLER_ORDER.to_string());
        }
        names
    }

    /// Copies every parameter and statistic into `net` after checking all of them (names,
    /// dtypes, shapes, no extra tensors); `net` is untouched on error.
    fn load_params(&self, net: &mut Network) -> Result<(), CheckpointError> {
        let mut found: Vec<&'a [u8]> = Vec::new();
        let mut error = None;
        net.visit_params(&mut |p| {
            if error.is_none() {
                match self.tensor(&p.full_name(), Dtype::F32, p.shape) {
                    Ok(data) => found.push(data),
                    Err(e) => error = Some(e),
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        let allowed = self.allowed_names(net);
        let mut names = self.tensors.names();
        names.sort_unstable();
        if let Some(extra) = names.into_iter().find(|n| !allowed.contains(*n)) {
            return Err(CheckpointError::UnexpectedTensor {
                path: self.path.to_path_buf(),
                name: extra.to_string(),
            });
        }
        let mut next = found.into_iter();
        net.visit_params(&mut |p| {
            if let Some(data) = next.next() {
                copy_f32(data, p.value);
            }
        });
        Ok(())
    }

    fn training_meta(&self) -> Result<TrainingMeta, CheckpointError> {
        let json = self
            .training_json
            .as_ref()
            .ok_or_else(|| CheckpointError::NoTrainingState {
                path: self.path.to_path_buf(),
            })?;
        serde_json::from_str(json).map_err(|e| CheckpointError::InvalidState {
            path: self.path.to_path_buf(),
            detail: format!("training_state metadata: {e}"),
        })
    }

    /// Adam's moments for every trainable parameter of `net`, in visit order.
    fn adam_moments(&self, net: &mut Network) -> Result<(Moments, Moments), CheckpointError> {
        let (mut m, mut v) = (Vec::new(), Vec::new());
        let mut error = None;
        net.visit_params(&mut |p| {
            if error.is_some() || p.kind != ParamKind::Trainable {
                return;
            }
            let name = p.full_name();
            for (prefix, out) in [("adam.m.", &mut m), ("adam.v.", &mut v)] {
                match self.tensor(&format!("{prefix}{name}"), Dtype::F32, p.shape) {
                    Ok(data) => {
                        let mut values = vec![0.0; p.value.len()];
                        copy_f32(data, &mut values);
                        out.push(values);
                    }
                    Err(e) => {
                        error = Some(e);
                        return;
                    }
                }
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok((m, v)),
        }
    }

    /// The sampler's data order: a 1-D U64 tensor.
    fn sampler_order(&self) -> Result<Vec<usize>, CheckpointError> {
        let path = self.path.to_path_buf();
        let view =
            self.tensors
                .tensor(SAMPLER_ORDER)
                .map_err(|_| CheckpointError::MissingTensor {
                    path: path.clone(),
                    name: SAMPLER_ORDER.to_string(),
                })?;
        let n = match view.shape() {
            [n] => *n,
            other => {
                return Err(CheckpointError::Shape {
                    path,
                    name: SAMPLER_ORDER.to_string(),
                    expected: vec![other.iter().product()],
                    found: other.to_vec(),
                })
            }
        };
        let data = self.tensor(SAMPLER_ORDER, Dtype::U64, &[n])?;
        data.chunks_exact(8)
            .map(|b| {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                let i = u64::from_le_bytes(le);
                usize::try_from(i).map_err(|_| CheckpointError::InvalidState {
                    path: path.clone(),
                    detail: format!("data order entry {i} does not fit this machine"),
                })
            })
            .collect()
    }
}

/// One moment (first or second) per trainable parameter, in visit order.
type Moments = Vec<Vec<f32>>;

/// Little-endian f32 bytes into `out` (lengths already checked to match).
fn copy_f32(data: &[u8], out: &mut [f32]) {
    for (v, b) in out.iter_mut().zip(data.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}
