//! A network of your own from bnconv's layer API: five 3x3 convolutions with batch norm + ReLU
//! and a dense classifier, trained on MNIST with Adam, then evaluated on the test set.
//!
//! ```text
//! cargo run --release --example custom_network          # 200 batches of 64
//! cargo run --release --example custom_network -- 20    # a quick check (CI runs this)
//! ```
//!
//! Every layer implements `bnconv_nn::Layer`; `Network` chains them, owns the activation
//! buffers and runs forward and backward. The training loop below is the whole of what
//! `bnconv train` does for the seed network, minus its logging.

use bnconv_nn::adam::{Adam, AdamConfig};
use bnconv_nn::batch_norm::BatchNorm;
use bnconv_nn::batches::BatchSampler;
use bnconv_nn::conv2d::Conv2d;
use bnconv_nn::dense::Dense;
use bnconv_nn::init::glorot_uniform;
use bnconv_nn::loss::sigmoid_cross_entropy;
use bnconv_nn::mnist::{Dataset, Mnist};
use bnconv_nn::train::evaluate;
use bnconv_nn::{Exec, Layer, Mode, Network};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

const BATCH: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batches: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("the argument is a number of batches, got {arg:?}"))?,
        None => 200,
    };
    let data = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))?;

    // 28x28x1 -> 28x28x8 -> 14x14x16 -> 7x7x32 -> 4x4x32 -> 2x2x64 -> 10 logits.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut in_c = 1;
    for (i, (out_c, stride)) in [(8, 1), (16, 2), (32, 2), (32, 2), (64, 2)]
        .into_iter()
        .enumerate()
    {
        let weight = glorot_uniform(9 * in_c, 9 * out_c, 9 * in_c * out_c, &mut rng);
        // No bias: the batch norm's beta takes its place.
        let conv = Conv2d::new(&format!("conv{i}"), in_c, out_c, stride, weight, None);
        layers.push(Box::new(conv));
        // Moving statistics that forget faster than the protocol's (decay 0.99): after a few
        // hundred steps, evaluation mode then normalises with the trained network's statistics.
        let bn = BatchNorm::new(&format!("bn{i}"), out_c, true).with_constants(1e-3, 0.9);
        layers.push(Box::new(bn));
        in_c = out_c;
    }
    let features = 2 * 2 * in_c;
    let weight = glorot_uniform(features, 10, features * 10, &mut rng);
    layers.push(Box::new(Dense::new(
        "fc",
        features,
        10,
        weight,
        Some(vec![0.0; 10]),
    )));
    // Network::new checks every layer's input shape, so a wrong size fails here, not mid-run.
    let mut net = Network::new(&[28, 28, 1], layers, Exec::default())?;

    let mut adam = Adam::new(AdamConfig::default());
    let mut sampler = BatchSampler::new(data.train.len(), 7);
    let mut indices = vec![0; BATCH];
    let mut x = vec![0.0; BATCH * Dataset::PIXELS];
    let mut y = vec![0.0; BATCH * Dataset::CLASSES];
    let mut dlogits = vec![0.0; BATCH * Dataset::CLASSES];
    for step in 0..batches {
        sampler.next_batch(&mut indices);
        data.train.gather(&indices, &mut x, &mut y);
        let logits = net.forward(&x, BATCH, Mode::Train);
        let loss = sigmoid_cross_entropy(logits.data(), &y, Some(&mut dlogits));
        net.backward(&dlogits);
        adam.step(&mut net);
        if step % 50 == 0 || step + 1 == batches {
            println!("batch {step:>4}: training loss {loss:.5}");
        }
    }

    let test = evaluate(&mut net, &data.test, 500);
    println!(
        "test accuracy after {batches} batches: {:.4} ({} images, loss {:.5})",
        test.accuracy, test.images, test.loss
    );
    Ok(())
}
