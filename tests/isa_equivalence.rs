//! The same bits on every CPU: 20 training steps (the protocol's batch of 64) of each variant
//! give the same losses, the same final parameters and so the same `parameters_sha256` on every
//! code path this CPU runs: AVX-512, AVX2 and portable (the path a CPU without AVX2, or an
//! aarch64 CPU, runs). The portable path is the reference every other path is held to: one test
//! per SIMD path, reported as ignored where the build machine lacks the path.
//!
//! A file of its own: the code path is process-wide state ([`force_isa`]), which a test running
//! beside these would see switched halfway; these two take turns. The runs are printed (`--nocapture`), so that the
//! digests of another machine (e.g. an aarch64 build under qemu, which runs only the portable
//! path) can be compared with these.

#[path = "support/isa.rs"]
mod isa;

use bnconv_kernels::simd::{force_isa, Isa};
use bnconv_nn::digest::parameters_sha256;
use bnconv_nn::mnist::{Dataset, Mnist};
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::Variant;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

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

/// The portable runs, one per variant, trained once for every test that compares with them.
static PORTABLE: OnceLock<Vec<(Variant, Run)>> = OnceLock::new();
/// Held by each test while it trains: the code path is process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
#[cfg_attr(bnconv_cpu_lacks_avx512, ignore = "this CPU has no AVX-512")]
fn avx512_trains_to_the_portable_bits() {
    trains_to_the_portable_bits(Isa::Avx512);
}

#[test]
#[cfg_attr(bnconv_cpu_lacks_avx2, ignore = "this CPU has no AVX2 and FMA")]
fn avx2_trains_to_the_portable_bits() {
    trains_to_the_portable_bits(Isa::Avx2);
}

/// Plain, bn and bn-lowlevel on `isa` give the portable path's losses, tensors and digest.
fn trains_to_the_portable_bits(isa: Isa) {
    isa::require(isa);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let data = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("load data/mnist");
    let portable = PORTABLE.get_or_init(|| {
        [Variant::Plain, Variant::Bn, Variant::BnLowLevel]
            .into_iter()
            .map(|variant| {
                let run = train(Isa::Portable, variant, &data.train);
                println!(
                    "{variant} {STEPS} steps: portable parameters_sha256 {}",
                    run.sha256
                );
                (variant, run)
            })
            .collect()
    });
    for (variant, want) in portable {
        let got = train(isa, *variant, &data.train);
        println!(
            "{variant} {STEPS} steps: {} parameters_sha256 {}",
            isa.name(),
            got.sha256
        );
        if got == *want {
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
            "{variant}: {} differs from portable: digest {} vs {}, first differing loss at step \
             {first_loss:?}, differing tensors {tensors:?}",
            isa.name(),
            got.sha256,
            want.sha256
        );
    }
}
