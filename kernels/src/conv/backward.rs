//! The backward pass: weight, bias and input gradients on the layer's path.

use crate::conv::data_grad::data_grad;
use crate::conv::geometry::ConvGeometry;
use crate::conv::plan::WeightGradPath;
use crate::conv::small_image;
use crate::conv::weight_grad::{column_weight_grad, implicit_weight_grad, WeightGrads};
use crate::conv::workspace::ConvWorkspace;
use crate::gemm::GemmBackend;
use crate::runtime::shards::Shards;

/// What a convolution's backward pass writes.
#[derive(Debug)]
pub struct ConvGrads<'a> {
    /// The input gradient; `None` skips it (the first layer needs none).
    pub dx: Option<&'a mut [f32]>,
    /// The weight gradient (HWIO, as the weights), overwritten.
    pub dw: &'a mut [f32],
    /// The bias gradient, overwritten; `None` for a layer without a bias.
    pub db: Option<&'a mut [f32]>,
}

/// Gradients of [`conv_forward`](super::conv_forward), which must have run on the same workspace
/// with the same geometry and weights.
///
/// The im2col matrix is reused as scratch for the column gradient. `grads.dw` and `grads.db` are
/// overwritten with the sums over the whole batch of `shards` (this process holds `g.batch`
/// images of it), added in the fixed order of [`crate::runtime::shards`].
pub fn conv_backward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    shards: Shards<'_>,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    grads: ConvGrads,
) {
    let ConvGrads { dx, dw, db } = grads;
    assert_eq!(w.len(), g.weight_len(), "conv_backward: weight size");
    assert_eq!(
        dy.len(),
        g.output_len(),
        "conv_backward: output gradient size"
    );
    assert_eq!(
        dw.len(),
        g.weight_len(),
        "conv_backward: weight gradient size"
    );
    assert!(
        ws.saved_for_backward,
        "conv_backward: the last forward pass on this workspace was an evaluation (Keep::Nothing), which keeps nothing for backward"
    );
    assert_eq!(
        shards.span.local_images(),
        g.batch,
        "conv_backward: the shards hold another number of images than the batch"
    );
    let plan = ws.plan_for_backward(gemm, g).expect(
        "conv_backward: the last forward pass on this workspace ran another geometry or backend",
    );
    let weights = WeightGrads { dw, db };
    match plan.weight_grad {
        WeightGradPath::SmallImage => small_image::weight_grad(g, shards, ws, dy, weights),
        WeightGradPath::Implicit {
            image: im,
            transposed,
        } => {
            assert_eq!(
                ws.padded.len(),
                g.batch * im.padded_len(),
                "conv_backward: needs the forward pass's padded images"
            );
            implicit_weight_grad(g, &im, transposed, shards, ws, dy, weights);
        }
        WeightGradPath::Columns {
            block_rows,
            transposed,
        } => {
            assert_eq!(
                ws.cols.len(),
                g.cols_len(),
                "conv_backward: needs the forward pass's columns"
            );
            column_weight_grad(&plan, block_rows, transposed, shards, ws, dy, weights);
        }
    }
    if let Some(dx) = dx {
        data_grad(gemm, g, plan.data_grad, ws, w, dy, dx);
    }
}
