//! 3x3 convolution as a GEMM read straight from a zero-bordered copy of the image ("implicit
//! GEMM"): no im2col matrix is written or read.
//!
//! In NHWC, the three taps of one kernel row of an output pixel's window are one contiguous run
//! of `3 * C` floats of the padded image. A register tile therefore reads row `i` of the virtual
//! im2col matrix as three segments (one per kernel row) starting at that pixel's window, and the
//! packed weights in plain HWIO order follow on. The early layers, where the im2col matrix is 9x
//! the activations and copying it cost more than multiplying it, gain most.
//!
//! - [`forward_image`]: `y = conv(x, W)` for one image (also the data gradient of a stride-1
//!   layer: the convolution of the padded `dy` with the flipped, transposed kernel).
//! - [`weight_grad_image`]: `dW += virtual_cols^T @ dy` for one image, reduced pixel by pixel.

use crate::conv::geometry::ConvGeometry;
use crate::conv::im2col::{copy_run, zero_run};
use crate::fuse::{Epilogue, Start};
use crate::gemm::matmul::{pack_panels, pack_panels_gather, packed_len, panels};
use crate::gemm::tile::{dispatch, dispatch_b, strided, strided_mut, Tile, Walk, LANES, STRIP_MAX};
use crate::simd::Isa;
use std::ops::Range;

/// The geometry of one implicit convolution over one padded image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Implicit {
    pub out_h: usize,
    pub out_w: usize,
    pub stride: usize,
    /// Height and width of the padded image.
    pub padded_h: usize,
    pub padded_w: usize,
    /// Channels of the padded image.
    pub channels: usize,
}

/// Output pixels per strip: their windows stay in L1 while every weight panel passes over them.
const STRIP_PIXELS: usize = 48;

impl Implicit {
    /// # Panics
    /// If the padded image is too small for the output grid (a bug in the caller).
    pub fn new(
        out_h: usize,
        out_w: usize,
        stride: usize,
        padded_h: usize,
        padded_w: usize,
        channels: usize,
    ) -> Self {
        assert!(out_h > 0 && out_w > 0 && stride > 0 && channels > 0);
        assert!(
            (out_h - 1) * stride + 3 <= padded_h && (out_w - 1) * stride + 3 <= padded_w,
            "implicit conv: a {padded_h}x{padded_w} padded image is too small for {out_h}x{out_w} outputs at stride {stride}"
        );
        Implicit {
            out_h,
            out_w,
            stride,
            padded_h,
            padded_w,
            channels,
        }
    }

    /// Floats in one padded image.
    pub fn padded_len(&self) -> usize {
        self.padded_h * self.padded_w * self.channels
    }

    pub fn pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    /// GEMM depth: nine taps of every channel.
    pub fn k(&self) -> usize {
        9 * self.channels
    }

    /// Whether an `n`-channel output is computed two pixels per tile row: with `n = 4` a plain
    /// tile leaves half of every vector empty, and with `n = 8` it has only 6 one-vector
    /// accumulators, too few to hide the FMA latency. A horizontal pixel pair's two windows
    /// overlap in one run of `4C`
    /// floats per kernel row, so the pair is one tile row of depth `3 x 4C` against weights
    /// widened to `[W; 0]` (first pixel) and `[0; W]` (second): a third more multiplications,
    /// in `2n`-wide rows. Stride 1 and an even width keep pairs within rows.
    pub fn pairs_pixels(&self, n: usize) -> bool {
        (n == 4 || n == 8) && self.stride == 1 && self.out_w.is_multiple_of(2)
    }

    /// Floats of the packed weights [`forward_image`] takes for an `n`-channel output.
    pub fn packed_len(&self, n: usize) -> usize {
        if self.pairs_pixels(n) {
            packed_len(3 * pair_run(self.channels), PAIR * n)
        } else {
            packed_len(self.k(), n)
        }
    }

    /// Packs `B(p, j) = src[row_offset(p) + col_offset(j)] * scale[j]` (`9C x n`, HWIO order; the
    /// gather of [`pack_panels_gather`]) for [`forward_image`]: column panels, or for paired
    /// pixels the widened `3 x 4C` rows of `2n` floats.
    pub fn pack_weights(
        &self,
        n: usize,
        src: &[f32],
        row_offset: impl Fn(usize) -> usize + Sync,
        col_offset: impl Fn(usize) -> usize + Sync,
        scale: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let c = self.channels;
        if !self.pairs_pixels(n) {
            return pack_panels_gather(self.k(), n, src, row_offset, col_offset, scale, out);
        }
        let value = |p: usize, j: usize| {
            let v = src[row_offset(p) + col_offset(j)];
            scale.map_or(v, |s| v * s[j])
        };
        // Row (ky, p) of the pair's run: pixel 0 sees run position p as its tap p (p < 3C),
        // pixel 1 as its tap p - C (p >= C).
        let widened = |r: usize, lane: usize| {
            let (ky, p) = (r / pair_run(c), r % pair_run(c));
            let (pixel, j) = (lane / n, lane % n);
            match p.checked_sub(pixel * c).filter(|&t| t < 3 * c) {
                Some(t) => value(ky * 3 * c + t, j),
                None => 0.0,
            }
        };
        pack_panels(3 * pair_run(c), PAIR * n, widened, out)
    }
}

/// Pixels per paired tile row ([`Implicit::pairs_pixels`]).
const PAIR: usize = 2;

/// Floats per kernel row that a pixel pair's two windows span: `(3 + 1) * C`.
fn pair_run(c: usize) -> usize {
    (3 + PAIR - 1) * c
}

/// Where an `h x w x c` image goes in its zero-bordered copy: at row `top`, column `left` of an
/// image `padded_w` pixels wide (and as tall as the buffer it is written to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub top: usize,
    pub left: usize,
    pub padded_w: usize,
}

impl Placement {
    /// A layer's input image in its SAME padding, in a padded image `padded_w` pixels wide.
    pub fn input(g: &ConvGeometry, padded_w: usize) -> Placement {
        Placement {
            h: g.in_h,
            w: g.in_w,
            c: g.in_c,
            top: g.pad_top,
            left: g.pad_left,
            padded_w,
        }
    }

    /// A layer's output gradient image with one zero pixel all round (`padded_w = out_w + 2`).
    pub fn output_bordered(g: &ConvGeometry) -> Placement {
        Placement {
            h: g.out_h,
            w: g.out_w,
            c: g.out_c,
            top: 1,
            left: 1,
            padded_w: g.out_w + 2,
        }
    }
}

/// Copies an image into `padded` where `at` places it, zeroing every other float.
pub fn pad_image(image: &[f32], at: &Placement, padded: &mut [f32]) {
    pad_image_with(image, at, padded, copy_run);
}

/// [`pad_image`] with `map(dst, src)` writing each image row (`w * c` floats) into place instead
/// of a copy: a per-channel map of the input rides on the bordering pass.
pub(crate) fn pad_image_with(
    image: &[f32],
    at: &Placement,
    padded: &mut [f32],
    map: impl Fn(&mut [f32], &[f32]),
) {
    let Placement {
        h,
        w,
        c,
        top,
        left,
        padded_w,
    } = *at;
    assert_eq!(image.len(), h * w * c, "pad_image: image size");
    assert!(left + w <= padded_w && padded.len().is_multiple_of(padded_w * c));
    assert!(
        top + h <= padded.len() / (padded_w * c),
        "pad_image: padded height"
    );
    for (py, row) in padded.chunks_exact_mut(padded_w * c).enumerate() {
        match py.checked_sub(top).filter(|&y| y < h) {
            Some(y) => {
                zero_run(&mut row[..left * c]);
                map(&mut row[left * c..][..w * c], &image[y * w * c..][..w * c]);
                zero_run(&mut row[(left + w) * c..]);
            }
            None => zero_run(row),
        }
    }
}

/// `y[q, n] = relu?(start[n] + sum_{tap, c} window(q)[tap, c] * B[tap * C + c, n])` for every
/// output pixel `q` of one image, with `B` (`9C x n`, HWIO order, any scale already folded in)
/// packed by [`Implicit::pack_weights`]: the [`Epilogue`]'s start (zero or a bias) and ReLU on
/// the output tiles.
pub(crate) fn forward_image(
    isa: Isa,
    im: &Implicit,
    padded: &[f32],
    packed: &[f32],
    n: usize,
    y: &mut [f32],
    epilogue: Epilogue,
) {
    let (c, pixels) = (im.channels, im.pixels());
    assert_eq!(
        padded.len(),
        im.padded_len(),
        "implicit forward: padded image size"
    );
    assert_eq!(packed.len(), im.packed_len(n), "implicit forward: weights");
    assert_eq!(y.len(), pixels * n, "implicit forward: output size");
    assert!(
        !matches!(epilogue.start, Start::Accumulate),
        "implicit forward: the output is overwritten"
    );
    if let Some(b) = epilogue.start.bias() {
        assert_eq!(b.len(), n, "implicit forward: bias size");
    }
    if !im.pairs_pixels(n) {
        let rows = TileRows {
            count: pixels,
            per_row: im.out_w,
            step: im.stride,
            run: 3 * c,
            width: n,
        };
        return forward_rows(isa, im, padded, packed, &rows, y, epilogue);
    }
    // Two pixels per tile row: `y` viewed as rows of `2n` floats (a pixel pair) is the tile's
    // C, and the bias is repeated for the pair.
    let mut pair_bias = [0.0f32; 2 * LANES];
    let pair_start = match epilogue.start {
        Start::Bias(b) => {
            for (i, v) in pair_bias[..PAIR * n].iter_mut().enumerate() {
                *v = b[i % n];
            }
            Start::Bias(&pair_bias[..PAIR * n])
        }
        other => other,
    };
    let rows = TileRows {
        count: pixels / PAIR,
        per_row: im.out_w / PAIR,
        step: PAIR,
        run: pair_run(c),
        width: PAIR * n,
    };
    forward_rows(
        isa,
        im,
        padded,
        packed,
        &rows,
        y,
        Epilogue {
            start: pair_start,
            ..epilogue
        },
    );
}

/// What one tile row of [`forward_image`] is: a pixel, or a pixel pair.
struct TileRows {
    /// Tile rows in the image.
    count: usize,
    /// Tile rows per output row.
    per_row: usize,
    /// Padded-image columns from one tile row's window to the next (the stride, or 2 for
    /// pairs).
    step: usize,
    /// Floats of a tile row's window per kernel row (`3C`, or `4C` for pairs).
    run: usize,
    /// Outputs per tile row (`n`, or `2n` for pairs).
    width: usize,
}

/// The strip loop of [`forward_image`]: `y` as `rows.count` rows of `rows.width` floats.
fn forward_rows(
    isa: Isa,
    im: &Implicit,
    padded: &[f32],
    packed: &[f32],
    rows: &TileRows,
    y: &mut [f32],
    epilogue: Epilogue,
) {
    let (c, width, run) = (im.channels, rows.width, rows.run);
    // Window pointers of the strip's tile rows, stepped without divisions (they cost more than
    // a small tile's arithmetic).
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_PIXELS],
        [std::ptr::null_mut(); STRIP_PIXELS],
    );
    let (mut oy, mut ox) = (0, 0);
    for strip in (0..rows.count).step_by(STRIP_PIXELS) {
        let count = (rows.count - strip).min(STRIP_PIXELS);
        for a in &mut a_rows[..count] {
            *a = padded[(oy * im.stride * im.padded_w + ox * rows.step) * c..].as_ptr();
            ox += 1;
            if ox == rows.per_row {
                (oy, ox) = (oy + 1, 0);
            }
        }
        strided_mut(y[strip * width..].as_mut_ptr(), width, &mut c_rows[..count]);
        for (first, nv) in panels(width) {
            let walk = Walk::segmented(
                3,
                run,
                (1, (im.padded_w * c) as isize),
                ((nv * LANES) as isize, (run * nv * LANES) as isize),
            );
            let t = Tile::new(
                walk,
                &a_rows[..count],
                packed[3 * run * first..].as_ptr(),
                &c_rows[..count],
                first,
                (nv * LANES).min(width - first),
            )
            .with_epilogue(epilogue.on_tile(first));
            // SAFETY: `isa` runs on this CPU (callers' contract). Tile row `i` (output row oy,
            // window column ox * step) reads `(oy * stride + ky) * padded_w + ox * step` for
            // `ky < 3` and `run` floats on: for single pixels the 3x3 window, which
            // `Implicit::new` proved inside the padded image; for pairs (stride 1) up to padded
            // column ox*2 + 3 <= out_w + 1 < padded_w. The panel holds `3 * run` rows of
            // `8 * nv` floats (`packed_len` asserted by `forward_image`). C's rows `strip..strip
            // + count` and columns `first..first + cols` < width lie inside `y` (size asserted),
            // exclusively borrowed. The bias, when given, holds `width` floats: `cols` from
            // `first`.
            unsafe { dispatch::<false>(isa, nv, &t) };
        }
    }
}

/// `dw[tap * C + c, n] (+)= sum_q window(q)[tap, c] * dy[q, n]` over one image's output pixels
/// `q` in order, for the taps of kernel rows `kys` (`dw` holds their `kys.len() * 3C` rows).
/// Every element adds the same products in the same order whatever `kys` is, so a gradient cut
/// by kernel rows is bitwise the whole one. `dy` starts at this image's gradient and may run on
/// (later images): rows whose whole vector read fits in the slice are read unmasked, the rest
/// with masked loads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad_image(
    isa: Isa,
    im: &Implicit,
    padded: &[f32],
    dy: &[f32],
    n: usize,
    kys: Range<usize>,
    dw: &mut [f32],
    accumulate: bool,
) {
    let (c, pixels) = (im.channels, im.pixels());
    assert_eq!(
        padded.len(),
        im.padded_len(),
        "implicit weight gradient: padded image size"
    );
    assert!(
        dy.len() >= pixels * n,
        "implicit weight gradient: output gradient size"
    );
    assert!(
        kys.end <= 3,
        "implicit weight gradient: kernel rows {kys:?}"
    );
    assert_eq!(
        dw.len(),
        kys.len() * 3 * c * n,
        "implicit weight gradient: weight gradient size"
    );
    let s = im.stride;
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_MAX],
        [std::ptr::null_mut(); STRIP_MAX],
    );
    for (first, nv) in panels(n) {
        // The last float a vector read of the last pixel's row touches.
        let unmasked = (pixels - 1) * n + first + nv * LANES <= dy.len();
        for ky in kys.clone() {
            for r0 in (0..3 * c).step_by(STRIP_MAX) {
                let count = (3 * c - r0).min(STRIP_MAX);
                let row0 = ky * im.padded_w * c + r0;
                strided(padded[row0..].as_ptr(), 1, &mut a_rows[..count]);
                let dw_rows = dw[((ky - kys.start) * 3 * c + r0) * n..].as_mut_ptr();
                strided_mut(dw_rows, n, &mut c_rows[..count]);
                let walk = Walk::segmented(
                    im.out_h,
                    im.out_w,
                    ((s * c) as isize, (s * im.padded_w * c) as isize),
                    (n as isize, (im.out_w * n) as isize),
                );
                let t = Tile::new(
                    walk,
                    &a_rows[..count],
                    dy[first..].as_ptr(),
                    &c_rows[..count],
                    first,
                    (nv * LANES).min(n - first),
                )
                .with_epilogue(if accumulate {
                    Epilogue::accumulate()
                } else {
                    Epilogue::NONE
                });
                // SAFETY: `isa` runs on this CPU (callers' contract). A(i, oy, ox) =
                // padded[(oy*s + ky) * padded_w * C + ox*s*C + r0 + i] lies inside the padded
                // image (`Implicit::new` checked its size; r0 + i < 3C). B row q is read at
                // `q * n + first` for `8 * nv` floats when `unmasked` (checked against the
                // slice above) or for `cols` floats, inside this image's `pixels * n`. C's rows
                // `(ky - kys.start) * 3C + r0 + i` < `kys.len() * 3C`, columns `first..first +
                // cols`, lie inside `dw` (size asserted), which is exclusively borrowed.
                unsafe { dispatch_b(isa, nv, !unmasked, &t) };
            }
        }
    }
}

/// Fraction of vector lanes a row of `width` floats fills.
fn lane_use(width: usize) -> f64 {
    width as f64 / (width.div_ceil(LANES) * LANES) as f64
}

/// Whether [`weight_grad_image_transposed`] suits an `n`-channel output: when a kernel row's
/// `3C` inputs fill the vectors better than the `n` outputs do (conv03: 24 against 12 of 16
/// lanes; conv05: 48 against 20 of 24).
pub(crate) fn weight_grad_transposed(im: &Implicit, n: usize) -> bool {
    lane_use(3 * im.channels) > lane_use(n)
}

/// [`weight_grad_image`] with the roles of the operands swapped: `dwt[j, tap * C + c] (+)=
/// sum_q dy[q, j] * window(q)[tap, c]`, the transposed gradient, for the output channels `j` of
/// `channels` (of `n`; `dwt` holds their rows). The tile's rows are output channels (broadcast
/// from `dy`) and its vectors run along a kernel row's `3C` contiguous inputs of the bordered
/// image, read in place. Every element adds the same products in the same order whatever
/// `channels` is. `dy` may run on past this image, as in [`weight_grad_image`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad_image_transposed(
    isa: Isa,
    im: &Implicit,
    padded: &[f32],
    dy: &[f32],
    n: usize,
    channels: Range<usize>,
    dwt: &mut [f32],
    accumulate: bool,
) {
    let (c, pixels, k) = (im.channels, im.pixels(), im.k());
    assert_eq!(
        padded.len(),
        im.padded_len(),
        "implicit weight gradient: padded image size"
    );
    assert!(
        dy.len() >= pixels * n,
        "implicit weight gradient: output gradient size"
    );
    let m = channels.len();
    assert!(
        channels.end <= n,
        "implicit weight gradient: channels {channels:?} of {n}"
    );
    assert_eq!(dwt.len(), k * m, "implicit weight gradient: gradient size");
    assert!(m <= STRIP_MAX, "implicit weight gradient: {m} channels");
    let s = im.stride;
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_MAX],
        [std::ptr::null_mut(); STRIP_MAX],
    );
    strided(dy[channels.start..].as_ptr(), 1, &mut a_rows[..m]);
    strided_mut(dwt.as_mut_ptr(), k, &mut c_rows[..m]);
    let run = 3 * c;
    for ky in 0..3 {
        for (first, nv) in panels(run) {
            // B rows are the window's kernel row `ky` for each output pixel: `3C` floats,
            // readable in full for every panel but the last, which a mask keeps inside.
            let masked = first + nv * LANES > run;
            let walk = Walk::segmented(
                im.out_h,
                im.out_w,
                (n as isize, (im.out_w * n) as isize),
                ((s * c) as isize, (s * im.padded_w * c) as isize),
            );
            let t = Tile::new(
                walk,
                &a_rows[..m],
                padded[ky * im.padded_w * c + first..].as_ptr(),
                &c_rows[..m],
                ky * run + first,
                (nv * LANES).min(run - first),
            )
            .with_epilogue(if accumulate {
                Epilogue::accumulate()
            } else {
                Epilogue::NONE
            });
            // SAFETY: `isa` runs on this CPU (callers' contract). A(i, oy, ox) = dy[(oy * out_w
            // + ox) * n + channels.start + i], i < m, channels.end <= n: inside this image's
            // `pixels * n` floats of `dy` (asserted).
            // B(oy, ox) = padded[(oy*s + ky) * padded_w * C + ox*s*C + first + j] for j <
            // 8 * nv unmasked (first + 8 * nv <= 3C, inside the window's kernel row) or j <
            // cols with the mask: inside the padded image (`Implicit::new` checked it holds
            // every window). C row i < m is `dwt[i * k + ky * 3C + first..][..cols]`, inside
            // `dwt` (`m * k`, asserted), exclusively borrowed.
            unsafe { dispatch_b(isa, nv, masked, &t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::geometry::ConvGeometry;
    use crate::conv::im2col::reference::im2col_image;
    use crate::testing::pseudo;

    /// Both products against the explicit im2col matrix and f64 sums, for every ISA, on odd
    /// sizes, both strides and channel counts that leave tails; and every ISA's results bitwise
    /// equal to the first one's (the portable path's bits are the tiles' promise).
    #[test]
    fn implicit_products_match_explicit_im2col() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let mut first_isa: Vec<[Vec<u32>; 3]> = Vec::new();
        for isa in crate::testing::tested_paths() {
            for (shape, &(h, w, cin, cout, stride)) in [
                (5, 7, 3, 5, 1),
                (6, 6, 2, 20, 2),
                (7, 7, 4, 12, 2),
                (3, 4, 1, 4, 1),
                // Four and eight output channels: pixel pairs (even widths), plain tiles (odd
                // width).
                (6, 6, 5, 4, 1),
                (5, 7, 2, 4, 1),
                (6, 8, 3, 8, 1),
                (5, 7, 2, 8, 1),
                (28, 28, 1, 4, 1),
                (14, 14, 16, 20, 1),
            ]
            .iter()
            .enumerate()
            {
                let g = ConvGeometry::same(1, h, w, cin, cout, stride);
                let x = pseudo(g.input_len(), 1);
                let wt = pseudo(g.weight_len(), 2);
                let dy = pseudo(g.output_len() + 5, 3);
                let im = Implicit::new(
                    g.out_h,
                    g.out_w,
                    stride,
                    g.pad_top + h + g.pad_bottom,
                    g.pad_left + w + g.pad_right,
                    cin,
                );
                let mut padded = vec![f32::NAN; im.padded_len()];
                pad_image(&x, &Placement::input(&g, im.padded_w), &mut padded);
                let mut cols = vec![0.0; g.cols_len()];
                im2col_image(&g, &x, &mut cols);
                let k = g.k();

                let mut packed = vec![0.0; im.packed_len(cout)];
                im.pack_weights(cout, &wt, |p| p * cout, |j| j, None, &mut packed);
                let mut y = vec![f32::NAN; g.output_len()];
                forward_image(isa, &im, &padded, &packed, cout, &mut y, Epilogue::NONE);
                for q in 0..g.out_pixels() {
                    for j in 0..cout {
                        let want: f64 = (0..k)
                            .map(|p| cols[q * k + p] as f64 * wt[p * cout + j] as f64)
                            .sum();
                        let got = y[q * cout + j] as f64;
                        assert!((got - want).abs() < 1e-5, "{isa:?} fwd {g:?} q{q} j{j}");
                    }
                }

                let mut dw = vec![f32::NAN; k * cout];
                let pixels = g.out_pixels();
                for (slice, accumulate) in [(&dy[..pixels * cout], false), (&dy[..], true)] {
                    weight_grad_image(isa, &im, &padded, slice, cout, 0..3, &mut dw, accumulate);
                }
                let mut dwt = vec![f32::NAN; k * cout];
                for (slice, accumulate) in [(&dy[..pixels * cout], false), (&dy[..], true)] {
                    weight_grad_image_transposed(
                        isa,
                        &im,
                        &padded,
                        slice,
                        cout,
                        0..cout,
                        &mut dwt,
                        accumulate,
                    );
                }
                // Cut by kernel rows, and by blocks of 3 output channels: bitwise the whole.
                let mut by_rows = vec![f32::NAN; k * cout];
                for (ky, part) in by_rows.chunks_mut(3 * cin * cout).enumerate() {
                    for (slice, accumulate) in [(&dy[..pixels * cout], false), (&dy[..], true)] {
                        weight_grad_image(
                            isa,
                            &im,
                            &padded,
                            slice,
                            cout,
                            ky..ky + 1,
                            part,
                            accumulate,
                        );
                    }
                }
                assert_eq!(bits(&by_rows), bits(&dw), "{isa:?} by kernel rows {g:?}");
                let mut by_channels = vec![f32::NAN; k * cout];
                for (b, part) in by_channels.chunks_mut(3 * k).enumerate() {
                    let channels = 3 * b..(3 * b + 3).min(cout);
                    for (slice, accumulate) in [(&dy[..pixels * cout], false), (&dy[..], true)] {
                        weight_grad_image_transposed(
                            isa,
                            &im,
                            &padded,
                            slice,
                            cout,
                            channels.clone(),
                            part,
                            accumulate,
                        );
                    }
                }
                assert_eq!(bits(&by_channels), bits(&dwt), "{isa:?} by channels {g:?}");
                for p in 0..k {
                    for j in 0..cout {
                        let want: f64 = 2.0
                            * (0..pixels)
                                .map(|q| cols[q * k + p] as f64 * dy[q * cout + j] as f64)
                                .sum::<f64>();
                        let got = dwt[j * k + p] as f64;
                        assert!((got - want).abs() < 1e-4, "{isa:?} dwt {g:?} p{p} j{j}");
                    }
                }
                for p in 0..k {
                    for j in 0..cout {
                        let want: f64 = 2.0
                            * (0..pixels)
                                .map(|q| cols[q * k + p] as f64 * dy[q * cout + j] as f64)
                                .sum::<f64>();
                        let got = dw[p * cout + j] as f64;
                        assert!((got - want).abs() < 1e-4, "{isa:?} dw {g:?} p{p} j{j}");
                    }
                }
                let results = [bits(&y), bits(&dw), bits(&dwt)];
                match first_isa.get(shape) {
                    Some(want) => assert!(results == *want, "{isa:?} bits differ: {g:?}"),
                    None => first_isa.push(results),
                }
            }
        }
    }
}
