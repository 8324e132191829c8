//! Fused batch-norm + ReLU: one pass forward (`y = max((x - mean) * scale + beta, 0)`), and a
//! backward whose two passes recompute the ReLU mask from `x` (the forward pass's exact
//! operations) instead of reading `y` or writing a masked gradient: per element, 2 memory streams
//! forward instead of 4 and 5 backward instead of 8.
//!
//! The unfused path ([`crate::norm::batchnorm::bn_forward`] then [`crate::norm::relu::relu_forward`];
//! [`crate::norm::relu::relu_backward`] then [`crate::norm::batchnorm::bn_backward`]) performs the same f32
//! operations in the same order, so the two paths agree bitwise; the tests hold them to that.

use crate::fuse::BnApply;
use crate::norm::batchnorm::{backward, normalize, BnGrads, BnSaved, BnScratch};
use crate::runtime::shards::Shards;
use crate::simd::Isa;

/// `y = relu((x - mean) * scale + beta)` per channel in one pass (as
/// [`crate::norm::batchnorm::bn_forward`], then ReLU).
pub fn bn_relu_forward(isa: Isa, x: &[f32], k: BnApply, y: &mut [f32]) {
    normalize(isa, x, k, y, true);
}

/// Backward of [`bn_relu_forward`] in training mode, given the gradient `dy` of its output: fills
/// `dx`, `dgamma` and `dbeta` (sums over the whole batch of `shards`). `saved` must hold the
/// forward pass's statistics and `beta`.
pub fn bn_relu_backward(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    saved: BnSaved,
    shards: Shards<'_>,
    grads: BnGrads,
    scratch: &mut BnScratch,
) {
    backward::<true>(isa, x, dy, saved, shards, grads, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norm::batchnorm::tests::{assert_close, sample, SHAPES};
    use crate::norm::batchnorm::{batch_stats, bn_backward, bn_forward, fold_scale, reference};
    use crate::norm::relu::{relu_backward, relu_forward};
    use crate::runtime::shards::ShardSpan;

    fn grads_of<'a>(dx: &'a mut [f32], dgamma: &'a mut [f32], dbeta: &'a mut [f32]) -> BnGrads<'a> {
        BnGrads { dx, dgamma, dbeta }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn fused_equals_unfused_bitwise_forward_and_backward_for_every_isa() {
        for isa in crate::testing::tested_paths() {
            for &(rows, c) in SHAPES {
                let x = sample(rows, c, 31);
                let dy = sample(rows, c, 32);
                let gamma = sample(1, c, 33);
                let beta = sample(1, c, 34);
                let mut s = BnScratch::default();
                // Rows as images in 4 shards (some empty for the shortest shapes).
                let span = ShardSpan::whole(rows, 4);
                let shards = Shards::local(&span);
                let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
                batch_stats(isa, &x, c, shards, &mut mean, &mut var, &mut s);
                let (mut invstd, mut scale) = (vec![0.0; c], vec![0.0; c]);
                fold_scale(&gamma, &var, 1e-3, &mut invstd, &mut scale);
                let k = BnApply {
                    mean: &mean,
                    scale: &scale,
                    beta: &beta,
                };
                let saved = BnSaved {
                    mean: &mean,
                    invstd: &invstd,
                    gamma: &gamma,
                    beta: &beta,
                };

                let mut y_fused = vec![0.0; x.len()];
                bn_relu_forward(isa, &x, k, &mut y_fused);
                let (mut z, mut y_unfused) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                bn_forward(isa, &x, k, &mut z);
                relu_forward(isa, &z, &mut y_unfused);
                assert_eq!(
                    bits(&y_fused),
                    bits(&y_unfused),
                    "{isa:?} forward rows {rows} c {c}"
                );

                let (mut dx_f, mut dg_f, mut db_f) =
                    (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
                let grads = grads_of(&mut dx_f, &mut dg_f, &mut db_f);
                bn_relu_backward(isa, &x, &dy, saved, shards, grads, &mut s);
                let mut dz = vec![0.0; x.len()];
                relu_backward(isa, &y_unfused, &dy, &mut dz);
                let (mut dx_u, mut dg_u, mut db_u) =
                    (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
                let grads_u = grads_of(&mut dx_u, &mut dg_u, &mut db_u);
                bn_backward(isa, &x, &dz, saved, shards, grads_u, &mut s);
                assert_eq!(bits(&dx_f), bits(&dx_u), "{isa:?} dx rows {rows} c {c}");
                assert_eq!(bits(&dg_f), bits(&dg_u), "{isa:?} dgamma");
                assert_eq!(bits(&db_f), bits(&db_u), "{isa:?} dbeta");

                // And both against the scalar references.
                let mut y_ref = vec![0.0; x.len()];
                reference::normalize(&x, k, &mut y_ref, true);
                assert_eq!(bits(&y_fused), bits(&y_ref), "{isa:?} forward vs scalar");
                let (mut dx_r, mut dg_r, mut db_r) =
                    (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
                let grads_r = grads_of(&mut dx_r, &mut dg_r, &mut db_r);
                reference::backward(&x, Some(&y_ref), &dy, saved, grads_r);
                assert_close(&dx_f, &dx_r, 1e-4, "dx vs f64 reference");
                assert_close(&dg_f, &dg_r, 1e-5, "dgamma vs f64 reference");
                assert_close(&db_f, &db_r, 1e-5, "dbeta vs f64 reference");
            }
        }
    }
}
