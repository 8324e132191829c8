//! 3x3 SAME convolution over NHWC batches: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Only the geometry's live kernel taps take part ([`ConvGeometry::live_taps`]): the GEMM depth is
//! `taps * Cin`, the weight operand is the live rows of the HWIO matrix, and the weight gradient
//! of a dead tap is exactly zero.
//!
//! Threads: work is cut into chunks of whole images ([`crate::runtime::partition::images_per_chunk`]) spread over
//! the current rayon pool, and each chunk's GEMM is cut again into row blocks when it is big
//! enough to share. Splitting output rows never changes a result (every output element is reduced
//! in the same order), and the weight and bias gradients are partial sums over fixed chunks (or
//! row blocks) added in order: results are bitwise the same for any thread count.

mod backward;
mod data_grad;
mod eval;
mod forward;
mod gemm_rows;
pub mod geometry;
pub mod im2col;
pub mod implicit;
mod plan;
mod reference;
pub mod small_image;
pub mod subpixel;
#[cfg(test)]
mod tests;
mod weight_grad;
mod workspace;

pub use backward::{conv_backward, ConvGrads};
pub use eval::EvalConv;
pub use forward::{conv_forward, ConvOps, Keep};
pub use geometry::ConvGeometry;
pub use plan::{ConvPlan, DataGradPath, ForwardPath, WeightGradPath};
pub use reference::{conv_forward_reference, tf_same, ConvSizes};
pub use workspace::ConvWorkspace;
