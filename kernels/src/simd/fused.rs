//! The fused multiply-add of the portable code path: `a * b + c` rounded once, the operation
//! x86's `vfmadd` performs, so that the portable GEMM tiles give the AVX2 and AVX-512 tiles' bits.
//!
//! Where the build target has an FMA instruction (aarch64, or x86_64 built with the `fma` target
//! feature), `f32::mul_add` is that instruction, and the compiler vectorises it. x86_64's baseline
//! (SSE2) has none: there `f32::mul_add` is a call into the C library for every element, so
//! [`Panel`] computes in f64 instead ([`wide_mul_add`]): the product of two `f32` is exact in
//! f64, and the f64 sum rounded to `f32` is the correctly rounded result except when that sum
//! lands exactly halfway between two `f32` (the second rounding can then go the wrong way) or in
//! `f32`'s subnormal range. Those rare lanes are flagged and recomputed with `f32::mul_add`.
//! Either way every lane is the correctly rounded `a * b + c`: the same bits on every CPU.

use super::LANES;

/// Whether this build computes the fused multiply-add in f64 ([`wide_mul_add`]) rather than
/// with the target's FMA instruction.
pub(crate) const EMULATED: bool = cfg!(all(
    any(target_arch = "x86_64", target_arch = "x86"),
    not(target_feature = "fma")
));

/// One B row of a portable GEMM tile, `NV` vectors of eight floats, loaded once per reduction
/// step and multiplied into every row of the tile ([`Panel::mul_add_into`]).
#[derive(Clone, Copy)]
pub(crate) struct Panel<const NV: usize> {
    b: [[f32; LANES]; NV],
    /// `b` widened to f64 (used by the emulated build only; filled by every build so that one
    /// body serves both).
    wide: [[f64; LANES]; NV],
}

impl<const NV: usize> Panel<NV> {
    /// The panel holding `b`.
    #[inline(always)]
    pub(crate) fn new(b: [[f32; LANES]; NV]) -> Self {
        let wide = if EMULATED {
            b.map(|v| v.map(f64::from))
        } else {
            [[0.0; LANES]; NV]
        };
        Panel { b, wide }
    }

    /// `acc[j] = a * b[j] + acc[j]`, rounded once, for every lane.
    #[inline(always)]
    pub(crate) fn mul_add_into(&self, a: f32, acc: &mut [[f32; LANES]; NV]) {
        if !EMULATED {
            for (acc, b) in acc.iter_mut().zip(&self.b) {
                for (c, b) in acc.iter_mut().zip(b) {
                    *c = a.mul_add(*b, *c);
                }
            }
            return;
        }
        let a_wide = f64::from(a);
        let mut out = [[0.0f32; LANES]; NV];
        let mut suspect = false;
        for ((out, acc), b) in out.iter_mut().zip(acc.iter()).zip(&self.wide) {
            for ((o, c), b) in out.iter_mut().zip(acc).zip(b) {
                let (v, exact) = wide_mul_add(a_wide, *b, *c);
                *o = v;
                suspect |= !exact;
            }
        }
        if suspect {
            self.redo_exactly(a, acc, &mut out);
        }
        *acc = out;
    }

    /// The rare case of [`Panel::mul_add_into`]: every lane of `out` from `f32::mul_add`.
    #[cold]
    #[inline(never)]
    fn redo_exactly(&self, a: f32, acc: &[[f32; LANES]; NV], out: &mut [[f32; LANES]; NV]) {
        for ((out, acc), b) in out.iter_mut().zip(acc).zip(&self.b) {
            for ((o, c), b) in out.iter_mut().zip(acc).zip(b) {
                *o = a.mul_add(*b, *c);
            }
        }
    }
}

/// `a * b + c` computed in f64 from `f32` operands (`a` and `b` widened) and rounded to `f32`,
/// with whether that result is certainly `f32::mul_add`'s. The product is exact in f64 (48 of
/// 53 bits); the sum is rounded once to f64 and once more to `f32`. Two roundings can differ from
/// one only when the f64 sum is exactly halfway between two `f32` (its 29 low bits `1000...0`)
/// or lies where `f32` is subnormal (fewer bits, other halfway points): the flag is false there.
/// An exactly zero sum is exact (the operands are multiples of 2^-298, far above f64's least
/// value), and infinities and NaN come out as the fused operation gives them (NaN payloads
/// aside).
#[inline(always)]
pub(crate) fn wide_mul_add(a: f64, b: f64, c: f32) -> (f32, bool) {
    let sum = a * b + f64::from(c);
    let halfway = sum.to_bits() & 0x1FFF_FFFF == 0x1000_0000;
    let subnormal = sum.abs() < f64::from(f32::MIN_POSITIVE) && sum != 0.0;
    (sum as f32, !(halfway || subnormal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Pseudo;

    /// `wide_mul_add` where it claims exactness, and `Panel` everywhere, equal `f32::mul_add`.
    fn check(a: f32, b: f32, c: f32) {
        let want = a.mul_add(b, c);
        let (got, exact) = wide_mul_add(f64::from(a), f64::from(b), c);
        if want.is_nan() {
            assert!(got.is_nan(), "{a:e} * {b:e} + {c:e}: {got:e}, want NaN");
        } else if exact {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{a:e} * {b:e} + {c:e}: {got:e}, want {want:e}"
            );
        }
        let mut acc = [[c; LANES]];
        Panel::new([[b; LANES]]).mul_add_into(a, &mut acc);
        assert!(
            acc[0]
                .iter()
                .all(|v| v.to_bits() == want.to_bits() || want.is_nan() && v.is_nan()),
            "panel: {a:e} * {b:e} + {c:e}: {:e}, want {want:e}",
            acc[0][0]
        );
    }

    /// Random operands over many exponents (products that cancel the addend, or vanish beside
    /// it, or swamp it), with random signs.
    #[test]
    fn equals_the_fused_operation_on_random_operands() {
        let mut rng = Pseudo::new(17);
        let mut scaled = |spread: i32| {
            let e = (rng.next_value() * 2.0 * spread as f32) as i32;
            rng.next_value() * 2f32.powi(e)
        };
        for spread in [1, 8, 30, 60] {
            for _ in 0..100_000 {
                check(scaled(spread), scaled(spread), scaled(spread));
            }
        }
    }

    /// Sums that land exactly halfway between two `f32` in f64 without being that halfway value
    /// (the f64 rounding dropped a 2^-60 beyond it, so rounding again, ties to even, goes the
    /// wrong way), at many scales and signs; exact halfway values (ties to even); subnormal
    /// results, signed zeros, infinities and NaN.
    #[test]
    fn equals_the_fused_operation_on_halfway_subnormal_and_special_cases() {
        // (2^-24 (1 + 2^-12)) (1 - 2^-12 + 2^-24) = 2^-24 + 2^-60: above halfway past 1.
        let above = (
            2f32.powi(-24) * (1.0 + 2f32.powi(-12)),
            1.0 - 2f32.powi(-12) + 2f32.powi(-24),
        );
        // (2^-24 (1 + 2^-18)) (1 - 2^-18) = 2^-24 - 2^-60: below halfway past 1 + 2^-23.
        let below = (
            2f32.powi(-24) * (1.0 + 2f32.powi(-18)),
            1.0 - 2f32.powi(-18),
        );
        let mut double_rounding_was_wrong = 0;
        for k in -60..60 {
            let scale = 2f32.powi(k);
            for (a, b, c) in [
                (above.0 * scale, above.1, scale),
                (below.0 * scale, below.1, (1.0 + f32::EPSILON) * scale),
                (f32::EPSILON / 2.0 * scale, 1.0, scale),
                (
                    f32::EPSILON / 2.0 * scale,
                    1.0,
                    (1.0 + f32::EPSILON) * scale,
                ),
            ] {
                for (a, c) in [(a, c), (-a, -c)] {
                    let (naive, exact) = wide_mul_add(f64::from(a), f64::from(b), c);
                    assert!(!exact, "{a:e} * {b:e} + {c:e} is flagged");
                    double_rounding_was_wrong += usize::from(naive != a.mul_add(b, c));
                    check(a, b, c);
                    check(b, a, c);
                }
            }
        }
        assert!(
            double_rounding_was_wrong >= 2 * 2 * 120,
            "{double_rounding_was_wrong}"
        );
        let tiny = f32::MIN_POSITIVE;
        for (a, b, c) in [
            (tiny, 0.5, 0.0),
            (tiny, 0.75, -tiny / 4.0),
            (2f32.powi(-70), 2f32.powi(-70) * 3.0, 2f32.powi(-140)),
            (2f32.powi(-75), 2f32.powi(-75) * 1.5, f32::from_bits(1)),
            (2f32.powi(-75), -2f32.powi(-75) * 1.5, f32::from_bits(3)),
            (0.0, 5.0, -0.0),
            (-0.0, 5.0, -0.0),
            (1.0, -1.0, 1.0),
            (f32::MAX, 2.0, -f32::MAX),
            (f32::MAX, 1.0, f32::MAX),
            (f32::INFINITY, 0.0, 1.0),
            (f32::INFINITY, 1.0, f32::NEG_INFINITY),
            (f32::INFINITY, -1.0, 1.0),
            (f32::NAN, 1.0, 1.0),
            (1.0, 1.0, f32::NAN),
        ] {
            check(a, b, c);
            check(-a, b, c);
            check(a, b, -c);
        }
    }

    /// Every f32 addend around 1 and 2 (where halfway cases are densest for products of a few
    /// bits), against a product of a few set bits.
    #[test]
    fn equals_the_fused_operation_on_few_bit_products() {
        for c_bits in (1.0f32.to_bits()..1.0f32.to_bits() + 4096)
            .chain(2.0f32.to_bits() - 4096..2.0f32.to_bits() + 4096)
        {
            let c = f32::from_bits(c_bits);
            for (a, b) in [
                (1.0f32, 2f32.powi(-24)),
                (1.5, 2f32.powi(-24)),
                (3.0, 2f32.powi(-25)),
            ] {
                check(a, b, c);
                check(-a, b, c);
            }
        }
    }

    /// The fused operation is really fused: `1 + 2^-23` squared minus `1 + 2^-22` is `2^-46`
    /// fused, 0 with a rounded product.
    #[test]
    fn the_panel_fuses() {
        let x = 1.0 + f32::EPSILON;
        let mut acc = [[-(1.0 + 2.0 * f32::EPSILON); LANES]; 2];
        Panel::new([[x; LANES]; 2]).mul_add_into(x, &mut acc);
        assert!(
            acc.iter().flatten().all(|v| *v == 2f32.powi(-46)),
            "{acc:?}"
        );
    }
}
