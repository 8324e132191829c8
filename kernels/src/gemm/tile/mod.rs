//! GEMM register tiles: one microkernel per instruction set, chosen by the caller from
//! [`crate::simd::active_isa`], all giving the bits of the plain reference tile (`tile_scalar`),
//! which the tests hold each of them to.
//!
//! A tile computes `C[i][j] (+)= sum_p A(i, p) * B(p, j)` for `i < MR`, `j < 8 * NV`, where `A` is
//! read through two strides (between tile rows, and along the reduction) and `B` row `p` is
//! `8 * NV` contiguous floats. The same tile therefore runs `cols @ W` (A rows are im2col rows,
//! B is packed) and `cols^T @ dy` (A "rows" are im2col columns, B rows are rows of `dy`), with no
//! packing of the big operand. Each output element is reduced in order `p = 0, 1, ...`, whatever
//! the tiling, so results do not depend on how the caller splits the output between threads.

use crate::fuse::{Epilogue, Start};
use crate::simd::Isa;

/// Lanes per vector in the tile layout (AVX2 `ymm`; the portable and reference tiles use the same
/// layout).
pub const LANES: usize = 8;

/// Most rows a tile kind has.
pub const MAX_ROWS: usize = 12;

/// Most rows a caller hands one [`Tile`] call (its row-pointer arrays live on the stack).
pub(crate) const STRIP_MAX: usize = 96;

/// How a tile's reduction walks its operands, in floats: `segments` segments of `depth` steps;
/// step `p` of segment `s` reads `A(i, s, p) = a[i] + s*a_seg + p*a_step` and the B row at
/// `b + s*b_seg + p*b_step`. One segment is a plain GEMM; three segments with `a[i]` pointing
/// into a padded image are a 3x3 convolution without im2col (one segment per kernel row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walk {
    pub segments: usize,
    /// Reduction steps per segment.
    pub depth: usize,
    pub a_step: isize,
    pub a_seg: isize,
    pub b_step: isize,
    pub b_seg: isize,
}

impl Walk {
    /// One segment of `depth` steps: a plain GEMM.
    pub(crate) fn plain(depth: usize, a_step: isize, b_step: isize) -> Walk {
        Walk {
            segments: 1,
            depth,
            a_step,
            a_seg: 0,
            b_step,
            b_seg: 0,
        }
    }

    /// `segments` segments of `depth` steps; `a` and `b` are each operand's `(step, segment)`
    /// strides.
    pub(crate) fn segmented(
        segments: usize,
        depth: usize,
        (a_step, a_seg): (isize, isize),
        (b_step, b_seg): (isize, isize),
    ) -> Walk {
        Walk {
            segments,
            depth,
            a_step,
            a_seg,
            b_step,
            b_seg,
        }
    }
}

/// A strip of tiles' operands: `rows` output rows computed `MR` at a time against one panel of
/// B, in a single call (the per-call set-up and the tile function's entry and exit are paid once
/// per strip, not once per `MR` rows). Built by [`Tile::new`], then [`Tile::with_epilogue`].
#[derive(Clone, Copy)]
pub(crate) struct Tile<'r> {
    pub walk: Walk,
    /// Row `i`'s first element of A, for `i < rows`. (A last group of fewer than `MR` rows
    /// repeats its last row; the copies are computed and dropped.)
    pub a: &'r [*const f32],
    pub b: *const f32,
    /// Row `i` of C starts at `c[i] + c_col`, for `i < rows`.
    pub c: &'r [*mut f32],
    pub c_col: usize,
    /// Rows to compute (at least 1): `a.len()`, which is `c.len()`.
    pub rows: usize,
    /// Valid columns (`1..=8*NV`): columns past it are not written to C and, with a masked B,
    /// not read from B.
    pub cols: usize,
    /// What the tile starts from (zero, C's own values, or a bias row of `cols` floats from
    /// this panel's first column) and whether it applies ReLU before storing; never a scale
    /// ([`Epilogue::on_tile`]).
    pub epilogue: Epilogue<'r>,
}

impl<'r> Tile<'r> {
    /// A strip of `a.len()` rows (`c` has as many) and `cols` columns from C column `c_col`, with
    /// nothing fused (`C = A @ B`).
    pub(crate) fn new(
        walk: Walk,
        a: &'r [*const f32],
        b: *const f32,
        c: &'r [*mut f32],
        c_col: usize,
        cols: usize,
    ) -> Tile<'r> {
        assert_eq!(a.len(), c.len(), "tile: as many A rows as C rows");
        Tile {
            walk,
            a,
            b,
            c,
            c_col,
            rows: a.len(),
            cols,
            epilogue: Epilogue::NONE,
        }
    }

    /// This strip with `epilogue` ([`Epilogue::on_tile`] of the panel's first column).
    pub(crate) fn with_epilogue(self, epilogue: Epilogue<'r>) -> Tile<'r> {
        Tile { epilogue, ..self }
    }

    /// Whether the tile starts from C's own values.
    #[inline(always)]
    pub(crate) fn accumulates(&self) -> bool {
        matches!(self.epilogue.start, Start::Accumulate)
    }

    /// The bias row (`cols` floats), or null.
    #[inline(always)]
    pub(crate) fn bias_ptr(&self) -> *const f32 {
        self.epilogue
            .start
            .bias()
            .map_or(std::ptr::null(), <[f32]>::as_ptr)
    }
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
    assert!(
        t.epilogue.scale.is_none() && t.epilogue.start.bias().is_none_or(|b| b.len() >= t.cols),
        "tile: epilogue"
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
        _ => unsafe { portable::tile::<MR, NV, MASK_B>(t) },
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

/// The reference tile, which defines the bits of every tile: each element starts from zero, its
/// bias or C's value, then adds `A(i, p) * B(p, j)` for `p = 0, 1, ...` (segment by segment) with
/// one fused multiply-add (`f32::mul_add`: rounded once) per step, then ReLU. The AVX2, AVX-512
/// and portable tiles (and any later one, e.g. NEON) must give exactly these bits: a tile that
/// reorders its reduction (split accumulators, a tree) changes this function first, and the
/// portable tile with it, so that every CPU keeps computing the same numbers. The generated
/// tests of `table.rs` hold every tile to it bitwise.
///
/// # Safety
/// As [`run_tile`].
#[cfg(test)]
pub(crate) unsafe fn tile_scalar<const MR: usize, const NV: usize, const MASK_B: bool>(t: &Tile) {
    let width = LANES * NV;
    let read_cols = if MASK_B { t.cols } else { width };
    for g in (0..t.rows).step_by(MR) {
        let valid = (t.rows - g).min(MR);
        let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
        let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
        let mut acc = [[0.0f32; 32]; MR];
        if let Start::Bias(bias) = t.epilogue.start {
            for row in acc.iter_mut() {
                row[..t.cols].copy_from_slice(&bias[..t.cols]);
            }
        }
        if t.accumulates() {
            for (i, row) in acc.iter_mut().enumerate().take(valid) {
                for (j, v) in row.iter_mut().enumerate().take(t.cols) {
                    // SAFETY: row `g + i < rows`, `j < cols` are inside C's contract.
                    *v = unsafe { *c[i].add(j) };
                }
            }
        }
        for (i, row) in acc.iter_mut().enumerate().take(valid) {
            let w = t.walk;
            for s in 0..w.segments as isize {
                for p in 0..w.depth as isize {
                    // SAFETY: inside A's and B's contract (`j < read_cols`).
                    let av = unsafe { *a[i].offset(s * w.a_seg + p * w.a_step) };
                    let b = t.b.wrapping_offset(s * w.b_seg + p * w.b_step);
                    for (j, c) in row.iter_mut().enumerate().take(read_cols) {
                        *c = av.mul_add(unsafe { *b.add(j) }, *c);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(valid) {
            for (j, v) in row.iter().enumerate().take(t.cols) {
                let v = if t.epilogue.relu {
                    crate::simd::relu_s(*v)
                } else {
                    *v
                };
                // SAFETY: row `g + i < rows`, `j < cols` are inside C's contract.
                unsafe { *c[i].add(j) = v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use table::{dispatch, dispatch_b};

#[cfg(target_arch = "x86_64")]
mod avx512;
