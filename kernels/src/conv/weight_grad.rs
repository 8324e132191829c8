//! The weight and bias gradients: partial sums per chunk of each fixed shard of the batch, added
//! in the order [`crate::runtime::shards`] defines (the same for any number of threads or
//! processes).

use crate::conv::geometry::ConvGeometry;
use crate::conv::implicit::{weight_grad_image, weight_grad_image_transposed, Implicit};
use crate::conv::plan::{rows_per_task, weight_row, ConvPlan, WeightGradPath, TASK_FLOPS};
use crate::conv::workspace::ConvWorkspace;
use crate::gemm::matmul::matmul_at_b;
use crate::gemm::{sgemm, GemmBackend, MatMut, MatRef};
use crate::runtime::partition::images_per_chunk;
use crate::runtime::prefetch::warm_l2;
use crate::runtime::profile::{self, Phase};
use crate::runtime::shards::{Across, ShardSpan, Shards};
use crate::runtime::task_log::ForEachTask;
use crate::simd::active_isa;
use rayon::prelude::*;

/// What the task log files this module's parallel loops under.
const TASKS: Phase = Phase::ConvGemmBackwardWeights;

/// The weight gradient a pass overwrites, and the bias gradient when the layer has a bias.
pub(super) struct WeightGrads<'a> {
    pub(super) dw: &'a mut [f32],
    pub(super) db: Option<&'a mut [f32]>,
}

/// `dw` (and `db`, `with_bias`) of a layer on the column path, from the im2col matrix the forward
/// pass kept in `ws.cols`: partial sums `dW_t = cols_t^T @ dy_t` over fixed row blocks of each
/// local shard ([`ShardSpan::tasks`]), added by [`Shards::finish_tasks`] over this process's
/// shards; [`write_weight_grads`] completes the sum across processes and writes it.
/// `block_rows` and `transposed` come from the layer's `plan`
/// ([`WeightGradPath::Columns`]).
pub(super) fn column_weight_grad(
    plan: &ConvPlan,
    block_rows: usize,
    transposed: bool,
    span: &ShardSpan,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    with_bias: bool,
) {
    let (gemm, g) = (plan.gemm, &plan.geometry);
    let (k, cout) = (g.k(), g.out_c);
    let per_task = k * cout + if with_bias { cout } else { 0 };
    ws.tasks.clear();
    span.tasks(g.out_pixels(), block_rows, &mut ws.tasks);
    ws.partials.resize(ws.tasks.len() * per_task, 0.0);

    // Each task's product on bnconv's GEMM runs as blocks of its rows (output channels when
    // transposed, else `cols` columns), a nested loop when there are several: every element of
    // `dW_t` adds the task's rows in order whatever the block, so no result changes, and a late
    // layer's few tasks (one per shard) keep more workers busy.
    let (c_rows, c_cols) = if transposed { (cout, k) } else { (k, cout) };
    let depth = block_rows.min(span.max_shard_images() * g.out_pixels());
    let split = split_rows(c_rows, 2 * depth * c_cols);

    // Weight (and bias) gradient partials: dW_t = cols_t^T @ dy_t, db_t = column sums of dy_t.
    let (cols, tasks) = (&ws.cols, &ws.tasks);
    ws.partials
        .par_chunks_mut(per_task.max(1))
        .zip(tasks.par_iter())
        .for_each_task(TASKS, |(part, (_, rows))| {
            let (cols_t, dy_t) = (
                &cols[rows.start * k..rows.end * k],
                &dy[rows.start * cout..rows.end * cout],
            );
            let rows = rows.len();
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            // Rows `from..from + out.len() / c_cols` of the task's `dW_t` (or `dW_t^T`). Thread
            // time is taken around the products, never around a nested loop (whose waiting
            // thread may run other tasks, each timing itself).
            let block = |from: usize, out: &mut [f32]| {
                let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
                let n = out.len() / c_cols;
                warm_l2(cols_t);
                if transposed {
                    let dy_v = MatRef::new(&dy_t[from..], rows, n, cout);
                    let cols_v = MatRef::dense(cols_t, rows, k);
                    matmul_at_b(dy_v, cols_v, MatMut::dense(out, n, k), false);
                } else {
                    let cols_v = MatRef::new(&cols_t[from..], rows, n, k);
                    let dy_v = MatRef::dense(dy_t, rows, cout);
                    matmul_at_b(cols_v, dy_v, MatMut::dense(out, n, cout), false);
                }
            };
            match gemm {
                GemmBackend::Native if split < c_rows => dw_part
                    .par_chunks_mut(split * c_cols)
                    .enumerate()
                    .for_each_task(TASKS, |(b, out)| block(b * split, out)),
                GemmBackend::Native => block(0, dw_part),
                _ => {
                    let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
                    sgemm(
                        gemm,
                        1.0,
                        MatRef::dense(cols_t, rows, k).t(),
                        MatRef::dense(dy_t, rows, cout),
                        0.0,
                        MatMut::dense(dw_part, k, cout),
                    )
                }
            }
            if with_bias {
                let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
                bias_grad(dy_t, db_part);
            }
        });
    let _reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    finish_local(span, ws, per_task);
}

/// `dw` (and `db`, `with_bias`) of a layer on the implicit path, from the padded images the
/// forward pass kept in `ws.padded`: one partial sum per chunk of whole images of a local shard,
/// the chunks' and shards' partials added by [`Shards::finish_tasks`] over this process's
/// shards; [`write_weight_grads`] completes the sum across processes and writes it.
pub(super) fn implicit_weight_grad(
    g: &ConvGeometry,
    im: &Implicit,
    transposed: bool,
    span: &ShardSpan,
    ws: &mut ConvWorkspace,
    dy: &[f32],
    with_bias: bool,
) {
    let isa = active_isa();
    let (k, cout) = (g.k(), g.out_c);
    let per_task = k * cout + if with_bias { cout } else { 0 };
    ws.tasks.clear();
    span.tasks(1, images_per_chunk(g.out_pixels()), &mut ws.tasks);
    ws.partials.resize(ws.tasks.len() * per_task, 0.0);
    let image_out = g.out_pixels() * cout;
    // A task of several task's worth of work runs as a nested loop of three parts: its kernel
    // rows (rows of `dW`), or blocks of its output channels (rows of `dW^T`), each image by image
    // as the whole task would; every element adds the same products in the same order, so no
    // result changes, and a layer of one task per shard (conv06-conv08) keeps more workers busy.
    let task_flops = 2 * images_per_chunk(g.out_pixels()) * g.out_pixels() * k * cout;
    let parts = if task_flops >= IMPLICIT_SPLIT_FLOPS {
        3
    } else {
        1
    };
    let part_rows = if transposed { cout.div_ceil(parts) } else { 3 };
    let part_len = if transposed {
        part_rows * k
    } else {
        k * cout / parts
    };
    let (padded, tasks) = (&ws.padded, &ws.tasks);
    ws.partials
        .par_chunks_mut(per_task)
        .zip(tasks.par_iter())
        .for_each_task(TASKS, |(part, (_, images))| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            let padded_t = &padded[images.start * im.padded_len()..images.end * im.padded_len()];
            // Part `p` of the task's gradient into `out`.
            let run = |p: usize, out: &mut [f32]| {
                for (i, padded) in padded_t.chunks_exact(im.padded_len()).enumerate() {
                    // The image was bordered by the forward pass and is read cold. At stride 2
                    // it is four times the output's pixels, large next to the work, and
                    // streaming it in first pays; at stride 1 it did not.
                    if g.stride > 1 {
                        warm_l2(padded);
                    }
                    let dy_from = &dy[(images.start + i) * image_out..];
                    if transposed {
                        let from = p * part_rows;
                        let channels = from..from + out.len() / k;
                        weight_grad_image_transposed(
                            isa,
                            im,
                            padded,
                            dy_from,
                            cout,
                            channels,
                            out,
                            i > 0,
                        );
                    } else {
                        let kys = if parts == 1 { 0..3 } else { p..p + 1 };
                        weight_grad_image(isa, im, padded, dy_from, cout, kys, out, i > 0);
                    }
                }
            };
            if parts == 1 {
                run(0, dw_part);
            } else {
                dw_part
                    .par_chunks_mut(part_len)
                    .enumerate()
                    .for_each_task(TASKS, |(p, out)| {
                        let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
                        run(p, out)
                    });
            }
            if with_bias {
                bias_grad(
                    &dy[images.start * image_out..images.end * image_out],
                    db_part,
                );
            }
        });
    let _reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    finish_local(span, ws, per_task);
}

/// Adds the per-task partial sums in `ws.partials` over this process's shards
/// ([`Shards::finish_tasks`] without the processes): the subtree root is left in
/// `ws.shard_parts[..per_task]`.
fn finish_local(span: &ShardSpan, ws: &mut ConvWorkspace, per_task: usize) {
    Shards::local(span).finish_tasks(
        &ws.tasks,
        &ws.partials,
        per_task,
        &mut ws.shard_parts,
        TASKS,
    );
}

/// Completes the weight-gradient pass of `plan`'s layer: adds the subtree root its pass left in
/// `ws.shard_parts` across processes (`across`: the top of the shard tree) and writes the whole
/// batch's gradient: `dw` rows of the live taps (others zero), from `[k, cout]` sums or,
/// transposed, `[cout, k]` (the small-image pass leaves `dw` as it is); `db` from the `cout`
/// floats after them.
///
/// Kept apart from the passes so that the exchange between processes runs on the thread driving
/// the step, never inside a parallel task.
pub(super) fn write_weight_grads(
    plan: &ConvPlan,
    across: &dyn Across,
    ws: &mut ConvWorkspace,
    grads: WeightGrads,
) {
    let _p = profile::scope(Phase::ConvGemmBackwardWeights);
    let WeightGrads { dw, db } = grads;
    let g = &plan.geometry;
    let (k, cout) = (g.k(), g.out_c);
    let (len, transposed) = match plan.weight_grad {
        WeightGradPath::SmallImage => (g.weight_len(), None),
        WeightGradPath::Implicit { transposed, .. }
        | WeightGradPath::Columns { transposed, .. } => (k * cout, Some(transposed)),
    };
    let width = len + if db.is_some() { cout } else { 0 };
    let sums = &mut ws.shard_parts[..width];
    across.sum_f32(sums);
    match transposed {
        None => dw.copy_from_slice(&sums[..len]),
        Some(true) => {
            // `[cout, k]`: column `r` of the sums is weight row `r`.
            dw.fill(0.0);
            for r in 0..k {
                let out = &mut dw[weight_row(g, r) * cout..][..cout];
                for (j, dst) in out.iter_mut().enumerate() {
                    *dst = sums[j * k + r];
                }
            }
        }
        Some(false) => {
            dw.fill(0.0);
            for (r, row) in sums[..k * cout].chunks_exact(cout).enumerate() {
                let out = weight_row(g, r);
                dw[out * cout..][..cout].copy_from_slice(row);
            }
        }
    }
    if let Some(db) = db {
        assert_eq!(db.len(), cout, "conv_backward: bias gradient size");
        db.copy_from_slice(&sums[len..]);
    }
}

/// GEMM work (flops) from which an implicit-path weight-gradient task runs as three parts:
/// several tasks' worth ([`rows_per_task`]'s unit), so that each part is still a task's worth.
const IMPLICIT_SPLIT_FLOPS: usize = 8 * TASK_FLOPS;

/// Rows per block when a column-path weight-gradient task's `rows` output rows, of `row_flops`
/// GEMM work each, are cut into blocks of at least a task's worth of work ([`rows_per_task`]),
/// as even as multiples of 24 allow; `rows` itself when one block does. Shape alone decides.
fn split_rows(rows: usize, row_flops: usize) -> usize {
    let blocks = rows.div_ceil(rows_per_task(row_flops));
    if blocks <= 1 {
        return rows;
    }
    rows.div_ceil(blocks).div_ceil(24) * 24
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
