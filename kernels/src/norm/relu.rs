//! ReLU forward and backward as separate passes: the unfused path, and the plain network's ReLU.

use crate::runtime::profile::Phase;
use crate::runtime::task_log::ForEachTask;
use crate::simd::{multiversion, relu_grad_s, relu_s, Isa, LANES};
use rayon::prelude::*;

/// Floats per parallel task for elementwise passes (any split gives the same result).
const TASK: usize = 1 << 14;

multiversion! {
    /// `y = max(x, 0)` on one block, NaN passed through; SIMD with a scalar tail.
    pub(crate) fn relu_block<V>(x: &[f32], y: &mut [f32]) {
        let body = x.len() / LANES * LANES;
        for (xs, ys) in x.as_chunks().0.iter().zip(y.as_chunks_mut().0) {
            V::load(xs).relu().store(ys);
        }
        for (xv, yv) in x[body..].iter().zip(&mut y[body..]) {
            *yv = relu_s(*xv);
        }
    }
}

multiversion! {
    /// `dx = dy` where `y > 0`, else 0, on one block.
    fn relu_grad_block<V>(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let body = y.len() / LANES * LANES;
        for ((ys, ds), xs) in y.as_chunks().0.iter()
            .zip(dy.as_chunks().0)
            .zip(dx.as_chunks_mut().0)
        {
            V::load(ys).where_positive(V::load(ds)).store(xs);
        }
        for ((yv, dv), xv) in y[body..].iter().zip(&dy[body..]).zip(&mut dx[body..]) {
            *xv = relu_grad_s(*yv, *dv);
        }
    }
}

/// [`relu_forward`] on the calling thread alone, the same bits: for work that already runs
/// inside a pool task and must not hand out nested tasks (the evaluation's per-task network).
pub fn relu_forward_serial(isa: Isa, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu_forward: sizes");
    relu_block(isa, x, y);
}

/// `y = max(x, 0)` elementwise (NaN stays NaN, so divergence stays visible), on `isa`'s build.
pub fn relu_forward(isa: Isa, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu_forward: sizes");
    x.par_chunks(TASK)
        .zip(y.par_chunks_mut(TASK))
        .for_each_task(Phase::Relu, |(x, y)| relu_block(isa, x, y));
}

/// ReLU gradient from the forward output: `dx = dy * (y > 0)`, on `isa`'s build.
pub fn relu_backward(isa: Isa, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(
        y.len() == dy.len() && dy.len() == dx.len(),
        "relu_backward: sizes"
    );
    y.par_chunks(TASK)
        .zip(dy.par_chunks(TASK))
        .zip(dx.par_chunks_mut(TASK))
        .for_each_task(Phase::ReluBackward, |((y, dy), dx)| {
            relu_grad_block(isa, y, dy, dx)
        });
}

/// Scalar reference of [`relu_forward`].
pub fn relu_forward_reference(x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = relu_s(*xv);
    }
}

/// Scalar reference of [`relu_backward`].
pub fn relu_backward_reference(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((xv, yv), dv) in dx.iter_mut().zip(y).zip(dy) {
        *xv = relu_grad_s(*yv, *dv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_scalar_bitwise_on_odd_lengths_for_every_isa() {
        for isa in crate::testing::tested_paths() {
            for n in [0, 1, 7, 8, 9, 31, TASK + 13] {
                let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
                let dy: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
                let (mut y, mut y_ref) = (vec![0.0; n], vec![0.0; n]);
                relu_forward(isa, &x, &mut y);
                relu_forward_reference(&x, &mut y_ref);
                assert_eq!(y, y_ref, "{isa:?} n={n}");
                let mut serial = vec![f32::NAN; n];
                relu_forward_serial(isa, &x, &mut serial);
                assert_eq!(serial, y_ref, "{isa:?} n={n}: serial");
                let (mut dx, mut dx_ref) = (vec![0.0; n], vec![0.0; n]);
                relu_backward(isa, &y, &dy, &mut dx);
                relu_backward_reference(&y, &dy, &mut dx_ref);
                assert_eq!(dx, dx_ref, "{isa:?} n={n}");
            }
        }
    }
}
