//! The workspace tests (tests/*.rs) see the kernels' SIMD cfgs too: `bnconv_cpu_lacks_avx512`
//! and `bnconv_cpu_lacks_avx2` mark tests of a path the build machine lacks as ignored.
include!("kernels/build.rs");
