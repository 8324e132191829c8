//! Optional sgemm backend on the system OpenBLAS (cargo feature `blas`).
//!
//! The default backend is bnconv's own GEMM ([`crate::gemm::matmul`]), and `matrixmultiply` the
//! library alternative that needs nothing outside crates.io; this module lets the same
//! row-major GEMM run on the machine's OpenBLAS instead, to compare with it.
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

use crate::gemm::{MatMut, MatRef};

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

/// `C = alpha * A @ B + beta * C` on OpenBLAS, the views' transposes passed as CBLAS
/// transposes ([`crate::gemm::sgemm`] has checked that the shapes chain).
///
/// As in BLAS, `beta == 0` overwrites C without reading it (NaNs in C do not propagate).
/// Panics if a dimension or stride exceeds `i32`.
pub(crate) fn sgemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    debug_assert!(b.rows() == k && c.rows() == m && c.cols() == n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // op(A) @ op(B) is the zero matrix: C = beta * C (BLAS would also require lda >= 1).
        for i in 0..m {
            for x in c.row(i) {
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        return;
    }

    let (m_i, n_i, k_i) = (blas_int(m, "m"), blas_int(n, "n"), blas_int(k, "k"));
    let (lda_i, ldb_i, ldc_i) = (
        blas_int(a.ld(), "lda"),
        blas_int(b.ld(), "ldb"),
        blas_int(c.ld(), "ldc"),
    );
    let op = |t: bool| {
        if t {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };

    init();
    // SAFETY: m, n, k >= 1 here and each fits in a c_int. Each view checked when it was made
    // that its row stride covers its storage's rows (so CBLAS's lda/ldb/ldc >= max(1, cols)
    // rules hold) and that its slice holds (rows - 1) * ld + cols elements of that storage,
    // which is exactly the extent CBLAS reads (A, B) or reads and writes (C) in row-major
    // layout. `c` is a unique borrow, so it overlaps neither `a` nor `b`. OpenBLAS keeps no
    // pointer after returning and, set single-threaded by `init`, may be called from several
    // threads at once.
    unsafe {
        cblas_sgemm(
            CBLAS_LAYOUT::CblasRowMajor,
            op(a.is_transposed()),
            op(b.is_transposed()),
            m_i,
            n_i,
            k_i,
            alpha,
            a.data().as_ptr(),
            lda_i,
            b.data().as_ptr(),
            ldb_i,
            beta,
            c.data().as_mut_ptr(),
            ldc_i,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo as fill;

    /// One product's shape: `op(A)` is m x k, `op(B)` k x n; each stored row has `pad` (A), `2 *
    /// pad` (B) or `3 * pad` (C) floats of padding.
    #[derive(Clone, Copy)]
    struct Case {
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        pad: usize,
    }

    /// Runs both implementations on one case with padded strides and compares the whole C
    /// buffer, so writes into the padding would be caught too.
    fn check(case: Case, alpha: f32, beta: f32) {
        let Case {
            trans_a,
            trans_b,
            m,
            n,
            k,
            pad,
        } = case;
        let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (a_cols + pad, b_cols + 2 * pad, n + 3 * pad);
        let a = fill(a_rows * lda, 1);
        let b = fill(b_rows * ldb, 2);
        let c0 = fill(m * ldc, 3);
        let mut got = c0.clone();
        let mut want = c0;
        let view = |data, rows, cols, ld, t: bool| {
            let stored = MatRef::new(data, rows, cols, ld);
            if t {
                stored.t()
            } else {
                stored
            }
        };
        let a = view(&a, a_rows, a_cols, lda, trans_a);
        let b = view(&b, b_rows, b_cols, ldb, trans_b);
        sgemm(alpha, a, b, beta, MatMut::new(&mut got, m, n, ldc));
        crate::gemm::sgemm_reference(alpha, a, b, beta, MatMut::new(&mut want, m, n, ldc));
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
                        let case = Case {
                            trans_a,
                            trans_b,
                            m,
                            n,
                            k,
                            pad,
                        };
                        check(case, 1.0, 0.0);
                        check(case, -0.5, 1.5);
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
        let (a, b) = (MatRef::dense(&a, m, k), MatRef::dense(&b, k, n));
        sgemm(1.0, a, b, 0.0, MatMut::dense(&mut c, m, n));
        assert!(c.iter().all(|x| x.is_finite()), "{c:?}");
    }

    #[test]
    fn zero_dims() {
        // k == 0: C = beta * C, padding untouched.
        let mut c = vec![2.0f32; 2 * 4];
        let (a, b) = (MatRef::new(&[], 2, 0, 0), MatRef::new(&[], 3, 0, 0).t());
        sgemm(1.0, a, b, 0.5, MatMut::new(&mut c, 2, 3, 4));
        assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0]);
        let mut c = vec![f32::NAN; 3];
        let (a, b) = (MatRef::new(&[], 0, 1, 1).t(), MatRef::new(&[], 0, 3, 3));
        sgemm(1.0, a, b, 0.0, MatMut::dense(&mut c, 1, 3));
        assert_eq!(c, [0.0; 3]);
        // m == 0 or n == 0: nothing to do, C untouched, empty slices are fine.
        let mut c = vec![7.0f32; 4];
        let b = fill(20, 6);
        let (a, b) = (MatRef::new(&[], 0, 5, 5), MatRef::new(&b, 5, 4, 4));
        sgemm(1.0, a, b, 0.0, MatMut::new(&mut [], 0, 4, 4));
        let a = fill(5, 7);
        let (a, b) = (MatRef::new(&a, 1, 5, 5), MatRef::new(&[], 5, 0, 0));
        sgemm(1.0, a, b, 0.0, MatMut::new(&mut c[..0], 1, 0, 0));
        assert_eq!(c, [7.0; 4]);
    }

    #[test]
    #[should_panic(expected = "does not fit in a BLAS int")]
    fn huge_dim_panics() {
        // lda = 2^31 > i32::MAX is valid for a 1 x 1 A (its one row needs one element).
        let mut c = vec![0.0f32; 1];
        let (a, b) = (
            MatRef::new(&[1.0], 1, 1, 1usize << 31),
            MatRef::dense(&[1.0], 1, 1),
        );
        sgemm(1.0, a, b, 0.0, MatMut::dense(&mut c, 1, 1));
    }

    #[test]
    fn concurrent_calls_agree_with_reference() {
        init();
        let (m, n, k) = (37, 29, 41);
        let a = fill(m * k, 8);
        let b = fill(n * k, 9);
        let mut want = vec![0.0f32; m * n];
        let (a, b) = (MatRef::dense(&a, m, k), MatRef::dense(&b, n, k).t());
        crate::gemm::sgemm_reference(1.0, a, b, 0.0, MatMut::dense(&mut want, m, n));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let mut c = vec![0.0f32; m * n];
                        sgemm(1.0, a, b, 0.0, MatMut::dense(&mut c, m, n));
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
