//! Run-time choice of the SIMD code path, and the small helpers every SIMD kernel shares.
//!
//! Kernels are written once against [`wide::f32x8`]. [`multiversion!`] compiles each one twice: a
//! portable build (SSE2 on x86_64, NEON on aarch64, scalar elsewhere) and, on x86_64, a build with
//! AVX2+FMA enabled, picked at run time with `is_x86_feature_detected!`. Nothing assumes the build
//! machine. Rust never contracts `a * b + c` into an FMA on its own, so both builds give bitwise the
//! same results.
//!
//! [`Isa::Avx512`] changes only the GEMM register tiles (16-lane `zmm` tiles, in
//! `microkernel.rs`); the element-wise kernels keep their AVX2 build there. Intel's server
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

/// Loads eight floats from the start of `s` (which must hold at least eight).
#[inline(always)]
pub(crate) fn load(s: &[f32]) -> f32x8 {
    f32x8::from(&s[..LANES])
}

/// Stores eight floats at the start of `s` (which must hold at least eight).
#[inline(always)]
pub(crate) fn store(s: &mut [f32], v: f32x8) {
    s[..LANES].copy_from_slice(v.as_array());
}

/// `s[..8] += v`.
#[inline(always)]
pub(crate) fn accumulate(s: &mut [f32], v: f32x8) {
    let sum = load(s) + v;
    store(s, sum);
}

/// ReLU that lets NaN through (as TensorFlow does), so a diverging run cannot hide behind zeros.
#[inline(always)]
pub(crate) fn relu_v(v: f32x8) -> f32x8 {
    v.simd_lt(f32x8::ZERO).select(f32x8::ZERO, v)
}

/// Scalar twin of [`relu_v`]: bitwise the same result for every input.
#[inline(always)]
pub fn relu_s(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The ReLU gradient mask: `dy` where the ReLU output was positive, else zero.
#[inline(always)]
pub(crate) fn relu_grad_v(y: f32x8, dy: f32x8) -> f32x8 {
    y.simd_gt(f32x8::ZERO).select(dy, f32x8::ZERO)
}

/// Scalar twin of [`relu_grad_v`].
#[inline(always)]
pub fn relu_grad_s(y: f32, dy: f32) -> f32 {
    if y > 0.0 {
        dy
    } else {
        0.0
    }
}

/// Defines a function whose body is compiled twice, portable and AVX2+FMA, dispatched on
/// [`active_isa`]. The body should be (or call) `#[inline(always)]` code so both builds get their
/// own copy of the loop.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if $crate::simd::active_isa().has_avx2() {
                    // SAFETY: active_isa() only reports Avx2 or Avx512 after
                    // is_x86_feature_detected! confirmed AVX2 and FMA on this CPU.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
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
        let v = relu_v(f32x8::from(&xs[..]));
        for (got, x) in v.to_array().iter().zip(xs) {
            assert_eq!(got.to_bits(), relu_s(x).to_bits(), "relu({x})");
        }
        let nan = relu_v(f32x8::splat(f32::NAN)).to_array();
        assert!(nan.iter().all(|v| v.is_nan()) && relu_s(f32::NAN).is_nan());
        let g = relu_grad_v(f32x8::from(&xs[..]), f32x8::splat(2.0));
        for (got, y) in g.to_array().iter().zip(xs) {
            assert_eq!(got.to_bits(), relu_grad_s(y, 2.0).to_bits(), "grad at {y}");
        }
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
