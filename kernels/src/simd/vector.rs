//! The 8-lane vector trait the element-wise kernels are written against, its portable build on
//! [`wide::f32x8`], and the scalar twins of its operations.

use super::LANES;
use wide::f32x8;

/// Eight `f32` lanes, in whichever registers a build runs: the element-wise kernels are written
/// once against this trait and `multiversion!` instantiates them with [`wide::f32x8`]
/// (portable) and, on x86_64, with `Ymm` (AVX). `wide` picks its representation when the
/// crate is compiled, so without `-C target-feature` its `f32x8` is two SSE halves even inside
/// an AVX2-enabled function: the AVX2 build needs a type of its own to use 256-bit registers.
///
/// Every operation is the same IEEE operation per lane in both types (no fused multiply-add), so
/// the two builds agree bitwise.
pub(crate) trait Simd8:
    Copy + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self>
{
    fn load(a: &[f32; LANES]) -> Self;
    fn store(self, a: &mut [f32; LANES]);
    /// ReLU that lets NaN through (as TensorFlow does), so a diverging run cannot hide behind
    /// zeros: `0` where the lane is below zero, else the lane (so `-0.0` and NaN stay).
    fn relu(self) -> Self;
    /// `dy` where this lane (a ReLU output) is positive, else `+0.0`: the ReLU gradient mask.
    fn where_positive(self, dy: Self) -> Self;
}

impl Simd8 for f32x8 {
    #[inline(always)]
    fn load(a: &[f32; LANES]) -> Self {
        f32x8::from(*a)
    }
    #[inline(always)]
    fn store(self, a: &mut [f32; LANES]) {
        *a = self.to_array();
    }
    #[inline(always)]
    fn relu(self) -> Self {
        self.simd_lt(f32x8::ZERO).select(f32x8::ZERO, self)
    }
    #[inline(always)]
    fn where_positive(self, dy: Self) -> Self {
        self.simd_gt(f32x8::ZERO).select(dy, f32x8::ZERO)
    }
}

/// `a += v`.
#[inline(always)]
pub(crate) fn accumulate<V: Simd8>(a: &mut [f32; LANES], v: V) {
    (V::load(a) + v).store(a);
}

/// The first `n` whole vectors of `s` (which must hold them). Kernels index these instead of
/// re-slicing `s` at every vector: each access is then provably in bounds, and the loops carry no
/// bounds checks (they had two per load).
#[inline(always)]
pub(crate) fn vectors(s: &[f32], n: usize) -> &[[f32; LANES]] {
    &s.as_chunks().0[..n]
}

/// [`vectors`], mutable.
#[inline(always)]
pub(crate) fn vectors_mut(s: &mut [f32], n: usize) -> &mut [[f32; LANES]] {
    &mut s.as_chunks_mut().0[..n]
}

/// The eight floats at the start of `s` (which must hold at least eight).
#[inline(always)]
pub(crate) fn head(s: &[f32]) -> &[f32; LANES] {
    s.first_chunk().expect("a vector needs eight floats")
}

/// [`head`], mutable.
#[inline(always)]
pub(crate) fn head_mut(s: &mut [f32]) -> &mut [f32; LANES] {
    s.first_chunk_mut().expect("a vector needs eight floats")
}

/// Scalar twin of `Simd8::relu`: bitwise the same result for every input.
#[inline(always)]
pub fn relu_s(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// Scalar twin of `Simd8::where_positive`: `dy` where the ReLU output `y` was positive.
#[inline(always)]
pub fn relu_grad_s(y: f32, dy: f32) -> f32 {
    if y > 0.0 {
        dy
    } else {
        0.0
    }
}
