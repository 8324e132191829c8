//! Batch normalization and ReLU: the unfused kernels ([`batchnorm`], [`relu`]) and the fused
//! BN+ReLU passes ([`bn_relu`]) that share their arithmetic, so both paths give the same bits.

pub mod batchnorm;
pub mod bn_relu;
pub mod relu;
