//! Fully connected layer `y = x @ W (+ b)`, `W` stored `[in, out]`; any input is flattened per item.

use crate::layer::{Exec, Layer, Mode, Param, ParamKind, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::fuse::{Epilogue, Start};
use bnconv_kernels::gemm::matmul::{matmul_packed, pack_panels_gather, packed_len};
use bnconv_kernels::gemm::{sgemm, MatMut, MatRef};
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::GemmBackend;

pub struct Dense {
    name: String,
    inputs: usize,
    outputs: usize,
    weight: Param,
    bias: Option<Param>,
    /// Per-shard weight (and bias) gradient partial sums, reused every step.
    partials: Vec<f32>,
    /// The weights packed for bnconv's GEMM by [`Layer::prepare_eval`].
    eval_packed: Vec<f32>,
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
            partials: Vec::new(),
            eval_packed: Vec::new(),
        }
    }
}

impl Dense {
    /// `y = x @ W (+ b)` for the items of `x`.
    fn product(&self, exec: &Exec, x: &[f32], y: &mut [f32]) {
        let (i, o) = (self.inputs, self.outputs);
        let n = x.len() / i;
        let beta = match &self.bias {
            Some(b) => {
                for row in y.chunks_exact_mut(o) {
                    row.copy_from_slice(&b.value);
                }
                1.0
            }
            None => 0.0,
        };
        let (x, w) = (
            MatRef::dense(x, n, i),
            MatRef::dense(&self.weight.value, i, o),
        );
        sgemm(exec.gemm, 1.0, x, w, beta, MatMut::dense(y, n, o));
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
        self.product(exec, x.data(), y.data_mut());
    }

    /// On bnconv's GEMM, packs the weights once for every block (a library GEMM reads them as
    /// they are).
    fn prepare_eval(
        &mut self,
        exec: &Exec,
        _input: Shape,
        epilogue: Option<&Epilogue<'_>>,
    ) -> bool {
        if exec.gemm == GemmBackend::Native {
            let (i, o) = (self.inputs, self.outputs);
            self.eval_packed.resize(packed_len(i, o), 0.0);
            pack_panels_gather(
                i,
                o,
                &self.weight.value,
                |p| p * o,
                |j| j,
                None,
                &mut self.eval_packed,
            );
        }
        epilogue.is_none()
    }

    /// The bias starts the output tile instead of filling the rows first: the same arithmetic,
    /// so the same bits as `forward`; no pool work (the product of the prepacked weights).
    fn eval_block(&self, exec: &Exec, x: &[f32], _scratch: &mut [f32], y: &mut [f32]) {
        if exec.gemm != GemmBackend::Native {
            return self.product(exec, x, y);
        }
        let (i, o) = (self.inputs, self.outputs);
        let n = x.len() / i;
        let start = match &self.bias {
            Some(b) => Start::Bias(&b.value),
            None => Start::Zero,
        };
        matmul_packed(
            MatRef::dense(x, n, i),
            &self.eval_packed,
            MatMut::dense(y, n, o),
            Epilogue {
                start,
                scale: None,
                relu: false,
            },
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
        // Per shard of the batch: dW_s = x_s^T @ dy_s and db_s = column sums of dy_s; then the
        // shard tree (across processes too) adds them.
        let span = exec.span(n);
        let width = i * o + if self.bias.is_some() { o } else { 0 };
        self.partials.resize(span.len() * width, 0.0);
        for (s, part) in self.partials.chunks_exact_mut(width).enumerate() {
            let images = span.images(s);
            if images.is_empty() {
                part.fill(0.0);
                continue;
            }
            let (dw, db) = part.split_at_mut(i * o);
            let dy_s = &dy.data()[images.start * o..images.end * o];
            let xv = MatRef::dense(&x.data()[images.start * i..images.end * i], images.len(), i);
            let dyv = MatRef::dense(dy_s, images.len(), o);
            sgemm(exec.gemm, 1.0, xv.t(), dyv, 0.0, MatMut::dense(dw, i, o));
            if !db.is_empty() {
                db.fill(0.0);
                for row in dy_s.chunks_exact(o) {
                    for (g, v) in db.iter_mut().zip(row) {
                        *g += v;
                    }
                }
            }
        }
        exec.reduction(&span).finish_f32(&mut self.partials, width);
        self.weight.grad.copy_from_slice(&self.partials[..i * o]);
        if let Some(b) = &mut self.bias {
            b.grad.copy_from_slice(&self.partials[i * o..width]);
        }
        let dyv = MatRef::dense(dy.data(), n, o);
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
