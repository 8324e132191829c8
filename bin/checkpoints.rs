//! `--save`, `--save-every`, `--resume` and `eval --checkpoint`: where checkpoints go (checked
//! before any work), reading them (verified, or not with `--no-verify`), and training one variant
//! from scratch or from a checkpoint, saving its state periodically, at the end, and when a
//! signal stops it.

use crate::cli::Plan;
use crate::interrupt::{self, Interrupted};
use crate::outpath::check_file_output;
use anyhow::{bail, Context, Result};
use bnconv_kernels::GemmBackend;
use bnconv_nn::checkpoint::{save_trainer, Checkpoint, Integrity, Verify};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{
    continue_protocol_with_hook, AfterStep, LogLine, RunReport, StepProgress, TrainConfig,
    TrainError, Trainer,
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
        check_file_output("--save", &path)?;
        paths.push(Some(path));
    }
    Ok(paths)
}

/// Reads a checkpoint named by `flag` (`--checkpoint`, `--resume`): its digests checked unless
/// `no_verify`, its values known to be finite. Says on stderr when it could not be verified.
pub fn read_checkpoint(flag: &str, path: &Path, no_verify: bool) -> Result<Checkpoint> {
    let verify = if no_verify {
        Verify::Skip
    } else {
        Verify::Digests
    };
    let checkpoint = Checkpoint::read(path, verify).with_context(|| flag.to_string())?;
    match checkpoint.info().integrity {
        Integrity::Verified => {}
        Integrity::NoDigests => eprintln!(
            "warning: {flag} {}: written in checkpoint format {} (an older bnconv), which has no \
             digests: a changed byte cannot be detected. Saving it again adds them.",
            path.display(),
            checkpoint.info().format_version
        ),
        Integrity::Skipped => eprintln!(
            "warning: {flag} {}: digests not checked (--no-verify)",
            path.display()
        ),
    }
    Ok(checkpoint)
}

/// How a checkpoint's integrity is named in reports.
pub fn integrity_name(integrity: Integrity) -> &'static str {
    match integrity {
        Integrity::Verified => "verified",
        Integrity::NoDigests => "no digests (format 1)",
        Integrity::Skipped => "not checked (--no-verify)",
    }
}

/// The run saved in `path`, ready to continue: the trainer as it was, and its configuration with
/// this invocation's `--batches` (the run's new total; by default the total it recorded),
/// `--eval-batch`, `--bn`, processes and `--gemm` (by default the one it trained with: another
/// backend may change the last bits, so naming a different one is warned about); the shard count
/// stays the run's.
pub fn load_resume(path: &Path, plan: &Plan, no_verify: bool) -> Result<(Trainer, TrainConfig)> {
    let checkpoint = read_checkpoint("--resume", path, no_verify)?;
    let recorded = checkpoint.trained_with_gemm();
    let mut exec = plan.exec.clone();
    match (&recorded, plan.gemm_given) {
        (Some(name), false) => match GemmBackend::from_name(name) {
            Ok(gemm) => exec.gemm = gemm,
            Err(e) => eprintln!(
                "warning: --resume {}: the run trained with GEMM {name}, which this build cannot \
                 use ({e}); continuing with {}: the last bits may differ from an uninterrupted run",
                path.display(),
                exec.gemm
            ),
        },
        (Some(name), true) if name != exec.gemm.name() => eprintln!(
            "warning: --resume {}: the run trained with GEMM {name}; continuing with --gemm {} \
             may change the last bits against an uninterrupted run",
            path.display(),
            exec.gemm
        ),
        _ => {}
    }
    let (trainer, saved) = checkpoint.trainer(exec).context("--resume")?;
    let batches = plan.batches.unwrap_or(saved.batches);
    if trainer.steps() >= batches {
        bail!(
            "--resume {}: the run has already taken {} steps, its recorded total{}; ask for more \
             with --batches N, N > {} (the total from the run's start)",
            path.display(),
            trainer.steps(),
            match plan.batches {
                Some(b) => format!(" was {} and --batches {b} is no more", saved.batches),
                None => format!(" ({})", saved.batches),
            },
            trainer.steps(),
        );
    }
    // `saved.exec` is `exec` with the run's own shard count.
    let cfg = TrainConfig {
        batches,
        eval_batch: plan.config(saved.variant).eval_batch,
        ..saved
    };
    Ok((trainer, cfg))
}

/// Where and how often a run saves itself.
#[derive(Clone, Copy)]
pub struct Saving<'a> {
    /// `--save`: the final state, and the state when a signal stops the run.
    pub path: Option<&'a Path>,
    /// `--save-every N`: also every N steps (the file replaced atomically each time).
    pub every: Option<usize>,
    /// Options a resume command must repeat (`--data DIR`), for the interruption message.
    pub resume_options: &'a str,
}

/// Trains one variant from `resume` (or from scratch) up to `cfg.batches` steps, saving its state
/// (training state included) to `saving.path` every `saving.every` steps and at the end. A
/// SIGINT/SIGTERM ([`crate::interrupt`]) stops it at the next step boundary, saves, and returns
/// [`Interrupted`]. Under mpirun, give `saving.path` on rank 0 only (every rank ends with the same
/// state).
pub fn train(
    cfg: &TrainConfig,
    data: &Mnist,
    resume: Option<Trainer>,
    saving: Saving<'_>,
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
    let mut save_error = None;
    // The signal that stopped the run on any rank (0: none).
    let mut signal = 0u8;
    let result = continue_protocol_with_hook(cfg, data, &mut trainer, on_log, &mut |p, trainer| {
        on_step(p);
        crate::fault::after_step(p.step);
        if let (Some(path), Some(every)) = (saving.path, saving.every) {
            if p.step % every == 0 && p.step < p.batches {
                if let Err(e) = save_trainer(path, trainer, cfg) {
                    save_error = Some(e);
                    return AfterStep::Stop;
                }
            }
        }
        // Under mpirun the ranks get a signal at different moments (or only some of them do):
        // they stop together, at the first boundary where any of them has one.
        let mine = interrupt::requested().map_or(0, |s| u8::try_from(s).unwrap_or(u8::MAX));
        signal = cfg.exec.team.max_byte(mine);
        if signal != 0 {
            AfterStep::Stop
        } else {
            AfterStep::Continue
        }
    });
    if let Some(e) = save_error {
        return Err(e).context("--save-every");
    }
    match result {
        Ok(report) => {
            if let Some(path) = saving.path {
                save_trainer(path, &mut trainer, cfg)?;
            }
            Ok(report)
        }
        Err(TrainError::Stopped { steps, batches }) => {
            if let Some(path) = saving.path {
                save_trainer(path, &mut trainer, cfg)?;
            }
            Err(Interrupted {
                signal: i32::from(signal),
                steps,
                batches,
                saved: saving.path.map(Path::to_path_buf),
                resume_options: saving.resume_options.to_string(),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
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
