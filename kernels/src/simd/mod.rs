//! Run-time choice of the SIMD code path, and the small helpers every SIMD kernel shares.
//!
//! Element-wise kernels are written once against `Simd8` (eight `f32` lanes). [`multiversion!`]
//! compiles each one twice: a portable build on [`wide::f32x8`] (SSE2 on x86_64, NEON on aarch64,
//! scalar elsewhere) and, on x86_64, an AVX2+FMA build on `Ymm` (one 256-bit register). Every
//! kernel takes the [`Isa`] to run as its first argument; [`active_isa`] is the process-wide
//! choice (detected with `is_x86_feature_detected!`, or forced) that callers usually pass. Nothing assumes the build machine. Rust never
//! contracts `a * b + c` into an FMA on its own, so both builds give bitwise the same results.
//! Every path, present or future, must give the portable path's bits: the rule is on [`Isa`].
//!
//! [`Isa::Avx512`] changes only the GEMM register tiles (16-lane `zmm` tiles, in
//! `gemm/tile/avx512.rs`); the element-wise kernels keep their AVX2 build there. Intel's server
//! cores run two 512-bit FMAs a cycle, twice their AVX2 rate; AMD's Zen 4 splits each into two
//! 256-bit halves, so there AVX-512 gains nothing and `BNCONV_ISA=avx2` (read by the `bnconv`
//! binary, which calls [`force_isa`]) may be the better choice.

pub(crate) mod fused;
mod isa;
mod vector;
#[cfg(target_arch = "x86_64")]
mod ymm;

pub use isa::{active_isa, force_isa, Isa};
pub(crate) use vector::{accumulate, head, head_mut, vectors, vectors_mut, Simd8};
pub use vector::{relu_grad_s, relu_s};
#[cfg(target_arch = "x86_64")]
pub(crate) use ymm::Ymm;

/// Lanes of the SIMD vector every kernel uses.
pub const LANES: usize = 8;

/// Defines a function whose body is compiled twice, portable and AVX2+FMA, dispatched on the
/// [`Isa`] its caller passes first (`fn name<V>(a: A, ...)` becomes `fn name(isa: Isa, a: A,
/// ...)`). The body is generic over [`Simd8`] and runs with `V = wide::f32x8` in the portable
/// build and `V = Ymm` in the AVX2 build. The body should be (or call) `#[inline(always)]` code
/// so both builds get their own copy of the loop. Both builds give bitwise the same results, so
/// an `isa` this CPU does not run (any caller may name one) safely falls back to the portable
/// build ([`Isa::runs_avx2_build`]).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$v:ident>($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) {
            #[inline(always)]
            fn body<$v: $crate::simd::Simd8>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body::<$crate::simd::Ymm>($($arg),*)
                }
                if isa.runs_avx2_build() {
                    // SAFETY: `runs_avx2_build` is only true after is_x86_feature_detected!
                    // confirmed AVX2 and FMA on this CPU.
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            body::<wide::f32x8>($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;
    use isa::detect;
    use wide::f32x8;

    /// Signed zeros, tiny values and infinities (NaN is checked separately).
    const RELU_EDGES: [f32; LANES] = [
        -1.0,
        -0.0,
        0.0,
        1e-30,
        -1e-30,
        3.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];

    #[test]
    fn relu_vector_and_scalar_agree_bitwise_including_edge_values() {
        check_relu::<f32x8>(&RELU_EDGES);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(bnconv_cpu_lacks_avx2, ignore = "this CPU has no AVX2 and FMA")]
    fn relu_ymm_and_scalar_agree_bitwise_including_edge_values() {
        crate::testing::require_isa(Isa::Avx2);
        #[target_feature(enable = "avx2,fma")]
        unsafe fn on_avx(xs: &[f32]) {
            check_relu::<Ymm>(xs)
        }
        // SAFETY: AVX2 and FMA were checked just above.
        unsafe { on_avx(&RELU_EDGES) }
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

    /// The portable path always runs; a path asks for the AVX2 build of the element-wise
    /// kernels only where this CPU has it. (Forcing the process-wide path is tested in a process
    /// of its own: tests/isa_equivalence.rs.)
    #[test]
    fn the_avx2_build_runs_only_where_the_cpu_has_it() {
        assert!(Isa::Portable.supported());
        assert!(!Isa::Portable.runs_avx2_build());
        for isa in [Isa::Avx2, Isa::Avx512] {
            assert_eq!(isa.runs_avx2_build(), Isa::Avx2.supported(), "{isa:?}");
        }
    }
}
