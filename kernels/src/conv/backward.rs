//! The backward pass: weight, bias and input gradients on the layer's path.

use crate::conv::data_grad::data_grad;
use crate::conv::geometry::ConvGeometry;
use crate::conv::plan::{ConvPlan, DataGradPath, WeightGradPath};
use crate::conv::small_image;
use crate::conv::weight_grad::{
    column_weight_grad, implicit_weight_grad, write_weight_grads, WeightGrads,
};
use crate::conv::workspace::{ConvWorkspace, DataGradBuffers};
use crate::gemm::GemmBackend;
use crate::runtime::profile::Phase;
use crate::runtime::shards::{ShardSpan, Shards};
use crate::runtime::task_log::ForEachTask;
use rayon::prelude::*;

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
/// images of it), added in the fixed order of [`crate::runtime::shards`]. The weight and data
/// gradients run as two tasks at once, except on the column data-gradient path.
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
    let with_bias = db.is_some();
    let weights = WeightGrads { dw, db };
    let dx = match dx {
        Some(dx) if plan.data_grad != DataGradPath::Col2im => dx,
        serial => {
            // One after the other: no input gradient, or the column data gradient, which
            // overwrites the im2col matrix the weight gradient reads.
            weight_grad(&plan, shards.span, ws, dy, with_bias);
            write_weight_grads(&plan, shards.across, ws, weights);
            if let Some(dx) = serial {
                let cols = Some(&mut ws.cols);
                data_grad(gemm, g, plan.data_grad, &mut ws.data_grad, cols, w, dy, dx);
            }
            return;
        }
    };
    // Two tasks at once: this process's part of the weight gradient (task 0, on this thread) and
    // the data gradient. They read the same inputs and write disjoint buffers, so running them
    // together changes no result, and the workers a late layer's few weight-gradient tasks leave
    // idle take the data gradient's tasks instead of waiting at a barrier between the two. The
    // exchange with other processes comes after both, on this thread.
    // Taken out for the two tasks (no allocation: an empty default stands in) and put back.
    let mut buffers = std::mem::take(&mut ws.data_grad);
    let mut halves = [
        Half::Weights { ws: &mut *ws },
        Half::Data {
            buffers: &mut buffers,
            dx,
        },
    ];
    halves
        .par_iter_mut()
        .for_each_task(Phase::Other, |half| match half {
            Half::Weights { ws } => weight_grad(&plan, shards.span, ws, dy, with_bias),
            Half::Data { buffers, dx } => {
                data_grad(gemm, g, plan.data_grad, buffers, None, w, dy, dx)
            }
        });
    ws.data_grad = buffers;
    write_weight_grads(&plan, shards.across, ws, weights);
}

/// One of the two tasks of [`conv_backward`].
enum Half<'a> {
    Weights {
        ws: &'a mut ConvWorkspace,
    },
    Data {
        buffers: &'a mut DataGradBuffers,
        dx: &'a mut [f32],
    },
}

/// This process's part of the weight (and bias, `with_bias`) gradient on the layer's
/// [`WeightGradPath`], left in the workspace for [`write_weight_grads`].
fn weight_grad(
    plan: &ConvPlan,
    span: &ShardSpan,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    with_bias: bool,
) {
    let g = &plan.geometry;
    match plan.weight_grad {
        WeightGradPath::SmallImage => small_image::weight_grad(g, span, ws, dy, with_bias),
        WeightGradPath::Implicit {
            image: im,
            transposed,
        } => {
            assert_eq!(
                ws.padded.len(),
                g.batch * im.padded_len(),
                "conv_backward: needs the forward pass's padded images"
            );
            implicit_weight_grad(g, &im, transposed, span, ws, dy, with_bias);
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
            column_weight_grad(plan, block_rows, transposed, span, ws, dy, with_bias);
        }
    }
}
