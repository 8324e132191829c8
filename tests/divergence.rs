//! Divergence is caught, not hidden: a NaN or an infinity in the loss, an activation or a gradient
//! stops training with `TrainError::Diverged` naming the step and the layer, before the weights
//! are updated (nn/src/finite.rs).

use bnconv_nn::finite::Quantity;
use bnconv_nn::mnist::Dataset;
use bnconv_nn::train::{TrainConfig, TrainError, Trainer};
use bnconv_nn::{Network, ParamKind, Variant};
use std::process::Command;

const BATCH: usize = 16;

fn synthetic(n: usize) -> Dataset {
    let pixels = (0..n * Dataset::PIXELS)
        .map(|i| ((i * 7919) % 256) as u8)
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(pixels, labels).expect("a consistent synthetic set")
}

fn trainer(variant: Variant, lr: f32, data: &Dataset) -> Trainer {
    let mut cfg = TrainConfig::protocol(variant);
    cfg.batch_size = BATCH;
    cfg.adam.lr = lr;
    Trainer::new(&cfg, data.len())
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool")
}

fn layer_names(net: &Network) -> Vec<String> {
    net.layers().iter().map(|l| l.name().to_string()).collect()
}

fn trainable_bits(net: &mut Network) -> Vec<u32> {
    let mut bits = Vec::new();
    net.visit_params(&mut |p| {
        if p.kind == ParamKind::Trainable {
            bits.extend(p.value.iter().map(|v| v.to_bits()));
        }
    });
    bits
}

fn set_param(net: &mut Network, layer: &str, name: &str, f: &mut dyn FnMut(&mut [f32])) {
    let mut found = false;
    net.visit_params(&mut |p| {
        if p.layer == layer && p.name == name {
            f(p.value);
            found = true;
        }
    });
    assert!(found, "no parameter {layer}.{name}");
}

#[test]
fn an_absurd_learning_rate_is_caught_with_the_step_and_the_layer() {
    let data = synthetic(128);
    pool().install(|| {
        for variant in [Variant::Bn, Variant::Plain] {
            let mut t = trainer(variant, 1e30, &data);
            let names = layer_names(&t.net);
            let mut diverged = false;
            for step in 0..20 {
                let before = trainable_bits(&mut t.net);
                match t.step(&data) {
                    Ok(loss) => assert!(loss.is_finite(), "{variant}: step {step} returned {loss}"),
                    Err(err @ TrainError::Diverged { .. }) => {
                        let msg = err.to_string();
                        let TrainError::Diverged { step: s, at, .. } = err else {
                            unreachable!()
                        };
                        assert_eq!(s, step, "{variant}: {msg}");
                        assert!(names.contains(&at.layer), "{variant}: not a layer: {msg}");
                        assert_ne!(at.what, Quantity::Loss, "{variant}: not located: {msg}");
                        assert!(!at.value.is_finite(), "{variant}: {msg}");
                        assert!(
                            msg.contains(&format!("step {step}")) && msg.contains(&at.layer),
                            "{variant}: {msg}"
                        );
                        assert_eq!(
                            before,
                            trainable_bits(&mut t.net),
                            "{variant}: the diverging step updated the weights"
                        );
                        diverged = true;
                        break;
                    }
                    Err(other) => panic!("{variant}: unexpected error {other}"),
                }
            }
            assert!(
                diverged,
                "{variant}: lr 1e30 trained 20 steps without diverging"
            );
        }
    });
}

#[test]
fn a_non_finite_weight_is_reported_at_its_layer() {
    let data = synthetic(64);
    pool().install(|| {
        // Element 3 of each tensor, except conv19: its input is 1x1, so only the centre tap (tap 4)
        // ever meets real pixels and the engine skips the others; element 3 is a corner tap there.
        for (variant, layer, param, value) in [
            (Variant::Bn, "conv01", "weight", f32::NAN),
            (Variant::Bn, "conv07", "weight", f32::NAN),
            (Variant::Bn, "conv07", "weight", f32::INFINITY),
            (Variant::Bn, "bn07", "gamma", f32::NAN),
            (Variant::Bn, "bn13", "beta", f32::NAN),
            (Variant::Bn, "fc1", "weight", f32::NAN),
            (Variant::Bn, "bn_fc1", "gamma", f32::NAN),
            (Variant::Bn, "fc2", "bias", f32::NAN),
            (Variant::Plain, "conv13", "bias", f32::NAN),
            (Variant::Plain, "conv19", "weight", f32::NEG_INFINITY),
            (Variant::Plain, "fc2", "weight", f32::NAN),
        ] {
            let case = format!("{variant} {layer}.{param} = {value}");
            let mut t = trainer(variant, 0.002, &data);
            t.step(&data).expect("a healthy first step");
            let index = if layer == "conv19" {
                4 * 72 * 76 + 3
            } else {
                3
            };
            set_param(&mut t.net, layer, param, &mut |v| v[index] = value);
            let before = trainable_bits(&mut t.net);
            match t.step(&data) {
                Err(TrainError::Diverged { step, at, .. }) if layer == "conv19" => {
                    // A -inf weight times positive inputs gives -inf, which the next ReLU turns
                    // into 0: the loss stays finite and the backward pass finds it, at conv19.
                    assert_eq!(step, 1, "{case}");
                    assert_eq!(at.what, Quantity::Gradient, "{case}: {at}");
                    assert_eq!(at.layer, layer, "{case}: {at}");
                }
                Err(TrainError::Diverged { step, at, .. }) => {
                    assert_eq!(step, 1, "{case}");
                    assert_eq!(at.what, Quantity::Activation, "{case}: {at}");
                    assert_eq!(at.layer, layer, "{case}: {at}");
                    assert_eq!(at.tensor, "output", "{case}: {at}");
                }
                other => panic!("{case}: expected divergence, got {other:?}"),
            }
            let after = trainable_bits(&mut t.net);
            assert_eq!(
                before, after,
                "{case}: the diverging step updated the weights"
            );
        }
    });
}

#[test]
fn a_gradient_that_overflows_with_a_finite_loss_is_reported_at_its_layer() {
    // fc1 outputs 0 for every image, so bn_fc1 sees zero variance and passes beta = 1 through
    // with scale gamma / sqrt(eps) = 3.2e38, still finite, and the logits stay finite. Backward,
    // that scale multiplies a batch-varying gradient of ~1e4 (from fc2's large weights): the input
    // gradient of bn_fc1 overflows, and fc1's weight gradient with it.
    let data = synthetic(64);
    pool().install(|| {
        let mut t = trainer(Variant::Bn, 0.002, &data);
        set_param(&mut t.net, "fc1", "weight", &mut |v| v.fill(0.0));
        set_param(&mut t.net, "bn_fc1", "gamma", &mut |v| v.fill(1e37));
        set_param(&mut t.net, "bn_fc1", "beta", &mut |v| v.fill(1.0));
        set_param(&mut t.net, "fc2", "weight", &mut |v| {
            for (i, w) in v.iter_mut().enumerate() {
                *w = 1e6 * (i % 10 + 1) as f32;
            }
        });
        let before = trainable_bits(&mut t.net);
        match t.step(&data) {
            Err(err @ TrainError::Diverged { .. }) => {
                let msg = err.to_string();
                let TrainError::Diverged { step, loss, at } = err else {
                    unreachable!()
                };
                assert_eq!(step, 0, "{msg}");
                assert!(loss.is_finite(), "{msg}");
                assert_eq!(at.what, Quantity::Gradient, "{msg}");
                assert_eq!(
                    (at.layer.as_str(), at.tensor.as_str()),
                    ("bn_fc1", "input gradient"),
                    "{msg}"
                );
                assert!(msg.contains("gradient of layer bn_fc1"), "{msg}");
            }
            other => panic!("expected a gradient divergence, got {other:?}"),
        }
        assert_eq!(before, trainable_bits(&mut t.net));
    });
}

#[test]
fn the_binary_reports_divergence_and_writes_no_json() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bnconv"))
        .args([
            "train",
            "--variant",
            "bn",
            "--lr",
            "1e30",
            "--batches",
            "30",
        ])
        .args(["--threads", "2", "--json", json.to_str().expect("utf-8")])
        .output()
        .expect("the bnconv binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "lr 1e30 must fail; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("training diverged at step "), "{stderr}");
    let names = {
        let net = bnconv_nn::seed_network(Variant::Bn, 1, Default::default());
        layer_names(&net)
    };
    assert!(
        names
            .iter()
            .any(|n| stderr.contains(&format!("of layer {n} "))),
        "no layer named in:\n{stderr}"
    );
    assert!(!json.exists(), "a diverged run wrote {}", json.display());
    assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
}
