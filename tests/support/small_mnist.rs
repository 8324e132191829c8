//! A small MNIST directory for end-to-end runs of the binary: raw IDX files cut from the real
//! ones, with the 5000 validation images, 64 training images and 500 test images, so that each
//! run's evaluations stay short.
// Each test file uses only some of these.
#![allow(dead_code)]

use bnconv_nn::mnist::{Dataset, Mnist};
use std::path::Path;
use std::sync::OnceLock;

/// A small MNIST directory (raw IDX files cut from the real ones): the 5000 validation images,
/// 64 training images and 500 test images, so that each run's evaluations stay short. (Shared by
/// the file's tests for the whole process: a static is never dropped, so this one directory is
/// left behind in the temp dir.)
pub fn small_data() -> &'static str {
    static DIR: OnceLock<super::binary::Scratch> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let real = Mnist::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist"
        )))
        .expect("the repository's MNIST loads");
        let dir = super::binary::scratch("small-mnist", "data");
        let mut train_images = real.validation.pixels().to_vec();
        train_images.extend_from_slice(real.train.slice(0..64).pixels());
        let mut train_labels = real.validation.labels().to_vec();
        train_labels.extend_from_slice(&real.train.labels()[..64]);
        let test = real.test.slice(0..500);
        write_idx(&dir, "train", &train_images, &train_labels);
        write_idx(&dir, "t10k", test.pixels(), test.labels());
        dir
    });
    dir.to_str().expect("a UTF-8 temp path")
}

fn write_idx(dir: &Path, set: &str, pixels: &[u8], labels: &[u8]) {
    let n = labels.len() as u32;
    let mut bytes = [0x803u32, n, 28, 28].map(u32::to_be_bytes).concat();
    bytes.extend_from_slice(pixels);
    assert_eq!(bytes.len(), 16 + labels.len() * Dataset::PIXELS);
    std::fs::write(dir.join(format!("{set}-images-idx3-ubyte")), bytes).unwrap();
    let mut bytes = [0x801u32, n].map(u32::to_be_bytes).concat();
    bytes.extend_from_slice(labels);
    std::fs::write(dir.join(format!("{set}-labels-idx1-ubyte")), bytes).unwrap();
}
