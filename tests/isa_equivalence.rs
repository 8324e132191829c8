//! The AVX-512 GEMM tiles change speed, never results: a few training steps of each variant on
//! the AVX-512 path and on the AVX2 path give bitwise the same losses and final parameters.
//!
//! A file of its own: the code path is process-wide state, which a test running beside this one
//! would see switched halfway.

use bnconv_kernels::simd::{force_isa, Isa};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::Variant;
use std::path::Path;

/// Every loss and every parameter after `steps` steps of batches of 16, as bits.
fn run_bits(isa: Isa, variant: Variant, train: &bnconv_nn::mnist::Dataset) -> Vec<Vec<u32>> {
    assert!(force_isa(isa), "{isa:?} supported");
    let mut cfg = TrainConfig::protocol(variant);
    cfg.batch_size = 16;
    let mut t = Trainer::new(&cfg, train.len());
    let losses = (0..6)
        .map(|_| t.step(train).expect("finite").to_bits())
        .collect();
    let mut out = vec![losses];
    t.net
        .visit_params(&mut |p| out.push(p.value.iter().map(|v| v.to_bits()).collect()));
    out
}

#[test]
fn avx512_and_avx2_train_bitwise_alike() {
    if !Isa::Avx512.supported() {
        eprintln!("SKIPPED avx512_and_avx2_train_bitwise_alike: this CPU has no AVX-512");
        return;
    }
    let data = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("load data/mnist");
    for variant in [Variant::Bn, Variant::Plain] {
        let wide = run_bits(Isa::Avx512, variant, &data.train);
        let narrow = run_bits(Isa::Avx2, variant, &data.train);
        assert_eq!(wide.len(), narrow.len());
        for (i, (a, b)) in wide.iter().zip(&narrow).enumerate() {
            assert!(a == b, "{variant}: tensor {i} differs (0 = the losses)");
        }
    }
}
