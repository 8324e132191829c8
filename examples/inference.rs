//! Inference from a saved checkpoint: loads the network a `bnconv train --save` wrote, classifies
//! the first test images one at a time and prints each prediction with its top three classes.
//!
//! ```text
//! cargo run --release -- train --variant bn --save bn.safetensors
//! cargo run --release --example inference -- bn.safetensors        # the first 10 test images
//! cargo run --release --example inference -- bn.safetensors 100
//! ```

use bnconv_nn::checkpoint::load_network;
use bnconv_nn::mnist::{pixels_to_f32, Dataset, Mnist};
use bnconv_nn::predictions::top_classes;
use bnconv_nn::{Exec, Mode};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(checkpoint) = args.next().map(PathBuf::from) else {
        eprintln!(
            "usage: inference CHECKPOINT [IMAGES]  (write one with `bnconv train --save FILE`)"
        );
        std::process::exit(2);
    };
    let count: usize = match args.next() {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("IMAGES is a number of test images, got {arg:?}"))?,
        None => 10,
    };
    // Builds the checkpoint's variant of the seed network and loads its weights and batch-norm
    // moving statistics; evaluation mode uses those statistics.
    let (mut net, info) = load_network(&checkpoint, Exec::default())?;
    println!(
        "{}: the {} network after {} training steps",
        checkpoint.display(),
        info.variant,
        info.steps
    );
    let test = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))?.test;
    let count = count.min(test.len());
    let mut correct = 0;
    let mut pixels = vec![0.0; Dataset::PIXELS];
    for i in 0..count {
        // One image is a batch of one: 784 pixels in [0, 1], white digit on black (the data set
        // stores bytes; `pixels_to_f32` scales them exactly as training does).
        pixels_to_f32(test.image(i), &mut pixels);
        let logits = net.forward(&pixels, 1, Mode::Eval).data();
        let top = top_classes(logits, 3);
        let label = usize::from(test.labels()[i]);
        correct += usize::from(top[0].0 == label);
        let others: Vec<String> = top[1..]
            .iter()
            .map(|(class, p)| format!("{class} (p={p:.2})"))
            .collect();
        println!(
            "test image {i:>4}: label {label}, predicted {} (p={:.2}); then {}",
            top[0].0,
            top[0].1,
            others.join(", ")
        );
    }
    println!("{correct} of {count} correct");
    Ok(())
}
