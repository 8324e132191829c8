//! The same bits on every CPU: 20 training steps (the protocol's batch of 64) of each variant
//! give the same losses, the same final parameters and so the same `parameters_sha256` on every
//! code path this CPU runs: AVX-512, AVX2 and portable (the path a CPU without AVX2, or an
//! aarch64 CPU, runs). The portable path is the reference every other path is held to.
//!
//! A file of its own: the code path is process-wide state ([`force_isa`]), which a test running
//! beside this one would see switched halfway. The runs are printed (`--nocapture`), so that the
//! digests of another machine (e.g. an aarch64 build under qemu, which runs only the portable
//! path) can be compared with these.

use bnconv_kernels::simd::{force_isa, Isa};
use bnconv_nn::digest::parameters_sha256;
use bnconv_nn::mnist::{Dataset, Mnist};
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::Variant;
use std::path::Path;

const STEPS: usize = 20;

/// One training run's results as bits.
#[derive(PartialEq)]
struct Run {
    losses: Vec<u32>,
    /// Every parameter and statistic, named, in visit order.
    tensors: Vec<(String, Vec<u32>)>,
    sha256: String,
}

/// `STEPS` protocol steps of `variant` on the code path `isa`.
fn train(isa: Isa, variant: Variant, data: &Dataset) -> Run {
    assert!(force_isa(isa), "{isa:?} supported");
    let mut t = Trainer::new(&TrainConfig::protocol(variant), data.len());
    let losses = (0..STEPS)
        .map(|_| t.step(data).expect("finite").to_bits())
        .collect();
    let mut tensors = Vec::new();
    t.net.visit_params(&mut |p| {
        tensors.push((
            format!("{}.{}", p.layer, p.name),
            p.value.iter().map(|v| v.to_bits()).collect(),
        ))
    });
    let sha256 = parameters_sha256(&mut t.net);
    Run {
        losses,
        tensors,
        sha256,
    }
}

#[test]
fn every_code_path_trains_to_the_same_parameters_sha256() {
    let data = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("load data/mnist");
    let paths = Isa::supported_all();
    for isa in Isa::ALL.into_iter().filter(|isa| !paths.contains(isa)) {
        eprintln!(
            "SKIPPED the {} path: this CPU does not run it (compared: {:?})",
            isa.name(),
            paths
        );
    }
    for variant in [Variant::Plain, Variant::Bn, Variant::BnLowLevel] {
        let want = train(Isa::Portable, variant, &data.train);
        println!(
            "{variant} {STEPS} steps: portable parameters_sha256 {}",
            want.sha256
        );
        for &isa in paths.iter().filter(|&&isa| isa != Isa::Portable) {
            let got = train(isa, variant, &data.train);
            println!(
                "{variant} {STEPS} steps: {} parameters_sha256 {}",
                isa.name(),
                got.sha256
            );
            if got == want {
                continue;
            }
            let first_loss = got
                .losses
                .iter()
                .zip(&want.losses)
                .position(|(a, b)| a != b);
            let tensors: Vec<&str> = got
                .tensors
                .iter()
                .zip(&want.tensors)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a.0.as_str())
                .collect();
            panic!(
                "{variant}: {} differs from portable: digest {} vs {}, first differing loss at \
                 step {first_loss:?}, differing tensors {tensors:?}",
                isa.name(),
                got.sha256,
                want.sha256
            );
        }
    }
}
