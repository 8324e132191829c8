//! The forward pass: `y = epilogue(conv(prologue(x), w))` on the layer's path.

use crate::conv::gemm_rows::gemm_rows;
use crate::conv::geometry::ConvGeometry;
use crate::conv::im2col::im2col_image;
use crate::conv::implicit::{forward_image, pad_image, pad_image_with, Implicit, Placement};
use crate::conv::plan::{chunking, images_per_task, weight_row, ForwardPath};
use crate::conv::small_image;
use crate::conv::workspace::ConvWorkspace;
use crate::fuse::{Epilogue, Prologue, Start};
use crate::gemm::matmul::{pack_panels_gather, packed_len};
use crate::gemm::{GemmBackend, MatMut, MatRef};
use crate::norm::batchnorm::WideApply;
use crate::norm::relu::relu_block;
use crate::runtime::profile::{self, Phase};
use crate::runtime::task_log::ForEachTask;
use crate::simd::active_isa;
use rayon::prelude::*;

/// What a forward pass keeps in the workspace for [`conv_backward`](super::conv_backward).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// Training: the columns (or bordered input images) the gradients read.
    #[default]
    ForBackward,
    /// Evaluation: nothing, so the implicit path borders each image into its worker's scratch
    /// image instead of a batch-sized buffer (and `conv_backward` then refuses to run).
    Nothing,
}

/// Everything one forward convolution fuses, and what it keeps:
/// `y = epilogue(conv(prologue(x), w))` (see [`crate::fuse`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvOps<'a> {
    /// Applied to the input as it is zero-bordered (batch norm and/or ReLU of the layer
    /// before): implicit path only ([`ConvPlan::accepts_prologue`](super::ConvPlan::accepts_prologue)). The workspace then holds the mapped
    /// input for the gradients, as if it had been passed in.
    pub prologue: Prologue<'a>,
    /// The bias (`Start::Bias`, `Cout` floats, or `Start::Zero`), a per-output-channel scale
    /// folded into the packed weights, and ReLU on the output tiles. Never `Start::Accumulate`:
    /// the output is overwritten.
    pub epilogue: Epilogue<'a>,
    pub keep: Keep,
}

impl<'a> ConvOps<'a> {
    /// Training forward: `y = conv(x, w) + bias`, keeping what the gradients need.
    pub fn train(bias: Option<&'a [f32]>) -> ConvOps<'a> {
        ConvOps {
            prologue: Prologue::NONE,
            epilogue: Epilogue::bias(bias),
            keep: Keep::ForBackward,
        }
    }

    /// Evaluation forward with `epilogue`, keeping nothing.
    pub fn eval(epilogue: Epilogue<'a>) -> ConvOps<'a> {
        ConvOps {
            prologue: Prologue::NONE,
            epilogue,
            keep: Keep::Nothing,
        }
    }

    /// These operations with `prologue` applied to the input.
    pub fn with_prologue(self, prologue: Prologue<'a>) -> ConvOps<'a> {
        ConvOps { prologue, ..self }
    }
}

/// Fills `ws.weights` with the forward GEMM's `B = W_live [k, Cout]` (times `scale` per column):
/// in the implicit path's layout when `implicit` is given.
pub(super) fn prepare_forward_weights(
    gemm: GemmBackend,
    g: &ConvGeometry,
    w: &[f32],
    scale: Option<&[f32]>,
    implicit: Option<&Implicit>,
    out: &mut Vec<f32>,
) {
    let (k, n) = (g.k(), g.out_c);
    let row = |p: usize| weight_row(g, p) * n;
    if let Some(im) = implicit {
        out.resize(im.packed_len(n), 0.0);
        return im.pack_weights(n, w, row, |j| j, scale, out);
    }
    match gemm {
        GemmBackend::Native => {
            out.resize(packed_len(k, n), 0.0);
            pack_panels_gather(k, n, w, row, |j| j, scale, out);
        }
        _ => {
            out.resize(k * n, 0.0);
            for (r, dst) in out.chunks_exact_mut(n).enumerate() {
                let src = &w[row(r)..][..n];
                match scale {
                    Some(s) => {
                        for ((d, v), s) in dst.iter_mut().zip(src).zip(s) {
                            *d = v * s;
                        }
                    }
                    None => dst.copy_from_slice(src),
                }
            }
        }
    }
}

/// `y = epilogue(conv(prologue(x), w))`, `w` HWIO (`[9*Cin, Cout]` row-major), with the
/// fused operations and what is kept for [`conv_backward`](super::conv_backward) as `ops` says.
///
/// # Panics
/// On sizes that do not fit `g` (input, weights, output, bias, scale, prologue); on a prologue
/// off the implicit path ([`ConvPlan::accepts_prologue`](super::ConvPlan::accepts_prologue) false); on `Start::Accumulate`.
pub fn conv_forward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    ops: ConvOps<'_>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    let ConvOps {
        prologue,
        epilogue,
        keep,
    } = ops;
    assert_eq!(x.len(), g.input_len(), "conv_forward: input size");
    assert_eq!(w.len(), g.weight_len(), "conv_forward: weight size");
    assert_eq!(y.len(), g.output_len(), "conv_forward: output size");
    assert!(
        !matches!(epilogue.start, Start::Accumulate),
        "conv_forward: the output is overwritten, it cannot accumulate"
    );
    if let Some(b) = epilogue.start.bias() {
        assert_eq!(b.len(), g.out_c, "conv_forward: bias size");
    }
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    if let Some(s) = epilogue.scale {
        assert_eq!(s.len(), cout, "conv_forward: scale size");
    }
    let plan = ws.plan(gemm, g);
    if !prologue.is_identity() {
        assert!(
            plan.accepts_prologue(),
            "conv_forward: an input prologue needs the implicit path"
        );
    }
    if let Some(k) = prologue.normalize {
        assert!(k.fits(g.in_c), "conv_forward: prologue size");
    }
    // The output tiles apply the start and ReLU; the scale goes into the packed weights.
    let on_tiles = Epilogue {
        scale: None,
        ..epilogue
    };
    let isa = active_isa();
    let normalize = prologue
        .normalize
        .map(|k| WideApply::new(isa, k, prologue.relu));
    ws.saved_for_backward = keep == Keep::ForBackward;
    let implicit = match plan.forward {
        ForwardPath::SmallImage => return small_image::forward(g, x, w, epilogue, ws, y),
        ForwardPath::Implicit(im) => Some(im),
        ForwardPath::Columns => None,
    };
    prepare_forward_weights(
        gemm,
        g,
        w,
        epilogue.scale,
        implicit.as_ref(),
        &mut ws.weights,
    );
    if let Some(im) = implicit {
        let weights = &ws.weights;
        let (in_image, out_image) = (g.in_pixels() * g.in_c, g.out_pixels() * cout);
        // Borders one image (applying the prologue), then multiplies it while it is in L1.
        let image = |img: &[f32], padded: &mut [f32], y_img: &mut [f32]| {
            let p = profile::thread_scope(Phase::Im2col);
            let at = Placement::input(g, im.padded_w);
            match (&normalize, prologue.relu) {
                (Some(bn), _) => pad_image_with(img, &at, padded, |dst, src| bn.run(src, dst)),
                (None, true) => {
                    pad_image_with(img, &at, padded, |dst, src| relu_block(isa, src, dst))
                }
                (None, false) => pad_image(img, &at, padded),
            }
            drop(p);
            let _p = profile::thread_scope(Phase::ConvGemmForward);
            forward_image(isa, &im, padded, weights, cout, y_img, on_tiles);
        };
        // Images are independent: tasks of whole images, cut by work (no partial sums here).
        let images = images_per_task(g.out_pixels(), (g.gemm_flops() / g.batch as u64) as usize);
        if keep == Keep::Nothing {
            // Evaluation keeps no bordered images: each task borders its images into its
            // worker's scratch image (a batch of 500 of them was up to 7 MB, written to memory
            // and never read again).
            ws.scratch.prepare(im.padded_len());
            let scratch = &ws.scratch;
            x.par_chunks(images * in_image)
                .zip(y.par_chunks_mut(images * out_image))
                .for_each_task(Phase::ConvGemmForward, |(x_c, y_c)| {
                    scratch.with(|padded| {
                        for (img, y_img) in x_c
                            .chunks_exact(in_image)
                            .zip(y_c.chunks_exact_mut(out_image))
                        {
                            image(img, padded, y_img);
                        }
                    })
                });
            return;
        }
        ws.padded.resize(g.batch * im.padded_len(), 0.0);
        x.par_chunks(images * in_image)
            .zip(ws.padded.par_chunks_mut(images * im.padded_len()))
            .zip(y.par_chunks_mut(images * out_image))
            .for_each_task(Phase::ConvGemmForward, |((x_c, padded_c), y_c)| {
                for ((img, padded), y_img) in x_c
                    .chunks_exact(in_image)
                    .zip(padded_c.chunks_exact_mut(im.padded_len()))
                    .zip(y_c.chunks_exact_mut(out_image))
                {
                    image(img, padded, y_img);
                }
            });
        return;
    }
    ws.cols.resize(g.cols_len(), 0.0);
    let weights = &ws.weights;
    x.par_chunks(ch.input.max(1))
        .zip(ws.cols.par_chunks_mut(ch.cols.max(1)))
        .zip(y.par_chunks_mut(ch.output.max(1)))
        .for_each_task(Phase::ConvGemmForward, |((x_c, cols_c), y_c)| {
            // Images in parallel too: a small layer is one chunk of all 64 images.
            x_c.par_chunks(g.in_pixels() * g.in_c)
                .zip(cols_c.par_chunks_mut(g.out_pixels() * k))
                .for_each_task(Phase::Im2col, |(img, col)| {
                    let _p = profile::thread_scope(Phase::Im2col);
                    im2col_image(g, img, col);
                });
            let _p = profile::thread_scope(Phase::ConvGemmForward);
            let rows = y_c.len() / cout;
            let (cols_c, y_c) = (
                MatRef::dense(cols_c, rows, k),
                MatMut::dense(y_c, rows, cout),
            );
            gemm_rows(gemm, cols_c, weights, false, y_c, on_tiles);
        });
}
