//! Command-line options, validated before any work starts.

use crate::outpath::{self, ImageFormat};
use anyhow::Result;
use bnconv_kernels::runtime::shards::{DEFAULT_SHARDS, MAX_SHARDS};
use bnconv_kernels::GemmBackend;
use bnconv_nn::adam::AdamConfig;
use bnconv_nn::distributed::Team;
use bnconv_nn::train::TrainConfig;
use bnconv_nn::{BnPath, Exec, Variant};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "bnconv",
    version,
    about = "Trains the 20-layer seed CNN on MNIST with and without batch norm, fast, on the CPU.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `bnconv` runs `compare` with these options.
    #[command(flatten)]
    pub compare: CompareArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train several variants one after the other and compare them (the default).
    Compare(CompareArgs),
    /// Train one variant.
    Train(TrainArgs),
    /// Evaluate a checkpoint: validation and test accuracy and loss, eval images/s.
    Eval(EvalArgs),
    /// Time each layer and phase of a training step, fused vs unfused BN+ReLU, and sweep threads.
    Profile(ProfileArgs),
    /// Classify PNG or PGM images of digits with a checkpoint.
    Predict(PredictArgs),
    /// Train every variant with every seed, several runs at once, and compare the variants.
    Sweep(SweepArgs),
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Variants to train, comma-separated: plain, bn, bn-lowlevel.
    #[arg(long, value_delimiter = ',', value_parser = parse_variant, default_value = "plain,bn")]
    pub variants: Vec<Variant>,
    /// Save each variant's final state as a safetensors checkpoint, the variant name inserted
    /// before the extension: `--save run.safetensors` writes run.plain.safetensors and
    /// run.bn.safetensors.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// plain, bn or bn-lowlevel.
    #[arg(long, value_parser = parse_variant, default_value = "bn")]
    pub variant: Variant,
    /// Save the final state (weights, BN statistics, Adam and data-order state) as a safetensors
    /// checkpoint, usable by `eval --checkpoint` and `train --resume`. Also written when Ctrl-C
    /// or SIGTERM stops the run.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Also save the resumable state every N batches (the --save file, replaced atomically).
    #[arg(long, value_name = "N", value_parser = parse_count, requires = "save")]
    pub save_every: Option<u64>,
    /// Continue the run saved in this checkpoint up to its recorded total of batches, or to
    /// --batches in total (counted from the run's start). Variant, batch size, learning rate, seed,
    /// shard count and (unless given) GEMM come from the checkpoint.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["variant", "batch_size", "lr", "seed", "shards"])]
    pub resume: Option<PathBuf>,
    /// Load the --resume checkpoint without checking its digests (a file edited on purpose).
    #[arg(long, requires = "resume")]
    pub no_verify: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `train --save` or `compare --save`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Load the checkpoint without checking its digests (a file edited on purpose).
    #[arg(long)]
    pub no_verify: bool,
    /// Directory of the MNIST IDX files (gzipped or not). Default: $BNCONV_DATA, else
    /// ./data/mnist, else the data/mnist of the source tree bnconv was built from.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads (default: every core).
    #[arg(long, value_parser = parse_count)]
    pub threads: Option<u64>,
    /// Images per evaluation batch (above 128, each thread runs the whole network on 16 images
    /// at a time; otherwise layer by layer; does not change results).
    #[arg(long, default_value_t = 500, value_parser = parse_count)]
    pub eval_batch: u64,
    /// Batch norm + ReLU kernels: fused or unfused.
    #[arg(long, default_value = "fused", value_parser = BnPath::from_name)]
    pub bn: BnPath,
    /// GEMM: bnconv (its own tiles), matrixmultiply, or blas when built with `--features blas`.
    #[arg(long, default_value = "bnconv", value_parser = GemmBackend::from_name)]
    pub gemm: GemmBackend,
    /// Also write the figures as JSON to this file (`-`: standard output, the report then goes
    /// to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The set that --predictions and the confusion matrix cover.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Write one CSV row per image of --split: index,label,predicted,logit0,...,logit9 (`-`:
    /// standard output, the report then goes to standard error).
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Draw the confusion matrix of --split as a heat map to this .png or .svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// One of the evaluation sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The first 5000 images of the training file.
    Validation,
    /// The 10000 images of the t10k files.
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `train --save` or `compare --save`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Load the checkpoint without checking its digests (a file edited on purpose).
    #[arg(long)]
    pub no_verify: bool,
    /// PNG or PGM files, any size, grayscale or colour. Digits are expected white on black, as
    /// in MNIST (see --invert).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// The images show dark digits on a light background: invert them first.
    #[arg(long)]
    pub invert: bool,
    /// How an image that is not 28x28 becomes 28x28 (a 28x28 image is used as it is).
    #[arg(long, value_enum, default_value = "mnist")]
    pub fit: crate::digit_image::Fit,
    /// Classes listed for each image, most likely first.
    #[arg(long, default_value_t = 3, value_parser = parse_count_up_to::<10>)]
    pub top: u64,
    /// Worker threads (default: every core).
    #[arg(long, value_parser = parse_count)]
    pub threads: Option<u64>,
    /// Also write every prediction (and every error) as JSON to this file (`-`: standard
    /// output, the report then goes to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Variants to train, comma-separated: plain, bn, bn-lowlevel.
    #[arg(long, value_delimiter = ',', value_parser = parse_variant, default_value = "plain,bn")]
    pub variants: Vec<Variant>,
    /// Seeds, as a comma-separated list of numbers and ranges: 1-8, or 1,2,10-12.
    #[arg(long, value_parser = parse_seeds, default_value = "1-8")]
    pub seeds: Seeds,
    /// Runs at once, each on a thread pool of its own [default: the cores / --threads-per-job,
    /// at least 1].
    #[arg(long, value_parser = parse_count_up_to::<4096>)]
    pub jobs: Option<u64>,
    /// Threads of each job's pool.
    #[arg(long, default_value_t = 1, value_parser = parse_count_up_to::<4096>)]
    pub threads_per_job: u64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also write every run and the per-variant summary as JSON to this file (`-`: standard
    /// output, the report then goes to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw every run's validation accuracy and the final test accuracies to this .png or .svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print only the summary (no line per finished run).
    #[arg(long)]
    pub quiet: bool,
}

/// The seeds of a sweep, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// Parses `1-8`, `3`, `1,2,10-12`: numbers and inclusive ranges, each seed once.
pub fn parse_seeds(s: &str) -> Result<Seeds, String> {
    /// A bound on the list, so that a typo like `1-1000000000` fails at once.
    const MAX_SEEDS: u64 = 100_000;
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{t:?} is not a seed (a whole number from 0)"))
    };
    let mut seeds = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in s.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(format!("the range {part:?} runs backwards"));
        }
        if (seeds.len() as u64).saturating_add((last - first).saturating_add(1)) > MAX_SEEDS {
            return Err(format!("more than {MAX_SEEDS} seeds"));
        }
        for seed in first..=last {
            if !seen.insert(seed) {
                return Err(format!("seed {seed} is listed twice"));
            }
            seeds.push(seed);
        }
    }
    Ok(Seeds(seeds))
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// plain, bn or bn-lowlevel.
    #[arg(long, value_parser = Variant::from_name, default_value = "bn")]
    pub variant: Variant,
    /// Timed training steps per path and configuration, after the warm-up (at most 10000).
    #[arg(long, default_value_t = 50, value_parser = parse_count_up_to::<10_000>)]
    pub steps: u64,
    /// Untimed training steps first (per trainer).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub warmup: u64,
    /// Thread counts to sweep, comma-separated [default: 1, 2, 4, ... up to the cores, and the
    /// core count]. The phase table is taken at the largest count not above the cores.
    #[arg(long, value_delimiter = ',', value_parser = parse_count_up_to::<4096>)]
    pub threads: Vec<u64>,
    /// Images per training step.
    #[arg(long, default_value_t = 64, value_parser = parse_count)]
    pub batch_size: u64,
    /// Seeds the initial weights and the batch order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// GEMM: bnconv (its own tiles), matrixmultiply, or blas when built with `--features blas`.
    #[arg(long, default_value = "bnconv", value_parser = GemmBackend::from_name)]
    pub gemm: GemmBackend,
    /// Directory of the MNIST IDX files (gzipped or not). Default: $BNCONV_DATA, else
    /// ./data/mnist, else the data/mnist of the source tree bnconv was built from.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw per-layer fused vs unfused times to this .png or .svg file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Predict the fused step time on these thread counts with the scaling model, e.g.
    /// 4,8,16,32,64: tasks recorded at 1 thread, hand-off costs measured at 2 (both added to the
    /// sweep), checked against the sweep's measured thread counts (see docs/many-core.md).
    #[arg(long, value_delimiter = ',', value_parser = parse_count_up_to::<4096>)]
    pub model_threads: Vec<u64>,
    /// With --model-threads, predict with these hand-off costs, STEAL,JOIN in microseconds (e.g.
    /// 1.2,1.0), instead of the ones measured at 2 threads (still reported): when the profile
    /// doubts its own measurement on a busy machine, or to compare builds at equal costs.
    #[arg(long, value_name = "STEAL,JOIN", value_parser = parse_handoff)]
    pub model_handoff_us: Option<(f64, f64)>,
    /// Profile the evaluation instead of training steps: after the warm-up steps, the test set
    /// per path (whole network per task, and layer by layer) in alternated rounds, with each
    /// layer's time and GFLOP/s, at the largest --threads count not above the cores.
    #[arg(long, conflicts_with_all = ["plot", "model_threads"])]
    pub eval: bool,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Seeds the initial weights and the data order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: every core).
    #[arg(long, value_parser = parse_count)]
    pub threads: Option<u64>,
    /// Also write every figure as JSON to this file (`-`: standard output, the report then goes
    /// to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print only the final results and the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Draw accuracy and loss against the batch number for each variant to this .png or .svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// How each training run goes: the settings `train`, `compare` and `sweep` share.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Training steps [default: 800; with --resume, the run's recorded total].
    #[arg(long, value_parser = parse_count)]
    pub batches: Option<u64>,
    /// Images per training step.
    #[arg(long, default_value_t = 64, value_parser = parse_count)]
    pub batch_size: u64,
    /// Adam learning rate (positive, finite).
    #[arg(long, default_value_t = 0.002, value_parser = parse_lr, allow_negative_numbers = true)]
    pub lr: f32,
    /// Batch norm + ReLU kernels: fused (one pass) or unfused (BN pass, then ReLU pass).
    #[arg(long, default_value = "fused", value_parser = BnPath::from_name)]
    pub bn: BnPath,
    /// GEMM: bnconv (its own tiles), matrixmultiply, or blas when built with `--features blas`
    /// [default: bnconv; with --resume, the one the run trained with].
    #[arg(long, value_parser = GemmBackend::from_name)]
    pub gemm: Option<GemmBackend>,
    /// Directory of the MNIST IDX files (gzipped or not). Default: $BNCONV_DATA, else
    /// ./data/mnist, else the data/mnist of the source tree bnconv was built from.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images per evaluation batch when evaluating whole sets (above 128, each thread runs the
    /// whole network on 16 images at a time; otherwise layer by layer; does not change results).
    #[arg(long, default_value_t = 500, value_parser = parse_count)]
    pub eval_batch: u64,
    /// Fixed groups of images each training batch's sums are cut into (a power of two up to 64):
    /// part of the numeric definition, like the batch size. Runs with the same value give the
    /// same bits on any number of threads, and on any number of MPI processes that divides it.
    #[arg(long, default_value_t = DEFAULT_SHARDS as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_SHARDS as u64))]
    pub shards: u64,
}

impl RunArgs {
    /// The kernels' settings, for one process alone.
    pub fn exec(&self) -> Exec {
        Exec {
            gemm: self.gemm.unwrap_or_default(),
            bn_path: self.bn,
            // At most MAX_SHARDS (clap's range), so it fits.
            shards: self.shards as usize,
            ..Exec::default()
        }
    }

    /// `--data`, or [`default_data_dir`].
    pub fn data_dir(&self) -> Result<PathBuf> {
        match &self.data {
            Some(dir) => Ok(dir.clone()),
            None => default_data_dir(),
        }
    }

    /// `--batches` as given.
    pub fn batches(&self) -> Result<Option<usize>> {
        self.batches.map(|b| to_usize(b, "--batches")).transpose()
    }

    /// The run of `variant` from `seed` these settings describe.
    pub fn config(&self, variant: Variant, seed: u64) -> Result<TrainConfig> {
        Ok(TrainConfig {
            variant,
            batches: self
                .batches()?
                .unwrap_or(TrainConfig::protocol(variant).batches),
            batch_size: to_usize(self.batch_size, "--batch-size")?,
            adam: AdamConfig {
                lr: self.lr,
                ..AdamConfig::default()
            },
            seed,
            exec: self.exec(),
            eval_batch: to_usize(self.eval_batch, "--eval-batch")?,
        })
    }
}

fn parse_variant(s: &str) -> Result<Variant, String> {
    Variant::from_name(s)
}

/// A count of at least 1 (threads, batches, images).
fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

/// A count of at least 1 and at most `MAX` (a bound that catches typos such as `--jobs 40000`).
fn parse_count_up_to<const MAX: u64>(s: &str) -> Result<u64, String> {
    match parse_count(s)? {
        n if n > MAX => Err(format!("must be at most {MAX}")),
        n => Ok(n),
    }
}

/// Two hand-off costs in microseconds, `STEAL,JOIN`, each finite and not negative.
fn parse_handoff(s: &str) -> Result<(f64, f64), String> {
    let cost = |t: &str| match t.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!(
            "{t:?} is not a hand-off cost (microseconds, finite, not negative)"
        )),
    };
    match s.split_once(',') {
        Some((a, b)) => Ok((cost(a)?, cost(b)?)),
        None => Err(format!(
            "{s:?}: expected STEAL,JOIN in microseconds, e.g. 1.2,1.0"
        )),
    }
}

fn parse_lr(s: &str) -> Result<f32, String> {
    let lr: f32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(format!(
            "the learning rate must be positive and finite, got {s}"
        ))
    }
}

/// Options resolved into what the run needs.
pub struct Plan {
    pub threads: usize,
    pub data_dir: PathBuf,
    /// Whether `--data` was given (a resume command must then repeat it).
    pub data_given: bool,
    /// `--batches` as given.
    pub batches: Option<usize>,
    /// Whether `--gemm` was given (else a resumed run keeps the one it trained with).
    pub gemm_given: bool,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    pub exec: Exec,
    pub plot: Option<(PathBuf, ImageFormat)>,
    base: TrainConfig,
}

impl Plan {
    pub fn config(&self, variant: Variant) -> TrainConfig {
        TrainConfig {
            variant,
            ..self.base.clone()
        }
    }
}

/// A count from the command line as a `usize`, or a clear error on a 32-bit machine.
pub fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| anyhow::anyhow!("{what} {v} is too large for this machine"))
}

impl CommonArgs {
    /// The run these options ask for, as this process of `team` runs it (only rank 0 writes the
    /// output files, so only it checks them).
    pub fn plan(&self, team: &Team) -> Result<Plan> {
        let threads = threads_option(self.threads)?;
        let root = team.is_root();
        if let (Some(json), true) = (&self.json, root) {
            outpath::check_output("--json", json)?;
        }
        let plot = match (&self.plot, root) {
            (Some(p), true) => Some((p.clone(), outpath::check_plot_path("--plot", p)?)),
            _ => None,
        };
        let exec = Exec {
            team: team.clone(),
            ..self.run.exec()
        };
        Ok(Plan {
            threads,
            data_dir: self.run.data_dir()?,
            data_given: self.run.data.is_some(),
            batches: self.run.batches()?,
            gemm_given: self.run.gemm.is_some(),
            json: self.json.clone().filter(|_| root),
            quiet: self.quiet,
            exec: exec.clone(),
            plot,
            base: TrainConfig {
                exec,
                ..self.run.config(Variant::Bn, self.seed)?
            },
        })
    }
}

/// The environment variable naming the default MNIST directory.
pub const DATA_VAR: &str = "BNCONV_DATA";

/// The MNIST directory when `--data` is not given: `$BNCONV_DATA` if set (and not empty), else
/// `data/mnist` under the current directory if it exists, else the copy in the source tree this
/// binary was built from. An error names all three when none exists.
pub fn default_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_VAR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let local = PathBuf::from("data/mnist");
    let built = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"));
    if local.is_dir() {
        Ok(local)
    } else if built.is_dir() {
        Ok(built)
    } else {
        anyhow::bail!(
            "no MNIST directory found: ${DATA_VAR} is not set, and neither ./{} nor {} exists; \
             pass --data DIR or set {DATA_VAR}",
            local.display(),
            built.display()
        )
    }
}

/// The cores this machine offers.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--threads` (default: every core), with a warning on stderr when it asks for more threads than
/// there are cores (they would share cores and slow every step).
pub fn threads_option(threads: Option<u64>) -> Result<usize> {
    let cores = cores();
    let Some(t) = threads else {
        return Ok(cores);
    };
    let t = to_usize(t, "--threads")?;
    if t > cores {
        eprintln!(
            "warning: --threads {t} is more than the {cores} core(s) of this machine: the extra \
             threads share cores and slow each step down"
        );
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_numbers_and_ranges_each_once() {
        let seeds = |s: &str| parse_seeds(s).map(|s| s.0);
        assert_eq!(seeds("1-8").unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(seeds("5").unwrap(), [5]);
        assert_eq!(seeds("3,1, 10-12").unwrap(), [3, 1, 10, 11, 12]);
        assert_eq!(seeds("0-0").unwrap(), [0]);
        for (bad, why) in [
            ("8-1", "backwards"),
            ("1,x", "not a seed"),
            ("", "not a seed"),
            ("1-", "not a seed"),
            ("-3", "not a seed"),
            ("1-3,2", "seed 2 is listed twice"),
            ("0-18446744073709551615", "more than"),
        ] {
            let err = seeds(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
