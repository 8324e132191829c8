//! Single-precision GEMM, row-major, BLAS-style arguments, behind a run-time backend switch.
//!
//! The default backend is bnconv's own GEMM ([`crate::gemm::matmul`]), tiled for the convolution's
//! skinny shapes. `matrixmultiply` (built without its AVX-512 kernel, slower than its AVX2 kernel
//! on these shapes, see docs/performance/) and, with the cargo feature `blas`, the system OpenBLAS are
//! alternatives selectable at run time, to compare against. All run single-threaded here: callers
//! split the work across the rayon pool.

#[cfg(feature = "blas")]
mod blas;
pub mod matmul;
pub(crate) mod tile;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Calls into matrixmultiply with a non-empty product. Each one allocates (and frees) a packing
/// buffer inside matrixmultiply: the only heap traffic of a training step, counted so a test can
/// prove every other buffer is reused.
static MATRIXMULTIPLY_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many non-empty GEMMs matrixmultiply has run in this process (see [`sgemm`]).
pub fn matrixmultiply_calls() -> u64 {
    MATRIXMULTIPLY_CALLS.load(Ordering::Relaxed)
}

/// Which library runs the GEMMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmBackend {
    /// bnconv's own tiles (pure Rust; always available): no allocation after warm-up.
    #[default]
    Native,
    /// `matrixmultiply` (pure Rust; always available).
    MatrixMultiply,
    /// The system OpenBLAS through CBLAS (cargo feature `blas`).
    #[cfg(feature = "blas")]
    Blas,
}

impl GemmBackend {
    /// Every backend compiled into this build.
    pub fn available() -> &'static [GemmBackend] {
        &[
            GemmBackend::Native,
            GemmBackend::MatrixMultiply,
            #[cfg(feature = "blas")]
            GemmBackend::Blas,
        ]
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GemmBackend::Native => "bnconv",
            GemmBackend::MatrixMultiply => "matrixmultiply",
            #[cfg(feature = "blas")]
            GemmBackend::Blas => "blas",
        }
    }

    /// Parses a name from [`GemmBackend::name`]; the error says which names this build knows.
    pub fn from_name(name: &str) -> Result<GemmBackend, String> {
        Self::available()
            .iter()
            .copied()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::available().iter().map(|b| b.name()).collect();
                let hint = if name == "blas" {
                    " (this build lacks the `blas` cargo feature)"
                } else {
                    ""
                };
                format!(
                    "unknown GEMM backend {name:?}{hint}; this build has: {}",
                    known.join(", ")
                )
            })
    }
}

impl fmt::Display for GemmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Elements a row-major matrix view of `rows` x `cols` with row stride `ld` spans.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `C[m,n] = alpha * op(A) @ op(B) + beta * C`, all row-major.
///
/// `op(A)` is `A` stored `m x k` (row stride `lda >= k`), or with `trans_a` its transpose, `A`
/// stored `k x m` (`lda >= m`); likewise `B` (`k x n` or, transposed, `n x k`). When `beta == 0`,
/// `C` is overwritten without being read (NaNs already in `C` do not leak through).
///
/// # Panics
/// If a slice is too short for the dimensions and strides given: that is a bug in the caller.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    backend: GemmBackend,
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
    assert!(
        lda >= a_cols && a.len() >= span(a_rows, a_cols, lda),
        "sgemm: A is {} floats, needs {a_rows}x{a_cols} with lda {lda}",
        a.len()
    );
    assert!(
        ldb >= b_cols && b.len() >= span(b_rows, b_cols, ldb),
        "sgemm: B is {} floats, needs {b_rows}x{b_cols} with ldb {ldb}",
        b.len()
    );
    assert!(
        ldc >= n && c.len() >= span(m, n, ldc),
        "sgemm: C is {} floats, needs {m}x{n} with ldc {ldc}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    match backend {
        GemmBackend::Native
            if alpha == 1.0 && (beta == 0.0 || beta == 1.0) && !(trans_a && trans_b) =>
        {
            native_sgemm(
                trans_a,
                trans_b,
                m,
                n,
                k,
                a,
                lda,
                b,
                ldb,
                beta == 1.0,
                c,
                ldc,
            )
        }
        GemmBackend::Native | GemmBackend::MatrixMultiply => {
            if k > 0 {
                MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
            }
            let (rsa, csa) = if trans_a { (1, lda) } else { (lda, 1) };
            let (rsb, csb) = if trans_b { (1, ldb) } else { (ldb, 1) };
            // SAFETY: the asserts above prove every element the strides address lies inside `a`,
            // `b` and `c`; `c` is exclusively borrowed, so it aliases neither input.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    beta,
                    c.as_mut_ptr(),
                    ldc as isize,
                    1,
                );
            }
        }
        #[cfg(feature = "blas")]
        GemmBackend::Blas => {
            crate::gemm::blas::init();
            crate::gemm::blas::sgemm(
                trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
            );
        }
    }
}

thread_local! {
    /// Each thread's packing buffer for [`native_sgemm`]: grown on first use, then reused.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// bnconv's GEMM for the products the layers use (`alpha = 1`, `beta` 0 or 1, not both
/// transposed): `A^T B` runs unpacked, the others pack `op(B)` into a per-thread buffer.
#[allow(clippy::too_many_arguments)]
fn native_sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    use crate::fuse::Epilogue;
    use crate::gemm::matmul::{matmul_at_b, matmul_packed, pack_panels_gather, packed_len};
    if trans_a {
        matmul_at_b(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
        return;
    }
    PACKED_B.with_borrow_mut(|packed| {
        packed.resize(packed_len(k, n), 0.0);
        if trans_b {
            pack_panels_gather(k, n, b, |p| p, |j| j * ldb, None, packed);
        } else {
            pack_panels_gather(k, n, b, |p| p * ldb, |j| j, None, packed);
        }
        let epilogue = if accumulate {
            Epilogue::accumulate()
        } else {
            Epilogue::NONE
        };
        matmul_packed(m, n, k, a, lda, packed, c, ldc, epilogue);
    });
}

/// Plain triple loop, accumulated in f64: the reference the tests hold every backend to.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_reference(
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
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                let av = if trans_a {
                    a[p * lda + i]
                } else {
                    a[i * lda + p]
                };
                let bv = if trans_b {
                    b[j * ldb + p]
                } else {
                    b[p * ldb + j]
                };
                acc += av as f64 * bv as f64;
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[i * ldc + j] as f64
            };
            c[i * ldc + j] = (alpha as f64 * acc + old) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Every backend, every transpose pair, on odd shapes; with `alpha = 1` and `beta` 0 or 1
    /// (the products the layers use, which bnconv's GEMM runs itself) and with a general
    /// `alpha`/`beta` (which it hands to matrixmultiply).
    #[test]
    fn every_backend_matches_the_reference_on_odd_shapes_and_transposes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let shapes = [
            (7, 5, 3),
            (1, 1, 1),
            (33, 17, 65),
            (64, 76, 684),
            (64, 100, 76),
            (5, 9, 0),
        ];
        for &backend in GemmBackend::available() {
            for &(m, n, k) in &shapes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, 2.0)] {
                        let lda = if ta { m } else { k } + 2;
                        let ldb = if tb { k } else { n } + 1;
                        let ldc = n + 3;
                        let a = random((if ta { k } else { m }).max(1) * lda, &mut rng);
                        let b = random((if tb { n } else { k }).max(1) * ldb, &mut rng);
                        let c0 = random(m * ldc, &mut rng);
                        let (mut got, mut want) = (c0.clone(), c0.clone());
                        sgemm(
                            backend, ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut got, ldc,
                        );
                        sgemm_reference(
                            ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut want, ldc,
                        );
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                "{backend} m{m} n{n} k{k} ta{ta} tb{tb} a{alpha} b{beta} at {i}: \
                                 {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_the_output() {
        for &backend in GemmBackend::available() {
            let a = [1.0, 2.0];
            let b = [3.0, 4.0];
            let mut c = [f32::NAN];
            sgemm(
                backend, false, false, 1, 1, 2, 1.0, &a, 2, &b, 1, 0.0, &mut c, 1,
            );
            assert_eq!(c[0], 11.0, "{backend}");
        }
    }

    #[test]
    fn backend_names_round_trip_and_unknown_names_explain_themselves() {
        for &b in GemmBackend::available() {
            assert_eq!(GemmBackend::from_name(b.name()), Ok(b));
        }
        let err = GemmBackend::from_name("mkl").unwrap_err();
        assert!(err.contains("matrixmultiply"), "{err}");
    }

    #[test]
    #[should_panic(expected = "sgemm: A")]
    fn short_slices_are_caught_before_any_unsafe_code() {
        let mut c = [0.0; 4];
        sgemm(
            GemmBackend::MatrixMultiply,
            false,
            false,
            2,
            2,
            2,
            1.0,
            &[1.0; 3],
            2,
            &[1.0; 4],
            2,
            0.0,
            &mut c,
            2,
        );
    }
}
