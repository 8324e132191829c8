//! The fp32 FMA peak of one core of this machine, measured rather than assumed: the `% peak`
//! figures of a report are only honest against the CPU they ran on (cores differ by about two
//! to one; measured figures are in docs/performance/).
//!
//! The probe runs [`CHAINS`] independent multiply-add chains on the active code path's widest
//! vectors, enough to cover FMA latency times the FMA pipes of current x86 cores (4 x 2), and
//! keeps the best of many short bursts: on a shared machine a burst that a neighbour slowed is
//! simply outdone by one it did not.

use crate::simd::{active_isa, Isa};
use std::time::{Duration, Instant};

/// Independent accumulator chains (registers: 12 of the 16 `ymm`, or of the 32 `zmm`).
const CHAINS: usize = 12;

/// Multiply-adds per chain in one burst (about 0.1-0.3 ms on a current core).
const BURST: usize = 1 << 15;

/// The best fp32 GFLOP/s (2 per lane per multiply-add) of one thread over bursts run for about
/// `budget`, on the code path [`active_isa`] chooses.
pub fn fma_peak_gflops(budget: Duration) -> f64 {
    fma_peak_gflops_on(active_isa(), budget)
}

/// [`fma_peak_gflops`] on the code path for `isa` (one this CPU runs; otherwise the portable
/// path is measured).
pub fn fma_peak_gflops_on(isa: Isa, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut best = 0.0f64;
    loop {
        let t = Instant::now();
        let flops = burst(isa);
        let seconds = t.elapsed().as_secs_f64();
        if seconds > 0.0 {
            best = best.max(flops / seconds / 1e9);
        }
        if start.elapsed() >= budget && best > 0.0 {
            return best;
        }
    }
}

/// One burst on `isa`'s path: returns the flops it did.
fn burst(isa: Isa) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if is_x86_feature_detected!("avx512f") => {
            // SAFETY: AVX-512 F was detected on this CPU just above.
            unsafe { x86::burst_avx512() }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") =>
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            unsafe { x86::burst_avx2() }
        }
        _ => burst_portable(),
    }
}

/// The portable path's vectors (`wide`, whatever the build target gives it).
fn burst_portable() -> f64 {
    use wide::f32x8;
    let (b, c) = (f32x8::splat(0.999_9), f32x8::splat(1e-4));
    let mut acc: [f32x8; CHAINS] = std::array::from_fn(|i| f32x8::splat(i as f32));
    for _ in 0..BURST {
        for a in acc.iter_mut() {
            *a = a.mul_add(b, c);
        }
    }
    std::hint::black_box(acc);
    (CHAINS * BURST * 8 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BURST, CHAINS};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn burst_avx2() -> f64 {
        let (b, c) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-4));
        let mut acc: [__m256; CHAINS] = std::array::from_fn(|i| _mm256_set1_ps(i as f32));
        for _ in 0..BURST {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, b, c);
            }
        }
        std::hint::black_box(acc);
        (CHAINS * BURST * 8 * 2) as f64
    }

    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn burst_avx512() -> f64 {
        let (b, c) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-4));
        let mut acc: [__m512; CHAINS] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..BURST {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, b, c);
            }
        }
        std::hint::black_box(acc);
        (CHAINS * BURST * 16 * 2) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path this CPU runs gives a finite, positive figure below any real core's (a broken
    /// probe, one that the optimiser emptied, would give infinity or nonsense).
    #[test]
    fn every_path_measures_a_plausible_peak() {
        for isa in Isa::ALL {
            let gflops = fma_peak_gflops_on(isa, Duration::from_millis(20));
            eprintln!("{isa:?}: {gflops:.1} GFLOP/s on one thread");
            assert!(
                gflops.is_finite() && gflops > 0.05 && gflops < 2000.0,
                "{isa:?}: {gflops} GFLOP/s"
            );
        }
    }
}
