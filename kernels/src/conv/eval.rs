//! A convolution readied once for evaluation, then run on any number of small image blocks at
//! once from several threads ([`EvalConv::run`] takes `&self` and never spawns work).
//!
//! [`conv_forward`](super::conv_forward) packs its weights on every call and spreads one layer
//! of a block over the pool, so a network evaluated layer by layer waits at every layer for the
//! slowest thread. Here the weights (with a folded per-channel scale) and the output bias are
//! prepared once per evaluation, and a caller can run a whole network on each thread's own
//! images, keeping each block's activations in that thread's cache. Each image is computed by
//! the same tiles, in the same order, as on [`conv_forward`]'s path for the layer, so the bits
//! are those of [`conv_forward`] whatever the blocks.

use crate::conv::forward::prepare_forward_weights;
use crate::conv::geometry::ConvGeometry;
use crate::conv::im2col::im2col_image;
use crate::conv::implicit::{forward_image, pad_image, Placement};
use crate::conv::plan::{ConvPlan, ForwardPath};
use crate::conv::small_image;
use crate::fuse::{Epilogue, Start};
use crate::gemm::matmul::{matmul_packed_on, packed_len};
use crate::gemm::{GemmBackend, MatMut, MatRef};
use crate::simd::{active_isa, Isa};

/// One layer's evaluation forward pass, prepared by [`EvalConv::prepare`].
#[derive(Clone, Debug, Default)]
pub struct EvalConv {
    /// The layer's geometry for one image, and its forward path (`None` before `prepare`).
    ready: Option<(ConvGeometry, ForwardPath)>,
    /// The weight operand of the path, the scale folded in.
    weights: Vec<f32>,
    /// The bias added on the output tiles (per output column of the path's product: repeated
    /// per output pixel on the small-image path), if any.
    bias: Vec<f32>,
    has_bias: bool,
    relu: bool,
}

impl EvalConv {
    /// Readies `y = epilogue(conv(x, w))` on the geometry `g` (its batch is ignored), `w` HWIO.
    /// Returns false, leaving nothing ready, unless `gemm` is bnconv's own (library GEMMs keep
    /// [`conv_forward`](super::conv_forward)). Allocates only when a buffer grows.
    ///
    /// # Panics
    /// On weight, bias or scale sizes that do not fit `g`; on `Start::Accumulate`.
    pub fn prepare(
        &mut self,
        gemm: GemmBackend,
        g: &ConvGeometry,
        w: &[f32],
        epilogue: Epilogue,
    ) -> bool {
        self.ready = None;
        if gemm != GemmBackend::Native {
            return false;
        }
        let g = ConvGeometry::same(1, g.in_h, g.in_w, g.in_c, g.out_c, g.stride);
        assert_eq!(w.len(), g.weight_len(), "EvalConv: weight size");
        let cout = g.out_c;
        if let Some(s) = epilogue.scale {
            assert_eq!(s.len(), cout, "EvalConv: scale size");
        }
        let path = ConvPlan::new(gemm, &g).forward;
        self.has_bias = match epilogue.start {
            Start::Zero => false,
            Start::Bias(b) => {
                assert_eq!(b.len(), cout, "EvalConv: bias size");
                // The small-image product's columns are (output pixel, channel) pairs.
                let copies = match path {
                    ForwardPath::SmallImage => g.out_pixels(),
                    _ => 1,
                };
                self.bias.clear();
                for _ in 0..copies {
                    self.bias.extend_from_slice(b);
                }
                true
            }
            Start::Accumulate => {
                panic!("EvalConv: the output is overwritten, it cannot accumulate")
            }
        };
        self.relu = epilogue.relu;
        match path {
            ForwardPath::SmallImage => {
                let (k, n) = small_image::dense_shape(&g);
                self.weights.resize(packed_len(k, n), 0.0);
                small_image::pack_forward(&g, w, epilogue.scale, &mut self.weights);
            }
            ForwardPath::Implicit(im) => {
                prepare_forward_weights(gemm, &g, w, epilogue.scale, Some(&im), &mut self.weights)
            }
            ForwardPath::Columns => {
                prepare_forward_weights(gemm, &g, w, epilogue.scale, None, &mut self.weights)
            }
        }
        self.ready = Some((g, path));
        true
    }

    /// Floats of scratch [`EvalConv::run`] needs for `images` images: a bordered image, or the
    /// block's im2col rows.
    ///
    /// # Panics
    /// If the layer was not prepared.
    pub fn scratch_len(&self, images: usize) -> usize {
        let (g, path) = self.ready.expect("EvalConv: not prepared");
        match path {
            ForwardPath::SmallImage => 0,
            ForwardPath::Implicit(im) => im.padded_len(),
            ForwardPath::Columns => images * g.out_pixels() * g.k(),
        }
    }

    /// `y = epilogue(conv(x, w))` for the `x.len() / input pixels` images of `x`, on the calling
    /// thread, `scratch` at least [`EvalConv::scratch_len`] floats.
    ///
    /// # Panics
    /// If the layer was not prepared, or on sizes that do not fit it.
    pub fn run(&self, x: &[f32], scratch: &mut [f32], y: &mut [f32]) {
        self.run_on(active_isa(), x, scratch, y);
    }

    /// [`EvalConv::run`] on the code path of `isa` (one this CPU runs).
    pub(crate) fn run_on(&self, isa: Isa, x: &[f32], scratch: &mut [f32], y: &mut [f32]) {
        let (g, path) = self.ready.expect("EvalConv: not prepared");
        let (in_image, out_image) = (g.in_pixels() * g.in_c, g.out_pixels() * g.out_c);
        let images = x.len() / in_image;
        assert!(
            x.len() == images * in_image && y.len() == images * out_image,
            "EvalConv: input and output sizes"
        );
        let epilogue = Epilogue {
            start: if self.has_bias {
                Start::Bias(&self.bias)
            } else {
                Start::Zero
            },
            scale: None,
            relu: self.relu,
        };
        match path {
            ForwardPath::SmallImage => {
                let (k, n) = small_image::dense_shape(&g);
                matmul_packed_on(
                    isa,
                    MatRef::dense(x, images, k),
                    &self.weights,
                    MatMut::dense(y, images, n),
                    epilogue,
                );
            }
            ForwardPath::Implicit(im) => {
                let at = Placement::input(&g, im.padded_w);
                let padded = &mut scratch[..im.padded_len()];
                for (img, y_img) in x.chunks_exact(in_image).zip(y.chunks_exact_mut(out_image)) {
                    pad_image(img, &at, padded);
                    forward_image(isa, &im, padded, &self.weights, g.out_c, y_img, epilogue);
                }
            }
            ForwardPath::Columns => {
                let k = g.k();
                let rows = images * g.out_pixels();
                let cols = &mut scratch[..rows * k];
                for (img, col) in x
                    .chunks_exact(in_image)
                    .zip(cols.chunks_exact_mut(g.out_pixels() * k))
                {
                    im2col_image(&g, img, col);
                }
                matmul_packed_on(
                    isa,
                    MatRef::dense(cols, rows, k),
                    &self.weights,
                    MatMut::dense(y, rows, g.out_c),
                    epilogue,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv_forward, ConvOps, ConvWorkspace};
    use crate::testing::{pseudo, tested_paths};

    /// Every path (implicit, columns, small image), with and without a bias, scale and ReLU, on
    /// odd sizes and every SIMD path: the bits of `conv_forward`'s evaluation pass, whatever
    /// blocks the images are run in.
    #[test]
    fn blocks_on_every_path_equal_the_layer_pass_bitwise() {
        let mut paths = [0; 3];
        for &(n, h, w, cin, cout, stride) in &[
            (7, 9, 11, 3, 5, 1),
            (5, 13, 14, 5, 7, 2),
            (6, 28, 28, 1, 4, 1),
            (7, 4, 4, 7, 9, 1),
            (5, 7, 7, 3, 13, 2),
            (7, 2, 2, 5, 11, 1),
            (5, 1, 2, 3, 6, 1),
            (9, 1, 1, 5, 3, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 31);
            let wt = pseudo(g.weight_len(), 32);
            let (bias, scale) = (pseudo(cout, 33), pseudo(cout, 34));
            paths[match ConvPlan::new(GemmBackend::Native, &g).forward {
                ForwardPath::Implicit(_) => 0,
                ForwardPath::Columns => 1,
                ForwardPath::SmallImage => 2,
            }] += 1;
            for epilogue in [
                Epilogue::NONE,
                Epilogue {
                    start: Start::Bias(&bias),
                    scale: Some(&scale),
                    relu: true,
                },
                Epilogue {
                    start: Start::Bias(&bias),
                    scale: None,
                    relu: false,
                },
            ] {
                let mut want = vec![0.0; g.output_len()];
                conv_forward(
                    GemmBackend::Native,
                    &g,
                    &x,
                    &wt,
                    ConvOps::eval(epilogue),
                    &mut ConvWorkspace::default(),
                    &mut want,
                );
                let mut conv = EvalConv::default();
                assert!(conv.prepare(GemmBackend::Native, &g, &wt, epilogue));
                let (in_image, out_image) = (g.input_len() / n, g.output_len() / n);
                for isa in tested_paths() {
                    for block in [1, 2, 5, n] {
                        let mut y = vec![f32::NAN; g.output_len()];
                        let mut scratch = vec![f32::NAN; conv.scratch_len(block)];
                        for (x_b, y_b) in x
                            .chunks(block * in_image)
                            .zip(y.chunks_mut(block * out_image))
                        {
                            conv.run_on(isa, x_b, &mut scratch, y_b);
                        }
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&y), bits(&want), "{g:?} {isa:?} blocks of {block}");
                    }
                }
            }
        }
        assert!(paths.iter().all(|&p| p >= 2), "paths covered: {paths:?}");
    }

    /// A library GEMM keeps the layer pass: nothing is readied.
    #[test]
    fn only_bnconvs_gemm_is_readied() {
        let g = ConvGeometry::same(2, 5, 5, 2, 3, 1);
        let mut conv = EvalConv::default();
        for &gemm in GemmBackend::available() {
            let ready = conv.prepare(gemm, &g, &pseudo(g.weight_len(), 1), Epilogue::NONE);
            assert_eq!(ready, gemm == GemmBackend::Native, "{gemm}");
        }
    }
}
