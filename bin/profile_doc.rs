//! The figures of `bnconv profile`, as printed and written with `--json` (and drawn by
//! `--plot`).

use crate::profile_report::Breakdown;
use crate::profile_trust::Trust;
use crate::scaling_report::ScalingDoc;
use bnconv_nn::Variant;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct NamedDiff {
    pub name: String,
    pub max_abs_diff: f64,
}

/// Fused against unfused after one training step from the same weights on the same batch.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    /// Largest allowed difference: 0, the paths must agree bitwise.
    pub tolerance: f64,
    pub loss_abs_diff: f64,
    pub logits_max_abs_diff: f64,
    /// Over every trainable parameter's gradient.
    pub gradients_max_abs_diff: f64,
    pub gradients: Vec<NamedDiff>,
    /// Every parameter and BN moving statistic after the Adam update.
    pub parameters_after_update_max_abs_diff: f64,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub images_per_second: f64,
    pub ms_per_step: f64,
    pub median_ms_per_step: f64,
    /// Images/s relative to the smallest thread count of the sweep.
    pub speedup: f64,
    /// `speedup * smallest threads / threads`.
    pub efficiency: f64,
    /// Mean step time of each round.
    pub round_ms_per_step: Vec<f64>,
    /// Slowest round / fastest round - 1 (`None` with one round).
    pub round_spread: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepEntry {
    pub threads: usize,
    pub exceeds_cores: bool,
    pub fused: Throughput,
    pub unfused: Throughput,
    /// Unfused step time / fused step time.
    pub fused_speedup: f64,
    /// Fused vs unfused parameters after every step of this configuration (expected 0).
    pub parameters_max_abs_diff_after_run: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PathTotal {
    /// Median step time with the profiler on.
    pub profiled_ms_per_step: f64,
    pub profiled_mean_ms_per_step: f64,
    /// Median step time with the profiler off.
    pub unprofiled_ms_per_step: f64,
    pub unprofiled_mean_ms_per_step: f64,
    /// Images over the unprofiled steps / their total time.
    pub unprofiled_images_per_second: f64,
    /// Phase and layer scopes closed per profiled step.
    pub scopes_per_step: f64,
    /// Mean profiled step time of each round.
    pub profiled_round_ms_per_step: Vec<f64>,
    /// Slowest profiled round / fastest - 1 (`None` with one round).
    pub profiled_round_spread: Option<f64>,
    /// The largest time, over the profiled steps, that scopes claimed beyond their enclosing span
    /// (a layer pass or the step; see `profile_report::Attribution::overcount_ns`): 0 unless
    /// a scope is counted twice.
    pub overcounted_ms_per_step: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TotalOut {
    pub fused: PathTotal,
    pub unfused: PathTotal,
    /// Unfused / fused median step time, profiled.
    pub speedup_profiled: f64,
    /// Unfused / fused median step time, profiler off.
    pub speedup_unprofiled: f64,
}

/// What the profiler costs.
#[derive(Clone, Debug, Serialize)]
pub struct Overhead {
    /// One enabled scope (two clock reads, two atomic adds), from a tight loop.
    pub scope_enabled_ns: f64,
    /// One disabled scope (an atomic load and a branch).
    pub scope_disabled_ns: f64,
    /// Profiled / unprofiled median step time - 1 (noisy on a shared machine).
    pub fused_measured: f64,
    pub unfused_measured: f64,
    /// Scopes per step x enabled scope cost / unprofiled step time.
    pub fused_estimated: f64,
    pub unfused_estimated: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileDoc {
    pub bnconv_version: &'static str,
    pub command: &'static str,
    pub variant: Variant,
    pub batch_size: usize,
    pub steps: usize,
    pub warmup: usize,
    pub seed: u64,
    pub gemm: &'static str,
    pub isa: &'static str,
    pub cores: usize,
    pub threads: Vec<usize>,
    pub profile_threads: usize,
    pub method: &'static str,
    #[serde(flatten)]
    pub breakdown: Breakdown,
    pub total: TotalOut,
    pub overhead: Overhead,
    pub sweep: Vec<SweepEntry>,
    pub agreement: Agreement,
    /// The scaling model (`--model-threads`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingDoc>,
    /// The spread between rounds, and whether the timings can be trusted.
    pub trust: Trust,
}
