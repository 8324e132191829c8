//! `bnconv`: trains the seed network on MNIST and reports accuracy and throughput.
//!
//! `bnconv` alone (or `bnconv compare`) runs the notebook's comparison, plain vs batch norm, over
//! the protocol of PROTOCOL.md; `bnconv train --variant bn` runs one variant; `bnconv eval
//! --checkpoint FILE` evaluates a saved checkpoint.

#[macro_use]
mod stdout;

mod checkpoints;
mod cli;
mod eval;
mod outpath;
mod plot;
mod profile;
mod profile_report;
mod progress;
mod report;

use anyhow::{Context, Result};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::RunReport;
use clap::Parser;
use cli::{Cli, Command};

/// Environment variable naming the SIMD code path: `avx512`, `avx2` or `portable` (default: the
/// best this CPU runs). All paths give bitwise the same results; this is for speed comparisons
/// (on AMD Zen 4, AVX-512 is no faster than AVX2) and for working around a faulty path.
const ISA_VAR: &str = "BNCONV_ISA";

/// Applies [`ISA_VAR`] when it is set.
fn choose_isa() -> Result<()> {
    use bnconv_kernels::simd::{force_isa, Isa};
    let Some(value) = std::env::var_os(ISA_VAR) else {
        return Ok(());
    };
    let names = Isa::ALL.map(Isa::name).join(", ");
    let name = value.to_string_lossy();
    let isa = Isa::from_name(&name)
        .with_context(|| format!("{ISA_VAR}={name:?} names no SIMD path (one of: {names})"))?;
    if !force_isa(isa) {
        anyhow::bail!("{ISA_VAR}={name}: this CPU does not run the {name} path");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    choose_isa()?;
    // (options, variants, --save, whether --save names a file per variant, --resume)
    let (opts, mut variants, save, per_variant, resume) = match cli.command {
        Some(Command::Train(t)) => (t.common, vec![t.variant], t.save, false, t.resume),
        Some(Command::Compare(c)) => (c.common, c.variants, c.save, true, None),
        Some(Command::Eval(e)) => return eval::run(&e),
        Some(Command::Profile(p)) => return profile::run(p),
        None => (
            cli.compare.common,
            cli.compare.variants,
            cli.compare.save,
            true,
            None,
        ),
    };
    let plan = opts.plan()?;
    let mut resume = match &resume {
        Some(path) => Some(checkpoints::load_resume(path, &plan)?),
        None => None,
    };
    if let Some((_, cfg)) = &resume {
        variants = vec![cfg.variant];
    }
    let saves = checkpoints::save_paths(save.as_deref(), per_variant, &variants)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .context("could not start the thread pool")?;
    let data = Mnist::load(&plan.data_dir)
        .with_context(|| format!("could not load MNIST from {}", plan.data_dir.display()))?;
    // Settings that depend on the data (the batch size vs the training set) fail here, before
    // anything is printed or trained.
    for &variant in &variants {
        plan.config(variant)
            .validate(data.train.len())
            .with_context(|| format!("variant {variant}"))?;
    }
    outln!(
        "bnconv: {} training / {} validation / {} test images from {}; {} thread(s), BN {}, GEMM {}, SIMD {}",
        data.train.len(),
        data.validation.len(),
        data.test.len(),
        plan.data_dir.display(),
        plan.threads,
        plan.exec.bn_path,
        plan.exec.gemm,
        bnconv_kernels::simd::active_isa().name(),
    );
    let mut reports: Vec<RunReport> = Vec::new();
    for (variant, save) in variants.into_iter().zip(saves) {
        let resumed = resume.take();
        let cfg = match &resumed {
            Some((_, cfg)) => cfg.clone(),
            None => plan.config(variant),
        };
        if !plan.quiet {
            outln!(
                "\n== {variant}: {} batches of {} ==",
                cfg.batches,
                cfg.batch_size
            );
            if let Some((trainer, _)) = &resumed {
                outln!("(resumed at batch {})", trainer.steps());
            }
        }
        let progress = progress::Progress::new(cfg.batches, variant.name(), plan.quiet);
        let report = pool
            .install(|| {
                checkpoints::train(
                    &cfg,
                    &data,
                    resumed.map(|(trainer, _)| trainer),
                    save.as_deref(),
                    &mut |line| progress.log(line),
                    &mut |p| progress.step(p),
                )
            })
            .with_context(|| format!("variant {variant}"));
        progress.finish();
        let report = report?;
        report::print_final(&report);
        if let Some(path) = &save {
            outln!(
                "saved checkpoint {} (batch {})",
                path.display(),
                cfg.batches
            );
        }
        reports.push(report);
    }
    report::print_summary(&reports);
    if let Some(path) = &plan.json {
        report::write_json(path, &reports)?;
        outln!("wrote {}", path.display());
    }
    if let Some((path, format)) = &plan.plot {
        plot::curves(path, *format, &reports)?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}
