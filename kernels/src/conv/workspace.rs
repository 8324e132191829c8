//! The buffers a convolution layer keeps from step to step.

/// Buffers a convolution layer reuses every step: sized on first use, never shrunk.
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    /// The forward im2col matrix (`rows x k`), kept for the weight gradient, then reused for the
    /// column gradient.
    pub(super) cols: Vec<f32>,
    /// The weight operand of the current GEMM: panels for bnconv's GEMM, or the live weight rows
    /// for a library GEMM.
    pub(super) weights: Vec<f32>,
    /// Per-chunk weight and bias gradient partial sums.
    pub(super) partials: Vec<f32>,
    /// Their f64 totals.
    pub(super) sums: Vec<f64>,
    /// The zero-bordered input images of the implicit path, kept for the weight gradient.
    pub(super) padded: Vec<f32>,
    /// The zero-bordered output gradient images of the implicit data gradient.
    pub(super) padded_dy: Vec<f32>,
    /// Whether the last forward pass kept what [`conv_backward`](super::conv_backward) reads
    /// ([`Keep::ForBackward`](super::Keep::ForBackward)).
    pub(super) saved_for_backward: bool,
}
