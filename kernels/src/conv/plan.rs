//! Which algorithm a layer runs ([`ConvPlan`], decided once per backend and geometry), and how
//! its work is cut into tasks.

use crate::conv::geometry::ConvGeometry;
use crate::conv::implicit::{weight_grad_transposed, Implicit};
use crate::conv::small_image;
use crate::conv::subpixel::SubPixel;
use crate::gemm::GemmBackend;
use crate::runtime::partition::images_per_chunk;

/// GEMM work (flops) worth one rayon task: small enough to share a 64-row layer between two
/// threads, big enough that task overhead (a few microseconds) stays small.
pub(super) const TASK_FLOPS: usize = 1 << 19;

/// Output widths from which the implicit path (no im2col matrix) is used: there the matrix is
/// large and copying it costs more than the tiles lose to the windows' short rows.
pub(super) const IMPLICIT_MIN_WIDTH: usize = 7;

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
pub(super) struct Chunking {
    pub(super) input: usize,
    pub(super) cols: usize,
    pub(super) output: usize,
}

/// How a layer's batch is cut into chunks of whole images ([`images_per_chunk`]).
pub(super) fn chunking(g: &ConvGeometry) -> Chunking {
    let images = images_per_chunk(g.out_pixels());
    Chunking {
        input: images * g.in_pixels() * g.in_c,
        cols: images * g.out_pixels() * g.k(),
        output: images * g.out_pixels() * g.out_c,
    }
}

/// The HWIO weight row of live GEMM row `r`.
pub(super) fn weight_row(g: &ConvGeometry, r: usize) -> usize {
    g.live_taps()[r / g.in_c] as usize * g.in_c + r % g.in_c
}

/// Rows per task for a GEMM whose rows cost `row_flops` each: a multiple of 24 (every tile
/// height, 3, 6, 8 and 12, divides it).
pub(super) fn rows_per_task(row_flops: usize) -> usize {
    (TASK_FLOPS / row_flops.max(1)).div_ceil(24).max(1) * 24
}

/// Whole images per task for a pass over independent images (no partial sums) of `image_flops`
/// GEMM work each, on a layer with `out_pixels` output pixels per image: enough images for a
/// [`TASK_FLOPS`] task, but never more than the layer's chunk ([`images_per_chunk`]), so that
/// a layer splits into at least as many tasks as it has chunks. Shape alone decides it, never
/// the thread count: a 64-core pool gets every task a 1-core pool does.
pub(super) fn images_per_task(out_pixels: usize, image_flops: usize) -> usize {
    (TASK_FLOPS / image_flops.max(1)).clamp(1, images_per_chunk(out_pixels))
}

/// Rows of `cols` (and of `dy`) per weight-gradient task on bnconv's GEMM: each task reduces
/// its rows over every column into a partial sum of its own. The rows were written by the
/// forward pass long before and are read cold; a task first streams its rows in order
/// ([`crate::runtime::prefetch::warm_l2`]), which memory serves quickly, so that its product
/// finds them in L2 instead of missing line after line on strided reads. 128 rows of conv11
/// (360 columns) take 184 KB, well inside a 512 KiB L2 with their `dy` rows and partial sum.
/// The blocks depend only on the layer, so results are bitwise the same on any number of
/// threads (figures in docs/performance/kernel-notes.md).
pub(super) const WEIGHT_GRAD_TASK_ROWS: usize = 128;

/// Whether a column-path weight gradient is computed transposed, `dW^T = dy^T @ cols` (tile
/// rows are output channels, broadcast from `dy`; vectors run along each `cols` row, read in
/// contiguous strips once per task) rather than `cols^T @ dy` (which reads `cols` in narrow
/// column strips, once per panel of `dy`). Measured better on the 4x4 layers, which make the
/// largest cold operand, and worse on the 2x2 and 1x1 layers, which keep the other orientation
/// (figures in docs/performance/). Decided by the image size alone, so that every process of a
/// distributed run (whatever its share of the batch) lays out its partial sums the same way.
fn column_weight_grad_transposed(gemm: GemmBackend, g: &ConvGeometry) -> bool {
    gemm == GemmBackend::Native && g.out_pixels() >= 16
}

/// Whether the data gradient of a layer without a stride-1 implicit plan runs by parity classes
/// ([`crate::conv::subpixel`]): a stride-2 layer with every tap live and an output at least
/// [`IMPLICIT_MIN_WIDTH`] wide on bnconv's GEMM. Otherwise it goes through columns and col2im
/// (one wide column GEMM suits a 2x2 output's tiny parity classes better).
fn sub_pixel_data_grad(gemm: GemmBackend, g: &ConvGeometry) -> bool {
    gemm == GemmBackend::Native
        && g.stride == 2
        && g.live_taps().len() == 9
        && g.out_w >= IMPLICIT_MIN_WIDTH
}

/// How the forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    /// A stride-1 image of at most 2x2: one dense product per batch ([`small_image`]).
    SmallImage,
    /// Implicit GEMM over zero-bordered images, no im2col matrix ([`crate::conv::implicit`]).
    Implicit(Implicit),
    /// im2col columns, then a GEMM on the layer's backend.
    Columns,
}

/// How the input (data) gradient runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataGradPath {
    /// `dx = dy @ D^T` ([`small_image`]).
    SmallImage,
    /// Stride 1: an implicit forward convolution of the bordered `dy` with the flipped,
    /// transposed kernel.
    FlippedKernel(Implicit),
    /// Stride 2: four parity-class convolutions of the bordered `dy` ([`crate::conv::subpixel`]).
    SubPixel(SubPixel),
    /// `dcols = dy @ W_live^T` into the column buffer, then col2im.
    Col2im,
}

/// How the weight (and bias) gradient runs: partial sums over blocks of each fixed shard of the
/// batch, whose size depends only on the layer, added in the order of [`crate::runtime::shards`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradPath {
    /// `dD = x^T @ dy` folded onto the taps ([`small_image`]).
    SmallImage,
    /// From the bordered images (of geometry `image`) the forward pass kept, one partial sum per
    /// chunk of a shard's images; `transposed`: computed as `dW^T` ([`weight_grad_transposed`]).
    Implicit { image: Implicit, transposed: bool },
    /// From the im2col columns the forward pass kept, one partial sum per `block_rows` rows of a
    /// shard; `transposed`: computed as `dW^T = dy^T @ cols`.
    Columns { block_rows: usize, transposed: bool },
}

/// The algorithms one convolution layer runs on one backend: decided once per (backend,
/// geometry) and kept in the layer's [`ConvWorkspace`](super::ConvWorkspace), so the forward
/// pass, the weight gradient and the data gradient never work the choice out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    pub gemm: GemmBackend,
    pub geometry: ConvGeometry,
    pub forward: ForwardPath,
    pub data_grad: DataGradPath,
    pub weight_grad: WeightGradPath,
}

impl ConvPlan {
    /// The plan for layer `g` on `gemm`.
    pub fn new(gemm: GemmBackend, g: &ConvGeometry) -> ConvPlan {
        let native = gemm == GemmBackend::Native;
        let cout = g.out_c;
        if native && small_image::applies(g) {
            return ConvPlan {
                gemm,
                geometry: *g,
                forward: ForwardPath::SmallImage,
                data_grad: DataGradPath::SmallImage,
                weight_grad: WeightGradPath::SmallImage,
            };
        }
        let implicit = implicit_plan(gemm, g);
        // Without a stride-1 flipped-kernel plan, the data gradient runs by parity classes or
        // through columns; the implicit path always runs on bnconv's GEMM.
        let by_columns_or_parity = if sub_pixel_data_grad(gemm, g) {
            DataGradPath::SubPixel(SubPixel::new(g))
        } else {
            DataGradPath::Col2im
        };
        match implicit {
            Some(im) => ConvPlan {
                gemm,
                geometry: *g,
                forward: ForwardPath::Implicit(im),
                data_grad: implicit_data_grad_plan(g)
                    .map_or(by_columns_or_parity, DataGradPath::FlippedKernel),
                weight_grad: WeightGradPath::Implicit {
                    image: im,
                    transposed: weight_grad_transposed(&im, cout),
                },
            },
            None => ConvPlan {
                gemm,
                geometry: *g,
                forward: ForwardPath::Columns,
                data_grad: by_columns_or_parity,
                weight_grad: WeightGradPath::Columns {
                    // Fixed row blocks on bnconv's GEMM, whole-image chunks for a library GEMM
                    // (which splits its own work between threads).
                    block_rows: if native {
                        WEIGHT_GRAD_TASK_ROWS
                    } else {
                        chunking(g).output / cout
                    },
                    transposed: column_weight_grad_transposed(gemm, g),
                },
            },
        }
    }

    /// Whether the forward pass takes a [`Prologue`](crate::fuse::Prologue): on the implicit
    /// path, which borders its input anyway.
    pub fn accepts_prologue(&self) -> bool {
        matches!(self.forward, ForwardPath::Implicit(_))
    }
}
