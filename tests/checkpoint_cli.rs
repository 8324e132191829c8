//! End-to-end checkpoints through the `bnconv` binary: `train --save`, `eval --checkpoint`,
//! `train --resume` (bitwise equal to an uninterrupted run), `compare --save` file names, and
//! bad paths or files rejected before any work.

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::Path;
#[path = "support/binary.rs"]
mod binary;
#[path = "support/small_mnist.rs"]
mod small_mnist;
use binary::{bnconv, scratch};
use small_mnist::small_data;

/// Runs `bnconv ARGS --data <small MNIST>` and expects success.
fn ok(args: &[&str]) -> String {
    let args = [args, &["--data", small_data()]].concat();
    let out = bnconv(&args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every tensor of a checkpoint as raw bytes, and its metadata.
fn tensors(path: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap().into_iter().collect();
    let t = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    (t, meta)
}

#[test]
fn train_save_then_eval_reports_the_same_accuracy() {
    let dir = scratch("ckpt-cli", "eval");
    let (ckpt, train_json, eval_json) = (
        dir.join("bn.safetensors"),
        dir.join("train.json"),
        dir.join("eval.json"),
    );
    let out = ok(&[
        "train",
        "--variant",
        "bn",
        "--batches",
        "5",
        "--threads",
        "2",
        "--save",
        s(&ckpt),
        "--json",
        s(&train_json),
    ]);
    assert!(
        out.contains(&format!("saved checkpoint {} (batch 5)", ckpt.display())),
        "{out}"
    );
    let out = ok(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--threads",
        "2",
        "--json",
        s(&eval_json),
    ]);
    for needle in [
        "(bn, 5 training steps)",
        "Validation loss: ",
        "Validation accuracy: ",
        "Test accuracy: ",
        "Accuracy on 100 samples: ",
        "eval img/s: ",
    ] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
    let run = &json(&train_json)["runs"][0];
    let eval = json(&eval_json);
    assert_eq!(eval["variant"], "bn");
    assert_eq!(eval["steps"], 5);
    assert_eq!(eval["threads"], 2);
    assert_eq!(eval["validation"]["images"], 5000);
    assert_eq!(eval["test"]["images"], 500);
    // The loaded weights and moving statistics evaluate exactly as the trained network did.
    for (e, r) in [("validation", "final_validation"), ("test", "test")] {
        for key in ["loss", "accuracy"] {
            assert_eq!(eval[e][key], run[r][key], "{e}.{key}");
        }
    }
    assert_eq!(
        eval["single_sample_accuracy"],
        run["single_sample_accuracy"]
    );
    assert!(eval["eval_images_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn resume_ends_bitwise_where_an_uninterrupted_run_does() {
    let dir = scratch("ckpt-cli", "resume");
    let (full, half, resumed) = (
        dir.join("full.safetensors"),
        dir.join("half.safetensors"),
        dir.join("resumed.safetensors"),
    );
    let (full_json, resumed_json) = (dir.join("full.json"), dir.join("resumed.json"));
    // 64 training images: every step of 64 starts a new epoch, so the reshuffling generator's
    // state is part of what must carry over.
    let common = ["--threads", "2", "--quiet"];
    ok(&[
        &[
            "train",
            "--batches",
            "6",
            "--save",
            s(&full),
            "--json",
            s(&full_json),
        ][..],
        &common,
    ]
    .concat());
    ok(&[
        &["train", "--batches", "3", "--save", s(&half)][..],
        &common,
    ]
    .concat());
    // Resumed with another thread count and BN path: neither changes any bit.
    let out = ok(&[
        "train",
        "--resume",
        s(&half),
        "--batches",
        "6",
        "--threads",
        "1",
        "--bn",
        "unfused",
        "--save",
        s(&resumed),
        "--json",
        s(&resumed_json),
    ]);
    assert!(out.contains("(resumed at batch 3)"), "{out}");

    let (want, want_meta) = tensors(&full);
    let (got, got_meta) = tensors(&resumed);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "tensor {name} differs after resuming");
    }
    assert_eq!(want_meta["steps"], "6");
    assert_eq!(got_meta["steps"], "6");

    let full_run = &json(&full_json)["runs"][0];
    let resumed_run = &json(&resumed_json)["runs"][0];
    assert_eq!(resumed_run["first_step"], 3);
    assert_eq!(resumed_run["batches"], 6);
    assert_eq!(resumed_run["timing"]["train_steps"], 3);
    let losses = |run: &serde_json::Value| run["step_losses"].as_array().unwrap().clone();
    assert_eq!(losses(resumed_run)[..], losses(full_run)[3..]);
    assert_eq!(
        resumed_run["test"]["accuracy"],
        full_run["test"]["accuracy"]
    );
}

#[test]
fn compare_save_writes_one_checkpoint_per_variant() {
    let dir = scratch("ckpt-cli", "compare");
    let base = dir.join("run.safetensors");
    ok(&[
        "compare",
        "--variants",
        "plain,bn-lowlevel",
        "--batches",
        "1",
        "--threads",
        "2",
        "--quiet",
        "--save",
        s(&base),
    ]);
    for variant in ["plain", "bn-lowlevel"] {
        let path = dir.join(format!("run.{variant}.safetensors"));
        let (t, meta) = tensors(&path);
        assert_eq!(meta["variant"], variant);
        assert_eq!(t.contains_key("conv01.bias"), variant == "plain");
    }
    assert!(!base.exists(), "no file under the unsplit name");
}

fn assert_rejected_early(args: &[&str], needle: &str) {
    let out = bnconv(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    // Nothing was loaded or trained: the first line of work is the data summary.
    assert!(
        out.stdout.is_empty(),
        "{args:?} started work:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_checkpoint_paths_and_files_are_rejected_before_any_work() {
    let dir = scratch("ckpt-cli", "bad");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let under_file = file.join("x.safetensors");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\0\0\0\0\0\0\0{\"a\":").unwrap();
    let one_step = dir.join("one.safetensors");

    assert_rejected_early(
        &["train", "--save", "/nonexistent-dir/x.safetensors"],
        "does not exist",
    );
    assert_rejected_early(&["train", "--save", s(&dir)], "is a directory");
    assert_rejected_early(&["train", "--save", s(&under_file)], "is not a directory");
    assert_rejected_early(
        &[
            "--variants",
            "bn",
            "--save",
            "/nonexistent-dir/x.safetensors",
        ],
        "does not exist",
    );
    assert_rejected_early(
        &[
            "compare",
            "--variants",
            "bn,bn",
            "--save",
            s(&dir.join("x.safetensors")),
        ],
        "listed twice",
    );
    assert_rejected_early(
        &["train", "--resume", s(&dir.join("absent.safetensors"))],
        "could not read",
    );
    assert_rejected_early(&["train", "--resume", s(&garbage)], "truncated or corrupt");
    assert_rejected_early(
        &["eval", "--checkpoint", s(&garbage)],
        "truncated or corrupt",
    );
    assert_rejected_early(&["eval"], "--checkpoint");
    for flag in [
        ["--variant", "plain"],
        ["--batch-size", "32"],
        ["--lr", "0.01"],
        ["--seed", "3"],
    ] {
        assert_rejected_early(
            &["train", "--resume", s(&garbage), flag[0], flag[1]],
            "cannot be used with",
        );
    }

    ok(&[
        "train",
        "--batches",
        "1",
        "--threads",
        "2",
        "--quiet",
        "--save",
        s(&one_step),
    ]);
    assert_rejected_early(
        &["train", "--resume", s(&one_step), "--batches", "1"],
        "already taken 1 steps",
    );
    assert_rejected_early(
        &[
            "eval",
            "--checkpoint",
            s(&one_step),
            "--json",
            "/nonexistent-dir/e.json",
        ],
        "does not exist",
    );
}
