//! Optional sgemm backend on the system OpenBLAS (cargo feature `blas`).
//!
//! The default backend is `matrixmultiply`, which needs nothing outside crates.io; this module
//! lets the same row-major GEMM run on the machine's OpenBLAS instead, to compare the two and to
//! use OpenBLAS where it is faster.
//!
//! Linking: `cblas-sys` only declares the CBLAS functions. The library itself comes from
//! `blas-src` (feature `openblas`) -> `openblas-src` (features `system`, `cblas`), whose build
//! script asks pkg-config for the installed `openblas` (Debian: `apt-get install libopenblas-dev
//! pkg-config`; at run time `libopenblas0-pthread` and `libgfortran5`) and emits `-lopenblas`.
//! Nothing is downloaded and OpenBLAS is not built from source. rustc drops dependencies that no
//! code names, and their `-l` flags with them: without the `use blas_src as _;` below, linking
//! fails with undefined `cblas_sgemm`.
//!
//! Threads: bnconv parallelises over batch chunks itself, so OpenBLAS's own thread pool would
//! only oversubscribe the cores. [`init`] sets it to one thread (once per process), and
//! [`sgemm`] calls [`init`] before its first BLAS call, so every call runs single-threaded. A
//! single-threaded OpenBLAS may be called from several threads at once.

use std::os::raw::c_int;
use std::sync::Once;

use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};

// Reference blas-src so that its `-lopenblas` reaches the linker.
use blas_src as _;

extern "C" {
    /// OpenBLAS extension (not CBLAS): sets the number of threads OpenBLAS uses per call.
    fn openblas_set_num_threads(num_threads: c_int);
}

static INIT: Once = Once::new();

/// Makes OpenBLAS single-threaded (bnconv parallelises over batch chunks itself); idempotent,
/// cheap after the first call (std::sync::Once).
pub(crate) fn init() {
    INIT.call_once(|| {
        // SAFETY: `openblas_set_num_threads` takes a plain int and has no other preconditions;
        // it is declared with OpenBLAS's C signature `void openblas_set_num_threads(int)`.
        // `Once` makes this run once, before any sgemm of ours (which calls `init` first).
        unsafe { openblas_set_num_threads(1) };
    });
}

/// Converts a dimension or stride to a BLAS `int`, panicking with `what` on overflow.
fn blas_int(value: usize, what: &str) -> c_int {
    match c_int::try_from(value) {
        Ok(v) => v,
        Err(_) => panic!("sgemm: {what} = {value} does not fit in a BLAS int (i32)"),
    }
}

/// Elements a row-major `rows x cols` matrix with leading dimension `ld` spans, after checking
/// `ld >= cols`; panics with a message naming `what` on a bad stride or overflow.
fn required_len(what: &str, rows: usize, cols: usize, ld: usize) -> usize {
    assert!(
        ld >= cols,
        "sgemm: leading dimension of {what} is {ld}, less than its {cols} columns"
    );
    if rows == 0 || cols == 0 {
        return 0;
    }
    (rows - 1)
        .checked_mul(ld)
        .and_then(|x| x.checked_add(cols))
        .unwrap_or_else(|| panic!("sgemm: {what} ({rows} x {cols}, ld {ld}) overflows usize"))
}

/// C[m,n] = alpha * op(A) @ op(B) + beta * C, all row-major; op(A) is A^T when `trans_a` (A
/// stored k x m, lda >= m) else A (m x k, lda >= k); likewise B; ldc >= n.
///
/// As in BLAS, `beta == 0` overwrites C without reading it (NaNs in C do not propagate).
/// Panics if a slice is too short for its dims and stride, or a dim or stride exceeds `i32`.
#[allow(clippy::too_many_arguments)] // mirrors the BLAS signature
pub(crate) fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
    let a_len = required_len("A", a_rows, a_cols, lda);
    let b_len = required_len("B", b_rows, b_cols, ldb);
    let c_len = required_len("C", m, n, ldc);
    assert!(
        a.len() >= a_len,
        "sgemm: A has {} elements, needs {a_len} ({a_rows} x {a_cols}, lda {lda})",
        a.len()
    );
    assert!(
        b.len() >= b_len,
        "sgemm: B has {} elements, needs {b_len} ({b_rows} x {b_cols}, ldb {ldb})",
        b.len()
    );
    assert!(
        c.len() >= c_len,
        "sgemm: C has {} elements, needs {c_len} ({m} x {n}, ldc {ldc})",
        c.len()
    );

    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // op(A) @ op(B) is the zero matrix: C = beta * C (BLAS would also require lda >= 1).
        for row in c.chunks_mut(ldc).take(m) {
            for x in &mut row[..n] {
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        return;
    }

    let (m_i, n_i, k_i) = (blas_int(m, "m"), blas_int(n, "n"), blas_int(k, "k"));
    let (lda_i, ldb_i, ldc_i) = (
        blas_int(lda, "lda"),
        blas_int(ldb, "ldb"),
        blas_int(ldc, "ldc"),
    );
    let op = |t: bool| {
        if t {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };

    init();
    // SAFETY: m, n, k >= 1 here and each fits in a c_int. The asserts above checked that every
    // leading dimension covers its matrix's row length (so CBLAS's lda/ldb/ldc >= max(1, cols)
    // rules hold) and that `a`, `b` and `c` hold at least (rows - 1) * ld + cols elements, which
    // is exactly the extent CBLAS reads (A, B) or reads and writes (C) in row-major layout. `c`
    // is a unique borrow, so it overlaps neither `a` nor `b`. OpenBLAS keeps no pointer after
    // returning and, set single-threaded by `init`, may be called from several threads at once.
    unsafe {
        cblas_sgemm(
            CBLAS_LAYOUT::CblasRowMajor,
            op(trans_a),
            op(trans_b),
            m_i,
            n_i,
            k_i,
            alpha,
            a.as_ptr(),
            lda_i,
            b.as_ptr(),
            ldb_i,
            beta,
            c.as_mut_ptr(),
            ldc_i,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) without a RNG dependency.
    fn fill(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Runs both implementations on one case with padded strides (`pad` extra per row) and
    /// compares the whole C buffer, so writes into the padding would be caught too.
    #[allow(clippy::too_many_arguments)]
    fn check(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        beta: f32,
        pad: usize,
    ) {
        let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (a_cols + pad, b_cols + 2 * pad, n + 3 * pad);
        let a = fill(a_rows * lda, 1);
        let b = fill(b_rows * ldb, 2);
        let c0 = fill(m * ldc, 3);
        let mut got = c0.clone();
        let mut want = c0;
        sgemm(
            trans_a, trans_b, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut got, ldc,
        );
        crate::gemm::sgemm_reference(
            trans_a, trans_b, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut want, ldc,
        );
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "trans_a={trans_a} trans_b={trans_b} m={m} n={n} k={k} pad={pad}: \
                 C[{idx}] = {g}, want {w}"
            );
        }
    }

    #[test]
    fn odd_sizes_all_transposes_padded_strides() {
        for (m, n, k) in [(7, 5, 3), (1, 1, 1), (13, 1, 17), (1, 9, 4), (33, 31, 65)] {
            for trans_a in [false, true] {
                for trans_b in [false, true] {
                    for pad in [0, 3] {
                        check(trans_a, trans_b, m, n, k, 1.0, 0.0, pad);
                        check(trans_a, trans_b, m, n, k, -0.5, 1.5, pad);
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let (m, n, k) = (3, 4, 2);
        let a = fill(m * k, 4);
        let b = fill(k * n, 5);
        let mut c = vec![f32::NAN; m * n];
        sgemm(false, false, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n);
        assert!(c.iter().all(|x| x.is_finite()), "{c:?}");
    }

    #[test]
    fn zero_dims() {
        // k == 0: C = beta * C, padding untouched.
        let mut c = vec![2.0f32; 2 * 4];
        sgemm(false, true, 2, 3, 0, 1.0, &[], 0, &[], 0, 0.5, &mut c, 4);
        assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0]);
        let mut c = vec![f32::NAN; 3];
        sgemm(true, false, 1, 3, 0, 1.0, &[], 1, &[], 3, 0.0, &mut c, 3);
        assert_eq!(c, [0.0; 3]);
        // m == 0 or n == 0: nothing to do, C untouched, empty slices are fine.
        let mut c = vec![7.0f32; 4];
        sgemm(
            false,
            false,
            0,
            4,
            5,
            1.0,
            &[],
            5,
            &fill(20, 6),
            4,
            0.0,
            &mut [],
            4,
        );
        sgemm(
            false,
            false,
            1,
            0,
            5,
            1.0,
            &fill(5, 7),
            5,
            &[],
            0,
            0.0,
            &mut c[..0],
            0,
        );
        assert_eq!(c, [7.0; 4]);
    }

    #[test]
    #[should_panic(expected = "sgemm: B has 14 elements, needs 15")]
    fn short_b_panics() {
        let mut c = vec![0.0f32; 2 * 5];
        sgemm(
            false, false, 2, 5, 3, 1.0, &[0.0; 6], 3, &[0.0; 14], 5, 0.0, &mut c, 5,
        );
    }

    #[test]
    #[should_panic(expected = "sgemm: leading dimension of A is 2, less than its 3 columns")]
    fn small_lda_panics() {
        let mut c = vec![0.0f32; 4];
        sgemm(
            true, false, 3, 1, 2, 1.0, &[0.0; 6], 2, &[0.0; 2], 1, 0.0, &mut c, 1,
        );
    }

    #[test]
    #[should_panic(expected = "does not fit in a BLAS int")]
    fn huge_dim_panics() {
        // lda = 2^31 > i32::MAX is valid for a 1 x 1 A (its one row needs one element).
        let mut c = vec![0.0f32; 1];
        sgemm(
            false,
            false,
            1,
            1,
            1,
            1.0,
            &[1.0],
            1usize << 31,
            &[1.0],
            1,
            0.0,
            &mut c,
            1,
        );
    }

    #[test]
    fn concurrent_calls_agree_with_reference() {
        init();
        let (m, n, k) = (37, 29, 41);
        let a = fill(m * k, 8);
        let b = fill(n * k, 9);
        let mut want = vec![0.0f32; m * n];
        crate::gemm::sgemm_reference(false, true, m, n, k, 1.0, &a, k, &b, k, 0.0, &mut want, n);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let mut c = vec![0.0f32; m * n];
                        sgemm(false, true, m, n, k, 1.0, &a, k, &b, k, 0.0, &mut c, n);
                        for (g, w) in c.iter().zip(&want) {
                            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn init_sets_one_thread() {
        extern "C" {
            fn openblas_get_num_threads() -> c_int;
        }
        init();
        init();
        // SAFETY: OpenBLAS extension with no arguments and no preconditions.
        assert_eq!(unsafe { openblas_get_num_threads() }, 1);
    }
}
