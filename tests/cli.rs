//! End-to-end test of the `bnconv` binary: a short real run with JSON output. User errors that
//! must be rejected before any work starts are in `tests/bad_input.rs`.

#[path = "support/binary.rs"]
mod binary;
use binary::{bnconv, scratch};

#[test]
fn short_bn_run_writes_complete_json_and_the_loss_falls() {
    let dir = scratch("cli", "run");
    let json = dir.join("report.json");
    let out = bnconv(&[
        "train",
        "--variant",
        "bn",
        "--batches",
        "30",
        "--threads",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Batch:  0: Validation loss: "), "{stdout}");
    assert!(stdout.contains("Batch: 25: Training loss: "), "{stdout}");
    assert!(stdout.contains("Final test accuracy: "), "{stdout}");
    assert!(stdout.contains("Accuracy on 100 samples: "), "{stdout}");

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = doc["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["variant"], "bn");
    assert_eq!(run["bn_path"], "fused");
    assert_eq!(run["batches"], 30);
    assert_eq!(run["batch_size"], 64);
    let log = run["log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "validation at 0 and training at 25: {log:?}");
    assert_eq!(
        (log[0]["batch"].as_u64(), log[0]["set"].as_str()),
        (Some(0), Some("validation"))
    );
    assert_eq!(
        (log[1]["batch"].as_u64(), log[1]["set"].as_str()),
        (Some(25), Some("training"))
    );
    for key in ["final_validation", "test"] {
        let acc = run[key]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{key} accuracy {acc}");
    }
    assert_eq!(run["test"]["images"], 10000);
    let digest = run["parameters_sha256"].as_str().unwrap_or("");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "parameters_sha256 = {digest:?}"
    );
    assert_eq!(run["final_validation"]["images"], 5000);
    let t = &run["timing"];
    for key in [
        "train_images_per_second",
        "ms_per_step",
        "achieved_gflops",
        "wall_seconds",
        "eval_images_per_second",
        "gflop_per_step",
    ] {
        let v = t[key].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0 && v.is_finite(), "timing.{key} = {v}");
    }
    assert_eq!(t["threads"], 2);

    let losses: Vec<f64> = run["step_losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 30);
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[25..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.8 * first,
        "bn loss should fall: first 5 mean {first}, last 5 mean {last}"
    );
}

// Rejected options and bad data: tests/bad_input.rs.
