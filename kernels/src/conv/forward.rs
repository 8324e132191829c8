//! The forward pass: `y = epilogue(conv(prologue(x), w))` on the layer's path.

use crate::conv::gemm_rows::gemm_rows;
use crate::conv::geometry::ConvGeometry;
use crate::conv::im2col::im2col_image;
use crate::conv::implicit::{forward_image, pad_image, pad_image_with, Implicit};
use crate::conv::plan::{accepts_prologue, chunking, implicit_plan, scratch_tasks, weight_row};
use crate::conv::small_image;
use crate::conv::workspace::ConvWorkspace;
use crate::gemm::matmul::{pack_panels_gather, packed_len};
use crate::gemm::GemmBackend;
use crate::norm::batchnorm::{BnApply, WideApply};
use crate::norm::relu::relu_block;
use crate::runtime::profile::{self, Phase};
use crate::simd::active_isa;
use rayon::prelude::*;

/// What the forward pass applies to the convolution before storing it:
/// `y = relu?(conv(x, W) * scale + bias)`. Evaluation uses it to fold batch norm into the
/// convolution: the scale goes into the packed weights, the shift is the bias, and the ReLU
/// rides on the GEMM's output tile.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvEpilogue<'a> {
    /// Per output channel, multiplied into the weights as they are packed.
    pub scale: Option<&'a [f32]>,
    pub relu: bool,
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

/// `y = conv(x, w) (+ bias)`; `w` is HWIO (`[9*Cin, Cout]` row-major). The workspace keeps the
/// im2col matrix for [`conv_backward`](super::conv_backward).
pub fn conv_forward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    forward(
        gemm,
        g,
        x,
        None,
        w,
        bias,
        ConvEpilogue::default(),
        true,
        ws,
        y,
    );
}

/// [`conv_forward`] with an epilogue, `y = relu?(conv(x, w) * scale + bias)`, for evaluation:
/// it keeps nothing for [`conv_backward`](super::conv_backward) (which then refuses to run), so the implicit path
/// borders each image into a small per-task scratch instead of a batch-sized buffer.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward_fused(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: ConvEpilogue<'_>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    forward(gemm, g, x, None, w, bias, epilogue, false, ws, y);
}

/// A batch norm and/or ReLU that the convolution applies to its input while zero-bordering it:
/// `input = relu?((x - mean) * scale + beta)` (no `apply`: `relu?(x)`), with exactly the
/// arithmetic of [`crate::norm::bn_relu::bn_relu_forward`] and [`crate::norm::relu::relu_forward`], so the
/// activation never takes a pass (and a buffer) of its own. Training: the fused BN+ReLU path,
/// and the plain network's ReLU.
#[derive(Clone, Copy, Debug)]
pub struct ConvPrologue<'a> {
    pub apply: Option<BnApply<'a>>,
    pub relu: bool,
}

/// [`conv_forward`] of `prologue(x)` (see [`ConvPrologue`]); the workspace then holds the
/// normalized input for [`conv_backward`](super::conv_backward), as if it had been passed in.
///
/// # Panics
/// If [`accepts_prologue`] is false, or the prologue is not `Cin` channels wide.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward_with_prologue(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    prologue: ConvPrologue<'_>,
    w: &[f32],
    bias: Option<&[f32]>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    assert!(
        accepts_prologue(gemm, g),
        "conv_forward: an input prologue needs the implicit path"
    );
    if let Some(k) = prologue.apply {
        assert!(
            k.mean.len() == g.in_c && k.scale.len() == g.in_c && k.beta.len() == g.in_c,
            "conv_forward: prologue size"
        );
    }
    forward(
        gemm,
        g,
        x,
        Some(prologue),
        w,
        bias,
        ConvEpilogue::default(),
        true,
        ws,
        y,
    );
}

/// [`conv_forward_fused`], with an optional input prologue (implicit path only), keeping what
/// [`conv_backward`](super::conv_backward) needs when `for_backward`.
#[allow(clippy::too_many_arguments)]
fn forward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    x: &[f32],
    prologue: Option<ConvPrologue<'_>>,
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: ConvEpilogue<'_>,
    for_backward: bool,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    assert_eq!(x.len(), g.input_len(), "conv_forward: input size");
    assert_eq!(w.len(), g.weight_len(), "conv_forward: weight size");
    assert_eq!(y.len(), g.output_len(), "conv_forward: output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_c, "conv_forward: bias size");
    }
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    if let Some(s) = epilogue.scale {
        assert_eq!(s.len(), cout, "conv_forward: scale size");
    }
    let relu = epilogue.relu;
    let input_map = prologue.map(|p| (p.apply.map(|k| WideApply::new(k, p.relu)), p.relu));
    debug_assert!(prologue.is_none() || implicit_plan(gemm, g).is_some());
    ws.saved_for_backward = for_backward;
    if gemm == GemmBackend::Native && small_image::applies(g) {
        return small_image::forward(g, x, w, bias, epilogue, ws, y);
    }
    let implicit = implicit_plan(gemm, g);
    prepare_forward_weights(
        gemm,
        g,
        w,
        epilogue.scale,
        implicit.as_ref(),
        &mut ws.weights,
    );
    if let Some(im) = implicit {
        let (isa, weights) = (active_isa(), &ws.weights);
        let (in_image, out_image) = (g.in_pixels() * g.in_c, g.out_pixels() * cout);
        // Borders one image (applying the prologue), then multiplies it while it is in L1.
        let image = |img: &[f32], padded: &mut [f32], y_img: &mut [f32]| {
            let p = profile::thread_scope(Phase::Im2col);
            let (h, w, c) = (g.in_h, g.in_w, g.in_c);
            let (top, left) = (g.pad_top, g.pad_left);
            let pw = im.padded_w;
            match &input_map {
                Some((Some(bn), _)) => {
                    pad_image_with(img, h, w, c, top, left, pw, padded, |dst, src| {
                        bn.run(src, dst)
                    })
                }
                Some((None, true)) => {
                    pad_image_with(img, h, w, c, top, left, pw, padded, |dst, src| {
                        relu_block(src, dst)
                    })
                }
                _ => pad_image(img, h, w, c, top, left, pw, padded),
            }
            drop(p);
            let _p = profile::thread_scope(Phase::ConvGemmForward);
            forward_image(isa, &im, padded, weights, cout, y_img, bias, relu);
        };
        if !for_backward {
            // Evaluation keeps no bordered images: one scratch image per task, reused (a batch
            // of 500 of them was up to 7 MB, written to memory and never read again). Images
            // are independent, so the split changes no result.
            let (tasks, task_images) = scratch_tasks(g.batch);
            ws.padded.resize(tasks * im.padded_len(), 0.0);
            x.par_chunks(task_images * in_image)
                .zip(ws.padded.par_chunks_mut(im.padded_len()))
                .zip(y.par_chunks_mut(task_images * out_image))
                .for_each(|((x_c, padded), y_c)| {
                    for (img, y_img) in x_c
                        .chunks_exact(in_image)
                        .zip(y_c.chunks_exact_mut(out_image))
                    {
                        image(img, padded, y_img);
                    }
                });
            return;
        }
        let per_chunk = ch.input / in_image * im.padded_len();
        ws.padded.resize(g.batch * im.padded_len(), 0.0);
        x.par_chunks(ch.input.max(1))
            .zip(ws.padded.par_chunks_mut(per_chunk.max(1)))
            .zip(y.par_chunks_mut(ch.output.max(1)))
            .for_each(|((x_c, padded_c), y_c)| {
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
        .for_each(|((x_c, cols_c), y_c)| {
            // Images in parallel too: a small layer is one chunk of all 64 images.
            x_c.par_chunks(g.in_pixels() * g.in_c)
                .zip(cols_c.par_chunks_mut(g.out_pixels() * k))
                .for_each(|(img, col)| {
                    let _p = profile::thread_scope(Phase::Im2col);
                    im2col_image(g, img, col);
                });
            let _p = profile::thread_scope(Phase::ConvGemmForward);
            let rows = y_c.len() / cout;
            gemm_rows(gemm, rows, cout, k, cols_c, weights, false, y_c, bias, relu);
        });
}
