//! bnconv's hot loops, and nothing else.
//!
//! Every function here works on plain `f32` slices in NHWC / row-major layout, so the layer API in
//! `bnconv-nn` stays free of `unsafe` and of layout tricks. SIMD kernels are written once against
//! an 8-lane vector trait and compiled twice (a portable build on [`wide`] and an AVX2 build on
//! `ymm` registers, chosen at run time, see [`simd`]); each has a plain scalar reference beside it
//! that the tests compare it with.
//!
//! The modules are layered, each using only those listed before it:
//! - [`simd`]: the instruction set chosen at run time and the 8-lane vector trait;
//! - [`runtime`]: how work is cut into chunks ([`runtime::partition`]), cache warming, keeping the
//!   pool's workers awake, the FMA peak probe and the phase profiler;
//! - [`fuse`]: the vocabulary of fused operations, a product's [`fuse::Epilogue`] (bias, ReLU,
//!   scale folded into the weights) and an operand's [`fuse::Prologue`] (batch norm, ReLU);
//! - [`gemm`]: the GEMM backend switch, bnconv's own GEMM (packing, loop nests, register tiles)
//!   and the optional BLAS backend;
//! - [`norm`]: batch norm, ReLU and the fused BN+ReLU kernels;
//! - [`conv`]: the 3x3 convolution (geometry, path choice, workspace, forward, gradients and the
//!   im2col, implicit, sub-pixel and small-image algorithms).
//!
//! Parallel kernels split their work into chunks whose size depends only on the problem shape
//! ([`runtime::partition`]), never on the thread count, and reduce partial sums in chunk order:
//! results are bitwise identical whatever the size of the rayon pool.

pub mod conv;
pub mod fuse;
pub mod gemm;
pub mod norm;
pub mod runtime;
pub mod simd;
#[cfg(test)]
mod testing;

pub use conv::ConvGeometry;
pub use gemm::GemmBackend;
