//! 3x3 SAME convolution over NHWC batches: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Work is cut into chunks of whole images ([`partition::images_per_chunk`]) and spread over the
//! current rayon pool; each chunk runs its own single-threaded GEMM. Weight and bias gradients are
//! per-chunk partial sums added in chunk order, so they do not depend on the thread count.

use crate::gemm::{sgemm, GemmBackend};
use crate::geometry::ConvGeometry;
use crate::im2col::{col2im_image, im2col_image};
use crate::partition::{chunk_count, images_per_chunk};
use crate::profile::{self, Phase};
use rayon::prelude::*;

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

/// `y = conv(x, w) (+ bias)`. `cols` receives the im2col matrix (`g.cols_len()` floats), which
/// [`conv_backward`] needs; `w` is HWIO (`[9*Cin, Cout]` row-major).
pub fn conv_forward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    cols: &mut [f32],
    y: &mut [f32],
) {
    assert_eq!(x.len(), g.input_len(), "conv_forward: input size");
    assert_eq!(w.len(), g.weight_len(), "conv_forward: weight size");
    assert_eq!(cols.len(), g.cols_len(), "conv_forward: column buffer size");
    assert_eq!(y.len(), g.output_len(), "conv_forward: output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_c, "conv_forward: bias size");
    }
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    x.par_chunks(ch.input.max(1))
        .zip(cols.par_chunks_mut(ch.cols.max(1)))
        .zip(y.par_chunks_mut(ch.output.max(1)))
        .for_each(|((x_c, cols_c), y_c)| {
            let p = profile::thread_scope(Phase::Im2col);
            for (img, col) in x_c
                .chunks_exact(g.in_pixels() * g.in_c)
                .zip(cols_c.chunks_exact_mut(g.out_pixels() * k))
            {
                im2col_image(g, img, col);
            }
            drop(p);
            let _p = profile::thread_scope(Phase::ConvGemmForward);
            let rows = y_c.len() / cout;
            let beta = match bias {
                Some(b) => {
                    for row in y_c.chunks_exact_mut(cout) {
                        row.copy_from_slice(b);
                    }
                    1.0
                }
                None => 0.0,
            };
            sgemm(
                gemm, false, false, rows, cout, k, 1.0, cols_c, k, w, cout, beta, y_c, cout,
            );
        });
}

/// Gradients of [`conv_forward`].
///
/// `cols` must hold the forward pass's im2col matrix; it is reused as scratch for the column
/// gradient, so it is garbage afterwards. `dx` is skipped when `None` (the first layer needs no
/// input gradient). `dw` and `db` are overwritten. `partials` is a reusable workspace.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    cols: &mut [f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    partials: &mut Vec<f32>,
) {
    assert_eq!(
        cols.len(),
        g.cols_len(),
        "conv_backward: column buffer size"
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
    partials.clear();
    partials.resize(ch.count * per_chunk, 0.0);

    // Weight (and bias) gradient partials: dW_c = cols_c^T @ dy_c, db_c = column sums of dy_c.
    cols.par_chunks(ch.cols.max(1))
        .zip(dy.par_chunks(ch.output.max(1)))
        .zip(partials.par_chunks_mut(per_chunk.max(1)))
        .for_each(|((cols_c, dy_c), part)| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let rows = dy_c.len() / cout;
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            sgemm(
                gemm, true, false, k, cout, rows, 1.0, cols_c, k, dy_c, cout, 0.0, dw_part, cout,
            );
            if with_bias {
                for row in dy_c.chunks_exact(cout) {
                    for (acc, v) in db_part.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
            }
        });
    let reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    dw.fill(0.0);
    let mut db = db;
    if let Some(db) = db.as_deref_mut() {
        assert_eq!(db.len(), cout, "conv_backward: bias gradient size");
        db.fill(0.0);
    }
    for part in partials.chunks_exact(per_chunk.max(1)) {
        for (acc, v) in dw.iter_mut().zip(&part[..k * cout]) {
            *acc += v;
        }
        if let Some(db) = db.as_deref_mut() {
            for (acc, v) in db.iter_mut().zip(&part[k * cout..]) {
                *acc += v;
            }
        }
    }
    drop(reduce);

    // Input gradient: dcols_c = dy_c @ W^T (into the spent column buffer), then col2im per image.
    if let Some(dx) = dx {
        assert_eq!(
            dx.len(),
            g.input_len(),
            "conv_backward: input gradient size"
        );
        cols.par_chunks_mut(ch.cols.max(1))
            .zip(dy.par_chunks(ch.output.max(1)))
            .zip(dx.par_chunks_mut(ch.input.max(1)))
            .for_each(|((cols_c, dy_c), dx_c)| {
                let p = profile::thread_scope(Phase::ConvGemmBackwardData);
                let rows = dy_c.len() / cout;
                sgemm(
                    gemm, false, true, rows, k, cout, 1.0, dy_c, cout, w, cout, 0.0, cols_c, k,
                );
                drop(p);
                let _p = profile::thread_scope(Phase::Col2im);
                for (dcol, dimg) in cols_c
                    .chunks_exact(g.out_pixels() * k)
                    .zip(dx_c.chunks_exact_mut(g.in_pixels() * g.in_c))
                {
                    col2im_image(g, dcol, dimg);
                }
            });
    }
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
            let mut cols = vec![0.0; g.cols_len()];
            let mut y = vec![f32::NAN; g.output_len()];
            conv_forward(
                GemmBackend::default(),
                &g,
                &x,
                &wt,
                Some(&b),
                &mut cols,
                &mut y,
            );
            let want = conv_forward_reference(&g, &x, &wt, Some(&b));
            for (i, (a, r)) in y.iter().zip(&want).enumerate() {
                assert!((a - r).abs() < 1e-5, "{g:?} at {i}: {a} vs {r}");
            }
        }
    }

    /// The backward pass is the adjoint of the forward: <conv(x), dy> = <x, dx> and = <w, dw>.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for &(n, h, w, cin, cout, stride) in
            &[(2, 7, 7, 3, 5, 1), (3, 8, 8, 4, 6, 2), (33, 2, 2, 3, 2, 2)]
        {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 4);
            let wt = pseudo(g.weight_len(), 5);
            let dy = pseudo(g.output_len(), 6);
            let mut cols = vec![0.0; g.cols_len()];
            let mut y = vec![0.0; g.output_len()];
            conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut cols, &mut y);
            let (mut dx, mut dw, mut db) =
                (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; cout]);
            let mut ws = Vec::new();
            conv_backward(
                GemmBackend::default(),
                &g,
                &mut cols,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
                &mut ws,
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
                let mut cols = vec![0.0; g.cols_len()];
                let mut y = vec![0.0; g.output_len()];
                conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut cols, &mut y);
                let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                let mut ws = Vec::new();
                conv_backward(
                    GemmBackend::default(),
                    &g,
                    &mut cols,
                    &wt,
                    &dy,
                    Some(&mut dx),
                    &mut dw,
                    None,
                    &mut ws,
                );
                (y, dx, dw)
            })
        };
        assert!(run(1) == run(3), "1 and 3 threads must agree bitwise");
    }
}
