//! The layer contract: forward in train or eval mode, backward, and a visit of the parameters.

use crate::distributed::Team;
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::fuse::{Epilogue, Prologue};
use bnconv_kernels::runtime::shards::{ShardSpan, Shards, DEFAULT_SHARDS};
use bnconv_kernels::GemmBackend;
use std::fmt;

/// Training (batch statistics, caches for backward) or evaluation (moving statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// How batch norm followed by ReLU runs: one fused kernel per direction, or a BN pass then a ReLU
/// pass. Both give bitwise the same numbers; the choice only changes memory traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BnPath {
    #[default]
    Fused,
    Unfused,
}

impl BnPath {
    pub fn name(self) -> &'static str {
        match self {
            BnPath::Fused => "fused",
            BnPath::Unfused => "unfused",
        }
    }

    pub fn from_name(name: &str) -> Result<BnPath, String> {
        match name {
            "fused" => Ok(BnPath::Fused),
            "unfused" => Ok(BnPath::Unfused),
            other => Err(format!(
                "unknown BN mode {other:?}; expected fused or unfused"
            )),
        }
    }
}

impl fmt::Display for BnPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Run-time kernel choices shared by every layer of a network, and the processes it trains with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    pub gemm: GemmBackend,
    pub bn_path: BnPath,
    /// Run evaluation layer by layer instead of folding batch norm and ReLU into the preceding
    /// convolution (for comparing the two; folding changes the rounding only).
    pub eval_unfolded: bool,
    /// The fixed shards a training batch's sums are cut into ([`bnconv_kernels::runtime::shards`]): part
    /// of the numeric definition, like the batch size; a power of two that the process count
    /// must divide.
    pub shards: usize,
    /// The processes training this network together (one by default).
    pub team: Team,
}

impl Default for Exec {
    fn default() -> Exec {
        Exec {
            gemm: GemmBackend::default(),
            bn_path: BnPath::default(),
            eval_unfolded: false,
            shards: DEFAULT_SHARDS,
            team: Team::default(),
        }
    }
}

impl Exec {
    /// This process's shards of a training batch of `local_batch` images (its share).
    pub fn span(&self, local_batch: usize) -> ShardSpan {
        self.team.span(local_batch, self.shards)
    }

    /// What a kernel reducing over the images of `span` needs: the span, and the team that
    /// finishes its sums across processes.
    pub fn reduction<'a>(&'a self, span: &'a ShardSpan) -> Shards<'a> {
        Shards {
            span,
            across: &self.team,
        }
    }
}

/// What a parameter is to the optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Updated by the optimiser from its gradient.
    Trainable,
    /// A batch-norm moving statistic: updated by the forward pass, not by gradients.
    Statistic,
}

/// One parameter as a visitor sees it. `grad` is empty for statistics.
pub struct ParamMut<'a> {
    /// The owning layer's name, e.g. `conv07`.
    pub layer: &'a str,
    /// The parameter's name within the layer, e.g. `weight`.
    pub name: &'static str,
    pub kind: ParamKind,
    pub shape: &'a [usize],
    pub value: &'a mut [f32],
    pub grad: &'a mut [f32],
}

impl ParamMut<'_> {
    /// `layer.name`, the name used in fixtures and checkpoints.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }
}

/// A shape the layer cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layer {layer}: {detail}")]
pub struct ShapeError {
    pub layer: String,
    pub detail: String,
}

/// A differentiable layer. Networks call `forward` then, in training, `backward` with the same `x`
/// and the `y` that forward produced; layers keep whatever else backward needs.
pub trait Layer: Send + Sync {
    fn name(&self) -> &str;

    /// The output shape for an input shape, or why the input does not fit.
    fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError>;

    /// Computes `y` (already shaped by the caller from [`Layer::output_shape`]).
    fn forward(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor, mode: Mode);

    /// Accumulates nothing: overwrites this layer's parameter gradients, and `dx` when given.
    fn backward(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
    );

    /// Visits parameters and statistics in a fixed order.
    fn visit_params(&mut self, _f: &mut dyn FnMut(ParamMut<'_>)) {}

    /// Forward multiply-adds times two for one input of this shape (GEMM work only).
    fn forward_flops(&self, _input: Shape) -> u64 {
        0
    }

    /// Backward GEMM flops; `input_grad` says whether the input gradient is computed.
    fn backward_flops(&self, _input: Shape, _input_grad: bool) -> u64 {
        0
    }

    /// Readies this layer for [`Layer::eval_block`] on items of `input`'s shape (its batch is
    /// ignored), with `epilogue` (the next layer's evaluation map, when the network folds it into
    /// this layer: only for a [`Fusing`] layer) applied to the output. Returns false if the layer
    /// cannot run that way (the network then evaluates layer by layer with
    /// [`Layer::forward`]). The parameters must not change until the blocks have run.
    fn prepare_eval(
        &mut self,
        _exec: &Exec,
        _input: Shape,
        _epilogue: Option<&Epilogue<'_>>,
    ) -> bool {
        false
    }

    /// Floats of scratch [`Layer::eval_block`] needs for `items` items.
    fn eval_scratch_len(&self, _items: usize) -> usize {
        0
    }

    /// Evaluation forward of the items of `x` (as many as fit) into `y`, after
    /// [`Layer::prepare_eval`] returned true: the same bits as [`Layer::forward`] in
    /// [`Mode::Eval`] (with the prepared epilogue, as [`Fusing::forward_with_epilogue`]), but
    /// through `&self`: several pool tasks run it at once, each on its own items, so that a
    /// network runs whole on each task's block instead of layer by layer over the pool. It must
    /// hand out no pool work of its own: while a nested task is stolen, the waiting thread may
    /// run another block's task, which needs the buffers this one holds.
    ///
    /// # Panics
    /// If the layer was not prepared.
    fn eval_block(&self, _exec: &Exec, _x: &[f32], _scratch: &mut [f32], _y: &mut [f32]) {
        panic!("{}: eval_block without prepare_eval", self.name());
    }

    /// This layer as a per-channel map that a neighbouring layer can apply in its place (batch
    /// norm, ReLU); `None` for other layers. The network asks once, when it plans its fusions.
    fn as_channel_map(&mut self) -> Option<&mut dyn ChannelMap> {
        None
    }

    /// This layer as one that applies a neighbour's per-channel map within its own pass (a
    /// convolution); `None` for other layers. The network asks once, when it plans its fusions.
    fn as_fusing(&mut self) -> Option<&mut dyn Fusing> {
        None
    }
}

/// A layer that is a per-channel map (batch norm, ReLU) which a neighbouring [`Fusing`] layer
/// can apply instead: in training the next layer applies it to its input as it reads it
/// ([`Prologue`]), in evaluation the layer before applies it to its output ([`Epilogue`]). The
/// layer's own output is then never written.
pub trait ChannelMap {
    /// Whether in training, on `exec`'s kernels, the next layer may apply this map to its input:
    /// only when this layer's backward never reads its output.
    fn defers_in_training(&self, exec: &Exec) -> bool;

    /// Training forward that leaves the output unwritten: does everything else `forward` does
    /// (batch statistics, moving averages) and returns the map for the next layer's input.
    fn train_prologue(&mut self, exec: &Exec, x: &Tensor) -> Prologue<'_>;

    /// After [`ChannelMap::train_prologue`]: writes the output it skipped, from the statistics it
    /// kept (nothing is updated again). For diagnosis (finding where a non-finite value first
    /// appeared).
    fn write_deferred_output(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor);

    /// The evaluation-mode map, `relu?(x * scale + shift)`, as the [`Epilogue`] the layer before
    /// applies to its output: the shift as a bias start (`Start::Zero`: no shift, which is not
    /// the same as adding 0 to -0).
    fn eval_epilogue(&mut self) -> Epilogue<'_>;
}

/// A layer that applies a neighbouring [`ChannelMap`] within its own pass (a convolution: to
/// its input while bordering it, or to its output tiles).
pub trait Fusing {
    /// Whether [`Fusing::forward_with_prologue`] takes an input of this shape on `exec`'s
    /// kernels. Asked once, with a batch of one: the answer must not depend on the batch size.
    fn accepts_prologue(&self, exec: &Exec, input: Shape) -> bool;

    /// Training forward of `prologue(x)`, `x` being the previous layer's input. `backward` then
    /// needs only the shape of its `x`.
    fn forward_with_prologue(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        prologue: &Prologue<'_>,
        y: &mut Tensor,
    );

    /// Evaluation forward with `epilogue` (the next layer's map) applied to the output: in place
    /// of this layer then the next.
    fn forward_with_epilogue(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        epilogue: &Epilogue<'_>,
        y: &mut Tensor,
    );
}

/// Storage for one parameter: value, gradient and shape.
#[derive(Clone, Debug)]
pub struct Param {
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    pub fn new(shape: &[usize], value: Vec<f32>) -> Param {
        debug_assert_eq!(shape.iter().product::<usize>(), value.len());
        Param {
            shape: shape.to_vec(),
            grad: vec![0.0; value.len()],
            value,
        }
    }

    pub fn filled(shape: &[usize], v: f32) -> Param {
        Param::new(shape, vec![v; shape.iter().product()])
    }

    /// Hands this parameter to a visitor.
    pub fn visit(
        &mut self,
        layer: &str,
        name: &'static str,
        kind: ParamKind,
        f: &mut dyn FnMut(ParamMut<'_>),
    ) {
        let grad: &mut [f32] = match kind {
            ParamKind::Trainable => &mut self.grad,
            ParamKind::Statistic => &mut [],
        };
        f(ParamMut {
            layer,
            name,
            kind,
            shape: &self.shape,
            value: &mut self.value,
            grad,
        });
    }
}
