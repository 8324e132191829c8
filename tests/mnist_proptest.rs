//! Property test of the MNIST reader: random bytes and mutated valid IDX files (flipped bytes,
//! truncation, extension, rewritten header fields, gzipped or not, before or after compression)
//! must give an error naming the file or a valid dataset that round-trips, and never panic.
//!
//! The oracle is `tests/support/mnist_oracle.rs`, the same body the cargo-fuzz target runs.
//! 256 cases per property by default; more with e.g. `PROPTEST_CASES=200000`.

#[path = "support/mnist_oracle.rs"]
mod oracle;

use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::collection::vec;
use proptest::prelude::*;
use std::io::Write;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

/// A valid pair: 1 to 3 images with arbitrary pixels and digit labels.
fn valid_pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (1usize..=3).prop_flat_map(|n| {
        (vec(any::<u8>(), n * 784), vec(0u8..=9, n)).prop_map(move |(pixels, labels)| {
            (
                oracle::encode_images(n as u32, &pixels),
                oracle::encode_labels(&labels),
            )
        })
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR the byte at `at % len` with a non-zero mask.
    Flip { at: usize, mask: u8 },
    /// Keep the first `len % (len + 1)` bytes.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Overwrite big-endian header word `word` (0 = magic, then the dimensions).
    SetWord { word: usize, value: u32 },
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= mask;
            }
        }
        Mutation::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::SetWord { word, value } => {
            let at = 4 * word;
            if bytes.len() >= at + 4 {
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
        }
    }
}

fn header_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(4),
        Just(27),
        Just(28),
        Just(29),
        Just(oracle::IMAGES_MAGIC),
        Just(oracle::LABELS_MAGIC),
        Just(0x0000_0804),
        Just(u32::MAX),
        Just(u32::MAX / 784 + 1),
        Just(1 << 31),
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (0usize..4, header_value()).prop_map(|(word, value)| Mutation::SetWord { word, value }),
    ]
}

/// Which file a mutation hits, and whether it hits the raw bytes or the gzip stream.
#[derive(Clone, Copy, Debug)]
struct Target {
    labels: bool,
    /// Hits the gzip stream (when that file is gzipped; skipped otherwise).
    after_compression: bool,
}

fn target() -> impl Strategy<Value = Target> {
    (any::<bool>(), any::<bool>()).prop_map(|(labels, after_compression)| Target {
        labels,
        after_compression,
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..3000)) {
        oracle::check(&data);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        count in header_value(),
        body in vec(any::<u8>(), 0..2400),
        labels in vec(any::<u8>(), 0..8),
    ) {
        let images = oracle::encode_images(count, &body);
        oracle::check_images_file(&images);
        oracle::check_labels_file(&oracle::encode_labels(&labels));
        let _ = oracle::check_pair(&images, &oracle::encode_labels(&labels));
    }

    #[test]
    fn mutated_valid_files_give_an_error_or_a_valid_dataset(
        (images, labels) in valid_pair(),
        mutations in vec((target(), mutation()), 0..4),
        gzip_images in any::<bool>(),
        gzip_labels in any::<bool>(),
    ) {
        let (mut images, mut labels) = (images, labels);
        // Raw-byte mutations first, then compression, then mutations of the gzip stream.
        for (t, m) in &mutations {
            if !t.after_compression {
                apply(if t.labels { &mut labels } else { &mut images }, m);
            }
        }
        oracle::check_images_file(&images);
        oracle::check_labels_file(&labels);
        if gzip_images {
            images = gzip(&images);
        }
        if gzip_labels {
            labels = gzip(&labels);
        }
        for (t, m) in &mutations {
            if t.after_compression && (if t.labels { gzip_labels } else { gzip_images }) {
                apply(if t.labels { &mut labels } else { &mut images }, m);
            }
        }
        let result = oracle::check_pair(&images, &labels);
        if mutations.is_empty() {
            // Guards the property: untouched valid files must load.
            prop_assert!(result.is_ok(), "a valid pair was rejected: {:?}", result.err());
        }
        oracle::check(&oracle::join(&images, &labels));
    }
}
