//! End-to-end tests of `bnconv profile` (its JSON, its agreement check, its plot) and of the
//! `--plot` option of train/compare.

use serde_json::Value;
use std::process::Output;
#[path = "support/binary.rs"]
mod binary;
use binary::{bnconv, scratch};

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn profile_json_has_every_layer_phase_path_sweep_and_agreement() {
    let dir = scratch("profile", "json");
    let (json, svg) = (dir.join("profile.json"), dir.join("profile.svg"));
    let out = bnconv(&[
        "profile",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("agreement, fused vs unfused")
            && stdout.contains("tolerance 0 (bitwise): OK"),
        "{stdout}"
    );
    assert!(stdout.contains("step, profiler off"), "{stdout}");
    assert!(stdout.contains("profiler overhead: measured"), "{stdout}");
    assert!(stdout.contains("thread sweep"), "{stdout}");

    let d: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(d["command"], "profile");
    assert_eq!(d["variant"], "bn");
    assert_eq!(
        (d["steps"].as_u64(), d["warmup"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(d["threads"], serde_json::json!([1]));
    assert_eq!(d["profile_threads"], 1);

    // Layers in network order, then the step's own work.
    let layers: Vec<&str> = d["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    let mut want: Vec<String> = (1..=19)
        .flat_map(|i| [format!("conv{i:02}"), format!("bn{i:02}")])
        .collect();
    want.extend(["fc1", "bn_fc1", "fc2", "step"].map(String::from));
    assert_eq!(layers, want);
    for l in d["layers"].as_array().unwrap() {
        let name = l["layer"].as_str().unwrap();
        assert_eq!(
            l["gemm"].as_bool(),
            Some(name.starts_with("conv") || name.starts_with("fc")),
            "{name}"
        );
        for key in ["fused_ms_per_step", "unfused_ms_per_step"] {
            let v = num(&l[key], key);
            assert!(v > 0.0 && v.is_finite(), "{name}.{key} = {v}");
        }
    }

    // Rows: per (layer, phase), both paths; the means of one path add up to its mean step.
    let rows = d["rows"].as_array().unwrap();
    let phases_of = |layer: &str| -> Vec<&str> {
        rows.iter()
            .filter(|r| r["layer"] == layer)
            .map(|r| r["phase"].as_str().unwrap())
            .collect()
    };
    for phase in [
        "im2col",
        "conv gemm fwd",
        "col2im",
        "conv gemm bwd data",
        "conv gemm bwd weights",
    ] {
        assert!(phases_of("conv05").contains(&phase), "conv05 {phase}");
    }
    assert!(
        !phases_of("conv01").contains(&"col2im"),
        "no input gradient"
    );
    for phase in ["bn stats", "bn apply", "relu", "bn bwd", "relu bwd"] {
        assert!(phases_of("bn07").contains(&phase), "bn07 {phase}");
    }
    let fc1 = phases_of("fc1");
    assert_eq!(fc1[..2], ["dense fwd", "dense bwd"]);
    assert!(fc1[2..].iter().all(|p| *p == "other"), "{fc1:?}");
    for phase in ["loss", "adam", "batch gather", "other"] {
        assert!(phases_of("step").contains(&phase), "step {phase}");
    }
    for r in rows {
        for path in ["fused", "unfused"] {
            let c = &r[path];
            for key in ["ms_per_step", "share", "mean_ms_per_step", "mean_share"] {
                let v = num(&c[key], key);
                assert!(
                    (0.0..=1e6).contains(&v),
                    "{} {} {path}.{key} = {v}",
                    r["layer"],
                    r["phase"]
                );
            }
        }
        // The fused path has no separate ReLU pass; the unfused one runs one per BN layer.
        if r["phase"] == "relu" || r["phase"] == "relu bwd" {
            assert_eq!(num(&r["fused"]["calls_per_step"], "calls"), 0.0, "{r}");
            assert_eq!(num(&r["unfused"]["calls_per_step"], "calls"), 1.0, "{r}");
        }
    }
    let total = &d["total"];
    for path in ["fused", "unfused"] {
        // The step's `other` row is what no scope covers, clamped at 0: the rows add up by
        // construction, unless scopes claim more than the step (which the clamp would hide).
        assert_eq!(
            num(&total[path]["overcounted_ms_per_step"], "overcount"),
            0.0,
            "{path}: scopes claim more time than the spans around them"
        );
        let sum: f64 = rows
            .iter()
            .map(|r| num(&r[path]["mean_ms_per_step"], "mean"))
            .sum();
        let step = num(&total[path]["profiled_mean_ms_per_step"], "step");
        assert!(
            (sum - step).abs() <= 1e-6 * step,
            "{path}: rows add up to {sum} ms, the step took {step} ms"
        );
        for key in [
            "profiled_ms_per_step",
            "unprofiled_ms_per_step",
            "unprofiled_images_per_second",
            "scopes_per_step",
        ] {
            let v = num(&total[path][key], key);
            assert!(v > 0.0 && v.is_finite(), "total.{path}.{key} = {v}");
        }
    }
    let ratio = num(&total["unfused"]["profiled_ms_per_step"], "u")
        / num(&total["fused"]["profiled_ms_per_step"], "f");
    assert!((num(&total["speedup_profiled"], "speed-up") - ratio).abs() < 1e-9);
    assert!(num(&total["speedup_unprofiled"], "speed-up") > 0.0);

    let phases: Vec<&str> = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in [
        "im2col",
        "conv gemm fwd",
        "bn stats",
        "bn apply",
        "bn bwd",
        "adam",
    ] {
        assert!(phases.contains(&phase), "{phase} in {phases:?}");
    }
    for p in d["phases"].as_array().unwrap() {
        assert!(p.get("speedup").is_some() && p.get("fused_share").is_some());
    }

    let o = &d["overhead"];
    assert!(num(&o["scope_enabled_ns"], "enabled") > 0.0);
    for key in [
        "scope_disabled_ns",
        "fused_measured",
        "unfused_measured",
        "fused_estimated",
        "unfused_estimated",
    ] {
        assert!(num(&o[key], key).is_finite(), "overhead.{key}");
    }

    let sweep = d["sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 1);
    let e = &sweep[0];
    assert_eq!(e["threads"], 1);
    assert_eq!(e["exceeds_cores"], false);
    for path in ["fused", "unfused"] {
        assert!(num(&e[path]["images_per_second"], "img/s") > 0.0);
        assert_eq!(num(&e[path]["efficiency"], "efficiency"), 1.0, "the base");
    }
    assert!(num(&e["fused_speedup"], "speed-up") > 0.0);
    assert_eq!(num(&e["parameters_max_abs_diff_after_run"], "diff"), 0.0);

    let a = &d["agreement"];
    let tolerance = num(&a["tolerance"], "tolerance");
    assert_eq!(tolerance, 0.0, "the paths are meant to agree bitwise");
    for key in [
        "loss_abs_diff",
        "logits_max_abs_diff",
        "gradients_max_abs_diff",
        "parameters_after_update_max_abs_diff",
    ] {
        assert!(
            num(&a[key], key) <= tolerance,
            "agreement.{key} = {}",
            a[key]
        );
    }
    let grads = a["gradients"].as_array().unwrap();
    // bn: 19 conv weights, gamma and beta of 20 BN layers, fc1 weight, fc2 weight and bias.
    assert_eq!(grads.len(), 19 + 2 * 20 + 1 + 2);
    assert!(grads.iter().all(|g| num(&g["max_abs_diff"], "diff") == 0.0));
    assert_eq!(a["passed"], true);

    assert_trust_matches_rounds(&d, &stdout, 3);

    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg"), "{}", &svg_text[..100]);
    assert!(svg_text.trim_end().ends_with("</svg>"));
    for label in [
        "conv01",
        "bn_fc1",
        "fused BN+ReLU",
        "median wall ms per step",
    ] {
        assert!(svg_text.contains(label), "{label} missing from the SVG");
    }
}

/// Slowest / fastest - 1 of a JSON list of round times.
fn spread_of(rounds: &Value) -> f64 {
    let v: Vec<f64> = rounds
        .as_array()
        .unwrap()
        .iter()
        .map(|r| num(r, "round"))
        .collect();
    let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    hi / lo - 1.0
}

/// Every configuration lists `rounds` round times whose spread is the one reported; the verdict
/// is the largest spread within the cores against the limit, and the warning is printed exactly
/// when the verdict is "not trusted".
fn assert_trust_matches_rounds(d: &Value, stdout: &str, rounds: usize) {
    let mut spreads = Vec::new();
    for e in d["sweep"].as_array().unwrap() {
        for path in ["fused", "unfused"] {
            let r = &e[path]["round_ms_per_step"];
            assert_eq!(r.as_array().unwrap().len(), rounds, "{e}");
            let s = spread_of(r);
            let reported = num(&e[path]["round_spread"], "spread");
            assert!((s - reported).abs() <= 1e-12, "{s} vs {reported}");
            if e["exceeds_cores"] == false {
                spreads.push(s);
            }
        }
    }
    for path in ["fused", "unfused"] {
        let t = &d["total"][path];
        let s = spread_of(&t["profiled_round_ms_per_step"]);
        assert!((s - num(&t["profiled_round_spread"], "spread")).abs() <= 1e-12);
        spreads.push(s);
    }
    let trust = &d["trust"];
    assert_eq!(trust["rounds"].as_u64(), Some(rounds as u64));
    let largest = spreads.iter().copied().fold(0.0, f64::max);
    assert!((num(&trust["largest_spread"], "largest") - largest).abs() <= 1e-12);
    let limit = num(&trust["spread_limit"], "limit");
    assert_eq!(limit, 0.10);
    assert_eq!(
        trust["trusted"].as_bool(),
        Some(largest <= limit),
        "{trust}"
    );
    let warned = stdout.contains("WARNING: the timings above cannot be trusted");
    assert_eq!(warned, largest > limit, "{stdout}");
    assert_eq!(
        stdout.contains("timings consistent"),
        largest <= limit,
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("rounds: {rounds} per path")),
        "{stdout}"
    );
    assert!(
        stdout.contains(" spread\n"),
        "the sweep's spread column: {stdout}"
    );
}

#[test]
fn train_plot_writes_a_png_with_the_curves() {
    let dir = scratch("profile", "png");
    let png = dir.join("curves.png");
    let out = bnconv(&[
        "train",
        "--batches",
        "3",
        "--eval-batch",
        "1000",
        "--quiet",
        "--plot",
        png.to_str().unwrap(),
    ]);
    succeeded(&out);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1500, 620));
    assert!(
        bytes.len() > 10_000,
        "a near-empty image: {} bytes",
        bytes.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(png.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn assert_rejected(args: &[&str], needle: &str) {
    let out = bnconv(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
}

/// `--model-threads`: the sweep gains 1 and 2 threads, the JSON holds a prediction for every
/// thread count (measured ones beside their measurement), a critical path per count whose rows
/// add up to the prediction, and the model's notes; the table and the check are printed.
#[test]
fn profile_model_threads_predicts_every_count_with_its_critical_path() {
    let dir = scratch("profile", "model");
    let json = dir.join("model.json");
    let out = bnconv(&[
        "profile",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--model-threads",
        "4,16",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("scaling model (fused path)"), "{stdout}");
    assert!(stdout.contains("critical path at 16 threads"), "{stdout}");
    assert!(stdout.contains("check: the model"), "{stdout}");
    let d: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let swept: Vec<u64> = if cores >= 2 { vec![1, 2] } else { vec![1] };
    assert_eq!(d["threads"], serde_json::json!(swept));
    let m = &d["scaling"];
    assert_eq!(m["recorded_threads"], 1);
    assert_eq!(m["steps_recorded"], 2);
    assert!(m["tasks_per_step"].as_u64().unwrap() > m["loops_per_step"].as_u64().unwrap());
    let predictions = m["predictions"].as_array().unwrap();
    let counts: Vec<u64> = predictions
        .iter()
        .map(|p| p["threads"].as_u64().unwrap())
        .collect();
    let mut expected = swept.clone();
    expected.extend([4, 16]);
    expected.dedup();
    assert_eq!(counts, expected);
    let ms = |i: usize| num(&predictions[i]["predicted_ms_per_step"], "prediction");
    assert_eq!(num(&predictions[0]["speedup"], "speed-up"), 1.0);
    assert!((0..predictions.len()).all(|i| ms(i) > 0.0));
    for p in predictions {
        let measured = swept.contains(&p["threads"].as_u64().unwrap());
        assert_eq!(p["measured_ms_per_step"].is_number(), measured, "{p}");
        assert_eq!(p["error"].is_number(), measured, "{p}");
    }
    assert!(m["check"]["tolerance"].is_number());
    if cores >= 2 {
        assert_eq!(m["calibration"]["threads"], 2);
    }
    for cp in m["critical_paths"].as_array().unwrap() {
        let total: f64 = cp["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| num(&r["ms_per_step"], "row"))
            .sum();
        let predicted = num(&cp["predicted_ms_per_step"], "path");
        assert!(
            (total - predicted).abs() <= 1e-9 * predicted,
            "{total} vs {predicted}"
        );
    }
    assert!(m["notes"].as_array().unwrap().len() >= 2);
    assert_eq!(
        m["costs"]["source"],
        if cores >= 2 { "measured" } else { "none" }
    );
    if cores >= 2 {
        let c = &m["calibration"];
        assert!(
            c["steal_on_core_samples"].as_u64().unwrap() <= c["steal_samples"].as_u64().unwrap()
        );
        // In doubt exactly when either kind has fewer than 20 on-core samples, and then said.
        let on_core = |k: &str| c[k].as_u64().unwrap();
        let few = on_core("steal_on_core_samples") < 20 || on_core("join_on_core_samples") < 20;
        assert_eq!(c["doubt"].is_string(), few, "{c}");
        assert_eq!(
            stdout.contains("WARNING: the measured hand-off costs cannot be trusted"),
            few,
            "{stdout}"
        );
    }
}

/// `--model-handoff-us`: the predictions use the given costs (reported as given), and larger costs
/// predict a slower step on many threads from the same kind of record.
#[test]
fn profile_model_handoff_costs_can_be_given() {
    let dir = scratch("profile", "handoff");
    let predict = |costs: &str| {
        let json = dir.join(format!("model-{costs}.json"));
        let out = bnconv(&[
            "profile",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--model-threads",
            "64",
            "--model-handoff-us",
            costs,
            "--json",
            json.to_str().unwrap(),
        ]);
        let stdout = succeeded(&out);
        assert!(
            stdout.contains("the predictions use the given hand-off costs"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("WARNING: the measured hand-off"),
            "{stdout}"
        );
        let d: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let costs = &d["scaling"]["costs"];
        assert_eq!(costs["source"], "given");
        let p = d["scaling"]["predictions"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(p["threads"], 64);
        (
            num(&costs["steal_ns"], "steal"),
            num(&costs["join_ns"], "join"),
            num(&p["speedup"], "speed-up"),
        )
    };
    let (steal, join, _) = predict("1.5,0.25");
    assert_eq!((steal, join), (1500.0, 250.0));
    let (_, _, cheap) = predict("0,0");
    let (_, _, dear) = predict("500,500");
    assert!(dear < cheap, "500 us hand-offs {dear}x, free ones {cheap}x");
}

/// `profile --eval`: both evaluation paths timed in rounds on the test set, every convolution's
/// time on both (each batch norm folded into its convolution shows none), and the JSON.
#[test]
fn profile_eval_times_both_paths_and_every_convolution() {
    let dir = scratch("profile", "eval");
    let json = dir.join("eval.json");
    let out = bnconv(&[
        "profile",
        "--eval",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("whole network per task") && stdout.contains("layer by layer"),
        "{stdout}"
    );
    let d: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        (d["threads"].as_u64(), d["images"].as_u64()),
        (Some(1), Some(10000))
    );
    for path in ["per_task", "layer_by_layer"] {
        let p = &d[path];
        let rounds = p["rounds_images_per_second"].as_array().unwrap();
        assert_eq!(rounds.len(), 5, "{path}");
        assert!(rounds.iter().all(|r| num(r, "round") > 0.0), "{path}");
        let layers = p["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2 * 19 + 3, "{path}: every layer");
        for l in layers {
            let (name, ms) = (l["name"].as_str().unwrap(), num(&l["ms"], "ms"));
            if name.starts_with("conv") {
                assert!(
                    ms > 0.0 && num(&l["gflops"], "gflops") > 0.0,
                    "{path} {name}"
                );
            } else if name.starts_with("bn") && name != "bn_fc1" {
                assert_eq!(ms, 0.0, "{path} {name}: folded into its convolution");
            }
        }
    }
}

#[test]
fn bad_profile_and_plot_options_are_rejected_before_any_work() {
    assert_rejected(
        &["profile", "--eval", "--plot", "p.svg"],
        "cannot be used with",
    );
    assert_rejected(&["profile", "--threads", "0"], "--threads");
    assert_rejected(&["profile", "--model-threads", "0"], "--model-threads");
    assert_rejected(&["profile", "--model-handoff-us", "1.5"], "STEAL,JOIN");
    assert_rejected(
        &["profile", "--model-handoff-us", "1,-2"],
        "not a hand-off cost",
    );
    assert_rejected(&["profile", "--steps", "0"], "--steps");
    assert_rejected(&["profile", "--variant", "resnet"], "unknown variant");
    assert_rejected(&["profile", "--plot", "x.pdf"], ".png or .svg");
    assert_rejected(
        &["profile", "--json", "/nonexistent-dir/p.json"],
        "does not exist",
    );
    assert_rejected(&["--plot", "curves.jpg", "--batches", "1"], ".png or .svg");
    assert_rejected(
        &[
            "train",
            "--plot",
            "/nonexistent-dir/c.png",
            "--batches",
            "1",
        ],
        "does not exist",
    );
    assert_rejected(
        &["profile", "--batch-size", "60000", "--steps", "1"],
        "batch size 60000",
    );
}

/// A reader that closes the pipe early (`bnconv profile | head -1`) must not kill the run: the
/// remaining lines are dropped, the JSON is still written, the exit status is success, and
/// nothing panics.
#[test]
fn a_closed_stdout_pipe_drops_lines_but_not_the_run() {
    use std::process::{Command, Stdio};
    let dir = scratch("profile", "closed-pipe");
    let json = dir.join("profile.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bnconv"))
        .args(["profile", "--steps", "2", "--warmup", "1", "--threads", "1"])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bnconv binary runs");
    // Close the read end before the first line is printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("bnconv finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        doc.get("agreement").is_some(),
        "JSON written in full: {doc}"
    );
}
