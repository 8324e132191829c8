//! The GEMM of a convolution on any backend: output rows, bias and ReLU.

use crate::conv::im2col::copy_run;
use crate::conv::plan::rows_per_task;
use crate::fuse::{Epilogue, Start};
use crate::gemm::matmul::matmul_packed;
use crate::gemm::{sgemm, GemmBackend, MatMut, MatRef};
use crate::runtime::task_log::ForEachTask;
use rayon::prelude::*;

/// `C = relu?(start + A @ B)` (the [`Epilogue`]'s start, zero or a bias, and ReLU; no scale)
/// for dense `A` (`rows x depth`) and `C` (`rows x n`), with `B` prepared for `gemm`: panels for
/// bnconv's GEMM, or for a library row-major `[depth, n]` (with `transpose_b`, `[n, depth]`).
/// bnconv's GEMM applies the epilogue on its output tiles; a library's product is accumulated
/// onto rows filled with the bias.
pub(super) fn gemm_rows(
    gemm: GemmBackend,
    a: MatRef,
    b: &[f32],
    transpose_b: bool,
    mut c: MatMut,
    epilogue: Epilogue,
) {
    let (rows, depth, n) = (a.rows(), a.cols(), c.cols());
    assert!(
        a.ld() == depth && c.ld() == n && c.rows() == rows && !a.is_transposed(),
        "gemm_rows: dense rows of A and C"
    );
    let (a, c) = (&a.data()[..rows * depth], &mut c.data()[..rows * n]);
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
                    let rows = c_b.len() / n;
                    let (a_b, c_b) = (MatRef::dense(a_b, rows, depth), MatMut::dense(c_b, rows, n));
                    matmul_packed(a_b, b, c_b, epilogue)
                });
        }
        _ => {
            if let Some(b) = bias {
                fill_rows(c, b);
            }
            let beta = if bias.is_some() { 1.0 } else { 0.0 };
            let b = if transpose_b {
                MatRef::dense(b, n, depth).t()
            } else {
                MatRef::dense(b, depth, n)
            };
            let a = MatRef::dense(a, rows, depth);
            sgemm(gemm, 1.0, a, b, beta, MatMut::dense(c, rows, n));
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
