//! Fuzzes the MNIST reader: the input as one IDX images file, as one IDX labels file, and split
//! into an (optionally gzipped) images/labels pair decoded like `Mnist::load` does. The body is
//! `tests/support/mnist_oracle.rs`, shared with the property test `tests/mnist_proptest.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/mnist_oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    oracle::check(data);
});
