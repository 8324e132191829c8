//! 3x3 convolution with TensorFlow SAME padding, NHWC activations, HWIO weights.

use crate::layer::{Exec, Fusing, Layer, Mode, Param, ParamKind, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::conv::{
    conv_backward, conv_forward, ConvGrads, ConvOps, ConvPlan, ConvWorkspace, EvalConv,
};
use bnconv_kernels::fuse::{Epilogue, Prologue, Start};
use bnconv_kernels::ConvGeometry;

pub struct Conv2d {
    name: String,
    in_c: usize,
    out_c: usize,
    stride: usize,
    /// HWIO `[3, 3, in_c, out_c]`.
    weight: Param,
    bias: Option<Param>,
    /// The im2col matrix and packed weights, reused every step.
    workspace: ConvWorkspace,
    /// The bias of a folded evaluation pass (`bias * scale + shift`).
    fused_bias: Vec<f32>,
    /// The evaluation pass [`Layer::prepare_eval`] readied for [`Layer::eval_block`].
    eval: EvalConv,
}

impl Conv2d {
    /// `weight` must hold `9 * in_c * out_c` values (HWIO); `bias`, if any, `out_c`.
    pub fn new(
        name: &str,
        in_c: usize,
        out_c: usize,
        stride: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Conv2d {
        assert!(
            in_c > 0 && out_c > 0 && stride > 0,
            "{name}: sizes must be positive"
        );
        Conv2d {
            name: name.to_string(),
            in_c,
            out_c,
            stride,
            weight: Param::new(&[3, 3, in_c, out_c], weight),
            bias: bias.map(|b| Param::new(&[out_c], b)),
            workspace: ConvWorkspace::default(),
            fused_bias: Vec::new(),
            eval: EvalConv::default(),
        }
    }

    fn geometry(&self, input: Shape) -> ConvGeometry {
        let d = input.dims();
        ConvGeometry::same(d[0], d[1], d[2], self.in_c, self.out_c, self.stride)
    }
}

impl Layer for Conv2d {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        let d = input.dims();
        if d.len() != 4 || d[3] != self.in_c || d[1] == 0 || d[2] == 0 {
            return Err(ShapeError {
                layer: self.name.clone(),
                detail: format!(
                    "expects NHWC input with {} channels, got {input}",
                    self.in_c
                ),
            });
        }
        let g = self.geometry(input);
        Ok(Shape::new(&[d[0], g.out_h, g.out_w, self.out_c]))
    }

    fn forward(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor, mode: Mode) {
        let g = self.geometry(x.shape());
        let (w, bias) = (
            &self.weight.value,
            self.bias.as_ref().map(|b| b.value.as_slice()),
        );
        let ops = match mode {
            Mode::Train => ConvOps::train(bias),
            // Evaluation keeps nothing for backward (less memory traffic, same results).
            Mode::Eval => ConvOps::eval(Epilogue::bias(bias)),
        };
        conv_forward(
            exec.gemm,
            &g,
            x.data(),
            w,
            ops,
            &mut self.workspace,
            y.data_mut(),
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
        let g = self.geometry(x.shape());
        let span = exec.span(g.batch);
        conv_backward(
            exec.gemm,
            &g,
            exec.reduction(&span),
            &mut self.workspace,
            &self.weight.value,
            dy.data(),
            ConvGrads {
                dx: dx.map(|t| t.data_mut()),
                dw: &mut self.weight.grad,
                db: self.bias.as_mut().map(|b| b.grad.as_mut_slice()),
            },
        );
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(ParamMut<'_>)) {
        self.weight
            .visit(&self.name, "weight", ParamKind::Trainable, f);
        if let Some(b) = &mut self.bias {
            b.visit(&self.name, "bias", ParamKind::Trainable, f);
        }
    }

    fn forward_flops(&self, input: Shape) -> u64 {
        self.geometry(input).forward_flops()
    }

    fn backward_flops(&self, input: Shape, input_grad: bool) -> u64 {
        self.forward_flops(input) * if input_grad { 2 } else { 1 }
    }

    fn prepare_eval(&mut self, exec: &Exec, input: Shape, epilogue: Option<&Epilogue<'_>>) -> bool {
        let g = self.geometry(input);
        let epilogue = match epilogue {
            Some(post) => {
                self.fold_bias(post);
                Epilogue {
                    start: Start::Bias(&self.fused_bias),
                    ..*post
                }
            }
            None => Epilogue::bias(self.bias.as_ref().map(|b| b.value.as_slice())),
        };
        self.eval
            .prepare(exec.gemm, &g, &self.weight.value, epilogue)
    }

    fn eval_scratch_len(&self, items: usize) -> usize {
        self.eval.scratch_len(items)
    }

    fn eval_block(&self, _exec: &Exec, x: &[f32], scratch: &mut [f32], y: &mut [f32]) {
        self.eval.run(x, scratch, y);
    }

    fn as_fusing(&mut self) -> Option<&mut dyn Fusing> {
        Some(self)
    }
}

impl Conv2d {
    /// `fused_bias = bias * scale + shift` of the evaluation map `post` folded into this layer,
    /// where a missing scale is 1 and a missing shift 0 (so a lone ReLU after a biased conv keeps
    /// the bias bit for bit).
    fn fold_bias(&mut self, post: &Epilogue<'_>) {
        let shift = post.start.bias();
        self.fused_bias.clear();
        self.fused_bias.extend((0..self.out_c).map(|c| {
            let bias = self.bias.as_ref().map_or(0.0, |b| b.value[c]);
            let scaled = post.scale.map_or(bias, |s| bias * s[c]);
            shift.map_or(scaled, |s| scaled + s[c])
        }));
    }
}

impl Fusing for Conv2d {
    fn accepts_prologue(&self, exec: &Exec, input: Shape) -> bool {
        input.dims().len() == 4
            && ConvPlan::new(exec.gemm, &self.geometry(input)).accepts_prologue()
    }

    fn forward_with_prologue(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        prologue: &Prologue<'_>,
        y: &mut Tensor,
    ) {
        let g = self.geometry(x.shape());
        let bias = self.bias.as_ref().map(|b| b.value.as_slice());
        conv_forward(
            exec.gemm,
            &g,
            x.data(),
            &self.weight.value,
            ConvOps::train(bias).with_prologue(*prologue),
            &mut self.workspace,
            y.data_mut(),
        );
    }

    fn forward_with_epilogue(
        &mut self,
        exec: &Exec,
        x: &Tensor,
        post: &Epilogue<'_>,
        y: &mut Tensor,
    ) {
        let g = self.geometry(x.shape());
        self.fold_bias(post);
        let epilogue = Epilogue {
            start: Start::Bias(&self.fused_bias),
            ..*post
        };
        conv_forward(
            exec.gemm,
            &g,
            x.data(),
            &self.weight.value,
            ConvOps::eval(epilogue),
            &mut self.workspace,
            y.data_mut(),
        );
    }
}
