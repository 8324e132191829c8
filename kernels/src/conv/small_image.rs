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

use crate::conv::geometry::ConvGeometry;
use crate::gemm::matmul::pack_panels_gather;

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

/// `dw[tap, ci, co] = sum over (p, q) with tap(p, q) = tap of dd[(p, ci), (q, co)]`, in f64 and
/// increasing `(p, q)`; taps that no pair uses get zero.
pub fn fold_weight_grad(g: &ConvGeometry, dd: &[f32], dw: &mut [f32]) {
    let (k, n) = dense_shape(g);
    let (cin, cout, width) = (g.in_c, g.out_c, g.in_w);
    assert_eq!(dd.len(), k * n, "small-image conv: dense gradient size");
    assert_eq!(
        dw.len(),
        9 * cin * cout,
        "small-image conv: weight gradient size"
    );
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
            for (co, v) in row.iter_mut().enumerate() {
                let sum: f64 = pairs[..count]
                    .iter()
                    .map(|&(p, q)| dd[(p * cin + ci) * n + q * cout + co] as f64)
                    .sum();
                *v = sum as f32;
            }
        }
    }
}
