//! Reproducible to the bit, over whole protocol runs (tests/network_equivalence.rs covers single
//! network steps):
//! - the same seed twice gives bitwise-identical losses, accuracies and final weights;
//! - so do 1, 2 and 3 threads (reductions use a fixed chunking that depends only on shapes),
//!   and 16 and 64 threads on the seed batch of 64 and on batch 256 with an evaluation
//!   (oversubscribed on a small machine: these check results, not speed);
//! - so do the fused and unfused BN+ReLU paths.
//!
//! Runs are short (20 batches of 16) on the real MNIST training set, with validation and test
//! cut to 500 images each so the evaluations stay cheap. Weights are compared in full for
//! `Trainer` runs and through `RunReport::parameters_sha256` for `run_protocol` runs.

#[path = "support/cut_mnist.rs"]
mod cut_mnist;
#[path = "support/report_bits.rs"]
mod report_bits;

use bnconv_nn::mnist::Mnist;
use bnconv_nn::network::EVAL_BLOCK;
use bnconv_nn::train::{evaluate_with, run_protocol, RunReport, TrainConfig, Trainer};
use bnconv_nn::{BnPath, Variant};
use std::sync::OnceLock;

const BATCHES: usize = 20;
const BATCH_SIZE: usize = 16;

fn data() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| cut_mnist::load_cut(500, 500))
}

fn config(variant: Variant, bn_path: BnPath) -> TrainConfig {
    let mut cfg = TrainConfig::protocol(variant);
    cfg.batches = BATCHES;
    cfg.batch_size = BATCH_SIZE;
    cfg.seed = 5;
    cfg.exec.bn_path = bn_path;
    cfg.eval_batch = 128;
    cfg
}

fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

fn protocol(variant: Variant, bn_path: BnPath, threads: usize) -> RunReport {
    let cfg = config(variant, bn_path);
    with_threads(threads, || run_protocol(&cfg, data(), &mut |_| {})).expect("a healthy run")
}

fn assert_same_results(a: &RunReport, b: &RunReport, what: &str) {
    assert_eq!(a.step_losses.len(), BATCHES);
    report_bits::assert_same_results(a, b, what);
}

/// Trains `BATCHES` steps with `Trainer` and returns every loss and every final parameter and
/// statistic, bit for bit.
fn trainer_bits(variant: Variant, threads: usize) -> Vec<(String, Vec<u32>)> {
    trainer_bits_with(&config(variant, BnPath::Fused), BATCHES, threads)
}

/// `steps` training steps of `cfg` on `threads` threads: every loss, then every parameter and
/// statistic, bit for bit.
fn trainer_bits_with(cfg: &TrainConfig, steps: usize, threads: usize) -> Vec<(String, Vec<u32>)> {
    trainer_bits_prepared(cfg, steps, threads, false)
}

/// [`trainer_bits_with`], calling `Trainer::prepare_buffers` first when `prepare`.
fn trainer_bits_prepared(
    cfg: &TrainConfig,
    steps: usize,
    threads: usize,
    prepare: bool,
) -> Vec<(String, Vec<u32>)> {
    let train = &data().train;
    with_threads(threads, || {
        let mut t = Trainer::new(cfg, train.len());
        if prepare {
            t.prepare_buffers();
        }
        let losses = (0..steps)
            .map(|_| t.step(train).expect("finite").to_bits())
            .collect();
        let mut out = vec![("losses".to_string(), losses)];
        t.net.visit_params(&mut |p| {
            out.push((p.full_name(), p.value.iter().map(|v| v.to_bits()).collect()))
        });
        out
    })
}

/// `Trainer::prepare_buffers` (which the protocol runs before its first step) leaves no trace:
/// the same losses, parameters and statistics as steps without it, on 1 and 2 threads.
#[test]
fn preparing_the_buffers_changes_no_bit() {
    let cfg = config(Variant::Bn, BnPath::Fused);
    for threads in [1, 2] {
        let plain = trainer_bits_prepared(&cfg, 3, threads, false);
        let prepared = trainer_bits_prepared(&cfg, 3, threads, true);
        report_bits::assert_same_bits(&plain, &prepared, &format!("{threads} thread(s)"));
    }
}

#[test]
fn the_same_seed_twice_gives_bitwise_identical_results() {
    let a = protocol(Variant::Bn, BnPath::Fused, 2);
    let b = protocol(Variant::Bn, BnPath::Fused, 2);
    assert_same_results(&a, &b, "bn: run 1 vs run 2");
    let a = trainer_bits(Variant::Bn, 2);
    let b = trainer_bits(Variant::Bn, 2);
    report_bits::assert_same_bits(&a, &b, "bn: trainer run 1 vs run 2");
}

#[test]
fn one_two_and_three_threads_give_bitwise_identical_results() {
    for variant in [Variant::Bn, Variant::Plain] {
        let one = protocol(variant, BnPath::Fused, 1);
        for threads in [2, 3] {
            let many = protocol(variant, BnPath::Fused, threads);
            assert_same_results(&one, &many, &format!("{variant}: 1 vs {threads} threads"));
        }
    }
    let one = trainer_bits(Variant::Bn, 1);
    for threads in [2, 3] {
        let many = trainer_bits(Variant::Bn, threads);
        report_bits::assert_same_bits(&one, &many, &format!("bn: 1 vs {threads} threads"));
    }
}

/// Pools of many-core servers, oversubscribed here: the seed batch of 64 (the tasks a 16- or
/// 64-core machine shares out) trains bitwise as on one thread, on both BN paths and the plain
/// network.
#[test]
fn sixteen_and_sixty_four_threads_give_bitwise_identical_results() {
    for (variant, bn_path) in [
        (Variant::Bn, BnPath::Fused),
        (Variant::Bn, BnPath::Unfused),
        (Variant::Plain, BnPath::Fused),
    ] {
        let mut cfg = config(variant, bn_path);
        cfg.batch_size = 64;
        let one = trainer_bits_with(&cfg, 4, 1);
        for threads in [16, 64] {
            let many = trainer_bits_with(&cfg, 4, threads);
            report_bits::assert_same_bits(
                &one,
                &many,
                &format!("{variant} {bn_path}: 1 vs {threads} threads, batch 64"),
            );
        }
    }
}

/// `steps` training steps of `cfg` on `threads` threads, then an evaluation of 500 test images in
/// batches of `cfg.eval_batch` and again in batches larger than a block (the whole network per
/// task; asserted equal): every loss, every gradient of the last step, every parameter and
/// statistic, and every logit of the evaluation, bit for bit.
fn step_and_eval_bits(cfg: &TrainConfig, steps: usize, threads: usize) -> Vec<(String, Vec<u32>)> {
    let d = data();
    with_threads(threads, || {
        let mut t = Trainer::new(cfg, d.train.len());
        let losses = (0..steps)
            .map(|_| t.step(&d.train).expect("finite").to_bits())
            .collect();
        let mut out = vec![("losses".to_string(), losses)];
        t.net.visit_params(&mut |p| {
            let name = p.full_name();
            out.push((
                format!("{name} gradient"),
                p.grad.iter().map(|v| v.to_bits()).collect(),
            ));
            out.push((name, p.value.iter().map(|v| v.to_bits()).collect()));
        });
        let mut logits = Vec::new();
        evaluate_with(&mut t.net, &d.test, cfg.eval_batch, |_, l| {
            logits.extend(l.iter().map(|v| v.to_bits()))
        });
        // Batches larger than a block run the whole network per task: the same logits.
        let mut per_task = Vec::new();
        evaluate_with(&mut t.net, &d.test, 2 * EVAL_BLOCK + 1, |_, l| {
            per_task.extend(l.iter().map(|v| v.to_bits()))
        });
        assert!(logits == per_task, "{threads} threads: per-task logits");
        out.push(("evaluation logits".to_string(), logits));
        out.push(("per-task evaluation logits".to_string(), per_task));
        out
    })
}

/// The many-core model's larger shape, batch 256 (more tasks per loop, so more of them run at
/// once), and evaluation on the implicit path (tasks of whole images sharing per-worker scratch
/// images) on pools of 16 and 64 threads give the bits of one thread: gradients of the last step
/// (the weight and data gradients run as concurrent tasks), parameters and evaluation logits.
#[test]
fn batch_256_and_evaluation_on_sixteen_and_sixty_four_threads_match_one_thread() {
    let mut cfg = config(Variant::Bn, BnPath::Fused);
    cfg.batch_size = 256;
    cfg.eval_batch = 100;
    let one = step_and_eval_bits(&cfg, 2, 1);
    for threads in [16, 64] {
        let many = step_and_eval_bits(&cfg, 2, threads);
        report_bits::assert_same_bits(
            &one,
            &many,
            &format!("bn: 1 vs {threads} threads, batch 256, evaluation batch 100"),
        );
    }
}

#[test]
fn fused_and_unfused_bn_give_bitwise_identical_protocol_runs() {
    for variant in [Variant::Bn, Variant::BnLowLevel] {
        let fused = protocol(variant, BnPath::Fused, 2);
        let unfused = protocol(variant, BnPath::Unfused, 2);
        assert_same_results(&fused, &unfused, &format!("{variant}: fused vs unfused"));
    }
}

#[test]
fn the_comparison_detects_a_different_seed() {
    // Guards the tests above against comparing things that cannot differ.
    let a = protocol(Variant::Bn, BnPath::Fused, 2);
    let mut cfg = config(Variant::Bn, BnPath::Fused);
    cfg.seed = 6;
    let b = with_threads(2, || run_protocol(&cfg, data(), &mut |_| {})).expect("a healthy run");
    assert_ne!(a.parameters_sha256, b.parameters_sha256);
    assert_ne!(a.step_losses, b.step_losses);
}
