//! The direct convolution that the tests compare every path with. It derives the output size and
//! the padding itself, from TensorFlow's SAME rule as TensorFlow documents it, instead of reading
//! them from the engine's [`ConvGeometry`]: a geometry bug then shows up as a mismatch rather
//! than being shared by the code under test and its reference.

use crate::conv::geometry::ConvGeometry;

/// What defines a 3x3 SAME convolution, and nothing derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSizes {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub stride: usize,
}

impl ConvSizes {
    /// The sizes `g` was made from (its output size and padding are not read).
    pub fn of(g: &ConvGeometry) -> ConvSizes {
        ConvSizes {
            batch: g.batch,
            in_h: g.in_h,
            in_w: g.in_w,
            in_c: g.in_c,
            out_c: g.out_c,
            stride: g.stride,
        }
    }

    /// `(out_h, out_w)` under [`tf_same`].
    pub fn output_hw(&self) -> (usize, usize) {
        (
            tf_same(self.in_h, self.stride).0,
            tf_same(self.in_w, self.stride).0,
        )
    }
}

/// TensorFlow's SAME padding along one axis for a 3-tap filter, in the form its convolution
/// guide states it: `out = ceil(in / stride)`; the padding is `max(3 - stride, 0)` when `stride`
/// divides `in`, else `max(3 - in % stride, 0)`; the smaller half goes before the image.
/// Returns `(out, padding before)`.
pub fn tf_same(input: usize, stride: usize) -> (usize, usize) {
    const FILTER: usize = 3;
    let out = input.div_ceil(stride);
    let pad_along = if input.is_multiple_of(stride) {
        FILTER.saturating_sub(stride)
    } else {
        FILTER.saturating_sub(input % stride)
    };
    (out, pad_along / 2)
}

/// Direct (no im2col, no GEMM) convolution in f64 of an NHWC batch `x` with HWIO weights `w`:
/// the reference for tests. The output is `batch x out_h x out_w x out_c` with the sizes of
/// [`ConvSizes::output_hw`].
pub fn conv_forward_reference(
    s: &ConvSizes,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (out_h, pad_top) = tf_same(s.in_h, s.stride);
    let (out_w, pad_left) = tf_same(s.in_w, s.stride);
    assert_eq!(x.len(), s.batch * s.in_h * s.in_w * s.in_c, "input size");
    assert_eq!(w.len(), 9 * s.in_c * s.out_c, "weight size");
    let mut y = vec![0.0f32; s.batch * out_h * out_w * s.out_c];
    for n in 0..s.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..s.out_c {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (oy * s.stride + ky) as isize - pad_top as isize;
                            let ix = (ox * s.stride + kx) as isize - pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= s.in_h as isize || ix >= s.in_w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            for ci in 0..s.in_c {
                                let xv = x[((n * s.in_h + iy) * s.in_w + ix) * s.in_c + ci];
                                let wv = w[((ky * 3 + kx) * s.in_c + ci) * s.out_c + co];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((n * out_h + oy) * out_w + ox) * s.out_c + co] = acc as f32;
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes from TensorFlow's convolution guide and the seed network's layers.
    #[test]
    fn tf_same_gives_tensorflows_output_sizes_and_padding() {
        // (in, stride) -> (out, pad before); pad after = pad along - before.
        assert_eq!(tf_same(28, 1), (28, 1));
        assert_eq!(tf_same(28, 2), (14, 0));
        assert_eq!(tf_same(14, 2), (7, 0));
        assert_eq!(tf_same(7, 2), (4, 1));
        assert_eq!(tf_same(4, 2), (2, 0));
        assert_eq!(tf_same(2, 2), (1, 0));
        assert_eq!(tf_same(1, 2), (1, 1));
        assert_eq!(tf_same(1, 1), (1, 1));
        assert_eq!(tf_same(5, 3), (2, 0));
        assert_eq!(tf_same(13, 4), (4, 1));
    }

    /// The engine's geometry follows the same rule on every small size and stride.
    #[test]
    fn the_engine_geometry_agrees_with_tf_same() {
        for stride in 1..=4 {
            for size in 1..=40 {
                let g = ConvGeometry::same(1, size, size + 1, 1, 1, stride);
                let (out_h, top) = tf_same(size, stride);
                let (out_w, left) = tf_same(size + 1, stride);
                assert_eq!(
                    (g.out_h, g.out_w, g.pad_top, g.pad_left),
                    (out_h, out_w, top, left),
                    "{size}x{} stride {stride}",
                    size + 1
                );
            }
        }
    }
}
