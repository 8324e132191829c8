//! The training state a resumable checkpoint holds besides the weights: the `training_state`
//! metadata entry (settings, Adam's update count, the sampler's position and generator) and the
//! Adam moments and data order stored as tensors.

use super::read::File;
use super::CheckpointError;
use crate::adam::AdamConfig;
use crate::batches::{BatchSampler, SamplerState};
use crate::distributed::Team;
use crate::layer::Exec;
use crate::train::{TrainConfig, Trainer};

/// The `training_state` metadata entry (JSON; fields written in this order).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct TrainingMeta {
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
    /// The reduction shard count the run's sums were cut into ([`Exec::shards`]): part of its
    /// numeric definition, so a resumed run keeps it. Absent in files written before shards
    /// existed: the default.
    #[serde(default = "default_shards")]
    shards: usize,
    sampler_position: usize,
    sampler_epochs: usize,
    /// 32 bytes as 64 hex digits.
    sampler_rng_seed: String,
    sampler_rng_stream: u64,
    /// A u128, as a decimal string (JSON readers differ on integers that large).
    sampler_rng_word_pos: String,
}

fn default_shards() -> usize {
    bnconv_kernels::runtime::shards::DEFAULT_SHARDS
}

impl TrainingMeta {
    /// `trainer`'s state under `cfg` (`cfg.batches` is recorded as the run's intended total).
    pub fn of(trainer: &Trainer, cfg: &TrainConfig) -> TrainingMeta {
        let sampler = trainer.sampler.state();
        TrainingMeta {
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
            shards: cfg.exec.shards,
            sampler_position: sampler.position,
            sampler_epochs: sampler.epochs,
            sampler_rng_seed: sampler
                .rng_seed
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            sampler_rng_stream: sampler.rng_stream,
            sampler_rng_word_pos: sampler.rng_word_pos.to_string(),
        }
    }

    /// The JSON text stored in the metadata.
    pub fn to_json(&self) -> String {
        // Numbers and strings only: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The entry of `file`: an error when it has none or it is malformed.
    pub fn read(file: &File<'_>) -> Result<TrainingMeta, CheckpointError> {
        let json = file
            .training_json
            .as_ref()
            .ok_or_else(|| CheckpointError::NoTrainingState {
                path: file.path.to_path_buf(),
            })?;
        serde_json::from_str(json).map_err(|e| CheckpointError::InvalidState {
            path: file.path.to_path_buf(),
            detail: format!("training_state metadata: {e}"),
        })
    }

    /// The GEMM backend the run trained with (its name).
    pub fn gemm(&self) -> &str {
        &self.gemm
    }
}

/// Rebuilds the trainer of `file` and the configuration it ran with (see
/// [`super::Checkpoint::trainer`]).
pub(super) fn restore(
    file: &File<'_>,
    exec: Exec,
) -> Result<(Trainer, TrainConfig), CheckpointError> {
    let path = file.path;
    let meta = TrainingMeta::read(file)?;
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
        variant: file.variant,
        batches: meta.total_batches,
        batch_size: meta.batch_size,
        adam: AdamConfig {
            lr: meta.lr,
            beta1: meta.beta1,
            beta2: meta.beta2,
            epsilon: meta.epsilon,
        },
        seed: meta.seed,
        exec: Exec {
            shards: meta.shards,
            ..exec
        },
        eval_batch: TrainConfig::protocol(file.variant).eval_batch,
    };
    // The caller may change `batches` (and the processes, checked with the rest of the run);
    // everything else must be able to run as stored.
    let check = TrainConfig {
        batches: 1,
        exec: Exec {
            team: Team::default(),
            ..cfg.exec.clone()
        },
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
    if meta.adam_step > file.steps as u64 {
        return Err(invalid(format!(
            "{} Adam updates in {} steps",
            meta.adam_step, file.steps
        )));
    }
    let mut trainer = Trainer::new(&cfg, sampler.set_size());
    file.load_params(&mut trainer.net)?;
    let (m, v) = file.adam_moments(&mut trainer.net)?;
    trainer.adam.restore(meta.adam_step, m, v);
    trainer.sampler = sampler;
    trainer.steps = file.steps;
    Ok((trainer, cfg))
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
