//! A minimal layer API over `bnconv-kernels`, and everything the seed experiment needs: the seed
//! network, sigmoid cross-entropy, TF1 Adam, MNIST, and the training protocol of PROTOCOL.md.

pub mod adam;
pub mod atomic_write;
pub mod batch_norm;
pub mod batches;
pub mod checkpoint;
pub mod confusion;
pub mod conv2d;
pub mod dense;
pub mod digest;
pub mod finite;
pub mod init;
pub mod layer;
pub mod loss;
pub mod mnist;
pub mod network;
pub mod predictions;
pub mod relu;
pub mod seed;
pub mod tensor;
pub mod train;

pub use layer::{BnPath, Exec, Layer, Mode, ParamKind, ParamMut};
pub use network::Network;
pub use seed::{seed_network, Variant};
pub use tensor::{Shape, Tensor};
