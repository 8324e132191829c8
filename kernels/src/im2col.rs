//! NHWC im2col and col2im for one image of a 3x3 SAME convolution.
//!
//! The column matrix has one row per output pixel and `taps * Cin` columns ordered (kernel row,
//! kernel column, input channel) — the HWIO weight layout flattened — so `cols @ W[9*Cin, Cout]`
//! is the convolution. Only the geometry's live taps get columns (dead taps only ever see
//! padding). Each tap is one contiguous run of `Cin` floats in NHWC, copied or zeroed.

use crate::geometry::{ConvGeometry, KERNEL};

/// The input row/column a kernel tap reads, or `None` when it falls in the padding.
#[inline(always)]
fn source(out: usize, tap: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (out * stride + tap).checked_sub(pad).filter(|&i| i < size)
}

/// Writes the column rows of one image: `x` is that image (`H*W*Cin`), `cols` its rows
/// (`out_pixels * 9*Cin`).
pub fn im2col_image(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
    let (cin, k) = (g.in_c, g.k());
    assert_eq!(x.len(), g.in_pixels() * cin, "im2col: image size");
    assert_eq!(cols.len(), g.out_pixels() * k, "im2col: column buffer size");
    for (pixel, row) in cols.chunks_exact_mut(k).enumerate() {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        for (dst, &tap) in row.chunks_exact_mut(cin).zip(g.live_taps()) {
            let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
            match (
                source(oy, ky, g.stride, g.pad_top, g.in_h),
                source(ox, kx, g.stride, g.pad_left, g.in_w),
            ) {
                (Some(iy), Some(ix)) => dst.copy_from_slice(&x[(iy * g.in_w + ix) * cin..][..cin]),
                _ => dst.fill(0.0),
            }
        }
    }
}

/// The adjoint of [`im2col_image`]: sums every column entry back into the input pixel it came
/// from. `dx` (one image) is overwritten.
pub fn col2im_image(g: &ConvGeometry, dcols: &[f32], dx: &mut [f32]) {
    let (cin, k) = (g.in_c, g.k());
    assert_eq!(dx.len(), g.in_pixels() * cin, "col2im: image size");
    assert_eq!(
        dcols.len(),
        g.out_pixels() * k,
        "col2im: column buffer size"
    );
    dx.fill(0.0);
    for (pixel, row) in dcols.chunks_exact(k).enumerate() {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        for (src, &tap) in row.chunks_exact(cin).zip(g.live_taps()) {
            let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
            let (Some(iy), Some(ix)) = (
                source(oy, ky, g.stride, g.pad_top, g.in_h),
                source(ox, kx, g.stride, g.pad_left, g.in_w),
            ) else {
                continue;
            };
            let dst = &mut dx[(iy * g.in_w + ix) * cin..][..cin];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// <im2col(x), c> == <x, col2im(c)> for random x and c: col2im is exactly im2col's adjoint.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(h, w, cin, stride) in &[
            (5, 5, 3, 1),
            (8, 8, 2, 2),
            (7, 6, 1, 2),
            (1, 1, 4, 2),
            (2, 2, 3, 2),
        ] {
            let g = ConvGeometry::same(1, h, w, cin, 1, stride);
            let x: Vec<f32> = (0..g.in_pixels() * cin).map(|_| next()).collect();
            let c: Vec<f32> = (0..g.out_pixels() * g.k()).map(|_| next()).collect();
            let mut cols = vec![0.0; c.len()];
            im2col_image(&g, &x, &mut cols);
            let mut dx = vec![7.0; x.len()];
            col2im_image(&g, &c, &mut dx);
            let lhs: f64 = cols
                .iter()
                .zip(&c)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let rhs: f64 = x
                .iter()
                .zip(&dx)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-5,
                "{h}x{w}x{cin} s{stride}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn stride_two_even_input_pads_bottom_right_only() {
        // 2x2 input, stride 2: one output pixel whose taps cover rows/cols -0+0..2 (pad after = 1).
        let g = ConvGeometry::same(1, 2, 2, 1, 1, 2);
        let x = [1.0, 2.0, 3.0, 4.0];
        // Taps (0,0), (0,1), (1,0), (1,1) are live; the third row and column only see padding.
        let mut cols = vec![0.0; 4];
        im2col_image(&g, &x, &mut cols);
        assert_eq!(cols, [1.0, 2.0, 3.0, 4.0]);
    }
}
