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
//! results are bitwise identical whatever the size of the rayon pool. Sums over a training
//! batch's images are formed per fixed shard of the batch and added by a fixed tree
//! ([`runtime::shards`]), so that processes sharing a batch get the same bits as one process.
//!
//! # Example
//!
//! A matrix product on bnconv's own GEMM, close to the f64 reference and bitwise the same on one
//! thread as on three:
//!
//! ```
//! use bnconv_kernels::gemm::{sgemm, sgemm_reference, MatMut, MatRef};
//! use bnconv_kernels::GemmBackend;
//!
//! // Odd sizes, so that edge tiles and masked lanes are used.
//! let (m, n, k) = (37, 29, 53);
//! let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0).collect();
//! let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 8.0).collect();
//! // Views: each slice with its shape (and row stride), checked once here.
//! let (a, b) = (MatRef::dense(&a, m, k), MatRef::dense(&b, k, n));
//! let product = |threads: usize| {
//!     let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
//!     let mut c = vec![0.0f32; m * n];
//!     let backend = GemmBackend::default();
//!     pool.install(|| sgemm(backend, 1.0, a, b, 0.0, MatMut::dense(&mut c, m, n)));
//!     c
//! };
//! let mut want = vec![0.0f32; m * n];
//! sgemm_reference(1.0, a, b, 0.0, MatMut::dense(&mut want, m, n));
//! let one = product(1);
//! for (got, want) in one.iter().zip(&want) {
//!     assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{got} vs {want}");
//! }
//! let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
//! assert_eq!(bits(&one), bits(&product(3)));
//! ```

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
