//! Fully connected layer `y = x @ W (+ b)`, `W` stored `[in, out]`; any input is flattened per item.

use crate::layer::{Exec, Layer, Mode, Param, ParamKind, ParamMut, ShapeError};
use crate::tensor::{Shape, Tensor};
use bnconv_kernels::fuse::{Epilogue, Start};
use bnconv_kernels::gemm::matmul::{matmul_packed, pack_panels_gather, packed_len};
use bnconv_kernels::gemm::{sgemm, MatMut, MatRef};
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::runtime::task_log::ForEachTask;
use bnconv_kernels::GemmBackend;
use rayon::prelude::*;

/// Rows per task of [`Dense`]'s training forward pass and of its input gradient, on bnconv's
/// GEMM.
const ROWS_PER_TASK: usize = 16;

/// A task of [`Dense`]'s backward pass on bnconv's GEMM: one shard's weight (and bias) gradient
/// partial, or a block of the input gradient's rows (starting at that row).
enum Piece<'a> {
    Shard(usize, &'a mut [f32]),
    InputRows(usize, &'a mut [f32]),
}

pub struct Dense {
    name: String,
    inputs: usize,
    outputs: usize,
    weight: Param,
    bias: Option<Param>,
    /// Per-shard weight (and bias) gradient partial sums, reused every step.
    partials: Vec<f32>,
    /// `W` packed for bnconv's GEMM, by the training forward pass and by
    /// [`Layer::prepare_eval`] (each packs the current weights before using it).
    packed: Vec<f32>,
    /// `W^T` packed for bnconv's GEMM by the backward pass (the input gradient's `B`), so that
    /// its row blocks can run on any worker without a worker's own packing buffer.
    backward_packed: Vec<f32>,
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
            packed: Vec::new(),
            backward_packed: Vec::new(),
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

/// Packs `W` (`[inputs, outputs]`) for bnconv's GEMM into `out`, or `W^T` when `transposed`, as
/// `sgemm` packs its `B`.
fn pack_weights(
    weight: &[f32],
    inputs: usize,
    outputs: usize,
    transposed: bool,
    out: &mut Vec<f32>,
) {
    let (depth, n) = if transposed {
        (outputs, inputs)
    } else {
        (inputs, outputs)
    };
    out.resize(packed_len(depth, n), 0.0);
    if transposed {
        pack_panels_gather(depth, n, weight, |p| p, |j| j * outputs, None, out);
    } else {
        pack_panels_gather(depth, n, weight, |p| p * outputs, |j| j, None, out);
    }
}

/// `y = x @ W (+ b)` for the rows of `x` on bnconv's GEMM, `W` packed by [`pack_weights`], the
/// bias starting the output tile: the same arithmetic as filling the rows with the bias and
/// accumulating the product, so the same bits.
fn packed_rows_product(
    x: &[f32],
    packed: &[f32],
    bias: Option<&Param>,
    y: &mut [f32],
    (inputs, outputs): (usize, usize),
) {
    let rows = y.len() / outputs;
    let start = match bias {
        Some(b) => Start::Bias(&b.value),
        None => Start::Zero,
    };
    matmul_packed(
        MatRef::dense(x, rows, inputs),
        packed,
        MatMut::dense(y, rows, outputs),
        Epilogue {
            start,
            scale: None,
            relu: false,
        },
    );
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

    /// On bnconv's GEMM, blocks of rows as the tasks of a loop, each the product of the packed
    /// weights with the bias starting the output tile (as in [`Layer::eval_block`], so the same
    /// bits as the whole product); a library GEMM takes the whole product at once.
    fn forward(&mut self, exec: &Exec, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let _p = profile::scope(Phase::DenseForward);
        if exec.gemm != GemmBackend::Native {
            return self.product(exec, x.data(), y.data_mut());
        }
        let (i, o) = (self.inputs, self.outputs);
        pack_weights(&self.weight.value, i, o, false, &mut self.packed);
        let (packed, bias, x) = (&self.packed, self.bias.as_ref(), x.data());
        y.data_mut()
            .par_chunks_mut(ROWS_PER_TASK * o)
            .enumerate()
            .for_each_task(Phase::DenseForward, |(b, rows)| {
                let _p = profile::thread_scope(Phase::DenseForward);
                let (first, r) = (b * ROWS_PER_TASK, rows.len() / o);
                packed_rows_product(&x[first * i..(first + r) * i], packed, bias, rows, (i, o));
            });
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
            pack_weights(&self.weight.value, i, o, false, &mut self.packed);
        }
        epilogue.is_none()
    }

    /// The product of the prepacked weights on the calling thread (no pool work), the bias
    /// starting the output tile: the same bits as `forward`.
    fn eval_block(&self, exec: &Exec, x: &[f32], _scratch: &mut [f32], y: &mut [f32]) {
        if exec.gemm != GemmBackend::Native {
            return self.product(exec, x, y);
        }
        let (i, o) = (self.inputs, self.outputs);
        packed_rows_product(x, &self.packed, self.bias.as_ref(), y, (i, o));
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
        let shard = |s: usize, part: &mut [f32]| {
            let images = span.images(s);
            if images.is_empty() {
                part.fill(0.0);
                return;
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
        };
        if exec.gemm == GemmBackend::Native {
            // The shards' partials and blocks of the input gradient's rows as the tasks of one
            // loop. Each is the product bnconv's `sgemm` makes alone (`x_s^T dy_s` unpacked;
            // `dy W^T` from `W^T` packed as `sgemm` packs it, a row block of the output being
            // computed as in the whole product), so the bits do not depend on the split.
            pack_weights(&self.weight.value, i, o, true, &mut self.backward_packed);
            let packed = &self.backward_packed;
            let no_input_grad: &mut [f32] = &mut [];
            let input_rows = dx
                .map_or(no_input_grad, |dx| dx.data_mut())
                .par_chunks_mut(ROWS_PER_TASK * i)
                .enumerate()
                .map(|(b, rows)| Piece::InputRows(b * ROWS_PER_TASK, rows));
            self.partials
                .par_chunks_mut(width)
                .enumerate()
                .map(|(s, part)| Piece::Shard(s, part))
                .chain(input_rows)
                .for_each_task(Phase::DenseBackward, |piece| {
                    let _p = profile::thread_scope(Phase::DenseBackward);
                    match piece {
                        Piece::Shard(s, part) => shard(s, part),
                        Piece::InputRows(first, rows) => {
                            let r = rows.len() / i;
                            let dy_r = &dy.data()[first * o..(first + r) * o];
                            matmul_packed(
                                MatRef::dense(dy_r, r, o),
                                packed,
                                MatMut::dense(rows, r, i),
                                Epilogue::NONE,
                            );
                        }
                    }
                });
        } else {
            for (s, part) in self.partials.chunks_exact_mut(width).enumerate() {
                shard(s, part);
            }
            if let Some(dx) = dx {
                let (dyv, w) = (
                    MatRef::dense(dy.data(), n, o),
                    MatRef::dense(&self.weight.value, i, o),
                );
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
        exec.reduction(&span).finish_f32(&mut self.partials, width);
        self.weight.grad.copy_from_slice(&self.partials[..i * o]);
        if let Some(b) = &mut self.bias {
            b.grad.copy_from_slice(&self.partials[i * o..width]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|k| {
                (k.wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// On bnconv's GEMM the training forward pass and the input gradient run as blocks of rows on
    /// any worker; each must give the bits of the whole product `sgemm` makes (the bias rows then
    /// `x W`, and `dy W^T`), on odd sizes whose last block is short, on 1 and 3 threads.
    #[test]
    fn row_blocks_give_the_bits_of_the_whole_products() {
        let (n, i, o) = (2 * ROWS_PER_TASK + 9, 37, 23);
        let (w, b, x, dy) = (
            values(i * o, 1),
            values(o, 2),
            values(n * i, 3),
            values(n * o, 4),
        );
        let mut y_whole: Vec<f32> = b.iter().copied().cycle().take(n * o).collect();
        let weights = MatRef::dense(&w, i, o);
        sgemm(
            GemmBackend::Native,
            1.0,
            MatRef::dense(&x, n, i),
            weights,
            1.0,
            MatMut::dense(&mut y_whole, n, o),
        );
        let mut dx_whole = vec![0.0; n * i];
        sgemm(
            GemmBackend::Native,
            1.0,
            MatRef::dense(&dy, n, o),
            weights.t(),
            0.0,
            MatMut::dense(&mut dx_whole, n, i),
        );
        let exec = Exec {
            gemm: GemmBackend::Native,
            ..Exec::default()
        };
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            pool.install(|| {
                let mut layer = Dense::new("fc", i, o, w.clone(), Some(b.clone()));
                let xt = Tensor::from_vec(Shape::new(&[n, i]), x.clone()).expect("x");
                let mut y = Tensor::zeros(Shape::new(&[n, o]));
                layer.forward(&exec, &xt, &mut y, Mode::Train);
                assert_eq!(bits(y.data()), bits(&y_whole), "forward, {threads} threads");
                let dyt = Tensor::from_vec(Shape::new(&[n, o]), dy.clone()).expect("dy");
                let mut dx = Tensor::zeros(Shape::new(&[n, i]));
                layer.backward(&exec, &xt, &y, &dyt, Some(&mut dx));
                assert_eq!(
                    bits(dx.data()),
                    bits(&dx_whole),
                    "input gradient, {threads} threads"
                );
            });
        }
    }
}
