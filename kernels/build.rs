// Tells the tests which SIMD paths the build machine's CPU runs. A test of a path the CPU lacks
// is then marked `#[cfg_attr(bnconv_cpu_lacks_avx512, ignore = "...")]` and shows up as ignored
// in the test summary, with its reason, instead of passing without running. The tests still
// check the CPU when they run (kernels/src/testing.rs, tests/support/isa.rs): a test binary
// carried to a CPU without the path fails loudly. The workspace's own build script includes
// this file, so its tests (tests/*.rs) see the same cfgs.
//
// Emitted cfgs: `bnconv_cpu_lacks_avx512` (no AVX-512 F) and `bnconv_cpu_lacks_avx2` (no AVX2
// and FMA), each also set when the target is not x86_64 or the build cross-compiles (the build
// machine's CPU then says nothing about the test machine's).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok()
        && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    lacks("bnconv_cpu_lacks_avx512", native && cpu_has_avx512());
    lacks("bnconv_cpu_lacks_avx2", native && cpu_has_avx2());
}

/// Declares `cfg`, and sets it (with a warning) unless the build machine `runs` its path.
fn lacks(cfg: &str, runs: bool) {
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    if !runs {
        println!("cargo::rustc-cfg={cfg}");
        println!("cargo::warning={cfg}: the tests of this SIMD path are ignored in this build");
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f") && cpu_has_avx2()
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx2() -> bool {
    false
}
