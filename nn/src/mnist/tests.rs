//! The loader's tests: the shipped files, every corruption a file can carry, and the reader's
//! properties.

use super::checksums::CHECKSUMS;
use super::file::GZIP_MAGIC;
use super::idx::{IMAGES_MAGIC, LABELS_MAGIC};
use super::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist");
const NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The real data set, loaded once for all tests that need it.
fn real() -> &'static Mnist {
    static REAL: OnceLock<Mnist> = OnceLock::new();
    REAL.get_or_init(|| Mnist::load(Path::new(DATA)).expect("load data/mnist"))
}

/// A unique directory under the system temp dir, removed on drop (even when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("bnconv-nn-mnist-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn idx_images(count: usize, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = [IMAGES_MAGIC, count as u32, rows, cols]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>();
    let pixels = count * rows as usize * cols as usize;
    bytes.extend((0..pixels).map(|i| (i % 251) as u8));
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = [LABELS_MAGIC, labels.len() as u32]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>();
    bytes.extend_from_slice(labels);
    bytes
}

fn digits(count: usize) -> Vec<u8> {
    (0..count).map(|i| (i % 10) as u8).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small but valid MNIST directory: 5001 training images (one left after validation).
fn synthetic(tag: &str, train: usize, train_labels: usize, test: usize) -> TempDir {
    let dir = TempDir::new(tag);
    dir.write(TRAIN_IMAGES, &idx_images(train, 28, 28));
    dir.write(TRAIN_LABELS, &idx_labels(&digits(train_labels)));
    dir.write(TEST_IMAGES, &idx_images(test, 28, 28));
    dir.write(TEST_LABELS, &idx_labels(&digits(test)));
    dir
}

fn load_err(dir: &Path) -> DataError {
    Mnist::load(dir).expect_err("load should fail")
}

#[test]
fn loads_real_mnist_like_tf1() {
    let m = real();
    assert_eq!(m.train.len(), 55_000);
    assert_eq!(m.validation.len(), 5_000);
    assert_eq!(m.test.len(), 10_000);
    for set in [&m.train, &m.validation, &m.test] {
        assert_eq!(set.pixels().len(), set.len() * Dataset::PIXELS);
        assert!(set.pixels().contains(&255) && set.pixels().contains(&0));
    }
    // Index 0 of the raw training file is validation[0]; index 5000 is train[0].
    assert_eq!(m.validation.labels()[0], 5);
    assert_eq!(m.test.labels()[0], 7);

    let raw_path = Path::new(DATA).join(format!("{TRAIN_LABELS}.gz"));
    let raw = read_maybe_gzipped(&raw_path).expect("read labels");
    let raw = parse_idx_labels(&raw, "train labels").expect("parse labels");
    assert_eq!(m.validation.labels(), &raw[..5000]);
    assert_eq!(m.train.labels(), &raw[5000..]);

    let raw_path = Path::new(DATA).join(format!("{TRAIN_IMAGES}.gz"));
    let raw = read_maybe_gzipped(&raw_path).expect("read images");
    let (count, pixels) = parse_idx_images(&raw, "train images").expect("parse images");
    assert_eq!(count, 60_000);
    assert_eq!(m.validation.pixels(), &pixels[..5000 * 784]);
    assert_eq!(m.train.pixels(), &pixels[5000 * 784..]);
    // A copied-out batch is TF1's `float32(p) * float32(1/255)`: 1.0 exactly for 255, and
    // the rounded reciprocal's product (not `p / 255`) elsewhere.
    let mut x = vec![f32::NAN; 784];
    let mut y = vec![0.0; 10];
    m.train.copy_range(0..1, &mut x, &mut y);
    for (&p, &x) in m.train.image(0).iter().zip(&x) {
        assert_eq!(x.to_bits(), (f32::from(p) * (1.0f32 / 255.0)).to_bits());
    }
    assert_eq!(pixel_value(255), 1.0);
    assert_eq!(pixel_value(0), 0.0);
    assert_ne!(
        pixel_value(3),
        3.0 / 255.0,
        "TF1 multiplies by the reciprocal"
    );
}

#[test]
fn raw_files_load_identically_to_gzipped() {
    let dir = TempDir::new("raw");
    let mut sums = String::new();
    for name in NAMES {
        let raw = read_maybe_gzipped(&Path::new(DATA).join(format!("{name}.gz")))
            .expect("read real file");
        assert!(!raw.starts_with(&GZIP_MAGIC));
        dir.write(name, &raw);
        sums += &format!("{}  {name}\n", sha256_hex(&raw));
    }
    // Listed but absent files are skipped; the present ones verify.
    sums += &format!("{}  not-here.gz\n", "0".repeat(64));
    dir.write(CHECKSUMS, sums.as_bytes());

    let raw = Mnist::load(&dir.0).expect("load raw files");
    let gz = real();
    for (a, b) in [
        (&raw.train, &gz.train),
        (&raw.validation, &gz.validation),
        (&raw.test, &gz.test),
    ] {
        assert_eq!(a.labels(), b.labels());
        assert!(a.pixels() == b.pixels());
    }
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = synthetic("magic", 5001, 5001, 3);
    // Gzipped data under the plain name, plain data under the .gz name.
    let labels = fs::read(dir.0.join(TRAIN_LABELS)).expect("read");
    dir.write(TRAIN_LABELS, &gzip(&labels));
    let images = fs::read(dir.0.join(TEST_IMAGES)).expect("read");
    fs::remove_file(dir.0.join(TEST_IMAGES)).expect("remove");
    dir.write(&format!("{TEST_IMAGES}.gz"), &images);

    let m = Mnist::load(&dir.0).expect("load");
    assert_eq!(
        (m.train.len(), m.validation.len(), m.test.len()),
        (1, 5000, 3)
    );
    assert_eq!(m.train.labels(), &[0]);
    assert_eq!(m.test.labels(), &[0, 1, 2]);
    assert_eq!(m.test.image(1)[0], (784 % 251) as u8);
}

#[test]
fn gz_is_preferred_over_raw() {
    let dir = synthetic("prefer", 5001, 5001, 3);
    dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels(&[9, 9, 9])));
    let m = Mnist::load(&dir.0).expect("load");
    assert_eq!(m.test.labels(), &[9, 9, 9]);
}

#[test]
fn idx_header_errors() {
    let what = "crafted.idx";
    let check = |err: DataError, expect: &str| {
        let msg = err.to_string();
        assert!(msg.contains(what), "{msg:?} does not name the source");
        assert!(msg.contains(expect), "{msg:?} does not mention {expect:?}");
        err
    };

    let mut bad_magic = idx_images(1, 28, 28);
    bad_magic[3] = 0x01;
    let err = parse_idx_images(&bad_magic, what).expect_err("bad magic");
    let err = check(err, "0x00000801");
    assert!(matches!(
        err,
        DataError::BadMagic {
            expected: 0x803,
            found: 0x801,
            ..
        }
    ));
    let err = parse_idx_labels(&idx_images(1, 28, 28), what).expect_err("images as labels");
    assert!(matches!(check(err, "magic"), DataError::BadMagic { .. }));

    let err = parse_idx_images(&idx_images(2, 27, 28), what).expect_err("rows 27");
    assert!(matches!(
        check(err, "27x28"),
        DataError::BadDimensions { .. }
    ));
    let err = parse_idx_images(&idx_images(2, 28, 27), what).expect_err("cols 27");
    assert!(matches!(
        check(err, "28x27"),
        DataError::BadDimensions { .. }
    ));

    let full = idx_images(3, 28, 28);
    let err = parse_idx_images(&full[..full.len() - 1], what).expect_err("truncated");
    assert!(matches!(
        check(err, "truncated"),
        DataError::Truncated { .. }
    ));
    let err = parse_idx_images(&full[..10], what).expect_err("truncated header");
    assert!(matches!(check(err, "header"), DataError::Truncated { .. }));
    let mut trailing = full.clone();
    trailing.push(0);
    let err = parse_idx_images(&trailing, what).expect_err("trailing");
    assert!(matches!(
        check(err, "1 trailing"),
        DataError::BadDimensions { .. }
    ));

    let labels = idx_labels(&[1, 2, 3]);
    let err = parse_idx_labels(&labels[..labels.len() - 2], what).expect_err("truncated");
    assert!(matches!(
        check(err, "truncated"),
        DataError::Truncated { .. }
    ));
    let err = parse_idx_labels(&[labels.as_slice(), &[4]].concat(), what).expect_err("trail");
    assert!(matches!(
        check(err, "trailing"),
        DataError::BadDimensions { .. }
    ));

    let err = parse_idx_labels(&idx_labels(&[0, 9, 10, 3]), what).expect_err("label 10");
    let err = check(err, "label 10 at index 2");
    assert!(matches!(
        err,
        DataError::BadLabel {
            index: 2,
            label: 10,
            ..
        }
    ));

    let err = parse_idx_images(&[], what).expect_err("empty");
    assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
    let err = parse_idx_labels(&idx_labels(&[]), what).expect_err("zero labels");
    assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
    let err = parse_idx_images(&idx_images(0, 28, 28), what).expect_err("zero images");
    assert!(matches!(check(err, "empty"), DataError::Empty { .. }));
}

#[test]
fn hostile_header_is_rejected_before_allocating() {
    // Claims 4 billion images (3 TB) with a 100-byte body.
    let mut bytes = idx_images(0, 28, 28);
    bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    bytes.extend([0; 100]);
    let err = parse_idx_images(&bytes, "hostile").expect_err("hostile header");
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("only 100 bytes follow"), "{err}");

    let mut labels = idx_labels(&[1]);
    labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = parse_idx_labels(&labels, "hostile").expect_err("hostile header");
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
}

#[test]
fn corrupt_and_truncated_gzip_are_errors() {
    let real = fs::read(Path::new(DATA).join(format!("{TEST_LABELS}.gz"))).expect("read");
    let dir = TempDir::new("gzip");
    let expect_gzip_error = |name: &str, bytes: &[u8]| {
        let path = dir.write(name, bytes);
        let err = read_maybe_gzipped(&path).expect_err("bad gzip must fail");
        assert!(matches!(err, DataError::Gzip { .. }), "{name}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    };

    let mut flipped = real.clone();
    for b in &mut flipped[200..210] {
        *b ^= 0xa5;
    }
    expect_gzip_error("flipped.gz", &flipped);
    let mut bad_crc = real.clone();
    let crc = bad_crc.len() - 8;
    bad_crc[crc] ^= 0xff;
    expect_gzip_error("bad-crc.gz", &bad_crc);
    expect_gzip_error("truncated-body.gz", &real[..real.len() / 2]);
    expect_gzip_error("truncated-trailer.gz", &real[..real.len() - 4]);
    expect_gzip_error("header-only.gz", &real[..5]);
    expect_gzip_error("trailing-junk.gz", &[real.as_slice(), b"junk"].concat());

    // Concatenated members are one stream, as `gzip -d` reads them.
    let two = [gzip(b"ab").as_slice(), &gzip(b"cd")].concat();
    let path = dir.write("two.gz", &two);
    assert_eq!(read_maybe_gzipped(&path).expect("multi-member"), b"abcd");
}

#[test]
fn missing_directory_and_files() {
    let gone = std::env::temp_dir().join("bnconv-nn-mnist-definitely-not-here");
    let err = load_err(&gone);
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&gone.display().to_string()) && msg.contains("directory"),
        "{msg}"
    );

    let dir = synthetic("missing", 5001, 5001, 2);
    fs::remove_file(dir.0.join(TEST_LABELS)).expect("remove");
    let err = load_err(&dir.0);
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.0.join(TEST_LABELS).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(".gz"), "{msg}");

    let err = read_maybe_gzipped(&dir.0.join("nope")).expect_err("missing file");
    assert!(matches!(err, DataError::Missing { .. }) && err.to_string().contains("nope"));

    let file = dir.0.join(TEST_IMAGES);
    let err = load_err(&file);
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("not a directory"), "{err}");

    // Reading a directory is an I/O error, not "missing".
    let err = read_maybe_gzipped(&dir.0).expect_err("a directory is not a file");
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.0.display().to_string()),
        "{err}"
    );
}

#[test]
fn empty_file_is_named() {
    let dir = synthetic("empty", 5001, 5001, 2);
    let path = dir.write(TRAIN_LABELS, &[]);
    let err = load_err(&dir.0);
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn bad_file_in_directory_is_named() {
    let dir = synthetic("badmagic", 5001, 5001, 2);
    let path = dir.write(TEST_IMAGES, &idx_labels(&[1, 2]));
    let err = load_err(&dir.0);
    assert!(matches!(err, DataError::BadMagic { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = synthetic("count", 5001, 5002, 2);
    let err = load_err(&dir.0);
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 5001,
                labels: 5002,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(TRAIN_IMAGES) && msg.contains(TRAIN_LABELS),
        "{msg}"
    );
}

#[test]
fn too_few_training_images() {
    let dir = synthetic("few", 5000, 5000, 2);
    let err = load_err(&dir.0);
    assert!(
        matches!(err, DataError::TooFewTraining { count: 5000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(TRAIN_IMAGES), "{err}");

    let dir = synthetic("enough", 5001, 5001, 2);
    let m = Mnist::load(&dir.0).expect("5001 images leave one for training");
    assert_eq!(
        (m.train.len(), m.validation.len(), m.test.len()),
        (1, 5000, 2)
    );
}

#[test]
fn checksum_mismatch_is_caught_before_parsing() {
    let dir = synthetic("sha", 5001, 5001, 2);
    // Unparseable content: the checksum error must win over the parse error.
    let bad = dir.write(TRAIN_LABELS, b"not an idx file");
    let expected = "ab".repeat(32);
    let listed = format!(
        "{}  {TEST_IMAGES}\n{}  {TRAIN_LABELS}\n",
        sha256_hex(&fs::read(dir.0.join(TEST_IMAGES)).expect("read")),
        expected.to_uppercase()
    );
    dir.write(CHECKSUMS, listed.as_bytes());
    let err = load_err(&dir.0);
    let actual = sha256_hex(b"not an idx file");
    match &err {
        DataError::Checksum {
            path,
            expected: e,
            actual: a,
        } => assert_eq!((path, e, a), (&bad, &expected, &actual)),
        other => panic!("expected a checksum error, got {other}"),
    }
    let msg = err.to_string();
    for part in [&bad.display().to_string(), &expected, &actual] {
        assert!(msg.contains(part.as_str()), "{msg:?} lacks {part}");
    }

    // Files SHA256SUMS does not list are not checked.
    dir.write(TRAIN_LABELS, &idx_labels(&digits(5001)));
    dir.write(CHECKSUMS, listed.lines().next().unwrap_or("").as_bytes());
    Mnist::load(&dir.0).expect("unlisted files are not checked");
}

#[test]
fn malformed_checksum_list_is_an_error() {
    let dir = synthetic("sums", 5001, 5001, 2);
    let path = dir.write(CHECKSUMS, b"# comment\n\nxyz  train-images-idx3-ubyte\n");
    let err = load_err(&dir.0);
    assert!(
        matches!(err, DataError::BadChecksumList { line: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let binary_mode = format!(
        "{} *{TEST_LABELS}\n",
        sha256_hex(&fs::read(dir.0.join(TEST_LABELS)).expect("read"))
    );
    dir.write(CHECKSUMS, binary_mode.as_bytes());
    Mnist::load(&dir.0).expect("binary-mode entries are accepted");
}

#[test]
fn dataset_new_validates() {
    let err = Dataset::new(vec![0; 783], vec![1]).expect_err("short images");
    assert!(matches!(err, DataError::BadDimensions { .. }), "{err}");
    let err = Dataset::new(vec![0; 784 * 2], vec![1, 10]).expect_err("label 10");
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{err}"
    );
    let empty = Dataset::new(Vec::new(), Vec::new()).expect("empty is valid");
    assert!(empty.is_empty());
}

#[test]
fn batches_copy_pixels_and_one_hot_labels() {
    // Every image distinct, every byte value present.
    let pixels: Vec<u8> = (0..4 * 784).map(|i| ((i * 7) % 256) as u8).collect();
    let set = Dataset::new(pixels, vec![3, 0, 9, 5]).expect("valid");
    let mut x = vec![f32::NAN; 2 * 784];
    let mut y = vec![f32::NAN; 2 * 10];
    let scaled = |i: usize| -> Vec<f32> { set.image(i).iter().map(|&p| pixel_value(p)).collect() };

    set.copy_range(1..3, &mut x, &mut y);
    assert_eq!(&x[..784], scaled(1));
    assert_eq!(&x[784..], scaled(2));
    let mut expected = [0.0; 20];
    expected[0] = 1.0;
    expected[10 + 9] = 1.0;
    assert_eq!(y, expected);

    set.gather(&[3, 0], &mut x, &mut y);
    assert_eq!(&x[..784], scaled(3));
    assert_eq!(&x[784..], scaled(0));
    let mut expected = [0.0; 20];
    expected[5] = 1.0;
    expected[10 + 3] = 1.0;
    assert_eq!(y, expected);

    let tail = set.slice(2..4);
    assert_eq!(tail.labels(), &[9, 5]);
    assert_eq!(tail.pixels(), &set.pixels()[2 * 784..]);
}
