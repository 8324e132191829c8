//! The shape of one 3x3 convolution with TensorFlow's SAME padding.

/// Kernel height and width: bnconv's convolutions are all 3x3.
pub const KERNEL: usize = 3;

/// Every size a 3x3 SAME convolution over an NHWC batch needs, computed once per layer and batch.
///
/// TensorFlow's rule: `out = ceil(in / stride)`, `pad_total = max((out - 1) * stride + 3 - in, 0)`,
/// `pad_before = pad_total / 2`, the rest after. For even inputs with stride 2 the extra padded
/// row/column therefore sits at the bottom/right, unlike PyTorch's symmetric padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    /// Kernel taps (`ky * 3 + kx`) that read a real input pixel for at least one output pixel,
    /// in increasing order; the first [`ConvGeometry::live_taps`] entries are valid. The others
    /// only ever multiply padding zeros, so the GEMMs skip them: a 1x1 input keeps only the centre
    /// tap and the convolution becomes a dense layer.
    taps: [u8; 9],
    n_taps: u8,
}

/// `(out, pad_before, pad_after)` along one axis under TensorFlow's SAME rule.
pub fn same_padding(input: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let needed = (out.saturating_sub(1) * stride + KERNEL).saturating_sub(input);
    (out, needed / 2, needed - needed / 2)
}

impl ConvGeometry {
    /// # Panics
    /// If `stride` is zero or any size is zero (layer constructors validate user shapes first).
    pub fn same(
        batch: usize,
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        stride: usize,
    ) -> Self {
        assert!(stride > 0, "stride must be positive");
        assert!(
            in_h > 0 && in_w > 0 && in_c > 0 && out_c > 0,
            "convolution sizes must be positive: {in_h}x{in_w}x{in_c} -> {out_c}"
        );
        let (out_h, pad_top, pad_bottom) = same_padding(in_h, stride);
        let (out_w, pad_left, pad_right) = same_padding(in_w, stride);
        // A tap row is live when some output row reads a real input row through it.
        let live = |tap: usize, out: usize, pad: usize, size: usize| {
            (0..out).any(|o| {
                (o * stride + tap)
                    .checked_sub(pad)
                    .is_some_and(|i| i < size)
            })
        };
        let mut taps = [0u8; 9];
        let mut n_taps = 0;
        for ky in 0..KERNEL {
            for kx in 0..KERNEL {
                if live(ky, out_h, pad_top, in_h) && live(kx, out_w, pad_left, in_w) {
                    taps[n_taps] = (ky * KERNEL + kx) as u8;
                    n_taps += 1;
                }
            }
        }
        ConvGeometry {
            batch,
            in_h,
            in_w,
            in_c,
            out_c,
            stride,
            out_h,
            out_w,
            pad_top,
            pad_left,
            pad_bottom,
            pad_right,
            taps,
            n_taps: n_taps as u8,
        }
    }

    /// The live kernel taps (`ky * 3 + kx`, increasing); see the `taps` field.
    pub fn live_taps(&self) -> &[u8] {
        &self.taps[..self.n_taps as usize]
    }

    /// GEMM depth: one column per (live kernel tap, input channel), in HWIO order.
    pub fn k(&self) -> usize {
        self.live_taps().len() * self.in_c
    }
    /// Rows of the HWIO weight matrix: every tap, live or not.
    pub fn full_k(&self) -> usize {
        KERNEL * KERNEL * self.in_c
    }
    pub fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }
    /// GEMM rows: one per output pixel of the batch.
    pub fn rows(&self) -> usize {
        self.batch * self.out_pixels()
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_pixels() * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.rows() * self.out_c
    }
    pub fn cols_len(&self) -> usize {
        self.rows() * self.k()
    }
    pub fn weight_len(&self) -> usize {
        self.full_k() * self.out_c
    }
    /// Nominal multiply-adds times two of the forward convolution, padding taps included: the
    /// figure every engine shares (1.276 GFLOP per seed training step), whatever it skips.
    pub fn forward_flops(&self) -> u64 {
        2 * (self.rows() * self.full_k() * self.out_c) as u64
    }
    /// Multiply-adds times two the forward GEMM really runs (live taps only).
    pub fn gemm_flops(&self) -> u64 {
        2 * (self.rows() * self.k() * self.out_c) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_tensorflow_same() {
        assert_eq!(same_padding(28, 1), (28, 1, 1));
        assert_eq!(same_padding(28, 2), (14, 0, 1));
        assert_eq!(same_padding(7, 2), (4, 1, 1));
        assert_eq!(same_padding(2, 2), (1, 0, 1));
        assert_eq!(same_padding(1, 2), (1, 1, 1));
        assert_eq!(same_padding(1, 1), (1, 1, 1));
        assert_eq!(same_padding(8, 2), (4, 0, 1));
    }

    #[test]
    fn dead_taps_are_the_ones_that_only_see_padding() {
        // 1x1 input: only the centre tap reads the pixel.
        assert_eq!(ConvGeometry::same(1, 1, 1, 2, 3, 1).live_taps(), [4]);
        assert_eq!(ConvGeometry::same(1, 1, 1, 2, 3, 2).live_taps(), [4]);
        // 2x2 input, stride 2 (pad after only): taps 0-1 of each axis.
        assert_eq!(
            ConvGeometry::same(1, 2, 2, 2, 3, 2).live_taps(),
            [0, 1, 3, 4]
        );
        // 2x2 input, stride 1: each tap is live for some output pixel.
        assert_eq!(ConvGeometry::same(1, 2, 2, 2, 3, 1).live_taps().len(), 9);
        let g = ConvGeometry::same(1, 1, 5, 2, 3, 1);
        assert_eq!(g.live_taps(), [3, 4, 5]);
        assert_eq!((g.k(), g.full_k(), g.weight_len()), (6, 18, 54));
    }

    #[test]
    fn seed_network_spatial_sizes() {
        let mut size = 28;
        let mut seen = vec![];
        for layer in 1..=19 {
            let stride = if layer % 3 == 0 { 2 } else { 1 };
            size = ConvGeometry::same(1, size, size, 1, 1, stride).out_h;
            seen.push(size);
        }
        assert_eq!(
            seen,
            [28, 28, 14, 14, 14, 7, 7, 7, 4, 4, 4, 2, 2, 2, 1, 1, 1, 1, 1]
        );
    }
}
