//! `bnconv compare` (the default) and `bnconv train`: train one or several variants over the
//! protocol, print each one's results and a summary, and write the `--json`, `--plot` and
//! `--save` outputs.

use crate::checkpoints;
use crate::cli::CommonArgs;
use crate::interrupt;
use crate::launch::{self, Refusal};
use crate::outpath;
use crate::plot;
use crate::progress;
use crate::report;
use anyhow::{Context, Result};
use bnconv_nn::distributed::Team;
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::RunReport;
use bnconv_nn::Variant;
use std::path::PathBuf;

/// The training runs one invocation asks for.
pub struct Runs {
    pub opts: CommonArgs,
    pub variants: Vec<Variant>,
    /// `--save`.
    pub save: Option<PathBuf>,
    /// Whether `--save` names a file per variant (compare) or is used as given (train).
    pub per_variant: bool,
    /// `--resume` (train only).
    pub resume: Option<PathBuf>,
    /// `--no-verify` (with `--resume`).
    pub no_verify: bool,
    /// `--save-every` (train only).
    pub save_every: Option<u64>,
    /// The processes running these runs together (one by default).
    pub team: Team,
}

/// Trains each variant of `runs` in turn and reports, as this process's part of `runs.team`'s
/// runs.
pub fn run(runs: Runs) -> Result<()> {
    let Runs {
        opts,
        mut variants,
        save,
        per_variant,
        resume,
        no_verify,
        save_every,
        team,
    } = runs;
    let team = &team;
    let mut plan = opts.plan(team)?;
    let save_every = save_every
        .map(|n| crate::cli::to_usize(n, "--save-every"))
        .transpose()?;
    outpath::check_one_stdout(&[
        ("--json", plan.json.as_deref()),
        ("--plot", plan.plot.as_ref().map(|(p, _)| p.as_path())),
    ])?;
    if plan.json.as_deref().is_some_and(outpath::is_stdout) {
        crate::stdout::report_to_stderr();
    }
    let mut resume = match &resume {
        Some(path) => Some(checkpoints::load_resume(path, &plan, no_verify)?),
        None => None,
    };
    if let Some((_, cfg)) = &resume {
        variants = vec![cfg.variant];
        // What the resumed run uses (the GEMM it trained with unless --gemm was given).
        plan.exec = cfg.exec.clone();
    }
    // Every rank ends with the same state: rank 0 writes it.
    let save = save.filter(|_| team.is_root());
    let saves = checkpoints::save_paths(save.as_deref(), per_variant, &variants)?;
    let resume_options = if plan.data_given {
        format!(
            " --data {}",
            interrupt::shell_quote(&plan.data_dir.display().to_string())
        )
    } else {
        String::new()
    };
    interrupt::install(team.ranks() == 1)
        .context("could not install the Ctrl-C/SIGTERM handlers")?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .context("could not start the thread pool")?;
    // The summary's share of peak needs the FMA probe: it runs while the data loads. Under
    // mpirun, ranks on one host would probe on each other's cores: they measure when asked.
    if team.ranks() == 1 {
        report::start_peak_probe();
    }
    let data = Mnist::load(&plan.data_dir)
        .with_context(|| format!("could not load MNIST from {}", plan.data_dir.display()))?;
    // Under mpirun, every rank must have been asked for the same run, on the same data.
    if team.ranks() > 1 {
        let mut description = launch::describe_common(&opts, &data);
        description.push(("variants".into(), format!("{variants:?}")));
        let resumed = resume.as_mut().map_or("no".to_string(), |(t, c)| {
            format!(
                "at step {} of {} with {} shards and GEMM {}, weights {}",
                t.steps(),
                c.batches,
                c.exec.shards,
                c.exec.gemm,
                bnconv_nn::digest::parameters_sha256(&mut t.net)
            )
        });
        description.push(("resumed".into(), resumed));
        launch::agree(team, &description)?;
    }
    // Settings that depend on the data (the batch size vs the training set) or on the processes
    // fail here, before anything is printed or trained (the same way on every rank).
    for &variant in &variants {
        let cfg = match &resume {
            Some((_, cfg)) => cfg.clone(),
            None => plan.config(variant),
        };
        cfg.validate(data.train.len())
            .map_err(|e| Refusal(format!("variant {variant}: {e}")))?;
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
        let quiet = plan.quiet || crate::stdout::silent();
        let progress = progress::Progress::new(cfg.batches, variant.name(), quiet);
        let report = pool
            .install(|| {
                checkpoints::train(
                    &cfg,
                    &data,
                    resumed.map(|(trainer, _)| trainer),
                    checkpoints::Saving {
                        path: save.as_deref(),
                        every: save_every,
                        resume_options: &resume_options,
                    },
                    &mut |line| progress.log(line),
                    &mut |p| progress.step(p),
                )
            })
            .with_context(|| format!("variant {variant}"));
        progress.finish();
        let report = report?;
        if plan.quiet {
            // The only lines of this variant: say whose they are.
            outln!("== {variant} ==");
        }
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
        outln!("wrote {}", outpath::shown(path));
    }
    if let Some((path, format)) = &plan.plot {
        plot::curves(path, *format, &reports)?;
        outln!("wrote {}", outpath::shown(path));
    }
    Ok(())
}
