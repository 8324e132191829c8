//! Batch normalisation over every axis but the last (NHWC or `[N, F]`), optionally followed by
//! ReLU, run fused or unfused as [`Exec::bn_path`] says.
//!
//! Constants follow the protocol (TensorFlow's `tf.layers.batch_normalization` as the seed uses
//! it): biased batch variance, `moving = decay * moving + (1 - decay) * batch`, moving mean 0 and
//! variance 1 at start, gamma 1 and beta 0.

use crate::layer::{BnPath, ChannelMap, Exec, Layer, Mode, Param, ParamKind, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::fuse::{BnApply, Epilogue, Prologue, Start};
use bnconv_kernels::norm::batchnorm::{
    batch_stats, bn_apply_serial, bn_backward, bn_forward, fold_scale, BnGrads, BnSaved, BnScratch,
};
use bnconv_kernels::norm::bn_relu::{bn_relu_backward, bn_relu_forward};
use bnconv_kernels::norm::relu::{relu_backward, relu_forward};
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::simd::active_isa;

pub const DEFAULT_EPS: f32 = 1e-3;
pub const DEFAULT_DECAY: f32 = 0.99;

pub struct BatchNorm {
    name: String,
    channels: usize,
    eps: f32,
    decay: f32,
    relu: bool,
    gamma: Param,
    beta: Param,
    moving_mean: Param,
    moving_var: Param,
    // Per-channel state of the last forward pass.
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
    scale: Vec<f32>,
    /// Evaluation shift `beta - moving_mean * scale`, for folding into the layer before.
    shift: Vec<f32>,
    /// Unfused path only: the BN output before ReLU, then the gradient reaching it.
    between: Vec<f32>,
    /// Input gradient when the caller does not want one (BN as a first layer).
    dx_unused: Vec<f32>,
    scratch: BnScratch,
}

impl BatchNorm {
    /// The statistics half of `forward`: in training, the batch mean and variance (over the
    /// whole batch of every process of `exec.team`), the moving averages' update and the folded
    /// scale; in evaluation, the scale from the moving variance.
    fn statistics(&mut self, exec: &Exec, x: &Tensor, mode: Mode) {
        let c = self.channels;
        let _stats = profile::scope(Phase::BnStats);
        match mode {
            Mode::Train => {
                let span = exec.span(x.shape().batch());
                batch_stats(
                    active_isa(),
                    x.data(),
                    c,
                    exec.reduction(&span),
                    &mut self.mean,
                    &mut self.var,
                    &mut self.scratch,
                );
                let keep = 1.0 - self.decay;
                for ch in 0..c {
                    let (mm, mv) = (
                        &mut self.moving_mean.value[ch],
                        &mut self.moving_var.value[ch],
                    );
                    *mm = self.decay * *mm + keep * self.mean[ch];
                    *mv = self.decay * *mv + keep * self.var[ch];
                }
                fold_scale(
                    &self.gamma.value,
                    &self.var,
                    self.eps,
                    &mut self.invstd,
                    &mut self.scale,
                );
            }
            Mode::Eval => fold_scale(
                &self.gamma.value,
                &self.moving_var.value,
                self.eps,
                &mut self.invstd,
                &mut self.scale,
            ),
        }
    }

    /// Protocol defaults: gamma 1, beta 0, moving mean 0, moving variance 1.
    pub fn new(name: &str, channels: usize, relu: bool) -> BatchNorm {
        assert!(channels > 0, "{name}: zero channels");
        let c = channels;
        BatchNorm {
            name: name.to_string(),
            channels,
            eps: DEFAULT_EPS,
            decay: DEFAULT_DECAY,
            relu,
            gamma: Param::filled(&[c], 1.0),
            beta: Param::filled(&[c], 0.0),
            moving_mean: Param::filled(&[c], 0.0),
            moving_var: Param::filled(&[c], 1.0),
            mean: vec![0.0; c],
            var: vec![0.0; c],
            invstd: vec![0.0; c],
            scale: vec![0.0; c],
            shift: vec![0.0; c],
            between: Vec::new(),
            dx_unused: Vec::new(),
            scratch: BnScratch::default(),
        }
    }

    pub fn with_constants(mut self, eps: f32, decay: f32) -> BatchNorm {
        self.eps = eps;
        self.decay = decay;
        self
    }

    /// The batch mean and biased variance of the last training forward pass.
    pub fn batch_statistics(&self) -> (&[f32], &[f32]) {
        (&self.mean, &self.var)
    }
}

impl Layer for BatchNorm {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if input.rank() < 2 || input.channels() != self.channels {
            return Err(ShapeError {
                layer: self.name.clone(),
                detail: format!(
                    "expects {} channels in the last axis, got {input}",
                    self.channels
                ),
            });
        }
        Ok(input)
    }

    fn forward(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor, mode: Mode) {
        self.statistics(exec, x, mode);
        let k = BnApply {
            mean: match mode {
                Mode::Train => &self.mean,
                Mode::Eval => &self.moving_mean.value,
            },
            scale: &self.scale,
            beta: &self.beta.value,
        };
        let apply = profile::scope(Phase::BnApply);
        match (self.relu, exec.bn_path) {
            (false, _) => bn_forward(active_isa(), x.data(), k, y.data_mut()),
            (true, BnPath::Fused) => bn_relu_forward(active_isa(), x.data(), k, y.data_mut()),
            (true, BnPath::Unfused) => {
                self.between.resize(x.data().len(), 0.0);
                bn_forward(active_isa(), x.data(), k, &mut self.between);
                drop(apply);
                let _p = profile::scope(Phase::Relu);
                relu_forward(active_isa(), &self.between, y.data_mut());
            }
        }
    }

    fn backward(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
    ) {
        let saved = BnSaved {
            mean: &self.mean,
            invstd: &self.invstd,
            gamma: &self.gamma.value,
            beta: &self.beta.value,
        };
        let dx: &mut [f32] = match dx {
            Some(t) => t.data_mut(),
            None => {
                self.dx_unused.resize(x.data().len(), 0.0);
                &mut self.dx_unused
            }
        };
        let grads = BnGrads {
            dx,
            dgamma: &mut self.gamma.grad,
            dbeta: &mut self.beta.grad,
        };
        let span = exec.span(x.shape().batch());
        let shards = exec.reduction(&span);
        let bwd = profile::scope(Phase::BnBackward);
        match (self.relu, exec.bn_path) {
            (false, _) => bn_backward(
                active_isa(),
                x.data(),
                dy.data(),
                saved,
                shards,
                grads,
                &mut self.scratch,
            ),
            (true, BnPath::Fused) => bn_relu_backward(
                active_isa(),
                x.data(),
                dy.data(),
                saved,
                shards,
                grads,
                &mut self.scratch,
            ),
            (true, BnPath::Unfused) => {
                self.between.resize(x.data().len(), 0.0);
                drop(bwd);
                let relu = profile::scope(Phase::ReluBackward);
                relu_backward(active_isa(), y.data(), dy.data(), &mut self.between);
                drop(relu);
                let _p = profile::scope(Phase::BnBackward);
                bn_backward(
                    active_isa(),
                    x.data(),
                    &self.between,
                    saved,
                    shards,
                    grads,
                    &mut self.scratch,
                );
            }
        }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(ParamMut<'_>)) {
        self.gamma
            .visit(&self.name, "gamma", ParamKind::Trainable, f);
        self.beta.visit(&self.name, "beta", ParamKind::Trainable, f);
        self.moving_mean
            .visit(&self.name, "moving_mean", ParamKind::Statistic, f);
        self.moving_var
            .visit(&self.name, "moving_var", ParamKind::Statistic, f);
    }

    /// Readies the scale from the moving variance, as an evaluation `forward` does.
    fn prepare_eval(
        &mut self,
        exec: &Exec,
        _input: Shape,
        epilogue: Option<&Epilogue<'_>>,
    ) -> bool {
        if epilogue.is_some() {
            return false;
        }
        self.statistics(exec, &Tensor::default(), Mode::Eval);
        true
    }

    /// The fused BN+ReLU kernel whatever [`Exec::bn_path`] says: both paths give the same bits.
    fn eval_block(&self, _exec: &Exec, x: &[f32], _scratch: &mut [f32], y: &mut [f32]) {
        let k = BnApply {
            mean: &self.moving_mean.value,
            scale: &self.scale,
            beta: &self.beta.value,
        };
        bn_apply_serial(active_isa(), x, k, y, self.relu);
    }

    fn as_channel_map(&mut self) -> Option<&mut dyn ChannelMap> {
        Some(self)
    }
}

impl ChannelMap for BatchNorm {
    /// Only on the fused BN+ReLU path: its backward recomputes the ReLU mask from `x` and never
    /// reads `y`.
    fn defers_in_training(&self, exec: &Exec) -> bool {
        self.relu && exec.bn_path == BnPath::Fused
    }

    fn train_prologue(&mut self, exec: &Exec, x: &Tensor) -> Prologue<'_> {
        self.statistics(exec, x, Mode::Train);
        Prologue {
            normalize: Some(BnApply {
                mean: &self.mean,
                scale: &self.scale,
                beta: &self.beta.value,
            }),
            relu: self.relu,
        }
    }

    fn write_deferred_output(&mut self, _exec: &Exec, x: &Tensor, y: &mut Tensor) {
        let k = BnApply {
            mean: &self.mean,
            scale: &self.scale,
            beta: &self.beta.value,
        };
        match self.relu {
            true => bn_relu_forward(active_isa(), x.data(), k, y.data_mut()),
            false => bn_forward(active_isa(), x.data(), k, y.data_mut()),
        }
    }

    fn eval_epilogue(&mut self) -> Epilogue<'_> {
        fold_scale(
            &self.gamma.value,
            &self.moving_var.value,
            self.eps,
            &mut self.invstd,
            &mut self.scale,
        );
        for ch in 0..self.channels {
            self.shift[ch] = self.beta.value[ch] - self.moving_mean.value[ch] * self.scale[ch];
        }
        Epilogue {
            start: Start::Bias(&self.shift),
            scale: Some(&self.scale),
            relu: self.relu,
        }
    }
}
