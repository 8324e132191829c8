//! 3x3 SAME convolution over NHWC batches: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Only the geometry's live kernel taps take part ([`ConvGeometry::live_taps`]): the GEMM depth is
//! `taps * Cin`, the weight operand is the live rows of the HWIO matrix, and the weight gradient
//! of a dead tap is exactly zero.
//!
//! Threads: work is cut into chunks of whole images ([`partition::images_per_chunk`]) spread over
//! the current rayon pool, and each chunk's GEMM is cut again into row blocks when it is big
//! enough to share. Splitting output rows never changes a result (every output element is reduced
//! in the same order), and the weight and bias gradients are per-chunk partial sums added in chunk
//! order: results are bitwise the same for any thread count.

use crate::gemm::{sgemm, GemmBackend};
use crate::geometry::ConvGeometry;
use crate::im2col::{col2im_image, im2col_image};
use crate::matmul::{matmul_at_b, matmul_packed, pack_panels, packed_len};
use crate::partition::{chunk_count, images_per_chunk};
use rayon::prelude::*;

/// GEMM work (flops) worth one rayon task: small enough to share a 64-row layer between two
/// threads, big enough that task overhead (a few microseconds) stays small.
const TASK_FLOPS: usize = 1 << 19;

/// Buffers a convolution layer reuses every step: sized on first use, never shrunk.
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    /// The forward im2col matrix (`rows x k`), kept for the weight gradient, then reused for the
    /// column gradient.
    cols: Vec<f32>,
    /// The weight operand of the current GEMM: panels for bnconv's GEMM, or the live weight rows
    /// for a library GEMM.
    weights: Vec<f32>,
    /// Per-chunk weight and bias gradient partial sums.
    partials: Vec<f32>,
}

/// Chunk sizes of one layer, in floats of each buffer.
struct Chunking {
    count: usize,
    input: usize,
    cols: usize,
    output: usize,
}

fn chunking(g: &ConvGeometry) -> Chunking {
    let images = images_per_chunk(g.out_pixels());
    Chunking {
        count: chunk_count(g.batch, images),
        input: images * g.in_pixels() * g.in_c,
        cols: images * g.out_pixels() * g.k(),
        output: images * g.out_pixels() * g.out_c,
    }
}

/// The HWIO weight row of live GEMM row `r`.
fn weight_row(g: &ConvGeometry, r: usize) -> usize {
    g.live_taps()[r / g.in_c] as usize * g.in_c + r % g.in_c
}

/// Rows per task for a GEMM whose rows cost `row_flops` each: a multiple of 6 (every tile
/// height divides it).
fn rows_per_task(row_flops: usize) -> usize {
    (TASK_FLOPS / row_flops.max(1)).div_ceil(6).max(1) * 6
}

/// Fills `ws.weights` with the forward GEMM's `B = W_live [k, Cout]`.
fn prepare_forward_weights(gemm: GemmBackend, g: &ConvGeometry, w: &[f32], out: &mut Vec<f32>) {
    let (k, n) = (g.k(), g.out_c);
    match gemm {
        GemmBackend::Native => {
            out.resize(packed_len(k, n), 0.0);
            pack_panels(k, n, |p, j| w[weight_row(g, p) * n + j], out);
        }
        _ => {
            out.resize(k * n, 0.0);
            for (r, row) in out.chunks_exact_mut(n).enumerate() {
                row.copy_from_slice(&w[weight_row(g, r) * n..][..n]);
            }
        }
    }
}

/// `c[rows, n] (+)= a[rows, depth] @ B` with `B` prepared for `gemm` (panels, or row-major
/// `[depth, n]` for a library, or with `transpose_b` row-major `[n, depth]`).
#[allow(clippy::too_many_arguments)]
fn gemm_rows(
    gemm: GemmBackend,
    rows: usize,
    n: usize,
    depth: usize,
    a: &[f32],
    b: &[f32],
    transpose_b: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    match gemm {
        GemmBackend::Native => {
            let block = rows_per_task(2 * n * depth);
            c.par_chunks_mut(block * n)
                .zip(a.par_chunks(block * depth))
                .for_each(|(c_b, a_b)| {
                    matmul_packed(c_b.len() / n, n, depth, a_b, depth, b, c_b, n, accumulate)
                });
        }
        _ => {
            let (beta, ldb) = (
                if accumulate { 1.0 } else { 0.0 },
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
        }
    }
}

/// `y = conv(x, w) (+ bias)`; `w` is HWIO (`[9*Cin, Cout]` row-major). The workspace keeps the
/// im2col matrix for [`conv_backward`].
pub fn conv_forward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    assert_eq!(x.len(), g.input_len(), "conv_forward: input size");
    assert_eq!(w.len(), g.weight_len(), "conv_forward: weight size");
    assert_eq!(y.len(), g.output_len(), "conv_forward: output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_c, "conv_forward: bias size");
    }
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    ws.cols.resize(g.cols_len(), 0.0);
    prepare_forward_weights(gemm, g, w, &mut ws.weights);
    let weights = &ws.weights;
    x.par_chunks(ch.input.max(1))
        .zip(ws.cols.par_chunks_mut(ch.cols.max(1)))
        .zip(y.par_chunks_mut(ch.output.max(1)))
        .for_each(|((x_c, cols_c), y_c)| {
            for (img, col) in x_c
                .chunks_exact(g.in_pixels() * g.in_c)
                .zip(cols_c.chunks_exact_mut(g.out_pixels() * k))
            {
                im2col_image(g, img, col);
            }
            if let Some(b) = bias {
                for row in y_c.chunks_exact_mut(cout) {
                    row.copy_from_slice(b);
                }
            }
            let rows = y_c.len() / cout;
            gemm_rows(
                gemm,
                rows,
                cout,
                k,
                cols_c,
                weights,
                false,
                y_c,
                bias.is_some(),
            );
        });
}

/// Gradients of [`conv_forward`], which must have run on the same workspace with the same
/// geometry and weights.
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
    assert_eq!(
        ws.cols.len(),
        g.cols_len(),
        "conv_backward: needs the forward pass's columns"
    );
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
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    let with_bias = db.is_some();
    let per_chunk = k * cout + if with_bias { cout } else { 0 };
    ws.partials.resize(ch.count * per_chunk, 0.0);

    // Weight (and bias) gradient partials: dW_c = cols_c^T @ dy_c, db_c = column sums of dy_c.
    ws.cols
        .par_chunks(ch.cols.max(1))
        .zip(dy.par_chunks(ch.output.max(1)))
        .zip(ws.partials.par_chunks_mut(per_chunk.max(1)))
        .for_each(|((cols_c, dy_c), part)| {
            let rows = dy_c.len() / cout;
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            match gemm {
                GemmBackend::Native => {
                    let block = rows_per_task(2 * cout * rows);
                    dw_part
                        .par_chunks_mut(block * cout)
                        .enumerate()
                        .for_each(|(i, out)| {
                            let first = i * block;
                            matmul_at_b(
                                out.len() / cout,
                                cout,
                                rows,
                                &cols_c[first..],
                                k,
                                dy_c,
                                cout,
                                out,
                                cout,
                                false,
                            )
                        });
                }
                _ => sgemm(
                    gemm, true, false, k, cout, rows, 1.0, cols_c, k, dy_c, cout, 0.0, dw_part,
                    cout,
                ),
            }
            if with_bias {
                db_part.fill(0.0);
                for row in dy_c.chunks_exact(cout) {
                    for (acc, v) in db_part.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
            }
        });
    dw.fill(0.0);
    for (r, out) in (0..k).map(|r| (r, weight_row(g, r))) {
        let dst = &mut dw[out * cout..][..cout];
        for part in ws.partials.chunks_exact(per_chunk) {
            for (acc, v) in dst.iter_mut().zip(&part[r * cout..][..cout]) {
                *acc += v;
            }
        }
    }
    if let Some(db) = db {
        assert_eq!(db.len(), cout, "conv_backward: bias gradient size");
        db.fill(0.0);
        for part in ws.partials.chunks_exact(per_chunk) {
            for (acc, v) in db.iter_mut().zip(&part[k * cout..]) {
                *acc += v;
            }
        }
    }

    // Input gradient: dcols_c = dy_c @ W_live^T (into the spent column buffer), then col2im.
    let Some(dx) = dx else { return };
    assert_eq!(
        dx.len(),
        g.input_len(),
        "conv_backward: input gradient size"
    );
    match gemm {
        GemmBackend::Native => {
            ws.weights.resize(packed_len(cout, k), 0.0);
            pack_panels(
                cout,
                k,
                |p, j| w[weight_row(g, j) * cout + p],
                &mut ws.weights,
            );
        }
        _ => prepare_forward_weights(gemm, g, w, &mut ws.weights),
    }
    let weights = &ws.weights;
    ws.cols
        .par_chunks_mut(ch.cols.max(1))
        .zip(dy.par_chunks(ch.output.max(1)))
        .zip(dx.par_chunks_mut(ch.input.max(1)))
        .for_each(|((cols_c, dy_c), dx_c)| {
            let rows = dy_c.len() / cout;
            gemm_rows(gemm, rows, k, cout, dy_c, weights, true, cols_c, false);
            for (dcol, dimg) in cols_c
                .chunks_exact(g.out_pixels() * k)
                .zip(dx_c.chunks_exact_mut(g.in_pixels() * g.in_c))
            {
                col2im_image(g, dcol, dimg);
            }
        });
}

/// Direct (no im2col, no GEMM) convolution in f64: the reference for tests.
pub fn conv_forward_reference(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0.0f32; g.output_len()];
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for co in 0..g.out_c {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            for ci in 0..g.in_c {
                                let xv = x[((n * g.in_h + iy) * g.in_w + ix) * g.in_c + ci];
                                let wv = w[((ky * 3 + kx) * g.in_c + ci) * g.out_c + co];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((n * g.out_h + oy) * g.out_w + ox) * g.out_c + co] = acc as f32;
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn forward_matches_direct_convolution() {
        for &(n, h, w, cin, cout, stride) in &[
            (2, 7, 7, 3, 5, 1),
            (3, 8, 8, 4, 6, 2),
            (2, 5, 6, 1, 4, 2),
            (40, 2, 2, 3, 2, 2),
            (600, 1, 1, 5, 3, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 1);
            let wt = pseudo(g.weight_len(), 2);
            let b = pseudo(cout, 3);
            let want = conv_forward_reference(&g, &x, &wt, Some(&b));
            for &gemm in GemmBackend::available() {
                let mut ws = ConvWorkspace::default();
                let mut y = vec![f32::NAN; g.output_len()];
                conv_forward(gemm, &g, &x, &wt, Some(&b), &mut ws, &mut y);
                for (i, (a, r)) in y.iter().zip(&want).enumerate() {
                    assert!((a - r).abs() < 1e-5, "{gemm} {g:?} at {i}: {a} vs {r}");
                }
            }
        }
    }

    /// The backward pass is the adjoint of the forward: <conv(x), dy> = <x, dx> and = <w, dw>.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for &(n, h, w, cin, cout, stride) in &[
            (2, 7, 7, 3, 5, 1),
            (3, 8, 8, 4, 6, 2),
            (33, 2, 2, 3, 2, 2),
            (70, 1, 1, 7, 9, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 4);
            let wt = pseudo(g.weight_len(), 5);
            let dy = pseudo(g.output_len(), 6);
            let mut ws = ConvWorkspace::default();
            let mut y = vec![0.0; g.output_len()];
            conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut ws, &mut y);
            let (mut dx, mut dw, mut db) =
                (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; cout]);
            conv_backward(
                GemmBackend::default(),
                &g,
                &mut ws,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            );
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| *p as f64 * *q as f64)
                    .sum::<f64>()
            };
            let ydy = dot(&y, &dy);
            assert!(
                (ydy - dot(&x, &dx)).abs() < 1e-4 * (1.0 + ydy.abs()),
                "{g:?} dx"
            );
            assert!(
                (ydy - dot(&wt, &dw)).abs() < 1e-4 * (1.0 + ydy.abs()),
                "{g:?} dw"
            );
            let sum_dy: Vec<f64> = (0..cout)
                .map(|c| dy.iter().skip(c).step_by(cout).map(|v| *v as f64).sum())
                .collect();
            for c in 0..cout {
                assert!((db[c] as f64 - sum_dy[c]).abs() < 1e-4, "{g:?} db");
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let _lock = crate::simd::ISA_TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let g = ConvGeometry::same(64, 14, 14, 8, 12, 1);
        let x = pseudo(g.input_len(), 7);
        let wt = pseudo(g.weight_len(), 8);
        let dy = pseudo(g.output_len(), 9);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut ws = ConvWorkspace::default();
                let mut y = vec![0.0; g.output_len()];
                conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut ws, &mut y);
                let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                conv_backward(
                    GemmBackend::default(),
                    &g,
                    &mut ws,
                    &wt,
                    &dy,
                    Some(&mut dx),
                    &mut dw,
                    None,
                );
                (y, dx, dw)
            })
        };
        assert!(run(1) == run(3), "1 and 3 threads must agree bitwise");
    }
}
