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
        }
    }

    /// GEMM depth: one column per (kernel row, kernel column, input channel), HWIO order.
    pub fn k(&self) -> usize {
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
        self.k() * self.out_c
    }
    /// Multiply-adds times two of the forward GEMM (padding taps included, as the GEMM does them).
    pub fn forward_flops(&self) -> u64 {
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
