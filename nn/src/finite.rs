//! Divergence detection: when a training step produces a NaN or an infinity, say where.
//!
//! Two checks run every step, and neither allocates:
//! - the loss (free: one number). Every path from a non-finite activation to the loss keeps it
//!   non-finite here: ReLU passes NaN through, BN turns an infinity into NaN (through its mean),
//!   and sigmoid cross-entropy of an infinite logit is NaN (`x * z` with `z = 0`, or `inf - inf`).
//! - every trainable parameter's gradient, before Adam uses it ([`gradients_finite`]): one
//!   branch-free pass over about 340k floats (1.3 MB), a fraction of a percent of a step.
//!
//! Only when a check trips is the network scanned to locate the first offender:
//! [`locate_activation`] walks the layer outputs in forward order, [`locate_gradient`] walks the
//! gradients in backward order. Not checked every step (it would mean scanning ~10 MB of
//! activations): an infinite pre-activation that a ReLU turns into 0 and that reaches neither the
//! loss nor a gradient; it changes nothing downstream in that step, and the non-finite weights
//! that cause one also make the next loss or gradient non-finite.

use crate::layer::ParamKind;
use crate::network::Network;
use bnconv_kernels::runtime::profile::Phase;
use bnconv_kernels::runtime::task_log::ForEachTask;
use rayon::prelude::*;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// What held the non-finite value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    Loss,
    Activation,
    Gradient,
}

impl Quantity {
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Loss => "loss",
            Quantity::Activation => "activation",
            Quantity::Gradient => "gradient",
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first non-finite value found, and where.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{what} of layer {layer} ({tensor}) is {value} at index {index}")]
pub struct NonFinite {
    pub what: Quantity,
    /// The layer's name (`conv07`, `bn07`, `fc1`, ...), or `loss`.
    pub layer: String,
    /// Which tensor of it: `output`, `input gradient`, or a parameter name such as `weight`.
    pub tensor: String,
    /// The offending value: NaN, `inf` or `-inf`.
    pub value: f32,
    /// Its index in the tensor.
    pub index: usize,
}

/// True when no value is NaN or infinite. Branch-free over blocks so the compiler vectorises it;
/// one early exit per block.
pub fn all_finite(v: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    let mut blocks = v.chunks_exact(64);
    for block in &mut blocks {
        let mut bad = 0u32;
        for x in block {
            bad |= u32::from(x.to_bits() & EXPONENT == EXPONENT);
        }
        if bad != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|x| x.is_finite())
}

fn first_non_finite(v: &[f32]) -> Option<(usize, f32)> {
    v.iter()
        .position(|x| !x.is_finite())
        .map(|index| (index, v[index]))
}

/// The every-step check: are all trainable parameters' gradients finite? The layers are checked
/// as parallel tasks. Allocates nothing.
pub fn gradients_finite(net: &mut Network) -> bool {
    let finite = AtomicBool::new(true);
    net.layers_mut()
        .par_iter_mut()
        .for_each_task(Phase::Other, |layer| {
            layer.visit_params(&mut |p| {
                if p.kind == ParamKind::Trainable && !all_finite(p.grad) {
                    finite.store(false, Ordering::Relaxed);
                }
            })
        });
    finite.into_inner()
}

/// After a non-finite `loss`: the first layer, in forward order, whose output holds a non-finite
/// value; the loss itself if every activation is finite. Outputs the training pass left to the
/// next layer (a batch norm applied by the convolution reading it) are written first, from the
/// statistics the pass kept, so every layer is inspected.
pub fn locate_activation(net: &mut Network, loss: f32) -> NonFinite {
    net.store_deferred_activations();
    for (i, layer) in net.layers().iter().enumerate() {
        if !net.activation_stored(i) {
            continue;
        }
        if let Some((index, value)) = first_non_finite(net.activation(i).data()) {
            return NonFinite {
                what: Quantity::Activation,
                layer: layer.name().to_string(),
                tensor: "output".into(),
                value,
                index,
            };
        }
    }
    NonFinite {
        what: Quantity::Loss,
        layer: "loss".into(),
        tensor: "sigmoid cross-entropy".into(),
        value: loss,
        index: 0,
    }
}

/// After [`gradients_finite`] failed: the layer whose backward pass produced the first
/// non-finite gradient, in backward order (last layer first): one of its parameter gradients, or
/// the gradient it passes to the layer below.
pub fn locate_gradient(net: &mut Network) -> NonFinite {
    // (layer, parameter, first bad value) for every trainable parameter with one, in visit order.
    let mut bad_params: Vec<(String, &'static str, usize, f32)> = Vec::new();
    net.visit_params(&mut |p| {
        if p.kind == ParamKind::Trainable {
            if let Some((index, value)) = first_non_finite(p.grad) {
                bad_params.push((p.layer.to_string(), p.name, index, value));
            }
        }
    });
    for (i, layer) in net.layers().iter().enumerate().rev() {
        let name = layer.name();
        if let Some((_, param, index, value)) = bad_params.iter().find(|b| b.0 == name) {
            return NonFinite {
                what: Quantity::Gradient,
                layer: name.to_string(),
                tensor: (*param).to_string(),
                value: *value,
                index: *index,
            };
        }
        if let Some((index, value)) = net
            .input_gradient(i)
            .and_then(|g| first_non_finite(g.data()))
        {
            return NonFinite {
                what: Quantity::Gradient,
                layer: name.to_string(),
                tensor: "input gradient".into(),
                value,
                index,
            };
        }
    }
    // Unreachable when called after `gradients_finite` failed; say so rather than panic.
    NonFinite {
        what: Quantity::Gradient,
        layer: "unknown".into(),
        tensor: "no non-finite gradient found".into(),
        value: f32::NAN,
        index: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_finds_every_non_finite_value_at_every_position() {
        for len in [0, 1, 63, 64, 65, 200] {
            let v = vec![1.5f32; len];
            assert!(all_finite(&v));
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                for at in 0..len {
                    let mut w = v.clone();
                    w[at] = bad;
                    assert!(!all_finite(&w), "len {len}, {bad} at {at}");
                    assert_eq!(first_non_finite(&w).map(|(i, _)| i), Some(at));
                }
            }
        }
        assert!(all_finite(&[
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            0.0,
            -0.0,
            1e-45
        ]));
    }
}
