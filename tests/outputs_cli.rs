//! What the binary writes, end to end (issues 21 and 23):
//! - identical runs write byte-identical checkpoints (whatever `--threads`) and JSON reports
//!   that differ only in the documented timing fields; JSON keys are sorted and f32 figures are
//!   their shortest decimals (`0.002`);
//! - output paths behave like a shell's redirection: `-` is standard output (the report then
//!   goes to stderr), a symlink keeps pointing at its replaced target, a FIFO is written into;
//! - SIGTERM/SIGINT stop a run at a step boundary, save, say how to resume, exit 143/130, and
//!   resuming ends bitwise where the uninterrupted run does; `--save-every` saves on the way;
//! - a changed byte or a NaN in a checkpoint is refused by `eval` and `--resume` (a changed
//!   byte is accepted with `--no-verify`).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
#[path = "support/binary.rs"]
mod binary;
#[path = "support/checkpoint_edit.rs"]
mod checkpoint_edit;
#[path = "support/small_mnist.rs"]
mod small_mnist;
use binary::{bnconv, scratch};
use small_mnist::small_data;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `bnconv ARGS --data <small MNIST>`, expects success, returns (stdout, stderr).
fn ok(args: &[&str]) -> (String, String) {
    let args = [args, &["--data", small_data()]].concat();
    let out = bnconv(&args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// Runs `bnconv ARGS --data <small MNIST>`, expects failure, returns stderr.
fn fails(args: &[&str]) -> String {
    let args = [args, &["--data", small_data()]].concat();
    let out = bnconv(&args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON report without the fields documented as timings (docs/outputs.md).
fn without_timings(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    for key in [
        "peak_gflops_per_core",
        "peak_share",
        "peak_rss_bytes",
        "eval_images_per_second",
    ] {
        obj.remove(key);
    }
    for section in ["runs"] {
        if let Some(runs) = obj.get_mut(section).and_then(Value::as_array_mut) {
            for run in runs {
                let run = run.as_object_mut().unwrap();
                run.remove("timing");
                for set in ["final_validation", "test"] {
                    run[set].as_object_mut().unwrap().remove("seconds");
                }
            }
        }
    }
    for set in ["validation", "test"] {
        if let Some(e) = obj.get_mut(set).and_then(Value::as_object_mut) {
            e.remove("seconds");
        }
    }
    v
}

/// Every number in the timing-free report has at most 9 significant digits: f32 figures are
/// printed as the shortest decimal that reads back, never widened to f64 (`0.0020000000949949026`).
fn assert_short_numbers(report: &Value) {
    fn visit(v: &Value) {
        match v {
            Value::Number(n) => {
                let text = n.to_string();
                let mantissa = text
                    .split(['e', 'E'])
                    .next()
                    .unwrap()
                    .replace(['-', '.'], "");
                let digits = mantissa.trim_start_matches('0');
                assert!(digits.len() <= 9, "widened number {text}");
            }
            Value::Array(items) => items.iter().for_each(visit),
            Value::Object(map) => map.values().for_each(visit),
            _ => {}
        }
    }
    visit(&without_timings(report.clone()));
}

/// Keys of every object appear in sorted order in the text of `v`'s file.
fn assert_sorted_keys(v: &Value) {
    match v {
        Value::Object(map) => {
            let keys: Vec<&String> = map.keys().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
            map.values().for_each(assert_sorted_keys);
        }
        Value::Array(items) => items.iter().for_each(assert_sorted_keys),
        _ => {}
    }
}

#[test]
fn identical_runs_write_identical_checkpoints_and_json() {
    let dir = scratch("outputs", "repro");
    let mut checkpoints = Vec::new();
    let mut reports = Vec::new();
    for (i, threads) in ["1", "1", "2"].into_iter().enumerate() {
        let (ckpt, json) = (dir.join(format!("{i}.st")), dir.join(format!("{i}.json")));
        ok(&[
            "train",
            "--batches",
            "3",
            "--batch-size",
            "16",
            "--threads",
            threads,
            "--quiet",
            "--save",
            s(&ckpt),
            "--json",
            s(&json),
        ]);
        checkpoints.push(std::fs::read(&ckpt).unwrap());
        let text = std::fs::read_to_string(&json).unwrap();
        // serde_json keeps the file's key order only with its preserve_order feature; check the
        // text itself instead.
        let positions: Vec<usize> = ["\"bnconv_version\"", "\"peak_gflops_per_core\"", "\"runs\""]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text:.300}");
        assert!(text.contains("\"lr\": 0.002"), "the learning rate as given");
        let report = serde_json::from_str::<Value>(&text).unwrap();
        assert_short_numbers(&report);
        reports.push(report);
    }
    assert!(checkpoints[0] == checkpoints[1], "two identical runs");
    assert!(checkpoints[0] == checkpoints[2], "1 vs 2 threads");
    assert_eq!(
        without_timings(reports[0].clone()),
        without_timings(reports[1].clone())
    );
    assert_sorted_keys(&reports[0]);
}

#[test]
fn dash_is_standard_output_and_the_report_goes_to_stderr() {
    let (stdout, stderr) = ok(&[
        "train",
        "--batches",
        "2",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--json",
        "-",
    ]);
    let v: Value = serde_json::from_str(&stdout).expect("stdout is exactly the JSON report");
    assert_eq!(v["runs"][0]["batches"], 2);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(stderr.contains("Final test accuracy"), "{stderr}");
    assert!(stderr.contains("peak memory (resident set)"), "{stderr}");
    assert!(!Path::new("-").exists(), "no file named -");
    let err = fails(&["train", "--batches", "1", "--save", "-"]);
    assert!(err.contains("must be a file"), "{err}");
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_and_fifos_written_into() {
    let dir = scratch("outputs", "paths");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::fs::write(dir.join("real/report.json"), "old").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink("real/report.json", &link).unwrap();
    let ckpt_link = dir.join("ckpt.st");
    std::os::unix::fs::symlink("real/ckpt.st", &ckpt_link).unwrap();
    let fifo = dir.join("fifo.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The FIFO's reader: opening blocks until bnconv opens it for writing.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    ok(&[
        "train",
        "--batches",
        "1",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--quiet",
        "--json",
        s(&link),
        "--save",
        s(&ckpt_link),
    ]);
    ok(&[
        "eval",
        "--checkpoint",
        s(&ckpt_link),
        "--threads",
        "1",
        "--json",
        s(&fifo),
    ]);
    for l in [&link, &ckpt_link] {
        assert!(std::fs::symlink_metadata(l)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("real/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["runs"][0]["batches"], 1);
    assert!(dir.join("real/ckpt.st").is_file());
    let through_fifo: Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(through_fifo["integrity"], "verified");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "still a FIFO"
    );
}

/// The final parameters' digest of a run's JSON report.
fn digest(json: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    v["runs"][0]["parameters_sha256"].clone()
}

#[cfg(unix)]
#[test]
fn a_signal_stops_saves_and_the_resumed_run_ends_bitwise_as_the_uninterrupted_one() {
    let dir = scratch("outputs", "signal");
    let batches = "150";
    let common = [
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--data",
        small_data(),
    ];
    let straight = dir.join("straight.json");
    ok(&[
        &[
            "train",
            "--batches",
            batches,
            "--quiet",
            "--json",
            s(&straight),
        ],
        &common[..4],
    ]
    .concat());

    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let ckpt = dir.join(format!("{signal}.st"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_bnconv"))
            .args([
                "train",
                "--batches",
                batches,
                "--save",
                s(&ckpt),
                "--save-every",
                "10",
            ])
            .args(common)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until it has trained a while (the log line of batch 25), then signal it.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            if line.unwrap().starts_with("Batch: 25:") {
                break;
            }
        }
        assert!(ckpt.is_file(), "--save-every 10 saved by batch 25");
        let sent = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        lines.for_each(drop);
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains("saved the resumable checkpoint"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("bnconv train --resume {}", s(&ckpt))),
            "{stderr}"
        );
        let stopped_at: usize = stderr
            .split("after batch ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!((26..150).contains(&stopped_at), "{stderr}");

        // Resuming without --batches continues to the run's recorded total.
        let resumed = dir.join(format!("{signal}.json"));
        ok(&[
            &[
                "train",
                "--resume",
                s(&ckpt),
                "--quiet",
                "--json",
                s(&resumed),
            ],
            &common[2..4],
        ]
        .concat());
        let v: Value = serde_json::from_slice(&std::fs::read(&resumed).unwrap()).unwrap();
        assert_eq!(v["runs"][0]["first_step"], stopped_at);
        assert_eq!(v["runs"][0]["batches"], 150);
        assert_eq!(digest(&resumed), digest(&straight), "SIG{signal}");
    }
}

#[test]
fn changed_or_non_finite_checkpoints_are_refused_by_eval_and_resume() {
    let dir = scratch("outputs", "integrity");
    let good = dir.join("good.st");
    ok(&[
        "train",
        "--batches",
        "2",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--quiet",
        "--save",
        s(&good),
    ]);
    let bytes = std::fs::read(&good).unwrap();

    // One bit of one weight: a valid float, caught only by the digest.
    let flipped = dir.join("flipped.st");
    let mut m = bytes.clone();
    let at = m.len() - 1000;
    m[at] ^= 1;
    std::fs::write(&flipped, &m).unwrap();
    for args in [
        vec!["eval", "--checkpoint", s(&flipped)],
        vec!["train", "--resume", s(&flipped), "--batches", "3"],
    ] {
        let err = fails(&args);
        assert!(err.contains("does not match the SHA-256"), "{err}");
        assert!(err.contains("--no-verify"), "{err}");
        let (_, stderr) = ok(&[&args[..], &["--no-verify", "--threads", "1"]].concat());
        assert!(stderr.contains("digests not checked"), "{stderr}");
    }

    // A NaN, the file re-signed: refused, verified or not, naming the tensor and the count.
    let nan = dir.join("nan.st");
    checkpoint_edit::rewrite(&good, &nan, |t, _| {
        t.get_mut("conv07.weight").unwrap().2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    for args in [
        vec!["eval", "--checkpoint", s(&nan)],
        vec!["eval", "--checkpoint", s(&nan), "--no-verify"],
        vec!["train", "--resume", s(&nan), "--batches", "3"],
    ] {
        let err = fails(&args);
        assert!(
            err.contains("conv07.weight holds 1 non-finite value"),
            "{err}"
        );
    }

    // A file of the previous format (no digests) loads, with a warning.
    let old = dir.join("old.st");
    checkpoint_edit::rewrite_unsigned(&good, &old, |_, meta| {
        meta.remove("tensor_sha256");
        meta.remove("metadata_sha256");
        meta.insert("format_version".into(), "1".into());
    });
    let (_, stderr) = ok(&["eval", "--checkpoint", s(&old), "--threads", "1"]);
    assert!(stderr.contains("no digests"), "{stderr}");
}
