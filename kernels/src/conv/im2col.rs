//! NHWC im2col and col2im for one image of a 3x3 SAME convolution.
//!
//! The column matrix has one row per output pixel and `taps * Cin` columns ordered (kernel row,
//! kernel column, input channel) — the HWIO weight layout flattened — so `cols @ W[9*Cin, Cout]`
//! is the convolution. Only the geometry's live taps get columns (dead taps only ever see
//! padding). Each tap is one contiguous run of `Cin` floats in NHWC, copied or zeroed.

use crate::conv::geometry::{ConvGeometry, KERNEL};
use crate::simd::{accumulate, head, head_mut, Simd8, LANES};
use wide::f32x8;

/// The input row/column a kernel tap reads, or `None` when it falls in the padding.
#[inline(always)]
fn source(out: usize, tap: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (out * stride + tap).checked_sub(pad).filter(|&i| i < size)
}

/// Copies `src` into `dst` (same length) with vector moves: the runs here are 1 to a few hundred
/// floats, where a `memcpy` call costs more than the copy itself (it was a third of a step).
#[inline(always)]
pub(crate) fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    debug_assert_eq!(n, src.len());
    if n >= LANES {
        for i in (0..n - LANES).step_by(LANES) {
            f32x8::load(head(&src[i..])).store(head_mut(&mut dst[i..]));
        }
        // The last vector may overlap the previous one: it rewrites the same values.
        f32x8::load(head(&src[n - LANES..])).store(head_mut(&mut dst[n - LANES..]));
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// `dst = 0` with vector stores (see [`copy_run`]).
#[inline(always)]
pub(crate) fn zero_run(dst: &mut [f32]) {
    let n = dst.len();
    if n >= LANES {
        for i in (0..n - LANES).step_by(LANES) {
            f32x8::ZERO.store(head_mut(&mut dst[i..]));
        }
        f32x8::ZERO.store(head_mut(&mut dst[n - LANES..]));
    } else {
        for d in dst {
            *d = 0.0;
        }
    }
}

/// `dst += src` with vector adds (no overlap trick: adding twice would be wrong).
#[inline(always)]
fn add_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + LANES <= n {
        accumulate(head_mut(&mut dst[i..]), f32x8::load(head(&src[i..])));
        i += LANES;
    }
    for (d, s) in dst[i..].iter_mut().zip(&src[i..]) {
        *d += s;
    }
}

/// The first input column of output column `ox`'s 3-wide window, if the whole window is inside
/// the image (then its three taps are one contiguous NHWC run of `3 * Cin` floats).
#[inline(always)]
fn inner_window(g: &ConvGeometry, ox: usize) -> Option<usize> {
    (ox * g.stride)
        .checked_sub(g.pad_left)
        .filter(|&ix| ix + KERNEL <= g.in_w)
}

/// Writes the column rows of one image: `x` is that image (`H*W*Cin`), `cols` its rows
/// (`out_pixels * k`). Where all taps are live and a window row lies inside the image, its three
/// taps are copied as one run.
pub fn im2col_image(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
    let (cin, k) = (g.in_c, g.k());
    assert_eq!(x.len(), g.in_pixels() * cin, "im2col: image size");
    assert_eq!(cols.len(), g.out_pixels() * k, "im2col: column buffer size");
    let all_taps = g.live_taps().len() == KERNEL * KERNEL;
    for (pixel, row) in cols.chunks_exact_mut(k).enumerate() {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        if let (true, Some(ix)) = (all_taps, inner_window(g, ox)) {
            for (ky, dst) in row.chunks_exact_mut(KERNEL * cin).enumerate() {
                match source(oy, ky, g.stride, g.pad_top, g.in_h) {
                    Some(iy) => copy_run(dst, &x[(iy * g.in_w + ix) * cin..][..KERNEL * cin]),
                    None => zero_run(dst),
                }
            }
            continue;
        }
        for (dst, &tap) in row.chunks_exact_mut(cin).zip(g.live_taps()) {
            let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
            match (
                source(oy, ky, g.stride, g.pad_top, g.in_h),
                source(ox, kx, g.stride, g.pad_left, g.in_w),
            ) {
                (Some(iy), Some(ix)) => copy_run(dst, &x[(iy * g.in_w + ix) * cin..][..cin]),
                _ => zero_run(dst),
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
    zero_run(dx);
    let all_taps = g.live_taps().len() == KERNEL * KERNEL;
    for (pixel, row) in dcols.chunks_exact(k).enumerate() {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        if let (true, Some(ix)) = (all_taps, inner_window(g, ox)) {
            for (ky, src) in row.chunks_exact(KERNEL * cin).enumerate() {
                if let Some(iy) = source(oy, ky, g.stride, g.pad_top, g.in_h) {
                    add_run(&mut dx[(iy * g.in_w + ix) * cin..][..KERNEL * cin], src);
                }
            }
            continue;
        }
        for (src, &tap) in row.chunks_exact(cin).zip(g.live_taps()) {
            let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
            if let (Some(iy), Some(ix)) = (
                source(oy, ky, g.stride, g.pad_top, g.in_h),
                source(ox, kx, g.stride, g.pad_left, g.in_w),
            ) {
                add_run(&mut dx[(iy * g.in_w + ix) * cin..][..cin], src);
            }
        }
    }
}

/// Plain references for the tests: one tap at a time, element by element.
pub mod reference {
    use super::source;
    use crate::conv::geometry::{ConvGeometry, KERNEL};

    /// [`super::im2col_image`], one element at a time.
    pub fn im2col_image(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
        let (cin, k) = (g.in_c, g.k());
        for (pixel, row) in cols.chunks_exact_mut(k).enumerate() {
            let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
            for (t, &tap) in g.live_taps().iter().enumerate() {
                let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
                let at = (
                    source(oy, ky, g.stride, g.pad_top, g.in_h),
                    source(ox, kx, g.stride, g.pad_left, g.in_w),
                );
                for c in 0..cin {
                    row[t * cin + c] = match at {
                        (Some(iy), Some(ix)) => x[(iy * g.in_w + ix) * cin + c],
                        _ => 0.0,
                    };
                }
            }
        }
    }

    /// [`super::col2im_image`], one element at a time.
    pub fn col2im_image(g: &ConvGeometry, dcols: &[f32], dx: &mut [f32]) {
        let (cin, k) = (g.in_c, g.k());
        dx.iter_mut().for_each(|v| *v = 0.0);
        for (pixel, row) in dcols.chunks_exact(k).enumerate() {
            let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
            for (t, &tap) in g.live_taps().iter().enumerate() {
                let (ky, kx) = (tap as usize / KERNEL, tap as usize % KERNEL);
                if let (Some(iy), Some(ix)) = (
                    source(oy, ky, g.stride, g.pad_top, g.in_h),
                    source(ox, kx, g.stride, g.pad_left, g.in_w),
                ) {
                    for c in 0..cin {
                        dx[(iy * g.in_w + ix) * cin + c] += row[t * cin + c];
                    }
                }
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

    /// The run-based kernels against the element-by-element references, bitwise, on sizes that
    /// exercise every run length (channels 1..=17, so runs of 1..=51 floats) and both strides.
    #[test]
    fn runs_match_the_element_references() {
        let mut seed = 9u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for cin in 1..=17 {
            for &(h, w, stride) in &[(5, 6, 1), (6, 5, 2), (1, 1, 1), (2, 2, 2), (2, 3, 1)] {
                let g = ConvGeometry::same(1, h, w, cin, 1, stride);
                let x: Vec<f32> = (0..g.in_pixels() * cin).map(|_| next()).collect();
                let c: Vec<f32> = (0..g.out_pixels() * g.k()).map(|_| next()).collect();
                let (mut got, mut want) = (vec![f32::NAN; c.len()], vec![f32::NAN; c.len()]);
                im2col_image(&g, &x, &mut got);
                reference::im2col_image(&g, &x, &mut want);
                assert_eq!(got, want, "im2col {h}x{w}x{cin} s{stride}");
                let (mut got, mut want) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
                col2im_image(&g, &c, &mut got);
                reference::col2im_image(&g, &c, &mut want);
                assert_eq!(got, want, "col2im {h}x{w}x{cin} s{stride}");
            }
        }
    }

    #[test]
    fn stride_two_even_input_pads_bottom_right_only() {
        // TensorFlow's SAME: an even side at stride 2 needs one padded row and column, and they
        // go after the image (PyTorch-style symmetric padding would put them before it).
        let g = ConvGeometry::same(1, 4, 4, 1, 1, 2);
        assert_eq!((g.out_h, g.out_w), (2, 2));
        assert_eq!(
            (g.pad_top, g.pad_left, g.pad_bottom, g.pad_right),
            (0, 0, 1, 1)
        );
        assert_eq!(
            g.live_taps().len(),
            9,
            "each tap reads a pixel for some output"
        );
        // Pixels 1..=16 row by row; each output pixel's window, 0 where it reads padding: the
        // bottom row and right column of the last windows.
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut cols = vec![f32::NAN; 4 * 9];
        im2col_image(&g, &x, &mut cols);
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 3.0,    5.0, 6.0, 7.0,    9.0, 10.0, 11.0,
            3.0, 4.0, 0.0,    7.0, 8.0, 0.0,    11.0, 12.0, 0.0,
            9.0, 10.0, 11.0,  13.0, 14.0, 15.0, 0.0, 0.0, 0.0,
            11.0, 12.0, 0.0,  15.0, 16.0, 0.0,  0.0, 0.0, 0.0,
        ];
        assert_eq!(cols, want);

        // 2x2 at stride 2: one output pixel; the taps of the third kernel row and column see only
        // the padding after the image, so they are dead and the others read the four pixels.
        let g = ConvGeometry::same(1, 2, 2, 1, 1, 2);
        assert_eq!(
            (g.pad_top, g.pad_left, g.pad_bottom, g.pad_right),
            (0, 0, 1, 1)
        );
        assert_eq!(g.live_taps(), [0, 1, 3, 4]);
        let mut cols = vec![f32::NAN; 4];
        im2col_image(&g, &[1.0, 2.0, 3.0, 4.0], &mut cols);
        assert_eq!(cols, [1.0, 2.0, 3.0, 4.0]);
    }
}
