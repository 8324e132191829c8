//! The MNIST reader's fuzz oracle, one body shared by the property test (`tests/mnist_proptest.rs`)
//! and the cargo-fuzz target (`fuzz/fuzz_targets/mnist_reader.rs`), which include this file with
//! `#[path]`.
//!
//! For any bytes, the reader must return an error that names its source, or a dataset that is
//! valid *and* round-trips: re-encoding what it returned gives back exactly the (decompressed)
//! bytes it was given. Anything else, or a panic, is a bug.
#![allow(dead_code)] // each includer uses a different part

use bnconv_nn::mnist::{decode_idx_pair, decompress, parse_idx_images, parse_idx_labels, Dataset};
use std::path::Path;

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_SOURCE: &str = "fuzz/train-images-idx3-ubyte";
const LABELS_SOURCE: &str = "fuzz/train-labels-idx1-ubyte";
const BYTES_SOURCE: &str = "fuzz/bytes";

/// Fuzz input layout: a big-endian u16 `k`, then the images file (`k` bytes, or all that is left),
/// then the labels file. Inputs shorter than 2 bytes are an empty images and labels file.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data {
        [hi, lo, rest @ ..] => {
            rest.split_at(usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len()))
        }
        _ => (&[], &[]),
    }
}

/// The inverse of [`split`] (for seed inputs); `images` must be shorter than 64 KiB.
pub fn join(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let k = u16::try_from(images.len()).expect("images part fits the u16 length prefix");
    [&k.to_be_bytes()[..], images, labels].concat()
}

/// The whole fuzz body: the input as one file for each parser, and split into a pair.
pub fn check(data: &[u8]) {
    check_images_file(data);
    check_labels_file(data);
    let (images, labels) = split(data);
    let _ = check_pair(images, labels);
}

/// An IDX images file for `count` 28x28 images with the given pixels.
pub fn encode_images(count: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = [IMAGES_MAGIC, count, 28, 28]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    out.extend_from_slice(pixels);
    out
}

/// An IDX labels file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let count = u32::try_from(labels.len()).expect("label count fits u32");
    let mut out: Vec<u8> = [LABELS_MAGIC, count]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    out.extend_from_slice(labels);
    out
}

fn assert_names(err: &dyn std::error::Error, sources: &[&str]) {
    let msg = err.to_string();
    assert!(
        sources.iter().any(|s| msg.contains(s)),
        "error {msg:?} names none of {sources:?}"
    );
}

/// `parse_idx_images` on raw bytes: an error naming the source, or a canonical file.
pub fn check_images_file(data: &[u8]) {
    match parse_idx_images(data, BYTES_SOURCE) {
        Ok((count, pixels)) => {
            assert!(count > 0, "accepted an empty images file");
            assert_eq!(pixels.len(), count * 784);
            let count = u32::try_from(count).expect("count came from a u32 header word");
            assert_eq!(
                encode_images(count, &pixels),
                data,
                "accepted a non-canonical file"
            );
        }
        Err(e) => assert_names(&e, &[BYTES_SOURCE]),
    }
}

/// `parse_idx_labels` on raw bytes: an error naming the source, or a canonical file of digits.
pub fn check_labels_file(data: &[u8]) {
    match parse_idx_labels(data, BYTES_SOURCE) {
        Ok(labels) => {
            assert!(!labels.is_empty(), "accepted an empty labels file");
            assert!(labels.iter().all(|&l| l <= 9), "accepted a label above 9");
            assert_eq!(
                encode_labels(&labels),
                data,
                "accepted a non-canonical file"
            );
        }
        Err(e) => assert_names(&e, &[BYTES_SOURCE]),
    }
}

/// The reader's pair entry point (gunzip if gzipped, parse both, counts agree). Returns what it
/// returned, after checking it.
pub fn check_pair(images: &[u8], labels: &[u8]) -> Result<Dataset, bnconv_nn::mnist::DataError> {
    let (ip, lp) = (Path::new(IMAGES_SOURCE), Path::new(LABELS_SOURCE));
    let result = decode_idx_pair(images.to_vec(), ip, labels.to_vec(), lp);
    match &result {
        Ok(set) => {
            assert!(!set.is_empty(), "accepted an empty pair");
            assert_eq!(set.pixels().len(), set.len() * Dataset::PIXELS);
            assert!(
                set.labels().iter().all(|&l| l <= 9),
                "accepted a label above 9"
            );
            // The stored pixels are the file's bytes, unchanged.
            let pixels = set.pixels();
            let count = u32::try_from(set.len()).expect("count came from a u32 header word");
            let raw_images =
                decompress(images.to_vec(), ip).expect("the pair decoded, so must this");
            let raw_labels =
                decompress(labels.to_vec(), lp).expect("the pair decoded, so must this");
            assert_eq!(
                encode_images(count, pixels),
                raw_images,
                "images do not round-trip"
            );
            assert_eq!(
                encode_labels(set.labels()),
                raw_labels,
                "labels do not round-trip"
            );
        }
        Err(e) => assert_names(e, &[IMAGES_SOURCE, LABELS_SOURCE]),
    }
    result
}
