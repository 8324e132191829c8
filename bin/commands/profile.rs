//! `bnconv profile`: where a training step's time goes, fused BN+ReLU against unfused, and how
//! training throughput scales with threads.
//!
//! For each thread count of the sweep, two trainers (`--bn fused` and `--bn unfused`) start from
//! the same weights and draw the same MNIST batches. After the warm-up, the timed steps run in
//! rounds that alternate the paths (fused, unfused, each a block of steps), so a change in the
//! machine's load hits both alike. At the profiled thread count each round also runs a block per
//! path with the profiler on; the unprofiled blocks give the throughput and the overhead baseline.
//! Before any timing, one step from the same initial weights on the same batch checks that the two
//! paths agree (bitwise: tolerance 0).

use crate::cli::{default_data_dir, to_usize, ProfileArgs};
use crate::outpath;
use crate::plot;
use crate::profile_doc::{
    Agreement, NamedDiff, Overhead, PathTotal, ProfileDoc, SweepEntry, Throughput, TotalOut,
};
use crate::profile_report::{self as pr, Samples};
use crate::profile_trust::{self, RoundSet, Trust};
use crate::report;
use crate::scaling_report;
use anyhow::{bail, Context, Result};
use bnconv_kernels::runtime::keep_awake::KeepAwake;
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::runtime::scaling::Costs;
use bnconv_kernels::runtime::task_log::{self, StepLog};
use bnconv_nn::mnist::{Dataset, Mnist};
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::{BnPath, Exec, ParamKind};
use std::time::Instant;

/// Rounds the timed steps are split into (fewer when there are fewer steps).
const ROUNDS: usize = 5;

/// 1, 2, 4, ... below `cores`, then `cores`.
fn default_threads(cores: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |t| t.checked_mul(2))
        .take_while(|&t| t < cores)
        .collect();
    v.push(cores);
    v
}

/// Step times of one path in one configuration.
#[derive(Default)]
struct PathTimes {
    off_ns: Vec<u64>,
    on_ns: Vec<u64>,
    samples: Samples,
    /// Task logs of the profiled steps, when the scaling model asked for them.
    logs: Vec<StepLog>,
    /// Mean step time of each round's block, profiler off and on.
    round_off_ms: Vec<f64>,
    round_on_ms: Vec<f64>,
}

fn mean_ms(ns: &[u64]) -> f64 {
    ns.iter().sum::<u64>() as f64 / 1e6 / ns.len().max(1) as f64
}

fn median_ms(ns: &[u64]) -> f64 {
    let mut v = ns.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64 / 1e6,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2e6,
    }
}

/// Largest absolute difference, bitwise-equal values counting 0 and NaN against anything else
/// counting as infinite.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.to_bits() == y.to_bits() {
                0.0
            } else {
                let d = (*x as f64 - *y as f64).abs();
                if d.is_nan() {
                    f64::INFINITY
                } else {
                    d
                }
            }
        })
        .fold(0.0, f64::max)
}

/// Every parameter (and statistic) of a trainer's network: name, kind, value, gradient.
fn params(t: &mut Trainer) -> Vec<(String, ParamKind, Vec<f32>, Vec<f32>)> {
    let mut out = Vec::new();
    t.net.visit_params(&mut |p| {
        out.push((p.full_name(), p.kind, p.value.to_vec(), p.grad.to_vec()));
    });
    out
}

fn params_max_diff(a: &mut Trainer, b: &mut Trainer) -> f64 {
    params(a)
        .iter()
        .zip(params(b))
        .map(|(x, y)| max_abs_diff(&x.2, &y.2))
        .fold(0.0, f64::max)
}

/// A trainer after one agreement step, with that step's loss and logits.
struct AgreementStep {
    trainer: Trainer,
    loss: f32,
    logits: Vec<f32>,
}

/// One step of each BN path from the same weights on the same batch, compared.
fn agreement(cfg: &TrainConfig, train: &Dataset) -> Result<Agreement> {
    let run = |bn_path: BnPath| -> Result<AgreementStep> {
        let mut c = cfg.clone();
        c.exec.bn_path = bn_path;
        let mut trainer = Trainer::new(&c, train.len());
        let loss = trainer
            .step(train)
            .with_context(|| format!("agreement step, BN {bn_path}"))?;
        let logits = trainer.net.output().data().to_vec();
        Ok(AgreementStep {
            trainer,
            loss,
            logits,
        })
    };
    Ok(compare_steps(run(BnPath::Fused)?, run(BnPath::Unfused)?))
}

/// The differences between two trainers after a step: loss, logits, every gradient, every
/// parameter and statistic after the update. Passes only when all are 0 (bitwise equal); networks
/// with different parameter lists differ infinitely.
fn compare_steps(mut f: AgreementStep, mut u: AgreementStep) -> Agreement {
    let (fp, up) = (params(&mut f.trainer), params(&mut u.trainer));
    let same_params = fp.len() == up.len() && fp.iter().zip(&up).all(|(a, b)| a.0 == b.0);
    let mut gradients: Vec<NamedDiff> = fp
        .iter()
        .zip(&up)
        .filter(|(a, _)| a.1 == ParamKind::Trainable)
        .map(|(a, b)| NamedDiff {
            name: a.0.clone(),
            max_abs_diff: max_abs_diff(&a.3, &b.3),
        })
        .collect();
    if !same_params {
        gradients.push(NamedDiff {
            name: "(the networks' parameter lists differ)".into(),
            max_abs_diff: f64::INFINITY,
        });
    }
    let gradients_max = gradients.iter().map(|g| g.max_abs_diff).fold(0.0, f64::max);
    let params_max = fp
        .iter()
        .zip(&up)
        .map(|(a, b)| max_abs_diff(&a.2, &b.2))
        .fold(if same_params { 0.0 } else { f64::INFINITY }, f64::max);
    let loss_diff = max_abs_diff(&[f.loss], &[u.loss]);
    let logits_diff = max_abs_diff(&f.logits, &u.logits);
    let tolerance = 0.0;
    let passed = [loss_diff, logits_diff, gradients_max, params_max]
        .iter()
        .all(|d| *d <= tolerance);
    Agreement {
        tolerance,
        loss_abs_diff: loss_diff,
        logits_max_abs_diff: logits_diff,
        gradients_max_abs_diff: gradients_max,
        gradients,
        parameters_after_update_max_abs_diff: params_max,
        passed,
    }
}

/// Runs the warm-up and the timed rounds of both paths on the current pool. Profiled blocks run
/// when `profiled` or `log_tasks`; with `log_tasks` their steps also fill the task log.
fn measure(
    cfg: &TrainConfig,
    train: &Dataset,
    steps: usize,
    warmup: usize,
    profiled: bool,
    log_tasks: bool,
    layers: usize,
) -> Result<([PathTimes; 2], f64)> {
    let mut trainers: Vec<Trainer> = [BnPath::Fused, BnPath::Unfused]
        .iter()
        .map(|&bn_path| {
            let mut c = cfg.clone();
            c.exec.bn_path = bn_path;
            Trainer::new(&c, train.len())
        })
        .collect();
    let mut times: [PathTimes; 2] = Default::default();
    for t in &mut times {
        t.off_ns.reserve(steps);
        t.on_ns.reserve(steps);
    }
    profile::set_enabled(false);
    // As in training runs: the other workers spin for work between the step's parallel loops.
    let _awake = KeepAwake::start();
    for t in &mut trainers {
        for _ in 0..warmup {
            t.step(train).context("warm-up step")?;
        }
    }
    let rounds = ROUNDS.min(steps);
    for r in 0..rounds {
        let block = steps / rounds + usize::from(r < steps % rounds);
        for on in [false, true] {
            if on && !profiled && !log_tasks {
                continue;
            }
            for (t, times) in trainers.iter_mut().zip(times.iter_mut()) {
                let mut block_ns = 0u64;
                for _ in 0..block {
                    // Per-step totals (reset and read outside the timed step) give per-row
                    // medians, which a preempted step on a shared machine does not move.
                    profile::reset();
                    task_log::reset();
                    profile::set_enabled(on);
                    task_log::set_enabled(on && log_tasks);
                    let begin = task_log::now_ns();
                    let start = Instant::now();
                    let step = t.step(train);
                    let ns = start.elapsed().as_nanos() as u64;
                    let end = task_log::now_ns();
                    profile::set_enabled(false);
                    task_log::set_enabled(false);
                    step.context("timed step")?;
                    block_ns += ns;
                    if on {
                        times.on_ns.push(ns);
                        times.samples.push(&profile::snapshot(), layers, ns as f64);
                        if log_tasks {
                            times.logs.push(task_log::take(begin, end));
                        }
                    } else {
                        times.off_ns.push(ns);
                    }
                }
                let round_ms = block_ns as f64 / 1e6 / block as f64;
                if on {
                    times.round_on_ms.push(round_ms);
                } else {
                    times.round_off_ms.push(round_ms);
                }
            }
        }
    }
    let [f, u] = &mut trainers[..] else {
        unreachable!("two trainers")
    };
    Ok((times, params_max_diff(f, u)))
}

/// The cost of one enabled scope and of one disabled scope, in nanoseconds (a tight loop).
fn scope_cost_ns() -> (f64, f64) {
    const N: u32 = 200_000;
    let time = |on: bool| {
        profile::reset();
        profile::set_enabled(on);
        let start = Instant::now();
        for _ in 0..N {
            let _p = std::hint::black_box(profile::scope(Phase::Other));
        }
        let ns = start.elapsed().as_nanos() as f64 / N as f64;
        profile::set_enabled(false);
        profile::reset();
        ns
    };
    (time(true), time(false))
}

const METHOD: &str =
    "Each profiled step is attributed in wall time: caller-level scopes as measured; \
each layer call's wall time not covered by them is split among its in-chunk phases (im2col, conv \
GEMMs, col2im) in proportion to their summed thread time, or filed as 'other'; the step's 'other' \
is time outside every layer and step scope, so a step's rows add up to its measured time. \
ms_per_step is the median over the profiled steps (robust to a preempted step), share is it over \
the median step time; mean_ms_per_step and mean_share are means, which add up exactly.";

pub fn run(args: ProfileArgs) -> Result<()> {
    if let Some(json) = &args.json {
        outpath::check_output("--json", json)?;
        if outpath::is_stdout(json) {
            crate::stdout::report_to_stderr();
        }
    }
    let plot_format = match &args.plot {
        Some(p) => Some(outpath::check_plot_path("--plot", p)?),
        None => None,
    };
    let cores = crate::cli::cores();
    let mut threads: Vec<usize> = if args.threads.is_empty() {
        default_threads(cores)
    } else {
        args.threads
            .iter()
            .map(|&t| to_usize(t, "--threads"))
            .collect::<Result<_>>()?
    };
    let model_threads: Vec<usize> = args
        .model_threads
        .iter()
        .map(|&t| to_usize(t, "--model-threads"))
        .collect::<Result<_>>()?;
    let modelling = !model_threads.is_empty();
    let mut added = Vec::new();
    if modelling {
        // The model's input (1 thread) and its hand-off costs (the smallest count above 1).
        if !threads.contains(&1) {
            added.push(1);
        }
        if cores >= 2 && !threads.iter().any(|&t| t > 1 && t <= cores) {
            added.push(2);
        }
        threads.extend(&added);
    }
    threads.sort_unstable();
    threads.dedup();
    let calibration_threads = threads.iter().copied().find(|&t| t > 1 && t <= cores);
    let profile_threads = threads
        .iter()
        .copied()
        .filter(|&t| t <= cores)
        .max()
        .unwrap_or(threads[0]);
    let steps = to_usize(args.steps, "--steps")?;
    let warmup = to_usize(args.warmup, "--warmup")?;
    let mut cfg = TrainConfig::protocol(args.variant);
    cfg.batch_size = to_usize(args.batch_size, "--batch-size")?;
    cfg.seed = args.seed;
    cfg.exec = Exec {
        gemm: args.gemm,
        bn_path: BnPath::Fused,
        ..Exec::default()
    };
    cfg.batches = steps + warmup;
    let data_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let data = Mnist::load(&data_dir)
        .with_context(|| format!("could not load MNIST from {}", data_dir.display()))?;
    cfg.validate(data.train.len())?;
    if args.eval {
        return crate::commands::profile_eval::run(&args, &cfg, &data, profile_threads, warmup);
    }
    let names: Vec<String> = Trainer::new(&cfg, data.train.len())
        .net
        .layers()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    let isa = bnconv_kernels::simd::active_isa().name();
    outln!(
        "bnconv profile: {} network, batch {}, {steps} timed steps after {warmup} warm-up per path and thread count, seed {}, GEMM {}, SIMD {isa}, {cores} core(s)",
        args.variant, cfg.batch_size, cfg.seed, args.gemm,
    );
    if !args.variant.uses_batch_norm() {
        outln!(
            "note: the {} network has no batch norm, so both paths run the same kernels",
            args.variant
        );
    }
    if !added.is_empty() {
        outln!(
            "note: --model-threads added {} thread(s) to the sweep (the model records tasks at 1 thread and measures hand-offs at 2)",
            added
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    for &t in threads.iter().filter(|&&t| t > cores) {
        outln!("note: {t} threads exceed the {cores} core(s) of this machine: they share cores, so expect no speed-up there");
    }

    let pool = |t: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .context("could not start the thread pool")
    };
    let agreement = pool(profile_threads)?.install(|| agreement(&cfg, &data.train))?;
    let (scope_on, scope_off) = scope_cost_ns();

    let mut sweep_raw = Vec::new();
    let mut profiled = None;
    let mut base_logs = Vec::new();
    let mut calibration_logs = Vec::new();
    for &t in &threads {
        let is_profiled = t == profile_threads;
        let log_tasks = modelling && (t == 1 || Some(t) == calibration_threads);
        let (mut times, diff) = pool(t)?.install(|| {
            measure(
                &cfg,
                &data.train,
                steps,
                warmup,
                is_profiled,
                log_tasks,
                names.len(),
            )
        })?;
        let ms = [mean_ms(&times[0].off_ns), mean_ms(&times[1].off_ns)];
        let med = [median_ms(&times[0].off_ns), median_ms(&times[1].off_ns)];
        let rounds = [times[0].round_off_ms.clone(), times[1].round_off_ms.clone()];
        sweep_raw.push((t, ms, med, diff, rounds));
        if t == 1 {
            base_logs = std::mem::take(&mut times[0].logs);
        } else if Some(t) == calibration_threads {
            calibration_logs = std::mem::take(&mut times[0].logs);
        }
        if is_profiled {
            profiled = Some(times);
        }
    }
    let images = cfg.batch_size as f64;
    let (base_t, base_ms) = (sweep_raw[0].0, sweep_raw[0].1);
    let sweep: Vec<SweepEntry> = sweep_raw
        .iter()
        .map(|(t, ms, med, diff, rounds)| {
            let (t, ms, med, diff) = (*t, *ms, *med, *diff);
            let tp = |i: usize| {
                let speedup = base_ms[i] / ms[i];
                Throughput {
                    round_spread: profile_trust::spread(&rounds[i]),
                    round_ms_per_step: rounds[i].clone(),
                    images_per_second: images * 1e3 / ms[i],
                    ms_per_step: ms[i],
                    median_ms_per_step: med[i],
                    speedup,
                    efficiency: speedup * base_t as f64 / t as f64,
                }
            };
            SweepEntry {
                threads: t,
                exceeds_cores: t > cores,
                fused: tp(0),
                unfused: tp(1),
                fused_speedup: ms[1] / ms[0],
                parameters_max_abs_diff_after_run: diff,
            }
        })
        .collect();

    let times = profiled.expect("the profiled thread count is in the sweep");
    let path_total = |p: &PathTimes| {
        let mean = mean_ms(&p.off_ns);
        PathTotal {
            profiled_ms_per_step: median_ms(&p.on_ns),
            profiled_mean_ms_per_step: mean_ms(&p.on_ns),
            unprofiled_ms_per_step: median_ms(&p.off_ns),
            unprofiled_mean_ms_per_step: mean,
            unprofiled_images_per_second: images * 1e3 / mean,
            scopes_per_step: p.samples.scopes as f64 / steps as f64,
            profiled_round_ms_per_step: p.round_on_ms.clone(),
            profiled_round_spread: profile_trust::spread(&p.round_on_ms),
            overcounted_ms_per_step: p
                .samples
                .steps
                .iter()
                .map(|a| a.overcount_ns / 1e6)
                .fold(0.0, f64::max),
        }
    };
    let (ft, ut) = (path_total(&times[0]), path_total(&times[1]));
    let breakdown = pr::breakdown(&names, &times[0].samples, &times[1].samples);
    let scaling = if modelling {
        let measured: Vec<(usize, f64)> = sweep_raw
            .iter()
            .filter(|e| e.0 <= cores)
            .map(|e| (e.0, e.2[0]))
            .collect();
        let calibration = calibration_threads.map(|t| (t, &calibration_logs[..]));
        Some(
            scaling_report::build(
                &names,
                cfg.batch_size,
                &base_logs,
                calibration,
                &model_threads,
                &measured,
                args.model_handoff_us.map(|(steal, join)| Costs {
                    steal_ns: steal * 1e3,
                    join_ns: join * 1e3,
                }),
            )
            .map_err(anyhow::Error::msg)
            .context("the scaling model")?,
        )
    } else {
        None
    };
    let trust = assess_trust(&sweep, &ft, &ut, profile_threads, steps.min(ROUNDS));
    let doc = ProfileDoc {
        bnconv_version: env!("CARGO_PKG_VERSION"),
        command: "profile",
        variant: args.variant,
        batch_size: cfg.batch_size,
        steps,
        warmup,
        seed: cfg.seed,
        gemm: args.gemm.name(),
        isa,
        cores,
        threads: threads.clone(),
        profile_threads,
        method: METHOD,
        breakdown,
        overhead: Overhead {
            scope_enabled_ns: scope_on,
            scope_disabled_ns: scope_off,
            fused_measured: ft.profiled_ms_per_step / ft.unprofiled_ms_per_step - 1.0,
            unfused_measured: ut.profiled_ms_per_step / ut.unprofiled_ms_per_step - 1.0,
            fused_estimated: ft.scopes_per_step * scope_on / 1e6 / ft.unprofiled_ms_per_step,
            unfused_estimated: ut.scopes_per_step * scope_on / 1e6 / ut.unprofiled_ms_per_step,
        },
        total: TotalOut {
            speedup_profiled: ut.profiled_ms_per_step / ft.profiled_ms_per_step,
            speedup_unprofiled: ut.unprofiled_ms_per_step / ft.unprofiled_ms_per_step,
            fused: ft,
            unfused: ut,
        },
        sweep,
        agreement,
        scaling,
        trust,
    };
    print_doc(&doc);
    if let Some(s) = &doc.scaling {
        scaling_report::print(s);
    }
    outln!("\n{}", profile_trust::verdict_line(&doc.trust));
    if let Some(path) = &args.json {
        report::write_json_value(path, &doc)?;
        outln!("wrote {}", outpath::shown(path));
    }
    if let (Some(path), Some(format)) = (&args.plot, plot_format) {
        plot::profile_bars(path, format, &doc)?;
        outln!("wrote {}", path.display());
    }
    let a = &doc.agreement;
    let worst = [
        a.loss_abs_diff,
        a.logits_max_abs_diff,
        a.gradients_max_abs_diff,
        a.parameters_after_update_max_abs_diff,
    ]
    .into_iter()
    .chain(
        doc.sweep
            .iter()
            .map(|e| e.parameters_max_abs_diff_after_run),
    )
    .fold(0.0, f64::max);
    if worst > a.tolerance {
        bail!(
            "fused and unfused BN disagree: largest difference {worst:e}, tolerance {}",
            a.tolerance
        );
    }
    Ok(())
}

/// The spread of every configuration's rounds: each thread count and path of the sweep (profiler
/// off) and the profiled blocks behind the phase table.
fn assess_trust(
    sweep: &[SweepEntry],
    fused: &PathTotal,
    unfused: &PathTotal,
    profile_threads: usize,
    rounds: usize,
) -> Trust {
    let threads = |t: usize| format!("{t} thread{}", if t == 1 { "" } else { "s" });
    let mut sets = Vec::new();
    for e in sweep {
        for (path, tp) in [("fused", &e.fused), ("unfused", &e.unfused)] {
            sets.push(RoundSet {
                label: format!("{}, {path}, profiler off", threads(e.threads)),
                spread: tp.round_spread,
                counts: !e.exceeds_cores,
            });
        }
    }
    for (path, total) in [("fused", fused), ("unfused", unfused)] {
        sets.push(RoundSet {
            label: format!("{}, {path}, profiler on", threads(profile_threads)),
            spread: total.profiled_round_spread,
            counts: true,
        });
    }
    profile_trust::assess(rounds, &sets)
}

/// A difference for the agreement line: `0` when bitwise equal.
fn diff(d: f64) -> String {
    if d == 0.0 {
        "0".to_string()
    } else {
        format!("{d:.3e}")
    }
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn print_doc(d: &ProfileDoc) {
    let a = &d.agreement;
    let after_run = d
        .sweep
        .iter()
        .map(|e| e.parameters_max_abs_diff_after_run)
        .fold(0.0, f64::max);
    outln!(
        "\nagreement, fused vs unfused, one step from the same weights on the same batch ({} thread(s)): max |difference|: loss {}, logits {}, gradients {} ({} tensors), parameters after Adam {}; after every timed step: parameters {}; tolerance {} (bitwise): {}",
        d.profile_threads,
        diff(a.loss_abs_diff),
        diff(a.logits_max_abs_diff),
        diff(a.gradients_max_abs_diff),
        a.gradients.len(),
        diff(a.parameters_after_update_max_abs_diff),
        diff(after_run),
        a.tolerance,
        if a.passed && after_run <= a.tolerance { "OK" } else { "FAILED" },
    );
    outln!(
        "\nphase profile at {} thread(s): median wall ms per step over the profiled steps, share of the median step, speed-up = unfused time / fused time",
        d.profile_threads
    );
    pr::print_breakdown(&d.breakdown);
    let (f, u) = (&d.total.fused, &d.total.unfused);
    outln!(
        "{:<31} {:>10.3} {:>6.1}% {:>11.3} {:>6.1}% {:>8.2}x",
        "step, profiled",
        f.profiled_ms_per_step,
        100.0,
        u.profiled_ms_per_step,
        100.0,
        d.total.speedup_profiled
    );
    outln!(
        "{:<31} {:>10.3} {:>7} {:>11.3} {:>7} {:>8.2}x",
        "step, profiler off",
        f.unprofiled_ms_per_step,
        "",
        u.unprofiled_ms_per_step,
        "",
        d.total.speedup_unprofiled
    );
    let o = &d.overhead;
    outln!(
        "profiler overhead: measured {} fused, {} unfused (profiled vs unprofiled steps; noisy on a shared machine); estimated {} and {} ({:.0} and {:.0} scopes per step x {:.0} ns per enabled scope; {:.1} ns when disabled)",
        pct(o.fused_measured),
        pct(o.unfused_measured),
        pct(o.fused_estimated),
        pct(o.unfused_estimated),
        f.scopes_per_step,
        u.scopes_per_step,
        o.scope_enabled_ns,
        o.scope_disabled_ns,
    );
    outln!(
        "rounds: {} per path, alternating the paths; the profiled rounds' mean step times spread by {} fused, {} unfused (slowest round over fastest)",
        d.trust.rounds,
        profile_trust::shown(f.profiled_round_spread),
        profile_trust::shown(u.profiled_round_spread),
    );
    outln!(
        "\nthread sweep, profiler off ({} steps per path after {} warm-up; speed-up and efficiency relative to {} thread(s); spread: slowest round over fastest, the larger of the two paths):",
        d.steps, d.warmup, d.sweep[0].threads
    );
    outln!(
        "{:>7} {:>12} {:>9} {:>8} {:>10} {:>14} {:>9} {:>8} {:>10} {:>13} {:>7}",
        "threads",
        "fused img/s",
        "ms/step",
        "speed-up",
        "efficiency",
        "unfused img/s",
        "ms/step",
        "speed-up",
        "efficiency",
        "unfused/fused",
        "spread"
    );
    for e in &d.sweep {
        let spread = match (e.fused.round_spread, e.unfused.round_spread) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        outln!(
            "{:>7} {:>12.0} {:>9.2} {:>7.2}x {:>9.0}% {:>14.0} {:>9.2} {:>7.2}x {:>9.0}% {:>12.2}x {:>7}{}",
            e.threads,
            e.fused.images_per_second,
            e.fused.ms_per_step,
            e.fused.speedup,
            100.0 * e.fused.efficiency,
            e.unfused.images_per_second,
            e.unfused.ms_per_step,
            e.unfused.speedup,
            100.0 * e.unfused.efficiency,
            e.fused_speedup,
            profile_trust::shown(spread),
            if e.exceeds_cores { "  (more threads than cores)" } else { "" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnconv_nn::Variant;

    /// Eight synthetic images, enough for a step of four.
    fn images() -> Dataset {
        let pixels = (0..8 * Dataset::PIXELS)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        Dataset::new(pixels, (0..8).collect()).expect("a consistent set")
    }

    /// One step of `cfg`, after `perturb` has had the trainer's network.
    fn step(
        cfg: &TrainConfig,
        data: &Dataset,
        perturb: impl FnOnce(&mut Trainer),
    ) -> AgreementStep {
        let mut trainer = Trainer::new(cfg, data.len());
        perturb(&mut trainer);
        let loss = trainer.step(data).expect("a finite loss");
        let logits = trainer.net.output().data().to_vec();
        AgreementStep {
            trainer,
            loss,
            logits,
        }
    }

    /// The check can fail: it passes two identical steps (fused and unfused, as `profile` runs
    /// them) and fails a trainer with one weight moved by one ulp before the step, which shows in
    /// the gradients and the parameters (the loss and logits may round to the same bits).
    #[test]
    fn the_agreement_check_fails_a_perturbed_trainer() {
        let data = images();
        let mut cfg = TrainConfig::protocol(Variant::Bn);
        cfg.batch_size = 4;
        let fused = || step(&cfg, &data, |_| {});
        let mut unfused_cfg = cfg.clone();
        unfused_cfg.exec.bn_path = BnPath::Unfused;
        let same = compare_steps(fused(), step(&unfused_cfg, &data, |_| {}));
        assert!(same.passed, "{same:?}");
        let nudged = step(&unfused_cfg, &data, |t| {
            t.net.visit_params(&mut |p| {
                if p.full_name() == "conv10.weight" {
                    p.value[0] = f32::from_bits(p.value[0].to_bits() + 1);
                }
            })
        });
        let a = compare_steps(fused(), nudged);
        assert!(!a.passed, "{a:?}");
        for (what, d) in [
            ("gradients", a.gradients_max_abs_diff),
            ("parameters", a.parameters_after_update_max_abs_diff),
        ] {
            assert!(d > 0.0 && d.is_finite(), "{what}: {d}");
        }
    }
}
