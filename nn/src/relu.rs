//! A standalone ReLU (the plain network's activation).

use crate::layer::{ChannelMap, Exec, Layer, Mode, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::fuse::{Epilogue, Prologue};
use bnconv_kernels::norm::relu::{relu_backward, relu_forward, relu_forward_serial};
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::simd::active_isa;

pub struct Relu {
    name: String,
}

impl Relu {
    pub fn new(name: &str) -> Relu {
        Relu {
            name: name.to_string(),
        }
    }
}

impl Layer for Relu {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        Ok(input)
    }

    fn forward(&mut self, _exec: &Exec, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let _p = profile::scope(Phase::Relu);
        relu_forward(active_isa(), x.data(), y.data_mut());
    }

    fn prepare_eval(
        &mut self,
        _exec: &Exec,
        _input: Shape,
        epilogue: Option<&Epilogue<'_>>,
    ) -> bool {
        epilogue.is_none()
    }

    fn eval_block(&self, _exec: &Exec, x: &[f32], _scratch: &mut [f32], y: &mut [f32]) {
        relu_forward_serial(active_isa(), x, y);
    }

    fn backward(
        &mut self,
        _exec: &Exec,
        x: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
    ) {
        if let Some(dx) = dx {
            let _p = profile::scope(Phase::ReluBackward);
            // The mask from the input: `x > 0` exactly when `relu(x) > 0` (NaN in neither), and
            // the output may not have been stored (a deferred forward).
            relu_backward(active_isa(), x.data(), dy.data(), dx.data_mut());
        }
    }

    fn as_channel_map(&mut self) -> Option<&mut dyn ChannelMap> {
        Some(self)
    }
}

impl ChannelMap for Relu {
    /// Always: the backward pass takes its mask from the input.
    fn defers_in_training(&self, _exec: &Exec) -> bool {
        true
    }

    fn train_prologue(&mut self, _exec: &Exec, _x: &Tensor) -> Prologue<'_> {
        Prologue {
            normalize: None,
            relu: true,
        }
    }

    fn write_deferred_output(&mut self, _exec: &Exec, x: &Tensor, y: &mut Tensor) {
        relu_forward(active_isa(), x.data(), y.data_mut());
    }

    fn eval_epilogue(&mut self) -> Epilogue<'_> {
        Epilogue::NONE.with_relu(true)
    }
}
