//! A stride-1 3x3 SAME convolution of images at most 2x2 as one dense product per batch.
//!
//! On such an image every (input pixel `p`, output pixel `q`) pair is joined by exactly one kernel
//! tap, `tap(p, q) = (py - qy + 1) * 3 + (px - qx + 1)`, so the convolution is
//! `y[b] = x[b] @ D` with `x[b]` the image flattened to `P * Cin` floats, `y[b]` to `Q * Cout`,
//! and `D[(p, ci), (q, co)] = W[tap(p, q), ci, co]`. The im2col route multiplies `9 / P` times
//! as much (the taps that land on padding) and copies the columns first; here `x` and `y` are
//! the product's operands as they lie.
//!
//! Because `tap(p, q) = (3py + px) + (4 - 3qy - qx)` splits into a row part and a column part
//! (both non-negative for coordinates 0 and 1), `D` and `D^T` are packed by the strided gather
//! [`pack_panels_gather`].

use crate::conv::gemm_rows::gemm_rows;
use crate::conv::geometry::ConvGeometry;
use crate::conv::plan::rows_per_task;
use crate::conv::weight_grad::bias_grad;
use crate::conv::workspace::{ConvWorkspace, DataGradBuffers};
use crate::fuse::{Epilogue, Start};
use crate::gemm::matmul::{matmul_at_b, pack_panels_gather, packed_len};
use crate::gemm::{GemmBackend, MatMut, MatRef};
use crate::runtime::profile::{self, Phase};
use crate::runtime::shards::{ShardSpan, Shards};
use crate::runtime::task_log::ForEachTask;
use rayon::prelude::*;

/// Whether [`ConvGeometry`] `g` is a layer this module handles: stride 1, at most 2x2, and more
/// than one pixel (a 1x1 image is already a plain product of its single live tap).
pub fn applies(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.in_h <= 2 && g.in_w <= 2 && g.in_pixels() > 1
}

/// Row part of `tap(p, q)` for input pixel `p` of a `w`-wide image.
fn row_tap(p: usize, w: usize) -> usize {
    3 * (p / w) + p % w
}

/// Column part of `tap(p, q)` for output pixel `q`.
fn col_tap(q: usize, w: usize) -> usize {
    4 - 3 * (q / w) - q % w
}

/// Rows (`P * Cin`) and columns (`Q * Cout`) of `D`.
pub fn dense_shape(g: &ConvGeometry) -> (usize, usize) {
    (g.in_pixels() * g.in_c, g.out_pixels() * g.out_c)
}

/// Most output channels an evaluation pack (with a per-channel scale) supports: the per-column
/// scale of `D` (`Q * Cout` floats) lives in a stack buffer.
const MAX_SCALED_CHANNELS: usize = 1024;

/// Packs `D` (for the forward product) from HWIO `w`, times `scale` per output channel.
///
/// # Panics
/// If `scale` is given for more than [`MAX_SCALED_CHANNELS`] channels.
pub fn pack_forward(g: &ConvGeometry, w: &[f32], scale: Option<&[f32]>, out: &mut [f32]) {
    let (k, n) = dense_shape(g);
    let (cin, cout, width) = (g.in_c, g.out_c, g.in_w);
    // The gather scales column `j`, which is channel `j % cout` of its output pixel.
    let mut per_column = [0.0f32; 4 * MAX_SCALED_CHANNELS];
    let scale = scale.map(|s| {
        assert!(
            s.len() == cout && cout <= MAX_SCALED_CHANNELS,
            "small-image conv: scale of {} for {cout} channels (at most {MAX_SCALED_CHANNELS})",
            s.len()
        );
        for (j, v) in per_column[..n].iter_mut().enumerate() {
            *v = s[j % cout];
        }
        &per_column[..n]
    });
    pack_panels_gather(
        k,
        n,
        w,
        |r| (row_tap(r / cin, width) * cin + r % cin) * cout,
        |j| col_tap(j / cout, width) * cin * cout + j % cout,
        scale,
        out,
    );
}

/// Packs `D^T` (for the data gradient `dx[b] = dy[b] @ D^T`) from HWIO `w`.
pub fn pack_data_grad(g: &ConvGeometry, w: &[f32], out: &mut [f32]) {
    let (k, n) = dense_shape(g);
    let (cin, cout, width) = (g.in_c, g.out_c, g.in_w);
    pack_panels_gather(
        n,
        k,
        w,
        |r| col_tap(r / cout, width) * cin * cout + r % cout,
        |j| (row_tap(j / cin, width) * cin + j % cin) * cout,
        None,
        out,
    );
}

/// Most output channels [`fold_weight_grad`] folds (a row of f64 sums lives on the stack).
const MAX_FOLD_CHANNELS: usize = 1024;

/// `dw[tap, ci, co] = sum over (p, q) with tap(p, q) = tap of dd[(p, ci), (q, co)]`, in f64 and
/// increasing `(p, q)`; taps that no pair uses get zero.
///
/// # Panics
/// If the sizes disagree or `Cout` exceeds [`MAX_FOLD_CHANNELS`].
pub fn fold_weight_grad(g: &ConvGeometry, dd: &[f32], dw: &mut [f32]) {
    let (k, n) = dense_shape(g);
    let (cin, cout, width) = (g.in_c, g.out_c, g.in_w);
    assert_eq!(dd.len(), k * n, "small-image conv: dense gradient size");
    assert_eq!(
        dw.len(),
        9 * cin * cout,
        "small-image conv: weight gradient size"
    );
    assert!(
        cout <= MAX_FOLD_CHANNELS,
        "small-image conv: {cout} output channels exceed {MAX_FOLD_CHANNELS}"
    );
    let mut acc = [0.0f64; MAX_FOLD_CHANNELS];
    let acc = &mut acc[..cout];
    for (tap, out) in dw.chunks_exact_mut(cin * cout).enumerate() {
        // At most 4 pairs share a tap (the centre: p = q).
        let mut pairs = [(0, 0); 4];
        let mut count = 0;
        for p in 0..g.in_pixels() {
            for q in 0..g.out_pixels() {
                if row_tap(p, width) + col_tap(q, width) == tap {
                    pairs[count] = (p, q);
                    count += 1;
                }
            }
        }
        for (ci, row) in out.chunks_exact_mut(cout).enumerate() {
            // Pair by pair, each a contiguous run of `cout` values (vectorised), in pair order.
            acc.fill(0.0);
            for &(p, q) in &pairs[..count] {
                let src = &dd[(p * cin + ci) * n + q * cout..][..cout];
                for (a, v) in acc.iter_mut().zip(src) {
                    *a += *v as f64;
                }
            }
            for (v, a) in row.iter_mut().zip(acc.iter()) {
                *v = *a as f32;
            }
        }
    }
}

/// Most output channels of a small-image layer with a bias (a row of `y`, up to 4 pixels of
/// them, is filled from a stack buffer).
const MAX_SMALL_IMAGE_CHANNELS: usize = 1024;

/// [`conv_forward`](super::conv_forward) of a small image: `y[b] = x[b] @ D` for every image, with
/// `x` kept (in the column buffer) for the weight gradient.
pub(super) fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    let _p = profile::scope(Phase::ConvGemmForward);
    let (k, n) = dense_shape(g);
    ws.weights.resize(packed_len(k, n), 0.0);
    pack_forward(g, w, epilogue.scale, &mut ws.weights);
    ws.cols.resize(x.len(), 0.0);
    ws.cols.copy_from_slice(x);
    // The bias per output channel, repeated for each of the `Q` output pixels of a row of `y`.
    let mut row_bias = [0.0f32; 4 * MAX_SMALL_IMAGE_CHANNELS];
    let start = epilogue.start.bias().map_or(Start::Zero, |b| {
        assert!(
            b.len() <= MAX_SMALL_IMAGE_CHANNELS,
            "conv_forward: {} output channels on a 2x2 image exceed {MAX_SMALL_IMAGE_CHANNELS}",
            b.len()
        );
        for (j, v) in row_bias[..n].iter_mut().enumerate() {
            *v = b[j % b.len()];
        }
        Start::Bias(&row_bias[..n])
    });
    gemm_rows(
        GemmBackend::Native,
        MatRef::dense(x, g.batch, k),
        &ws.weights,
        false,
        MatMut::dense(y, g.batch, n),
        Epilogue {
            start,
            scale: None,
            relu: epilogue.relu,
        },
    );
}

/// The weight (and bias) gradient of a small image, from the input the forward pass kept: per
/// local shard of the batch, `dD_s = x_s^T @ dy_s` folded onto the taps (and the bias sums), the
/// shards added by the shard tree ([`Shards::finish_tasks`]). Leaves this process's subtree root, `[dw | db]` (`db` when
/// `with_bias`), in `ws.shard_parts`; [`write_weight_grads`](super::weight_grad::write_weight_grads) completes it across processes.
pub(super) fn weight_grad(
    g: &ConvGeometry,
    span: &ShardSpan,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    with_bias: bool,
) {
    let (k, n) = dense_shape(g);
    assert_eq!(
        ws.cols.len(),
        g.input_len(),
        "conv_backward: needs the forward pass's input"
    );
    let _p = profile::scope(Phase::ConvGemmBackwardWeights);
    // Tasks: blocks of columns of each shard's dense gradient (the split changes no result).
    let block = rows_per_task(2 * n * span.max_shard_images().max(1));
    ws.partials.resize(span.len() * k * n, 0.0);
    let x = &ws.cols;
    ws.partials.par_chunks_mut(k * n).enumerate().for_each_task(
        Phase::ConvGemmBackwardWeights,
        |(s, shard_out)| {
            let images = span.images(s);
            if images.is_empty() {
                return shard_out.fill(0.0);
            }
            let dy = MatRef::dense(&dy[images.start * n..images.end * n], images.len(), n);
            shard_out
                .par_chunks_mut(block * n)
                .enumerate()
                .for_each_task(Phase::ConvGemmBackwardWeights, |(b, out)| {
                    // Columns `b * block..` of the shard's `x` (`images x k`) against its `dy`.
                    let cols = out.len() / n;
                    let x_cols =
                        MatRef::new(&x[images.start * k + b * block..], images.len(), cols, k);
                    matmul_at_b(x_cols, dy, MatMut::dense(out, cols, n), false)
                });
        },
    );
    let weight_len = g.weight_len();
    let width = weight_len + if with_bias { g.out_c } else { 0 };
    ws.folds.resize(span.len() * width, 0.0);
    let dense = &ws.partials;
    ws.folds.par_chunks_mut(width).enumerate().for_each_task(
        Phase::ConvGemmBackwardWeights,
        |(s, part)| {
            let (fold, bias) = part.split_at_mut(weight_len);
            fold_weight_grad(g, &dense[s * k * n..][..k * n], fold);
            if !bias.is_empty() {
                let images = span.images(s);
                bias_grad(&dy[images.start * n..images.end * n], bias);
            }
        },
    );
    // One partial per shard, added by the shard tree in parallel blocks of values.
    ws.tasks.clear();
    ws.tasks.extend((0..span.len()).map(|s| (s, 0..1)));
    Shards::local(span).finish_tasks(
        &ws.tasks,
        &ws.folds,
        width,
        &mut ws.shard_parts,
        Phase::ConvGemmBackwardWeights,
    );
}

/// The input gradient of a small image: `dx = dy @ D^T`.
pub(super) fn data_grad(
    g: &ConvGeometry,
    buffers: &mut DataGradBuffers,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let (k, n) = dense_shape(g);
    // Thread time: this may run as a task beside the weight gradient.
    let _p = profile::thread_scope(Phase::ConvGemmBackwardData);
    buffers.weights.resize(packed_len(n, k), 0.0);
    pack_data_grad(g, w, &mut buffers.weights);
    gemm_rows(
        GemmBackend::Native,
        MatRef::dense(dy, g.batch, n),
        &buffers.weights,
        false,
        MatMut::dense(dx, g.batch, k),
        Epilogue::NONE,
    );
}
