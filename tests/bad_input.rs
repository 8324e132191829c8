//! The bad-input corpus: every malformed MNIST directory and every bad command line must
//! give its own typed error (or a clear message), name what is at fault, never panic, and never
//! leave output behind.
//!
//! MNIST: each bad file is loaded three ways through [`Mnist::load`]:
//! - without `SHA256SUMS` (the parser must catch it),
//! - with a `SHA256SUMS` that matches the bad file (checksums pass, the parser must still catch it),
//! - with the `SHA256SUMS` of the good files (a corrupted download: [`DataError::Checksum`] must
//!   name the file before anything is parsed).
//!
//! Command line: each bad option runs the real binary, which must exit non-zero with a message,
//! without "panicked", with nothing on stdout (rejected before the data banner, so before any
//! training), and without creating the `--json` file or anything else in its directory.

use bnconv_nn::mnist::{DataError, Mnist};
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
#[path = "support/binary.rs"]
mod binary;
use binary::{bnconv, bnconv_with_env};

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
const REAL_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
/// The smallest training file the loader accepts: 5000 validation images plus one.
const TRAIN_COUNT: u32 = 5001;
const TEST_COUNT: u32 = 3;

// ---------------------------------------------------------------------------------------------
// IDX bytes

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// An IDX images file: header `magic, count, rows, cols`, then `pixels` bytes of body.
fn images_file(magic: u32, count: u32, rows: u32, cols: u32, pixels: usize) -> Vec<u8> {
    let mut bytes = words(&[magic, count, rows, cols]);
    bytes.extend((0..pixels).map(|i| (i % 251) as u8));
    bytes
}

fn images(count: u32) -> Vec<u8> {
    images_file(0x803, count, 28, 28, count as usize * 784)
}

fn labels_file(magic: u32, labels: &[u8]) -> Vec<u8> {
    let mut bytes = words(&[magic, labels.len() as u32]);
    bytes.extend_from_slice(labels);
    bytes
}

fn labels(count: u32) -> Vec<u8> {
    labels_file(
        0x801,
        &(0..count).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// MNIST directories

/// How a case directory's `SHA256SUMS` relates to its files.
#[derive(Clone, Copy, Debug)]
enum Sums {
    /// No `SHA256SUMS`: nothing is checked, the parser sees everything.
    Absent,
    /// Lists every file with its actual digest, the bad one included.
    Matching,
    /// Lists the digests of the valid files: the bad file no longer matches.
    OfValidFiles,
}

/// A valid synthetic MNIST directory, and case directories that differ from it in one file.
struct Corpus {
    root: TempDir,
    valid: Vec<(&'static str, Vec<u8>)>,
    cases: usize,
}

impl Corpus {
    fn new() -> Corpus {
        let valid = vec![
            (TRAIN_IMAGES, images(TRAIN_COUNT)),
            (TRAIN_LABELS, labels(TRAIN_COUNT)),
            (TEST_IMAGES, images(TEST_COUNT)),
            (TEST_LABELS, labels(TEST_COUNT)),
        ];
        let root = tempfile::Builder::new()
            .prefix("bnconv-bad-input-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir(root.path().join("valid")).expect("mkdir");
        for (name, bytes) in &valid {
            fs::write(root.path().join("valid").join(name), bytes).expect("write");
        }
        let corpus = Corpus {
            root,
            valid,
            cases: 0,
        };
        Mnist::load(&corpus.root.path().join("valid")).expect("the corpus base directory is valid");
        corpus
    }

    /// A new directory holding the valid files, except `file` (stored under `stored_as`) which
    /// holds `bytes`, and a `SHA256SUMS` as `sums` says. Returns the directory and the bad file.
    fn case(
        &mut self,
        file: &str,
        stored_as: &str,
        bytes: &[u8],
        sums: Sums,
    ) -> (PathBuf, PathBuf) {
        self.cases += 1;
        let dir = self.root.path().join(format!("case{}", self.cases));
        fs::create_dir(&dir).expect("mkdir");
        let mut listed = String::new();
        for (name, good) in &self.valid {
            let (stored, content) = if *name == file {
                (stored_as, bytes)
            } else {
                (*name, good.as_slice())
            };
            let path = dir.join(stored);
            if *name == file {
                fs::write(&path, content).expect("write bad file");
            } else {
                // The valid files are shared, never written through a link.
                fs::hard_link(self.root.path().join("valid").join(name), &path)
                    .or_else(|_| fs::write(&path, content))
                    .expect("link valid file");
            }
            let digest = match sums {
                Sums::Matching => sha256_hex(content),
                _ => sha256_hex(good),
            };
            listed += &format!("{digest}  {stored}\n");
        }
        if !matches!(sums, Sums::Absent) {
            fs::write(dir.join("SHA256SUMS"), listed).expect("write SHA256SUMS");
        }
        (dir.clone(), dir.join(stored_as))
    }

    /// Loads a directory whose `file` holds `bytes` in each of the three `SHA256SUMS` modes:
    /// `expect` must hold for the parser's error, and the checksum must catch the file first
    /// when the sums are those of the valid files. Every message must name the bad file.
    fn assert_rejected(
        &mut self,
        case: &str,
        file: &str,
        bytes: &[u8],
        expect: impl Fn(&DataError) -> bool,
    ) {
        let stored_as = if bytes.starts_with(&[0x1f, 0x8b]) {
            format!("{file}.gz")
        } else {
            file.to_string()
        };
        for sums in [Sums::Absent, Sums::Matching, Sums::OfValidFiles] {
            let (dir, bad) = self.case(file, &stored_as, bytes, sums);
            let err = match Mnist::load(&dir) {
                Ok(_) => panic!("{case} ({sums:?}): loaded without error"),
                Err(e) => e,
            };
            let msg = err.to_string();
            match sums {
                Sums::OfValidFiles => {
                    assert!(
                        matches!(&err, DataError::Checksum { path, .. } if *path == bad),
                        "{case} ({sums:?}): expected a checksum error for {}, got {err:?}",
                        bad.display()
                    );
                }
                _ => assert!(expect(&err), "{case} ({sums:?}): wrong error kind: {err:?}"),
            }
            assert!(
                msg.contains(&bad.display().to_string()),
                "{case} ({sums:?}): the message does not name {}: {msg}",
                bad.display()
            );
        }
    }
}

#[test]
fn wrong_magic_numbers() {
    let mut c = Corpus::new();
    let labels_magic_on_images = images_file(0x801, TEST_COUNT, 28, 28, 3 * 784);
    c.assert_rejected(
        "images file with the labels magic",
        TEST_IMAGES,
        &labels_magic_on_images,
        |e| {
            matches!(
                e,
                DataError::BadMagic {
                    expected: 0x803,
                    found: 0x801,
                    ..
                }
            )
        },
    );
    let mut int_images = images(TRAIN_COUNT);
    int_images[2] = 0x0c; // IDX type 0x0C (int32) instead of 0x08 (unsigned byte)
    c.assert_rejected("int32 images", TRAIN_IMAGES, &int_images, |e| {
        matches!(e, DataError::BadMagic { found: 0x0c03, .. })
    });
    c.assert_rejected(
        "labels file holding images",
        TEST_LABELS,
        &images(TEST_COUNT),
        |e| {
            matches!(
                e,
                DataError::BadMagic {
                    expected: 0x801,
                    found: 0x803,
                    ..
                }
            )
        },
    );
    c.assert_rejected(
        "text file",
        TRAIN_LABELS,
        b"this is not an IDX file\n",
        |e| matches!(e, DataError::BadMagic { .. }),
    );
}

#[test]
fn wrong_or_inconsistent_dimensions() {
    let mut c = Corpus::new();
    let is_dims = |e: &DataError| matches!(e, DataError::BadDimensions { .. });
    c.assert_rejected(
        "27x28 images",
        TEST_IMAGES,
        &images_file(0x803, 3, 27, 28, 3 * 27 * 28),
        is_dims,
    );
    c.assert_rejected(
        "28x29 images",
        TEST_IMAGES,
        &images_file(0x803, 3, 28, 29, 3 * 28 * 29),
        is_dims,
    );
    // Right image size, but the header's count disagrees with the body: one image too many.
    c.assert_rejected(
        "trailing image",
        TEST_IMAGES,
        &images_file(0x803, 3, 28, 28, 4 * 784),
        is_dims,
    );
    c.assert_rejected(
        "one trailing byte",
        TRAIN_IMAGES,
        &[images(TRAIN_COUNT), vec![0]].concat(),
        is_dims,
    );
    c.assert_rejected(
        "trailing label",
        TEST_LABELS,
        &[labels(TEST_COUNT), vec![1]].concat(),
        is_dims,
    );
    // A header that claims zero items is empty, whatever follows.
    c.assert_rejected(
        "zero images",
        TEST_IMAGES,
        &images_file(0x803, 0, 28, 28, 0),
        |e| matches!(e, DataError::Empty { .. }),
    );
}

#[test]
fn image_and_label_counts_differ() {
    let mut c = Corpus::new();
    for (case, file, bytes, images_n, labels_n) in [
        ("fewer test labels", TEST_LABELS, labels(2), 3, 2),
        ("more test images", TEST_IMAGES, images(4), 4, 3),
        (
            "more training labels",
            TRAIN_LABELS,
            labels(5002),
            5001,
            5002,
        ),
    ] {
        c.assert_rejected(case, file, &bytes, |e| {
            matches!(e, DataError::CountMismatch { images, labels, .. }
                if (*images, *labels) == (images_n, labels_n))
        });
    }
    // The message names both files of the pair.
    let (dir, _) = c.case(TEST_LABELS, TEST_LABELS, &labels(2), Sums::Absent);
    let msg = Mnist::load(&dir).expect_err("count mismatch").to_string();
    assert!(
        msg.contains(TEST_IMAGES) && msg.contains(TEST_LABELS),
        "{msg}"
    );
}

#[test]
fn truncated_files() {
    let mut c = Corpus::new();
    let is_truncated = |e: &DataError| matches!(e, DataError::Truncated { .. });
    let full = images(TEST_COUNT);
    c.assert_rejected(
        "images cut in the body",
        TEST_IMAGES,
        &full[..full.len() - 1],
        is_truncated,
    );
    c.assert_rejected(
        "images cut after the header",
        TEST_IMAGES,
        &full[..16],
        is_truncated,
    );
    c.assert_rejected(
        "images cut in the header",
        TEST_IMAGES,
        &full[..10],
        is_truncated,
    );
    c.assert_rejected("magic only", TRAIN_IMAGES, &full[..4], is_truncated);
    let train_labels = labels(TRAIN_COUNT);
    c.assert_rejected(
        "labels cut",
        TRAIN_LABELS,
        &train_labels[..4000],
        is_truncated,
    );
    // A truncated gzip stream is a gzip error, never short data.
    let gz = gzip(&images(TRAIN_COUNT));
    c.assert_rejected("gzip cut in half", TRAIN_IMAGES, &gz[..gz.len() / 2], |e| {
        matches!(e, DataError::Gzip { .. })
    });
    c.assert_rejected(
        "gzip without its trailer",
        TRAIN_IMAGES,
        &gz[..gz.len() - 8],
        |e| matches!(e, DataError::Gzip { .. }),
    );
    // A complete gzip of a truncated file is the parser's truncation.
    c.assert_rejected(
        "gzip of a cut file",
        TEST_IMAGES,
        &gzip(&full[..full.len() - 100]),
        is_truncated,
    );
}

#[test]
fn labels_above_nine() {
    let mut c = Corpus::new();
    for (case, bad, index) in [("label 10", 10u8, 1usize), ("label 255", 255, 2)] {
        let mut values = vec![3u8, 1, 4];
        values[index] = bad;
        c.assert_rejected(case, TEST_LABELS, &labels_file(0x801, &values), |e| {
            matches!(e, DataError::BadLabel { index: i, label, .. } if (*i, *label) == (index, bad))
        });
    }
    let mut train = labels(TRAIN_COUNT);
    let last = train.len() - 1;
    train[last] = 10;
    c.assert_rejected("last training label 10", TRAIN_LABELS, &gzip(&train), |e| {
        matches!(
            e,
            DataError::BadLabel {
                index: 5000,
                label: 10,
                ..
            }
        )
    });
}

#[test]
fn empty_files() {
    let mut c = Corpus::new();
    let is_empty = |e: &DataError| matches!(e, DataError::Empty { .. });
    for file in NAMES {
        c.assert_rejected(&format!("empty {file}"), file, &[], is_empty);
    }
    c.assert_rejected("gzip of nothing", TEST_LABELS, &gzip(&[]), is_empty);
    c.assert_rejected(
        "zero labels",
        TEST_LABELS,
        &labels_file(0x801, &[]),
        is_empty,
    );
}

#[test]
fn corrupt_gzip() {
    let mut c = Corpus::new();
    let is_gzip = |e: &DataError| matches!(e, DataError::Gzip { .. });
    let real = fs::read(Path::new(REAL_DATA).join(format!("{TEST_LABELS}.gz"))).expect("read");
    let mut flipped = real.clone();
    for b in &mut flipped[100..120] {
        *b ^= 0x5a;
    }
    c.assert_rejected("flipped bytes in real data", TEST_LABELS, &flipped, is_gzip);
    let mut bad_crc = gzip(&labels(TEST_COUNT));
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    c.assert_rejected("bad CRC", TEST_LABELS, &bad_crc, is_gzip);
    let mut bad_size = gzip(&labels(TEST_COUNT));
    let at = bad_size.len() - 1;
    bad_size[at] ^= 0x01;
    c.assert_rejected("bad ISIZE", TEST_LABELS, &bad_size, is_gzip);
    c.assert_rejected(
        "gzip magic then junk",
        TEST_IMAGES,
        b"\x1f\x8b\x08\x00garbage",
        is_gzip,
    );
    c.assert_rejected(
        "junk after the stream",
        TEST_IMAGES,
        &[gzip(&images(3)), b"junk".to_vec()].concat(),
        is_gzip,
    );
}

#[test]
fn missing_directory_and_files() {
    let root = TempDir::new().expect("temp dir");
    let gone = root.path().join("no-such-mnist");
    let err = Mnist::load(&gone).expect_err("missing directory");
    assert!(
        matches!(err, DataError::Missing { ref path, .. } if *path == gone),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&gone.display().to_string()),
        "{err}"
    );

    let file = root.path().join("a-file");
    fs::write(&file, b"x").expect("write");
    let err = Mnist::load(&file).expect_err("a file is not a directory");
    assert!(
        matches!(err, DataError::Missing { ref path, .. } if *path == file),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a directory"), "{err}");

    let mut c = Corpus::new();
    for missing in NAMES {
        let (dir, _) = c.case(TEST_LABELS, TEST_LABELS, &labels(TEST_COUNT), Sums::Absent);
        fs::remove_file(dir.join(missing)).expect("remove");
        let err = Mnist::load(&dir).expect_err("missing file");
        let expected = dir.join(missing);
        assert!(
            matches!(err, DataError::Missing { ref path, .. } if *path == expected),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&expected.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn real_data_with_one_changed_byte_fails_its_checksum() {
    let dir = TempDir::new().expect("temp dir");
    for name in NAMES
        .iter()
        .map(|n| format!("{n}.gz"))
        .chain(["SHA256SUMS".to_string()])
    {
        fs::copy(Path::new(REAL_DATA).join(&name), dir.path().join(&name)).expect("copy real data");
    }
    Mnist::load(dir.path()).expect("the copy loads");
    let bad = dir.path().join(format!("{TEST_IMAGES}.gz"));
    let mut bytes = fs::read(&bad).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&bad, &bytes).expect("write");
    let sums = fs::read_to_string(dir.path().join("SHA256SUMS")).expect("read sums");
    let listed = sums
        .lines()
        .find(|l| l.ends_with(&format!("{TEST_IMAGES}.gz")))
        .and_then(|l| l.split_whitespace().next())
        .expect("t10k images are listed")
        .to_string();
    match Mnist::load(dir.path()) {
        Err(DataError::Checksum {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, bad);
            assert_eq!(expected, listed);
            assert_eq!(actual, sha256_hex(&bytes));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn malformed_checksum_list_and_too_few_training_images() {
    let mut c = Corpus::new();
    let (dir, _) = c.case(TEST_LABELS, TEST_LABELS, &labels(TEST_COUNT), Sums::Absent);
    let sums = dir.join("SHA256SUMS");
    fs::write(&sums, "# digests\nnot-a-digest  t10k-labels-idx1-ubyte\n").expect("write");
    let err = Mnist::load(&dir).expect_err("bad SHA256SUMS");
    assert!(
        matches!(err, DataError::BadChecksumList { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&sums.display().to_string()),
        "{err}"
    );

    // 5000 training images all go to validation, leaving none to train on.
    let (dir, _) = c.case(TRAIN_IMAGES, TRAIN_IMAGES, &images(5000), Sums::Absent);
    fs::remove_file(dir.join(TRAIN_LABELS)).expect("remove");
    fs::write(dir.join(TRAIN_LABELS), labels(5000)).expect("write");
    let err = Mnist::load(&dir).expect_err("too few");
    assert!(
        matches!(err, DataError::TooFewTraining { count: 5000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(TRAIN_IMAGES), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Command line

/// Runs `bnconv ARGS --json <fresh dir>/out.json` (unless ARGS has its own `--json`) and checks
/// the rejection: non-zero exit, `needle` in stderr, no panic, nothing on stdout, and nothing
/// created in the JSON directory.
fn assert_cli_rejected(args: &[&str], needle: &str) {
    let out_dir = TempDir::new().expect("temp dir");
    let json = out_dir.path().join("out.json");
    let mut full: Vec<&str> = args.to_vec();
    if !args.contains(&"--json") {
        full.extend(["--json", json.to_str().expect("utf-8 temp path")]);
    }
    let out = bnconv(&full);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} should fail; stdout:\n{stdout}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert!(
        stdout.is_empty(),
        "{args:?}: rejected only after work started; stdout:\n{stdout}"
    );
    let left: Vec<_> = fs::read_dir(out_dir.path())
        .expect("read temp dir")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert!(left.is_empty(), "{args:?} left files behind: {left:?}");
}

#[test]
fn bad_training_options_are_rejected_before_any_work() {
    assert_cli_rejected(&["--batch-size", "0"], "--batch-size");
    assert_cli_rejected(&["train", "--batch-size", "0"], "--batch-size");
    // Above the 55000 training images: known once the data is loaded, still before any output.
    assert_cli_rejected(
        &["--batch-size", "60000", "--batches", "1"],
        "batch size 60000",
    );
    assert_cli_rejected(
        &["train", "--batch-size", "55001", "--batches", "1"],
        "batch size 55001",
    );
    assert_cli_rejected(&["--batches", "0"], "--batches");
    assert_cli_rejected(&["train", "--batches", "0"], "--batches");
    assert_cli_rejected(&["--eval-batch", "0"], "--eval-batch");
    for lr in ["0", "-0", "-1", "-0.002", "NaN", "nan", "inf", "1e39"] {
        assert_cli_rejected(&["train", "--lr", lr], "learning rate");
    }
    // clap reads a bare `-inf` as an option; `--lr=-inf` is how a user writes it.
    assert_cli_rejected(&["train", "--lr=-inf"], "learning rate");
    assert_cli_rejected(&["train", "--lr", "fast"], "not a number");
    assert_cli_rejected(&["--threads", "0"], "--threads");
}

#[test]
fn unknown_names_are_rejected_before_any_work() {
    assert_cli_rejected(&["--variants", "resnet"], "unknown variant");
    assert_cli_rejected(&["--variants", "plain,bnn"], "unknown variant");
    assert_cli_rejected(&["compare", "--variants", ""], "unknown variant");
    assert_cli_rejected(&["train", "--variant", "nope"], "unknown variant");
    assert_cli_rejected(&["--bn", "half"], "unknown BN mode");
    assert_cli_rejected(&["train", "--bn", "FUSED"], "unknown BN mode");
    assert_cli_rejected(&["--gemm", "mkl"], "unknown GEMM backend");
    assert_cli_rejected(&["--no-such-option"], "--no-such-option");
}

#[test]
fn bad_sweep_eval_and_predict_options_are_rejected_before_any_work() {
    assert_cli_rejected(&["sweep", "--seeds", "8-1"], "runs backwards");
    assert_cli_rejected(&["sweep", "--seeds", "1,2,1"], "seed 1 is listed twice");
    assert_cli_rejected(&["sweep", "--seeds", "one"], "not a seed");
    assert_cli_rejected(&["sweep", "--seeds", "0-99999999999"], "more than");
    assert_cli_rejected(
        &["sweep", "--variants", "bn,bn"],
        "variant bn is listed twice",
    );
    // Counts say what they take, not "0 is not in 1..=4096".
    for (args, needle) in [
        (
            &["sweep", "--jobs", "0"][..],
            "--jobs <JOBS>': must be at least 1",
        ),
        (&["sweep", "--jobs", "4097"], "must be at most 4096"),
        (
            &["sweep", "--threads-per-job", "0"],
            "--threads-per-job <THREADS_PER_JOB>': must be at least 1",
        ),
        (
            &["profile", "--batch-size", "0"],
            "--batch-size <BATCH_SIZE>': must be at least 1",
        ),
        (&["profile", "--steps", "0"], "must be at least 1"),
        (&["profile", "--threads", "1,0"], "must be at least 1"),
        (&["profile", "--model-threads", "0"], "must be at least 1"),
        (
            &[
                "predict",
                "--checkpoint",
                "none.safetensors",
                "a.png",
                "--top",
                "0",
            ],
            "--top <TOP>': must be at least 1",
        ),
    ] {
        assert_cli_rejected(args, needle);
    }
    assert_cli_rejected(&["sweep", "--batch-size", "60000"], "batch size 60000");
    assert_cli_rejected(&["sweep", "--lr", "0"], "learning rate");
    assert_cli_rejected(&["sweep", "--plot", "sweep.gif"], ".png or .svg");
    assert_cli_rejected(&["sweep", "--threads", "2"], "--threads");
    let eval = ["eval", "--checkpoint", "none.safetensors"];
    assert_cli_rejected(&[&eval[..], &["--split", "train"]].concat(), "--split");
    assert_cli_rejected(
        &[&eval[..], &["--predictions", "no-such-dir/p.csv"]].concat(),
        "does not exist",
    );
    assert_cli_rejected(&[&eval[..], &["--plot", "cm.jpg"]].concat(), ".png or .svg");
    assert_cli_rejected(&eval, "none.safetensors");
    assert_cli_rejected(&["predict", "--checkpoint", "none.safetensors"], "IMAGE");
    assert_cli_rejected(
        &[
            "predict",
            "--checkpoint",
            "none.safetensors",
            "a.png",
            "--top",
            "11",
        ],
        "must be at most 10",
    );
    assert_cli_rejected(
        &[
            "predict",
            "--checkpoint",
            "none.safetensors",
            "a.png",
            "--fit",
            "crop",
        ],
        "--fit",
    );
    // The checkpoint is read before any image, and a bad one stops the command.
    assert_cli_rejected(
        &["predict", "--checkpoint", "none.safetensors", "a.png"],
        "none.safetensors",
    );
}

/// `BNCONV_ISA` naming no SIMD path fails every command before any work, with the names it
/// takes (empty counts as unset); a valid name is the path the program then reports.
#[test]
fn unknown_simd_paths_are_rejected_before_any_work() {
    let run = |isa: &str, args: &[&str]| bnconv_with_env(args, &[("BNCONV_ISA", isa)]);
    let commands: [&[&str]; 4] = [
        &["--batches", "1"],
        &["train", "--batches", "1"],
        &["eval", "--checkpoint", "none.safetensors"],
        &["profile", "--steps", "1"],
    ];
    // Set but empty means unset: the command goes on to its own checks.
    let out = run("", &["eval", "--checkpoint", "none.safetensors"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("BNCONV_ISA") && stderr.contains("none.safetensors"),
        "{stderr}"
    );
    for isa in ["sse9", "AVX2"] {
        for args in commands {
            let out = run(isa, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "BNCONV_ISA={isa:?} {args:?} should fail"
            );
            assert!(
                stderr.contains("BNCONV_ISA") && stderr.contains("avx512, avx2, portable"),
                "BNCONV_ISA={isa:?} {args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(
                out.stdout.is_empty(),
                "BNCONV_ISA={isa:?} {args:?}: work started"
            );
        }
    }
    // The smallest command that reports its path: a one-step profile of batches of 2.
    let out = run(
        "portable",
        &[
            "profile",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--batch-size",
            "2",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SIMD portable"), "{stdout}");
}

#[test]
fn missing_or_bad_data_is_rejected_before_any_work() {
    let dir = TempDir::new().expect("temp dir");
    let absent = dir.path().join("absent");
    assert_cli_rejected(
        &["--data", absent.to_str().expect("utf-8"), "--batches", "1"],
        "absent",
    );
    let bad = dir.path().join("bad");
    fs::create_dir(&bad).expect("mkdir");
    for name in NAMES {
        fs::write(bad.join(name), b"").expect("write");
    }
    assert_cli_rejected(
        &[
            "train",
            "--data",
            bad.to_str().expect("utf-8"),
            "--batches",
            "1",
        ],
        "empty",
    );
}

#[test]
fn unwritable_json_paths_are_rejected_before_any_work() {
    let dir = TempDir::new().expect("temp dir");
    let path = |p: &Path| p.to_str().expect("utf-8 temp path").to_string();

    let missing = dir.path().join("no-such-dir").join("out.json");
    assert_cli_rejected(
        &["--batches", "1", "--json", &path(&missing)],
        "does not exist",
    );

    let file = dir.path().join("a-file");
    fs::write(&file, b"x").expect("write");
    let under_file = file.join("out.json");
    assert_cli_rejected(
        &["--batches", "1", "--json", &path(&under_file)],
        "not a directory",
    );

    assert_cli_rejected(
        &["--batches", "1", "--json", &path(dir.path())],
        "is a directory",
    );

    // A directory that refuses new files. Root ignores permission bits, so when this process can
    // still write into a read-only directory, use /sys, which refuses new files even to root.
    let read_only = dir.path().join("read-only");
    fs::create_dir(&read_only).expect("mkdir");
    set_mode(&read_only, 0o555);
    let unwritable = if can_create_in(&read_only) {
        PathBuf::from("/sys")
    } else {
        read_only.clone()
    };
    assert!(
        !can_create_in(&unwritable),
        "found no unwritable directory to test with"
    );
    let target = unwritable.join("bnconv-out.json");
    assert_cli_rejected(
        &["--batches", "1", "--json", &path(&target)],
        "cannot create",
    );
    assert!(!target.exists());
    set_mode(&read_only, 0o755);
    let left = fs::read_dir(&read_only).expect("read").count();
    assert_eq!(left, 0, "the write probe left a file behind");
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(not(unix))]
fn set_mode(path: &Path, _mode: u32) {
    let mut perms = fs::metadata(path).expect("stat").permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).expect("set read-only");
}

fn can_create_in(dir: &Path) -> bool {
    let probe = dir.join(format!(".bnconv-test-probe-{}", std::process::id()));
    match fs::File::create(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}
