//! The input (data) gradient: flipped-kernel implicit convolution, sub-pixel parity classes, or
//! columns and col2im.

use crate::conv::forward::prepare_forward_weights;
use crate::conv::gemm_rows::gemm_rows;
use crate::conv::geometry::ConvGeometry;
use crate::conv::im2col::col2im_image;
use crate::conv::implicit::{forward_image, pad_image, Implicit, Placement};
use crate::conv::plan::{chunking, images_per_task, weight_row, DataGradPath, TASK_FLOPS};
use crate::conv::small_image;
use crate::conv::subpixel::{self, SubPixel};
use crate::conv::workspace::DataGradBuffers;
use crate::fuse::Epilogue;
use crate::gemm::matmul::{pack_panels_gather, packed_len};
use crate::gemm::{GemmBackend, MatMut, MatRef};
use crate::runtime::profile::{self, Phase};
use crate::runtime::task_log::ForEachTask;
use crate::simd::active_isa;
use rayon::prelude::*;

/// `dx` on the layer's [`DataGradPath`] (from its plan), writing only `buffers` and `dx`, and on
/// the column path `cols` (the forward pass's im2col matrix, spent by then).
///
/// # Panics
/// On the column path without `cols`.
#[allow(clippy::too_many_arguments)]
pub(super) fn data_grad(
    gemm: GemmBackend,
    g: &ConvGeometry,
    path: DataGradPath,
    buffers: &mut DataGradBuffers,
    cols: Option<&mut Vec<f32>>,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    assert_eq!(
        dx.len(),
        g.input_len(),
        "conv_backward: input gradient size"
    );
    match path {
        DataGradPath::FlippedKernel(dim) => flipped_kernel(g, &dim, buffers, w, dy, dx),
        DataGradPath::SubPixel(sp) => sub_pixel(g, &sp, buffers, w, dy, dx),
        DataGradPath::Col2im => {
            let cols = cols.expect("data_grad: the column path needs the column buffer");
            col2im(gemm, g, buffers, cols, w, dy, dx)
        }
        DataGradPath::SmallImage => small_image::data_grad(g, buffers, w, dy, dx),
    }
}

/// The data gradient of a stride-1 layer as a forward convolution of the padded `dy` with the
/// flipped, transposed kernel (`dim`: the plan's implicit geometry of that convolution).
fn flipped_kernel(
    g: &ConvGeometry,
    dim: &Implicit,
    buffers: &mut DataGradBuffers,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let isa = active_isa();
    let (cin, cout) = (g.in_c, g.out_c);
    let image_out = g.out_pixels() * cout;
    // W'[tap', n, c] = W[8 - tap', c, n]: the flipped kernel with in and out channels swapped.
    buffers.weights.resize(dim.packed_len(cin), 0.0);
    dim.pack_weights(
        cin,
        w,
        |p| (8 - p / cout) * cin * cout + p % cout,
        |j| j * cout,
        None,
        &mut buffers.weights,
    );
    // Tasks of whole images cut by work (images are independent here: no partial sums); each
    // borders its images into its worker's scratch image, which, written and then read at once
    // by the product, stays in L1 (a whole batch of them was fetched from memory just to be
    // overwritten).
    let images = images_per_task(g.out_pixels(), (g.gemm_flops() / g.batch as u64) as usize);
    buffers.scratch.prepare(dim.padded_len());
    let (weights, scratch) = (&buffers.weights, &buffers.scratch);
    dy.par_chunks(images * image_out)
        .zip(dx.par_chunks_mut(images * g.in_pixels() * cin))
        .for_each_task(Phase::ConvGemmBackwardData, |(dy_c, dx_c)| {
            scratch.with(|padded| {
                for (dy_img, dx_img) in dy_c
                    .chunks_exact(image_out)
                    .zip(dx_c.chunks_exact_mut(g.in_pixels() * cin))
                {
                    // Zero-bordering `dy` is the implicit path's counterpart of col2im.
                    let p = profile::thread_scope(Phase::Col2im);
                    pad_image(dy_img, &Placement::output_bordered(g), padded);
                    drop(p);
                    let _p = profile::thread_scope(Phase::ConvGemmBackwardData);
                    forward_image(isa, dim, padded, weights, cin, dx_img, Epilogue::NONE);
                }
            })
        });
}

/// Input gradient of a stride-2 layer as four parity-class convolutions of the bordered `dy`.
fn sub_pixel(
    g: &ConvGeometry,
    sp: &SubPixel,
    buffers: &mut DataGradBuffers,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let isa = active_isa();
    let border = sp.bordered();
    buffers.weights.resize(sp.packed_len(), 0.0);
    sp.pack_weights(w, &mut buffers.weights);
    buffers.padded_dy.resize(g.batch * border.padded_len(), 0.0);
    // No partial sums here, so tasks are cut by work alone: small layers still use every thread.
    let image_flops = 2 * g.out_pixels() * 9 * g.in_c * g.out_c;
    let images = (TASK_FLOPS / image_flops.max(1)).max(1);
    let image_out = g.out_pixels() * g.out_c;
    let weights = &buffers.weights;
    dy.par_chunks(images * image_out)
        .zip(
            buffers
                .padded_dy
                .par_chunks_mut(images * border.padded_len()),
        )
        .zip(dx.par_chunks_mut(images * g.in_pixels() * g.in_c))
        .for_each_task(Phase::ConvGemmBackwardData, |((dy_c, bordered_c), dx_c)| {
            // Zero-bordering `dy` is this path's counterpart of col2im.
            let p = profile::thread_scope(Phase::Col2im);
            for (dy_img, bordered) in dy_c
                .chunks_exact(image_out)
                .zip(bordered_c.chunks_exact_mut(border.padded_len()))
            {
                pad_image(dy_img, &Placement::output_bordered(g), bordered);
            }
            drop(p);
            let _p = profile::thread_scope(Phase::ConvGemmBackwardData);
            subpixel::data_grad_images(isa, sp, bordered_c, weights, dx_c);
        });
}

/// Input gradient through columns: `dcols = dy @ W_live^T` (into the column buffer, whose
/// contents are spent), then col2im.
fn col2im(
    gemm: GemmBackend,
    g: &ConvGeometry,
    buffers: &mut DataGradBuffers,
    cols: &mut Vec<f32>,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    cols.resize(g.cols_len(), 0.0);
    match gemm {
        GemmBackend::Native => {
            buffers.weights.resize(packed_len(cout, k), 0.0);
            pack_panels_gather(
                cout,
                k,
                w,
                |p| p,
                |j| weight_row(g, j) * cout,
                None,
                &mut buffers.weights,
            );
        }
        _ => prepare_forward_weights(gemm, g, w, None, None, &mut buffers.weights),
    }
    let weights = &buffers.weights;
    cols.par_chunks_mut(ch.cols.max(1))
        .zip(dy.par_chunks(ch.output.max(1)))
        .zip(dx.par_chunks_mut(ch.input.max(1)))
        .for_each_task(Phase::ConvGemmBackwardData, |((cols_c, dy_c), dx_c)| {
            let p = profile::thread_scope(Phase::ConvGemmBackwardData);
            let rows = dy_c.len() / cout;
            let (dy_c, dcols) = (
                MatRef::dense(dy_c, rows, cout),
                MatMut::dense(cols_c, rows, k),
            );
            gemm_rows(gemm, dy_c, weights, true, dcols, Epilogue::NONE);
            drop(p);
            cols_c
                .par_chunks(g.out_pixels() * k)
                .zip(dx_c.par_chunks_mut(g.in_pixels() * g.in_c))
                .for_each_task(Phase::Col2im, |(dcol, dimg)| {
                    let _p = profile::thread_scope(Phase::Col2im);
                    col2im_image(g, dcol, dimg);
                });
        });
}
