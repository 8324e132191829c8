//! Per-image predictions agree with the whole-set evaluation: the same loss and accuracy bit for
//! bit, an accuracy recomputed from the predictions equal to the reported one, and each image's
//! logits independent of the batch it was evaluated in (so a lone image, as `bnconv predict`
//! feeds it, gets the logits `eval --predictions` writes).

use bnconv_nn::mnist::Mnist;
use bnconv_nn::predictions::evaluate_predictions;
use bnconv_nn::train::{evaluate, TrainConfig, Trainer};
use bnconv_nn::{Network, Variant};
use std::path::Path;
use std::sync::OnceLock;

fn data() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
            .expect("load data/mnist")
    })
}

/// A network trained a little, so that its predictions spread over several classes (300 steps:
/// after 150, evaluation-mode predictions can still sit on one class, depending on the run's
/// rounding).
fn trained(variant: Variant) -> Network {
    let mut cfg = TrainConfig::protocol(variant);
    cfg.batch_size = 32;
    let mut t = Trainer::new(&cfg, data().train.len());
    for _ in 0..300 {
        t.step(&data().train).expect("finite");
    }
    t.net
}

#[test]
fn predictions_reproduce_the_evaluation_bit_for_bit() {
    for variant in [Variant::Bn, Variant::Plain] {
        let mut net = trained(variant);
        let set = data().validation.slice(0..1500);
        let plain = evaluate(&mut net, &set, 500);
        let (e, p) = evaluate_predictions(&mut net, &set, 500);
        assert_eq!(e.loss.to_bits(), plain.loss.to_bits(), "{variant}: loss");
        assert_eq!(e.accuracy.to_bits(), plain.accuracy.to_bits(), "{variant}");
        assert_eq!(p.len(), set.len());
        let recomputed = p.correct() as f32 / p.len() as f32;
        assert_eq!(recomputed.to_bits(), e.accuracy.to_bits(), "{variant}");
        let confusion = p.confusion();
        assert_eq!(confusion.total(), set.len() as u64);
        assert_eq!(confusion.accuracy().to_bits(), e.accuracy.to_bits());
        for i in 0..p.len() {
            assert_eq!(p.label(i), usize::from(set.labels()[i]));
        }
        if variant == Variant::Bn {
            let classes = (0..p.len())
                .map(|i| p.predicted(i))
                .collect::<std::collections::BTreeSet<_>>();
            assert!(
                classes.len() >= 3,
                "a trained network predicts several classes: {classes:?}"
            );
        }
    }
}

#[test]
fn an_image_gets_the_same_logits_alone_as_in_any_batch() {
    let mut net = trained(Variant::Bn);
    let set = data().test.slice(0..120);
    let (_, by_500) = evaluate_predictions(&mut net, &set, 500);
    for batch in [1, 7, 64] {
        let (_, other) = evaluate_predictions(&mut net, &set, batch);
        for i in 0..set.len() {
            let bits = |l: &[f32]| l.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(by_500.logits(i)),
                bits(other.logits(i)),
                "image {i}: batch 500 vs batch {batch}"
            );
        }
    }
}
