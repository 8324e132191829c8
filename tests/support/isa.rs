//! Tests of one SIMD path: the build marks them ignored where the build machine lacks the path
//! (`#[cfg_attr(bnconv_cpu_lacks_avx512, ignore = "...")]`, see kernels/build.rs); this fails
//! such a test when its binary runs on another CPU that lacks the path, instead of passing it.
// Each test file uses only some of these.
#![allow(dead_code)]

use bnconv_kernels::simd::Isa;

/// Fails unless this CPU runs `isa`.
pub fn require(isa: Isa) {
    assert!(
        isa.supported(),
        "this CPU does not run the {} path, but the tests were built on one that does: rebuild \
         them here (`cargo test`) so that they are reported as ignored",
        isa.name()
    );
}

/// The code paths the tests compare: the portable path always, and every SIMD path the build
/// machine runs (kernels/build.rs), each checked with [`require`]. A path the build machine
/// lacks is named by the build's warning and by the ignored tests of that path, never dropped
/// silently; a test binary carried to a CPU without a path its build had fails.
pub fn tested_paths() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| match isa {
            Isa::Avx512 => !cfg!(bnconv_cpu_lacks_avx512),
            Isa::Avx2 => !cfg!(bnconv_cpu_lacks_avx2),
            Isa::Portable => true,
        })
        .inspect(|&isa| require(isa))
        .collect()
}
