//! The AVX build's vector: one 256-bit register.

use super::{Simd8, LANES};
use std::arch::x86_64::*;

/// Eight lanes in a `ymm` register. Values of this type exist only inside
/// `multiversion!`'s AVX2 build, which runs after `is_x86_feature_detected!` confirmed AVX2
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
