//! Fully connected layer `y = x @ W (+ b)`, `W` stored `[in, out]`; any input is flattened per item.

use crate::layer::{Exec, Layer, Mode, Param, ParamKind, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::gemm::{sgemm, MatMut, MatRef};
use bnconv_kernels::runtime::profile::{self, Phase};

pub struct Dense {
    name: String,
    inputs: usize,
    outputs: usize,
    weight: Param,
    bias: Option<Param>,
}

impl Dense {
    /// `weight` holds `inputs * outputs` values (`[in, out]` row-major); `bias`, if any, `outputs`.
    pub fn new(
        name: &str,
        inputs: usize,
        outputs: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Dense {
        assert!(inputs > 0 && outputs > 0, "{name}: sizes must be positive");
        Dense {
            name: name.to_string(),
            inputs,
            outputs,
            weight: Param::new(&[inputs, outputs], weight),
            bias: bias.map(|b| Param::new(&[outputs], b)),
        }
    }
}

impl Layer for Dense {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if input.rank() < 2 || input.per_item() != self.inputs {
            return Err(ShapeError {
                layer: self.name.clone(),
                detail: format!(
                    "expects {} features per item, got input {input}",
                    self.inputs
                ),
            });
        }
        Ok(Shape::new(&[input.batch(), self.outputs]))
    }

    fn forward(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let _p = profile::scope(Phase::DenseForward);
        let (n, i, o) = (x.shape().batch(), self.inputs, self.outputs);
        let beta = match &self.bias {
            Some(b) => {
                for row in y.data_mut().chunks_exact_mut(o) {
                    row.copy_from_slice(&b.value);
                }
                1.0
            }
            None => 0.0,
        };
        let (x, w) = (
            MatRef::dense(x.data(), n, i),
            MatRef::dense(&self.weight.value, i, o),
        );
        sgemm(
            exec.gemm,
            1.0,
            x,
            w,
            beta,
            MatMut::dense(y.data_mut(), n, o),
        );
    }

    fn backward(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
    ) {
        let _p = profile::scope(Phase::DenseBackward);
        let (n, i, o) = (x.shape().batch(), self.inputs, self.outputs);
        let (xv, dyv) = (
            MatRef::dense(x.data(), n, i),
            MatRef::dense(dy.data(), n, o),
        );
        let dw = MatMut::dense(&mut self.weight.grad, i, o);
        sgemm(exec.gemm, 1.0, xv.t(), dyv, 0.0, dw);
        if let Some(b) = &mut self.bias {
            b.grad.fill(0.0);
            for row in dy.data().chunks_exact(o) {
                for (g, v) in b.grad.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
        if let Some(dx) = dx {
            let w = MatRef::dense(&self.weight.value, i, o);
            sgemm(
                exec.gemm,
                1.0,
                dyv,
                w.t(),
                0.0,
                MatMut::dense(dx.data_mut(), n, i),
            );
        }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(ParamMut<'_>)) {
        self.weight
            .visit(&self.name, "weight", ParamKind::Trainable, f);
        if let Some(b) = &mut self.bias {
            b.visit(&self.name, "bias", ParamKind::Trainable, f);
        }
    }

    fn forward_flops(&self, input: Shape) -> u64 {
        2 * (input.batch() * self.inputs * self.outputs) as u64
    }

    fn backward_flops(&self, input: Shape, input_grad: bool) -> u64 {
        self.forward_flops(input) * if input_grad { 2 } else { 1 }
    }
}
