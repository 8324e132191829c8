//! A sequential network that owns its activation and gradient buffers, reused every step.

use crate::layer::{Exec, Layer, Mode, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::runtime::profile::{self, Pass};
use bnconv_kernels::runtime::scratch::WorkerScratch;
use rayon::prelude::*;
use std::time::Instant;

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    /// Shape of one input item, e.g. `[28, 28, 1]`.
    item_shape: Vec<usize>,
    /// `acts[0]` is the input, `acts[i + 1]` the output of layer `i`.
    acts: Vec<Tensor>,
    /// `grads[i]` is the gradient with respect to `acts[i]` (`grads[0]` stays unused).
    grads: Vec<Tensor>,
    exec: Exec,
    /// Which layers run fused, in each mode: made when the network is built and again when
    /// [`Network::set_exec`] changes the kernels.
    plan: FusionPlan,
    /// The mode of the last forward pass (`None` before the first).
    last_forward: Option<Mode>,
    /// Whether [`Network::store_deferred_activations`] wrote the training outputs the last
    /// forward pass left to the next layer.
    deferred_written: bool,
    /// The output of an evaluation batch larger than [`EVAL_BLOCK`] (run per task, or block by
    /// block).
    eval_output: Tensor,
    /// Whether the last forward pass was such a batch (its output is `eval_output`).
    output_in_blocks: bool,
    /// Whether the last forward pass ran the whole network per task ([`EVAL_TASK`]): it wrote
    /// no activation.
    ran_per_task: bool,
    /// Floats per item of each evaluation step's output, for the per-task run.
    eval_widths: Vec<usize>,
    /// Each worker's two activation buffers and layer scratch for the per-task run.
    task_buffers: WorkerScratch,
}

/// Evaluation runs the network on at most this many items at a time, whatever the batch it is
/// given (a larger batch runs per task of [`EVAL_TASK`] items when it can, else block by block):
/// the activations then never grow past a block's (a few MB), where a 500-image batch would hold
/// ~50 MB of them. Each item's logits do not depend on the batch it runs in (the
/// GEMMs reduce each output row in a fixed order, batch norm uses its moving statistics), so the
/// results are bitwise those of one pass over the whole batch.
pub const EVAL_BLOCK: usize = 128;

/// An evaluation batch larger than [`EVAL_BLOCK`] runs the whole network on each task of this
/// many items (when every layer can: [`Layer::prepare_eval`]), tasks spread over the pool: one
/// hand-off per task instead of one per layer and block, each task's activations kept in its
/// worker's cache, the weights packed once per batch instead of once per block. Each item's
/// logits are the same bits as layer by layer (the reasons of [`EVAL_BLOCK`]).
pub const EVAL_TASK: usize = 16;

/// One step of a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Layer `i` on its own.
    Single(usize),
    /// Training: layer `i` (a [`ChannelMap`](crate::layer::ChannelMap)) is applied by layer
    /// `i + 1` to its input as it reads it; layer `i`'s output is not written.
    MapIntoNext(usize),
    /// Evaluation: layer `i` applies layer `i + 1`'s map (an epilogue) to its output, which
    /// becomes layer `i + 1`'s output; layer `i`'s own output is not written.
    NextIntoOutput(usize),
}

impl Step {
    /// The layer whose output this step leaves unwritten, if any.
    fn skipped_output(self) -> Option<usize> {
        match self {
            Step::Single(_) => None,
            Step::MapIntoNext(i) | Step::NextIntoOutput(i) => Some(i),
        }
    }
}

/// The forward steps of each mode.
#[derive(Clone, Debug, Default)]
struct FusionPlan {
    train: Vec<Step>,
    eval: Vec<Step>,
}

impl FusionPlan {
    /// Pairs each per-channel map with a neighbour that can apply it, greedily from the first
    /// layer: in training a map the next layer applies to its input, in evaluation (unless
    /// `exec.eval_unfolded`) a map the layer before applies to its output.
    fn new(layers: &mut [Box<dyn Layer>], exec: &Exec, item_shape: &[usize]) -> FusionPlan {
        let n = layers.len();
        // Layer inputs for a batch of one (the choices do not depend on the batch size).
        let mut shapes = Vec::with_capacity(n + 1);
        shapes.push(Network::batch_shape(item_shape, 1));
        for (i, layer) in layers.iter().enumerate() {
            let next = layer
                .output_shape(shapes[i])
                .expect("shapes were validated when the network was built");
            shapes.push(next);
        }
        let mut plan = FusionPlan::default();
        for mode in [Mode::Train, Mode::Eval] {
            let steps = match mode {
                Mode::Train => &mut plan.train,
                Mode::Eval => &mut plan.eval,
            };
            let mut i = 0;
            while i < n {
                let (head, tail) = layers.split_at_mut(i + 1);
                let fused = match (mode, tail.first_mut()) {
                    (Mode::Train, Some(next)) => {
                        let defers = head[i]
                            .as_channel_map()
                            .is_some_and(|map| map.defers_in_training(exec));
                        let accepts = next
                            .as_fusing()
                            .is_some_and(|f| f.accepts_prologue(exec, shapes[i + 1]));
                        (defers && accepts).then_some(Step::MapIntoNext(i))
                    }
                    (Mode::Eval, Some(next)) if !exec.eval_unfolded => {
                        let fusing = head[i].as_fusing().is_some();
                        let map = next.as_channel_map().is_some();
                        (fusing && map).then_some(Step::NextIntoOutput(i))
                    }
                    _ => None,
                };
                steps.push(fused.unwrap_or(Step::Single(i)));
                i += if fused.is_some() { 2 } else { 1 };
            }
        }
        plan
    }

    fn steps(&self, mode: Mode) -> &[Step] {
        match mode {
            Mode::Train => &self.train,
            Mode::Eval => &self.eval,
        }
    }
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
        let mut layers = layers;
        let plan = FusionPlan::new(&mut layers, &exec, item_shape);
        Ok(Network {
            layers,
            item_shape: item_shape.to_vec(),
            acts: (0..=n).map(|_| Tensor::default()).collect(),
            grads: (0..=n).map(|_| Tensor::default()).collect(),
            exec,
            plan,
            last_forward: None,
            deferred_written: false,
            eval_output: Tensor::default(),
            output_in_blocks: false,
            ran_per_task: false,
            eval_widths: Vec::new(),
            task_buffers: WorkerScratch::default(),
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

    /// The kernels every layer runs.
    pub fn exec(&self) -> &Exec {
        &self.exec
    }

    /// Runs the layers on other kernels from now on (and plans their fusions again).
    pub fn set_exec(&mut self, exec: Exec) {
        self.plan = FusionPlan::new(&mut self.layers, &exec, &self.item_shape);
        self.exec = exec;
    }

    /// The layers, to visit their parameters in parallel (the optimizer, the gradient check).
    pub(crate) fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// Runs every layer on `batch` items stored back to back in `x`; returns the output.
    /// Evaluation of more than [`EVAL_BLOCK`] items runs per task of [`EVAL_TASK`] items (no
    /// activation is then stored) or, when some layer cannot, in blocks of at most
    /// [`EVAL_BLOCK`] (the activations then hold the last block's).
    ///
    /// # Panics
    /// If `x` does not hold `batch` items (callers check user data before it gets here).
    pub fn forward(&mut self, x: &[f32], batch: usize, mode: Mode) -> &Tensor {
        assert_eq!(x.len(), batch * self.item_len(), "network input size");
        if mode == Mode::Eval && batch > EVAL_BLOCK {
            return self.forward_in_blocks(x, batch);
        }
        self.output_in_blocks = false;
        self.ran_per_task = false;
        self.run(x, batch, mode);
        self.output()
    }

    /// Evaluation of a batch larger than [`EVAL_BLOCK`] into `eval_output`: per task when every
    /// layer can run so, else block by block, each block's output copied.
    fn forward_in_blocks(&mut self, x: &[f32], batch: usize) -> &Tensor {
        self.output_in_blocks = true;
        self.ran_per_task = self.prepare_eval();
        if self.ran_per_task {
            self.run_per_task(x, batch);
            self.last_forward = Some(Mode::Eval);
            self.deferred_written = false;
            return &self.eval_output;
        }
        let item = self.item_len();
        let mut first = 0;
        while first < batch {
            let n = EVAL_BLOCK.min(batch - first);
            self.run(&x[first * item..(first + n) * item], n, Mode::Eval);
            let out = &self.acts[self.layers.len()];
            let per_item = out.shape().per_item();
            if first == 0 {
                self.eval_output.set_shape(out.shape().with_batch(batch));
            }
            self.eval_output.data_mut()[first * per_item..(first + n) * per_item]
                .copy_from_slice(out.data());
            first += n;
        }
        self.output_in_blocks = true;
        &self.eval_output
    }

    /// Readies every evaluation step for [`Layer::eval_block`] and sizes the per-task buffers;
    /// false if some layer cannot run that way.
    fn prepare_eval(&mut self) -> bool {
        let mut shape = Self::batch_shape(&self.item_shape, 1);
        let mut scratch = 0;
        self.eval_widths.clear();
        for s in 0..self.plan.eval.len() {
            let (ready, i) = match self.plan.eval[s] {
                Step::Single(i) => (self.layers[i].prepare_eval(&self.exec, shape, None), i),
                Step::NextIntoOutput(i) => {
                    let (head, tail) = self.layers.split_at_mut(i + 1);
                    let Some(map) = tail[0].as_channel_map() else {
                        unreachable!("the fusion plan pairs a fusing layer with a channel map");
                    };
                    let epilogue = map.eval_epilogue();
                    (head[i].prepare_eval(&self.exec, shape, Some(&epilogue)), i)
                }
                Step::MapIntoNext(_) => unreachable!("evaluation defers no map"),
            };
            if !ready {
                return false;
            }
            scratch = scratch.max(self.layers[i].eval_scratch_len(EVAL_TASK));
            shape = self.layers[i]
                .output_shape(shape)
                .expect("shapes were validated when the network was built");
            self.eval_widths.push(shape.per_item());
        }
        let widest = self.eval_widths.iter().copied().max().unwrap_or(0);
        self.task_buffers.prepare(2 * EVAL_TASK * widest + scratch);
        true
    }

    /// Evaluation of `batch` items, the whole network per task of [`EVAL_TASK`] items (after
    /// [`Network::prepare_eval`]), into `eval_output`.
    fn run_per_task(&mut self, x: &[f32], batch: usize) {
        let item = self.item_len();
        let out_item = self.eval_widths.last().copied().unwrap_or(item);
        let shape = self.layers.iter().fold(
            Self::batch_shape(&self.item_shape, batch),
            |shape, layer| {
                layer
                    .output_shape(shape)
                    .expect("shapes were validated when the network was built")
            },
        );
        self.eval_output.set_shape(shape);
        let (layers, exec, steps, widths) =
            (&self.layers, &self.exec, &self.plan.eval, &self.eval_widths);
        let widest = widths.iter().copied().max().unwrap_or(0);
        let buffers = &self.task_buffers;
        // With the profiler on, each task times its layers (thread time, summed over tasks).
        let timed = profile::enabled();
        x.par_chunks(EVAL_TASK * item)
            .zip(
                self.eval_output
                    .data_mut()
                    .par_chunks_mut(EVAL_TASK * out_item),
            )
            .for_each(|(x, y)| {
                buffers.with(|buffer| {
                    let items = x.len() / item;
                    let (even, rest) = buffer.split_at_mut(EVAL_TASK * widest);
                    let (odd, scratch) = rest.split_at_mut(EVAL_TASK * widest);
                    for (s, step) in steps.iter().enumerate() {
                        let i = match *step {
                            Step::Single(i) | Step::NextIntoOutput(i) => i,
                            Step::MapIntoNext(_) => unreachable!("evaluation defers no map"),
                        };
                        let out_len = items * widths[s];
                        let in_len = if s == 0 {
                            x.len()
                        } else {
                            items * widths[s - 1]
                        };
                        // Step s reads what step s - 1 wrote: the even buffer after an even step.
                        let (src, dst): (&[f32], &mut [f32]) = match (s, s % 2) {
                            (0, _) => (x, &mut even[..out_len]),
                            (_, 1) => (&even[..in_len], &mut odd[..out_len]),
                            _ => (&odd[..in_len], &mut even[..out_len]),
                        };
                        let start = timed.then(Instant::now);
                        if s + 1 == steps.len() {
                            layers[i].eval_block(exec, src, scratch, y);
                        } else {
                            layers[i].eval_block(exec, src, scratch, dst);
                        }
                        if let Some(t) = start {
                            profile::add_layer_time(
                                i,
                                Pass::Forward,
                                t.elapsed().as_nanos() as u64,
                            );
                        }
                    }
                })
            });
    }

    /// One forward pass over `batch` items, every layer at once.
    fn run(&mut self, x: &[f32], batch: usize, mode: Mode) {
        let mut shape = Self::batch_shape(&self.item_shape, batch);
        self.acts[0].set_shape(shape);
        self.acts[0].data_mut().copy_from_slice(x);
        self.last_forward = None;
        self.deferred_written = false;
        for s in 0..self.plan.steps(mode).len() {
            let step = self.plan.steps(mode)[s];
            let i = match step {
                Step::Single(i) | Step::MapIntoNext(i) | Step::NextIntoOutput(i) => i,
            };
            shape = self.layers[i]
                .output_shape(shape)
                .expect("shapes were validated when the network was built");
            let (done, rest) = self.acts.split_at_mut(i + 1);
            match step {
                Step::Single(_) => {
                    rest[0].set_shape(shape);
                    let _l = profile::layer(i, Pass::Forward);
                    self.layers[i].forward(&self.exec, &done[i], &mut rest[0], mode);
                }
                Step::MapIntoNext(_) => {
                    // Layer i's map (batch norm + ReLU, or ReLU) is applied by layer i + 1 as it
                    // reads its input; `acts[i + 1]` is left unwritten.
                    let (head, tail) = self.layers.split_at_mut(i + 1);
                    let next_shape = tail[0]
                        .output_shape(shape)
                        .expect("shapes were validated when the network was built");
                    let (Some(map), Some(next)) = (head[i].as_channel_map(), tail[0].as_fusing())
                    else {
                        unreachable!("the fusion plan pairs a channel map with a fusing layer");
                    };
                    rest[0].set_shape(shape);
                    let scope = profile::layer(i, Pass::Forward);
                    let prologue = map.train_prologue(&self.exec, &done[i]);
                    drop(scope);
                    shape = next_shape;
                    rest[1].set_shape(shape);
                    let _l = profile::layer(i + 1, Pass::Forward);
                    next.forward_with_prologue(&self.exec, &done[i], &prologue, &mut rest[1]);
                }
                Step::NextIntoOutput(_) => {
                    // Layer i + 1's map rides on layer i's output tiles; `acts[i + 1]` is left
                    // unwritten. (A per-channel map keeps its input's shape.)
                    let (head, tail) = self.layers.split_at_mut(i + 1);
                    let (Some(this), Some(map)) = (head[i].as_fusing(), tail[0].as_channel_map())
                    else {
                        unreachable!("the fusion plan pairs a fusing layer with a channel map");
                    };
                    rest[1].set_shape(shape);
                    let _l = profile::layer(i, Pass::Forward);
                    let epilogue = map.eval_epilogue();
                    this.forward_with_epilogue(&self.exec, &done[i], &epilogue, &mut rest[1]);
                }
            }
        }
        self.last_forward = Some(mode);
    }

    /// The output of the last forward pass.
    pub fn output(&self) -> &Tensor {
        if self.output_in_blocks {
            &self.eval_output
        } else {
            &self.acts[self.layers.len()]
        }
    }

    /// Backpropagates `d_output` (the loss gradient of [`Network::output`]) through every layer,
    /// overwriting all parameter gradients. The input gradient is not computed.
    ///
    /// # Panics
    /// If the last forward pass was not in training mode, or `d_output` has the wrong size.
    pub fn backward(&mut self, d_output: &[f32]) {
        assert!(
            self.last_forward == Some(Mode::Train),
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
        if self.last_forward != Some(Mode::Train) || self.deferred_written {
            return;
        }
        for s in 0..self.plan.train.len() {
            if let Step::MapIntoNext(i) = self.plan.train[s] {
                let (done, rest) = self.acts.split_at_mut(i + 1);
                let map = self.layers[i]
                    .as_channel_map()
                    .expect("the fusion plan pairs a channel map with a fusing layer");
                map.write_deferred_output(&self.exec, &done[i], &mut rest[0]);
            }
        }
        self.deferred_written = true;
    }

    /// Whether the last forward pass wrote [`Network::activation`]`(i)`: not when it folded
    /// the next layer into layer `i` (evaluation), nor when layer `i + 1` applied layer `i`'s
    /// batch norm + ReLU to its input as it read it (training), until
    /// [`Network::store_deferred_activations`] writes it.
    pub fn activation_stored(&self, i: usize) -> bool {
        let Some(mode) = self.last_forward else {
            return true;
        };
        if self.ran_per_task {
            return false;
        }
        let skipped = self
            .plan
            .steps(mode)
            .iter()
            .any(|step| step.skipped_output() == Some(i));
        let written_later = mode == Mode::Train && self.deferred_written;
        !skipped || written_later
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::BnPath;
    use crate::seed::{seed_network, Variant, INPUT};
    use bnconv_kernels::GemmBackend;

    const BATCH: usize = 3;

    fn images() -> Vec<f32> {
        let len = BATCH * INPUT.iter().product::<usize>();
        (0..len).map(|i| ((i * 37) % 101) as f32 / 101.0).collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.data().iter().map(|v| v.to_bits()).collect()
    }

    fn unstored(net: &Network) -> usize {
        (0..net.layers().len())
            .filter(|&i| !net.activation_stored(i))
            .count()
    }

    /// Training with fused BN+ReLU leaves the outputs of the batch norms that the next
    /// convolution applies unwritten; written afterwards, every activation equals the unfused
    /// network's (which defers nothing) bitwise.
    #[test]
    fn the_training_plan_defers_batch_norms_and_their_outputs_can_be_written_later() {
        let x = images();
        let mut fused = seed_network(Variant::Bn, 1, Exec::default());
        let unfused_exec = Exec {
            bn_path: BnPath::Unfused,
            ..Exec::default()
        };
        let mut unfused = seed_network(Variant::Bn, 1, unfused_exec);
        fused.forward(&x, BATCH, Mode::Train);
        unfused.forward(&x, BATCH, Mode::Train);
        let deferred = unstored(&fused);
        assert!(deferred >= 6, "only {deferred} batch norms deferred");
        assert_eq!(unstored(&unfused), 0);
        fused.store_deferred_activations();
        assert_eq!(unstored(&fused), 0);
        for i in 0..fused.layers().len() {
            assert_eq!(
                bits(fused.activation(i)),
                bits(unfused.activation(i)),
                "layer {i}"
            );
        }
    }

    /// An evaluation batch larger than a block runs the whole network per task on bnconv's
    /// GEMM (writing no activation), block by block on a library GEMM (the activations then hold
    /// the last block's): either way the same logits bit for bit as small batches of the same
    /// images, which run layer by layer.
    #[test]
    fn a_large_evaluation_batch_runs_in_tasks_or_blocks_with_the_same_logits() {
        let batch = 2 * EVAL_BLOCK + 5;
        let item: usize = INPUT.iter().product();
        let x: Vec<f32> = (0..batch * item)
            .map(|i| ((i * 37 + i / item * 11) % 101) as f32 / 101.0)
            .collect();
        for variant in [Variant::Bn, Variant::Plain] {
            for gemm in [GemmBackend::Native, GemmBackend::MatrixMultiply] {
                let exec = Exec {
                    gemm,
                    ..Exec::default()
                };
                let mut net = seed_network(variant, 1, exec);
                let whole = bits(net.forward(&x, batch, Mode::Eval));
                assert_eq!(net.output().shape().batch(), batch);
                assert_eq!(bits(net.output()), whole);
                let layers = net.layers().len();
                if gemm == GemmBackend::Native {
                    assert_eq!(unstored(&net), layers, "{variant}: per task");
                } else {
                    let last = net.activation(layers - 1).shape();
                    assert_eq!(
                        last.batch(),
                        batch - 2 * EVAL_BLOCK,
                        "{variant}: last block"
                    );
                }
                let mut pieces = Vec::new();
                for chunk in x.chunks(37 * item) {
                    pieces.extend(bits(net.forward(chunk, chunk.len() / item, Mode::Eval)));
                }
                assert_eq!(whole.len(), batch * crate::seed::CLASSES);
                assert_eq!(pieces, whole, "{variant} {gemm}");
            }
        }
    }

    /// The per-task evaluation gives the same logits on any number of threads, with batch norms
    /// folded into the convolutions or unfolded (standalone layers in the tasks).
    #[test]
    fn per_task_evaluation_does_not_depend_on_threads_or_folding() {
        let batch = EVAL_BLOCK + 2 * EVAL_TASK + 3;
        let item: usize = INPUT.iter().product();
        let x: Vec<f32> = (0..batch * item)
            .map(|i| ((i * 53 + i / item * 7) % 97) as f32 / 97.0)
            .collect();
        let run = |threads: usize, eval_unfolded: bool| {
            let exec = Exec {
                eval_unfolded,
                ..Exec::default()
            };
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a rayon pool builds")
                .install(|| {
                    let mut net = seed_network(Variant::Bn, 3, exec);
                    let whole = bits(net.forward(&x, batch, Mode::Eval));
                    // Small batches run layer by layer.
                    let mut pieces = Vec::new();
                    for chunk in x.chunks(37 * item) {
                        pieces.extend(bits(net.forward(chunk, chunk.len() / item, Mode::Eval)));
                    }
                    assert!(pieces == whole, "unfolded {eval_unfolded}: layer by layer");
                    whole
                })
        };
        for unfolded in [false, true] {
            let one = run(1, unfolded);
            for threads in [2, 3] {
                let same = run(threads, unfolded) == one;
                assert!(same, "{threads} threads, unfolded {unfolded}");
            }
        }
    }

    /// Evaluation folds each batch norm into the convolution before it (their outputs are
    /// not written), unless told to run unfolded; `set_exec` plans again.
    #[test]
    fn the_evaluation_plan_folds_each_batch_norm_into_its_convolution() {
        let x = images();
        let mut net = seed_network(Variant::Bn, 1, Exec::default());
        net.forward(&x, BATCH, Mode::Eval);
        assert_eq!(unstored(&net), crate::seed::CONV_LAYERS);
        net.set_exec(Exec {
            eval_unfolded: true,
            ..Exec::default()
        });
        net.forward(&x, BATCH, Mode::Eval);
        assert_eq!(unstored(&net), 0);
    }
}
