//! Per-image results through the `bnconv` binary:
//! - `eval --predictions` writes one row per image whose accuracy, recomputed from the file,
//!   equals the printed and JSON accuracy, and whose confusion matrix equals the JSON one;
//! - `predict` on 28x28 PNGs (grayscale and colour) and PGMs written from test images gives the
//!   class, and the very logits, that `eval --predictions` gives those images;
//! - a bad or missing image file is named, the others are still predicted, and the exit status
//!   says that something failed;
//! - `predict` checks the checkpoint as `eval` does (a changed byte refused unless `--no-verify`,
//!   a NaN refused always), and `-` as an output is standard output with the report on stderr.

use bnconv_nn::mnist::{Dataset, Mnist};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
#[path = "support/binary.rs"]
mod binary;
#[path = "support/checkpoint_edit.rs"]
mod checkpoint_edit;
use binary::{bnconv, bnconv_ok, read_json, scratch, Scratch};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A bn checkpoint after 200 steps, enough for predictions of several classes (trained once
/// for the whole file; its directory is a static, never dropped, so it stays in the temp dir).
fn checkpoint() -> &'static Path {
    static CHECKPOINT: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    let (_, path) = CHECKPOINT.get_or_init(|| {
        let dir = scratch("predictions-cli", "checkpoint");
        let path = dir.join("bn.safetensors");
        bnconv_ok(&[
            "train",
            "--variant",
            "bn",
            "--batches",
            "200",
            "--quiet",
            "--save",
            s(&path),
        ]);
        (dir, path)
    });
    path
}

/// One CSV row: (index, label, predicted, logits).
type Row = (usize, usize, usize, Vec<f32>);

fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let want: Vec<String> = ["index", "label", "predicted"]
        .map(String::from)
        .into_iter()
        .chain((0..10).map(|c| format!("logit{c}")))
        .collect();
    assert_eq!(header, want.join(","));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 13, "{line}");
            let logits: Vec<f32> = f[3..].iter().map(|v| v.parse().unwrap()).collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                logits,
            )
        })
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

fn test_set() -> Dataset {
    Mnist::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/mnist"
    )))
    .expect("the repository's MNIST loads")
    .test
}

#[test]
fn predictions_recompute_the_printed_accuracy_and_the_confusion_matrix() {
    let dir = scratch("predictions-cli", "eval");
    for (split, images, key) in [("test", 10000, "test"), ("validation", 5000, "validation")] {
        let csv = dir.join(format!("{split}.csv"));
        let report = dir.join(format!("{split}.json"));
        let plot = dir.join(format!("{split}.png"));
        let stdout = bnconv_ok(&[
            "eval",
            "--checkpoint",
            s(checkpoint()),
            "--split",
            split,
            "--predictions",
            s(&csv),
            "--json",
            s(&report),
            "--plot",
            s(&plot),
        ]);
        let rows = read_csv(&csv);
        assert_eq!(rows.len(), images);
        let mut confusion = vec![vec![0u64; 10]; 10];
        for (i, (index, label, predicted, logits)) in rows.iter().enumerate() {
            assert_eq!(*index, i);
            assert_eq!(
                *predicted,
                argmax(logits),
                "row {i}: predicted is the argmax"
            );
            confusion[*label][*predicted] += 1;
        }
        let correct = rows.iter().filter(|r| r.1 == r.2).count();
        let doc = read_json(&report);
        let reported = doc[key]["accuracy"].as_f64().unwrap() as f32;
        assert_eq!(
            (correct as f32 / images as f32).to_bits(),
            reported.to_bits(),
            "{split}: {correct} of {images} correct in the CSV vs accuracy {reported}"
        );
        let printed = format!(
            "{} accuracy: {reported:.5}",
            key[..1].to_uppercase() + &key[1..]
        );
        assert!(stdout.contains(&printed), "{printed:?} in:\n{stdout}");
        assert!(
            stdout.contains(&format!(
                "Confusion matrix, {split} set ({correct} of {images} correct"
            )),
            "{stdout}"
        );
        assert!(stdout.contains("Most confused (true -> predicted, count): "));
        assert_eq!(doc["split"], split);
        assert_eq!(doc["confusion"], serde_json::json!(confusion));
        let most = &doc["most_confused"][0];
        let (t, p) = (
            most["truth"].as_u64().unwrap() as usize,
            most["predicted"].as_u64().unwrap() as usize,
        );
        let largest = (0..10)
            .flat_map(|t| (0..10).filter(move |&p| p != t).map(move |p| (t, p)))
            .map(|(t, p)| confusion[t][p])
            .max()
            .unwrap();
        assert_eq!(most["count"].as_u64().unwrap(), confusion[t][p]);
        assert_eq!(
            confusion[t][p], largest,
            "the first pair is the most confused"
        );
        let png = std::fs::read(&plot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG"),
            "{split}: the heat map is a PNG"
        );
    }
}

#[test]
fn image_files_of_test_images_get_the_classes_and_logits_eval_gives() {
    let dir = scratch("predictions-cli", "predict");
    let csv = dir.join("test.csv");
    bnconv_ok(&[
        "eval",
        "--checkpoint",
        s(checkpoint()),
        "--predictions",
        s(&csv),
    ]);
    let rows = read_csv(&csv);
    let test = test_set();
    let (mut x, mut y) = (vec![0.0; Dataset::PIXELS], vec![0.0; Dataset::CLASSES]);
    // Test images as 28x28 files: grayscale PNG, RGB PNG (grey in every channel) and binary PGM.
    let mut files = Vec::new();
    for i in [0usize, 1, 2, 3, 4, 8, 9, 11, 18, 247] {
        test.copy_range(i..i + 1, &mut x, &mut y);
        let bytes: Vec<u8> = x.iter().map(|p| (p * 255.0).round() as u8).collect();
        let gray = image::GrayImage::from_raw(28, 28, bytes.clone()).unwrap();
        let path = dir.join(format!("test{i}.png"));
        gray.save(&path).unwrap();
        files.push((i, path));
        let rgb = image::RgbImage::from_fn(28, 28, |c, r| {
            let v = bytes[(r * 28 + c) as usize];
            image::Rgb([v, v, v])
        });
        let path = dir.join(format!("test{i}-rgb.png"));
        rgb.save(&path).unwrap();
        files.push((i, path));
        let path = dir.join(format!("test{i}.pgm"));
        let mut pgm = b"P5\n28 28\n255\n".to_vec();
        pgm.extend_from_slice(&bytes);
        std::fs::write(&path, pgm).unwrap();
        files.push((i, path));
    }
    let report = dir.join("predict.json");
    let mut args = vec![
        "predict",
        "--checkpoint",
        s(checkpoint()),
        "--json",
        s(&report),
    ];
    args.extend(files.iter().map(|(_, p)| s(p)));
    let stdout = bnconv_ok(&args);
    let doc = read_json(&report);
    let predictions = doc["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), files.len());
    assert!(doc["errors"].as_array().unwrap().is_empty());
    for ((i, path), p) in files.iter().zip(predictions) {
        let (_, _, predicted, logits) = &rows[*i];
        assert_eq!(p["image"], s(path));
        assert_eq!(
            p["predicted"].as_u64().unwrap() as usize,
            *predicted,
            "{path:?}"
        );
        let got: Vec<f32> = p["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            &got, logits,
            "{path:?}: logits as eval --predictions wrote them"
        );
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["class"].as_u64().unwrap() as usize, *predicted);
        let line = format!("{}: {predicted} (p=", path.display());
        assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
    }
    // Sabotage guard: the images do not all share one class, so matching classes means something.
    let classes: std::collections::BTreeSet<usize> =
        files.iter().map(|(i, _)| rows[*i].2).collect();
    assert!(classes.len() >= 2, "{classes:?}");
}

#[test]
fn bad_image_files_are_named_and_the_others_still_predicted() {
    let dir = scratch("predictions-cli", "bad-files");
    let good = dir.join("digit.png");
    // A 60x40 white-on-black bar: not 28x28, so it goes through the MNIST-style fit.
    image::GrayImage::from_fn(60, 40, |x, y| {
        image::Luma([if (25..35).contains(&x) && (5..35).contains(&y) {
            255
        } else {
            0
        }])
    })
    .save(&good)
    .unwrap();
    let garbage = dir.join("garbage.png");
    std::fs::write(&garbage, b"not an image at all").unwrap();
    let missing = dir.join("missing.png");
    let blank = dir.join("blank.pgm");
    let mut pgm = b"P5\n30 30\n255\n".to_vec();
    pgm.extend(std::iter::repeat_n(0u8, 900));
    std::fs::write(&blank, pgm).unwrap();
    let report = dir.join("predict.json");
    let out = bnconv(&[
        "predict",
        "--checkpoint",
        s(checkpoint()),
        s(&garbage),
        s(&good),
        s(&missing),
        s(&blank),
        "--json",
        s(&report),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failed file fails the command");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (bad, why) in [
        (&garbage, "not a PNG or PGM"),
        (&missing, "cannot open"),
        (&blank, "no digit"),
    ] {
        let named = format!("{}: ", bad.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&named) && l.contains(why)),
            "{named}{why} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("3 of 4 image(s) could not be classified"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("{}: ", good.display())),
        "{stdout}"
    );
    let doc = read_json(&report);
    assert_eq!(doc["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["predictions"][0]["image"], s(&good));
    assert_eq!(doc["errors"].as_array().unwrap().len(), 3);
}

/// Test image `i` as a 28x28 PGM file in `dir`.
fn test_image_pgm(dir: &Path, i: usize) -> PathBuf {
    let path = dir.join(format!("test{i}.pgm"));
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend_from_slice(test_set().image(i));
    std::fs::write(&path, pgm).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn predict_checks_the_checkpoint_as_eval_does() {
    let dir = scratch("predictions-cli", "integrity");
    let image = test_image_pgm(&dir, 0);
    let report = dir.join("predict.json");
    let predict = |ckpt: &Path, extra: &[&str]| {
        let mut args = vec!["predict", "--checkpoint", s(ckpt), "--threads", "1"];
        args.extend_from_slice(extra);
        args.push(s(&image));
        bnconv(&args)
    };

    let out = predict(checkpoint(), &["--json", s(&report)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read_json(&report)["integrity"], "verified");

    // One bit of one weight: still a valid float, caught only by the digest.
    let mut bytes = std::fs::read(checkpoint()).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 1;
    let flipped = dir.join("flipped.safetensors");
    std::fs::write(&flipped, &bytes).unwrap();
    let out = predict(&flipped, &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a changed byte is refused");
    assert!(stderr.contains("does not match the SHA-256"), "{stderr}");
    assert!(
        stderr.contains("--no-verify"),
        "the way out is named: {stderr}"
    );
    assert!(
        !text(&out.stdout).contains("test0.pgm"),
        "nothing predicted"
    );

    let out = predict(&flipped, &["--no-verify", "--json", s(&report)]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("digests not checked (--no-verify)"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("test0.pgm: "));
    assert_eq!(read_json(&report)["integrity"], "not checked (--no-verify)");

    // A NaN in a re-signed file: refused, checked or not, naming the tensor.
    let nan = dir.join("nan.safetensors");
    checkpoint_edit::rewrite(checkpoint(), &nan, |t, _| {
        t.get_mut("conv07.weight").unwrap().2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    for extra in [&[][..], &["--no-verify"][..]] {
        let out = predict(&nan, extra);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            stderr.contains("conv07.weight holds 1 non-finite value"),
            "{extra:?}: {stderr}"
        );
    }
}

#[test]
fn standard_output_carries_the_data_and_the_report_goes_to_stderr() {
    let dir = scratch("predictions-cli", "stdout");
    let image = test_image_pgm(&dir, 0);
    let out = bnconv(&[
        "predict",
        "--checkpoint",
        s(checkpoint()),
        "--json",
        "-",
        s(&image),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("predict --json - writes JSON alone to stdout");
    assert_eq!(doc["predictions"][0]["image"], s(&image));
    assert!(stderr.contains("test0.pgm: "), "the report: {stderr}");
    assert!(stderr.contains("wrote standard output"), "{stderr}");
    assert!(!Path::new("-").exists(), "no file named -");

    let out = bnconv(&[
        "eval",
        "--checkpoint",
        s(checkpoint()),
        "--split",
        "validation",
        "--predictions",
        "-",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("index,label,predicted,logit0,"));
    assert_eq!(lines.count(), 5000, "only the CSV on stdout");
    assert!(stderr.contains("Validation accuracy: "), "{stderr}");
    assert!(
        stderr.contains("Confusion matrix, validation set"),
        "{stderr}"
    );

    let out = bnconv(&[
        "eval",
        "--checkpoint",
        s(checkpoint()),
        "--predictions",
        "-",
        "--json",
        "-",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("at most one output can go there"),
        "{stderr}"
    );
}
