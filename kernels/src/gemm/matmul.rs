//! bnconv's own GEMM for the convolution's skinny shapes: the loop nests and the packing around
//! the register tiles of [`crate::gemm::tile`].
//!
//! The seed network's GEMMs have a small output width (`Cout` = 4..76, or `9*Cin` for the data
//! gradient) and a long other side. Two products cover every convolution GEMM:
//! - [`matmul_packed`]: `C = A @ B` with `A` row-major and unpacked (im2col rows, or rows of `dy`)
//!   and `B` packed once per step into column panels ([`pack_panels`]): forward and data gradient.
//! - [`matmul_at_b`]: `C = A^T @ B` reducing over the long side, with neither operand packed:
//!   the weight gradient `cols^T @ dy`.
//!
//! Neither allocates; packing goes into a caller-owned buffer. Both are single-threaded: callers
//! split rows between threads, which never changes a result (each output element is reduced in
//! the same order whatever the split).

use crate::fuse::{Epilogue, Start};
use crate::gemm::tile::{dispatch, dispatch_b, strided, strided_mut, Tile, Walk, LANES, STRIP_MAX};
use crate::gemm::{MatMut, MatRef};
use crate::runtime::prefetch::prefetch_rows_l2;
use crate::runtime::task_log::ForEachTask;
use crate::simd::{active_isa, Isa};

/// Bytes of A a strip (or block) should occupy so that it stays in L1 while every panel passes
/// over it.
const L1_BUDGET: usize = 16 * 1024;

/// Rows of A handled together across all panels: as many as fit [`L1_BUDGET`] (at least 12),
/// a multiple of every tile height of the path (6, 4 and 3: 12; 24 for AVX-512's 8- and 12-row
/// tiles, whose cores have a 48 KiB L1, so twice the budget), at most [`STRIP_MAX`]. (Strips of
/// 12 rather than 6, and 12 rather than 18, let the 4-row tile run whole groups.)
fn strip_rows(isa: Isa, depth: usize) -> usize {
    let (budget, unit) = match isa {
        Isa::Avx512 => (2 * L1_BUDGET, 24),
        _ => (L1_BUDGET, 12),
    };
    (budget / (4 * depth.max(1)) / unit * unit).clamp(unit, STRIP_MAX)
}

/// Splits `n` columns into panels of 1-3 vectors, as few and as wide as possible:
/// yields `(first column, vectors)`.
pub fn panels(n: usize) -> impl Iterator<Item = (usize, usize)> {
    let vectors = n.div_ceil(LANES);
    let mut widths = [0usize; 3];
    // Three-vector panels, with the remainder as one 2-vector panel or (4 -> 2+2) two of them.
    let (threes, tail): (usize, &[usize]) = match (vectors, vectors % 3) {
        (0, _) => (0, &[]),
        (1, _) => (0, &[1]),
        (2, _) => (0, &[2]),
        (4, _) => (0, &[2, 2]),
        (_, 0) => (vectors / 3, &[]),
        (_, 1) => (vectors / 3 - 1, &[2, 2]),
        (_, _) => (vectors / 3, &[2]),
    };
    widths[..tail.len()].copy_from_slice(tail);
    let tail_len = tail.len();
    (0..threes)
        .map(|_| 3)
        .chain(widths.into_iter().take(tail_len))
        .scan(0usize, |col, nv| {
            let first = *col;
            *col += nv * LANES;
            Some((first, nv))
        })
}

/// Floats a packed `depth x n` operand takes (columns padded to whole vectors).
pub fn packed_len(depth: usize, n: usize) -> usize {
    depth * n.div_ceil(LANES) * LANES
}

/// Packs the `depth x n` matrix `B(p, j) = value(p, j)` into column panels: panel by panel, each
/// `depth` rows of `8 * nv` floats, zero-padded past `n`. The closure lets one routine pack `W`,
/// `W^T` or a gather of `W`'s rows (the convolution's live taps).
pub fn pack_panels(depth: usize, n: usize, value: impl Fn(usize, usize) -> f32, out: &mut [f32]) {
    assert_eq!(out.len(), packed_len(depth, n), "pack_panels: output size");
    let mut dst = out.iter_mut();
    for (first, nv) in panels(n) {
        for p in 0..depth {
            for j in first..first + nv * LANES {
                *dst.next().expect("sized above") = if j < n { value(p, j) } else { 0.0 };
            }
        }
    }
}

/// [`pack_panels`] for the common case of a strided gather, without a closure call per element
/// (offsets are computed once per row and per column):
/// `B(p, j) = src[row_offset(p) + col_offset(j)]`, times `scale[j]` when given. Rows of `W`,
/// `W^T` and the convolution's live-tap and flipped-kernel views are all of this form.
///
/// # Panics
/// If an offset falls outside `src`.
pub fn pack_panels_gather(
    depth: usize,
    n: usize,
    src: &[f32],
    row_offset: impl Fn(usize) -> usize + Sync,
    col_offset: impl Fn(usize) -> usize + Sync,
    scale: Option<&[f32]>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    assert_eq!(out.len(), packed_len(depth, n), "pack_panels: output size");
    if let Some(s) = scale {
        assert_eq!(s.len(), n, "pack_panels: scale size");
    }
    let pack_panel = |first: usize, nv: usize, panel: &mut [f32]| {
        let width = nv * LANES;
        let valid = width.min(n - first);
        // Column offsets and scales of this panel, padded with zero-weight columns.
        let mut cols = [0usize; 3 * LANES];
        let mut factors = [0.0f32; 3 * LANES];
        for jj in 0..valid {
            cols[jj] = col_offset(first + jj);
            factors[jj] = scale.map_or(1.0, |s| s[first + jj]);
        }
        let last_col = cols[..valid].iter().copied().max().unwrap_or(0);
        for (p, row) in panel.chunks_exact_mut(width).enumerate() {
            let base = row_offset(p);
            assert!(
                base + last_col < src.len(),
                "pack_panels: offset {} outside {} floats",
                base + last_col,
                src.len()
            );
            let (row, pad) = row.split_at_mut(valid);
            for (dst, &col) in row.iter_mut().zip(&cols[..valid]) {
                // SAFETY: `base + col <= base + last_col < src.len()`, asserted above.
                *dst = unsafe { *src.get_unchecked(base + col) };
            }
            if scale.is_some() {
                for (dst, f) in row.iter_mut().zip(&factors) {
                    *dst *= f;
                }
            }
            pad.fill(0.0);
        }
    };
    // The leading 3-vector panels are all the same size: large packs do them in parallel (a
    // 2x2 layer's dense weights are ~47K floats, ~30 us on one thread).
    let threes = panels(n).take_while(|&(_, nv)| nv == 3).count();
    let head_len = if depth * n >= PARALLEL_PACK {
        threes * depth * 3 * LANES
    } else {
        0
    };
    let (head, mut rest) = out.split_at_mut(head_len);
    if !head.is_empty() {
        head.par_chunks_mut(depth * 3 * LANES)
            .enumerate()
            .for_each_task_in_scope(|(i, panel)| pack_panel(i * 3 * LANES, 3, panel));
    }
    for (first, nv) in panels(n).skip(head_len / (depth * 3 * LANES).max(1)) {
        let (this, tail) = rest.split_at_mut(depth * nv * LANES);
        pack_panel(first, nv, this);
        rest = tail;
    }
}

/// Packs of at least this many floats run their 3-vector panels in parallel.
const PARALLEL_PACK: usize = 16 * 1024;

/// `C[rows, n] = relu?(start + A[rows, depth] @ B)` with `B` packed by [`pack_panels`]
/// (`depth x n`): the [`Epilogue`]'s start and ReLU applied on the output tiles (its scale, if
/// any, must already be in the packed `B`).
pub fn matmul_packed(a: MatRef, packed: &[f32], c: MatMut, epilogue: Epilogue) {
    matmul_packed_on(active_isa(), a, packed, c, epilogue);
}

/// [`matmul_packed`] with the code path for `isa` (one this CPU runs).
pub(crate) fn matmul_packed_on(
    isa: Isa,
    a: MatRef,
    packed: &[f32],
    mut c: MatMut,
    epilogue: Epilogue,
) {
    let (rows, depth, n) = (a.rows(), a.cols(), c.cols());
    assert!(
        !a.is_transposed() && c.rows() == rows,
        "matmul_packed: A must be row-major and as tall as C"
    );
    if let Some(b) = epilogue.start.bias() {
        assert_eq!(b.len(), n, "matmul_packed: bias size");
    }
    assert!(
        epilogue.scale.is_none(),
        "matmul_packed: a scale belongs in the packed B"
    );
    assert_eq!(packed.len(), packed_len(depth, n), "matmul_packed: B size");
    if rows == 0 || n == 0 {
        return;
    }
    if depth == 0 {
        for row in 0..rows {
            for (j, v) in c.row(row).iter_mut().enumerate() {
                let kept = match epilogue.start {
                    Start::Bias(b) => b[j],
                    Start::Accumulate => *v,
                    Start::Zero => 0.0,
                };
                *v = if epilogue.relu {
                    crate::simd::relu_s(kept)
                } else {
                    kept
                };
            }
        }
        return;
    }
    let strip_rows = strip_rows(isa, depth);
    let (lda, ldc) = (a.ld(), c.ld());
    let (a, c) = (a.data(), c.data());
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_MAX],
        [std::ptr::null_mut(); STRIP_MAX],
    );
    for strip in (0..rows).step_by(strip_rows) {
        let strip_end = (strip + strip_rows).min(rows);
        let count = strip_end - strip;
        strided(
            a[strip * lda..].as_ptr(),
            lda as isize,
            &mut a_rows[..count],
        );
        strided_mut(c[strip * ldc..].as_mut_ptr(), ldc, &mut c_rows[..count]);
        for (first, nv) in panels(n) {
            let t = Tile::new(
                Walk::plain(depth, 1, (nv * LANES) as isize),
                &a_rows[..count],
                packed[depth * first..].as_ptr(),
                &c_rows[..count],
                first,
                (nv * LANES).min(n - first),
            )
            .with_epilogue(epilogue.on_tile(first));
            // SAFETY: `isa` runs on this CPU (callers' contract); rows `strip..strip_end` of A
            // are inside `a` (its view checked the span) for all `depth` steps; the panel holds
            // `depth` rows of `8*nv` floats; C's rows `strip..strip_end`, columns `first..first
            // + cols`, are inside `c` (its view checked the span) and `c` is exclusively
            // borrowed; a bias holds `n` floats (asserted), `cols` of them from `first`.
            unsafe { dispatch::<false>(isa, nv, &t) };
        }
    }
}

/// `C[k, n] (+)= A[depth, k]^T @ B[depth, n]`: `A` and `B` as stored, row-major and unpacked
/// (views, not transposed); each element of C is reduced over `p = 0..depth` in order (blocks of
/// rows pass over the whole of C in turn so that they are read from L1, and C carries the
/// running sums between blocks).
pub fn matmul_at_b(a: MatRef, b: MatRef, c: MatMut, accumulate: bool) {
    matmul_at_b_on(active_isa(), a, b, c, accumulate);
}

/// [`matmul_at_b`] with the code path for `isa` (one this CPU runs).
fn matmul_at_b_on(isa: Isa, a: MatRef, b: MatRef, mut c: MatMut, accumulate: bool) {
    let (depth, k, n) = (a.rows(), a.cols(), b.cols());
    assert!(
        !a.is_transposed()
            && !b.is_transposed()
            && b.rows() == depth
            && c.rows() == k
            && c.cols() == n,
        "matmul_at_b: shapes {depth}x{k} ^T @ {}x{n} into {}x{}",
        b.rows(),
        c.rows(),
        c.cols()
    );
    if k == 0 || n == 0 {
        return;
    }
    if depth == 0 {
        if !accumulate {
            for row in 0..k {
                c.row(row).fill(0.0);
            }
        }
        return;
    }
    let (lda, ldb, ldc) = (a.ld(), b.ld(), c.ld());
    let (a, b, c) = (a.data(), b.data(), c.data());
    let block_rows = 128;
    let (mut a_rows, mut c_rows) = (
        [std::ptr::null(); STRIP_MAX],
        [std::ptr::null_mut(); STRIP_MAX],
    );
    // Blocks outermost, so that every panel reuses a block of A while it is in cache, and the
    // next block is fetched while this one is computed ([`prefetch`]). Each element of C still
    // adds `p = 0..depth` in order.
    for block in (0..depth).step_by(block_rows) {
        let block_end = (block + block_rows).min(depth);
        let next = block_end..(block_end + block_rows).min(depth);
        prefetch_rows_l2(a, lda, k, next.clone());
        prefetch_rows_l2(b, ldb, n, next);
        for (first, nv) in panels(n) {
            // Rows of B whose full `8*nv`-float read stays inside `b` may be read unmasked: the
            // floats past `n` belong to the next row and only feed lanes that are never stored.
            // Masked loads are slow, so only the last few rows use them.
            let fits = (b.len() + 1).saturating_sub(first + nv * LANES);
            let unmasked_depth = fits.div_ceil(ldb).min(depth);
            let split = unmasked_depth.clamp(block, block_end);
            for (start, end, masked) in [(block, split, false), (split, block_end, true)] {
                if start == end {
                    continue;
                }
                for strip in (0..k).step_by(STRIP_MAX) {
                    let count = (k - strip).min(STRIP_MAX);
                    strided(a[start * lda + strip..].as_ptr(), 1, &mut a_rows[..count]);
                    strided_mut(c[strip * ldc..].as_mut_ptr(), ldc, &mut c_rows[..count]);
                    let t = Tile::new(
                        Walk::plain(end - start, lda as isize, ldb as isize),
                        &a_rows[..count],
                        b[start * ldb + first..].as_ptr(),
                        &c_rows[..count],
                        first,
                        (nv * LANES).min(n - first),
                    );
                    let t = if accumulate || start > 0 {
                        t.with_epilogue(Epilogue::accumulate())
                    } else {
                        t
                    };
                    // SAFETY: `isa` runs on this CPU (callers' contract); A(i, p) = a[(start +
                    // p)*lda + strip + i] with `strip + i < k` and `start + p < depth` is inside
                    // the span A's view checked. B row `p` is read for `8*nv` floats when `p <
                    // unmasked_depth` (inside `b` by construction of `fits`), else for `cols`
                    // floats (masked), inside the span B's view checked. C's rows `strip..strip +
                    // count`, columns `first..first + cols`, are inside `c`, which is
                    // exclusively borrowed.
                    unsafe { dispatch_b(isa, nv, masked, &t) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::sgemm_reference;
    use crate::testing::Pseudo;

    #[test]
    fn panels_cover_the_columns_with_few_wide_panels() {
        for n in 1..=100 {
            let list: Vec<(usize, usize)> = panels(n).collect();
            let covered: usize = list.iter().map(|p| p.1 * LANES).sum();
            assert_eq!(covered, n.div_ceil(LANES) * LANES, "n {n}");
            let mut col = 0;
            for &(first, nv) in &list {
                assert_eq!(first, col);
                assert!((1..=3).contains(&nv));
                col += nv * LANES;
            }
            assert!(list.iter().filter(|p| p.1 == 1).count() <= usize::from(n <= 8));
        }
    }

    /// Every ISA path against the f64 reference, on odd sizes that leave row and column tails.
    fn check_both_products(isa: Isa) {
        let mut rng = Pseudo::new(3);
        for &(rows, n, depth) in &[
            (1, 1, 1),
            (7, 5, 3),
            (13, 9, 17),
            (25, 20, 144),
            (64, 76, 648),
            (37, 33, 9),
            (11, 41, 2),
        ] {
            let lda = depth + 3;
            let ldc = n + 2;
            let a = rng.take(rows * lda);
            let b = rng.take(depth * n);
            let c0 = rng.take(rows * ldc);
            let mut packed = vec![0.0; packed_len(depth, n)];
            pack_panels(depth, n, |p, j| b[p * n + j], &mut packed);
            for accumulate in [false, true] {
                let (mut got, mut want) = (c0.clone(), c0.clone());
                let start = if accumulate {
                    Start::Accumulate
                } else {
                    Start::Zero
                };
                matmul_packed_on(
                    isa,
                    MatRef::new(&a, rows, depth, lda),
                    &packed,
                    MatMut::new(&mut got, rows, n, ldc),
                    Epilogue {
                        start,
                        ..Epilogue::NONE
                    },
                );
                let beta = if accumulate { 1.0 } else { 0.0 };
                sgemm_reference(
                    1.0,
                    MatRef::new(&a, rows, depth, lda),
                    MatRef::new(&b, depth, n, n),
                    beta,
                    MatMut::new(&mut want, rows, n, ldc),
                );
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (depth as f32 + 1.0);
                    assert!(
                        (g - w).abs() <= tol,
                        "{isa:?} packed {rows}x{n}x{depth} at {i}: {g} vs {w}"
                    );
                }
            }
            // A^T @ B: A is depth x k (k = rows here), B depth x n.
            let (k, ldb) = (rows, n + 1);
            let at = rng.take(depth * (k + 2));
            let bt = rng.take(depth * ldb);
            let c1 = rng.take(k * ldc);
            for accumulate in [false, true] {
                let (mut got, mut want) = (c1.clone(), c1.clone());
                matmul_at_b_on(
                    isa,
                    MatRef::new(&at, depth, k, k + 2),
                    MatRef::new(&bt, depth, n, ldb),
                    MatMut::new(&mut got, k, n, ldc),
                    accumulate,
                );
                let beta = if accumulate { 1.0 } else { 0.0 };
                sgemm_reference(
                    1.0,
                    MatRef::new(&at, depth, k, k + 2).t(),
                    MatRef::new(&bt, depth, n, ldb),
                    beta,
                    MatMut::new(&mut want, k, n, ldc),
                );
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (depth as f32 + 1.0);
                    assert!(
                        (g - w).abs() <= tol,
                        "{isa:?} at_b {k}x{n}x{depth} at {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The ISA is passed explicitly (not forced globally), so tests running in parallel never
    /// see a GEMM change code path halfway.
    #[test]
    fn simd_and_scalar_tiles_match_the_reference_on_odd_sizes() {
        for isa in crate::testing::tested_paths() {
            check_both_products(isa);
        }
    }

    /// The AVX-512 tiles (every height `tile_height` picks) equal the portable tiles bitwise.
    #[test]
    #[cfg_attr(bnconv_cpu_lacks_avx512, ignore = "this CPU has no AVX-512")]
    fn avx512_tiles_equal_the_portable_tiles_bitwise() {
        tiles_equal_the_portable_tiles_bitwise(Isa::Avx512);
    }

    /// The AVX2 tiles (every height `tile_height` picks) equal the portable tiles bitwise.
    #[test]
    #[cfg_attr(bnconv_cpu_lacks_avx2, ignore = "this CPU has no AVX2 and FMA")]
    fn avx2_tiles_equal_the_portable_tiles_bitwise() {
        tiles_equal_the_portable_tiles_bitwise(Isa::Avx2);
    }

    /// `isa`'s tiles equal the portable tiles bitwise: the same fused multiply-adds in the same
    /// order per element. Row counts cover every height's tail, widths every panel kind and
    /// masked last vector; both products, every start, with and without ReLU.
    fn tiles_equal_the_portable_tiles_bitwise(isa: Isa) {
        crate::testing::require_isa(isa);
        let mut rng = Pseudo::new(11);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for rows in (1..=26).chain([47, 96, 101]) {
            for &(n, depth) in &[
                (4, 3),
                (8, 9),
                (12, 17),
                (16, 5),
                (20, 30),
                (24, 7),
                (33, 11),
                (44, 13),
                (76, 6),
            ] {
                let a = rng.take(rows * depth);
                let b = rng.take(depth * n);
                let bias = rng.take(n);
                let c0 = rng.take(rows * n);
                let mut packed = vec![0.0; packed_len(depth, n)];
                pack_panels(depth, n, |p, j| b[p * n + j], &mut packed);
                for (start, relu) in [
                    (Start::Zero, false),
                    (Start::Accumulate, true),
                    (Start::Bias(&bias), true),
                ] {
                    let run = |isa| {
                        let mut c = c0.clone();
                        matmul_packed_on(
                            isa,
                            MatRef::new(&a, rows, depth, depth),
                            &packed,
                            MatMut::new(&mut c, rows, n, n),
                            Epilogue {
                                start,
                                scale: None,
                                relu,
                            },
                        );
                        bits(&c)
                    };
                    assert!(
                        run(isa) == run(Isa::Portable),
                        "{isa:?} packed {rows}x{n}x{depth} {start:?}"
                    );
                }
                // C[depth, n] = A^T @ B with A = `a` seen as rows x depth, B = `c0` (rows x n).
                for accumulate in [false, true] {
                    let run = |isa| {
                        let mut c = Pseudo::new(12).take(depth * n);
                        matmul_at_b_on(
                            isa,
                            MatRef::new(&a, rows, depth, depth),
                            MatRef::new(&c0, rows, n, n),
                            MatMut::new(&mut c, depth, n, n),
                            accumulate,
                        );
                        bits(&c)
                    };
                    assert!(
                        run(isa) == run(Isa::Portable),
                        "{isa:?} at_b {depth}x{n}x{rows}"
                    );
                }
            }
        }
    }

    /// The ReLU post-op equals a ReLU pass after the product, bitwise, NaN included.
    #[test]
    fn relu_on_the_tile_equals_a_relu_pass() {
        let mut rng = Pseudo::new(4);
        let (rows, n, depth) = (29, 21, 13);
        let mut a = rng.take(rows * depth);
        a[5] = f32::NAN;
        let b = rng.take(depth * n);
        let mut packed = vec![0.0; packed_len(depth, n)];
        pack_panels(depth, n, |p, j| b[p * n + j], &mut packed);
        for isa in crate::testing::tested_paths() {
            let (mut plain, mut fused) = (vec![0.0; rows * n], vec![0.0; rows * n]);
            matmul_packed_on(
                isa,
                MatRef::new(&a, rows, depth, depth),
                &packed,
                MatMut::new(&mut plain, rows, n, n),
                Epilogue::NONE,
            );
            matmul_packed_on(
                isa,
                MatRef::new(&a, rows, depth, depth),
                &packed,
                MatMut::new(&mut fused, rows, n, n),
                Epilogue::NONE.with_relu(true),
            );
            let want: Vec<u32> = plain
                .iter()
                .map(|v| crate::simd::relu_s(*v).to_bits())
                .collect();
            let got: Vec<u32> = fused.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{isa:?}");
            assert!(
                fused[..n].iter().all(|v| v.is_nan()),
                "NaN row passes through"
            );
        }
    }

    /// The gathering packer equals the closure packer, with and without a scale, on widths
    /// that leave panel tails.
    #[test]
    fn gather_packing_equals_closure_packing() {
        for &(depth, n) in &[(1, 1), (5, 7), (9, 20), (13, 44), (4, 76)] {
            let src: Vec<f32> = (0..depth * n * 3).map(|v| v as f32 * 0.5 - 3.0).collect();
            let scale: Vec<f32> = (0..n).map(|j| 1.0 + j as f32 * 0.25).collect();
            // A transposed view with a row stride of 3: B(p, j) = src[j * 3 * depth + 3 * p].
            let (row, col) = (|p: usize| 3 * p, |j: usize| j * 3 * depth);
            for scaled in [false, true] {
                let mut want = vec![f32::NAN; packed_len(depth, n)];
                pack_panels(
                    depth,
                    n,
                    |p, j| src[row(p) + col(j)] * if scaled { scale[j] } else { 1.0 },
                    &mut want,
                );
                let mut got = vec![f32::NAN; packed_len(depth, n)];
                let s = scaled.then_some(&scale[..]);
                pack_panels_gather(depth, n, &src, row, col, s, &mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{depth}x{n} scaled {scaled}");
            }
        }
    }

    /// Starting the tiles from a bias equals accumulating onto rows filled with it, bitwise,
    /// for both ISAs, on widths that leave a masked last vector.
    #[test]
    fn bias_on_the_tile_equals_filled_rows() {
        let mut rng = Pseudo::new(6);
        for &(rows, n, depth) in &[(29, 21, 13), (7, 4, 5), (12, 76, 30)] {
            let a = rng.take(rows * depth);
            let b = rng.take(depth * n);
            let bias = rng.take(n);
            let mut packed = vec![0.0; packed_len(depth, n)];
            pack_panels(depth, n, |p, j| b[p * n + j], &mut packed);
            for isa in crate::testing::tested_paths() {
                for relu in [false, true] {
                    let run = |c: &mut [f32], start: Start| {
                        matmul_packed_on(
                            isa,
                            MatRef::new(&a, rows, depth, depth),
                            &packed,
                            MatMut::new(c, rows, n, n),
                            Epilogue {
                                start,
                                scale: None,
                                relu,
                            },
                        )
                    };
                    let mut filled: Vec<f32> =
                        bias.iter().copied().cycle().take(rows * n).collect();
                    run(&mut filled, Start::Accumulate);
                    let mut tiled = vec![f32::NAN; rows * n];
                    run(&mut tiled, Start::Bias(&bias));
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&tiled), bits(&filled), "{isa:?} {rows}x{n}x{depth}");
                }
            }
        }
    }

    #[test]
    fn transposed_packing_packs_the_transpose() {
        let (depth, n) = (3, 10);
        let w: Vec<f32> = (0..depth * n).map(|v| v as f32).collect(); // w is n x depth
        let mut a = vec![0.0; packed_len(depth, n)];
        pack_panels(depth, n, |p, j| w[j * depth + p], &mut a);
        let wt: Vec<f32> = (0..depth)
            .flat_map(|p| (0..n).map(move |j| (j * depth + p) as f32))
            .collect();
        let mut b = vec![0.0; packed_len(depth, n)];
        pack_panels(depth, n, |p, j| wt[p * n + j], &mut b);
        assert_eq!(a, b);
    }
}
