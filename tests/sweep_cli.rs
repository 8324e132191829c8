//! `bnconv sweep` through the binary: every run of a sweep (two one-thread jobs at once) has the
//! figures of the same single `bnconv train` run on two threads, bit for bit (losses, log,
//! accuracies, the final weights' digest), and the printed table and JSON summary are those
//! runs' accuracies; `--json -` puts the JSON alone on standard output.

#[path = "support/binary.rs"]
mod binary;
use binary::{bnconv, bnconv_ok, read_json, scratch};

const SHORT: [&str; 4] = ["--batches", "20", "--batch-size", "16"];

/// Everything in a run report except its timing and layout (threads and processes, which never
/// change a result).
fn results(report: &serde_json::Value) -> serde_json::Value {
    let mut r = report.clone();
    let fields = r.as_object_mut().unwrap();
    fields.remove("timing");
    fields.remove("layout");
    for set in ["final_validation", "test"] {
        fields[set].as_object_mut().unwrap().remove("seconds");
    }
    r
}

#[test]
fn each_sweep_run_equals_the_same_train_run_bit_for_bit() {
    let dir = scratch("sweep-cli", "runs");
    let sweep_json = dir.join("sweep.json");
    let plot = dir.join("sweep.svg");
    let mut args = vec![
        "sweep",
        "--variants",
        "plain,bn",
        "--seeds",
        "3,5",
        "--jobs",
        "2",
        "--threads-per-job",
        "1",
        "--json",
        sweep_json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ];
    args.extend(SHORT);
    let stdout = bnconv_ok(&args);
    let doc = read_json(&sweep_json);
    assert_eq!(doc["sweep"]["jobs"], 2);
    assert_eq!(doc["sweep"]["threads_per_job"], 1);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let mut digests = Vec::new();
    for run in runs {
        let (variant, seed) = (
            run["variant"].as_str().unwrap(),
            run["seed"].as_u64().unwrap(),
        );
        let report = &run["report"];
        assert_eq!(report["timing"]["threads"], 1);
        let train_json = dir.join(format!("train-{variant}-{seed}.json"));
        let seed_arg = seed.to_string();
        let mut train = vec![
            "train",
            "--variant",
            variant,
            "--seed",
            &seed_arg,
            "--threads",
            "2",
            "--quiet",
            "--json",
            train_json.to_str().unwrap(),
        ];
        train.extend(SHORT);
        bnconv_ok(&train);
        let alone = &read_json(&train_json)["runs"][0];
        assert_eq!(alone["timing"]["threads"], 2);
        assert_eq!(
            results(report),
            results(alone),
            "{variant} seed {seed}: sweep run vs train run"
        );
        // serde_json prints an f32 widened to f64 exactly, so equal text is equal bits.
        digests.push(report["parameters_sha256"].as_str().unwrap().to_string());
        let accuracy = report["test"]["accuracy"].as_f64().unwrap();
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&seed_arg))
            .unwrap_or_else(|| panic!("a table row for seed {seed} in:\n{stdout}"));
        assert!(
            line.contains(&format!("{accuracy:.4}")),
            "{variant} seed {seed}: {accuracy:.4} in {line:?}"
        );
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4, "four different runs");

    for summary in doc["summary"].as_array().unwrap() {
        let variant = summary["variant"].as_str().unwrap();
        let accs: Vec<f64> = runs
            .iter()
            .filter(|r| r["variant"] == variant)
            // The JSON holds each f32 as its shortest decimal: read it back as that f32.
            .map(|r| r["report"]["test"]["accuracy"].as_f64().unwrap() as f32 as f64)
            .collect();
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        assert!(
            (summary["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{variant}"
        );
        let near = accs.iter().filter(|&&a| a <= 0.15f32 as f64).count();
        assert_eq!(summary["near_chance"].as_u64().unwrap() as usize, near);
    }
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    assert!(stdout.contains("4 runs in "), "{stdout}");
}

#[test]
fn json_on_standard_output_leaves_the_report_on_stderr() {
    let out = bnconv(&[
        "sweep",
        "--variants",
        "bn",
        "--seeds",
        "7",
        "--jobs",
        "1",
        "--json",
        "-",
        "--batches",
        "2",
        "--batch-size",
        "16",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("sweep --json - writes JSON alone to stdout");
    assert_eq!(doc["runs"][0]["seed"], 7);
    assert!(stderr.contains("1 runs in "), "the report: {stderr}");
    assert!(stderr.contains("wrote standard output"), "{stderr}");
}
