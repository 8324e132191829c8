//! A low-overhead phase profiler for training steps: nanosecond totals per (layer, phase), kept in
//! static atomics, switched on only by `bnconv profile`.
//!
//! When disabled (the default) a scope costs one relaxed atomic load and a branch, and records
//! nothing. When enabled, a scope reads the clock twice and adds the elapsed time with one
//! relaxed `fetch_add`; nothing allocates.
//!
//! Two kinds of scope, because work inside rayon chunks runs on several threads at once:
//! - [`scope`]: on the caller's thread, outside any parallel region (a whole BN pass, a dense
//!   GEMM, Adam). Its time is wall time.
//! - [`thread_scope`]: inside a parallel chunk (the im2col of one chunk, its GEMM). Its time is
//!   summed over threads: thread time, which exceeds wall time when chunks overlap.
//!
//! [`layer`] wraps one layer's forward or backward call (the network does this) and records its
//! wall time; it also sets the "current layer" that the inner scopes are filed under. A report
//! turns thread time into wall time per layer and pass: the layer's wall time minus its
//! caller-level scopes is split among its thread-level phases in proportion to their thread time.
//!
//! Adding a scope to a kernel: `let _p = profile::scope(Phase::BnApply);` (or `thread_scope`
//! inside a `par_chunks` closure) at the top of the block to time; it records when dropped.

use crate::runtime::task_log::{self, MarkKind};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// What a piece of a training step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// im2col of a convolution's input (per chunk, thread time).
    Im2col,
    /// A convolution's forward GEMM, bias included (per chunk, thread time).
    ConvGemmForward,
    /// Batch-norm statistics (mean, variance, moving averages, folded scale).
    BnStats,
    /// The BN apply pass: fused BN+ReLU, or BN alone on the unfused path.
    BnApply,
    /// A separate ReLU pass (the unfused path, or the plain network's ReLU layers).
    Relu,
    /// A dense layer's forward GEMM (and bias).
    DenseForward,
    /// Sigmoid cross-entropy and its gradient.
    Loss,
    /// col2im of a convolution's column gradient (per chunk, thread time).
    Col2im,
    /// The column-gradient GEMM `dy W^T` (per chunk, thread time).
    ConvGemmBackwardData,
    /// The weight-gradient GEMM `cols^T dy` per chunk (thread time) and the partials' reduction.
    ConvGemmBackwardWeights,
    /// BN backward: fused BN+ReLU backward, or BN backward alone on the unfused path.
    BnBackward,
    /// A separate ReLU backward pass.
    ReluBackward,
    /// A dense layer's weight and input gradients.
    DenseBackward,
    /// The Adam update of every parameter.
    Optimizer,
    /// Drawing the next batch and gathering its images and labels.
    Data,
    /// Time inside a layer or step not covered by any scope.
    Other,
}

impl Phase {
    pub const ALL: [Phase; 16] = [
        Phase::Im2col,
        Phase::ConvGemmForward,
        Phase::BnStats,
        Phase::BnApply,
        Phase::Relu,
        Phase::DenseForward,
        Phase::Loss,
        Phase::Col2im,
        Phase::ConvGemmBackwardData,
        Phase::ConvGemmBackwardWeights,
        Phase::BnBackward,
        Phase::ReluBackward,
        Phase::DenseBackward,
        Phase::Optimizer,
        Phase::Data,
        Phase::Other,
    ];
    pub const COUNT: usize = Phase::ALL.len();

    /// A short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Im2col => "im2col",
            Phase::ConvGemmForward => "conv gemm fwd",
            Phase::BnStats => "bn stats",
            Phase::BnApply => "bn apply",
            Phase::Relu => "relu",
            Phase::DenseForward => "dense fwd",
            Phase::Loss => "loss",
            Phase::Col2im => "col2im",
            Phase::ConvGemmBackwardData => "conv gemm bwd data",
            Phase::ConvGemmBackwardWeights => "conv gemm bwd weights",
            Phase::BnBackward => "bn bwd",
            Phase::ReluBackward => "relu bwd",
            Phase::DenseBackward => "dense bwd",
            Phase::Optimizer => "adam",
            Phase::Data => "batch gather",
            Phase::Other => "other",
        }
    }

    /// The pass the phase belongs to, or `None` for step-level and unattributed work.
    pub fn pass(self) -> Option<Pass> {
        match self {
            Phase::Im2col
            | Phase::ConvGemmForward
            | Phase::BnStats
            | Phase::BnApply
            | Phase::Relu
            | Phase::DenseForward => Some(Pass::Forward),
            Phase::Col2im
            | Phase::ConvGemmBackwardData
            | Phase::ConvGemmBackwardWeights
            | Phase::BnBackward
            | Phase::ReluBackward
            | Phase::DenseBackward => Some(Pass::Backward),
            Phase::Loss | Phase::Optimizer | Phase::Data | Phase::Other => None,
        }
    }
}

/// Forward or backward call of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pass {
    Forward,
    Backward,
}

/// Layers with an index at or above this are not recorded (the seed network has 41).
pub const MAX_LAYERS: usize = 128;
/// The row of step-level work (loss, Adam, data) and of scopes outside any layer.
pub const STEP_ROW: usize = MAX_LAYERS;
const ROWS: usize = MAX_LAYERS + 1;

type Row = [AtomicU64; Phase::COUNT];

static ENABLED: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicUsize = AtomicUsize::new(STEP_ROW);
static WALL_NS: [Row; ROWS] = [const { [const { AtomicU64::new(0) }; Phase::COUNT] }; ROWS];
static THREAD_NS: [Row; ROWS] = [const { [const { AtomicU64::new(0) }; Phase::COUNT] }; ROWS];
static CALLS: [Row; ROWS] = [const { [const { AtomicU64::new(0) }; Phase::COUNT] }; ROWS];
static LAYER_NS: [[AtomicU64; 2]; ROWS] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; ROWS];
static LAYER_CALLS: [[AtomicU64; 2]; ROWS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; ROWS];

/// Switches recording on or off (off at start).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Zeroes every total.
pub fn reset() {
    for table in [&WALL_NS, &THREAD_NS, &CALLS] {
        for row in table {
            for v in row {
                v.store(0, Ordering::Relaxed);
            }
        }
    }
    for table in [&LAYER_NS, &LAYER_CALLS] {
        for row in table {
            for v in row {
                v.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Wall,
    Thread,
}

/// Records the time from its creation to its drop (only if the profiler was enabled at creation).
#[must_use = "a scope records when it is dropped; bind it with `let _p = ...`"]
pub struct Scope {
    start: Option<Instant>,
    row: usize,
    phase: Phase,
    kind: Kind,
    /// The thread's current phase before this scope ([`current_phase`]), restored on drop.
    outer: u8,
}

/// No scope open on this thread.
const NO_PHASE: u8 = u8::MAX;

thread_local! {
    /// The phase of the innermost open scope of this thread (only tracked while enabled).
    static CURRENT_PHASE: Cell<u8> = const { Cell::new(NO_PHASE) };
}

/// The phase of the innermost scope open on this thread while the profiler is on (the task log
/// names a loop after it when the loop's kernel serves several phases).
pub fn current_phase() -> Option<Phase> {
    Phase::ALL
        .get(CURRENT_PHASE.with(Cell::get) as usize)
        .copied()
}

#[inline(always)]
fn start(phase: Phase, kind: Kind) -> Scope {
    if !enabled() {
        return Scope {
            start: None,
            row: STEP_ROW,
            phase,
            kind,
            outer: NO_PHASE,
        };
    }
    if let Kind::Wall = kind {
        task_log::mark(MarkKind::Phase(Some(phase)));
    }
    Scope {
        start: Some(Instant::now()),
        row: CURRENT.load(Ordering::Relaxed),
        phase,
        kind,
        outer: CURRENT_PHASE.with(|c| c.replace(phase as u8)),
    }
}

/// Times a phase on the calling thread, outside parallel regions (wall time).
#[inline(always)]
pub fn scope(phase: Phase) -> Scope {
    start(phase, Kind::Wall)
}

/// Times a phase inside one parallel chunk (thread time, summed over chunks).
#[inline(always)]
pub fn thread_scope(phase: Phase) -> Scope {
    start(phase, Kind::Thread)
}

impl Drop for Scope {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(t) = self.start {
            let ns = t.elapsed().as_nanos() as u64;
            let table = match self.kind {
                Kind::Wall => &WALL_NS,
                Kind::Thread => &THREAD_NS,
            };
            let p = self.phase as usize;
            table[self.row][p].fetch_add(ns, Ordering::Relaxed);
            CALLS[self.row][p].fetch_add(1, Ordering::Relaxed);
            CURRENT_PHASE.with(|c| c.set(self.outer));
            if let Kind::Wall = self.kind {
                task_log::mark(MarkKind::Phase(
                    Phase::ALL.get(self.outer as usize).copied(),
                ));
            }
        }
    }
}

/// Wraps one layer's forward or backward call: files inner scopes under `index` and records the
/// call's wall time. Layers at `MAX_LAYERS` or beyond are filed under [`STEP_ROW`].
#[must_use = "a layer scope records when it is dropped; bind it with `let _l = ...`"]
pub struct LayerScope {
    start: Option<Instant>,
    row: usize,
    pass: Pass,
}

#[inline(always)]
pub fn layer(index: usize, pass: Pass) -> LayerScope {
    task_log::mark(MarkKind::Layer {
        row: index.min(STEP_ROW),
        pass: Some(pass),
    });
    if !enabled() {
        return LayerScope {
            start: None,
            row: STEP_ROW,
            pass,
        };
    }
    let row = index.min(STEP_ROW);
    CURRENT.store(row, Ordering::Relaxed);
    LayerScope {
        start: Some(Instant::now()),
        row,
        pass,
    }
}

impl Drop for LayerScope {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(t) = self.start {
            let ns = t.elapsed().as_nanos() as u64;
            let p = self.pass as usize;
            LAYER_NS[self.row][p].fetch_add(ns, Ordering::Relaxed);
            LAYER_CALLS[self.row][p].fetch_add(1, Ordering::Relaxed);
            CURRENT.store(STEP_ROW, Ordering::Relaxed);
        }
        task_log::mark(MarkKind::Layer {
            row: STEP_ROW,
            pass: None,
        });
    }
}

/// Adds `ns` to layer `index`'s `pass` time and one call, when the profiler is on: for work that
/// runs a layer on several threads at once outside a [`layer`] scope (the evaluation's tasks, each
/// timing its own layer calls; their sum is thread time, not wall time).
pub fn add_layer_time(index: usize, pass: Pass, ns: u64) {
    if enabled() {
        let (row, p) = (index.min(STEP_ROW), pass as usize);
        LAYER_NS[row][p].fetch_add(ns, Ordering::Relaxed);
        LAYER_CALLS[row][p].fetch_add(1, Ordering::Relaxed);
    }
}

/// The row inner scopes are filed under now: the layer of the open [`layer`] scope, or
/// [`STEP_ROW`].
pub fn current_row() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Totals of one row (a layer, or the step row).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowTotals {
    /// Wall nanoseconds of caller-level scopes, by `Phase as usize`.
    pub wall_ns: [u64; Phase::COUNT],
    /// Thread nanoseconds of in-chunk scopes, by `Phase as usize`.
    pub thread_ns: [u64; Phase::COUNT],
    /// Scopes closed, by `Phase as usize`.
    pub calls: [u64; Phase::COUNT],
    /// Wall nanoseconds of the layer calls: `[forward, backward]`.
    pub layer_ns: [u64; 2],
    pub layer_calls: [u64; 2],
}

impl RowTotals {
    pub fn is_empty(&self) -> bool {
        self == &RowTotals::default()
    }
}

/// A copy of every total: `rows[i]` for layer `i`, `rows[STEP_ROW]` for step-level work.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub rows: Vec<RowTotals>,
}

impl Snapshot {
    pub fn step(&self) -> &RowTotals {
        &self.rows[STEP_ROW]
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(RowTotals::is_empty)
    }
}

/// Reads every total (allocates; call it outside the timed loop).
pub fn snapshot() -> Snapshot {
    let load = |row: &Row| -> [u64; Phase::COUNT] {
        std::array::from_fn(|p| row[p].load(Ordering::Relaxed))
    };
    let rows = (0..ROWS)
        .map(|r| RowTotals {
            wall_ns: load(&WALL_NS[r]),
            thread_ns: load(&THREAD_NS[r]),
            calls: load(&CALLS[r]),
            layer_ns: std::array::from_fn(|p| LAYER_NS[r][p].load(Ordering::Relaxed)),
            layer_calls: std::array::from_fn(|p| LAYER_CALLS[r][p].load(Ordering::Relaxed)),
        })
        .collect();
    Snapshot { rows }
}
