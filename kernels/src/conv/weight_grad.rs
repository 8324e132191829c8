//! The weight and bias gradients: per-chunk partial sums, added in chunk order.

use crate::conv::geometry::ConvGeometry;
use crate::conv::implicit::{weight_grad_image, weight_grad_image_transposed, Implicit};
use crate::conv::plan::{chunking, weight_row};
use crate::conv::workspace::ConvWorkspace;
use crate::gemm::matmul::matmul_at_b;
use crate::gemm::{sgemm, GemmBackend, MatMut, MatRef};
use crate::runtime::partition::chunk_count;
use crate::runtime::prefetch::warm_l2;
use crate::runtime::profile::{self, Phase};
use crate::runtime::task_log::ForEachTask;
use crate::simd::active_isa;
use rayon::prelude::*;

/// What the task log files this module's parallel loops under.
const TASKS: Phase = Phase::ConvGemmBackwardWeights;

/// `dw` (and `db`) of a layer on the column path, from the im2col matrix the forward pass kept
/// in `ws.cols`: partial sums `dW_c = cols_c^T @ dy_c` over fixed row blocks, added in order.
/// `block_rows` and `transposed` come from the layer's plan
/// ([`WeightGradPath::Columns`](super::plan::WeightGradPath::Columns)).
#[allow(clippy::too_many_arguments)]
pub(super) fn column_weight_grad(
    gemm: GemmBackend,
    g: &ConvGeometry,
    block_rows: usize,
    transposed: bool,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (k, cout) = (g.k(), g.out_c);
    let with_bias = db.is_some();
    let per_chunk = k * cout + if with_bias { cout } else { 0 };
    ws.partials
        .resize(chunk_count(g.rows(), block_rows) * per_chunk, 0.0);

    // Weight (and bias) gradient partials: dW_c = cols_c^T @ dy_c, db_c = column sums of dy_c.
    ws.cols
        .par_chunks((block_rows * k).max(1))
        .zip(dy.par_chunks((block_rows * cout).max(1)))
        .zip(ws.partials.par_chunks_mut(per_chunk.max(1)))
        .for_each_task(TASKS, |((cols_c, dy_c), part)| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let rows = dy_c.len() / cout;
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            let (cols_v, dy_v) = (
                MatRef::dense(cols_c, rows, k),
                MatRef::dense(dy_c, rows, cout),
            );
            match gemm {
                GemmBackend::Native => {
                    warm_l2(cols_c);
                    if transposed {
                        matmul_at_b(dy_v, cols_v, MatMut::dense(dw_part, cout, k), false);
                    } else {
                        matmul_at_b(cols_v, dy_v, MatMut::dense(dw_part, k, cout), false);
                    }
                }
                _ => sgemm(
                    gemm,
                    1.0,
                    cols_v.t(),
                    dy_v,
                    0.0,
                    MatMut::dense(dw_part, k, cout),
                ),
            }
            if with_bias {
                bias_grad(dy_c, db_part);
            }
        });
    let _reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    reduce_partials(g, &ws.partials, per_chunk, transposed, &mut ws.sums, dw, db);
}

/// `dw` (and `db`) of a layer on the implicit path, from the padded images the forward pass
/// kept in `ws.padded`: one partial sum per chunk of whole images, added in chunk order.
pub(super) fn implicit_weight_grad(
    g: &ConvGeometry,
    im: &Implicit,
    transposed: bool,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let isa = active_isa();
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    let images = ch.input / (g.in_pixels() * g.in_c);
    let with_bias = db.is_some();
    let per_chunk = k * cout + if with_bias { cout } else { 0 };
    ws.partials.resize(ch.count * per_chunk, 0.0);
    let image_out = g.out_pixels() * cout;
    ws.padded
        .par_chunks(images * im.padded_len())
        .zip(ws.partials.par_chunks_mut(per_chunk))
        .enumerate()
        .for_each_task(TASKS, |(chunk, (padded_c, part))| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            let first_image = chunk * images;
            for (i, padded) in padded_c.chunks_exact(im.padded_len()).enumerate() {
                // The image was bordered by the forward pass and is read cold. At stride 2 it is
                // four times the output's pixels, large next to the work, and streaming it in
                // first pays; at stride 1 it did not.
                if g.stride > 1 {
                    warm_l2(padded);
                }
                let dy_from = &dy[(first_image + i) * image_out..];
                if transposed {
                    weight_grad_image_transposed(isa, im, padded, dy_from, cout, dw_part, i > 0);
                } else {
                    weight_grad_image(isa, im, padded, dy_from, cout, dw_part, i > 0);
                }
            }
            if with_bias {
                let n_images = padded_c.len() / im.padded_len();
                bias_grad(
                    &dy[first_image * image_out..][..n_images * image_out],
                    db_part,
                );
            }
        });
    let _reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    reduce_partials(g, &ws.partials, per_chunk, transposed, &mut ws.sums, dw, db);
}

/// Adds the per-chunk partial sums in chunk order: `dw` rows of the live taps (others zero),
/// and `db` from the `cout` floats after each chunk's weight partial.
fn reduce_partials(
    g: &ConvGeometry,
    partials: &[f32],
    per_chunk: usize,
    transposed: bool,
    sums: &mut Vec<f64>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (k, cout) = (g.k(), g.out_c);
    // In f64, like the batch-norm sums: up to 64 partials of long f32 reductions each, added
    // chunk by chunk (a pass over contiguous partials each, in chunk order for every element).
    sums.clear();
    sums.resize(per_chunk, 0.0);
    for part in partials.chunks_exact(per_chunk) {
        for (s, p) in sums.iter_mut().zip(part) {
            *s += *p as f64;
        }
    }
    dw.fill(0.0);
    if transposed {
        // `[cout, k]`: column `r` of the sums is weight row `r`.
        for r in 0..k {
            let out = &mut dw[weight_row(g, r) * cout..][..cout];
            for (j, dst) in out.iter_mut().enumerate() {
                *dst = sums[j * k + r] as f32;
            }
        }
    } else {
        for (r, row) in sums[..k * cout].chunks_exact(cout).enumerate() {
            let out = weight_row(g, r);
            for (dst, s) in dw[out * cout..][..cout].iter_mut().zip(row) {
                *dst = *s as f32;
            }
        }
    }
    if let Some(db) = db {
        assert_eq!(db.len(), cout, "conv_backward: bias gradient size");
        for (dst, s) in db.iter_mut().zip(&sums[k * cout..]) {
            *dst = *s as f32;
        }
    }
}

/// Column sums of `dy` rows (`cout` wide) into `db`.
pub(super) fn bias_grad(dy: &[f32], db: &mut [f32]) {
    db.fill(0.0);
    for row in dy.chunks_exact(db.len()) {
        for (acc, v) in db.iter_mut().zip(row) {
            *acc += v;
        }
    }
}
