//! Checkpoints are byte-reproducible and tamper-evident (nn/src/checkpoint/integrity.rs):
//! - the same training state saves to the same bytes, whatever the thread count;
//! - a changed byte anywhere in a tensor's data, or in the metadata, is refused naming what
//!   changed, and `Verify::Skip` loads it anyway;
//! - a NaN or an infinity in any stored float is refused naming the tensor and the count,
//!   verified or not;
//! - files of format 1 (no digests) load, reported as unverified; a format-2 file stripped of
//!   its digests does not.

use bnconv_nn::checkpoint::{
    load_network, load_trainer, save_network, save_trainer, Checkpoint, CheckpointError, Integrity,
    Verify,
};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::{Exec, Variant};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
#[path = "support/binary.rs"]
mod binary;
#[path = "support/checkpoint_edit.rs"]
mod checkpoint_edit;
use binary::scratch;
use checkpoint_edit::{rewrite, rewrite_unsigned, sign_metadata};
use std::collections::{BTreeMap, HashMap};

fn small_mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let m = Mnist::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist"
        )))
        .expect("the repository's MNIST loads");
        Mnist {
            train: m.train.slice(0..64),
            validation: m.validation.slice(0..16),
            test: m.test.slice(0..16),
        }
    })
}

fn config(variant: Variant) -> TrainConfig {
    TrainConfig {
        batches: 6,
        batch_size: 8,
        seed: 3,
        ..TrainConfig::protocol(variant)
    }
}

/// A trainer of `variant` after 3 steps on `threads` threads.
fn trained(variant: Variant, threads: usize) -> Trainer {
    let data = &small_mnist().train;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut trainer = Trainer::new(&config(variant), data.len());
        for _ in 0..3 {
            trainer.step(data).expect("a finite step");
        }
        trainer
    })
}

/// A resumable bn checkpoint after 3 steps.
fn good_checkpoint(dir: &Path) -> PathBuf {
    let path = dir.join("good.safetensors");
    save_trainer(&path, &mut trained(Variant::Bn, 1), &config(Variant::Bn)).unwrap();
    path
}

fn expect_err<T>(r: Result<T, CheckpointError>) -> CheckpointError {
    let Err(e) = r else {
        panic!("the checkpoint should be refused")
    };
    assert!(
        e.to_string().starts_with("checkpoint "),
        "names the file: {e}"
    );
    e
}

/// (name, first byte, end) of every tensor's data in the file.
fn data_ranges(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let base = bytes.as_ptr() as usize;
    let mut ranges: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - base;
            (name, start, start + view.data().len())
        })
        .collect();
    ranges.sort_by_key(|r| r.1);
    ranges
}

#[test]
fn the_same_state_saves_to_the_same_bytes_whatever_the_thread_count() {
    let dir = scratch("integrity", "bytes");
    for variant in Variant::ALL {
        let cfg = config(variant);
        let mut files = Vec::new();
        for (i, threads) in [1, 2, 1].into_iter().enumerate() {
            let path = dir.join(format!("{variant}-{i}.safetensors"));
            save_trainer(&path, &mut trained(variant, threads), &cfg).unwrap();
            files.push(std::fs::read(&path).unwrap());
        }
        assert!(files[0] == files[1], "{variant}: 1 vs 2 threads");
        assert!(files[0] == files[2], "{variant}: two identical runs");

        // Weights-only files too, each save from a fresh metadata map.
        let weights: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let path = dir.join(format!("{variant}-w{i}.safetensors"));
                let mut net = trained(variant, 1).net;
                save_network(&path, &mut net, variant, 3).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(
            weights[0] == weights[1] && weights[1] == weights[2],
            "{variant}"
        );
    }
}

#[test]
fn header_keys_are_sorted_and_the_header_is_padded_to_8_bytes() {
    let dir = scratch("integrity", "header");
    let bytes = std::fs::read(good_checkpoint(&dir)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let text = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let meta = value["__metadata__"].as_object().unwrap();
    // The order the keys appear in the text is their sorted order.
    let mut keys: Vec<&String> = meta.keys().collect();
    keys.sort();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{keys:?} in {text:.400}"
    );
    for key in [
        "format",
        "format_version",
        "metadata_sha256",
        "tensor_sha256",
        "training_state",
    ] {
        assert!(meta.contains_key(key), "{key}");
    }
    assert_eq!(meta["format_version"], "2");
}

#[test]
fn a_changed_byte_in_any_tensor_is_refused_naming_it_unless_skipped() {
    let dir = scratch("integrity", "flip");
    let good = good_checkpoint(&dir);
    let bytes = std::fs::read(&good).unwrap();
    let ranges = data_ranges(&bytes);
    assert!(ranges.len() > 100, "weights, moments and the data order");
    let path = dir.join("flipped.safetensors");
    for (name, start, end) in &ranges {
        // The lowest mantissa bit of a value in the middle (the lowest bit of a data-order
        // entry): still a finite float, still a valid file, only the digest can tell.
        let at = start + (((end - start) / 2) & !7);
        let mut m = bytes.clone();
        m[at] ^= 1;
        std::fs::write(&path, &m).unwrap();
        for err in [
            expect_err(load_trainer(&path, Exec::default())),
            expect_err(load_network(&path, Exec::default()).map(|_| ())),
        ] {
            match &err {
                CheckpointError::DigestMismatch { what, .. } => {
                    assert_eq!(what, &format!("tensor {name}"))
                }
                e => panic!("{name}: expected DigestMismatch, got {e:?}"),
            }
            assert!(err.to_string().contains("--no-verify"), "{err}");
        }
        // Skipping the check loads the changed bytes (the data order's flip may make it an
        // invalid order; that is still caught, as an invalid training state).
        let skipped = Checkpoint::read(&path, Verify::Skip).unwrap();
        assert_eq!(skipped.info().integrity, Integrity::Skipped);
        if let Err(e) = skipped.network(Exec::default()) {
            panic!("{name}: {e}");
        }
    }
}

/// A change to a checkpoint's metadata.
type MetaEdit = fn(&mut HashMap<String, String>);

#[test]
fn the_metadata_and_the_digests_themselves_are_covered() {
    let dir = scratch("integrity", "meta");
    let good = good_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");
    let edits: [(&str, MetaEdit); 4] = [
        ("steps", |m| {
            m.insert("steps".into(), "2".into());
        }),
        ("lr", |m| {
            let s = m["training_state"].replace("\"lr\":0.002", "\"lr\":0.003");
            assert_ne!(s, m["training_state"]);
            m.insert("training_state".into(), s);
        }),
        ("a tensor digest", |m| {
            let s = m["tensor_sha256"].replacen("\":\"", "\":\"0", 1);
            m.insert("tensor_sha256".into(), s);
        }),
        ("an added entry", |m| {
            m.insert("note".into(), "hello".into());
        }),
    ];
    for (what, edit) in edits {
        rewrite_unsigned(&good, &edited, |_, meta| edit(meta));
        match expect_err(load_trainer(&edited, Exec::default())) {
            CheckpointError::DigestMismatch { what: w, .. } => {
                assert_eq!(w, "the metadata", "{what}")
            }
            e => panic!("{what}: expected DigestMismatch, got {e:?}"),
        }
        Checkpoint::read(&edited, Verify::Skip).unwrap();
    }
}

#[test]
fn missing_digests() {
    let dir = scratch("integrity", "missing");
    let good = good_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");

    // Format 1, written before digests: loads, and says it could not be verified.
    rewrite_unsigned(&good, &edited, |_, meta| {
        meta.remove("tensor_sha256");
        meta.remove("metadata_sha256");
        meta.insert("format_version".into(), "1".into());
    });
    let old = Checkpoint::read(&edited, Verify::Digests).unwrap();
    assert_eq!(old.info().integrity, Integrity::NoDigests);
    assert_eq!(old.info().format_version, 1);
    old.trainer(Exec::default()).unwrap();
    let (_, info) = load_network(&edited, Exec::default()).unwrap();
    assert_eq!(info.integrity, Integrity::NoDigests);

    // Format 2 without them: stripped, refused (unless skipped). The metadata digest is
    // recomputed after removing the tensor digests, so that their absence is what is caught.
    for key in ["tensor_sha256", "metadata_sha256"] {
        rewrite_unsigned(&good, &edited, |_, meta| {
            meta.remove(key);
            if key != "metadata_sha256" {
                sign_metadata(meta);
            }
        });
        let err = expect_err(load_network(&edited, Exec::default()));
        match &err {
            CheckpointError::MissingDigest { detail, .. } => assert!(detail.contains(key)),
            e => panic!("{key}: expected MissingDigest, got {e:?}"),
        }
        assert!(err.to_string().contains("--no-verify"), "{err}");
        let skipped = Checkpoint::read(&edited, Verify::Skip).unwrap();
        assert_eq!(skipped.info().integrity, Integrity::Skipped);
        skipped.trainer(Exec::default()).unwrap();
    }

    // A tensor whose digest is not recorded, the metadata signed over the shortened list.
    rewrite_unsigned(&good, &edited, |_, meta| {
        let mut digests: BTreeMap<String, String> =
            serde_json::from_str(&meta["tensor_sha256"]).unwrap();
        digests.remove("bn05.beta").unwrap();
        meta.insert(
            "tensor_sha256".into(),
            serde_json::to_string(&digests).unwrap(),
        );
        sign_metadata(meta);
    });
    match expect_err(load_network(&edited, Exec::default())) {
        CheckpointError::MissingDigest { detail, .. } => {
            assert!(detail.contains("bn05.beta"), "{detail}")
        }
        e => panic!("expected MissingDigest, got {e:?}"),
    }

    // A digest recorded for a tensor the file does not hold (removed, everything re-signed
    // except that the old list is kept).
    rewrite_unsigned(&good, &edited, |t, meta| {
        t.remove("bn05.beta").unwrap();
        sign_metadata(meta);
    });
    match expect_err(load_network(&edited, Exec::default())) {
        CheckpointError::DigestMismatch { what, .. } => {
            assert!(what.contains("bn05.beta"), "{what}")
        }
        e => panic!("expected DigestMismatch, got {e:?}"),
    }
}

#[test]
fn non_finite_values_are_refused_naming_the_tensor_and_the_count_even_unverified() {
    let dir = scratch("integrity", "nonfinite");
    let good = good_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");
    let set = |t: &mut checkpoint_edit::Tensors, name: &str, at: usize, v: f32| {
        t.get_mut(name).unwrap().2[4 * at..4 * at + 4].copy_from_slice(&v.to_le_bytes());
    };
    let cases: [(&str, &[(usize, f32)]); 4] = [
        ("conv07.weight", &[(5, f32::NAN)]),
        ("bn_fc1.moving_var", &[(0, f32::INFINITY), (99, -f32::NAN)]),
        ("adam.v.bn03.gamma", &[(1, f32::NEG_INFINITY)]),
        ("fc2.bias", &[(9, f32::from_bits(0x7f80_0001))]),
    ];
    for (name, values) in cases {
        rewrite(&good, &edited, |t, _| {
            for &(at, v) in values {
                set(t, name, at, v);
            }
        });
        for verify in [Verify::Digests, Verify::Skip] {
            match expect_err(Checkpoint::read(&edited, verify)) {
                CheckpointError::NonFinite {
                    name: n,
                    count,
                    len,
                    ..
                } => {
                    assert_eq!((n.as_str(), count), (name, values.len()), "{verify:?}");
                    assert!(len > 0);
                }
                e => panic!("{name}: expected NonFinite, got {e:?}"),
            }
        }
        let err = expect_err(load_trainer(&edited, Exec::default()));
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains(&format!("{} non-finite", values.len())),
            "{msg}"
        );
    }
}
