//! GEMM register tiles: one microkernel per instruction set, chosen by the caller from
//! [`crate::simd::active_isa`], with a plain scalar twin that the tests compare it with.
//!
//! A tile computes `C[i][j] (+)= sum_p A(i, p) * B(p, j)` for `i < MR`, `j < 8 * NV`, where `A` is
//! read through two strides (between tile rows, and along the reduction) and `B` row `p` is
//! `8 * NV` contiguous floats. The same tile therefore runs `cols @ W` (A rows are im2col rows,
//! B is packed) and `cols^T @ dy` (A "rows" are im2col columns, B rows are rows of `dy`), with no
//! packing of the big operand. Each output element is reduced in order `p = 0, 1, ...`, whatever
//! the tiling, so results do not depend on how the caller splits the output between threads.

use crate::simd::{relu_s, Isa};

/// Lanes per vector in the tile layout (AVX2 `ymm`; the scalar twin uses the same layout).
pub const LANES: usize = 8;

/// Most rows a tile kind has.
pub const MAX_ROWS: usize = 12;

/// Most rows a caller hands one [`Tile`] call (its row-pointer arrays live on the stack).
pub(crate) const STRIP_MAX: usize = 96;

/// A strip of tiles' operands: `rows` output rows computed `MR` at a time against one panel of
/// B, in a single call (the per-call set-up and the tile function's entry and exit are paid once
/// per strip, not once per `MR` rows). Pointers and strides are in floats.
///
/// The reduction runs over `segments` segments of `depth` steps: step `p` of segment `s` reads
/// `A(i, s, p) = a[i] + s*a_seg + p*a_step` and the B row at `b + s*b_seg + p*b_step`. One segment
/// is a plain GEMM; three segments with `a[i]` pointing into a padded image are a 3x3
/// convolution without im2col (one segment per kernel row).
#[derive(Clone, Copy)]
pub(crate) struct Tile<'r> {
    pub segments: usize,
    /// Reduction steps per segment.
    pub depth: usize,
    /// Row `i`'s first element of A, for `i < rows`. (A last group of fewer than `MR` rows
    /// repeats its last row; the copies are computed and dropped.)
    pub a: &'r [*const f32],
    pub a_step: isize,
    pub a_seg: isize,
    pub b: *const f32,
    pub b_step: isize,
    pub b_seg: isize,
    /// Row `i` of C starts at `c[i] + c_col`, for `i < rows`.
    pub c: &'r [*mut f32],
    pub c_col: usize,
    /// Rows to compute (at least 1; `a` and `c` hold at least this many).
    pub rows: usize,
    /// Valid columns (`1..=8*NV`): columns past it are not written to C and, with a masked B,
    /// not read from B.
    pub cols: usize,
    /// Start from C's values instead of zero, so that reducing a long sum block by block gives
    /// bitwise the result of one pass.
    pub accumulate: bool,
    /// When not null (and `accumulate` is false), every row starts from this row of `cols`
    /// floats instead of zero: a bias added on the output tile rather than by a pass that fills
    /// C first (same arithmetic, so bitwise the same result).
    pub bias: *const f32,
    /// Apply ReLU (NaN passes through) to the tile before storing it: a post-op riding on the
    /// output tile instead of another pass over memory.
    pub relu: bool,
}

/// Fills `out[..rows]` with `base + i * stride` (row pointers of a strided matrix).
pub(crate) fn strided<T>(base: *const T, stride: isize, out: &mut [*const T]) {
    for (i, p) in out.iter_mut().enumerate() {
        *p = base.wrapping_offset(i as isize * stride);
    }
}

/// Fills `out` with `base + i * stride` (output row pointers of a strided matrix).
pub(crate) fn strided_mut<T>(base: *mut T, stride: usize, out: &mut [*mut T]) {
    for (i, p) in out.iter_mut().enumerate() {
        *p = base.wrapping_add(i * stride);
    }
}

/// Row `i` of group `g` (rows `g..g + MR`), the last valid row standing in past `rows`.
#[inline(always)]
fn group_rows<T: Copy, const MR: usize>(rows: &[T], g: usize, valid_end: usize) -> [T; MR] {
    std::array::from_fn(|i| rows[(g + i).min(valid_end - 1)])
}

/// The checks every tile entry makes before its `unsafe` body: row pointers for every row, and
/// (debug builds) a tile kind within bounds and columns within its width.
fn check_tile<const MR: usize, const NV: usize>(t: &Tile) {
    assert!(
        t.rows >= 1 && t.a.len() >= t.rows && t.c.len() >= t.rows,
        "tile: rows"
    );
    debug_assert!(MR <= MAX_ROWS);
    debug_assert!(t.cols >= 1 && t.cols <= LANES * NV);
}

/// Runs one `MR x 8*NV` tile with the code path for `isa`. `MASK_B`: B rows hold only `cols`
/// valid floats (read the last vector with a mask); otherwise B rows are readable for `8 * NV`
/// floats (zero-padded, or followed by more data whose lanes are never stored).
///
/// # Safety
/// `isa` must be one this CPU runs (from [`crate::simd::active_isa`] or a check like it). For
/// every `i < MR`, segment `s` and step `p`, `a[i] + s*a_seg + p*a_step` must be readable; B rows
/// must be readable for `8*NV` floats (`cols` when `MASK_B`); C must be writable at
/// `c[i] + c_col + j` for `i < rows`, `j < cols`, and must not overlap A or B; a non-null `bias`
/// must be readable for `cols` floats.
#[inline]
pub(crate) unsafe fn run_tile<const MR: usize, const NV: usize, const MASK_B: bool>(
    isa: Isa,
    t: &Tile,
) {
    check_tile::<MR, NV>(t);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => {
            // SAFETY: the caller vouches for AVX2+FMA and for the memory contract.
            unsafe { avx2::tile::<MR, NV, MASK_B>(t) }
        }
        // SAFETY: forwarded from the caller.
        _ => unsafe { tile_scalar::<MR, NV, MASK_B>(t) },
    }
}

/// Runs one `MR x 8*NV` tile with 16-lane AVX-512 vectors, `ZV = ceil(NV / 2)` of them per row
/// (an odd last 8-lane vector rides in the low half of a `zmm`). Same contract and the same
/// reduction order, with FMA, as the AVX2 tile: bitwise the same results.
///
/// # Safety
/// AVX-512 F must be available ([`Isa::Avx512`] active or checked); otherwise as [`run_tile`].
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) unsafe fn run_tile_avx512<
    const MR: usize,
    const NV: usize,
    const ZV: usize,
    const MASK_B: bool,
>(
    t: &Tile,
) {
    check_tile::<MR, NV>(t);
    debug_assert!(ZV == NV.div_ceil(2));
    // SAFETY: forwarded from the caller.
    unsafe { avx512::tile::<MR, NV, ZV, MASK_B>(t) }
}

/// The plain reference tile: same contract, same reduction order, `a * b + c` without FMA.
///
/// # Safety
/// As [`run_tile`].
pub(crate) unsafe fn tile_scalar<const MR: usize, const NV: usize, const MASK_B: bool>(t: &Tile) {
    let width = LANES * NV;
    let read_cols = if MASK_B { t.cols } else { width };
    for g in (0..t.rows).step_by(MR) {
        let valid = (t.rows - g).min(MR);
        let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
        let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
        let mut acc = [[0.0f32; 32]; MR];
        if !t.bias.is_null() && !t.accumulate {
            for row in acc.iter_mut() {
                for (j, v) in row.iter_mut().enumerate().take(t.cols) {
                    // SAFETY: the bias row is readable for `cols` floats.
                    *v = unsafe { *t.bias.add(j) };
                }
            }
        }
        if t.accumulate {
            for (i, row) in acc.iter_mut().enumerate().take(valid) {
                for (j, v) in row.iter_mut().enumerate().take(t.cols) {
                    // SAFETY: row `g + i < rows`, `j < cols` are inside C's contract.
                    *v = unsafe { *c[i].add(j) };
                }
            }
        }
        for (i, row) in acc.iter_mut().enumerate().take(valid) {
            for s in 0..t.segments as isize {
                for p in 0..t.depth as isize {
                    // SAFETY: inside A's and B's contract (`j < read_cols`).
                    let av = unsafe { *a[i].offset(s * t.a_seg + p * t.a_step) };
                    let b = t.b.wrapping_offset(s * t.b_seg + p * t.b_step);
                    for (j, c) in row.iter_mut().enumerate().take(read_cols) {
                        *c += av * unsafe { *b.add(j) };
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(valid) {
            for (j, v) in row.iter().enumerate().take(t.cols) {
                let v = if t.relu { relu_s(*v) } else { *v };
                // SAFETY: row `g + i < rows`, `j < cols` are inside C's contract.
                unsafe { *c[i].add(j) = v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
    /// registers exactly, and the compiler's version of this loop spilled and shuffled them
    /// (3x slower than the 3 x 3 tile). Same FMAs in the same order as the generic loop, so the
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
        // The bias row, loaded once for the strip.
        let mut start = [_mm256_setzero_ps(); NV];
        if !t.bias.is_null() && !t.accumulate {
            for (j, v) in start.iter_mut().enumerate() {
                // SAFETY: the bias row is readable for `cols` floats: full vectors lie inside
                // them, the last is masked to them.
                *v = unsafe {
                    if j == NV - 1 && last < LANES {
                        _mm256_maskload_ps(t.bias.add(LANES * j), mask)
                    } else {
                        _mm256_loadu_ps(t.bias.add(LANES * j))
                    }
                };
            }
        }
        for g in (0..t.rows).step_by(MR) {
            let valid = (t.rows - g).min(MR);
            let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
            let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
            let mut acc = [start; MR];
            if t.accumulate {
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
            for s in 0..t.segments as isize {
                let mut b = t.b.wrapping_offset(s * t.b_seg);
                let rows: [*const f32; MR] = a.map(|r| r.wrapping_offset(s * t.a_seg));
                if MR == 4 && NV == 3 && !MASK_B {
                    // SAFETY: `acc` is `[[__m256; 3]; 4]` here (MR = 4, NV = 3); the loop reads
                    // what the generic loop below reads (unmasked B rows of 24 floats).
                    unsafe {
                        let acc = &mut *acc.as_mut_ptr().cast::<[[__m256; 3]; 4]>();
                        depth_loop_4x3(acc, &rows[..4], t.a_step, b, t.b_step, t.depth);
                    }
                    continue;
                }
                let mut off = 0isize;
                for _ in 0..t.depth {
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
                    b = b.wrapping_offset(t.b_step);
                    off += t.a_step;
                }
            }
            if t.relu {
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
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
    pub(super) unsafe fn tile<
        const MR: usize,
        const NV: usize,
        const ZV: usize,
        const MASK_B: bool,
    >(
        t: &Tile,
    ) {
        // Lanes of vector `j` that C holds (`cols`), and that B rows may be read for (`8*NV`
        // floats, or `cols` when masked). Masked loads never touch the lanes they leave out.
        let store: [__mmask16; ZV] =
            std::array::from_fn(|j| lanes(t.cols.saturating_sub(WIDE * j)));
        let read: [__mmask16; ZV] = if MASK_B {
            store
        } else {
            std::array::from_fn(|j| lanes((LANES * NV).saturating_sub(WIDE * j)))
        };
        // The bias row, loaded once for the strip.
        let mut start = [_mm512_setzero_ps(); ZV];
        if !t.bias.is_null() && !t.accumulate {
            for (j, v) in start.iter_mut().enumerate() {
                // SAFETY: the bias row is readable for `cols` floats; the load is masked to them.
                *v = unsafe { _mm512_maskz_loadu_ps(store[j], t.bias.add(WIDE * j)) };
            }
        }
        for g in (0..t.rows).step_by(MR) {
            let valid = (t.rows - g).min(MR);
            let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
            let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
            let mut acc = [start; MR];
            if t.accumulate {
                for (row, c) in acc.iter_mut().zip(&c).take(valid) {
                    for (j, v) in row.iter_mut().enumerate() {
                        // SAFETY: as for the stores below.
                        *v = unsafe { _mm512_maskz_loadu_ps(store[j], c.add(WIDE * j)) };
                    }
                }
            }
            for s in 0..t.segments as isize {
                let mut b = t.b.wrapping_offset(s * t.b_seg);
                let rows: [*const f32; MR] = a.map(|r| r.wrapping_offset(s * t.a_seg));
                let mut off = 0isize;
                for _ in 0..t.depth {
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
                    b = b.wrapping_offset(t.b_step);
                    off += t.a_step;
                }
            }
            if t.relu {
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
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::testing::pseudo;

    /// The 4 x 3 tile (its reduction loop in assembly) equals the 3 x 3 tile (intrinsics)
    /// bitwise: the same FMAs in the same order per element. Rows cover every 4-row tail;
    /// segments, strides, a partly filled last vector, every start and the ReLU post-op too.
    #[test]
    fn four_row_assembly_tile_equals_the_three_row_tile_bitwise() {
        if !Isa::Avx2.supported() {
            eprintln!(
                "SKIPPED four_row_assembly_tile_equals_the_three_row_tile_bitwise: this CPU has no AVX2+FMA"
            );
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for rows in 1..=14 {
            for &(segments, depth, a_step, cols) in
                &[(1, 1, 1, 24), (1, 17, 3, 20), (3, 14, 2, 17), (2, 0, 1, 24)]
            {
                let (a_seg, b_step) = (depth as isize * a_step + 5, 24 + 3);
                let b_seg = depth as isize * b_step + 7;
                let a_row = segments as isize * a_seg + 1;
                let a = pseudo(rows * a_row as usize, 1);
                let b = pseudo((segments * b_seg as usize).max(1) + 24, 2);
                let bias = pseudo(cols, 3);
                let ldc = cols + 2;
                let c0 = pseudo(rows * ldc, 4);
                let a_rows: Vec<*const f32> = (0..rows)
                    .map(|i| a[i * a_row as usize..].as_ptr())
                    .collect();
                for (accumulate, with_bias, relu) in [
                    (false, false, false),
                    (true, false, true),
                    (false, true, true),
                ] {
                    let run = |tall: bool| {
                        let mut c = c0.clone();
                        let c_rows: Vec<*mut f32> =
                            (0..rows).map(|i| c[i * ldc..].as_mut_ptr()).collect();
                        let t = Tile {
                            segments,
                            depth,
                            a: &a_rows,
                            a_step,
                            a_seg,
                            b: b.as_ptr(),
                            b_step,
                            b_seg,
                            c: &c_rows,
                            c_col: 1,
                            rows,
                            cols,
                            accumulate,
                            bias: if with_bias {
                                bias.as_ptr()
                            } else {
                                std::ptr::null()
                            },
                            relu,
                        };
                        // SAFETY: AVX2 checked above; every A read lies inside `a` (row `i`
                        // reads up to `(segments - 1) * a_seg + (depth - 1) * a_step` floats
                        // on, less than `a_row`), every B row inside `b` for 24 floats, C rows
                        // inside `c` for `1 + cols <= ldc` floats, the bias `cols` floats.
                        unsafe {
                            if tall {
                                run_tile::<4, 3, false>(Isa::Avx2, &t)
                            } else {
                                run_tile::<3, 3, false>(Isa::Avx2, &t)
                            }
                        }
                        bits(&c)
                    };
                    assert_eq!(
                        run(true),
                        run(false),
                        "rows {rows} segments {segments} depth {depth} cols {cols} accumulate {accumulate} bias {with_bias} relu {relu}"
                    );
                }
            }
        }
    }
}
