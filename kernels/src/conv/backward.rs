//! The backward pass: weight, bias and input gradients on the layer's path.

use crate::conv::data_grad::{data_grad_by_columns_or_parity, data_grad_implicit};
use crate::conv::geometry::ConvGeometry;
use crate::conv::plan::implicit_plan;
use crate::conv::small_image;
use crate::conv::weight_grad::{column_weight_grad, implicit_weight_grad};
use crate::conv::workspace::ConvWorkspace;
use crate::gemm::GemmBackend;

/// Gradients of [`conv_forward`](super::conv_forward), which must have run on the same workspace
/// with the same geometry and weights.
///
/// The im2col matrix is reused as scratch for the column gradient. `dx` is skipped when `None`
/// (the first layer needs no input gradient). `dw` and `db` are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
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
    if gemm == GemmBackend::Native && small_image::applies(g) {
        return small_image::backward(g, ws, w, dy, dx, dw, db);
    }
    if let Some(im) = implicit_plan(gemm, g) {
        assert_eq!(
            ws.padded.len(),
            g.batch * im.padded_len(),
            "conv_backward: needs the forward pass's padded images"
        );
        // Weight gradient from the padded images kept by the forward pass; data gradient as a
        // convolution of the padded `dy` for stride 1, through columns or parity classes
        // otherwise.
        implicit_weight_grad(g, &im, ws, dy, dw, db);
        if let Some(dx) = dx {
            data_grad_implicit(g, ws, w, dy, dx);
        }
        return;
    }
    assert_eq!(
        ws.cols.len(),
        g.cols_len(),
        "conv_backward: needs the forward pass's columns"
    );
    column_weight_grad(gemm, g, ws, dy, dw, db);
    if let Some(dx) = dx {
        data_grad_by_columns_or_parity(gemm, g, ws, w, dy, dx);
    }
}
