//! Whole-network equivalences that must hold bitwise:
//! - the fused and unfused BN+ReLU paths, forward and backward, in train and eval mode;
//! - any rayon thread count (work is split by shape, partial sums added in a fixed order).
//!
//! Tolerance: none. Bits are compared, because both properties are designed to be exact.
//!
//! Also: evaluation with batch norm folded into the convolutions (the default) against layer by
//! layer evaluation, within a stated tolerance (folding changes the rounding).

#[path = "support/report_bits.rs"]
mod report_bits;

use bnconv_nn::adam::{Adam, AdamConfig};
use bnconv_nn::loss::sigmoid_cross_entropy;
use bnconv_nn::{seed_network, BnPath, Exec, Mode, Network, Variant};

const BATCH: usize = 16;

/// A deterministic batch of images in [0, 1] and one-hot labels.
fn batch(step: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = 0x9E37_79B9u32.wrapping_add(step as u32);
    let x = (0..BATCH * 784)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    let mut y = vec![0.0; BATCH * 10];
    for (i, row) in y.chunks_exact_mut(10).enumerate() {
        row[(i * 7 + step) % 10] = 1.0;
    }
    (x, y)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Everything a step produces: train logits, every gradient, eval logits, then parameters and
/// moving statistics after the Adam update.
fn trace(net: &mut Network, adam: &mut Adam, steps: usize) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    let mut dlogits = vec![0.0; BATCH * 10];
    for step in 0..steps {
        let (x, y) = batch(step);
        let logits = net.forward(&x, BATCH, Mode::Train);
        out.push((format!("step{step}.logits"), bits(logits.data())));
        sigmoid_cross_entropy(logits.data(), &y, Some(&mut dlogits));
        net.backward(&dlogits);
        net.visit_params(&mut |p| {
            out.push((format!("step{step}.grad.{}", p.full_name()), bits(p.grad)))
        });
        adam.step(net);
        out.push((
            format!("step{step}.eval_logits"),
            bits(net.forward(&x, BATCH, Mode::Eval).data()),
        ));
    }
    net.visit_params(&mut |p| out.push((format!("after.{}", p.full_name()), bits(p.value))));
    out
}

fn run(variant: Variant, bn_path: BnPath, threads: usize, steps: usize) -> Vec<(String, Vec<u32>)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        // Layer by layer in evaluation too, so that eval mode really runs both BN paths.
        let exec = Exec {
            bn_path,
            eval_unfolded: true,
            ..Exec::default()
        };
        let mut net = seed_network(variant, 7, exec);
        let mut adam = Adam::new(AdamConfig::default());
        trace(&mut net, &mut adam, steps)
    })
}

#[test]
fn fused_and_unfused_bn_relu_agree_bitwise_in_train_and_eval() {
    for variant in [Variant::Bn, Variant::BnLowLevel] {
        let fused = run(variant, BnPath::Fused, 2, 3);
        let unfused = run(variant, BnPath::Unfused, 2, 3);
        report_bits::assert_same_bits(&fused, &unfused, &format!("{variant} fused vs unfused"));
    }
}

#[test]
fn results_are_bitwise_identical_for_any_thread_count() {
    for variant in [Variant::Bn, Variant::Plain] {
        let one = run(variant, BnPath::Fused, 1, 2);
        for threads in [2, 3, 5] {
            let many = run(variant, BnPath::Fused, threads, 2);
            report_bits::assert_same_bits(
                &one,
                &many,
                &format!("{variant}: 1 vs {threads} threads"),
            );
        }
    }
}

#[test]
fn a_trace_detects_a_different_run() {
    // Guards the two tests above against comparing things that cannot differ.
    let a = run(Variant::Bn, BnPath::Fused, 2, 1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let b = pool.install(|| {
        let mut net = seed_network(Variant::Bn, 8, Exec::default());
        let mut adam = Adam::new(AdamConfig::default());
        trace(&mut net, &mut adam, 1)
    });
    assert!(a.iter().zip(&b).any(|(x, y)| x.1 != y.1));
}

/// Folding batch norm (scale into the packed weights, shift as bias, ReLU on the output tile)
/// changes only the rounding: eval logits agree with layer-by-layer evaluation to 1e-5 of their
/// largest magnitude, after a few training steps moved the moving statistics. Folding a lone
/// ReLU (the plain network) changes nothing at all.
#[test]
fn folded_evaluation_matches_layer_by_layer() {
    for variant in [Variant::Bn, Variant::BnLowLevel, Variant::Plain] {
        let mut net = seed_network(variant, 3, Exec::default());
        let mut adam = Adam::new(AdamConfig::default());
        let mut dlogits = vec![0.0; BATCH * 10];
        for step in 0..3 {
            let (x, y) = batch(step);
            let logits = net.forward(&x, BATCH, Mode::Train);
            sigmoid_cross_entropy(logits.data(), &y, Some(&mut dlogits));
            net.backward(&dlogits);
            adam.step(&mut net);
        }
        let (x, _) = batch(9);
        let folded = net.forward(&x, BATCH, Mode::Eval).data().to_vec();
        net.set_exec(Exec {
            eval_unfolded: true,
            ..net.exec().clone()
        });
        let unfolded = net.forward(&x, BATCH, Mode::Eval).data().to_vec();
        let scale = unfolded.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = folded
            .iter()
            .zip(&unfolded)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{variant}: folded eval differs by {worst} (max |logit| {scale})"
        );
        if variant == Variant::Plain {
            // Conv + bias + ReLU folds with no rescaling: the same bits.
            assert_eq!(bits(&folded), bits(&unfolded), "{variant}: ReLU folding");
        } else {
            assert_ne!(
                bits(&folded),
                bits(&unfolded),
                "{variant}: folding did not run?"
            );
        }
    }
}
