//! bnconv's hot loops, and nothing else.
//!
//! Every function here works on plain `f32` slices in NHWC / row-major layout, so the layer API in
//! `bnconv-nn` stays free of `unsafe` and of layout tricks. SIMD kernels are written once against
//! an 8-lane vector trait and compiled twice (a portable build on [`wide`] and an AVX2 build on
//! `ymm` registers, chosen at run time, see [`simd`]); each has a plain scalar reference beside it
//! that the tests compare it with.
//!
//! Parallel kernels split their work into chunks whose size depends only on the problem shape
//! ([`partition`]), never on the thread count, and reduce partial sums in chunk order: results are
//! bitwise identical whatever the size of the rayon pool.

pub mod batchnorm;
pub mod bn_relu;
pub mod conv;
pub mod gemm;
#[cfg(feature = "blas")]
mod gemm_blas;
pub mod geometry;
pub mod im2col;
pub mod implicit;
pub mod keep_awake;
pub mod matmul;
mod microkernel;
pub mod partition;
pub mod peak;
mod prefetch;
pub mod profile;
pub mod relu;
pub mod simd;
pub mod small_image;
pub mod subpixel;
#[cfg(test)]
mod testing;

pub use gemm::GemmBackend;
pub use geometry::ConvGeometry;
