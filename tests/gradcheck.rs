//! Finite-difference gradient checks of every differentiable piece of the engine: `Conv2d` (dx, dw,
//! db), `BatchNorm` with and without ReLU (dx, dgamma, dbeta; fused and unfused), `Dense` (dx, dw,
//! db) and `sigmoid_cross_entropy` (dlogits).
//!
//! # Method
//! For a layer with output `y` the scalar objective is `L = sum(y * r)` for a fixed random `r`, so
//! the upstream gradient handed to `backward` is `dy = r`. The analytic gradients come from one
//! `Mode::Train` forward followed by `backward`; then every checked element `v` (of `x` or of a
//! trainable parameter) is moved to `v + h` and `v - h` in f32, the engine's own f32 forward is
//! re-run, `L` is accumulated in f64, and `fd = (L+ - L-) / ((v + h) - (v - h))` (the denominator
//! is the step actually taken after f32 rounding, not `2h`). The loss is checked the same way with
//! the mean loss itself as the objective. Differences of the engine's own forward cannot see a
//! wrong convolution geometry (the backward would agree with it), so each convolution case first
//! checks the forward against the direct convolution of `bnconv_kernels::conv`, which works out
//! TensorFlow's SAME padding by itself.
//!
//! # Steps
//! Values are drawn at scale ~1. Conv and Dense are linear in each checked element, so central
//! differences have no truncation error and the step only trades against f32 rounding of `y`:
//! `h = 1e-2`. Batch norm is nonlinear (the batch statistics move with `x`); its truncation error
//! is `O((h / std)^2)` while its rounding noise is `O(sqrt(#y) * ulp(y) / h)` because every output
//! of the channel moves: `h = 1e-3` on `x` and on gamma/beta. The loss uses `h = 1e-2`.
//!
//! # Tolerance
//! Each element must satisfy `|fd - analytic| <= RTOL * scale + ATOL` with `RTOL = 2e-3`,
//! `ATOL = 1e-6` and `scale = max(max|analytic|, max|fd|)` over that tensor. Rationale: with f32
//! forwards the FD noise is about `6e-8 * |y| * sqrt(#outputs that move) / h` (plus, for batch
//! norm, an `O((h / std)^2)` truncation term), i.e. at most a few `1e-4` of the gradient scale for
//! the shapes below. Observed worst cases (`max|fd - analytic| / scale`): conv 1.2e-5, dense
//! 1.2e-5, batch norm 2.0e-4, BN+ReLU 1.6e-4, loss 2.0e-4, so `RTOL` leaves a 10x margin. The
//! tolerance is relative to the tensor's own scale, not absolute: the loss gradients are `~1/n`
//! (here <= 0.042), where an absolute `1e-3` would hide a 2% error. `RTOL` must stay well below
//! `1e-2` so that a gradient off by 1% is caught; [`mutated_gradients_are_caught`] proves that it
//! is (conv dw scaled by 1.01, one conv dx element moved by 1% of the scale, BN+ReLU dbeta scaled
//! by 0.99, BN+ReLU dx computed without the ReLU mask, the largest dlogits element scaled by
//! 1.01). With the looser `2e-2 * scale + 1e-3`, that test fails at its first case: a 1% error in
//! conv dw goes unnoticed.
//!
//! # ReLU kinks
//! A central difference across a ReLU kink is meaningless (not skipping, one BN+ReLU dx element
//! gave fd 7.72 against the analytic 14.85, the slope on its active side). Two defences: the BN+ReLU inputs are moved
//! so that no pre-activation is within 0.05 of zero (then no step of these sizes can cross), and
//! any perturbation whose `y > 0` pattern still differs from the unperturbed one is skipped and
//! counted. The main BN+ReLU tests assert that at least 90% of every tensor is compared (in fact
//! all of it, 2000 elements per path) and that a quarter to three quarters of the outputs are
//! active; [`batchnorm_relu_kink_crossings_are_skipped`] runs without the input adjustment and
//! asserts that crossings do occur, are skipped, and everything else still agrees.

use bnconv_kernels::conv::{conv_forward_reference, ConvSizes};
use bnconv_kernels::GemmBackend;
use bnconv_nn::batch_norm::BatchNorm;
use bnconv_nn::conv2d::Conv2d;
use bnconv_nn::dense::Dense;
use bnconv_nn::loss::sigmoid_cross_entropy;
use bnconv_nn::{BnPath, Exec, Layer, Mode, ParamKind, Shape, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RTOL: f64 = 2e-3;
const ATOL: f64 = 1e-6;

/// One gradient tensor: the engine's values and, per element, the finite difference (`None` when
/// not sampled or skipped at a ReLU kink).
struct Check {
    name: String,
    analytic: Vec<f32>,
    fd: Vec<Option<f64>>,
    sampled: usize,
    kink_skipped: usize,
}

/// Summary of one passing check.
#[derive(Debug)]
struct Report {
    checked: usize,
    scale: f64,
    max_err: f64,
}

impl Report {
    fn rel(&self) -> f64 {
        self.max_err / self.scale.max(f64::MIN_POSITIVE)
    }
}

/// Compares one gradient tensor with its finite differences under the module's tolerance.
fn compare(c: &Check) -> Result<Report, String> {
    let checked: Vec<(usize, f64)> =
        c.fd.iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| (i, f)))
            .collect();
    let max_an = c
        .analytic
        .iter()
        .fold(0.0f64, |m, v| m.max((*v as f64).abs()));
    let max_fd = checked.iter().fold(0.0f64, |m, (_, f)| m.max(f.abs()));
    let scale = max_an.max(max_fd);
    let tol = RTOL * scale + ATOL;
    let mut max_err = 0.0f64;
    let mut bad = Vec::new();
    if let Some(i) = c.analytic.iter().position(|v| !v.is_finite()) {
        bad.push(format!("[{i}] analytic {} is not finite", c.analytic[i]));
    }
    for &(i, f) in &checked {
        let a = c.analytic[i] as f64;
        let err = (f - a).abs();
        max_err = max_err.max(err);
        if err > tol {
            bad.push(format!("[{i}] analytic {a:.6e} fd {f:.6e} err {err:.3e}"));
        }
    }
    if bad.is_empty() {
        Ok(Report {
            checked: checked.len(),
            scale,
            max_err,
        })
    } else {
        Err(format!(
            "{}: {} of {} elements exceed tol {tol:.3e} (scale {scale:.4e}); first: {}",
            c.name,
            bad.len(),
            checked.len(),
            bad.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ))
    }
}

/// Asserts every check passes and that at least `min_fraction` of each tensor's sampled elements
/// (after kink skips) were compared; logs the errors. Returns the total number of compared elements.
fn assert_checks(case: &str, checks: &[Check], min_fraction: f64) -> usize {
    let mut failures = Vec::new();
    let mut total = 0;
    for c in checks {
        match compare(c) {
            Ok(r) => {
                println!(
                    "{case:<40} {:<6} checked {:>5}/{:<5} kink-skipped {:>3}  scale {:.3e}  max|fd-an| {:.3e}  rel {:.2e}",
                    c.name,
                    r.checked,
                    c.sampled,
                    c.kink_skipped,
                    r.scale,
                    r.max_err,
                    r.rel()
                );
                assert!(
                    r.checked as f64 >= min_fraction * c.sampled as f64 && r.checked > 0,
                    "{case} {}: only {} of {} sampled elements checked ({} skipped at ReLU kinks)",
                    c.name,
                    r.checked,
                    c.sampled,
                    c.kink_skipped
                );
                total += r.checked;
            }
            Err(e) => failures.push(format!("{case} {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "gradient check failed:\n{}",
        failures.join("\n")
    );
    total
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn tensor(dims: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_vec(Shape::new(dims), data).expect("tensor size")
}

/// Train-mode forward with a freshly shaped output.
fn forward(layer: &mut dyn Layer, exec: &Exec, x: &Tensor) -> Tensor {
    let shape = layer.output_shape(x.shape()).expect("output shape");
    let mut y = Tensor::zeros(shape);
    layer.forward(exec, x, &mut y, Mode::Train);
    y
}

fn objective(y: &Tensor, r: &[f32]) -> f64 {
    y.data()
        .iter()
        .zip(r)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

fn positive_mask(y: &Tensor) -> Vec<bool> {
    y.data().iter().map(|v| *v > 0.0).collect()
}

/// Trainable parameters as `(name, value, grad)`, in visiting order.
fn trainable(layer: &mut dyn Layer) -> Vec<(&'static str, Vec<f32>, Vec<f32>)> {
    let mut out = Vec::new();
    layer.visit_params(&mut |p| {
        if p.kind == ParamKind::Trainable {
            out.push((p.name, p.value.to_vec(), p.grad.to_vec()));
        }
    });
    out
}

fn set_param(layer: &mut dyn Layer, name: &str, idx: usize, v: f32) {
    let mut found = false;
    layer.visit_params(&mut |p| {
        if p.kind == ParamKind::Trainable && p.name == name {
            p.value[idx] = v;
            found = true;
        }
    });
    assert!(found, "no trainable parameter {name}");
}

fn set_values(layer: &mut dyn Layer, name: &str, values: &[f32]) {
    for (i, v) in values.iter().enumerate() {
        set_param(layer, name, i, *v);
    }
}

/// Which elements of a tensor of `len` elements to check: all, or `limit` random distinct ones.
fn sample(rng: &mut ChaCha8Rng, len: usize, limit: Option<usize>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if let Some(k) = limit.filter(|k| *k < len) {
        for i in 0..k {
            let j = rng.random_range(i..len);
            idx.swap(i, j);
        }
        idx.truncate(k);
    }
    idx
}

/// How to check one layer.
struct Opts {
    exec: Exec,
    /// Step for input elements.
    h_x: f32,
    /// Step for parameter elements.
    h_p: f32,
    /// Skip perturbations that change the ReLU pattern of `y`.
    kink: bool,
    /// Check at most this many random elements of `x` (all when `None`).
    x_limit: Option<usize>,
}

/// Central difference of `L = sum(y * r)` around the current state, moving one scalar from `v0` to
/// `v0 +- h` through `eval_at` (which sets that scalar and returns the layer's output). `None` when
/// `base_mask` is given and either output's ReLU pattern differs from it (a kink was crossed).
fn central(
    layer: &mut dyn Layer,
    r: &[f32],
    base_mask: Option<&[bool]>,
    v0: f32,
    h: f32,
    mut eval_at: impl FnMut(&mut dyn Layer, f32) -> Tensor,
) -> Option<f64> {
    let (vp, vm) = (v0 + h, v0 - h);
    let yp = eval_at(layer, vp);
    let ym = eval_at(layer, vm);
    if let Some(mask) = base_mask {
        if positive_mask(&yp) != mask || positive_mask(&ym) != mask {
            return None;
        }
    }
    Some((objective(&yp, r) - objective(&ym, r)) / (vp as f64 - vm as f64))
}

/// Analytic gradients of `x` and of every trainable parameter against central differences.
fn layer_checks(layer: &mut dyn Layer, x: &Tensor, opts: &Opts, seed: u64) -> Vec<Check> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let exec = opts.exec.clone();
    let y = forward(layer, &exec, x);
    let r = tensor(
        y.shape().dims(),
        uniform(&mut rng, y.shape().len(), -1.0, 1.0),
    );
    let mut dx = Tensor::zeros(x.shape());
    dx.data_mut().fill(f32::NAN);
    layer.backward(&exec, x, &y, &r, Some(&mut dx));
    let params = trainable(layer);
    let base_mask = opts.kink.then(|| positive_mask(&y));
    let mask = base_mask.as_deref();
    let r = r.data().to_vec();

    let mut checks = Vec::new();
    // Input.
    let idx = sample(&mut rng, x.shape().len(), opts.x_limit);
    let mut fd = vec![None; x.shape().len()];
    let mut skipped = 0;
    let mut xp = x.clone();
    for &i in &idx {
        let v0 = x.data()[i];
        let d = central(layer, &r, mask, v0, opts.h_x, |l, v| {
            xp.data_mut()[i] = v;
            forward(l, &exec, &xp)
        });
        xp.data_mut()[i] = v0;
        match d {
            Some(d) => fd[i] = Some(d),
            None => skipped += 1,
        }
    }
    checks.push(Check {
        name: "dx".into(),
        analytic: dx.data().to_vec(),
        fd,
        sampled: idx.len(),
        kink_skipped: skipped,
    });
    // Parameters.
    for (name, value, grad) in params {
        let mut fd = vec![None; value.len()];
        let mut skipped = 0;
        for (i, &v0) in value.iter().enumerate() {
            let d = central(layer, &r, mask, v0, opts.h_p, |l, v| {
                set_param(l, name, i, v);
                forward(l, &exec, x)
            });
            set_param(layer, name, i, v0);
            match d {
                Some(d) => fd[i] = Some(d),
                None => skipped += 1,
            }
        }
        checks.push(Check {
            name: format!("d{name}"),
            analytic: grad,
            fd,
            sampled: value.len(),
            kink_skipped: skipped,
        });
    }
    checks
}

// ---------------------------------------------------------------------------------------------
// Convolution

struct ConvCase {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    bias: bool,
    x_limit: Option<usize>,
}

fn conv_checks(c: &ConvCase, gemm: GemmBackend, seed: u64) -> (String, Vec<Check>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = uniform(&mut rng, 9 * c.cin * c.cout, -0.5, 0.5);
    let b = c.bias.then(|| uniform(&mut rng, c.cout, -0.5, 0.5));
    let (w_init, b_init) = (w.clone(), b.clone());
    let mut layer = Conv2d::new("conv", c.cin, c.cout, c.stride, w, b);
    let x = tensor(
        &[c.n, c.h, c.w, c.cin],
        uniform(&mut rng, c.n * c.h * c.w * c.cin, -1.0, 1.0),
    );
    let opts = Opts {
        exec: Exec {
            gemm,
            ..Exec::default()
        },
        h_x: 1e-2,
        h_p: 1e-2,
        kink: false,
        x_limit: c.x_limit,
    };
    let name = format!(
        "conv {gemm:?} {}x{}x{}x{}->{} s{}{}",
        c.n,
        c.h,
        c.w,
        c.cin,
        c.cout,
        c.stride,
        if c.bias { " +b" } else { "" }
    );
    // Finite differences of the engine's own forward cannot see a wrong geometry (the backward
    // would be consistent with it): the forward must be the TF-SAME convolution first.
    let y = forward(&mut layer, &opts.exec, &x);
    let sizes = ConvSizes {
        batch: c.n,
        in_h: c.h,
        in_w: c.w,
        in_c: c.cin,
        out_c: c.cout,
        stride: c.stride,
    };
    let (out_h, out_w) = sizes.output_hw();
    assert_eq!(
        y.shape().dims(),
        [c.n, out_h, out_w, c.cout],
        "{name}: shape"
    );
    let (w, b) = (&w_init, b_init.as_deref());
    let want = conv_forward_reference(&sizes, x.data(), w, b);
    for (i, (got, r)) in y.data().iter().zip(&want).enumerate() {
        assert!(
            (got - r).abs() <= 1e-5 * (1.0 + r.abs()),
            "{name}: forward at {i}: {got} vs the direct TF-SAME convolution's {r}"
        );
    }
    (name, layer_checks(&mut layer, &x, &opts, seed ^ 0x5eed))
}

fn conv_case(
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    bias: bool,
) -> ConvCase {
    ConvCase {
        n,
        h,
        w,
        cin,
        cout,
        stride,
        bias,
        x_limit: None,
    }
}

/// Every case on every GEMM backend compiled in (OpenBLAS too with `--features blas`).
fn run_conv(cases: &[ConvCase]) {
    for &gemm in GemmBackend::available() {
        for (k, c) in cases.iter().enumerate() {
            let (name, checks) = conv_checks(c, gemm, 100 + k as u64);
            assert_eq!(
                checks.len(),
                if c.bias { 3 } else { 2 },
                "{name}: dx, dw[, db]"
            );
            assert_checks(&name, &checks, 1.0);
        }
    }
}

#[test]
fn conv_stride1_odd_and_even() {
    run_conv(&[
        conv_case(2, 5, 5, 3, 4, 1, true),
        conv_case(2, 6, 6, 2, 3, 1, false),
        conv_case(2, 4, 7, 1, 5, 1, true),
        conv_case(3, 1, 1, 3, 2, 1, true),
        conv_case(3, 2, 2, 2, 3, 1, false),
    ]);
}

#[test]
fn conv_stride2_odd_even_and_tiny() {
    run_conv(&[
        conv_case(2, 5, 7, 3, 2, 2, true),
        // Even sizes: TensorFlow puts the extra padding row/column at the bottom/right.
        conv_case(2, 6, 4, 2, 3, 2, true),
        conv_case(2, 8, 8, 2, 2, 2, false),
        conv_case(3, 1, 1, 3, 2, 2, true),
        conv_case(3, 1, 1, 2, 2, 2, false),
        conv_case(3, 2, 2, 2, 3, 2, true),
        conv_case(3, 2, 2, 3, 2, 2, false),
        conv_case(2, 3, 3, 2, 2, 2, true),
    ]);
}

/// Batches large enough that the conv kernels split them into several image chunks whose weight
/// and bias gradient partials are summed.
#[test]
fn conv_multi_chunk_batches() {
    run_conv(&[
        // 64 output pixels per image -> 8 images per chunk -> 2 chunks.
        conv_case(10, 8, 8, 2, 3, 1, true),
        // 4 output pixels per image -> 128 images per chunk -> 2 chunks; dx sampled.
        ConvCase {
            x_limit: Some(400),
            ..conv_case(130, 3, 3, 2, 2, 2, true)
        },
    ]);
}

// ---------------------------------------------------------------------------------------------
// Batch norm

/// Input with a per-channel offset and spread; channel 0 has std ~0.03 (variance ~1e-3, the size
/// of eps) so that eps matters in the check. Its offset is kept small: `y = x * scale + shift`
/// with `|mean| >> std` cancels digits (with offset 2 the f32 rounding of `y` alone gives FD noise
/// of ~2e-3 of the gradient scale, all of it from the forward's arithmetic, none from the gradient).
fn bn_input(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let shape = Shape::new(dims);
    let c = shape.channels();
    let mut offsets = uniform(rng, c, -2.0, 2.0);
    let mut spreads = uniform(rng, c, 0.5, 2.0);
    spreads[0] = 0.05;
    offsets[0] = 0.1;
    let data = (0..shape.len())
        .map(|i| {
            let ch = i % c;
            offsets[ch] + spreads[ch] * rng.random_range(-1.0f32..1.0)
        })
        .collect();
    tensor(dims, data)
}

/// No pre-activation of the BN+ReLU inputs is closer than this to zero (in units of the
/// normalised output). Perturbing beta or gamma by `h = 1e-3` moves a pre-activation by at most
/// `1e-3 * max|xhat|` (< 5e-3 here), and perturbing `x` moves its own by `|gamma| * invstd * h`
/// (< 0.04 even in the low-variance channel), so the checks meet no kink.
const KINK_MARGIN: f64 = 0.05;

/// Moves the elements whose BN pre-activation `gamma * xhat + beta` (batch statistics, f64) lies
/// within `margin` of zero out to `+-2 * margin`, repeating while the batch statistics settle.
fn keep_off_the_kink(x: &mut [f32], c: usize, gamma: &[f32], beta: &[f32], margin: f64) {
    let rows = x.len() / c;
    for _ in 0..10 {
        let mut moved = 0;
        for ch in 0..c {
            let vals = || (0..rows).map(|r| x[r * c + ch] as f64);
            let mean = vals().sum::<f64>() / rows as f64;
            let var = vals().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
            let k = gamma[ch] as f64 / (var + 1e-3).sqrt();
            let b = beta[ch] as f64;
            for r in 0..rows {
                let i = r * c + ch;
                let z = k * (x[i] as f64 - mean) + b;
                if z.abs() < margin {
                    let target = 2.0 * margin * if z >= 0.0 { 1.0 } else { -1.0 };
                    x[i] = (mean + (target - b) / k) as f32;
                    moved += 1;
                }
            }
        }
        if moved == 0 {
            return;
        }
    }
    panic!("could not move the BN+ReLU inputs off the kink");
}

/// Checks one BatchNorm; with ReLU, the inputs are kept off the kink unless `near_kink`.
fn bn_checks(dims: &[usize], relu: bool, path: BnPath, seed: u64) -> Vec<Check> {
    bn_checks_with(dims, relu, path, seed, false)
}

fn bn_checks_with(
    dims: &[usize],
    relu: bool,
    path: BnPath,
    seed: u64,
    near_kink: bool,
) -> Vec<Check> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = *dims.last().unwrap();
    let mut layer = BatchNorm::new("bn", c, relu);
    let mut gamma = uniform(&mut rng, c, 0.5, 1.5);
    gamma[c - 1] = -0.8; // a negative gamma is legal and flips the ReLU side
    let beta = uniform(&mut rng, c, -0.5, 0.5);
    set_values(&mut layer, "gamma", &gamma);
    set_values(&mut layer, "beta", &beta);
    let mut x = bn_input(&mut rng, dims);
    if relu && !near_kink {
        keep_off_the_kink(x.data_mut(), c, &gamma, &beta, KINK_MARGIN);
    }
    let opts = Opts {
        exec: Exec {
            bn_path: path,
            ..Exec::default()
        },
        h_x: 1e-3,
        h_p: 1e-3,
        kink: relu,
        x_limit: None,
    };
    if relu {
        // Both sides of the ReLU must be well represented, or the mask is not exercised.
        let y = forward(&mut layer, &opts.exec, &x);
        let active = y.data().iter().filter(|v| **v > 0.0).count();
        let n = y.data().len();
        assert!(
            4 * active > n && 4 * active < 3 * n,
            "{dims:?}: {active} of {n} outputs active"
        );
    }
    let checks = layer_checks(&mut layer, &x, &opts, seed ^ 0xb1);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dx", "dgamma", "dbeta"]);
    checks
}

#[test]
fn batchnorm_4d() {
    // 11 channels: one full 8-lane SIMD block plus a scalar tail.
    let checks = bn_checks(&[2, 3, 3, 11], false, BnPath::Fused, 1);
    assert_checks("bn 2x3x3x11", &checks, 1.0);
    let checks = bn_checks(&[3, 2, 5, 4], false, BnPath::Unfused, 2);
    assert_checks("bn 3x2x5x4 (unfused path)", &checks, 1.0);
}

#[test]
fn batchnorm_2d() {
    let checks = bn_checks(&[24, 13], false, BnPath::Fused, 3);
    assert_checks("bn 24x13", &checks, 1.0);
    // More rows than one reduction chunk (256): statistics and sums are chunked.
    let checks = bn_checks(&[300, 3], false, BnPath::Fused, 4);
    assert_checks("bn 300x3", &checks, 1.0);
}

fn bn_relu(path: BnPath) {
    let mut total = 0;
    for (k, dims) in [&[3usize, 4, 4, 10][..], &[64, 9], &[300, 3]]
        .iter()
        .enumerate()
    {
        let checks = bn_checks(dims, true, path, 10 + k as u64);
        total += assert_checks(&format!("bn+relu {path} {dims:?}"), &checks, 0.9);
    }
    assert!(
        total >= 1800,
        "only {total} elements checked for BN+ReLU {path}"
    );
}

#[test]
fn batchnorm_relu_fused() {
    bn_relu(BnPath::Fused);
}

#[test]
fn batchnorm_relu_unfused() {
    bn_relu(BnPath::Unfused);
}

/// Without moving the inputs off the kink, some perturbations do cross it: they are skipped and
/// counted, and everything else still agrees.
#[test]
fn batchnorm_relu_kink_crossings_are_skipped() {
    for path in [BnPath::Fused, BnPath::Unfused] {
        let mut skipped = 0;
        for (k, dims) in [&[3usize, 4, 4, 10][..], &[64, 9]].iter().enumerate() {
            let checks = bn_checks_with(dims, true, path, 10 + k as u64, true);
            assert_checks(&format!("bn+relu {path} {dims:?} near kink"), &checks, 0.9);
            skipped += checks.iter().map(|c| c.kink_skipped).sum::<usize>();
        }
        assert!(
            skipped > 0,
            "no kink crossing seen: the skip path is untested"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dense

#[test]
fn dense_with_bias() {
    for &gemm in GemmBackend::available() {
        for (k, (dims, outputs)) in [(&[5usize, 7][..], 4usize), (&[4, 2, 2, 3], 5), (&[1, 9], 3)]
            .iter()
            .enumerate()
        {
            let mut rng = ChaCha8Rng::seed_from_u64(200 + k as u64);
            let inputs: usize = dims[1..].iter().product();
            let w = uniform(&mut rng, inputs * outputs, -0.5, 0.5);
            let b = uniform(&mut rng, *outputs, -0.5, 0.5);
            let mut layer = Dense::new("dense", inputs, *outputs, w, Some(b));
            let x = tensor(dims, uniform(&mut rng, dims.iter().product(), -1.0, 1.0));
            let opts = Opts {
                exec: Exec {
                    gemm,
                    ..Exec::default()
                },
                h_x: 1e-2,
                h_p: 1e-2,
                kink: false,
                x_limit: None,
            };
            let checks = layer_checks(&mut layer, &x, &opts, 300 + k as u64);
            assert_eq!(checks.len(), 3, "dx, dw, db");
            assert_checks(&format!("dense {gemm:?} {dims:?}->{outputs}"), &checks, 1.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loss

fn loss_check() -> Check {
    let mut rng = ChaCha8Rng::seed_from_u64(400);
    let (rows, classes) = (4, 6);
    let n = rows * classes;
    let mut logits = uniform(&mut rng, n, -3.0, 3.0);
    let mut labels = vec![0.0f32; n];
    for row in 0..rows {
        labels[row * classes + rng.random_range(0..classes)] = 1.0;
    }
    // Saturated logits on both sides, with agreeing and disagreeing labels, and one at zero.
    let row0 = labels[..classes].iter().position(|v| *v == 1.0).unwrap();
    let row1 = classes
        + labels[classes..2 * classes]
            .iter()
            .position(|v| *v == 1.0)
            .unwrap();
    logits[row0] = 20.0; // agrees: gradient ~ -2e-9 / n
    logits[(row0 + 1) % classes] = -20.0; // agrees (label 0)
    logits[(row0 + 2) % classes] = 20.0; // disagrees: gradient ~ 1 / n
    logits[row1] = -20.0; // disagrees: gradient ~ -1 / n
    logits[classes + (row1 + 1 - classes) % classes] = 0.0;
    // A soft label as well.
    labels[3 * classes] = 0.3;
    let mut d = vec![f32::NAN; n];
    sigmoid_cross_entropy(&logits, &labels, Some(&mut d));
    let h = 1e-2f32;
    let mut fd = vec![None; n];
    let mut z = logits.clone();
    for i in 0..n {
        let v0 = logits[i];
        let (vp, vm) = (v0 + h, v0 - h);
        z[i] = vp;
        let lp = sigmoid_cross_entropy(&z, &labels, None) as f64;
        z[i] = vm;
        let lm = sigmoid_cross_entropy(&z, &labels, None) as f64;
        z[i] = v0;
        fd[i] = Some((lp - lm) / (vp as f64 - vm as f64));
    }
    Check {
        name: "dlogits".into(),
        analytic: d,
        fd,
        sampled: n,
        kink_skipped: 0,
    }
}

#[test]
fn sigmoid_cross_entropy_dlogits() {
    let c = loss_check();
    assert_checks(
        "sigmoid_ce 4x6 (logits +-20)",
        std::slice::from_ref(&c),
        1.0,
    );
}

// ---------------------------------------------------------------------------------------------
// The checker itself

/// Deliberately wrong gradients must fail [`compare`]: the tolerance is tight enough to see a 1%
/// error, and the ReLU-kink skipping does not hide a missing mask.
#[test]
fn mutated_gradients_are_caught() {
    // dw scaled by 1.01.
    let (_, mut checks) = conv_checks(
        &conv_case(2, 5, 5, 3, 4, 1, true),
        GemmBackend::default(),
        7,
    );
    assert!(compare(&checks[1]).is_ok());
    checks[1].analytic.iter_mut().for_each(|v| *v *= 1.01);
    assert!(compare(&checks[1]).is_err(), "conv dw * 1.01 not caught");

    // One dx element moved by 1% of the tensor's scale.
    let check = &mut checks[0];
    assert!(compare(check).is_ok());
    let scale = check.analytic.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    check.analytic[17] += 0.01 * scale;
    assert!(
        compare(check).is_err(),
        "one conv dx element off by 1% not caught"
    );

    // BN+ReLU: dbeta 1% off; and dx without the ReLU mask (plain BN's dx for the same x and dy).
    let mut relu = bn_checks(&[3, 4, 4, 10], true, BnPath::Fused, 10);
    assert!(compare(&relu[2]).is_ok());
    relu[2].analytic.iter_mut().for_each(|v| *v *= 0.99);
    assert!(
        compare(&relu[2]).is_err(),
        "bn+relu dbeta * 0.99 not caught"
    );
    let plain = bn_checks(&[3, 4, 4, 10], false, BnPath::Fused, 10);
    relu[0].analytic.clone_from(&plain[0].analytic);
    assert!(
        compare(&relu[0]).is_err(),
        "bn+relu dx without the mask not caught"
    );

    // The loss with its largest gradient element off by 1%.
    let mut loss = loss_check();
    assert!(compare(&loss).is_ok());
    let big = (0..loss.analytic.len())
        .max_by(|a, b| loss.analytic[*a].abs().total_cmp(&loss.analytic[*b].abs()))
        .unwrap();
    loss.analytic[big] *= 1.01;
    assert!(compare(&loss).is_err(), "dlogits off by 1% not caught");
}
