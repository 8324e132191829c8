//! Batch normalisation over every axis but the last, for tensors viewed as `[rows, channels]`.
//!
//! Training forward: [`batch_stats`] (mean and biased variance, two passes for accuracy), then the
//! caller folds `gamma` and `eps` into a per-channel `scale = gamma / sqrt(var + eps)`
//! ([`fold_scale`]) and applies [`bn_forward`] (`y = (x - mean) * scale + beta`; subtracting the
//! mean first keeps digits that `x * scale + (beta - mean * scale)` would cancel). Backward: [`bn_backward`] (two passes: the
//! per-channel sums `dbeta = sum(dz)`, `dgamma = sum(dz * xhat)`, then
//! `dx = gamma * invstd * (dz - dbeta / M - xhat * dgamma / M)`).
//!
//! These are the *unfused* kernels; [`crate::norm::bn_relu`] has the fused BN+ReLU versions, sharing the
//! same block kernels here with the ReLU mask applied inline, so both paths give bitwise equal
//! results.

use crate::fuse::BnApply;
use crate::runtime::partition::REDUCTION_ROWS;
use crate::runtime::shards::Shards;
use crate::runtime::task_log::ForEachTask;
use crate::simd::{
    accumulate, multiversion, relu_grad_s, relu_s, vectors, vectors_mut, Isa, Simd8, LANES,
};
use rayon::prelude::*;
use std::ops::Range;

/// Reusable workspace for the reductions (per-chunk and per-shard partial sums, per-channel
/// coefficients).
#[derive(Debug, Default)]
pub struct BnScratch {
    /// The row ranges of the reduction chunks and the local shard each belongs to.
    tasks: Vec<(usize, Range<usize>)>,
    partials: Vec<f32>,
    sums: Vec<f64>,
    coef: Vec<f32>,
}

/// Runs `vec(v)` for each of a row's `nv` whole 8-channel vectors and `tail(t)` for each channel
/// `t` past them, up to `c`. The vector bodies index [`vectors`] views of length `nv`, so they
/// carry no bounds checks.
macro_rules! per_channel {
    ($nv:expr, $c:expr, |$v:ident| $vec:block, |$t:ident| $tail:block) => {{
        for $v in 0..$nv $vec
        for $t in $nv * LANES..$c $tail
    }};
}

/// Longest widened row (floats) of the periodic layout; wider ones keep the scalar tail.
const WIDE_MAX: usize = 256;

/// Shortest widened row (floats): four vectors, so that a block's per-channel sums run as four
/// independent accumulator chains instead of one (with 4 or 8 channels a single chain of
/// dependent adds bounded the statistics passes).
const WIDE_MIN: usize = 4 * LANES;

/// Rows per period of the widened layout: `p` consecutive rows hold whole 8-float vectors and at
/// least [`WIDE_MIN`] floats, so a block of whole periods runs as `p`-times-wider rows with tiled
/// coefficients, no scalar tail (4 channels were all scalar) and several independent vectors per
/// row. 1 when `c` is already a multiple of 8 of at least `WIDE_MIN`, or the widened row would
/// exceed [`WIDE_MAX`]. Elementwise results are the same either way; per-channel sums add the `p`
/// lanes of a channel at the end, in lane order.
fn period(c: usize) -> usize {
    let (mut a, mut b) = (c, LANES);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let mut p = LANES / a;
    while c * p < WIDE_MIN {
        p *= 2;
    }
    if p == 1 || c * p > WIDE_MAX {
        1
    } else {
        p
    }
}

/// `v` repeated to fill `out` (whose length is a multiple of `v`'s).
fn tiled<'a>(v: &[f32], out: &'a mut [f32]) -> &'a [f32] {
    for chunk in out.chunks_exact_mut(v.len()) {
        chunk.copy_from_slice(v);
    }
    out
}

/// Splits a block of rows into whole periods and the leftover rows.
fn split_periods(x: &[f32], wide: usize) -> (&[f32], &[f32]) {
    x.split_at(x.len() / wide * wide)
}

/// Adds the `p` widened lanes of each channel (in lane order) to the tail's sums: `acc[ch] =
/// (wide[ch] + wide[c + ch] + ...) + tail[ch]`, for each of the `acc.len() / c` sum vectors.
fn fold_periods(wide: &[f32], tail: &[f32], c: usize, p: usize, acc: &mut [f32]) {
    for (v, (acc, tail)) in acc
        .chunks_exact_mut(c)
        .zip(tail.chunks_exact(c))
        .enumerate()
    {
        let wide = &wide[v * c * p..][..c * p];
        for ch in 0..c {
            let mut s = 0.0f32;
            for r in 0..p {
                s += wide[r * c + ch];
            }
            acc[ch] = s + tail[ch];
        }
    }
}

multiversion! {
    /// `acc[j] = sum over rows of x[row, j]` for one block of rows.
    fn sum_block<V>(x: &[f32], c: usize, acc: &mut [f32]) {
        acc.fill(0.0);
        let nv = c / LANES;
        for row in x.chunks_exact(c) {
            let (xv, acc_v) = (vectors(row, nv), vectors_mut(acc, nv));
            per_channel!(nv, c, |v| {
                accumulate(&mut acc_v[v], V::load(&xv[v]));
            }, |t| {
                acc[t] += row[t];
            });
        }
    }
}

multiversion! {
    /// `acc[j] = sum over rows of (x[row, j] - mean[j])^2` for one block of rows.
    fn sq_dev_block<V>(x: &[f32], c: usize, mean: &[f32], acc: &mut [f32]) {
        acc.fill(0.0);
        let nv = c / LANES;
        let mean_v = vectors(mean, nv);
        for row in x.chunks_exact(c) {
            let (xv, acc_v) = (vectors(row, nv), vectors_mut(acc, nv));
            per_channel!(nv, c, |v| {
                let d = V::load(&xv[v]) - V::load(&mean_v[v]);
                accumulate(&mut acc_v[v], d * d);
            }, |t| {
                let d = row[t] - mean[t];
                acc[t] += d * d;
            });
        }
    }
}

#[inline(always)]
fn normalize_block_impl<V: Simd8, const RELU: bool>(x: &[f32], k: BnApply, y: &mut [f32]) {
    let (mean, scale, beta) = (k.mean, k.scale, k.beta);
    let c = scale.len();
    let nv = c / LANES;
    let (mean_v, scale_v, beta_v) = (vectors(mean, nv), vectors(scale, nv), vectors(beta, nv));
    for (row, out) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        let (xv, yv) = (vectors(row, nv), vectors_mut(out, nv));
        per_channel!(
            nv,
            c,
            |v| {
                let z = (V::load(&xv[v]) - V::load(&mean_v[v])) * V::load(&scale_v[v])
                    + V::load(&beta_v[v]);
                (if RELU { z.relu() } else { z }).store(&mut yv[v]);
            },
            |t| {
                let v = (row[t] - mean[t]) * scale[t] + beta[t];
                out[t] = if RELU { relu_s(v) } else { v };
            }
        );
    }
}

multiversion! {
    /// `y = (x - mean) * scale + beta` per channel, optionally followed by ReLU, for one block.
    fn normalize_block<V>(x: &[f32], k: BnApply, y: &mut [f32], relu: bool) {
        if relu {
            normalize_block_impl::<V, true>(x, k, y)
        } else {
            normalize_block_impl::<V, false>(x, k, y)
        }
    }
}

/// The gradient reaching the BN output: `dy`, or with the fused ReLU (`MASK`) `dy` where the
/// forward output was positive, else 0. The mask is recomputed from `x` with the forward pass's
/// exact operations (`(x - mean) * scale + beta > 0`), so it matches `y > 0` bit for bit without
/// reading `y`: one memory stream less per pass.
#[inline(always)]
fn grad_v<V: Simd8, const MASK: bool>(d: V, k: &CoefV, dy: &[f32; LANES], v: usize) -> V {
    let g = V::load(dy);
    if MASK {
        let z = d * V::load(&k.scale[v]) + V::load(&k.beta[v]);
        z.where_positive(g)
    } else {
        g
    }
}

#[inline(always)]
fn grad_s<const MASK: bool>(d: f32, k: &Coef, dy: &[f32], t: usize) -> f32 {
    // `relu_grad_s` on the recomputed output: NaN and non-positive outputs pass no gradient.
    if MASK {
        relu_grad_s(d * k.scale[t] + k.beta[t], dy[t])
    } else {
        dy[t]
    }
}

/// Per-channel coefficients of the backward passes, `c` floats each: the forward pass's `mean`,
/// `invstd`, `scale = gamma * invstd` and `beta`, then `a = dbeta / M` and `b = dgamma / M`
/// (empty during the sums pass).
struct Coef<'a> {
    mean: &'a [f32],
    invstd: &'a [f32],
    scale: &'a [f32],
    beta: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
}

/// [`Coef`]'s whole vectors: the first `c / 8` of each field.
struct CoefV<'a> {
    mean: &'a [[f32; LANES]],
    invstd: &'a [[f32; LANES]],
    scale: &'a [[f32; LANES]],
    beta: &'a [[f32; LANES]],
    a: &'a [[f32; LANES]],
    b: &'a [[f32; LANES]],
}

impl<'a> Coef<'a> {
    /// The whole-vector views of the fields (`a` and `b` empty during the sums pass).
    fn vectors(&self, nv: usize) -> CoefV<'a> {
        let nab = if self.a.is_empty() { 0 } else { nv };
        CoefV {
            mean: vectors(self.mean, nv),
            invstd: vectors(self.invstd, nv),
            scale: vectors(self.scale, nv),
            beta: vectors(self.beta, nv),
            a: vectors(self.a, nab),
            b: vectors(self.b, nab),
        }
    }

    /// Splits `[mean, invstd, scale, beta, (a, b)]`, `c` floats each.
    fn split(coef: &'a [f32], c: usize) -> Coef<'a> {
        let (mean, rest) = coef.split_at(c);
        let (invstd, rest) = rest.split_at(c);
        let (scale, rest) = rest.split_at(c);
        let (beta, rest) = rest.split_at(c);
        let (a, b) = rest.split_at(rest.len() / 2);
        Coef {
            mean,
            invstd,
            scale,
            beta,
            a,
            b,
        }
    }
}

#[inline(always)]
fn backward_sums_impl<V: Simd8, const MASK: bool>(
    x: &[f32],
    dy: &[f32],
    k: &Coef,
    acc: &mut [f32],
) {
    let c = k.mean.len();
    let nv = c / LANES;
    let kv = k.vectors(nv);
    // Lengths the optimiser can see: the vector loops below then carry no bounds checks.
    assert!(
        kv.mean.len() == nv && kv.invstd.len() == nv && kv.scale.len() == nv && kv.beta.len() == nv
    );
    acc.fill(0.0);
    let (sum_dy, sum_dy_xhat) = acc.split_at_mut(c);
    for (xr, dr) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
        let (xv, dv) = (vectors(xr, nv), vectors(dr, nv));
        let (sum_dy_v, sum_dy_xhat_v) = (vectors_mut(sum_dy, nv), vectors_mut(sum_dy_xhat, nv));
        per_channel!(
            nv,
            c,
            |v| {
                let d = V::load(&xv[v]) - V::load(&kv.mean[v]);
                let g = grad_v::<V, MASK>(d, &kv, &dv[v], v);
                let xhat = d * V::load(&kv.invstd[v]);
                accumulate(&mut sum_dy_v[v], g);
                accumulate(&mut sum_dy_xhat_v[v], g * xhat);
            },
            |t| {
                let d = xr[t] - k.mean[t];
                let g = grad_s::<MASK>(d, k, dr, t);
                let xhat = d * k.invstd[t];
                sum_dy[t] += g;
                sum_dy_xhat[t] += g * xhat;
            }
        );
    }
}

multiversion! {
    /// Per-channel `[sum(g), sum(g * xhat)]` (into `acc`, `2c` floats) for one block of rows,
    /// where `g` is `dy`, masked by the fused ReLU when `relu`; `coef` holds
    /// `[mean, invstd, scale, beta]`.
    pub(crate) fn backward_sums_block<V>(x: &[f32], dy: &[f32], relu: bool, coef: &[f32], acc: &mut [f32]) {
        let k = Coef::split(coef, coef.len() / 4);
        if relu {
            backward_sums_impl::<V, true>(x, dy, &k, acc)
        } else {
            backward_sums_impl::<V, false>(x, dy, &k, acc)
        }
    }
}

#[inline(always)]
fn backward_input_impl<V: Simd8, const MASK: bool>(
    x: &[f32],
    dy: &[f32],
    k: &Coef,
    dx: &mut [f32],
) {
    let c = k.mean.len();
    let nv = c / LANES;
    let kv = k.vectors(nv);
    // Lengths the optimiser can see: the vector loops below then carry no bounds checks.
    assert!(
        kv.mean.len() == nv
            && kv.invstd.len() == nv
            && kv.scale.len() == nv
            && kv.beta.len() == nv
            && kv.a.len() == nv
            && kv.b.len() == nv
    );
    for ((xr, dr), out) in x
        .chunks_exact(c)
        .zip(dy.chunks_exact(c))
        .zip(dx.chunks_exact_mut(c))
    {
        let (xv, dv, ov) = (vectors(xr, nv), vectors(dr, nv), vectors_mut(out, nv));
        per_channel!(
            nv,
            c,
            |v| {
                let d = V::load(&xv[v]) - V::load(&kv.mean[v]);
                let g = grad_v::<V, MASK>(d, &kv, &dv[v], v);
                let xhat = d * V::load(&kv.invstd[v]);
                let z = (g - V::load(&kv.a[v]) - xhat * V::load(&kv.b[v])) * V::load(&kv.scale[v]);
                z.store(&mut ov[v]);
            },
            |t| {
                let d = xr[t] - k.mean[t];
                let g = grad_s::<MASK>(d, k, dr, t);
                let xhat = d * k.invstd[t];
                out[t] = (g - k.a[t] - xhat * k.b[t]) * k.scale[t];
            }
        );
    }
}

multiversion! {
    /// `dx = gamma * invstd * (g - dbeta/M - xhat * dgamma/M)` for one block of rows; `coef` holds
    /// `[mean, invstd, gamma*invstd, beta, dbeta/M, dgamma/M]`, `c` floats each.
    pub(crate) fn backward_input_block<V>(x: &[f32], dy: &[f32], relu: bool, coef: &[f32], dx: &mut [f32]) {
        let k = Coef::split(coef, coef.len() / 6);
        if relu {
            backward_input_impl::<V, true>(x, dy, &k, dx)
        } else {
            backward_input_impl::<V, false>(x, dy, &k, dx)
        }
    }
}

/// Rows per f32 run of the reductions: a block's sums are formed in f32 over runs this long,
/// then added in f64, so no f32 accumulator adds more than this many values.
const F32_RUN: usize = 64;

/// `acc = sum over runs of rows`: `block(first_row, rows, run_acc)` sums `rows` rows from
/// `first_row` in f32 into `run_acc` (`acc.len()` floats, overwritten); the runs are added in
/// f64 and rounded once. Sums wider than `2 * WIDE_MAX` floats (over 256 channels) run as one.
fn in_runs(rows: usize, acc: &mut [f32], block: impl Fn(usize, usize, &mut [f32])) {
    let width = acc.len();
    if rows <= F32_RUN || width > 2 * WIDE_MAX {
        return block(0, rows, acc);
    }
    let mut run = [0.0f32; 2 * WIDE_MAX];
    let mut total = [0.0f64; 2 * WIDE_MAX];
    for first in (0..rows).step_by(F32_RUN) {
        block(first, F32_RUN.min(rows - first), &mut run[..width]);
        for (t, r) in total.iter_mut().zip(&run[..width]) {
            *t += *r as f64;
        }
    }
    for (a, t) in acc.iter_mut().zip(&total) {
        *a = *t as f32;
    }
}

/// [`sum_block`] in the widened layout ([`period`]), in f32 runs ([`in_runs`]).
fn sum_rows(isa: Isa, x: &[f32], c: usize, acc: &mut [f32]) {
    let p = period(c);
    let cw = c * p;
    if p == 1 {
        return in_runs(x.len() / c, acc, |first, n, acc| {
            sum_block(isa, &x[first * c..][..n * c], c, acc)
        });
    }
    let (main, rest) = split_periods(x, cw);
    let (mut wide, mut tail) = ([0.0; WIDE_MAX], [0.0; WIDE_MAX]);
    in_runs(main.len() / cw, &mut wide[..cw], |first, n, acc| {
        sum_block(isa, &main[first * cw..][..n * cw], cw, acc)
    });
    sum_block(isa, rest, c, &mut tail[..c]);
    fold_periods(&wide, &tail, c, p, acc);
}

/// [`sq_dev_block`] in the widened layout ([`period`]), in f32 runs ([`in_runs`]).
fn sq_dev_rows(isa: Isa, x: &[f32], c: usize, mean: &[f32], acc: &mut [f32]) {
    let p = period(c);
    let cw = c * p;
    if p == 1 {
        return in_runs(x.len() / c, acc, |first, n, acc| {
            sq_dev_block(isa, &x[first * c..][..n * c], c, mean, acc)
        });
    }
    let (main, rest) = split_periods(x, cw);
    let (mut wide, mut tail, mut mean_w) = ([0.0; WIDE_MAX], [0.0; WIDE_MAX], [0.0; WIDE_MAX]);
    let mean_w = tiled(mean, &mut mean_w[..cw]);
    in_runs(main.len() / cw, &mut wide[..cw], |first, n, acc| {
        sq_dev_block(isa, &main[first * cw..][..n * cw], cw, mean_w, acc)
    });
    sq_dev_block(isa, rest, c, mean, &mut tail[..c]);
    fold_periods(&wide, &tail, c, p, acc);
}

/// [`normalize_block`] in the widened layout ([`period`]).
fn normalize_rows(isa: Isa, x: &[f32], k: BnApply, y: &mut [f32], relu: bool) {
    WideApply::new(isa, k, relu).run(x, y);
}

/// A batch-norm (+ReLU) map with its coefficients tiled once for the widened layout
/// ([`period`]), for applying it to many short runs of whole rows: a convolution bordering its
/// input applies the preceding batch norm row by row of the image ([`crate::conv`]'s prologue).
/// Every element gets exactly [`normalize`]'s arithmetic, so the results are bitwise equal.
pub(crate) struct WideApply<'a> {
    isa: Isa,
    narrow: BnApply<'a>,
    mean: [f32; WIDE_MAX],
    scale: [f32; WIDE_MAX],
    beta: [f32; WIDE_MAX],
    /// Floats per widened row (`c * period(c)`), or 0 when not widened.
    cw: usize,
    relu: bool,
}

impl<'a> WideApply<'a> {
    pub(crate) fn new(isa: Isa, k: BnApply<'a>, relu: bool) -> Self {
        let c = k.scale.len();
        let p = period(c);
        let mut wide = WideApply {
            isa,
            narrow: k,
            mean: [0.0; WIDE_MAX],
            scale: [0.0; WIDE_MAX],
            beta: [0.0; WIDE_MAX],
            cw: if p == 1 { 0 } else { c * p },
            relu,
        };
        if p > 1 {
            let cw = c * p;
            tiled(k.mean, &mut wide.mean[..cw]);
            tiled(k.scale, &mut wide.scale[..cw]);
            tiled(k.beta, &mut wide.beta[..cw]);
        }
        wide
    }

    /// `y = relu?((x - mean) * scale + beta)` over whole rows (`x.len()` a multiple of `c`).
    pub(crate) fn run(&self, x: &[f32], y: &mut [f32]) {
        if self.cw == 0 {
            return normalize_block(self.isa, x, self.narrow, y, self.relu);
        }
        let cw = self.cw;
        let (main, rest) = split_periods(x, cw);
        let (y_main, y_rest) = y.split_at_mut(main.len());
        let wide = BnApply {
            mean: &self.mean[..cw],
            scale: &self.scale[..cw],
            beta: &self.beta[..cw],
        };
        normalize_block(self.isa, main, wide, y_main, self.relu);
        normalize_block(self.isa, rest, self.narrow, y_rest, self.relu);
    }
}

/// [`backward_sums_block`] in the widened layout ([`period`]), in f32 runs ([`in_runs`]).
fn backward_sums_rows(isa: Isa, x: &[f32], dy: &[f32], relu: bool, coef: &[f32], acc: &mut [f32]) {
    let c = coef.len() / 4;
    let p = period(c);
    if p == 1 {
        return in_runs(x.len() / c, acc, |first, n, acc| {
            let r = first * c..(first + n) * c;
            backward_sums_block(isa, &x[r.clone()], &dy[r], relu, coef, acc)
        });
    }
    let cw = c * p;
    let (x_main, x_rest) = split_periods(x, cw);
    let (dy_main, dy_rest) = dy.split_at(x_main.len());
    let mut coef_w = [0.0; 4 * WIDE_MAX];
    for (v, out) in coef.chunks_exact(c).zip(coef_w.chunks_exact_mut(cw)) {
        tiled(v, out);
    }
    let coef_w = &coef_w[..4 * cw];
    let (mut wide, mut tail) = ([0.0; 2 * WIDE_MAX], [0.0; 2 * WIDE_MAX]);
    in_runs(x_main.len() / cw, &mut wide[..2 * cw], |first, n, acc| {
        let r = first * cw..(first + n) * cw;
        backward_sums_block(isa, &x_main[r.clone()], &dy_main[r], relu, coef_w, acc)
    });
    backward_sums_block(isa, x_rest, dy_rest, relu, coef, &mut tail[..2 * c]);
    fold_periods(&wide, &tail, c, p, acc);
}

/// [`backward_input_block`] in the widened layout ([`period`]).
fn backward_input_rows(isa: Isa, x: &[f32], dy: &[f32], relu: bool, coef: &[f32], dx: &mut [f32]) {
    let c = coef.len() / 6;
    let p = period(c);
    if p == 1 {
        return backward_input_block(isa, x, dy, relu, coef, dx);
    }
    let cw = c * p;
    let (x_main, x_rest) = split_periods(x, cw);
    let n = x_main.len();
    let (dx_main, dx_rest) = dx.split_at_mut(n);
    let mut coef_w = [0.0; 6 * WIDE_MAX];
    for (v, out) in coef.chunks_exact(c).zip(coef_w.chunks_exact_mut(cw)) {
        tiled(v, out);
    }
    backward_input_block(isa, x_main, &dy[..n], relu, &coef_w[..6 * cw], dx_main);
    backward_input_block(isa, x_rest, &dy[n..], relu, coef, dx_rest);
}

fn check_rows(x: &[f32], c: usize, what: &str) -> usize {
    assert!(c > 0, "{what}: zero channels");
    assert_eq!(
        x.len() % c,
        0,
        "{what}: {} floats is not a whole number of {c}-channel rows",
        x.len()
    );
    x.len() / c
}

/// Rows per reduction chunk: [`REDUCTION_ROWS`] widened rows ([`period`]), so that every
/// accumulator lane sums at most that many values in f32 (the partials are added in f64) and a
/// chunk of a few-channel tensor is still thousands of floats, worth a task.
fn reduction_rows(c: usize) -> usize {
    REDUCTION_ROWS * period(c)
}

/// Chunk `i` of a `[rows, c]` tensor: rows `[i * r, (i + 1) * r)` with `r =`
/// [`reduction_rows`]`(c)` (for the element-wise passes, whose chunks only share out work).
fn chunk_of(x: &[f32], c: usize, i: usize) -> &[f32] {
    let task = reduction_rows(c) * c;
    let start = i * task;
    &x[start..(start + task).min(x.len())]
}

/// Reductions whose whole input is at most this many floats run on the calling thread (the late
/// layers' few rows): the sums are the same, without the cost of sharing out tiny tasks.
const SERIAL_FLOATS: usize = 1 << 14;

/// Per-channel sums over the rows of a batch of `rows` rows (`rows / shards.span.local_images()`
/// per image), `width` sums per row (`c` or `2c`), in the fixed order of
/// [`crate::runtime::shards`]: each local shard's rows are cut into chunks of
/// [`reduction_rows`]`(c)` from the shard's first row; `block(rows, partial)` sums one chunk in
/// f32; a shard's chunk partials are added in chunk order in f64; the shards by the shard tree,
/// across processes too. Leaves the whole batch's sums in `scratch.sums[..width]`. The same
/// bitwise on any number of threads or processes.
fn reduce_rows(
    rows: usize,
    c: usize,
    width: usize,
    shards: Shards<'_>,
    scratch: &mut BnScratch,
    block: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let span = shards.span;
    let images = span.local_images();
    assert!(
        images > 0 && rows.is_multiple_of(images),
        "bn reduction: {rows} rows are not a whole number of rows for each of {images} images"
    );
    let BnScratch {
        tasks,
        partials,
        sums,
        ..
    } = scratch;
    tasks.clear();
    span.tasks(rows / images, reduction_rows(c), tasks);
    partials.clear();
    partials.resize(tasks.len() * width, 0.0);
    if rows * c <= SERIAL_FLOATS {
        for (part, (_, r)) in partials.chunks_exact_mut(width).zip(tasks.iter()) {
            block(r.clone(), part);
        }
    } else {
        partials
            .par_chunks_mut(width)
            .zip(tasks.par_iter())
            .for_each_task_in_scope(|(part, (_, r))| block(r.clone(), part));
    }
    sums.clear();
    sums.resize(span.len() * width, 0.0);
    for (part, (s, _)) in partials.chunks_exact(width).zip(tasks.iter()) {
        for (sum, p) in sums[s * width..][..width].iter_mut().zip(part) {
            *sum += *p as f64;
        }
    }
    shards.finish_f64(sums, width);
}

/// Rows of the whole batch, over every process, of a local `[rows, c]` tensor.
fn global_rows(rows: usize, shards: Shards<'_>) -> usize {
    rows / shards.span.local_images() * shards.span.global_images()
}

/// Per-channel batch mean and biased variance (what `tf.nn.moments` gives) of `x` as `[rows, c]`,
/// over the whole batch that `shards` describes (this process's rows are `x`). Two passes
/// (mean, then squared deviations) so a large mean cannot cancel the variance away.
pub fn batch_stats(
    isa: Isa,
    x: &[f32],
    c: usize,
    shards: Shards<'_>,
    mean: &mut [f32],
    var: &mut [f32],
    scratch: &mut BnScratch,
) {
    let rows = check_rows(x, c, "batch_stats");
    assert!(rows > 0, "batch_stats: empty batch");
    assert!(
        mean.len() == c && var.len() == c,
        "batch_stats: statistics size"
    );
    let total = global_rows(rows, shards) as f64;
    reduce_rows(rows, c, c, shards, scratch, |r, part| {
        sum_rows(isa, &x[r.start * c..r.end * c], c, part)
    });
    for (m, s) in mean.iter_mut().zip(scratch.sums.iter()) {
        *m = (s / total) as f32;
    }
    let mean: &[f32] = mean;
    reduce_rows(rows, c, c, shards, scratch, |r, part| {
        sq_dev_rows(isa, &x[r.start * c..r.end * c], c, mean, part)
    });
    for (v, s) in var.iter_mut().zip(scratch.sums.iter()) {
        *v = (s / total) as f32;
    }
}

/// Elementwise per-channel `y = (x - mean) * scale + beta` (then ReLU when `relu`), in parallel.
pub(crate) fn normalize(isa: Isa, x: &[f32], k: BnApply, y: &mut [f32], relu: bool) {
    let c = k.scale.len();
    check_rows(x, c, "bn apply");
    assert!(
        k.mean.len() == c && k.beta.len() == c && y.len() == x.len(),
        "bn apply: sizes"
    );
    let task = reduction_rows(c) * c;
    x.par_chunks(task)
        .zip(y.par_chunks_mut(task))
        .for_each_task_in_scope(|(x, y)| normalize_rows(isa, x, k, y, relu));
}

/// [`bn_forward`] (or, with `relu`, [`bn_relu_forward`](crate::norm::bn_relu::bn_relu_forward))
/// on the calling thread alone, the same bits: for work that already runs inside a pool task and
/// must not hand out nested tasks (the evaluation's per-task network).
pub fn bn_apply_serial(isa: Isa, x: &[f32], k: BnApply, y: &mut [f32], relu: bool) {
    let c = k.scale.len();
    check_rows(x, c, "bn apply");
    assert!(
        k.mean.len() == c && k.beta.len() == c && y.len() == x.len(),
        "bn apply: sizes"
    );
    normalize_rows(isa, x, k, y, relu);
}

/// Batch-norm forward: `y = (x - mean) * scale + beta`, on `isa`'s build.
pub fn bn_forward(isa: Isa, x: &[f32], k: BnApply, y: &mut [f32]) {
    normalize(isa, x, k, y, false);
}

/// The per-channel statistics a backward pass needs from its forward pass.
#[derive(Clone, Copy, Debug)]
pub struct BnSaved<'a> {
    pub mean: &'a [f32],
    /// `1 / sqrt(batch_var + eps)`.
    pub invstd: &'a [f32],
    pub gamma: &'a [f32],
    /// The forward pass's shift: the fused BN+ReLU backward recomputes its ReLU mask with it.
    pub beta: &'a [f32],
}

/// What a batch-norm backward pass writes: the gradient of its input, and of `gamma` and `beta`
/// (per channel, summed over the batch).
#[derive(Debug)]
pub struct BnGrads<'a> {
    pub dx: &'a mut [f32],
    pub dgamma: &'a mut [f32],
    pub dbeta: &'a mut [f32],
}

/// Shared backward: `g` is `dy`, or with `RELU` (the fused path) `dy` masked where the forward
/// output was not positive, the mask recomputed from `x`. The per-channel sums run over the whole
/// batch of `shards`.
pub(crate) fn backward<const RELU: bool>(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    saved: BnSaved,
    shards: Shards<'_>,
    grads: BnGrads,
    scratch: &mut BnScratch,
) {
    let relu = RELU;
    let BnGrads { dx, dgamma, dbeta } = grads;
    let c = saved.mean.len();
    let rows = check_rows(x, c, "bn backward");
    assert!(rows > 0, "bn backward: empty batch");
    assert!(
        dy.len() == x.len() && dx.len() == x.len(),
        "bn backward: sizes"
    );
    assert!(
        saved.invstd.len() == c
            && saved.gamma.len() == c
            && saved.beta.len() == c
            && dgamma.len() == c
            && dbeta.len() == c,
        "bn backward: per-channel sizes"
    );
    // [mean, invstd, scale, beta]; `scale = gamma * invstd` exactly as `fold_scale` computes it,
    // so the recomputed ReLU mask matches the forward output bit for bit.
    let mut coef = std::mem::take(&mut scratch.coef);
    coef.clear();
    coef.extend_from_slice(saved.mean);
    coef.extend_from_slice(saved.invstd);
    coef.extend(saved.gamma.iter().zip(saved.invstd).map(|(g, s)| g * s));
    coef.extend_from_slice(saved.beta);
    let head: &[f32] = &coef;
    reduce_rows(rows, c, 2 * c, shards, scratch, |r, part| {
        let r = r.start * c..r.end * c;
        backward_sums_rows(isa, &x[r.clone()], &dy[r], relu, head, part)
    });
    let sums = &scratch.sums[..2 * c];
    for ch in 0..c {
        dbeta[ch] = sums[ch] as f32;
        dgamma[ch] = sums[c + ch] as f32;
    }
    let total = global_rows(rows, shards) as f64;
    coef.extend(sums[..c].iter().map(|s| (s / total) as f32));
    coef.extend(sums[c..].iter().map(|s| (s / total) as f32));
    let coef_ref: &[f32] = &coef;
    let task = reduction_rows(c) * c;
    dx.par_chunks_mut(task)
        .enumerate()
        .for_each_task_in_scope(|(i, dx)| {
            backward_input_rows(
                isa,
                chunk_of(x, c, i),
                chunk_of(dy, c, i),
                relu,
                coef_ref,
                dx,
            )
        });
    scratch.coef = coef;
}

/// Batch-norm backward (training mode, batch statistics) from `dz`, the gradient of the BN output:
/// fills `dx`, `dgamma = sum(dz * xhat)` and `dbeta = sum(dz)`, the sums over the whole batch of
/// `shards`.
pub fn bn_backward(
    isa: Isa,
    x: &[f32],
    dz: &[f32],
    saved: BnSaved,
    shards: Shards<'_>,
    grads: BnGrads,
    scratch: &mut BnScratch,
) {
    backward::<false>(isa, x, dz, saved, shards, grads, scratch);
}

/// `invstd = 1 / sqrt(var + eps)` and `scale = gamma * invstd`, per channel.
pub fn fold_scale(gamma: &[f32], var: &[f32], eps: f32, invstd: &mut [f32], scale: &mut [f32]) {
    for ch in 0..gamma.len() {
        invstd[ch] = 1.0 / (var[ch] + eps).sqrt();
        scale[ch] = gamma[ch] * invstd[ch];
    }
}

/// Scalar references: straight loops, statistics and sums in f64.
pub mod reference {
    use crate::simd::{relu_grad_s, relu_s};

    /// Mean and biased variance per channel, in f64.
    pub fn batch_stats(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
        let rows = x.len() / c;
        let mut mean = vec![0.0f64; c];
        for row in x.chunks_exact(c) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let mut var = vec![0.0f64; c];
        for row in x.chunks_exact(c) {
            for ch in 0..c {
                var[ch] += (row[ch] as f64 - mean[ch]).powi(2);
            }
        }
        (
            mean.iter().map(|m| *m as f32).collect(),
            var.iter().map(|v| (*v / rows as f64) as f32).collect(),
        )
    }

    /// `y = (x - mean) * scale + beta` (then ReLU), the same f32 operations as the SIMD kernel.
    pub fn normalize(x: &[f32], k: super::BnApply, y: &mut [f32], relu: bool) {
        let (mean, scale, beta) = (k.mean, k.scale, k.beta);
        let c = scale.len();
        for (row, out) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            for ch in 0..c {
                let v = (row[ch] - mean[ch]) * scale[ch] + beta[ch];
                out[ch] = if relu { relu_s(v) } else { v };
            }
        }
    }

    /// Training-mode backward in f64; `relu_out` masks `dy` as in the fused path. Uses `saved`'s
    /// mean, `invstd` and `gamma`.
    pub fn backward(
        x: &[f32],
        relu_out: Option<&[f32]>,
        dy: &[f32],
        saved: super::BnSaved,
        grads: super::BnGrads,
    ) {
        let (mean, invstd, gamma) = (saved.mean, saved.invstd, saved.gamma);
        let super::BnGrads { dx, dgamma, dbeta } = grads;
        let c = mean.len();
        let rows = x.len() / c;
        let g = |i: usize| match relu_out {
            Some(y) => relu_grad_s(y[i], dy[i]) as f64,
            None => dy[i] as f64,
        };
        let xhat = |i: usize| (x[i] as f64 - mean[i % c] as f64) * invstd[i % c] as f64;
        let (mut sum_g, mut sum_gx) = (vec![0.0f64; c], vec![0.0f64; c]);
        for i in 0..x.len() {
            sum_g[i % c] += g(i);
            sum_gx[i % c] += g(i) * xhat(i);
        }
        for (i, dxv) in dx.iter_mut().enumerate() {
            let ch = i % c;
            let m = rows as f64;
            *dxv = (gamma[ch] as f64
                * invstd[ch] as f64
                * (g(i) - sum_g[ch] / m - xhat(i) * sum_gx[ch] / m)) as f32;
        }
        for ch in 0..c {
            dbeta[ch] = sum_g[ch] as f32;
            dgamma[ch] = sum_gx[ch] as f32;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::shards::ShardSpan;
    use crate::testing::{on_threads, Pseudo};

    /// Deterministic values with a channel-dependent offset, so means are not near zero.
    pub(crate) fn sample(rows: usize, c: usize, seed: u32) -> Vec<f32> {
        let mut values = Pseudo::new(seed);
        (0..rows * c)
            .map(|i| values.next_value() * 3.0 + (i % c) as f32 * 0.25)
            .collect()
    }

    pub(crate) fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= rel * scale + 1e-6,
                "{what}[{i}]: {g} vs {w} (scale {scale})"
            );
        }
    }

    /// Shapes with channel tails (c % 8 != 0) and row counts across chunk boundaries.
    pub(crate) const SHAPES: &[(usize, usize)] = &[
        (1, 1),
        (3, 5),
        (7, 8),
        (301, 4),
        (50, 20),
        (300, 12),
        (513, 19),
        (64, 76),
        (2, 100),
    ];

    #[test]
    fn stats_match_the_f64_reference() {
        for isa in crate::testing::tested_paths() {
            for &(rows, c) in SHAPES {
                let x = sample(rows, c, 3);
                let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
                let span = ShardSpan::whole(rows, 1);
                let shards = Shards::local(&span);
                batch_stats(
                    isa,
                    &x,
                    c,
                    shards,
                    &mut mean,
                    &mut var,
                    &mut BnScratch::default(),
                );
                let (m_ref, v_ref) = reference::batch_stats(&x, c);
                assert_close(&mean, &m_ref, 1e-6, "mean");
                assert_close(&var, &v_ref, 1e-5, "var");
            }
        }
    }

    #[test]
    fn forward_simd_matches_scalar_bitwise_for_every_isa() {
        for isa in crate::testing::tested_paths() {
            for &(rows, c) in SHAPES {
                let x = sample(rows, c, 5);
                let mean = sample(1, c, 6);
                let scale = sample(1, c, 7);
                let beta = sample(1, c, 8);
                let k = BnApply {
                    mean: &mean,
                    scale: &scale,
                    beta: &beta,
                };
                let mut y = vec![0.0; x.len()];
                let mut y_ref = vec![0.0; x.len()];
                bn_forward(isa, &x, k, &mut y);
                reference::normalize(&x, k, &mut y_ref, false);
                assert_eq!(y, y_ref, "{isa:?} rows {rows} c {c}");
                // The serial entry, with and without ReLU.
                for relu in [false, true] {
                    let mut serial = vec![f32::NAN; x.len()];
                    bn_apply_serial(isa, &x, k, &mut serial, relu);
                    reference::normalize(&x, k, &mut y_ref, relu);
                    assert_eq!(
                        serial, y_ref,
                        "{isa:?} rows {rows} c {c} serial relu {relu}"
                    );
                }
            }
        }
    }

    #[test]
    fn backward_matches_the_f64_reference() {
        for isa in crate::testing::tested_paths() {
            for &(rows, c) in SHAPES {
                let x = sample(rows, c, 11);
                let dz = sample(rows, c, 12);
                let gamma = sample(1, c, 13);
                let (mean, var) = reference::batch_stats(&x, c);
                let invstd: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-3).sqrt()).collect();
                let saved = BnSaved {
                    mean: &mean,
                    invstd: &invstd,
                    gamma: &gamma,
                    beta: &gamma,
                };
                let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
                let span = ShardSpan::whole(rows, 1);
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                let mut s = BnScratch::default();
                bn_backward(isa, &x, &dz, saved, Shards::local(&span), grads, &mut s);
                let (mut dx_r, mut dg_r, mut db_r) =
                    (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
                let grads_r = BnGrads {
                    dx: &mut dx_r,
                    dgamma: &mut dg_r,
                    dbeta: &mut db_r,
                };
                reference::backward(&x, None, &dz, saved, grads_r);
                assert_close(&dx, &dx_r, 1e-4, "dx");
                assert_close(&dg, &dg_r, 1e-5, "dgamma");
                assert_close(&db, &db_r, 1e-5, "dbeta");
            }
        }
    }

    /// Mean, variance, dx, dgamma and dbeta as bits.
    type Bits = (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>);

    /// Batch statistics then backward over `x` (this process's rows) and `shards`, as bits.
    fn stats_and_backward(x: &[f32], dz: &[f32], c: usize, shards: Shards<'_>) -> Bits {
        stats_and_backward_on(crate::simd::active_isa(), x, dz, c, shards)
    }

    /// [`stats_and_backward`] on the given SIMD path.
    fn stats_and_backward_on(
        isa: Isa,
        x: &[f32],
        dz: &[f32],
        c: usize,
        shards: Shards<'_>,
    ) -> Bits {
        let mut s = BnScratch::default();
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        batch_stats(isa, x, c, shards, &mut mean, &mut var, &mut s);
        let invstd: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-3).sqrt()).collect();
        let gamma = vec![1.5; c];
        let saved = BnSaved {
            mean: &mean,
            invstd: &invstd,
            gamma: &gamma,
            beta: &gamma,
        };
        let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        let grads = BnGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        };
        bn_backward(isa, x, dz, saved, shards, grads, &mut s);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        (bits(&mean), bits(&var), bits(&dx), bits(&dg), bits(&db))
    }

    /// Processes holding 1/2 and 1/4 of the shards (threads standing in for processes) get the
    /// single process's statistics and gradient sums bitwise, and their rows of `dx`.
    #[test]
    fn reductions_split_over_processes_equal_one_process() {
        let (images, per_image, c, shards) = (64, 49, 20, 8);
        let rows = images * per_image;
        let x = sample(rows, c, 41);
        let dz = sample(rows, c, 42);
        let whole = ShardSpan::whole(images, shards);
        let one = stats_and_backward(&x, &dz, c, Shards::local(&whole));
        for ranks in [2, 4] {
            let got = crate::testing::as_processes(ranks, |rank, across| {
                let span = ShardSpan::new(images, shards, rank * shards / ranks, shards / ranks);
                let part = rank * rows / ranks * c..(rank + 1) * rows / ranks * c;
                let shards = Shards {
                    span: &span,
                    across,
                };
                stats_and_backward(&x[part.clone()], &dz[part], c, shards)
            });
            let mut dx = Vec::new();
            for (rank, bits) in got.iter().enumerate() {
                assert_eq!(bits.0, one.0, "mean, {ranks} processes, rank {rank}");
                assert_eq!(bits.1, one.1, "var, {ranks} processes, rank {rank}");
                assert_eq!(bits.3, one.3, "dgamma, {ranks} processes, rank {rank}");
                assert_eq!(bits.4, one.4, "dbeta, {ranks} processes, rank {rank}");
                dx.extend_from_slice(&bits.2);
            }
            assert_eq!(dx, one.2, "dx, {ranks} processes");
        }
    }

    /// Statistics and the backward pass (whose per-channel sums are reductions, unlike the
    /// element-wise forward pass) give the portable path's bits on every path this CPU runs.
    #[test]
    fn stats_and_backward_are_bitwise_the_same_on_every_isa() {
        for &(rows, c) in SHAPES {
            let x = sample(rows, c, 41);
            let dz = sample(rows, c, 42);
            let span = ShardSpan::whole(rows, 1);
            let run = |isa: Isa| stats_and_backward_on(isa, &x, &dz, c, Shards::local(&span));
            let want = run(Isa::Portable);
            for isa in crate::testing::tested_paths() {
                assert!(run(isa) == want, "{isa:?} rows {rows} c {c}");
            }
        }
    }

    #[test]
    fn reductions_do_not_depend_on_the_thread_count() {
        let (rows, c) = (64 * 196, 12);
        let x = sample(rows, c, 21);
        let dz = sample(rows, c, 22);
        let span = ShardSpan::whole(64, 8);
        let run = |threads: usize| {
            on_threads(threads, || {
                stats_and_backward(&x, &dz, c, Shards::local(&span))
            })
        };
        assert_eq!(run(1), run(3));
    }
}
