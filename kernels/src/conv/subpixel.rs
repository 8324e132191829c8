//! The data gradient of a stride-2 3x3 convolution split by input-pixel parity ("sub-pixel"
//! decomposition): no column matrix, no col2im.
//!
//! With stride 2, input row `iy` receives gradient only through the kernel rows `ty` with
//! `iy + pad_top - ty` even: rows {0, 2} when `u = iy + pad_top` is even, row {1} when it is odd
//! (the same for columns). Each of the four parity classes of input pixels is therefore a small
//! stride-1 convolution of `dy` (bordered by one zero pixel all round) with a 2x2, 2x1, 1x2 or
//! 1x1 piece of the kernel, whose window starts at bordered pixel `(ceil(u / 2), ceil(v / 2))`.
//! In NHWC a window row is one contiguous run, so the register tiles read it in place, as in
//! [`crate::conv::implicit`]. Every input pixel belongs to exactly one class and is written once.

use crate::conv::geometry::ConvGeometry;
use crate::conv::implicit::Implicit;
use crate::gemm::matmul::{pack_panels, packed_len, panels};
use crate::gemm::tile::{dispatch, Tile, Walk, LANES};
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
    /// The data-gradient geometry of layer `g`.
    ///
    /// # Panics
    /// If a padding exceeds 1 or the output is not `ceil(in / 2)` (not a SAME stride-2 layer: a
    /// bug in the caller).
    pub fn new(g: &ConvGeometry) -> Self {
        let (in_h, in_w, in_c, out_h, out_w, out_c) =
            (g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c);
        let (pad_top, pad_left) = (g.pad_top, g.pad_left);
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

    /// Whether horizontal pixel pairs are computed together: with `pad_left = 0` and an even
    /// width, input columns `2j` (taps 2 and 0) and `2j + 1` (tap 1) read the same two bordered
    /// `dy` columns, so the pair is one tile row of `2 * Cin` outputs with depth `2 * Cout` per
    /// kernel row (a quarter of it multiplying zeros). For a `Cin` of at most one 3-vector
    /// panel that doubles the tile width and the depth per tile, which more than pays for the
    /// zeros.
    fn pairs_columns(&self) -> bool {
        self.pad_left == 0 && self.in_w.is_multiple_of(2) && self.in_c <= 3 * LANES
    }

    /// The GEMMs that cover `dx`, with the offset of each one's packed weights: the four parity
    /// classes, or both row parities with paired columns.
    fn groups(&self) -> impl Iterator<Item = (Group, usize)> + '_ {
        let groups: [Group; 4] = if self.pairs_columns() {
            [0, 1, 0, 0].map(|ry| Group {
                ry,
                cols: Cols::Pair,
            })
        } else {
            std::array::from_fn(|i| Group {
                ry: i / 2,
                cols: Cols::Parity(i % 2),
            })
        };
        let count = if self.pairs_columns() { 2 } else { 4 };
        groups.into_iter().take(count).scan(0, |offset, group| {
            let here = *offset;
            *offset += packed_len(group.depth(self.out_c), group.n(self.in_c));
            Some((group, here))
        })
    }

    /// Floats of every group's packed weights.
    pub fn packed_len(&self) -> usize {
        self.groups()
            .map(|(group, _)| packed_len(group.depth(self.out_c), group.n(self.in_c)))
            .sum()
    }

    /// Packs each group's `B[(ty, tx, co), (pixel, ci)] = W[ty, tx, ci, co]` (HWIO `w`; zero
    /// where the pixel has no tap at that window column) into `out`.
    pub fn pack_weights(&self, w: &[f32], out: &mut [f32]) {
        let (cin, cout) = (self.in_c, self.out_c);
        assert_eq!(w.len(), 9 * cin * cout, "sub-pixel data gradient: weights");
        assert_eq!(
            out.len(),
            self.packed_len(),
            "sub-pixel data gradient: packed"
        );
        for (group, offset) in self.groups() {
            let (span, n) = (group.span(cout), group.n(cin));
            let value = |p: usize, j: usize| {
                let ty = taps(group.ry)[p / span];
                let (position, co) = (p % span / cout, p % cout);
                match group.tx(j / cin, position) {
                    Some(tx) => w[((ty * 3 + tx) * cin + j % cin) * cout + co],
                    None => 0.0,
                }
            };
            let depth = group.depth(cout);
            pack_panels(depth, n, value, &mut out[offset..][..packed_len(depth, n)]);
        }
    }
}

/// Which input columns a group covers.
#[derive(Clone, Copy, Debug)]
enum Cols {
    /// The columns whose `v = ix + pad_left` has this parity, one pixel per tile row.
    Parity(usize),
    /// Columns `2j` and `2j + 1` side by side in one tile row (`pad_left = 0`, even width).
    Pair,
}

/// One GEMM of the data gradient: the input rows of parity `ry` (of `u = iy + pad_top`), and
/// columns as `cols` says.
#[derive(Clone, Copy, Debug)]
struct Group {
    ry: usize,
    cols: Cols,
}

impl Group {
    /// Input pixels per tile row.
    fn pixels(&self) -> usize {
        match self.cols {
            Cols::Parity(_) => 1,
            Cols::Pair => 2,
        }
    }

    /// Bordered `dy` columns a tile row's window spans.
    fn positions(&self) -> usize {
        match self.cols {
            Cols::Parity(rx) => taps(rx).len(),
            Cols::Pair => 2,
        }
    }

    /// The kernel column through which the group's pixel `pixel` reads window column
    /// `position`, if any.
    fn tx(&self, pixel: usize, position: usize) -> Option<usize> {
        match self.cols {
            Cols::Parity(rx) => Some(taps(rx)[position]),
            // Column 2j (v even) reads taps 2, 0; column 2j + 1 (v odd) reads tap 1 from the
            // second window column.
            Cols::Pair => [[Some(2), Some(0)], [None, Some(1)]][pixel][position],
        }
    }

    /// Floats per segment (kernel row) of a tile row's window.
    fn span(&self, cout: usize) -> usize {
        self.positions() * cout
    }

    /// GEMM depth: segments times span.
    fn depth(&self, cout: usize) -> usize {
        taps(self.ry).len() * self.span(cout)
    }

    /// GEMM width: the tile row's pixels times `dx`'s channels.
    fn n(&self, cin: usize) -> usize {
        self.pixels() * cin
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
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_PIXELS],
        [std::ptr::null_mut(); STRIP_PIXELS],
    );
    for (group, offset) in sp.groups() {
        let (segments, span, n) = (taps(group.ry).len(), group.span(cout), group.n(cin));
        let depth = segments * span;
        let weights = &packed[offset..][..packed_len(depth, n)];
        // The group's tile rows, row by row: (window offset in `bordered`, offset in `dx`).
        let first_y = (group.ry + sp.pad_top) % 2;
        let (first_x, per_row) = match group.cols {
            Cols::Parity(rx) => {
                let first_x = (rx + sp.pad_left) % 2;
                (first_x, sp.in_w.saturating_sub(first_x).div_ceil(2))
            }
            Cols::Pair => (0, sp.in_w / 2),
        };
        let rows = sp.in_h.saturating_sub(first_y).div_ceil(2);
        let pixels = images * rows * per_row;
        // Tile row q is (image, class row r, class column j), stepped without divisions (they
        // showed in this kernel's profile).
        let (mut image, mut r, mut j) = (0, 0, 0);
        for strip in (0..pixels).step_by(STRIP_PIXELS) {
            let count = (pixels - strip).min(STRIP_PIXELS);
            for (a, c) in a_rows[..count].iter_mut().zip(&mut c_rows[..count]) {
                let (iy, ix) = (first_y + 2 * r, first_x + 2 * j);
                let (u, v) = (iy + sp.pad_top, ix + sp.pad_left);
                let window = (u.div_ceil(2) * border.padded_w + v.div_ceil(2)) * cout;
                *a = bordered[image * border.padded_len() + window..].as_ptr();
                *c = dx_ptr.wrapping_add((image * sp.in_h * sp.in_w + iy * sp.in_w + ix) * cin);
                j += 1;
                if j == per_row {
                    (r, j) = (r + 1, 0);
                    if r == rows {
                        (image, r) = (image + 1, 0);
                    }
                }
            }
            for (first, nv) in panels(n) {
                let walk = Walk::segmented(
                    segments,
                    span,
                    (1, (border.padded_w * cout) as isize),
                    ((nv * LANES) as isize, (span * nv * LANES) as isize),
                );
                let t = Tile::new(
                    walk,
                    &a_rows[..count],
                    weights[depth * first..].as_ptr(),
                    &c_rows[..count],
                    first,
                    (nv * LANES).min(n - first),
                );
                // SAFETY: `isa` runs on this CPU (callers' contract). Row `i` reads
                // `window + s * padded_w * cout + p` for `s < segments <= 2`, `p < span =
                // positions * cout <= 2 * cout`: the window starts at bordered pixel
                // (ceil(u/2), ceil(v/2)). With two segments u is even and u <= in_h - 1 +
                // pad_top <= 2 * out_h - 1, so the last row u/2 + 1 <= out_h; likewise with two
                // positions v is even (a pair starts at an even v = ix <= in_w - 2) and the last
                // column is <= out_w. All inside the image's (out_h+2) x (out_w+2) bordered
                // copy, and `image < images` (sizes asserted). The group's panel holds `depth`
                // rows of `8 * nv` floats. C row `i` starts at pixel (iy, ix) of image `image` of
                // `dx` and spans `pixels` pixels (a pair has ix + 1 < in_w, width even) x `cin`
                // channels, columns `first..first + cols` < n (size asserted); distinct rows are
                // distinct pixels; `dx` is exclusively borrowed, A and B are other slices.
                unsafe { dispatch::<false>(isa, nv, &t) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::im2col::reference::col2im_image;
    use crate::conv::implicit::{pad_image, Placement};
    use crate::testing::pseudo;

    /// Against col2im of `dy @ W^T` in f64, for every ISA, on two images at once, even and odd
    /// sizes (both paddings), channel counts with tails and several panels, and paired columns
    /// (even widths with `pad_left = 0` and `Cin <= 24`) as well as plain classes; and every
    /// ISA's result bitwise equal to the first one's.
    #[test]
    fn sub_pixel_data_grad_matches_col2im() {
        let mut first_isa: Vec<Vec<u32>> = Vec::new();
        for isa in crate::testing::tested_paths() {
            for (shape, &(h, w, cin, cout)) in [
                (28, 28, 4, 12),
                (28, 28, 8, 12),
                (14, 14, 20, 24),
                (7, 7, 32, 36),
                (4, 4, 44, 48),
                (5, 6, 3, 5),
                (2, 3, 9, 17),
                (1, 1, 2, 3),
            ]
            .iter()
            .enumerate()
            {
                let g = ConvGeometry::same(1, h, w, cin, cout, 2);
                let images = 2;
                let wt = pseudo(g.weight_len(), 7);
                let dy = pseudo(images * g.output_len(), 8);
                let sp = SubPixel::new(&g);
                let border = sp.bordered();
                let mut bordered = vec![f32::NAN; images * border.padded_len()];
                for (dy, bordered) in dy
                    .chunks_exact(g.output_len())
                    .zip(bordered.chunks_exact_mut(border.padded_len()))
                {
                    pad_image(dy, &Placement::output_bordered(&g), bordered);
                }
                let mut packed = vec![f32::NAN; sp.packed_len()];
                sp.pack_weights(&wt, &mut packed);
                let mut dx = vec![f32::NAN; images * g.input_len()];
                data_grad_images(isa, &sp, &bordered, &packed, &mut dx);
                let dx_bits: Vec<u32> = dx.iter().map(|v| v.to_bits()).collect();
                match first_isa.get(shape) {
                    Some(want) => assert!(
                        dx_bits == *want,
                        "{isa:?} bits differ: {h}x{w}x{cin}->{cout}"
                    ),
                    None => first_isa.push(dx_bits),
                }

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
