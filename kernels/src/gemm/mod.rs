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
mod view;

pub use view::{MatMut, MatRef};

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

/// `C = alpha * A @ B + beta * C` on `backend`, with `A` (`m x k`), `B` (`k x n`) and `C`
/// (`m x n`) as views: [`MatRef::t`] makes an operand its storage's transpose. When `beta == 0`,
/// `C` is overwritten without being read (NaNs already in `C` do not leak through).
///
/// # Panics
/// If the shapes do not chain (`A.cols != B.rows`, or `C` is not `A.rows x B.cols`): a bug in
/// the caller. (Each view checked its storage when it was made.)
pub fn sgemm(backend: GemmBackend, alpha: f32, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    assert!(
        b.rows() == k && c.rows() == m && c.cols() == n,
        "sgemm: shapes {m}x{k} @ {}x{n} into {}x{}",
        b.rows(),
        c.rows(),
        c.cols()
    );
    if m == 0 || n == 0 {
        return;
    }
    match backend {
        GemmBackend::Native
            if alpha == 1.0
                && (beta == 0.0 || beta == 1.0)
                && !(a.is_transposed() && b.is_transposed()) =>
        {
            native_sgemm(a, b, beta == 1.0, c)
        }
        GemmBackend::Native | GemmBackend::MatrixMultiply => {
            if k > 0 {
                MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
            }
            let ((rsa, csa), (rsb, csb), ldc) = (a.strides(), b.strides(), c.ld());
            // SAFETY: each view checked when it was made that every element its shape and
            // strides address lies inside its slice; `c` is exclusively borrowed, so it aliases
            // neither input.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a.data().as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.data().as_ptr(),
                    rsb as isize,
                    csb as isize,
                    beta,
                    c.data().as_mut_ptr(),
                    ldc as isize,
                    1,
                );
            }
        }
        #[cfg(feature = "blas")]
        GemmBackend::Blas => {
            crate::gemm::blas::init();
            crate::gemm::blas::sgemm(alpha, a, b, beta, c);
        }
    }
}

thread_local! {
    /// Each thread's packing buffer for [`native_sgemm`]: grown on first use, then reused.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// bnconv's GEMM for the products the layers use (`alpha = 1`, `beta` 0 or 1, not both
/// transposed): `A^T B` runs unpacked, the others pack `op(B)` into a per-thread buffer.
fn native_sgemm(a: MatRef, b: MatRef, accumulate: bool, c: MatMut) {
    use crate::fuse::Epilogue;
    use crate::gemm::matmul::{matmul_at_b, matmul_packed, pack_panels_gather, packed_len};
    if a.is_transposed() {
        matmul_at_b(a.t(), b, c, accumulate);
        return;
    }
    let (k, n, ldb) = (b.rows(), b.cols(), b.ld());
    PACKED_B.with_borrow_mut(|packed| {
        packed.resize(packed_len(k, n), 0.0);
        if b.is_transposed() {
            pack_panels_gather(k, n, b.data(), |p| p, |j| j * ldb, None, packed);
        } else {
            pack_panels_gather(k, n, b.data(), |p| p * ldb, |j| j, None, packed);
        }
        let epilogue = if accumulate {
            Epilogue::accumulate()
        } else {
            Epilogue::NONE
        };
        matmul_packed(a, packed, c, epilogue);
    });
}

/// Plain triple loop, accumulated in f64: the reference the tests hold every backend to
/// (`C = alpha * A @ B + beta * C`, as [`sgemm`]).
pub fn sgemm_reference(alpha: f32, a: MatRef, b: MatRef, beta: f32, mut c: MatMut) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    assert!(
        b.rows() == k && c.rows() == m && c.cols() == n,
        "sgemm_reference: shapes"
    );
    for i in 0..m {
        let row = c.row(i);
        for (j, out) in row.iter_mut().enumerate() {
            let acc: f64 = (0..k)
                .map(|p| a.get(i, p) as f64 * b.get(p, j) as f64)
                .sum();
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * *out as f64
            };
            *out = (alpha as f64 * acc + old) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Pseudo;

    /// The `rows x cols` operand: stored so with row stride `ld`, or (`transposed`) the
    /// transpose of a `cols x rows` storage with that stride.
    fn op(data: &[f32], rows: usize, cols: usize, ld: usize, transposed: bool) -> MatRef<'_> {
        if transposed {
            MatRef::new(data, cols, rows, ld).t()
        } else {
            MatRef::new(data, rows, cols, ld)
        }
    }

    /// Every backend, every transpose pair, on odd shapes; with `alpha = 1` and `beta` 0 or 1
    /// (the products the layers use, which bnconv's GEMM runs itself) and with a general
    /// `alpha`/`beta` (which it hands to matrixmultiply).
    #[test]
    fn every_backend_matches_the_reference_on_odd_shapes_and_transposes() {
        let mut rng = Pseudo::new(7);
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
                        let a = rng.take((if ta { k } else { m }).max(1) * lda);
                        let b = rng.take((if tb { n } else { k }).max(1) * ldb);
                        let c0 = rng.take(m * ldc);
                        let (mut got, mut want) = (c0.clone(), c0.clone());
                        let a = op(&a, m, k, lda, ta);
                        let b = op(&b, k, n, ldb, tb);
                        let c = |c| MatMut::new(c, m, n, ldc);
                        sgemm(backend, alpha, a, b, beta, c(&mut got));
                        sgemm_reference(alpha, a, b, beta, c(&mut want));
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
            let (a, b) = (MatRef::dense(&a, 1, 2), MatRef::dense(&b, 2, 1));
            sgemm(backend, 1.0, a, b, 0.0, MatMut::dense(&mut c, 1, 1));
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
    #[should_panic(expected = "sgemm: shapes 2x2 @ 3x2")]
    fn shapes_that_do_not_chain_are_caught_before_any_unsafe_code() {
        let mut c = [0.0; 4];
        let (a, b) = ([1.0; 4], [1.0; 6]);
        sgemm(
            GemmBackend::MatrixMultiply,
            1.0,
            MatRef::dense(&a, 2, 2),
            MatRef::dense(&b, 3, 2),
            0.0,
            MatMut::dense(&mut c, 2, 2),
        );
    }
}
