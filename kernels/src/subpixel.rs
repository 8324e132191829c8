//! The data gradient of a stride-2 3x3 convolution split by input-pixel parity ("sub-pixel"
//! decomposition): no column matrix, no col2im.
//!
//! With stride 2, input row `iy` receives gradient only through the kernel rows `ty` with
//! `iy + pad_top - ty` even: rows {0, 2} when `u = iy + pad_top` is even, row {1} when it is odd
//! (the same for columns). Each of the four parity classes of input pixels is therefore a small
//! stride-1 convolution of `dy` (bordered by one zero pixel all round) with a 2x2, 2x1, 1x2 or
//! 1x1 piece of the kernel, whose window starts at bordered pixel `(ceil(u / 2), ceil(v / 2))`.
//! In NHWC a window row is one contiguous run, so the register tiles read it in place, as in
//! [`crate::implicit`]. Every input pixel belongs to exactly one class and is written once.

use crate::implicit::Implicit;
use crate::matmul::{dispatch, pack_panels, packed_len, panels, tile_rows};
use crate::microkernel::{Tile, LANES};
use crate::simd::Isa;

/// Kernel taps (rows or columns) feeding an input coordinate of parity `r` (of `u`), in the order
/// the bordered `dy` rows (or columns) of its window come: the lower `dy` index first.
fn taps(r: usize) -> &'static [usize] {
    if r == 0 {
        &[2, 0]
    } else {
        &[1]
    }
}

/// One stride-2 layer's data-gradient geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubPixel {
    pub in_h: usize,
    pub in_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    /// `dy`'s size and channels (the layer's output).
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    /// `dx`'s channels.
    pub in_c: usize,
}

impl SubPixel {
    /// # Panics
    /// If a padding exceeds 1 or the output is not `ceil(in / 2)` (not a SAME stride-2 layer: a
    /// bug in the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_h: usize,
        out_w: usize,
        out_c: usize,
        pad_top: usize,
        pad_left: usize,
    ) -> Self {
        assert!(
            pad_top <= 1 && pad_left <= 1 && out_h == in_h.div_ceil(2) && out_w == in_w.div_ceil(2),
            "sub-pixel data gradient: not a SAME stride-2 layer ({in_h}x{in_w} -> {out_h}x{out_w}, padding {pad_top}/{pad_left})"
        );
        assert!(in_c > 0 && out_c > 0);
        SubPixel {
            in_h,
            in_w,
            pad_top,
            pad_left,
            out_h,
            out_w,
            out_c,
            in_c,
        }
    }

    /// The bordered `dy` image: one zero pixel all round (`Implicit`'s padded layout).
    pub fn bordered(&self) -> Implicit {
        Implicit::new(
            self.out_h,
            self.out_w,
            1,
            self.out_h + 2,
            self.out_w + 2,
            self.out_c,
        )
    }

    /// The four classes `(ry, rx)` (parities of `u = iy + pad_top`, `v = ix + pad_left`) with
    /// the offset of each one's packed weights.
    fn classes(&self) -> [(usize, usize, usize); 4] {
        let mut offset = 0;
        std::array::from_fn(|i| {
            let (ry, rx) = (i / 2, i % 2);
            let here = offset;
            offset += packed_len(self.depth(ry, rx), self.in_c);
            (ry, rx, here)
        })
    }

    /// GEMM depth of class `(ry, rx)`: its kernel taps times `dy`'s channels.
    fn depth(&self, ry: usize, rx: usize) -> usize {
        taps(ry).len() * taps(rx).len() * self.out_c
    }

    /// Floats of all four classes' packed weights.
    pub fn packed_len(&self) -> usize {
        self.classes()
            .iter()
            .map(|&(ry, rx, _)| packed_len(self.depth(ry, rx), self.in_c))
            .sum()
    }

    /// Packs each class's `B[(ty, tx, co), ci] = W[ty, tx, ci, co]` (HWIO `w`) into `out`.
    pub fn pack_weights(&self, w: &[f32], out: &mut [f32]) {
        let (cin, cout) = (self.in_c, self.out_c);
        assert_eq!(w.len(), 9 * cin * cout, "sub-pixel data gradient: weights");
        assert_eq!(
            out.len(),
            self.packed_len(),
            "sub-pixel data gradient: packed"
        );
        for (ry, rx, offset) in self.classes() {
            let (ys, xs) = (taps(ry), taps(rx));
            let depth = self.depth(ry, rx);
            let value = |p: usize, j: usize| {
                let (tap, co) = (p / cout, p % cout);
                let (ty, tx) = (ys[tap / xs.len()], xs[tap % xs.len()]);
                w[((ty * 3 + tx) * cin + j) * cout + co]
            };
            pack_panels(
                depth,
                cin,
                value,
                &mut out[offset..][..packed_len(depth, cin)],
            );
        }
    }
}

/// Input pixels per strip: their windows stay in L1 while every weight panel passes over them.
const STRIP_PIXELS: usize = 48;

/// `dx = conv^T(dy, W)` for consecutive images: `bordered` is their `dy` in
/// [`SubPixel::bordered`]'s layout, `packed` from [`SubPixel::pack_weights`]. Every float of
/// `dx` is overwritten. A tile's rows may come from different images, so that small images
/// still fill whole tiles.
pub(crate) fn data_grad_images(
    isa: Isa,
    sp: &SubPixel,
    bordered: &[f32],
    packed: &[f32],
    dx: &mut [f32],
) {
    let border = sp.bordered();
    let (cin, cout) = (sp.in_c, sp.out_c);
    let images = bordered.len() / border.padded_len();
    assert_eq!(
        bordered.len(),
        images * border.padded_len(),
        "sub-pixel data gradient: bordered dy size"
    );
    assert_eq!(
        packed.len(),
        sp.packed_len(),
        "sub-pixel data gradient: packed weights"
    );
    assert_eq!(
        dx.len(),
        images * sp.in_h * sp.in_w * cin,
        "sub-pixel data gradient: input gradient size"
    );
    let dx_ptr = dx.as_mut_ptr();
    for (ry, rx, offset) in sp.classes() {
        let (segments, span) = (taps(ry).len(), taps(rx).len() * cout);
        let depth = segments * span;
        let weights = &packed[offset..][..packed_len(depth, cin)];
        // The class's pixels, row by row: (window offset in `bordered`, offset in `dx`).
        let first_y = (ry + sp.pad_top) % 2;
        let first_x = (rx + sp.pad_left) % 2;
        let per_row = sp.in_w.saturating_sub(first_x).div_ceil(2);
        let rows = sp.in_h.saturating_sub(first_y).div_ceil(2);
        let class_pixels = rows * per_row;
        let pixels = images * class_pixels;
        let pixel = |q: usize| {
            let (image, q) = (q / class_pixels, q % class_pixels);
            let (iy, ix) = (first_y + 2 * (q / per_row), first_x + 2 * (q % per_row));
            let (u, v) = (iy + sp.pad_top, ix + sp.pad_left);
            let window = (u.div_ceil(2) * border.padded_w + v.div_ceil(2)) * cout;
            (
                image * border.padded_len() + window,
                (image * sp.in_h * sp.in_w + iy * sp.in_w + ix) * cin,
            )
        };
        let mut windows = [(0usize, 0usize); STRIP_PIXELS];
        for strip in (0..pixels).step_by(STRIP_PIXELS) {
            let strip_end = (strip + STRIP_PIXELS).min(pixels);
            for (q, w) in (strip..strip_end).zip(windows.iter_mut()) {
                *w = pixel(q);
            }
            for (first, nv) in panels(cin) {
                let mr = tile_rows(nv);
                for q in (strip..strip_end).step_by(mr) {
                    let valid = mr.min(strip_end - q);
                    let row = |i: usize| windows[q - strip + i.min(valid - 1)];
                    let t = Tile {
                        segments,
                        depth: span,
                        a: std::array::from_fn(|i| bordered[row(i).0..].as_ptr()),
                        a_step: 1,
                        a_seg: (border.padded_w * cout) as isize,
                        b: weights[depth * first..].as_ptr(),
                        b_step: (nv * LANES) as isize,
                        b_seg: (span * nv * LANES) as isize,
                        c: std::array::from_fn(|i| dx_ptr.wrapping_add(row(i).1 + first)),
                        rows: valid,
                        cols: (nv * LANES).min(cin - first),
                        accumulate: false,
                        relu: false,
                    };
                    // SAFETY: `isa` runs on this CPU (callers' contract). Row `i` reads
                    // `window + s * padded_w * cout + p` for `s < segments <= 2`, `p < span <=
                    // 2 * cout`: the window starts at bordered pixel (ceil(u/2), ceil(v/2)) with
                    // u <= in_h - 1 + pad_top <= 2 * out_h - 1 + 1, so its last row
                    // ceil(u/2) + 1 <= out_h + 1 and likewise its last column <= out_w + 1:
                    // inside its image's (out_h+2) x (out_w+2) bordered copy, and `image <
                    // images` (sizes asserted). The class panel holds `depth` rows of `8 * nv`
                    // floats. C row `i` is pixel (iy, ix) < (in_h, in_w) of image `image` of
                    // `dx` (size asserted), columns `first..first + cols` < cin; distinct rows
                    // are distinct pixels; `dx` is exclusively borrowed, A and B are other
                    // slices.
                    unsafe { dispatch::<false>(isa, nv, &t) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvGeometry;
    use crate::im2col::reference::col2im_image;
    use crate::implicit::pad_image;
    use crate::simd::active_isa;
    use crate::testing::pseudo;

    /// Against col2im of `dy @ W^T` in f64, for both ISAs, on two images at once, even and odd
    /// sizes (both paddings), channel counts with tails and several panels.
    #[test]
    fn sub_pixel_data_grad_matches_col2im() {
        for isa in [active_isa(), Isa::Portable] {
            for &(h, w, cin, cout) in &[
                (28, 28, 4, 12),
                (14, 14, 20, 24),
                (7, 7, 32, 36),
                (4, 4, 44, 48),
                (5, 6, 3, 5),
                (2, 3, 9, 17),
                (1, 1, 2, 3),
            ] {
                let g = ConvGeometry::same(1, h, w, cin, cout, 2);
                let images = 2;
                let wt = pseudo(g.weight_len(), 7);
                let dy = pseudo(images * g.output_len(), 8);
                let sp = SubPixel::new(h, w, cin, g.out_h, g.out_w, cout, g.pad_top, g.pad_left);
                let border = sp.bordered();
                let mut bordered = vec![f32::NAN; images * border.padded_len()];
                for (dy, bordered) in dy
                    .chunks_exact(g.output_len())
                    .zip(bordered.chunks_exact_mut(border.padded_len()))
                {
                    pad_image(dy, g.out_h, g.out_w, cout, 1, 1, border.padded_w, bordered);
                }
                let mut packed = vec![f32::NAN; sp.packed_len()];
                sp.pack_weights(&wt, &mut packed);
                let mut dx = vec![f32::NAN; images * g.input_len()];
                data_grad_images(isa, &sp, &bordered, &packed, &mut dx);

                // dcols[q, (tap, ci)] = sum_co dy[q, co] W[tap, ci, co] over the live taps (a
                // dead tap's share is zero: the sub-pixel windows read the zero border there).
                let (k, live) = (g.k(), g.live_taps());
                for (dy, dx) in dy
                    .chunks_exact(g.output_len())
                    .zip(dx.chunks_exact(g.input_len()))
                {
                    let mut dcols = vec![0.0f32; g.out_pixels() * k];
                    for q in 0..g.out_pixels() {
                        for (r, col) in dcols[q * k..][..k].iter_mut().enumerate() {
                            let (tap, ci) = (live[r / cin] as usize, r % cin);
                            *col = (0..cout)
                                .map(|co| {
                                    dy[q * cout + co] as f64
                                        * wt[(tap * cin + ci) * cout + co] as f64
                                })
                                .sum::<f64>() as f32;
                        }
                    }
                    let mut want = vec![0.0; g.input_len()];
                    col2im_image(&g, &dcols, &mut want);
                    for (i, (got, want)) in dx.iter().zip(&want).enumerate() {
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{isa:?} {h}x{w}x{cin}->{cout} at {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
