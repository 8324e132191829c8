//! The GEMM of a convolution on any backend: output rows, bias and ReLU.

use crate::conv::im2col::copy_run;
use crate::conv::plan::rows_per_task;
use crate::fuse::{Epilogue, Start};
use crate::gemm::matmul::matmul_packed;
use crate::gemm::{sgemm, GemmBackend};
use crate::runtime::task_log::ForEachTask;
use rayon::prelude::*;

/// `c[rows, n] = relu?(start + a[rows, depth] @ B)` (the [`Epilogue`]'s start, zero or a bias,
/// and ReLU; no scale) with `B` prepared for `gemm` (panels, or row-major `[depth, n]` for a
/// library, or with `transpose_b` row-major `[n, depth]`). bnconv's GEMM applies the epilogue
/// on its output tiles; a library's product is accumulated onto rows filled with the bias.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_rows(
    gemm: GemmBackend,
    rows: usize,
    n: usize,
    depth: usize,
    a: &[f32],
    b: &[f32],
    transpose_b: bool,
    c: &mut [f32],
    epilogue: Epilogue,
) {
    assert!(
        !matches!(epilogue.start, Start::Accumulate) && epilogue.scale.is_none(),
        "gemm_rows: a bias or zero start, no scale"
    );
    let (bias, relu) = (epilogue.start.bias(), epilogue.relu);
    match gemm {
        GemmBackend::Native => {
            let block = rows_per_task(2 * n * depth);
            c.par_chunks_mut(block * n)
                .zip(a.par_chunks(block * depth))
                .for_each_task_in_scope(|(c_b, a_b)| {
                    matmul_packed(c_b.len() / n, n, depth, a_b, depth, b, c_b, n, epilogue)
                });
        }
        _ => {
            if let Some(b) = bias {
                fill_rows(c, b);
            }
            let (beta, ldb) = (
                if bias.is_some() { 1.0 } else { 0.0 },
                if transpose_b { depth } else { n },
            );
            sgemm(
                gemm,
                false,
                transpose_b,
                rows,
                n,
                depth,
                1.0,
                a,
                depth,
                b,
                ldb,
                beta,
                c,
                n,
            );
            if relu {
                for v in c.iter_mut() {
                    *v = crate::simd::relu_s(*v);
                }
            }
        }
    }
}

/// Every `b.len()`-wide row of `y` set to `b` (the bias the GEMM then accumulates onto), with
/// vector moves: rows are 4-76 floats, too short for a `memcpy` call to pay.
fn fill_rows(y: &mut [f32], b: &[f32]) {
    for row in y.chunks_exact_mut(b.len()) {
        copy_run(row, b);
    }
}
