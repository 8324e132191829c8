//! Criterion benches of the seed network's hot paths at its real shapes (batch 64), each named
//! for what it measures:
//! - `sgemm/<layer>.<product>/<backend>`: the layer's three GEMM shapes (forward `cols @ W`, data
//!   gradient `dy @ W^T`, weight gradient `cols^T @ dy`, full batch, one call, one thread),
//!   bnconv's tiles against matrixmultiply (and OpenBLAS with `--features blas`);
//! - `im2col/<layer>`: the column matrix of the whole batch (the path layers under 7 pixels take);
//! - `conv_forward`, `conv_backward_weights` (no input gradient) and `conv_backward` (weights and
//!   input gradient) per layer, as the network runs them (implicit GEMM where it applies);
//! - `bn_relu_forward` / `bn_relu_backward`: fused vs unfused per layer shape;
//! - `seed_network`: a whole training step (forward, loss, backward, Adam) and an eval batch.
//!
//! Run with `cargo bench`; threads: `RAYON_NUM_THREADS` (default all cores).

use bnconv_kernels::conv::im2col::im2col_image;
use bnconv_kernels::conv::{conv_backward, conv_forward, ConvGrads, ConvOps, ConvWorkspace};
use bnconv_kernels::fuse::BnApply;
use bnconv_kernels::gemm::{sgemm, MatMut, MatRef};
use bnconv_kernels::norm::batchnorm::{
    batch_stats, bn_backward, bn_forward, fold_scale, BnGrads, BnSaved, BnScratch,
};
use bnconv_kernels::norm::bn_relu::{bn_relu_backward, bn_relu_forward};
use bnconv_kernels::norm::relu::{relu_backward, relu_forward};
use bnconv_kernels::runtime::shards::{ShardSpan, Shards, DEFAULT_SHARDS};
use bnconv_kernels::simd::active_isa;
use bnconv_kernels::{ConvGeometry, GemmBackend};
use bnconv_nn::adam::{Adam, AdamConfig};
use bnconv_nn::loss::sigmoid_cross_entropy;
use bnconv_nn::{seed_network, Exec, Mode, Variant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const BATCH: usize = 64;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// (layer, geometry) of the seed network's convolutions at batch 64.
fn seed_layers() -> Vec<(usize, ConvGeometry)> {
    let (mut size, mut cin) = (28, 1);
    (1..=19)
        .map(|i| {
            let stride = if i % 3 == 0 { 2 } else { 1 };
            let g = ConvGeometry::same(BATCH, size, size, cin, 4 * i, stride);
            size = g.out_h;
            cin = 4 * i;
            (i, g)
        })
        .collect()
}

/// A representative subset: first, memory-bound, middle, 2x2 and 1x1 inputs.
const PICKED: [usize; 6] = [1, 2, 5, 9, 13, 19];

fn sgemm_shapes(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    for (i, g) in seed_layers()
        .into_iter()
        .filter(|(i, _)| PICKED.contains(i))
    {
        let (m, k, n) = (g.rows(), g.k(), g.out_c);
        let a = random(m * k, 1);
        let w = random(k * n, 2);
        let dy = random(m * n, 3);
        let (mut y, mut dcols, mut dw) = (vec![0.0; m * n], vec![0.0; m * k], vec![0.0; k * n]);
        let (av, wv, dyv) = (
            MatRef::dense(&a, m, k),
            MatRef::dense(&w, k, n),
            MatRef::dense(&dy, m, n),
        );
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        for &backend in GemmBackend::available() {
            let name = |product: &str| BenchmarkId::new(format!("conv{i:02}.{product}"), backend);
            group.bench_function(name("forward"), |b| {
                b.iter(|| sgemm(backend, 1.0, av, wv, 0.0, MatMut::dense(&mut y, m, n)))
            });
            group.bench_function(name("data_grad"), |b| {
                b.iter(|| {
                    sgemm(
                        backend,
                        1.0,
                        dyv,
                        wv.t(),
                        0.0,
                        MatMut::dense(&mut dcols, m, k),
                    )
                })
            });
            group.bench_function(name("weight_grad"), |b| {
                b.iter(|| sgemm(backend, 1.0, av.t(), dyv, 0.0, MatMut::dense(&mut dw, k, n)))
            });
        }
    }
    group.finish();
}

fn im2col(c: &mut Criterion) {
    let mut group = c.benchmark_group("im2col");
    for (i, g) in seed_layers()
        .into_iter()
        .filter(|(i, _)| PICKED.contains(i))
    {
        let x = random(g.input_len(), 1);
        let mut cols = vec![0.0; g.cols_len()];
        group.throughput(Throughput::Bytes((g.cols_len() * 4) as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("conv{i:02}")), |b| {
            b.iter(|| {
                for (img, col) in x
                    .chunks_exact(g.in_pixels() * g.in_c)
                    .zip(cols.chunks_exact_mut(g.out_pixels() * g.k()))
                {
                    im2col_image(&g, img, col);
                }
            })
        });
    }
    group.finish();
}

fn conv(c: &mut Criterion) {
    for (which, backward, data_grad) in [
        ("conv_forward", false, false),
        ("conv_backward_weights", true, false),
        ("conv_backward", true, true),
    ] {
        let mut group = c.benchmark_group(which);
        for (i, g) in seed_layers()
            .into_iter()
            .filter(|(i, _)| PICKED.contains(i))
        {
            let x = random(g.input_len(), 1);
            let w = random(g.weight_len(), 2);
            let dy = random(g.output_len(), 3);
            let (mut ws, mut y) = (ConvWorkspace::default(), vec![0.0; g.output_len()]);
            let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
            conv_forward(
                GemmBackend::default(),
                &g,
                &x,
                &w,
                ConvOps::train(None),
                &mut ws,
                &mut y,
            );
            let passes = if data_grad { 2 } else { 1 };
            let span = ShardSpan::whole(g.batch, DEFAULT_SHARDS);
            group.throughput(Throughput::Elements(g.forward_flops() * passes));
            group.bench_function(BenchmarkId::from_parameter(format!("conv{i:02}")), |b| {
                b.iter(|| {
                    if !backward {
                        conv_forward(
                            GemmBackend::default(),
                            &g,
                            &x,
                            &w,
                            ConvOps::train(None),
                            &mut ws,
                            &mut y,
                        );
                        return black_box(y[0]);
                    }
                    conv_backward(
                        GemmBackend::default(),
                        &g,
                        Shards::local(&span),
                        &mut ws,
                        &w,
                        &dy,
                        ConvGrads {
                            dx: data_grad.then_some(dx.as_mut_slice()),
                            dw: &mut dw,
                            db: None,
                        },
                    );
                    black_box(dw[0])
                })
            });
        }
        group.finish();
    }
}

fn bn_relu(c: &mut Criterion) {
    let isa = active_isa();
    let mut fwd = c.benchmark_group("bn_relu_forward");
    for (i, g) in seed_layers()
        .into_iter()
        .filter(|(i, _)| PICKED.contains(i))
    {
        let ch = g.out_c;
        let x = random(g.output_len(), 4);
        let (mean, scale, beta) = (random(ch, 5), random(ch, 6), random(ch, 12));
        let k = BnApply {
            mean: &mean,
            scale: &scale,
            beta: &beta,
        };
        let (mut y, mut z) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        fwd.throughput(Throughput::Bytes((x.len() * 4) as u64));
        fwd.bench_function(BenchmarkId::new("fused", format!("bn{i:02}")), |b| {
            b.iter(|| bn_relu_forward(isa, &x, k, &mut y))
        });
        fwd.bench_function(BenchmarkId::new("unfused", format!("bn{i:02}")), |b| {
            b.iter(|| {
                bn_forward(isa, &x, k, &mut z);
                relu_forward(isa, &z, &mut y);
            })
        });
    }
    fwd.finish();

    let mut bwd = c.benchmark_group("bn_relu_backward");
    for (i, g) in seed_layers()
        .into_iter()
        .filter(|(i, _)| PICKED.contains(i))
    {
        let ch = g.out_c;
        let x = random(g.output_len(), 7);
        let dy = random(g.output_len(), 8);
        let gamma = random(ch, 9);
        let beta = random(ch, 10);
        let mut s = BnScratch::default();
        let (mut mean, mut var) = (vec![0.0; ch], vec![0.0; ch]);
        let span = ShardSpan::whole(g.batch, DEFAULT_SHARDS);
        let shards = Shards::local(&span);
        batch_stats(isa, &x, ch, shards, &mut mean, &mut var, &mut s);
        let (mut invstd, mut scale) = (vec![0.0; ch], vec![0.0; ch]);
        fold_scale(&gamma, &var, 1e-3, &mut invstd, &mut scale);
        let k = BnApply {
            mean: &mean,
            scale: &scale,
            beta: &beta,
        };
        let mut y = vec![0.0; x.len()];
        bn_relu_forward(isa, &x, k, &mut y);
        let saved = BnSaved {
            mean: &mean,
            invstd: &invstd,
            gamma: &gamma,
            beta: &beta,
        };
        let (mut dx, mut dz, mut dg, mut db) = (
            vec![0.0; x.len()],
            vec![0.0; x.len()],
            vec![0.0; ch],
            vec![0.0; ch],
        );
        bwd.throughput(Throughput::Bytes((x.len() * 4) as u64));
        bwd.bench_function(BenchmarkId::new("fused", format!("bn{i:02}")), |b| {
            b.iter(|| {
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                bn_relu_backward(isa, &x, &dy, saved, shards, grads, &mut s)
            })
        });
        bwd.bench_function(BenchmarkId::new("unfused", format!("bn{i:02}")), |b| {
            b.iter(|| {
                relu_backward(isa, &y, &dy, &mut dz);
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                bn_backward(isa, &x, &dz, saved, shards, grads, &mut s);
            })
        });
    }
    bwd.finish();
}

fn network(c: &mut Criterion) {
    let mut group = c.benchmark_group("seed_network");
    group.sample_size(20);
    let x = random(BATCH * 784, 11)
        .iter()
        .map(|v| v.abs())
        .collect::<Vec<_>>();
    let mut labels = vec![0.0; BATCH * 10];
    for (i, row) in labels.chunks_exact_mut(10).enumerate() {
        row[i % 10] = 1.0;
    }
    for variant in [Variant::Bn, Variant::Plain] {
        let mut net = seed_network(variant, 1, Exec::default());
        let mut dlogits = vec![0.0; BATCH * 10];
        let mut adam = Adam::new(AdamConfig::default());
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("train_step_64", variant.name()), |b| {
            b.iter(|| {
                let logits = net.forward(&x, BATCH, Mode::Train);
                sigmoid_cross_entropy(logits.data(), &labels, Some(&mut dlogits));
                net.backward(&dlogits);
                adam.step(&mut net);
            })
        });
        group.bench_function(BenchmarkId::new("eval_batch_64", variant.name()), |b| {
            b.iter(|| black_box(net.forward(&x, BATCH, Mode::Eval).data()[0]))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = sgemm_shapes, im2col, conv, bn_relu, network
}
criterion_main!(benches);
