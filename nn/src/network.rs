//! A sequential network that owns its activation and gradient buffers, reused every step.

use crate::layer::{Exec, Layer, Mode, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::runtime::profile::{self, Pass};

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    /// Shape of one input item, e.g. `[28, 28, 1]`.
    item_shape: Vec<usize>,
    /// `acts[0]` is the input, `acts[i + 1]` the output of layer `i`.
    acts: Vec<Tensor>,
    /// `grads[i]` is the gradient with respect to `acts[i]` (`grads[0]` stays unused).
    grads: Vec<Tensor>,
    /// `stale[i]`: the last forward pass left `acts[i]` unwritten (its layer's map was folded
    /// into a neighbour).
    stale: Vec<bool>,
    /// `deferred[i]`: of those, a training output applied by the next layer as it read it,
    /// which [`Network::store_deferred_activations`] can still write.
    deferred: Vec<bool>,
    pub exec: Exec,
    trained_forward: bool,
}

impl Network {
    /// Checks that every layer accepts its predecessor's output for an input item of `item_shape`.
    pub fn new(
        item_shape: &[usize],
        layers: Vec<Box<dyn Layer>>,
        exec: Exec,
    ) -> Result<Network, ShapeError> {
        if item_shape.is_empty() || item_shape.len() > 3 {
            return Err(ShapeError {
                layer: "input".into(),
                detail: format!("an input item needs 1 to 3 dimensions, got {item_shape:?}"),
            });
        }
        let mut shape = Self::batch_shape(item_shape, 1);
        for layer in &layers {
            shape = layer.output_shape(shape)?;
        }
        let n = layers.len();
        Ok(Network {
            layers,
            item_shape: item_shape.to_vec(),
            acts: (0..=n).map(|_| Tensor::default()).collect(),
            grads: (0..=n).map(|_| Tensor::default()).collect(),
            stale: vec![false; n + 1],
            deferred: vec![false; n + 1],
            exec,
            trained_forward: false,
        })
    }

    /// `[batch, item...]` without allocating (runs every step).
    fn batch_shape(item: &[usize], batch: usize) -> Shape {
        let mut dims = [batch; 4];
        dims[1..=item.len()].copy_from_slice(item);
        Shape::new(&dims[..=item.len()])
    }

    pub fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Runs every layer on `batch` items stored back to back in `x`; returns the output.
    ///
    /// # Panics
    /// If `x` does not hold `batch` items (callers check user data before it gets here).
    pub fn forward(&mut self, x: &[f32], batch: usize, mode: Mode) -> &Tensor {
        assert_eq!(x.len(), batch * self.item_len(), "network input size");
        let mut shape = Self::batch_shape(&self.item_shape, batch);
        self.acts[0].set_shape(shape);
        self.acts[0].data_mut().copy_from_slice(x);
        let n = self.layers.len();
        self.stale.fill(false);
        self.deferred.fill(false);
        let mut i = 0;
        while i < n {
            shape = self.layers[i]
                .output_shape(shape)
                .expect("shapes were validated when the network was built");
            let (done, rest) = self.acts.split_at_mut(i + 1);
            if mode == Mode::Train && i + 1 < n {
                // Training hands a per-channel map (batch norm + ReLU) to the next layer to
                // apply as it reads its input; `acts[i + 1]` is then left stale.
                let (head, tail) = self.layers.split_at_mut(i + 1);
                if tail[0].accepts_input_map(&self.exec, shape) {
                    let scope = profile::layer(i, Pass::Forward);
                    if let Some(map) = head[i].forward_train_deferred(&self.exec, &done[i]) {
                        drop(scope);
                        rest[0].set_shape(shape);
                        self.stale[i + 1] = true;
                        self.deferred[i + 1] = true;
                        let next = tail[0]
                            .output_shape(shape)
                            .expect("shapes were validated when the network was built");
                        rest[1].set_shape(next);
                        let _l = profile::layer(i + 1, Pass::Forward);
                        tail[0].forward_with_input_map(&self.exec, &done[i], &map, &mut rest[1]);
                        shape = next;
                        i += 2;
                        continue;
                    }
                }
            }
            if mode == Mode::Eval && !self.exec.eval_unfolded && i + 1 < n {
                // Evaluation folds a following per-channel map (batch norm, ReLU) into this
                // layer's output tile when it can; `acts[i + 1]` is then left stale.
                let (head, tail) = self.layers.split_at_mut(i + 1);
                if let Some(post) = tail[0].eval_epilogue() {
                    rest[1].set_shape(shape);
                    let _l = profile::layer(i, Pass::Forward);
                    if head[i].forward_eval_fused(&self.exec, &done[i], &mut rest[1], &post) {
                        self.stale[i + 1] = true;
                        i += 2;
                        continue;
                    }
                }
            }
            rest[0].set_shape(shape);
            {
                let _l = profile::layer(i, Pass::Forward);
                self.layers[i].forward(&self.exec, &done[i], &mut rest[0], mode);
            }
            i += 1;
        }
        self.trained_forward = mode == Mode::Train;
        self.output()
    }

    /// The output of the last forward pass.
    pub fn output(&self) -> &Tensor {
        &self.acts[self.layers.len()]
    }

    /// Backpropagates `d_output` (the loss gradient of [`Network::output`]) through every layer,
    /// overwriting all parameter gradients. The input gradient is not computed.
    ///
    /// # Panics
    /// If the last forward pass was not in training mode, or `d_output` has the wrong size.
    pub fn backward(&mut self, d_output: &[f32]) {
        assert!(
            self.trained_forward,
            "backward needs a training-mode forward pass first"
        );
        let n = self.layers.len();
        self.grads[n].set_shape(self.acts[n].shape());
        self.grads[n].data_mut().copy_from_slice(d_output);
        for i in (0..n).rev() {
            let (before, after) = self.grads.split_at_mut(i + 1);
            let dx = if i > 0 {
                before[i].set_shape(self.acts[i].shape());
                Some(&mut before[i])
            } else {
                None
            };
            let _l = profile::layer(i, Pass::Backward);
            self.layers[i].backward(&self.exec, &self.acts[i], &self.acts[i + 1], &after[0], dx);
        }
    }

    /// Visits every parameter and statistic, layer by layer, in a fixed order.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(ParamMut<'_>)) {
        for layer in &mut self.layers {
            layer.visit_params(f);
        }
    }

    /// The activation after layer `i` (for inspection and tests). It is stale when the last
    /// forward pass folded the layer's map into a neighbour ([`Network::activation_stored`]).
    pub fn activation(&self, i: usize) -> &Tensor {
        &self.acts[i + 1]
    }

    /// Writes the training outputs the last forward pass deferred to the next layer (for
    /// diagnosis: after it, every training activation is stored).
    pub fn store_deferred_activations(&mut self) {
        for i in 0..self.layers.len() {
            if self.deferred[i + 1] {
                let (done, rest) = self.acts.split_at_mut(i + 1);
                self.layers[i].write_deferred_output(&self.exec, &done[i], &mut rest[0]);
                self.deferred[i + 1] = false;
                self.stale[i + 1] = false;
            }
        }
    }

    /// Whether the last forward pass wrote [`Network::activation`]`(i)`: not when it folded
    /// the next layer into layer `i` (evaluation), nor when layer `i + 1` applied layer `i`'s
    /// batch norm + ReLU to its input as it read it (training).
    pub fn activation_stored(&self, i: usize) -> bool {
        !self.stale[i + 1]
    }

    /// The gradient with respect to layer `i`'s input from the last backward pass; `None` for
    /// layer 0, whose input gradient is never computed (for inspection and divergence reports).
    pub fn input_gradient(&self, i: usize) -> Option<&Tensor> {
        (i > 0).then(|| &self.grads[i])
    }

    /// GEMM flops of one forward pass over `batch` items.
    pub fn forward_flops(&self, batch: usize) -> u64 {
        self.flops(batch, |layer, shape, _| layer.forward_flops(shape))
    }

    /// GEMM flops of one training step (forward + backward, no input gradient for layer 0).
    pub fn train_flops(&self, batch: usize) -> u64 {
        self.forward_flops(batch)
            + self.flops(batch, |layer, shape, i| layer.backward_flops(shape, i > 0))
    }

    fn flops(&self, batch: usize, per_layer: impl Fn(&dyn Layer, Shape, usize) -> u64) -> u64 {
        let mut shape = Self::batch_shape(&self.item_shape, batch);
        let mut total = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            total += per_layer(layer.as_ref(), shape, i);
            shape = layer.output_shape(shape).expect("validated shapes");
        }
        total
    }
}
