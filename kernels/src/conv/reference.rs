//! The direct convolution that the tests compare every path with.

use crate::conv::geometry::ConvGeometry;

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
