//! Checkpoints: a saved file reads back bit-exact (through our loader and through the safetensors
//! crate directly), a resumed run ends bitwise where an uninterrupted one does, and every kind of
//! bad file gets its own error variant, never a panic.

use bnconv_nn::checkpoint::{
    load_into, load_network, load_trainer, read_info, save_network, save_trainer, Checkpoint,
    CheckpointError, Verify,
};
use bnconv_nn::mnist::{Dataset, Mnist};
use bnconv_nn::train::{continue_protocol, TrainConfig, Trainer};
use bnconv_nn::{seed_network, Exec, Network, ParamKind, Variant};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
#[path = "support/binary.rs"]
mod binary;
#[path = "support/checkpoint_edit.rs"]
mod checkpoint_edit;
use binary::scratch;
use checkpoint_edit::rewrite;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        Mnist::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist"
        )))
        .expect("the repository's MNIST loads")
    })
}

/// A small protocol data set cut from the real MNIST: `train` training images, 200 validation,
/// 200 test (so a protocol run evaluates quickly).
fn small_mnist(train: usize) -> Mnist {
    let m = mnist();
    Mnist {
        train: m.train.slice(0..train),
        validation: m.validation.slice(0..200),
        test: m.test.slice(0..200),
    }
}

fn config(variant: Variant, batches: usize, batch_size: usize) -> TrainConfig {
    TrainConfig {
        batches,
        batch_size,
        seed: 7,
        eval_batch: 100,
        ..TrainConfig::protocol(variant)
    }
}

/// Every parameter and statistic as bit patterns, by name.
fn param_bits(net: &mut Network) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    let mut out = BTreeMap::new();
    net.visit_params(&mut |p| {
        let bits = p.value.iter().map(|v| v.to_bits()).collect();
        out.insert(p.full_name(), (p.shape.to_vec(), bits));
    });
    out
}

/// Adam's moments as bit patterns, `adam.m.NAME` / `adam.v.NAME` for each trainable parameter.
fn moment_bits(trainer: &mut Trainer) -> BTreeMap<String, Vec<u32>> {
    let mut names = vec![];
    trainer.net.visit_params(&mut |p| {
        if p.kind == ParamKind::Trainable {
            names.push(p.full_name());
        }
    });
    let (m, v) = trainer.adam.moments();
    let mut out = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        out.insert(
            format!("adam.m.{name}"),
            m[i].iter().map(|x| x.to_bits()).collect(),
        );
        out.insert(
            format!("adam.v.{name}"),
            v[i].iter().map(|x| x.to_bits()).collect(),
        );
    }
    out
}

fn steps(trainer: &mut Trainer, data: &Dataset, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| trainer.step(data).expect("finite loss").to_bits())
        .collect()
}

#[test]
fn saved_tensors_read_back_bit_exact() {
    let data = small_mnist(64);
    let dir = scratch("ckpt", "roundtrip");
    for variant in Variant::ALL {
        let cfg = config(variant, 10, 8);
        let mut trainer = Trainer::new(&cfg, data.train.len());
        // A few steps so that moments and moving statistics are far from their initial values.
        steps(&mut trainer, &data.train, 3);
        let path = dir.join(format!("{variant}.safetensors"));
        save_trainer(&path, &mut trainer, &cfg).unwrap();
        let want = param_bits(&mut trainer.net);
        let want_moments = moment_bits(&mut trainer);

        // Our loader, weights only.
        let (mut net, info) = load_network(&path, Exec::default()).unwrap();
        assert_eq!(param_bits(&mut net), want, "{variant}");
        assert_eq!(
            (info.variant, info.steps, info.format_version),
            (variant, 3, 2)
        );
        assert!(info.has_training_state);
        assert_eq!(read_info(&path).unwrap(), info);

        // Our loader, with the training state.
        let (mut resumed, rcfg) = load_trainer(&path, Exec::default()).unwrap();
        assert_eq!(param_bits(&mut resumed.net), want);
        assert_eq!(moment_bits(&mut resumed), want_moments);
        assert_eq!(resumed.steps(), 3);
        assert_eq!(resumed.adam.steps(), 3);
        assert_eq!(
            (rcfg.variant, rcfg.batches, rcfg.batch_size, rcfg.seed),
            (variant, 10, 8, 7)
        );
        assert_eq!(rcfg.adam, cfg.adam);

        // The safetensors crate directly: names, F32, shapes and bits as the network has them.
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        assert_eq!(meta["format"], "bnconv");
        assert_eq!(meta["variant"], variant.name());
        assert_eq!(meta["steps"], "3");
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        let mut expected: Vec<String> = want
            .keys()
            .cloned()
            .chain(want_moments.keys().cloned())
            .chain(["sampler.order".to_string()])
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        for (name, (shape, bits)) in want.iter() {
            let t = st.tensor(name).unwrap();
            assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &shape[..]), "{name}");
            let file_bits: Vec<u32> = t
                .data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(&file_bits, bits, "{name}");
        }
        let order = st.tensor("sampler.order").unwrap();
        assert_eq!(
            (order.dtype(), order.shape()),
            (Dtype::U64, &[data.train.len()][..])
        );
    }
}

#[test]
fn names_and_layouts_are_the_documented_ones() {
    let dir = scratch("ckpt", "names");
    let path = dir.join("bn.safetensors");
    let mut net = seed_network(Variant::Bn, 1, Exec::default());
    save_network(&path, &mut net, Variant::Bn, 0).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    assert_eq!(shape("conv01.weight"), [3, 3, 1, 4]);
    assert_eq!(shape("conv07.weight"), [3, 3, 24, 28]);
    assert_eq!(shape("bn07.gamma"), [28]);
    assert_eq!(shape("bn07.moving_mean"), [28]);
    assert_eq!(shape("bn07.moving_var"), [28]);
    assert_eq!(shape("conv19.weight"), [3, 3, 72, 76]);
    assert_eq!(shape("fc1.weight"), [76, 100]);
    assert_eq!(shape("bn_fc1.beta"), [100]);
    assert_eq!(shape("fc2.weight"), [100, 10]);
    assert_eq!(shape("fc2.bias"), [10]);
    // 19 convs + fc1 + fc2 weights, 20 BNs x 4, the logits bias; no training state.
    assert_eq!(st.len(), 21 + 80 + 1);
    assert!(st.tensor("conv07.bias").is_err());
    assert!(st.tensor("sampler.order").is_err());
}

/// Trains `total` steps without interruption and as `split` + the rest through a checkpoint;
/// asserts that losses, weights, statistics and Adam moments agree to the bit.
fn assert_resume_matches(
    variant: Variant,
    data: &Dataset,
    batch: usize,
    total: usize,
    split: usize,
) {
    let cfg = config(variant, total, batch);
    let mut straight = Trainer::new(&cfg, data.len());
    let straight_losses = steps(&mut straight, data, total);

    let dir = scratch("ckpt", "resume");
    let path = dir.join(format!("{variant}-{batch}-{split}.safetensors"));
    let mut first = Trainer::new(&cfg, data.len());
    let mut losses = steps(&mut first, data, split);
    save_trainer(&path, &mut first, &cfg).unwrap();
    drop(first);
    let (mut second, rcfg) = load_trainer(&path, Exec::default()).unwrap();
    assert_eq!(rcfg.batches, total);
    losses.extend(steps(&mut second, data, total - split));

    let what = format!("{variant}, batch {batch}, {split}+{}", total - split);
    assert_eq!(losses, straight_losses, "step losses, {what}");
    assert_eq!(
        param_bits(&mut second.net),
        param_bits(&mut straight.net),
        "weights and statistics, {what}"
    );
    assert_eq!(
        moment_bits(&mut second),
        moment_bits(&mut straight),
        "Adam moments, {what}"
    );
    assert_eq!(second.adam.steps(), straight.adam.steps());
}

#[test]
fn resumed_run_is_bitwise_identical_to_an_uninterrupted_one() {
    // The brief's case: bn, 6 steps split 3 + 3, on real MNIST images.
    let data = small_mnist(55);
    assert_resume_matches(Variant::Bn, &data.train, 8, 6, 3);
    // Splits at an exact epoch end (5 x 11 = 55) and just after a batch that crossed into the
    // next epoch (6 x 11 = 66 > 55): the reshuffle state must carry over too.
    assert_resume_matches(Variant::Bn, &data.train, 11, 8, 5);
    assert_resume_matches(Variant::Bn, &data.train, 11, 8, 6);
    assert_resume_matches(Variant::Plain, &data.train, 8, 6, 3);
}

#[test]
fn resumed_protocol_logs_on_the_same_schedule_and_ends_identically() {
    // 60 batches: training-batch log lines at 25 and 50, validation at 0; split at 30.
    let data = small_mnist(300);
    let cfg = config(Variant::Bn, 60, 8);
    let mut straight = Trainer::new(&cfg, data.train.len());
    let full = continue_protocol(&cfg, &data, &mut straight, &mut |_| {}).unwrap();

    let dir = scratch("ckpt", "protocol");
    let path = dir.join("half.safetensors");
    let mut first = Trainer::new(&cfg, data.train.len());
    let half_cfg = TrainConfig {
        batches: 30,
        ..cfg.clone()
    };
    let head = continue_protocol(&half_cfg, &data, &mut first, &mut |_| {}).unwrap();
    save_trainer(&path, &mut first, &half_cfg).unwrap();
    let (mut second, rcfg) = load_trainer(&path, Exec::default()).unwrap();
    assert_eq!(rcfg.batches, 30, "the saved run's own length");
    let tail_cfg = TrainConfig {
        batches: 60,
        eval_batch: cfg.eval_batch,
        ..rcfg
    };
    let tail = continue_protocol(&tail_cfg, &data, &mut second, &mut |_| {}).unwrap();

    assert_eq!((head.first_step, tail.first_step), (0, 30));
    assert_eq!(tail.step_losses.len(), 30);
    assert_eq!(tail.timing.train_steps, 30);
    let joined: Vec<u32> = head
        .step_losses
        .iter()
        .chain(&tail.step_losses)
        .map(|l| l.to_bits())
        .collect();
    let straight_losses: Vec<u32> = full.step_losses.iter().map(|l| l.to_bits()).collect();
    assert_eq!(joined, straight_losses);
    let mut log = head.log.clone();
    log.extend(tail.log.iter().cloned());
    assert_eq!(log, full.log, "the same lines at the same batch numbers");
    assert_eq!(
        tail.log.iter().map(|l| l.batch).collect::<Vec<_>>(),
        [50],
        "only the resumed part's schedule"
    );
    assert_eq!(
        tail.final_validation.loss.to_bits(),
        full.final_validation.loss.to_bits()
    );
    assert_eq!(tail.test.accuracy.to_bits(), full.test.accuracy.to_bits());
    assert_eq!(param_bits(&mut second.net), param_bits(&mut straight.net));

    // Nothing left to do, or a different batch size: refused, not silently run.
    let mut done = load_trainer(&path, Exec::default()).unwrap().0;
    let err = continue_protocol(&half_cfg, &data, &mut done, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already taken 30 steps"), "{err}");
    let other_data = small_mnist(200);
    let err = continue_protocol(&cfg, &other_data, &mut done, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("covers 300 training images"),
        "{err}"
    );
    let other_batch = TrainConfig {
        batch_size: 16,
        ..cfg
    };
    let err = continue_protocol(&other_batch, &data, &mut done, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("batches of 8"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Bad files: each asserts the exact error variant.

/// A trained bn checkpoint with its training state, shared by the error tests.
fn good_checkpoint(dir: &Path) -> PathBuf {
    let data = small_mnist(64);
    let cfg = config(Variant::Bn, 4, 8);
    let mut trainer = Trainer::new(&cfg, data.train.len());
    steps(&mut trainer, &data.train, 2);
    let path = dir.join("good.safetensors");
    save_trainer(&path, &mut trainer, &cfg).unwrap();
    path
}

fn expect_err<T>(r: Result<T, CheckpointError>) -> CheckpointError {
    let Err(e) = r else {
        panic!("the checkpoint should be rejected")
    };
    assert!(
        e.to_string().starts_with("checkpoint "),
        "names the file: {e}"
    );
    e
}

#[test]
fn unreadable_and_corrupt_files() {
    let dir = scratch("ckpt", "corrupt");
    let good = good_checkpoint(&dir);
    let bytes = std::fs::read(&good).unwrap();

    let missing = dir.join("absent.safetensors");
    match expect_err(load_network(&missing, Exec::default())) {
        CheckpointError::Io { path, .. } => assert_eq!(path, missing),
        e => panic!("expected Io, got {e:?}"),
    }

    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", vec![]),
        ("truncated-in-header", bytes[..100].to_vec()),
        ("truncated-in-data", bytes[..bytes.len() / 2].to_vec()),
        ("one-byte-short", bytes[..bytes.len() - 1].to_vec()),
        (
            "random",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
    ];
    for (name, content) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, content).unwrap();
        for err in [
            expect_err(load_network(&path, Exec::default())),
            expect_err(load_trainer(&path, Exec::default())),
        ] {
            assert!(
                matches!(err, CheckpointError::Corrupt { .. }),
                "{name}: expected Corrupt, got {err:?}"
            );
            assert!(err.to_string().contains("truncated or corrupt"), "{err}");
        }
    }

    // A valid safetensors file that is not a checkpoint (a golden fixture).
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/adam.safetensors"
    ));
    assert!(matches!(
        expect_err(load_network(fixture, Exec::default())),
        CheckpointError::Format { .. }
    ));
    // A newer format version.
    let newer = dir.join("newer.safetensors");
    rewrite(&good, &newer, |_, meta| {
        meta.insert("format_version".into(), "3".into());
    });
    let err = expect_err(load_network(&newer, Exec::default()));
    assert!(matches!(err, CheckpointError::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("format version 3"), "{err}");
}

/// Every header byte, one at a time (the length prefix and the whole JSON: tensor names, dtypes,
/// shapes, offsets, the metadata and its digests), and the first and last data byte of every
/// tensor, each changed to a neighbouring value (`b ^ 1`: a digit to another digit, a quote or
/// brace to another character): each mutated file is rejected with an error naming it, never
/// loaded and never a panic.
///
/// The bytes are checked in memory by [`Checkpoint::check`], which is all [`Checkpoint::read`]
/// does after reading the file (so the loop writes no files, and runs on every core); every
/// 997th mutation also goes through `load_trainer` on disk, which reads everything a resume
/// needs.
#[test]
fn every_header_byte_and_tensor_mutation_is_rejected_never_a_panic() {
    use rayon::prelude::*;
    let dir = scratch("ckpt", "mutate");
    let good = good_checkpoint(&dir);
    let bytes = std::fs::read(&good).unwrap();
    let path = dir.join("mutated.safetensors");
    assert!(Checkpoint::check(&path, &bytes, Verify::Digests).is_ok());
    let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut positions: Vec<usize> = (0..header_len).collect();
    for (_, view) in SafeTensors::deserialize(&bytes).unwrap().tensors() {
        let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        positions.extend([start, start + view.data().len() - 1]);
    }
    let rejected = |pos: usize, result: Result<(), CheckpointError>| match result {
        Ok(()) => false,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("mutated.safetensors"),
                "byte {pos}: the error names the file: {message}"
            );
            true
        }
    };
    let chunk = positions.len().div_ceil(rayon::current_num_threads() * 4);
    let loaded: Vec<usize> = positions
        .par_chunks(chunk)
        .flat_map_iter(|positions| {
            let mut bytes = bytes.clone();
            positions
                .iter()
                .filter(|&&pos| {
                    bytes[pos] ^= 1;
                    let checked = Checkpoint::check(&path, &bytes, Verify::Digests);
                    bytes[pos] ^= 1;
                    !rejected(pos, checked.map(|_| ()))
                })
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        loaded.is_empty(),
        "{} of {} mutated files loaded (header {header_len} bytes); changed bytes: {:?}",
        loaded.len(),
        positions.len(),
        &loaded[..loaded.len().min(20)]
    );
    let mut bytes = bytes;
    for &pos in positions.iter().step_by(997) {
        bytes[pos] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        bytes[pos] ^= 1;
        let result = load_trainer(&path, Exec::default()).map(|_| ());
        assert!(rejected(pos, result), "byte {pos}: load_trainer loaded it");
    }
}

#[test]
fn wrong_network_shape_or_variant() {
    let dir = scratch("ckpt", "shape");
    let good = good_checkpoint(&dir);

    // A bn checkpoint loaded into the plain network and the other way round.
    let mut plain = seed_network(Variant::Plain, 3, Exec::default());
    let before = param_bits(&mut plain);
    match expect_err(load_into(&good, &mut plain)) {
        CheckpointError::MissingTensor { name, .. } => assert_eq!(name, "conv01.bias"),
        e => panic!("expected MissingTensor, got {e:?}"),
    }
    assert_eq!(
        param_bits(&mut plain),
        before,
        "a failed load changes nothing"
    );
    let plain_path = dir.join("plain.safetensors");
    save_network(&plain_path, &mut plain, Variant::Plain, 0).unwrap();
    let mut bn = seed_network(Variant::Bn, 3, Exec::default());
    match expect_err(load_into(&plain_path, &mut bn)) {
        CheckpointError::MissingTensor { name, .. } => assert_eq!(name, "bn01.gamma"),
        e => panic!("expected MissingTensor, got {e:?}"),
    }

    // A layer of another width.
    let narrow = dir.join("narrow.safetensors");
    rewrite(&good, &narrow, |t, _| {
        t.insert(
            "conv07.weight".into(),
            (Dtype::F32, vec![3, 3, 24, 20], vec![0; 3 * 3 * 24 * 20 * 4]),
        );
    });
    let err = expect_err(load_network(&narrow, Exec::default()));
    match &err {
        CheckpointError::Shape {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "conv07.weight");
            assert_eq!(
                (&expected[..], &found[..]),
                (&[3, 3, 24, 28][..], &[3, 3, 24, 20][..])
            );
        }
        e => panic!("expected Shape, got {e:?}"),
    }
    assert!(err.to_string().contains("[3, 3, 24, 20]"), "{err}");

    // A moment whose shape does not match its parameter.
    let bad_moment = dir.join("bad-moment.safetensors");
    rewrite(&good, &bad_moment, |t, _| {
        t.insert(
            "adam.v.bn07.beta".into(),
            (Dtype::F32, vec![27], vec![0; 27 * 4]),
        );
    });
    assert!(matches!(
        expect_err(load_trainer(&bad_moment, Exec::default())),
        CheckpointError::Shape { name, .. } if name == "adam.v.bn07.beta"
    ));
}

#[test]
fn missing_unexpected_and_wrongly_typed_tensors() {
    let dir = scratch("ckpt", "tensors");
    let good = good_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");

    rewrite(&good, &edited, |t, _| {
        t.remove("bn07.moving_var");
    });
    match expect_err(load_network(&edited, Exec::default())) {
        CheckpointError::MissingTensor { name, .. } => assert_eq!(name, "bn07.moving_var"),
        e => panic!("expected MissingTensor, got {e:?}"),
    }

    rewrite(&good, &edited, |t, _| {
        t.insert("conv20.weight".into(), (Dtype::F32, vec![1], vec![0; 4]));
    });
    match expect_err(load_network(&edited, Exec::default())) {
        CheckpointError::UnexpectedTensor { name, .. } => assert_eq!(name, "conv20.weight"),
        e => panic!("expected UnexpectedTensor, got {e:?}"),
    }

    rewrite(&good, &edited, |t, _| {
        let (_, shape, data) = t.remove("conv07.weight").unwrap();
        let wide: Vec<u8> = data
            .chunks_exact(4)
            .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) as f64).to_le_bytes())
            .collect();
        t.insert("conv07.weight".into(), (Dtype::F64, shape, wide));
    });
    match expect_err(load_network(&edited, Exec::default())) {
        CheckpointError::Dtype {
            name,
            expected,
            found,
            ..
        } => assert_eq!(
            (name.as_str(), expected, found),
            ("conv07.weight", Dtype::F32, Dtype::F64)
        ),
        e => panic!("expected Dtype, got {e:?}"),
    }

    rewrite(&good, &edited, |t, _| {
        t.remove("adam.m.conv01.weight");
    });
    // Evaluation does not need the moments; resuming does.
    load_network(&edited, Exec::default()).unwrap();
    match expect_err(load_trainer(&edited, Exec::default())) {
        CheckpointError::MissingTensor { name, .. } => assert_eq!(name, "adam.m.conv01.weight"),
        e => panic!("expected MissingTensor, got {e:?}"),
    }
}

#[test]
fn resuming_needs_a_consistent_training_state() {
    let dir = scratch("ckpt", "state");
    let good = good_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");

    // Weights only.
    let mut net = load_network(&good, Exec::default()).unwrap().0;
    let weights = dir.join("weights.safetensors");
    save_network(&weights, &mut net, Variant::Bn, 2).unwrap();
    assert!(matches!(
        expect_err(load_trainer(&weights, Exec::default())),
        CheckpointError::NoTrainingState { .. }
    ));
    // ... and then training tensors are not expected either.
    rewrite(&good, &edited, |_, meta| {
        meta.remove("training_state");
    });
    assert!(matches!(
        expect_err(load_network(&edited, Exec::default())),
        CheckpointError::UnexpectedTensor { .. }
    ));

    // A data order that is not a permutation.
    rewrite(&good, &edited, |t, _| {
        let order = &mut t.get_mut("sampler.order").unwrap().2;
        order[..8].copy_from_slice(&3u64.to_le_bytes());
        order[8..16].copy_from_slice(&3u64.to_le_bytes());
    });
    let err = expect_err(load_trainer(&edited, Exec::default()));
    assert!(
        matches!(err, CheckpointError::InvalidState { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("permutation"), "{err}");

    // The order stored with the wrong element type.
    rewrite(&good, &edited, |t, _| {
        t.get_mut("sampler.order").unwrap().0 = Dtype::I64;
    });
    assert!(matches!(
        expect_err(load_trainer(&edited, Exec::default())),
        CheckpointError::Dtype {
            found: Dtype::I64,
            ..
        }
    ));

    // Malformed JSON, and settings that cannot run.
    for (json, needle) in [
        ("{", "training_state metadata"),
        ("{\"seed\": 1}", "training_state metadata"),
    ] {
        rewrite(&good, &edited, |_, meta| {
            meta.insert("training_state".into(), json.into());
        });
        let err = expect_err(load_trainer(&edited, Exec::default()));
        assert!(
            matches!(err, CheckpointError::InvalidState { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    }
    let state = |edit: &dyn Fn(&mut serde_json::Value)| {
        rewrite(&good, &edited, |_, meta| {
            let mut v: serde_json::Value = serde_json::from_str(&meta["training_state"]).unwrap();
            edit(&mut v);
            meta.insert("training_state".into(), v.to_string());
        });
        expect_err(load_trainer(&edited, Exec::default()))
    };
    for (edit, needle) in [
        (
            &(|v: &mut serde_json::Value| v["batch_size"] = 0.into())
                as &dyn Fn(&mut serde_json::Value),
            "batch size 0",
        ),
        (&|v| v["lr"] = (-1.0).into(), "learning rate"),
        (&|v| v["beta2"] = 1.5.into(), "Adam settings"),
        (&|v| v["sampler_position"] = 65.into(), "past the end"),
        (&|v| v["sampler_rng_seed"] = "zz".into(), "64 hex digits"),
        (
            &|v| v["sampler_rng_word_pos"] = "-4".into(),
            "unsigned integer",
        ),
        (&|v| v["adam_step"] = 9.into(), "Adam updates"),
    ] {
        let err = state(edit);
        assert!(
            matches!(err, CheckpointError::InvalidState { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn saving_to_a_missing_directory_fails_and_writes_nothing() {
    let dir = scratch("ckpt", "save");
    let mut net = seed_network(Variant::Bn, 1, Exec::default());
    let target = dir.join("absent").join("x.safetensors");
    match save_network(&target, &mut net, Variant::Bn, 0).unwrap_err() {
        CheckpointError::Io { path, action, .. } => {
            assert_eq!((path, action), (target, "write"))
        }
        e => panic!("expected Io, got {e:?}"),
    }
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
}
