//! The seed notebook's network: 19 3x3 convolutions (out channels `4 * i`, stride 2 when `i % 3
//! == 0`), a 100-unit dense layer and 10 logits, in the three variants of docs/protocol.md.

use crate::batch_norm::BatchNorm;
use crate::conv2d::Conv2d;
use crate::dense::Dense;
use crate::init::{glorot_uniform, truncated_normal};
use crate::layer::{Exec, Layer};
use crate::network::Network;
use crate::relu::Relu;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;

pub const CONV_LAYERS: usize = 19;
pub const HIDDEN: usize = 100;
pub const CLASSES: usize = 10;
/// One MNIST image, NHWC without the batch.
pub const INPUT: [usize; 3] = [28, 28, 1];

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Variant {
    /// Conv with bias + ReLU; dense100 with bias + ReLU. Stays near chance.
    #[serde(rename = "plain")]
    Plain,
    /// Conv without bias + BatchNorm + ReLU; dense100 without bias + BatchNorm + ReLU.
    #[serde(rename = "bn")]
    Bn,
    /// As `Bn`, with conv weights ~ truncated normal(0.05) instead of Glorot uniform.
    #[serde(rename = "bn-lowlevel")]
    BnLowLevel,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Plain, Variant::Bn, Variant::BnLowLevel];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Bn => "bn",
            Variant::BnLowLevel => "bn-lowlevel",
        }
    }

    pub fn from_name(name: &str) -> Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| format!("unknown variant {name:?}; expected plain, bn or bn-lowlevel"))
    }

    pub fn uses_batch_norm(self) -> bool {
        self != Variant::Plain
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Output channels and stride of conv layer `i` (1-based).
pub fn conv_spec(i: usize) -> (usize, usize) {
    (4 * i, if i.is_multiple_of(3) { 2 } else { 1 })
}

/// Builds the seed network with TensorFlow's default initialisation drawn from `seed`.
pub fn seed_network(variant: Variant, seed: u64, exec: Exec) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bn = variant.uses_batch_norm();
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut in_c = INPUT[2];
    for i in 1..=CONV_LAYERS {
        let (out_c, stride) = conv_spec(i);
        let n = 9 * in_c * out_c;
        let weight = match variant {
            Variant::BnLowLevel => truncated_normal(0.05, n, &mut rng),
            _ => glorot_uniform(9 * in_c, 9 * out_c, n, &mut rng),
        };
        let bias = (!bn).then(|| vec![0.0; out_c]);
        layers.push(Box::new(Conv2d::new(
            &format!("conv{i:02}"),
            in_c,
            out_c,
            stride,
            weight,
            bias,
        )));
        if bn {
            layers.push(Box::new(BatchNorm::new(&format!("bn{i:02}"), out_c, true)));
        } else {
            layers.push(Box::new(Relu::new(&format!("relu{i:02}"))));
        }
        in_c = out_c;
    }
    // The last feature map is 1x1x76: Dense flattens it.
    let w1 = glorot_uniform(in_c, HIDDEN, in_c * HIDDEN, &mut rng);
    layers.push(Box::new(Dense::new(
        "fc1",
        in_c,
        HIDDEN,
        w1,
        (!bn).then(|| vec![0.0; HIDDEN]),
    )));
    if bn {
        layers.push(Box::new(BatchNorm::new("bn_fc1", HIDDEN, true)));
    } else {
        layers.push(Box::new(Relu::new("relu_fc1")));
    }
    let w2 = glorot_uniform(HIDDEN, CLASSES, HIDDEN * CLASSES, &mut rng);
    layers.push(Box::new(Dense::new(
        "fc2",
        HIDDEN,
        CLASSES,
        w2,
        Some(vec![0.0; CLASSES]),
    )));
    Network::new(&INPUT, layers, exec).expect("the seed network's shapes are consistent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_flops_match_the_measured_workload() {
        // 1.276 GFLOP of GEMM per training step of 64 (forward 0.427).
        let net = seed_network(Variant::Bn, 1, Exec::default());
        let fwd = net.forward_flops(64) as f64 / 1e9;
        let step = net.train_flops(64) as f64 / 1e9;
        assert!((fwd - 0.427).abs() < 0.002, "{fwd}");
        assert!((step - 1.276).abs() < 0.004, "{step}");
    }

    #[test]
    fn parameter_names_follow_the_fixture_convention() {
        let mut net = seed_network(Variant::Plain, 1, Exec::default());
        let mut names = vec![];
        net.visit_params(&mut |p| names.push(p.full_name()));
        assert_eq!(names[0], "conv01.weight");
        assert_eq!(names[1], "conv01.bias");
        assert_eq!(names.last().unwrap(), "fc2.bias");
        let mut bn = seed_network(Variant::Bn, 1, Exec::default());
        let mut names = vec![];
        bn.visit_params(&mut |p| names.push(p.full_name()));
        assert!(names.contains(&"bn19.moving_var".to_string()));
        assert!(names.contains(&"bn_fc1.gamma".to_string()));
        assert!(!names
            .iter()
            .any(|n| n.starts_with("conv") && n.ends_with("bias")));
    }
}
