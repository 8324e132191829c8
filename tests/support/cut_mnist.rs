//! The repository's MNIST with its evaluation sets cut short, for in-process protocol runs whose
//! evaluations must stay cheap; the training set is whole.

use bnconv_nn::mnist::Mnist;
use std::path::Path;

/// The repository's MNIST (`data/mnist`) keeping the first `validation` validation images and
/// the first `test` test images.
pub fn load_cut(validation: usize, test: usize) -> Mnist {
    let full = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("load data/mnist");
    Mnist {
        validation: full.validation.slice(0..validation),
        test: full.test.slice(0..test),
        train: full.train,
    }
}
