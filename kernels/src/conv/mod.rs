//! 3x3 SAME convolution over NHWC batches: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Only the geometry's live kernel taps take part ([`ConvGeometry::live_taps`]): the GEMM depth is
//! `taps * Cin`, the weight operand is the live rows of the HWIO matrix, and the weight gradient
//! of a dead tap is exactly zero.
//!
//! Threads: work is cut into chunks of whole images ([`partition::images_per_chunk`]) spread over
//! the current rayon pool, and each chunk's GEMM is cut again into row blocks when it is big
//! enough to share. Splitting output rows never changes a result (every output element is reduced
//! in the same order), and the weight and bias gradients are partial sums over fixed chunks (or
//! row blocks) added in order: results are bitwise the same for any thread count.

pub mod geometry;
pub mod im2col;
pub mod implicit;
pub mod small_image;
pub mod subpixel;

pub use geometry::ConvGeometry;

use crate::conv::im2col::{col2im_image, copy_run, im2col_image};
use crate::conv::implicit::{
    forward_image, pad_image, pad_image_with, weight_grad_image, weight_grad_image_transposed,
    weight_grad_transposed, Implicit,
};

use crate::conv::subpixel::SubPixel;
use crate::gemm::matmul::{matmul_at_b, matmul_packed, pack_panels_gather, packed_len, Start};
use crate::gemm::{sgemm, GemmBackend};
use crate::norm::batchnorm::{BnApply, WideApply};
use crate::norm::relu::relu_block;
use crate::runtime::partition::{chunk_count, images_per_chunk};
use crate::runtime::prefetch::warm_l2;
use crate::runtime::profile::{self, Phase};
use crate::simd::active_isa;
use rayon::prelude::*;

/// GEMM work (flops) worth one rayon task: small enough to share a 64-row layer between two
/// threads, big enough that task overhead (a few microseconds) stays small.
const TASK_FLOPS: usize = 1 << 19;

/// Buffers a convolution layer reuses every step: sized on first use, never shrunk.
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    /// The forward im2col matrix (`rows x k`), kept for the weight gradient, then reused for the
    /// column gradient.
    cols: Vec<f32>,
    /// The weight operand of the current GEMM: panels for bnconv's GEMM, or the live weight rows
    /// for a library GEMM.
    weights: Vec<f32>,
    /// Per-chunk weight and bias gradient partial sums.
    partials: Vec<f32>,
    /// Their f64 totals.
    sums: Vec<f64>,
    /// The zero-bordered input images of the implicit path, kept for the weight gradient.
    padded: Vec<f32>,
    /// The zero-bordered output gradient images of the implicit data gradient.
    padded_dy: Vec<f32>,
    /// Whether the last forward pass kept what [`conv_backward`] reads ([`conv_forward`] and
    /// [`conv_forward_with_prologue`] do; the evaluation-only [`conv_forward_fused`] does not).
    saved_for_backward: bool,
}

/// Output widths from which the implicit path (no im2col matrix) is used: there the matrix is
/// large and copying it costs more than the tiles lose to the windows' short rows.
const IMPLICIT_MIN_WIDTH: usize = 7;

/// The implicit-GEMM geometry of this layer's forward pass, when that path applies: bnconv's
/// GEMM, every tap live, output wide enough.
fn implicit_plan(gemm: GemmBackend, g: &ConvGeometry) -> Option<Implicit> {
    (gemm == GemmBackend::Native && g.live_taps().len() == 9 && g.out_w >= IMPLICIT_MIN_WIDTH).then(
        || {
            Implicit::new(
                g.out_h,
                g.out_w,
                g.stride,
                g.pad_top + g.in_h + g.pad_bottom,
                g.pad_left + g.in_w + g.pad_right,
                g.in_c,
            )
        },
    )
}

/// The data gradient of a stride-1 layer as a forward convolution of the padded `dy` (one pixel
/// of zeros all round) with the flipped, transposed kernel.
fn implicit_data_grad_plan(g: &ConvGeometry) -> Option<Implicit> {
    (g.stride == 1 && g.pad_top == 1 && g.pad_left == 1 && g.pad_bottom == 1 && g.pad_right == 1)
        .then(|| Implicit::new(g.in_h, g.in_w, 1, g.out_h + 2, g.out_w + 2, g.out_c))
}

/// Chunk sizes of one layer, in floats of each buffer.
struct Chunking {
    count: usize,
    input: usize,
    cols: usize,
    output: usize,
}

fn chunking(g: &ConvGeometry) -> Chunking {
    let images = images_per_chunk(g.out_pixels());
    Chunking {
        count: chunk_count(g.batch, images),
        input: images * g.in_pixels() * g.in_c,
        cols: images * g.out_pixels() * g.k(),
        output: images * g.out_pixels() * g.out_c,
    }
}

/// The HWIO weight row of live GEMM row `r`.
fn weight_row(g: &ConvGeometry, r: usize) -> usize {
    g.live_taps()[r / g.in_c] as usize * g.in_c + r % g.in_c
}

/// Rows per task for a GEMM whose rows cost `row_flops` each: a multiple of 24 (every tile
/// height, 3, 6, 8 and 12, divides it).
fn rows_per_task(row_flops: usize) -> usize {
    (TASK_FLOPS / row_flops.max(1)).div_ceil(24).max(1) * 24
}

/// Tasks per thread where images are independent and a task reuses one scratch image: enough to
/// even out uneven threads, few enough that the scratch images stay small.
const TASKS_PER_THREAD: usize = 8;

/// Tasks, and images per task, for a pass over `batch` independent images where each task
/// reuses one scratch image ([`TASKS_PER_THREAD`] per thread of the current pool).
fn scratch_tasks(batch: usize) -> (usize, usize) {
    let tasks = batch
        .min(TASKS_PER_THREAD * rayon::current_num_threads())
        .max(1);
    (tasks, batch.div_ceil(tasks).max(1))
}

/// Rows of `cols` (and of `dy`) per weight-gradient task on bnconv's GEMM: each task reduces
/// its rows over every column into a partial sum of its own. The rows were written by the
/// forward pass long before and are read cold; a task first streams its rows in order
/// ([`warm_l2`]), which memory serves quickly, so that its product finds them in L2 instead of
/// missing line after line on strided reads. 128 rows of conv11 (360 columns) take 184 KB, well
/// inside a 512 KiB L2 with their `dy` rows and partial sum. The blocks depend only on the
/// layer, so results are bitwise the same on any number of threads. (It replaced tasks of 96+
/// columns of whole-image chunks, which read every row strided. Seed network, 2 threads, Zen 3,
/// minimum of 5 alternated profiles: conv09-12 0.45/0.68/0.59/0.24 -> 0.38/0.40/0.56/0.22 ms.)
const WEIGHT_GRAD_TASK_ROWS: usize = 128;

/// Whether a column-path weight gradient is computed transposed, `dW^T = dy^T @ cols` (tile
/// rows are output channels, broadcast from `dy`; vectors run along each `cols` row, read in
/// contiguous strips once per task) rather than `cols^T @ dy` (which reads `cols` in narrow
/// column strips, once per panel of `dy`). Measured better on the 4x4 layers, whose 1024 rows
/// make the largest cold operand (Zen 4, 2 threads, minimum of 6 alternated profiles: conv09-11
/// 0.306/0.331/0.421 -> 0.254/0.324/0.394 ms), and worse on the 2x2 and 1x1 layers (256 and 64
/// rows; conv12 0.152 -> 0.172 ms), which keep the other orientation.
fn column_weight_grad_transposed(gemm: GemmBackend, g: &ConvGeometry) -> bool {
    gemm == GemmBackend::Native && g.rows() >= 4 * WEIGHT_GRAD_TASK_ROWS
}

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
fn prepare_forward_weights(
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

/// `c[rows, n] = bias + a[rows, depth] @ B` (no bias: zero) with `B` prepared for `gemm`
/// (panels, or row-major `[depth, n]` for a library, or with `transpose_b` row-major
/// `[n, depth]`), then ReLU when `relu`. bnconv's GEMM adds the bias on its output tiles; a
/// library's product is accumulated onto rows filled with it.
#[allow(clippy::too_many_arguments)]
fn gemm_rows(
    gemm: GemmBackend,
    rows: usize,
    n: usize,
    depth: usize,
    a: &[f32],
    b: &[f32],
    transpose_b: bool,
    c: &mut [f32],
    bias: Option<&[f32]>,
    relu: bool,
) {
    let start = bias.map_or(Start::Zero, Start::Bias);
    match gemm {
        GemmBackend::Native => {
            let block = rows_per_task(2 * n * depth);
            c.par_chunks_mut(block * n)
                .zip(a.par_chunks(block * depth))
                .for_each(|(c_b, a_b)| {
                    matmul_packed(c_b.len() / n, n, depth, a_b, depth, b, c_b, n, start, relu)
                });
        }
        _ => {
            if let Some(b) = bias {
                fill_rows(c, b);
            }
            let (beta, ldb) = (
                if bias.is_some() { 1.0 } else { 0.0 },
                if transpose_b { depth } else { n },
            );
            sgemm(
                gemm,
                false,
                transpose_b,
                rows,
                n,
                depth,
                1.0,
                a,
                depth,
                b,
                ldb,
                beta,
                c,
                n,
            );
            if relu {
                for v in c.iter_mut() {
                    *v = crate::simd::relu_s(*v);
                }
            }
        }
    }
}

/// `y = conv(x, w) (+ bias)`; `w` is HWIO (`[9*Cin, Cout]` row-major). The workspace keeps the
/// im2col matrix for [`conv_backward`].
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
/// it keeps nothing for [`conv_backward`] (which then refuses to run), so the implicit path
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

/// Whether [`conv_forward_with_prologue`] applies: layers on the implicit path (which borders
/// its input anyway).
pub fn accepts_prologue(gemm: GemmBackend, g: &ConvGeometry) -> bool {
    implicit_plan(gemm, g).is_some()
}

/// [`conv_forward`] of `prologue(x)` (see [`ConvPrologue`]); the workspace then holds the
/// normalized input for [`conv_backward`], as if it had been passed in.
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
/// [`conv_backward`] needs when `for_backward`.
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
        return forward_small_image(g, x, w, bias, epilogue, ws, y);
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

/// Gradients of [`conv_forward`], which must have run on the same workspace with the same
/// geometry and weights.
///
/// The im2col matrix is reused as scratch for the column gradient. `dx` is skipped when `None`
/// (the first layer needs no input gradient). `dw` and `db` are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    gemm: GemmBackend,
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert_eq!(w.len(), g.weight_len(), "conv_backward: weight size");
    assert_eq!(
        dy.len(),
        g.output_len(),
        "conv_backward: output gradient size"
    );
    assert_eq!(
        dw.len(),
        g.weight_len(),
        "conv_backward: weight gradient size"
    );
    assert!(
        ws.saved_for_backward,
        "conv_backward: the last forward pass on this workspace was conv_forward_fused (evaluation), which keeps nothing for backward"
    );
    if gemm == GemmBackend::Native && small_image::applies(g) {
        return backward_small_image(g, ws, w, dy, dx, dw, db);
    }
    if let Some(im) = implicit_plan(gemm, g) {
        assert_eq!(
            ws.padded.len(),
            g.batch * im.padded_len(),
            "conv_backward: needs the forward pass's padded images"
        );
        return backward_implicit(g, &im, ws, w, dy, dx, dw, db);
    }
    assert_eq!(
        ws.cols.len(),
        g.cols_len(),
        "conv_backward: needs the forward pass's columns"
    );
    let (k, cout) = (g.k(), g.out_c);
    // Rows per partial sum: fixed row blocks on bnconv's GEMM, whole-image chunks for a library
    // GEMM (which splits its own work between threads).
    let block_rows = match gemm {
        GemmBackend::Native => WEIGHT_GRAD_TASK_ROWS,
        _ => chunking(g).output / cout,
    };
    let transposed = column_weight_grad_transposed(gemm, g);
    let with_bias = db.is_some();
    let per_chunk = k * cout + if with_bias { cout } else { 0 };
    ws.partials
        .resize(chunk_count(g.rows(), block_rows) * per_chunk, 0.0);

    // Weight (and bias) gradient partials: dW_c = cols_c^T @ dy_c, db_c = column sums of dy_c.
    ws.cols
        .par_chunks((block_rows * k).max(1))
        .zip(dy.par_chunks((block_rows * cout).max(1)))
        .zip(ws.partials.par_chunks_mut(per_chunk.max(1)))
        .for_each(|((cols_c, dy_c), part)| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let rows = dy_c.len() / cout;
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            match gemm {
                GemmBackend::Native => {
                    warm_l2(cols_c);
                    if transposed {
                        matmul_at_b(cout, k, rows, dy_c, cout, cols_c, k, dw_part, k, false);
                    } else {
                        matmul_at_b(k, cout, rows, cols_c, k, dy_c, cout, dw_part, cout, false);
                    }
                }
                _ => sgemm(
                    gemm, true, false, k, cout, rows, 1.0, cols_c, k, dy_c, cout, 0.0, dw_part,
                    cout,
                ),
            }
            if with_bias {
                bias_grad(dy_c, db_part);
            }
        });
    let reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    reduce_partials(g, &ws.partials, per_chunk, transposed, &mut ws.sums, dw, db);
    drop(reduce);
    if let Some(dx) = dx {
        data_grad_by_columns_or_parity(gemm, g, ws, w, dy, dx);
    }
}

/// The data gradient of a layer without a stride-1 implicit plan: by parity classes
/// ([`crate::conv::subpixel`]) for a stride-2 layer with every tap live and an output at least
/// [`IMPLICIT_MIN_WIDTH`] wide on bnconv's GEMM, through columns and col2im otherwise. (Measured,
/// 2 threads: conv06 0.61 -> 0.35 ms, conv03 0.50 -> 0.46 ms; conv12's 2x2 output lost, 0.13 ->
/// 0.16 ms, as one wide column GEMM suits its tiny parity classes better.)
fn data_grad_by_columns_or_parity(
    gemm: GemmBackend,
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    assert_eq!(
        dx.len(),
        g.input_len(),
        "conv_backward: input gradient size"
    );
    if gemm == GemmBackend::Native
        && g.stride == 2
        && g.live_taps().len() == 9
        && g.out_w >= IMPLICIT_MIN_WIDTH
    {
        data_grad_sub_pixel(g, ws, w, dy, dx);
    } else {
        data_grad_explicit(gemm, g, ws, w, dy, dx);
    }
}

/// Input gradient of a stride-2 layer as four parity-class convolutions of the bordered `dy`.
fn data_grad_sub_pixel(
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let isa = active_isa();
    let sp = SubPixel::new(
        g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c, g.pad_top, g.pad_left,
    );
    let border = sp.bordered();
    ws.weights.resize(sp.packed_len(), 0.0);
    sp.pack_weights(w, &mut ws.weights);
    ws.padded_dy.resize(g.batch * border.padded_len(), 0.0);
    // No partial sums here, so tasks are cut by work alone: small layers still use every thread.
    let image_flops = 2 * g.out_pixels() * 9 * g.in_c * g.out_c;
    let images = (TASK_FLOPS / image_flops.max(1)).max(1);
    let image_out = g.out_pixels() * g.out_c;
    let weights = &ws.weights;
    dy.par_chunks(images * image_out)
        .zip(ws.padded_dy.par_chunks_mut(images * border.padded_len()))
        .zip(dx.par_chunks_mut(images * g.in_pixels() * g.in_c))
        .for_each(|((dy_c, bordered_c), dx_c)| {
            // Zero-bordering `dy` is this path's counterpart of col2im.
            let p = profile::thread_scope(Phase::Col2im);
            for (dy_img, bordered) in dy_c
                .chunks_exact(image_out)
                .zip(bordered_c.chunks_exact_mut(border.padded_len()))
            {
                pad_image(
                    dy_img,
                    g.out_h,
                    g.out_w,
                    g.out_c,
                    1,
                    1,
                    border.padded_w,
                    bordered,
                );
            }
            drop(p);
            let _p = profile::thread_scope(Phase::ConvGemmBackwardData);
            subpixel::data_grad_images(isa, &sp, bordered_c, weights, dx_c);
        });
}

/// Input gradient through columns: `dcols = dy @ W_live^T` (into the column buffer, whose
/// contents are spent), then col2im.
fn data_grad_explicit(
    gemm: GemmBackend,
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    ws.cols.resize(g.cols_len(), 0.0);
    match gemm {
        GemmBackend::Native => {
            ws.weights.resize(packed_len(cout, k), 0.0);
            pack_panels_gather(
                cout,
                k,
                w,
                |p| p,
                |j| weight_row(g, j) * cout,
                None,
                &mut ws.weights,
            );
        }
        _ => prepare_forward_weights(gemm, g, w, None, None, &mut ws.weights),
    }
    let weights = &ws.weights;
    ws.cols
        .par_chunks_mut(ch.cols.max(1))
        .zip(dy.par_chunks(ch.output.max(1)))
        .zip(dx.par_chunks_mut(ch.input.max(1)))
        .for_each(|((cols_c, dy_c), dx_c)| {
            let p = profile::thread_scope(Phase::ConvGemmBackwardData);
            let rows = dy_c.len() / cout;
            gemm_rows(
                gemm, rows, k, cout, dy_c, weights, true, cols_c, None, false,
            );
            drop(p);
            cols_c
                .par_chunks(g.out_pixels() * k)
                .zip(dx_c.par_chunks_mut(g.in_pixels() * g.in_c))
                .for_each(|(dcol, dimg)| {
                    let _p = profile::thread_scope(Phase::Col2im);
                    col2im_image(g, dcol, dimg);
                });
        });
}

/// Adds the per-chunk partial sums in chunk order: `dw` rows of the live taps (others zero),
/// and `db` from the `cout` floats after each chunk's weight partial.
fn reduce_partials(
    g: &ConvGeometry,
    partials: &[f32],
    per_chunk: usize,
    transposed: bool,
    sums: &mut Vec<f64>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (k, cout) = (g.k(), g.out_c);
    // In f64, like the batch-norm sums: up to 64 partials of long f32 reductions each, added
    // chunk by chunk (a pass over contiguous partials each, in chunk order for every element).
    sums.clear();
    sums.resize(per_chunk, 0.0);
    for part in partials.chunks_exact(per_chunk) {
        for (s, p) in sums.iter_mut().zip(part) {
            *s += *p as f64;
        }
    }
    dw.fill(0.0);
    if transposed {
        // `[cout, k]`: column `r` of the sums is weight row `r`.
        for r in 0..k {
            let out = &mut dw[weight_row(g, r) * cout..][..cout];
            for (j, dst) in out.iter_mut().enumerate() {
                *dst = sums[j * k + r] as f32;
            }
        }
    } else {
        for (r, row) in sums[..k * cout].chunks_exact(cout).enumerate() {
            let out = weight_row(g, r);
            for (dst, s) in dw[out * cout..][..cout].iter_mut().zip(row) {
                *dst = *s as f32;
            }
        }
    }
    if let Some(db) = db {
        assert_eq!(db.len(), cout, "conv_backward: bias gradient size");
        for (dst, s) in db.iter_mut().zip(&sums[k * cout..]) {
            *dst = *s as f32;
        }
    }
}

/// Every `b.len()`-wide row of `y` set to `b` (the bias the GEMM then accumulates onto), with
/// vector moves: rows are 4-76 floats, too short for a `memcpy` call to pay.
fn fill_rows(y: &mut [f32], b: &[f32]) {
    for row in y.chunks_exact_mut(b.len()) {
        copy_run(row, b);
    }
}

/// Column sums of `dy` rows (`cout` wide) into `db`.
fn bias_grad(dy: &[f32], db: &mut [f32]) {
    db.fill(0.0);
    for row in dy.chunks_exact(db.len()) {
        for (acc, v) in db.iter_mut().zip(row) {
            *acc += v;
        }
    }
}

/// [`conv_backward`] on the implicit path: weight gradient from the padded images kept by the
/// forward pass; data gradient as a convolution of the padded `dy` for stride 1, through
/// columns otherwise.
#[allow(clippy::too_many_arguments)]
fn backward_implicit(
    g: &ConvGeometry,
    im: &Implicit,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let isa = active_isa();
    let ch = chunking(g);
    let (k, cout) = (g.k(), g.out_c);
    let images = ch.input / (g.in_pixels() * g.in_c);
    let with_bias = db.is_some();
    let per_chunk = k * cout + if with_bias { cout } else { 0 };
    ws.partials.resize(ch.count * per_chunk, 0.0);
    let image_out = g.out_pixels() * cout;
    let transposed = weight_grad_transposed(im, cout);
    ws.padded
        .par_chunks(images * im.padded_len())
        .zip(ws.partials.par_chunks_mut(per_chunk))
        .enumerate()
        .for_each(|(chunk, (padded_c, part))| {
            let _p = profile::thread_scope(Phase::ConvGemmBackwardWeights);
            let (dw_part, db_part) = part.split_at_mut(k * cout);
            let first_image = chunk * images;
            for (i, padded) in padded_c.chunks_exact(im.padded_len()).enumerate() {
                // The image was bordered by the forward pass and is read cold. At stride 2 it is
                // four times the output's pixels, large next to the work, and streaming it in
                // first pays (2 threads: conv03 0.31 -> 0.26 ms, conv06 0.38 -> 0.27 ms, minima
                // of 10 alternated profiles); at stride 1 it did not (conv05, conv07 slower).
                if g.stride > 1 {
                    warm_l2(padded);
                }
                let dy_from = &dy[(first_image + i) * image_out..];
                if transposed {
                    weight_grad_image_transposed(isa, im, padded, dy_from, cout, dw_part, i > 0);
                } else {
                    weight_grad_image(isa, im, padded, dy_from, cout, dw_part, i > 0);
                }
            }
            if with_bias {
                let n_images = padded_c.len() / im.padded_len();
                bias_grad(
                    &dy[first_image * image_out..][..n_images * image_out],
                    db_part,
                );
            }
        });
    let reduce = profile::scope(Phase::ConvGemmBackwardWeights);
    reduce_partials(g, &ws.partials, per_chunk, transposed, &mut ws.sums, dw, db);
    drop(reduce);

    let Some(dx) = dx else { return };
    let Some(dim) = implicit_data_grad_plan(g) else {
        data_grad_by_columns_or_parity(GemmBackend::Native, g, ws, w, dy, dx);
        return;
    };
    assert_eq!(
        dx.len(),
        g.input_len(),
        "conv_backward: input gradient size"
    );
    // W'[tap', n, c] = W[8 - tap', c, n]: the flipped kernel with in and out channels swapped.
    let cin = g.in_c;
    ws.weights.resize(dim.packed_len(cin), 0.0);
    dim.pack_weights(
        cin,
        w,
        |p| (8 - p / cout) * cin * cout + p % cout,
        |j| j * cout,
        None,
        &mut ws.weights,
    );
    // One bordered image per task, reused for each of its images: written, then read at once
    // by the product, it stays in L1. (A whole batch of them, 1.8 MB for conv02, was fetched
    // from memory just to be overwritten.) Images are independent here, so the split, which
    // depends on the thread count, changes no result.
    let (tasks, task_images) = scratch_tasks(g.batch);
    ws.padded_dy.resize(tasks * dim.padded_len(), 0.0);
    let weights = &ws.weights;
    dy.par_chunks(task_images * image_out)
        .zip(ws.padded_dy.par_chunks_mut(dim.padded_len()))
        .zip(dx.par_chunks_mut(task_images * g.in_pixels() * cin))
        .for_each(|((dy_c, padded), dx_c)| {
            for (dy_img, dx_img) in dy_c
                .chunks_exact(image_out)
                .zip(dx_c.chunks_exact_mut(g.in_pixels() * cin))
            {
                // Zero-bordering `dy` is the implicit path's counterpart of col2im.
                let p = profile::thread_scope(Phase::Col2im);
                pad_image(dy_img, g.out_h, g.out_w, cout, 1, 1, dim.padded_w, padded);
                drop(p);
                let _p = profile::thread_scope(Phase::ConvGemmBackwardData);
                forward_image(isa, &dim, padded, weights, cin, dx_img, None, false);
            }
        });
}

/// Most output channels of a small-image layer with a bias (a row of `y`, up to 4 pixels of
/// them, is filled from a stack buffer).
const MAX_SMALL_IMAGE_CHANNELS: usize = 1024;

/// [`conv_forward`] of a small image ([`small_image`]): `y[b] = x[b] @ D` for every image, with
/// `x` kept (in the column buffer) for the weight gradient.
fn forward_small_image(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: ConvEpilogue<'_>,
    ws: &mut ConvWorkspace,
    y: &mut [f32],
) {
    let _p = profile::scope(Phase::ConvGemmForward);
    let (k, n) = small_image::dense_shape(g);
    ws.weights.resize(packed_len(k, n), 0.0);
    small_image::pack_forward(g, w, epilogue.scale, &mut ws.weights);
    ws.cols.resize(x.len(), 0.0);
    ws.cols.copy_from_slice(x);
    // The bias per output channel, repeated for each of the `Q` output pixels of a row of `y`.
    let mut row_bias = [0.0f32; 4 * MAX_SMALL_IMAGE_CHANNELS];
    let bias = bias.map(|b| {
        assert!(
            b.len() <= MAX_SMALL_IMAGE_CHANNELS,
            "conv_forward: {} output channels on a 2x2 image exceed {MAX_SMALL_IMAGE_CHANNELS}",
            b.len()
        );
        for (j, v) in row_bias[..n].iter_mut().enumerate() {
            *v = b[j % b.len()];
        }
        &row_bias[..n]
    });
    gemm_rows(
        GemmBackend::Native,
        g.batch,
        n,
        k,
        x,
        &ws.weights,
        false,
        y,
        bias,
        epilogue.relu,
    );
}

/// [`conv_backward`] of a small image: `dD = x^T @ dy` folded onto the taps, `dx = dy @ D^T`.
#[allow(clippy::too_many_arguments)]
fn backward_small_image(
    g: &ConvGeometry,
    ws: &mut ConvWorkspace,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (k, n) = small_image::dense_shape(g);
    assert_eq!(
        ws.cols.len(),
        g.input_len(),
        "conv_backward: needs the forward pass's input"
    );
    let weights_scope = profile::scope(Phase::ConvGemmBackwardWeights);
    ws.partials.resize(k * n, 0.0);
    let x = &ws.cols;
    let block = rows_per_task(2 * n * g.batch);
    ws.partials
        .par_chunks_mut(block * n)
        .enumerate()
        .for_each(|(i, out)| {
            matmul_at_b(
                out.len() / n,
                n,
                g.batch,
                &x[i * block..],
                k,
                dy,
                n,
                out,
                n,
                false,
            )
        });
    small_image::fold_weight_grad(g, &ws.partials, dw);
    if let Some(db) = db {
        assert_eq!(db.len(), g.out_c, "conv_backward: bias gradient size");
        bias_grad(dy, db);
    }
    drop(weights_scope);
    let Some(dx) = dx else { return };
    assert_eq!(
        dx.len(),
        g.input_len(),
        "conv_backward: input gradient size"
    );
    let _p = profile::scope(Phase::ConvGemmBackwardData);
    ws.weights.resize(packed_len(n, k), 0.0);
    small_image::pack_data_grad(g, w, &mut ws.weights);
    gemm_rows(
        GemmBackend::Native,
        g.batch,
        k,
        n,
        dy,
        &ws.weights,
        false,
        dx,
        None,
        false,
    );
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{on_threads, pseudo};

    #[test]
    fn forward_matches_direct_convolution() {
        for &(n, h, w, cin, cout, stride) in &[
            (2, 7, 7, 3, 5, 1),
            (3, 8, 8, 4, 6, 2),
            (2, 14, 13, 3, 5, 2),
            (2, 9, 8, 1, 4, 1),
            (2, 8, 8, 3, 8, 1),
            (2, 5, 6, 1, 4, 2),
            (40, 2, 2, 3, 2, 2),
            (600, 1, 1, 5, 3, 1),
            // At most 2x2 at stride 1: the small-image dense product.
            (13, 2, 2, 5, 7, 1),
            (9, 1, 2, 3, 11, 1),
            (9, 2, 1, 4, 9, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 1);
            let wt = pseudo(g.weight_len(), 2);
            let b = pseudo(cout, 3);
            let want = conv_forward_reference(&g, &x, &wt, Some(&b));
            for &gemm in GemmBackend::available() {
                let mut ws = ConvWorkspace::default();
                let mut y = vec![f32::NAN; g.output_len()];
                conv_forward(gemm, &g, &x, &wt, Some(&b), &mut ws, &mut y);
                for (i, (a, r)) in y.iter().zip(&want).enumerate() {
                    assert!((a - r).abs() < 1e-5, "{gemm} {g:?} at {i}: {a} vs {r}");
                }
            }
        }
    }

    /// The epilogue equals scaling, shifting and a ReLU pass after a plain convolution, on every
    /// backend and on both the implicit and the column paths.
    #[test]
    fn epilogue_equals_separate_passes() {
        for &(n, h, w, cin, cout, stride) in &[
            (2, 9, 8, 3, 5, 1),
            (3, 4, 4, 6, 7, 1),
            (2, 14, 13, 2, 9, 2),
            (5, 1, 1, 4, 3, 1),
            (7, 2, 2, 6, 5, 1),
            (2, 8, 8, 3, 8, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 11);
            let wt = pseudo(g.weight_len(), 12);
            let scale = pseudo(cout, 13);
            let shift = pseudo(cout, 14);
            for &gemm in GemmBackend::available() {
                let mut ws = ConvWorkspace::default();
                let mut plain = vec![0.0; g.output_len()];
                conv_forward(gemm, &g, &x, &wt, None, &mut ws, &mut plain);
                let mut fused = vec![0.0; g.output_len()];
                let epilogue = ConvEpilogue {
                    scale: Some(&scale),
                    relu: true,
                };
                conv_forward_fused(
                    gemm,
                    &g,
                    &x,
                    &wt,
                    Some(&shift),
                    epilogue,
                    &mut ws,
                    &mut fused,
                );
                for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                    let c = i % cout;
                    let want = (p * scale[c] + shift[c]).max(0.0);
                    assert!(
                        (f - want).abs() < 1e-5,
                        "{gemm} {g:?} at {i}: {f} vs {want}"
                    );
                }
            }
        }
    }

    /// The input prologue equals batch norm (+ReLU), or ReLU alone, as a pass of its own, then
    /// the convolution: bitwise, output and the workspace the backward pass reads.
    #[test]
    fn prologue_equals_a_separate_batch_norm_pass() {
        use crate::norm::batchnorm::bn_forward;
        use crate::norm::bn_relu::bn_relu_forward;
        for &(n, h, w, cin, cout, stride) in &[
            (2, 28, 28, 4, 8, 1),
            (3, 14, 14, 12, 16, 1),
            (2, 14, 14, 20, 24, 2),
            (2, 9, 8, 3, 5, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let gemm = GemmBackend::Native;
            assert!(accepts_prologue(gemm, &g), "{g:?}");
            let x = pseudo(g.input_len(), 11);
            let wt = pseudo(g.weight_len(), 12);
            let b = pseudo(cout, 13);
            let dy = pseudo(g.output_len(), 14);
            let (mean, scale, beta) = (pseudo(cin, 15), pseudo(cin, 16), pseudo(cin, 17));
            let apply = BnApply {
                mean: &mean,
                scale: &scale,
                beta: &beta,
            };
            // (batch norm?, relu): both maps the network defers, and batch norm alone.
            for (with_bn, relu) in [(true, false), (true, true), (false, true)] {
                let mut normalized = vec![0.0; x.len()];
                match (with_bn, relu) {
                    (true, true) => bn_relu_forward(&x, apply, &mut normalized),
                    (true, false) => bn_forward(&x, apply, &mut normalized),
                    _ => crate::norm::relu::relu_forward(&x, &mut normalized),
                }
                let run = |with_prologue: bool| {
                    let mut ws = ConvWorkspace::default();
                    let mut y = vec![f32::NAN; g.output_len()];
                    if with_prologue {
                        let prologue = ConvPrologue {
                            apply: with_bn.then_some(apply),
                            relu,
                        };
                        conv_forward_with_prologue(
                            gemm,
                            &g,
                            &x,
                            prologue,
                            &wt,
                            Some(&b),
                            &mut ws,
                            &mut y,
                        );
                    } else {
                        conv_forward(gemm, &g, &normalized, &wt, Some(&b), &mut ws, &mut y);
                    }
                    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                    conv_backward(gemm, &g, &mut ws, &wt, &dy, Some(&mut dx), &mut dw, None);
                    [y, dx, dw].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                };
                assert!(
                    run(true) == run(false),
                    "{g:?} batch norm {with_bn} relu {relu}"
                );
            }
        }
    }

    /// The backward pass is the adjoint of the forward: <conv(x), dy> = <x, dx> and = <w, dw>.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for &(n, h, w, cin, cout, stride) in &[
            (2, 7, 7, 3, 5, 1),
            (3, 8, 8, 4, 6, 2),
            // Stride 2 with a 7+ wide output: the sub-pixel data gradient, odd and even sides.
            (2, 15, 14, 5, 9, 2),
            (33, 2, 2, 3, 2, 2),
            // The column path, its weight gradient in several row blocks and a shorter last one.
            (37, 4, 4, 6, 7, 1),
            // The small-image dense product (2x2, 1x2 and 2x1 at stride 1).
            (13, 2, 2, 5, 7, 1),
            (9, 1, 2, 3, 11, 1),
            (9, 2, 1, 4, 9, 1),
            (70, 1, 1, 7, 9, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            let x = pseudo(g.input_len(), 4);
            let wt = pseudo(g.weight_len(), 5);
            let dy = pseudo(g.output_len(), 6);
            let mut ws = ConvWorkspace::default();
            let mut y = vec![0.0; g.output_len()];
            conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut ws, &mut y);
            let (mut dx, mut dw, mut db) =
                (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; cout]);
            conv_backward(
                GemmBackend::default(),
                &g,
                &mut ws,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            );
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| *p as f64 * *q as f64)
                    .sum::<f64>()
            };
            let ydy = dot(&y, &dy);
            assert!(
                (ydy - dot(&x, &dx)).abs() < 1e-4 * (1.0 + ydy.abs()),
                "{g:?} dx"
            );
            assert!(
                (ydy - dot(&wt, &dw)).abs() < 1e-4 * (1.0 + ydy.abs()),
                "{g:?} dw"
            );
            let sum_dy: Vec<f64> = (0..cout)
                .map(|c| dy.iter().skip(c).step_by(cout).map(|v| *v as f64).sum())
                .collect();
            for c in 0..cout {
                assert!((db[c] as f64 - sum_dy[c]).abs() < 1e-4, "{g:?} db");
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let _lock = crate::simd::ISA_TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // 37 images: tasks of whole images that the thread count splits unevenly; the 4x4 layer
        // takes the column path, whose weight gradient is cut into row blocks.
        for (batch, size) in [(64, 14), (37, 14), (37, 4)] {
            let g = ConvGeometry::same(batch, size, size, 8, 12, 1);
            let x = pseudo(g.input_len(), 7);
            let wt = pseudo(g.weight_len(), 8);
            let dy = pseudo(g.output_len(), 9);
            let run = |threads: usize| {
                on_threads(threads, || {
                    let mut ws = ConvWorkspace::default();
                    let mut y = vec![0.0; g.output_len()];
                    conv_forward(GemmBackend::default(), &g, &x, &wt, None, &mut ws, &mut y);
                    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                    conv_backward(
                        GemmBackend::default(),
                        &g,
                        &mut ws,
                        &wt,
                        &dy,
                        Some(&mut dx),
                        &mut dw,
                        None,
                    );
                    (y, dx, dw)
                })
            };
            assert!(run(1) == run(3), "1 and 3 threads must agree bitwise");
        }
    }

    /// The evaluation forward gives the training forward's output bitwise, for uneven batches
    /// and any thread count: on the implicit path it keeps no bordered images (one scratch image
    /// per task); the column path is the same code in both.
    #[test]
    fn evaluation_forward_equals_training_forward_bitwise() {
        let mut paths = [0, 0];
        for &(n, h, w, cin, cout, stride) in &[
            (1, 9, 8, 3, 5, 1),
            (5, 8, 8, 4, 6, 1),
            (37, 14, 14, 8, 12, 1),
            (5, 4, 4, 6, 7, 1),
            (3, 8, 8, 4, 6, 2),
            (37, 4, 4, 8, 12, 1),
        ] {
            let g = ConvGeometry::same(n, h, w, cin, cout, stride);
            paths[usize::from(implicit_plan(GemmBackend::Native, &g).is_some())] += 1;
            let x = pseudo(g.input_len(), 21);
            let wt = pseudo(g.weight_len(), 22);
            let b = pseudo(cout, 23);
            let mut train = vec![0.0; g.output_len()];
            conv_forward(
                GemmBackend::Native,
                &g,
                &x,
                &wt,
                Some(&b),
                &mut ConvWorkspace::default(),
                &mut train,
            );
            for threads in [1, 2, 3] {
                let eval = on_threads(threads, || {
                    let mut y = vec![f32::NAN; g.output_len()];
                    let mut ws = ConvWorkspace::default();
                    let e = ConvEpilogue::default();
                    conv_forward_fused(
                        GemmBackend::Native,
                        &g,
                        &x,
                        &wt,
                        Some(&b),
                        e,
                        &mut ws,
                        &mut y,
                    );
                    y
                });
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&eval), bits(&train), "{g:?} on {threads} threads");
            }
        }
        assert_eq!(paths, [3, 3], "three geometries per path");
    }

    /// A backward pass after the evaluation forward would read bordered images that were never
    /// kept: it refuses instead of computing garbage.
    #[test]
    #[should_panic(expected = "keeps nothing for backward")]
    fn backward_refuses_the_workspace_of_an_evaluation_forward() {
        let g = ConvGeometry::same(2, 8, 8, 3, 4, 1);
        let (x, wt, dy) = (
            pseudo(g.input_len(), 1),
            pseudo(g.weight_len(), 2),
            pseudo(g.output_len(), 3),
        );
        let mut ws = ConvWorkspace::default();
        let mut y = vec![0.0; g.output_len()];
        let e = ConvEpilogue::default();
        conv_forward_fused(GemmBackend::Native, &g, &x, &wt, None, e, &mut ws, &mut y);
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
        conv_backward(
            GemmBackend::Native,
            &g,
            &mut ws,
            &wt,
            &dy,
            Some(&mut dx),
            &mut dw,
            None,
        );
    }
}
