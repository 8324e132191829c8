//! A minimal layer API over `bnconv-kernels`, and everything the seed experiment needs: the seed
//! network, sigmoid cross-entropy, TF1 Adam, MNIST, the training protocol (docs/protocol.md),
//! per-image predictions and seed sweeps.
//!
//! - Layers ([`conv2d::Conv2d`], [`batch_norm::BatchNorm`], [`relu::Relu`], [`dense::Dense`])
//!   implement [`Layer`]. A [`Network`] chains them, checks their shapes once when it is built,
//!   owns every activation and gradient buffer and runs forward (train or eval [`Mode`]) and
//!   backward; [`adam::Adam`] updates the parameters it visits.
//! - [`seed_network`] builds the seed CNN; [`train::run_protocol`] trains it under the protocol;
//!   [`train::evaluate`] and [`predictions::evaluate_predictions`] evaluate a set;
//!   [`checkpoint`] saves and loads networks and training state.
//! - Results are bitwise reproducible: the same seed gives the same weights whatever the thread
//!   count, SIMD path or batch-norm path.
//!
//! # A network of your own
//!
//! Two convolutions with batch norm + ReLU and a dense layer, fitted to four 8x8 images: a few
//! Adam steps bring the loss down. (`examples/custom_network.rs` trains a larger one on MNIST.)
//!
//! ```
//! use bnconv_nn::adam::{Adam, AdamConfig};
//! use bnconv_nn::{batch_norm::BatchNorm, conv2d::Conv2d, dense::Dense};
//! use bnconv_nn::loss::sigmoid_cross_entropy;
//! use bnconv_nn::{Exec, Layer, Mode, Network};
//!
//! // 8x8x1 -> 8x8x4 -> 4x4x8 (stride 2) -> 3 logits.
//! let weights = |n: usize| (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 40.0).collect();
//! let layers: Vec<Box<dyn Layer>> = vec![
//!     Box::new(Conv2d::new("conv1", 1, 4, 1, weights(9 * 4), None)),
//!     Box::new(BatchNorm::new("bn1", 4, true)),
//!     Box::new(Conv2d::new("conv2", 4, 8, 2, weights(9 * 4 * 8), None)),
//!     Box::new(BatchNorm::new("bn2", 8, true)),
//!     Box::new(Dense::new("fc", 4 * 4 * 8, 3, weights(128 * 3), Some(vec![0.0; 3]))),
//! ];
//! let mut net = Network::new(&[8, 8, 1], layers, Exec::default())?;
//!
//! // Four images (NHWC, back to back) and their one-hot classes 0, 1, 2, 0.
//! let x: Vec<f32> = (0..4 * 64).map(|i| ((i * i) % 13) as f32 / 13.0).collect();
//! let mut y = vec![0.0; 4 * 3];
//! for (image, class) in [0, 1, 2, 0].into_iter().enumerate() {
//!     y[image * 3 + class] = 1.0;
//! }
//! let mut adam = Adam::new(AdamConfig { lr: 0.01, ..AdamConfig::default() });
//! let mut dlogits = vec![0.0; 4 * 3];
//! let mut losses = Vec::new();
//! for _ in 0..30 {
//!     let logits = net.forward(&x, 4, Mode::Train);
//!     assert_eq!(logits.shape().dims(), &[4, 3]);
//!     losses.push(sigmoid_cross_entropy(logits.data(), &y, Some(&mut dlogits)));
//!     net.backward(&dlogits);
//!     adam.step(&mut net);
//! }
//! assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
//!
//! // Evaluation mode normalises with the moving statistics the training steps kept.
//! let eval = net.forward(&x[..64], 1, Mode::Eval);
//! assert!(eval.data().iter().all(|v| v.is_finite()));
//! # Ok::<(), bnconv_nn::layer::ShapeError>(())
//! ```

pub mod adam;
pub mod atomic_write;
pub mod batch_norm;
pub mod batches;
pub mod checkpoint;
pub mod confusion;
pub mod conv2d;
pub mod dense;
pub mod digest;
pub mod distributed;
pub mod finite;
pub mod init;
pub mod layer;
pub mod loss;
pub mod mnist;
pub mod network;
pub mod predictions;
pub mod relu;
pub mod seed;
pub mod sweep;
pub mod sweep_summary;
pub mod tensor;
pub mod train;

pub use layer::{BnPath, Exec, Layer, Mode, ParamKind, ParamMut};
pub use network::Network;
pub use seed::{seed_network, Variant};
pub use tensor::{Shape, Tensor};
