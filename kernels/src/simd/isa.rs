//! Which instruction set the kernels run: detected once, or forced (tests, `BNCONV_ISA`).

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction set a multiversioned kernel runs with.
///
/// Every path gives bitwise the same results, on any CPU: that is a promise of the crate, not an
/// accident of this CPU. A path added later (e.g. NEON tiles on aarch64, which today runs
/// [`Isa::Portable`]) must keep it: reduce each output element in the reference tile's order
/// (`gemm::tile::tile_scalar`: one fused multiply-add per step, rounded once), use a fused
/// multiply-add exactly where that tile has one and none in the element-wise kernels (plain IEEE
/// adds and multiplies, lanes summed in lane order), and join the tests that hold every path to
/// the portable path's bits: the tile table's generated tests, the kernels' tests over
/// `testing::tested_paths()`, and `tests/isa_equivalence.rs` (a training run's
/// `parameters_sha256`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F (x86_64, detected at run time, with AVX2 and FMA): 16-lane GEMM tiles.
    Avx512,
    /// AVX2 and FMA (x86_64, detected at run time).
    Avx2,
    /// What the build target guarantees (SSE2 on x86_64, NEON on aarch64): the reference the
    /// other paths' bits are held to.
    Portable,
}

impl Isa {
    /// Every code path, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The code path named `name` (as [`Isa::name`] spells it).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU runs the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::Avx2.supported() && std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU runs, best first.
    pub fn supported_all() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.supported()).collect()
    }

    /// Whether the element-wise kernels may run their AVX2+FMA build (true for AVX-512 too).
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx2)
    }

    /// Whether an element-wise kernel given this path runs its AVX2+FMA build: the path asks for
    /// it and this CPU has AVX2 and FMA (checked here, so any `Isa` value is safe to pass; the
    /// portable build gives the same bits).
    #[inline]
    pub fn runs_avx2_build(self) -> bool {
        self.has_avx2() && Isa::Avx2.supported()
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// `Isa::code()` of the path in use, or 0 before the first call detects one.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The best path this CPU runs.
pub(super) fn detect() -> Isa {
    Isa::ALL
        .into_iter()
        .find(|isa| isa.supported())
        .unwrap_or(Isa::Portable)
}

/// The instruction set in use: the best one this CPU supports unless [`force_isa`] said otherwise.
pub fn active_isa() -> Isa {
    let code = CHOSEN.load(Ordering::Relaxed);
    match Isa::ALL.into_iter().find(|isa| isa.code() == code) {
        Some(isa) => isa,
        None => {
            let isa = detect();
            CHOSEN.store(isa.code(), Ordering::Relaxed);
            isa
        }
    }
}

/// Forces a code path (for tests and profiling). Returns false, changing nothing, if the CPU lacks it.
pub fn force_isa(isa: Isa) -> bool {
    if !isa.supported() {
        return false;
    }
    CHOSEN.store(isa.code(), Ordering::Relaxed);
    true
}
