//! What a convolution layer keeps from step to step: its plan and its buffers.

use crate::conv::geometry::ConvGeometry;
use crate::conv::plan::ConvPlan;
use crate::gemm::GemmBackend;
use crate::runtime::scratch::WorkerScratch;
use std::ops::Range;

/// A convolution layer's plan and the buffers it reuses every step (sized on first use, never
/// shrunk).
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    /// The plan of the last forward pass: made once per (backend, geometry), made again only
    /// when either changes (an evaluation batch after training batches, say).
    plan: Option<ConvPlan>,
    /// The forward im2col matrix (`rows x k`), kept for the weight gradient, then reused for the
    /// column gradient.
    pub(super) cols: Vec<f32>,
    /// The forward GEMM's weight operand: panels for bnconv's GEMM, or the live weight rows for a
    /// library GEMM.
    pub(super) weights: Vec<f32>,
    /// The weight-gradient tasks: `(local shard, range of rows or images)`.
    pub(super) tasks: Vec<(usize, Range<usize>)>,
    /// Per-task weight and bias gradient partial sums.
    pub(super) partials: Vec<f32>,
    /// This process's sum of the weight-gradient partials over its shards, then the whole
    /// batch's.
    pub(super) shard_parts: Vec<f32>,
    /// The small-image path's weight (and bias) gradient of each shard, folded onto the taps.
    pub(super) folds: Vec<f32>,
    /// The zero-bordered input images of the implicit path, kept for the weight gradient.
    pub(super) padded: Vec<f32>,
    /// A bordered image per worker for the evaluation forward pass on the implicit path.
    pub(super) scratch: WorkerScratch,
    /// The data gradient's own buffers, apart from everything the weight gradient touches so that
    /// the two can run at once.
    pub(super) data_grad: DataGradBuffers,
    /// Whether the last forward pass kept what [`conv_backward`](super::conv_backward) reads
    /// ([`Keep::ForBackward`](super::Keep::ForBackward)).
    pub(super) saved_for_backward: bool,
}

/// What the data (input) gradient writes besides `dx`, kept apart from the weight gradient's
/// buffers so that [`conv_backward`](super::conv_backward) can run both at once (the column path
/// also reuses the im2col matrix, so it runs after the weight gradient).
#[derive(Clone, Debug, Default)]
pub(super) struct DataGradBuffers {
    /// The data-gradient GEMM's weight operand (transposed, flipped or by parity class).
    pub(super) weights: Vec<f32>,
    /// The zero-bordered output gradient images of the sub-pixel data gradient.
    pub(super) padded_dy: Vec<f32>,
    /// A bordered image per worker: the flipped-kernel data gradient's.
    pub(super) scratch: WorkerScratch,
}

impl ConvWorkspace {
    /// The plan for `g` on `gemm`, made now unless the workspace already holds it.
    pub fn plan(&mut self, gemm: GemmBackend, g: &ConvGeometry) -> ConvPlan {
        match self.plan {
            Some(p) if p.gemm == gemm && p.geometry == *g => p,
            _ => *self.plan.insert(ConvPlan::new(gemm, g)),
        }
    }

    /// The plan the last forward pass ran, for its gradients: `None` unless that pass was on
    /// `gemm` and `g` and kept what the gradients read.
    pub(super) fn plan_for_backward(
        &self,
        gemm: GemmBackend,
        g: &ConvGeometry,
    ) -> Option<ConvPlan> {
        self.plan
            .filter(|p| self.saved_for_backward && p.gemm == gemm && p.geometry == *g)
    }
}
