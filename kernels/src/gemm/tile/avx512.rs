//! The AVX-512 register tiles (16-lane `zmm` vectors, an odd last 8-lane vector in a low half).

use super::{group_rows, Tile, LANES};
use std::arch::x86_64::*;

/// Lanes of a `zmm`.
const WIDE: usize = 2 * LANES;

/// The first `n` lanes (`n` clamped to `0..=16`).
fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(WIDE)) - 1) as __mmask16
}

/// # Safety
/// AVX-512 F must be available; memory contract of [`super::run_tile`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile<const MR: usize, const NV: usize, const ZV: usize, const MASK_B: bool>(
    t: &Tile,
) {
    // Lanes of vector `j` that C holds (`cols`), and that B rows may be read for (`8*NV`
    // floats, or `cols` when masked). Masked loads never touch the lanes they leave out.
    let store: [__mmask16; ZV] = std::array::from_fn(|j| lanes(t.cols.saturating_sub(WIDE * j)));
    let read: [__mmask16; ZV] = if MASK_B {
        store
    } else {
        std::array::from_fn(|j| lanes((LANES * NV).saturating_sub(WIDE * j)))
    };
    let (bias, accumulate, relu, w) = (t.bias_ptr(), t.accumulates(), t.epilogue.relu, t.walk);
    // The bias row, loaded once for the strip.
    let mut start = [_mm512_setzero_ps(); ZV];
    if !bias.is_null() {
        for (j, v) in start.iter_mut().enumerate() {
            // SAFETY: the bias row is readable for `cols` floats; the load is masked to them.
            *v = unsafe { _mm512_maskz_loadu_ps(store[j], bias.add(WIDE * j)) };
        }
    }
    for g in (0..t.rows).step_by(MR) {
        let valid = (t.rows - g).min(MR);
        let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
        let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
        let mut acc = [start; MR];
        if accumulate {
            for (row, c) in acc.iter_mut().zip(&c).take(valid) {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: as for the stores below.
                    *v = unsafe { _mm512_maskz_loadu_ps(store[j], c.add(WIDE * j)) };
                }
            }
        }
        for s in 0..w.segments as isize {
            let mut b = t.b.wrapping_offset(s * w.b_seg);
            let rows: [*const f32; MR] = a.map(|r| r.wrapping_offset(s * w.a_seg));
            let mut off = 0isize;
            for _ in 0..w.depth {
                let mut bv = [_mm512_setzero_ps(); ZV];
                for (j, v) in bv.iter_mut().enumerate() {
                    // SAFETY: each B row is readable for `8*NV` floats, or `cols` with
                    // `MASK_B`; the load is masked to them.
                    *v = unsafe { _mm512_maskz_loadu_ps(read[j], b.add(WIDE * j)) };
                }
                for (i, r) in rows.iter().enumerate() {
                    // SAFETY: every row pointer addresses A at this segment and step.
                    let av = _mm512_set1_ps(unsafe { *r.offset(off) });
                    for (j, v) in bv.iter().enumerate() {
                        acc[i][j] = _mm512_fmadd_ps(av, *v, acc[i][j]);
                    }
                }
                b = b.wrapping_offset(w.b_step);
                off += w.a_step;
            }
        }
        if relu {
            // max(0, v) returns v when v is NaN (the second operand), like `relu_s`.
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    *v = _mm512_max_ps(_mm512_setzero_ps(), *v);
                }
            }
        }
        for (row, c) in acc.iter().zip(&c).take(valid) {
            for (j, v) in row.iter().enumerate() {
                // SAFETY: row `g + i < rows` of C; the store is masked to the `cols` valid
                // columns.
                unsafe { _mm512_mask_storeu_ps(c.wrapping_add(WIDE * j), store[j], *v) };
            }
        }
    }
}
