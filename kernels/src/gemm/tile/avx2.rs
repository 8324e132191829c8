//! The AVX2+FMA register tiles (8-lane `ymm` vectors), one 4 x 3 reduction loop in assembly.

use super::{group_rows, Tile, LANES};
use std::arch::x86_64::*;

/// All-ones in the first `n` lanes (`1..=8`).
#[inline(always)]
unsafe fn lane_mask(n: usize) -> __m256i {
    const IDX: [i32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    // SAFETY: IDX holds eight i32.
    let idx = unsafe { _mm256_loadu_si256(IDX.as_ptr().cast()) };
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

/// The 4 x 3 tile's reduction loop (`acc[i][j] += A(i, p) * B(p, 8j..8j+8)` for `p <
/// depth`), in assembly: its 12 accumulators, 3 B vectors and a broadcast fill the 16 `ymm`
/// registers exactly, and the compiler's version of this loop spilled and shuffled them (the
/// cost is in docs/performance/kernel-notes.md). Same FMAs in the same order as the generic loop, so the
/// results are bitwise the same.
///
/// # Safety
/// AVX2 and FMA must be available; `rows[i] + p * a_step` readable and `b + p * b_step`
/// readable for 24 floats, for `i < 4` and `p < depth`.
#[target_feature(enable = "avx2,fma")]
unsafe fn depth_loop_4x3(
    acc: &mut [[__m256; 3]; 4],
    rows: &[*const f32],
    a_step: isize,
    b: *const f32,
    b_step: isize,
    depth: usize,
) {
    if depth == 0 {
        return;
    }
    let [[mut c00, mut c01, mut c02], [mut c10, mut c11, mut c12], [mut c20, mut c21, mut c22], [mut c30, mut c31, mut c32]] =
        *acc;
    // SAFETY: the caller's contract: every address the loop reads is readable; the loop
    // writes only the named registers and the flags.
    unsafe {
        std::arch::asm!(
            "2:",
            "vmovups ymm12, ymmword ptr [{b}]",
            "vmovups ymm13, ymmword ptr [{b} + 32]",
            "vmovups ymm14, ymmword ptr [{b} + 64]",
            "vbroadcastss ymm15, dword ptr [{a0} + {off}]",
            "vfmadd231ps ymm0, ymm15, ymm12",
            "vfmadd231ps ymm1, ymm15, ymm13",
            "vfmadd231ps ymm2, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a1} + {off}]",
            "vfmadd231ps ymm3, ymm15, ymm12",
            "vfmadd231ps ymm4, ymm15, ymm13",
            "vfmadd231ps ymm5, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a2} + {off}]",
            "vfmadd231ps ymm6, ymm15, ymm12",
            "vfmadd231ps ymm7, ymm15, ymm13",
            "vfmadd231ps ymm8, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + {off}]",
            "vfmadd231ps ymm9, ymm15, ymm12",
            "vfmadd231ps ymm10, ymm15, ymm13",
            "vfmadd231ps ymm11, ymm15, ymm14",
            "add {off}, {a_step}",
            "add {b}, {b_step}",
            "dec {n}",
            "jnz 2b",
            b = inout(reg) b => _,
            off = inout(reg) 0isize => _,
            n = inout(reg) depth => _,
            a0 = in(reg) rows[0],
            a1 = in(reg) rows[1],
            a2 = in(reg) rows[2],
            a3 = in(reg) rows[3],
            a_step = in(reg) a_step * 4,
            b_step = in(reg) b_step * 4,
            inout("ymm0") c00,
            inout("ymm1") c01,
            inout("ymm2") c02,
            inout("ymm3") c10,
            inout("ymm4") c11,
            inout("ymm5") c12,
            inout("ymm6") c20,
            inout("ymm7") c21,
            inout("ymm8") c22,
            inout("ymm9") c30,
            inout("ymm10") c31,
            inout("ymm11") c32,
            out("ymm12") _,
            out("ymm13") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, readonly),
        );
    }
    *acc = [
        [c00, c01, c02],
        [c10, c11, c12],
        [c20, c21, c22],
        [c30, c31, c32],
    ];
}

/// # Safety
/// AVX2 and FMA must be available; memory contract of [`super::run_tile`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile<const MR: usize, const NV: usize, const MASK_B: bool>(t: &Tile) {
    let last = t.cols - LANES * (NV - 1);
    // SAFETY: no memory access.
    let mask = unsafe { lane_mask(last.min(LANES)) };
    let (bias, accumulate, relu, w) = (t.bias_ptr(), t.accumulates(), t.epilogue.relu, t.walk);
    // The bias row, loaded once for the strip.
    let mut start = [_mm256_setzero_ps(); NV];
    if !bias.is_null() {
        for (j, v) in start.iter_mut().enumerate() {
            // SAFETY: the bias row is readable for `cols` floats: full vectors lie inside
            // them, the last is masked to them.
            *v = unsafe {
                if j == NV - 1 && last < LANES {
                    _mm256_maskload_ps(bias.add(LANES * j), mask)
                } else {
                    _mm256_loadu_ps(bias.add(LANES * j))
                }
            };
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
                    *v = unsafe {
                        if j == NV - 1 && last < LANES {
                            _mm256_maskload_ps(c.add(LANES * j), mask)
                        } else {
                            _mm256_loadu_ps(c.add(LANES * j))
                        }
                    };
                }
            }
        }
        for s in 0..w.segments as isize {
            let mut b = t.b.wrapping_offset(s * w.b_seg);
            let rows: [*const f32; MR] = a.map(|r| r.wrapping_offset(s * w.a_seg));
            if MR == 4 && NV == 3 && !MASK_B {
                // SAFETY: `acc` is `[[__m256; 3]; 4]` here (MR = 4, NV = 3); the loop reads
                // what the generic loop below reads (unmasked B rows of 24 floats).
                unsafe {
                    let acc = &mut *acc.as_mut_ptr().cast::<[[__m256; 3]; 4]>();
                    depth_loop_4x3(acc, &rows[..4], w.a_step, b, w.b_step, w.depth);
                }
                continue;
            }
            let mut off = 0isize;
            for _ in 0..w.depth {
                let mut bv = [_mm256_setzero_ps(); NV];
                for (j, v) in bv.iter_mut().enumerate() {
                    // SAFETY: each B row is readable for `8*NV` floats, or `cols` with the
                    // mask.
                    *v = unsafe {
                        if MASK_B && j == NV - 1 {
                            _mm256_maskload_ps(b.add(LANES * j), mask)
                        } else {
                            _mm256_loadu_ps(b.add(LANES * j))
                        }
                    };
                }
                for (i, r) in rows.iter().enumerate() {
                    // SAFETY: every row pointer addresses A at this segment and step.
                    let av = unsafe { _mm256_broadcast_ss(&*r.offset(off)) };
                    for (j, v) in bv.iter().enumerate() {
                        acc[i][j] = _mm256_fmadd_ps(av, *v, acc[i][j]);
                    }
                }
                b = b.wrapping_offset(w.b_step);
                off += w.a_step;
            }
        }
        if relu {
            // max(0, v) returns v when v is NaN (the second operand), like `relu_s`; and
            // -0.0 for -0.0, also like `relu_s`.
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    *v = _mm256_max_ps(_mm256_setzero_ps(), *v);
                }
            }
        }
        for (row, c) in acc.iter().zip(&c).take(valid) {
            for (j, v) in row.iter().enumerate() {
                let cj = c.wrapping_add(LANES * j);
                // SAFETY: row `g + i < rows` of C; full vectors lie inside the `cols` valid
                // columns, the last one is masked to them.
                unsafe {
                    if j == NV - 1 && last < LANES {
                        _mm256_maskstore_ps(cj, mask, *v);
                    } else {
                        _mm256_storeu_ps(cj, *v);
                    }
                }
            }
        }
    }
}
