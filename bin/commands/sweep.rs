//! `bnconv sweep --variants plain,bn --seeds 1-8`: the protocol for every variant and seed, as
//! independent runs `--jobs` at a time, each on a pool of `--threads-per-job` threads
//! ([`bnconv_nn::sweep`]); then the final test accuracy of every run and, per variant, their mean,
//! spread, range and how many stayed near chance.

use crate::cli::{cores, to_usize, SweepArgs};
use crate::outpath::{self, check_output, check_plot_path};
use crate::plot;
use crate::report::write_json_value;
use anyhow::{bail, Context, Result};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::sweep::{run_sweep, SweepConfig, SweepRun};
use bnconv_nn::sweep_summary::{summarize, VariantSummary, NEAR_CHANCE};
use bnconv_nn::Variant;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn run(args: &SweepArgs) -> Result<()> {
    let cores = cores();
    let threads_per_job = to_usize(args.threads_per_job, "--threads-per-job")?;
    let jobs = match args.jobs {
        Some(j) => to_usize(j, "--jobs")?,
        None => (cores / threads_per_job).max(1),
    };
    if let Some(json) = &args.json {
        check_output("--json", json)?;
        if outpath::is_stdout(json) {
            crate::stdout::report_to_stderr();
        }
    }
    let plot_format = (args.plot.as_deref())
        .map(|p| check_plot_path("--plot", p))
        .transpose()?;
    let cfg = SweepConfig {
        base: args.run.config(Variant::Bn, 0)?,
        variants: args.variants.clone(),
        seeds: args.seeds.0.clone(),
        jobs,
        threads_per_job,
    };
    let data_dir = args.run.data_dir()?;
    let data = Mnist::load(&data_dir)
        .with_context(|| format!("could not load MNIST from {}", data_dir.display()))?;
    cfg.validate(data.train.len())?;
    let total = cfg.runs().len();
    let in_flight = jobs.min(total);
    outln!(
        "bnconv sweep: {} variant(s) x {} seed(s) = {total} runs of {} batches of {}; {in_flight} \
         job(s) at once x {threads_per_job} thread(s) on {cores} core(s); BN {}, GEMM {}, SIMD {}",
        cfg.variants.len(),
        cfg.seeds.len(),
        cfg.base.batches,
        cfg.base.batch_size,
        cfg.base.exec.bn_path,
        cfg.base.exec.gemm,
        bnconv_kernels::simd::active_isa().name(),
    );
    if in_flight * threads_per_job > cores {
        eprintln!(
            "warning: {in_flight} jobs x {threads_per_job} threads = {} threads on {cores} cores: \
             the runs will slow each other down (results are unchanged)",
            in_flight * threads_per_job
        );
    }
    let finished = AtomicUsize::new(0);
    let sweep = run_sweep(&cfg, &data, &|run| {
        let k = finished.fetch_add(1, Ordering::Relaxed) + 1;
        if !args.quiet {
            outln!(
                "[{k:>width$}/{total}] {}",
                describe(run),
                width = digits(total)
            );
        }
    })?;

    let summaries = summarize(&cfg.variants, &sweep.runs);
    print_table(&cfg.seeds, &sweep.runs, &summaries);
    let run_seconds: f64 = sweep
        .runs
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok())
        .map(|rep| rep.timing.wall_seconds)
        .sum();
    outln!(
        "{total} runs in {:.1} s wall, {in_flight} job(s) x {threads_per_job} thread(s); the runs' \
         own wall times add up to {run_seconds:.1} s ({:.2} runs at once on average)",
        sweep.wall_seconds,
        run_seconds / sweep.wall_seconds.max(1e-9)
    );

    if let Some(path) = &args.json {
        let runs: Vec<serde_json::Value> = sweep
            .runs
            .iter()
            .map(|r| {
                let mut entry = serde_json::json!({
                    "variant": r.variant,
                    "seed": r.seed,
                    "job": r.job,
                });
                match &r.outcome {
                    // Through the text, so f32 figures stay their shortest decimals
                    // (report::json_value).
                    Ok(report) => {
                        entry["report"] = serde_json::from_str(&serde_json::to_string(report)?)?
                    }
                    Err(e) => entry["error"] = e.to_string().into(),
                }
                Ok(entry)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let doc = serde_json::json!({
            "bnconv_version": env!("CARGO_PKG_VERSION"),
            "sweep": {
                "variants": cfg.variants,
                "seeds": cfg.seeds,
                "jobs": in_flight,
                "threads_per_job": threads_per_job,
                "cores": cores,
                "batches": cfg.base.batches,
                "batch_size": cfg.base.batch_size,
                "adam": crate::report::json_value(&cfg.base.adam)?,
                "bn_path": cfg.base.exec.bn_path,
                "gemm": cfg.base.exec.gemm.name(),
                "isa": bnconv_kernels::simd::active_isa().name(),
                "near_chance": crate::report::json_value(&NEAR_CHANCE)?,
            },
            "wall_seconds": sweep.wall_seconds,
            "run_wall_seconds_sum": run_seconds,
            "summary": crate::report::json_value(&summaries)?,
            "runs": runs,
        });
        write_json_value(path, &doc)?;
        outln!("wrote {}", outpath::shown(path));
    }
    if let (Some(path), Some(format)) = (&args.plot, plot_format) {
        let names: Vec<&str> = cfg.variants.iter().map(|v| v.name()).collect();
        let title = format!(
            "Seed sweep: {}, {} seed(s), {} batches of {} (Adam lr {}, BN {})",
            names.join(" vs "),
            cfg.seeds.len(),
            cfg.base.batches,
            cfg.base.batch_size,
            cfg.base.adam.lr,
            cfg.base.exec.bn_path,
        );
        plot::sweep_figure(path, format, &title, &sweep.runs, &summaries)?;
        outln!("wrote {}", outpath::shown(path));
    }
    let failed = sweep.runs.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {total} runs failed (listed above); the others are in the table");
    }
    Ok(())
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

/// One finished run: its accuracies and speed, or why it stopped.
fn describe(run: &SweepRun) -> String {
    match &run.outcome {
        Ok(r) => format!(
            "{} seed {}: test {:.4}, validation {:.4} ({:.1} s, {:.0} train img/s, job {})",
            run.variant,
            run.seed,
            r.test.accuracy,
            r.final_validation.accuracy,
            r.timing.wall_seconds,
            r.timing.train_images_per_second,
            run.job
        ),
        Err(e) => format!("{} seed {}: FAILED: {e}", run.variant, run.seed),
    }
}

/// A summary row's cell for one variant.
type Cell = dyn Fn(&VariantSummary) -> String;

/// One row per seed and one column per variant of final test accuracies, then each variant's
/// mean, standard deviation, min, max and share of runs near chance.
fn print_table(seeds: &[u64], runs: &[SweepRun], summaries: &[VariantSummary]) {
    const W: usize = 12;
    outln!();
    outln!("Final test accuracy (10000 images) per seed:");
    let mut header = format!("{:<10}", "seed");
    for s in summaries {
        header += &format!("{:>W$}", s.variant.name());
    }
    outln!("{header}");
    for &seed in seeds {
        let mut line = format!("{seed:<10}");
        for s in summaries {
            let cell = runs
                .iter()
                .find(|r| r.variant == s.variant && r.seed == seed)
                .map_or("-".to_string(), |r| match &r.outcome {
                    Ok(rep) => format!("{:.4}", rep.test.accuracy),
                    Err(_) => "failed".to_string(),
                });
            line += &format!("{cell:>W$}");
        }
        outln!("{line}");
    }
    let near_chance = format!("<= {NEAR_CHANCE}");
    let rows: [(&str, &Cell); 5] = [
        ("mean", &|s| format!("{:.4}", s.mean)),
        ("std", &|s| format!("{:.4}", s.std)),
        ("min", &|s| format!("{:.4}", s.min)),
        ("max", &|s| format!("{:.4}", s.max)),
        (&near_chance, &|s| {
            format!(
                "{}/{} ({:.0}%)",
                s.near_chance,
                s.test_accuracy.len(),
                100.0 * s.near_chance_share
            )
        }),
    ];
    for (name, value) in rows {
        let mut line = format!("{name:<10}");
        for s in summaries {
            line += &format!("{:>W$}", value(s));
        }
        outln!("{line}");
    }
    outln!(
        "(std: sample standard deviation; <= {NEAR_CHANCE}: runs that stayed near chance, of \
         the finished ones)"
    );
}
