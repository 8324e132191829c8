//! Adam exactly as TensorFlow 1's `AdamOptimizer` applies it (the paper's "epsilon hat" form):
//! `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, `m = beta1 m + (1 - beta1) g`,
//! `v = beta2 v + (1 - beta2) g^2`, `p -= lr_t * m / (sqrt(v) + epsilon)`.

use crate::layer::{Layer, ParamKind, ParamMut};
use crate::network::Network;
use bnconv_kernels::runtime::profile::Phase;
use bnconv_kernels::runtime::task_log::{self, ForEachTask, LoopRecord};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

impl Default for AdamConfig {
    /// TF1 defaults with the protocol's learning rate 0.002.
    fn default() -> Self {
        AdamConfig {
            lr: 0.002,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// Adam state: one first and second moment per trainable parameter, in visit order.
pub struct Adam {
    pub config: AdamConfig,
    step: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Trainable parameters of each layer of the network being updated (counted on the first
    /// update): the layers are updated in parallel, each with its own run of moments.
    per_layer: Vec<usize>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Adam {
        Adam {
            config,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
            per_layer: Vec::new(),
        }
    }

    /// Updates completed so far (`t` of the last update).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The first and second moments of each trainable parameter, in visit order (empty before
    /// the first update or [`Adam::prepare`]).
    pub fn moments(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        (&self.m, &self.v)
    }

    /// Restores a saved state: `step` updates done and the moments of each trainable parameter
    /// in visit order (checkpoints check their sizes against the network).
    pub fn restore(&mut self, step: u64, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) {
        self.step = step;
        self.m = m;
        self.v = v;
        self.per_layer.clear();
    }

    /// The step size of update `t`, computed in f64.
    pub fn lr_t(&self, t: u64) -> f32 {
        let c = self.config;
        let t = t as i32;
        (c.lr as f64 * (1.0 - (c.beta2 as f64).powi(t)).sqrt() / (1.0 - (c.beta1 as f64).powi(t)))
            as f32
    }

    /// One update of every trainable parameter of `net` from its current gradients, the layers
    /// in parallel (each element's update is independent: bitwise the same on any number of
    /// threads). Moments are allocated on the first call only (unless [`Adam::prepare`] made them).
    pub fn step(&mut self, net: &mut Network) {
        self.step += 1;
        let lr_t = self.lr_t(self.step);
        let config = self.config;
        self.make_moments(net);
        let record = task_log::begin_loop(Phase::Optimizer);
        update_layers(
            net.layers_mut(),
            &self.per_layer,
            &mut self.m,
            &mut self.v,
            &config,
            lr_t,
            &record,
        );
    }

    /// Makes the moments now (zero, as the first update would) and writes every page of them,
    /// so that the first update pays no first-touch page faults. Values are kept: a restored
    /// state stays as it is, and a fresh one stays zero.
    pub fn prepare(&mut self, net: &mut Network) {
        self.make_moments(net);
        for moments in self.m.iter_mut().chain(self.v.iter_mut()) {
            // Zeroed allocations may be pages never written yet: `black_box` keeps the writes.
            for page in moments.chunks_mut(1024) {
                page[0] = std::hint::black_box(page[0]);
            }
        }
    }

    /// Counts each layer's trainable parameters and allocates their missing moments (zero),
    /// unless done already for a network of this many layers.
    fn make_moments(&mut self, net: &mut Network) {
        if self.per_layer.len() != net.layers().len() {
            self.per_layer.clear();
            let (m_all, v_all) = (&mut self.m, &mut self.v);
            let mut slot = 0;
            for layer in net.layers_mut() {
                let first = slot;
                layer.visit_params(&mut |p: ParamMut<'_>| {
                    if p.kind != ParamKind::Trainable {
                        return;
                    }
                    if m_all.len() <= slot {
                        m_all.push(vec![0.0; p.value.len()]);
                        v_all.push(vec![0.0; p.value.len()]);
                    }
                    slot += 1;
                });
                self.per_layer.push(slot - first);
            }
        }
    }
}

/// Updates `layers` (with `per_layer[i]` trainable parameters each, whose moments are `m` and
/// `v` in order) as parallel tasks, one per layer with parameters: a fork-join tree, which
/// allocates nothing.
fn update_layers(
    layers: &mut [Box<dyn Layer>],
    per_layer: &[usize],
    m: &mut [Vec<f32>],
    v: &mut [Vec<f32>],
    c: &AdamConfig,
    lr_t: f32,
    record: &LoopRecord,
) {
    match layers {
        [] => {}
        [layer] => {
            if per_layer[0] == 0 {
                return;
            }
            let _t = record.task();
            let mut slot = 0;
            layer.visit_params(&mut |p: ParamMut<'_>| {
                if p.kind == ParamKind::Trainable {
                    adam_update(c, lr_t, p.value, p.grad, &mut m[slot], &mut v[slot]);
                    slot += 1;
                }
            });
        }
        _ => {
            let mid = layers.len() / 2;
            let slots: usize = per_layer[..mid].iter().sum();
            let (layers_a, layers_b) = layers.split_at_mut(mid);
            let (per_a, per_b) = per_layer.split_at(mid);
            let (m_a, m_b) = m.split_at_mut(slots);
            let (v_a, v_b) = v.split_at_mut(slots);
            rayon::join(
                || update_layers(layers_a, per_a, m_a, v_a, c, lr_t, record),
                || update_layers(layers_b, per_b, m_b, v_b, c, lr_t, record),
            );
        }
    }
}

/// Elements per parallel Adam task: big tensors are split across the rayon pool. Each element's
/// update is independent, so the split never changes a result.
const ADAM_TASK: usize = 4 * 1024;

/// One Adam update of a flat parameter and its moments, with the step size `lr_t` of this update.
pub fn adam_update(
    c: &AdamConfig,
    lr_t: f32,
    value: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    use rayon::prelude::*;
    if value.len() > ADAM_TASK {
        value
            .par_chunks_mut(ADAM_TASK)
            .zip(grad.par_chunks(ADAM_TASK))
            .zip(m.par_chunks_mut(ADAM_TASK))
            .zip(v.par_chunks_mut(ADAM_TASK))
            .for_each_task(Phase::Optimizer, |(((p, g), m), v)| {
                adam_update_serial(c, lr_t, p, g, m, v)
            });
    } else {
        adam_update_serial(c, lr_t, value, grad, m, v);
    }
}

fn adam_update_serial(
    c: &AdamConfig,
    lr_t: f32,
    value: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for (((p, g), m), v) in value
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        *m = c.beta1 * *m + (1.0 - c.beta1) * g;
        *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
        *p -= lr_t * *m / (v.sqrt() + c.epsilon);
    }
}
