//! Run-time choice of the SIMD code path, and the small helpers every SIMD kernel shares.
//!
//! Element-wise kernels are written once against `Simd8` (eight `f32` lanes). [`multiversion!`]
//! compiles each one twice: a portable build on [`wide::f32x8`] (SSE2 on x86_64, NEON on aarch64,
//! scalar elsewhere) and, on x86_64, an AVX2+FMA build on `Ymm` (one 256-bit register), picked
//! at run time with `is_x86_feature_detected!`. Nothing assumes the build machine. Rust never
//! contracts `a * b + c` into an FMA on its own, so both builds give bitwise the same results.
//!
//! [`Isa::Avx512`] changes only the GEMM register tiles (16-lane `zmm` tiles, in
//! `gemm/tile.rs`); the element-wise kernels keep their AVX2 build there. Intel's server
//! cores run two 512-bit FMAs a cycle, twice their AVX2 rate; AMD's Zen 4 splits each into two
//! 256-bit halves, so there AVX-512 gains nothing and `BNCONV_ISA=avx2` (read by the `bnconv`
//! binary, which calls [`force_isa`]) may be the better choice.

use std::sync::atomic::{AtomicU8, Ordering};
use wide::f32x8;

/// Lanes of the SIMD vector every kernel uses.
pub const LANES: usize = 8;

/// The instruction set a multiversioned kernel runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F (x86_64, detected at run time, with AVX2 and FMA): 16-lane GEMM tiles.
    Avx512,
    /// AVX2 and FMA (x86_64, detected at run time).
    Avx2,
    /// What the build target guarantees (SSE2 on x86_64, NEON on aarch64).
    Portable,
}

impl Isa {
    /// Every code path, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The code path named `name` (as [`Isa::name`] spells it).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU runs the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::Avx2.supported() && std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU runs, best first (what tests should cover).
    pub fn supported_all() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.supported()).collect()
    }

    /// Whether the element-wise kernels may run their AVX2+FMA build (true for AVX-512 too).
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx2)
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// `Isa::code()` of the path in use, or 0 before the first call detects one.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The best path this CPU runs.
fn detect() -> Isa {
    Isa::ALL
        .into_iter()
        .find(|isa| isa.supported())
        .unwrap_or(Isa::Portable)
}

/// The instruction set in use: the best one this CPU supports unless [`force_isa`] said otherwise.
pub fn active_isa() -> Isa {
    let code = CHOSEN.load(Ordering::Relaxed);
    match Isa::ALL.into_iter().find(|isa| isa.code() == code) {
        Some(isa) => isa,
        None => {
            let isa = detect();
            CHOSEN.store(isa.code(), Ordering::Relaxed);
            isa
        }
    }
}

/// Held by unit tests that force a code path, and by those that compare two runs bitwise (which
/// a path switched by a concurrent test would break): the process-wide choice is shared.
#[cfg(test)]
pub(crate) static ISA_TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Forces a code path (for tests and profiling). Returns false, changing nothing, if the CPU lacks it.
pub fn force_isa(isa: Isa) -> bool {
    if !isa.supported() {
        return false;
    }
    CHOSEN.store(isa.code(), Ordering::Relaxed);
    true
}

/// Eight `f32` lanes, in whichever registers a build runs: the element-wise kernels are written
/// once against this trait and [`multiversion!`] instantiates them with [`wide::f32x8`]
/// (portable) and, on x86_64, with [`Ymm`] (AVX). `wide` picks its representation when the
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

#[cfg(target_arch = "x86_64")]
pub(crate) use ymm::Ymm;

/// The AVX build's vector: one 256-bit register.
#[cfg(target_arch = "x86_64")]
mod ymm {
    use super::{Simd8, LANES};
    use std::arch::x86_64::*;

    /// Eight lanes in a `ymm` register. Values of this type exist only inside
    /// [`multiversion!`]'s AVX2 build, which runs after `is_x86_feature_detected!` confirmed AVX2
    /// (the crate-private type is used nowhere else): that is what makes its AVX instructions
    /// sound to execute.
    #[derive(Clone, Copy)]
    pub(crate) struct Ymm(__m256);

    impl Simd8 for Ymm {
        #[inline(always)]
        fn load(a: &[f32; LANES]) -> Self {
            // SAFETY: `a` is eight readable floats (unaligned load); AVX is present (see Ymm).
            Ymm(unsafe { _mm256_loadu_ps(a.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, a: &mut [f32; LANES]) {
            // SAFETY: `a` is eight writable floats (unaligned store); AVX is present (see Ymm).
            unsafe { _mm256_storeu_ps(a.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn relu(self) -> Self {
            // SAFETY: AVX is present (see Ymm). `_CMP_LT_OQ` is false for NaN, which stays.
            Ymm(unsafe {
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, _mm256_setzero_ps());
                _mm256_andnot_ps(below, self.0)
            })
        }
        #[inline(always)]
        fn where_positive(self, dy: Self) -> Self {
            // SAFETY: AVX is present (see Ymm). `_CMP_GT_OQ` is false for NaN: no gradient.
            Ymm(unsafe {
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, _mm256_setzero_ps());
                _mm256_and_ps(positive, dy.0)
            })
        }
    }

    macro_rules! lane_op {
        ($trait:ident, $method:ident, $intrinsic:ident) => {
            impl std::ops::$trait for Ymm {
                type Output = Ymm;
                #[inline(always)]
                fn $method(self, rhs: Ymm) -> Ymm {
                    // SAFETY: AVX is present (see Ymm).
                    Ymm(unsafe { $intrinsic(self.0, rhs.0) })
                }
            }
        };
    }
    lane_op!(Add, add, _mm256_add_ps);
    lane_op!(Sub, sub, _mm256_sub_ps);
    lane_op!(Mul, mul, _mm256_mul_ps);
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

/// Defines a function whose body is compiled twice, portable and AVX2+FMA, dispatched on
/// [`active_isa`]. The function names its vector type parameter (`fn name<V>(...)`); the body is
/// generic over [`Simd8`] and runs with `V = wide::f32x8` in the portable build and `V = Ymm`
/// in the AVX2 build. The body should be (or call) `#[inline(always)]` code so both builds get
/// their own copy of the loop.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$v:ident>($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body<$v: $crate::simd::Simd8>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body::<$crate::simd::Ymm>($($arg),*)
                }
                if $crate::simd::active_isa().has_avx2() {
                    // SAFETY: active_isa() only reports Avx2 or Avx512 after
                    // is_x86_feature_detected! confirmed AVX2 and FMA on this CPU.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body::<wide::f32x8>($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_vector_and_scalar_agree_bitwise_including_edge_values() {
        let xs = [
            -1.0,
            -0.0,
            0.0,
            1e-30,
            -1e-30,
            3.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        check_relu::<f32x8>(&xs);
        #[cfg(target_arch = "x86_64")]
        if Isa::Avx2.supported() {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn on_avx(xs: &[f32]) {
                check_relu::<Ymm>(xs)
            }
            // SAFETY: AVX2 and FMA were detected just above.
            unsafe { on_avx(&xs) }
        } else {
            eprintln!("SKIPPED: the Ymm (AVX) vector: this CPU has no AVX2");
        }
    }

    #[inline(always)]
    fn check_relu<V: Simd8>(xs: &[f32]) {
        let mut out = [0.0f32; LANES];
        V::load(head(xs)).relu().store(&mut out);
        for (got, &x) in out.iter().zip(xs) {
            assert_eq!(got.to_bits(), relu_s(x).to_bits(), "relu({x})");
        }
        let nan = [f32::NAN; LANES];
        V::load(&nan).relu().store(&mut out);
        assert!(out.iter().all(|v| v.is_nan()) && relu_s(f32::NAN).is_nan());
        let two = [2.0f32; LANES];
        V::load(head(xs))
            .where_positive(V::load(&two))
            .store(&mut out);
        for (got, &y) in out.iter().zip(xs) {
            assert_eq!(got.to_bits(), relu_grad_s(y, 2.0).to_bits(), "grad at {y}");
        }
        V::load(&nan).where_positive(V::load(&two)).store(&mut out);
        assert!(out
            .iter()
            .all(|v| v.to_bits() == relu_grad_s(f32::NAN, 2.0).to_bits()));
    }

    #[test]
    fn every_path_is_named_and_the_detected_one_is_supported() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("sse9"), None);
        assert!(detect().supported());
        assert!(!Isa::Avx512.supported() || Isa::Avx2.supported());
    }

    #[test]
    fn forcing_portable_is_always_possible() {
        let before = active_isa();
        assert!(force_isa(Isa::Portable));
        assert_eq!(active_isa(), Isa::Portable);
        force_isa(before);
    }
}
