//! A run's final validation figures are the validation set evaluated on its final weights, both
//! when the last step also logged a validation (a run of 1, 101, ... batches: that evaluation is
//! reused instead of a second pass over the set) and when it did not (the set is evaluated again).
//!
//! Short runs (batches of 16) on the real MNIST training set, with validation and test cut to
//! 300 images each.

#[path = "support/cut_mnist.rs"]
mod cut_mnist;

use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{continue_protocol, evaluate, Evaluation, TrainConfig, Trainer};
use bnconv_nn::Variant;
use std::sync::OnceLock;

fn data() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| cut_mnist::load_cut(300, 300))
}

fn bits(e: &Evaluation) -> (u32, u32, usize) {
    (e.loss.to_bits(), e.accuracy.to_bits(), e.images)
}

/// Runs `batches` steps; returns the report's final validation, the log's validation lines and a
/// fresh evaluation of the final weights.
fn run(batches: usize) -> (Evaluation, Vec<(usize, u32, u32)>, Evaluation) {
    let mut cfg = TrainConfig::protocol(Variant::Bn);
    cfg.batches = batches;
    cfg.batch_size = 16;
    cfg.seed = 3;
    cfg.eval_batch = 100;
    let data = data();
    let mut trainer = Trainer::new(&cfg, data.train.len());
    let report = continue_protocol(&cfg, data, &mut trainer, &mut |_| {}).expect("a healthy run");
    let logged = report
        .log
        .iter()
        .filter(|l| l.set == "validation")
        .map(|l| (l.batch, l.loss.to_bits(), l.accuracy.to_bits()))
        .collect();
    let fresh = evaluate(&mut trainer.net, &data.validation, cfg.eval_batch);
    (report.final_validation, logged, fresh)
}

#[test]
fn a_run_ending_on_a_validation_batch_reports_that_validation_as_final() {
    let (last, logged, fresh) = run(1);
    assert_eq!(
        bits(&last),
        bits(&fresh),
        "final validation vs the final weights"
    );
    assert_eq!(
        logged,
        vec![(0, fresh.loss.to_bits(), fresh.accuracy.to_bits())]
    );
}

#[test]
fn a_run_ending_after_its_last_validation_evaluates_the_final_weights() {
    let (last, logged, fresh) = run(3);
    assert_eq!(
        bits(&last),
        bits(&fresh),
        "final validation vs the final weights"
    );
    // The batch-0 validation saw other weights: reusing it would have given other figures.
    assert_eq!(logged.len(), 1);
    assert_ne!(
        (logged[0].1, logged[0].2),
        (fresh.loss.to_bits(), fresh.accuracy.to_bits()),
        "three steps should move the validation loss"
    );
}
