//! `--save` and `--resume`: where checkpoints go (checked before any work), and training one
//! variant from scratch or from a checkpoint, saving its final state.

use crate::cli::Plan;
use crate::outpath::check_output;
use anyhow::{bail, Context, Result};
use bnconv_nn::checkpoint::{load_trainer, save_trainer};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{
    continue_protocol_with_progress, LogLine, RunReport, StepProgress, TrainConfig, Trainer,
};
use bnconv_nn::Variant;
use std::path::{Path, PathBuf};

/// `compare --save FILE` writes each variant to FILE with the variant's name before the
/// extension: `run.safetensors` -> `run.bn.safetensors` (`run` -> `run.bn`).
pub fn per_variant(path: &Path, variant: Variant) -> PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(variant.name());
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// The checkpoint file of each variant (`None`: not saved), each checked to be writable now.
/// `per_variant_names` inserts the variant name (compare); otherwise there is one variant and
/// `save` is used as given (train).
pub fn save_paths(
    save: Option<&Path>,
    per_variant_names: bool,
    variants: &[Variant],
) -> Result<Vec<Option<PathBuf>>> {
    let Some(save) = save else {
        return Ok(vec![None; variants.len()]);
    };
    let mut paths = Vec::with_capacity(variants.len());
    for (i, &variant) in variants.iter().enumerate() {
        if variants[..i].contains(&variant) {
            bail!("--save: variant {variant} is listed twice, its checkpoints would overwrite each other");
        }
        let path = if per_variant_names {
            per_variant(save, variant)
        } else {
            save.to_path_buf()
        };
        check_output("--save", &path)?;
        paths.push(Some(path));
    }
    Ok(paths)
}

/// The run saved in `path`, ready to continue: the trainer as it was, and its configuration with
/// this invocation's `--batches` (the run's new total), `--eval-batch`, `--bn` and `--gemm`.
pub fn load_resume(path: &Path, plan: &Plan) -> Result<(Trainer, TrainConfig)> {
    let (trainer, saved) = load_trainer(path, plan.exec).context("--resume")?;
    let asked = plan.config(saved.variant);
    if trainer.steps() >= asked.batches {
        bail!(
            "--resume {}: the run has already taken {} steps and --batches {} is the total from \
             its start; ask for more than {} (it was started with --batches {})",
            path.display(),
            trainer.steps(),
            asked.batches,
            trainer.steps(),
            saved.batches
        );
    }
    let cfg = TrainConfig {
        batches: asked.batches,
        eval_batch: asked.eval_batch,
        exec: plan.exec,
        ..saved
    };
    Ok((trainer, cfg))
}

/// Trains one variant from `resume` (or from scratch) up to `cfg.batches` steps, then saves its
/// final state, training state included, to `save`.
pub fn train(
    cfg: &TrainConfig,
    data: &Mnist,
    resume: Option<Trainer>,
    save: Option<&Path>,
    on_log: &mut dyn FnMut(&LogLine),
    on_step: &mut dyn FnMut(&StepProgress),
) -> Result<RunReport> {
    let mut trainer = match resume {
        Some(trainer) => trainer,
        None => {
            cfg.validate(data.train.len())?;
            Trainer::new(cfg, data.train.len())
        }
    };
    let report = continue_protocol_with_progress(cfg, data, &mut trainer, on_log, on_step)?;
    if let Some(path) = save {
        save_trainer(path, &mut trainer, cfg)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_go_before_the_extension() {
        let p = |s: &str, v| per_variant(Path::new(s), v);
        assert_eq!(
            p("run.safetensors", Variant::Bn),
            Path::new("run.bn.safetensors")
        );
        assert_eq!(
            p("out/x.y.safetensors", Variant::BnLowLevel),
            Path::new("out/x.y.bn-lowlevel.safetensors")
        );
        assert_eq!(p("out/run", Variant::Plain), Path::new("out/run.plain"));
    }
}
