//! The portable register tile: the AVX2 tile's loop in plain Rust on arrays of eight lanes, with
//! the fused multiply-add of [`crate::simd::fused`], so that it gives the x86 tiles' bits on any
//! CPU (the reduction order of [`super::tile_scalar`]).

use super::{group_rows, Tile, LANES};
use crate::simd::fused::Panel;
use crate::simd::relu_s;

/// # Safety
/// The memory contract of [`super::run_tile`] (any CPU).
#[inline(always)]
pub(super) unsafe fn tile<const MR: usize, const NV: usize, const MASK_B: bool>(t: &Tile) {
    // Readable floats of a B row: all `8 * NV`, or `cols` when masked (the rest read as 0, as a
    // masked load gives them).
    let read = if MASK_B { t.cols } else { LANES * NV };
    let (accumulate, relu, w) = (t.accumulates(), t.epilogue.relu, t.walk);
    // The bias row, loaded once for the strip (its lanes past `cols` stay 0, never stored).
    let mut start = [[0.0f32; LANES]; NV];
    if let Some(bias) = t.epilogue.start.bias() {
        for (v, &x) in start.as_flattened_mut().iter_mut().zip(&bias[..t.cols]) {
            *v = x;
        }
    }
    for g in (0..t.rows).step_by(MR) {
        let valid = (t.rows - g).min(MR);
        let a: [*const f32; MR] = group_rows(t.a, g, t.rows);
        let c: [*mut f32; MR] = group_rows(t.c, g, t.rows).map(|p| p.wrapping_add(t.c_col));
        let mut acc = [start; MR];
        if accumulate {
            for (row, c) in acc.iter_mut().zip(&c).take(valid) {
                for (j, v) in row.as_flattened_mut()[..t.cols].iter_mut().enumerate() {
                    // SAFETY: row `g + i < rows` of C, column `j < cols` (C's contract).
                    *v = unsafe { *c.add(j) };
                }
            }
        }
        for s in 0..w.segments as isize {
            let mut b = t.b.wrapping_offset(s * w.b_seg);
            let rows: [*const f32; MR] = a.map(|r| r.wrapping_offset(s * w.a_seg));
            let mut off = 0isize;
            for _ in 0..w.depth {
                let mut row = [[0.0f32; LANES]; NV];
                if read == LANES * NV {
                    // SAFETY: B rows are readable for `8 * NV` floats (unmasked contract).
                    row = unsafe { b.cast::<[[f32; LANES]; NV]>().read_unaligned() };
                } else {
                    for (j, v) in row.as_flattened_mut()[..read].iter_mut().enumerate() {
                        // SAFETY: B rows are readable for `cols` floats (masked contract).
                        *v = unsafe { *b.add(j) };
                    }
                }
                let panel = Panel::new(row);
                for (acc, r) in acc.iter_mut().zip(&rows) {
                    // SAFETY: every row pointer addresses A at this segment and step.
                    panel.mul_add_into(unsafe { *r.offset(off) }, acc);
                }
                b = b.wrapping_offset(w.b_step);
                off += w.a_step;
            }
        }
        for (row, c) in acc.iter().zip(&c).take(valid) {
            for (j, v) in row.as_flattened()[..t.cols].iter().enumerate() {
                let v = if relu { relu_s(*v) } else { *v };
                // SAFETY: row `g + i < rows` of C, column `j < cols` (C's contract).
                unsafe { *c.add(j) = v };
            }
        }
    }
}
