use super::*;
use crate::fuse::{BnApply, Epilogue, Prologue, Start};
use crate::gemm::GemmBackend;
use crate::runtime::shards::{ShardSpan, Shards};
use crate::testing::{as_processes, on_threads, pseudo};

/// All 8 shards of a batch of `batch` images, in this process.
fn whole(batch: usize) -> ShardSpan {
    ShardSpan::whole(batch, 8)
}

#[test]
fn forward_matches_direct_convolution() {
    for &(n, h, w, cin, cout, stride) in &[
        (2, 7, 7, 3, 5, 1),
        (3, 8, 8, 4, 6, 2),
        (2, 14, 13, 3, 5, 2),
        (2, 9, 8, 1, 4, 1),
        (2, 8, 8, 3, 8, 1),
        (2, 5, 6, 1, 4, 2),
        (40, 2, 2, 3, 2, 2),
        (600, 1, 1, 5, 3, 1),
        // At most 2x2 at stride 1: the small-image dense product.
        (13, 2, 2, 5, 7, 1),
        (9, 1, 2, 3, 11, 1),
        (9, 2, 1, 4, 9, 1),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        let x = pseudo(g.input_len(), 1);
        let wt = pseudo(g.weight_len(), 2);
        let b = pseudo(cout, 3);
        // The reference works out the output size and padding itself (TensorFlow's rule).
        let want = conv_forward_reference(&ConvSizes::of(&g), &x, &wt, Some(&b));
        assert_eq!(want.len(), g.output_len(), "{g:?}: output size");
        for &gemm in GemmBackend::available() {
            let mut ws = ConvWorkspace::default();
            let mut y = vec![f32::NAN; g.output_len()];
            conv_forward(gemm, &g, &x, &wt, ConvOps::train(Some(&b)), &mut ws, &mut y);
            for (i, (a, r)) in y.iter().zip(&want).enumerate() {
                assert!((a - r).abs() < 1e-5, "{gemm} {g:?} at {i}: {a} vs {r}");
            }
        }
    }
}

/// The epilogue equals scaling, shifting and a ReLU pass after a plain convolution, on every
/// backend and on both the implicit and the column paths.
#[test]
fn epilogue_equals_separate_passes() {
    for &(n, h, w, cin, cout, stride) in &[
        (2, 9, 8, 3, 5, 1),
        (3, 4, 4, 6, 7, 1),
        (2, 14, 13, 2, 9, 2),
        (5, 1, 1, 4, 3, 1),
        (7, 2, 2, 6, 5, 1),
        (2, 8, 8, 3, 8, 1),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        let x = pseudo(g.input_len(), 11);
        let wt = pseudo(g.weight_len(), 12);
        let scale = pseudo(cout, 13);
        let shift = pseudo(cout, 14);
        for &gemm in GemmBackend::available() {
            let mut ws = ConvWorkspace::default();
            let mut plain = vec![0.0; g.output_len()];
            conv_forward(gemm, &g, &x, &wt, ConvOps::train(None), &mut ws, &mut plain);
            let mut fused = vec![0.0; g.output_len()];
            let epilogue = Epilogue {
                start: Start::Bias(&shift),
                scale: Some(&scale),
                relu: true,
            };
            conv_forward(
                gemm,
                &g,
                &x,
                &wt,
                ConvOps::eval(epilogue),
                &mut ws,
                &mut fused,
            );
            for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                let c = i % cout;
                let want = (p * scale[c] + shift[c]).max(0.0);
                assert!(
                    (f - want).abs() < 1e-5,
                    "{gemm} {g:?} at {i}: {f} vs {want}"
                );
            }
        }
    }
}

/// The input prologue equals batch norm (+ReLU), or ReLU alone, as a pass of its own, then
/// the convolution: bitwise, output and the workspace the backward pass reads.
#[test]
fn prologue_equals_a_separate_batch_norm_pass() {
    use crate::norm::batchnorm::bn_forward;
    use crate::norm::bn_relu::bn_relu_forward;
    for &(n, h, w, cin, cout, stride) in &[
        (2, 28, 28, 4, 8, 1),
        (3, 14, 14, 12, 16, 1),
        (2, 14, 14, 20, 24, 2),
        (2, 9, 8, 3, 5, 1),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        let (gemm, isa) = (GemmBackend::Native, crate::simd::active_isa());
        assert!(ConvPlan::new(gemm, &g).accepts_prologue(), "{g:?}");
        let x = pseudo(g.input_len(), 11);
        let wt = pseudo(g.weight_len(), 12);
        let b = pseudo(cout, 13);
        let dy = pseudo(g.output_len(), 14);
        let (mean, scale, beta) = (pseudo(cin, 15), pseudo(cin, 16), pseudo(cin, 17));
        let apply = BnApply {
            mean: &mean,
            scale: &scale,
            beta: &beta,
        };
        // (batch norm?, relu): both maps the network defers, and batch norm alone.
        for (with_bn, relu) in [(true, false), (true, true), (false, true)] {
            let mut normalized = vec![0.0; x.len()];
            match (with_bn, relu) {
                (true, true) => bn_relu_forward(isa, &x, apply, &mut normalized),
                (true, false) => bn_forward(isa, &x, apply, &mut normalized),
                _ => crate::norm::relu::relu_forward(isa, &x, &mut normalized),
            }
            let run = |with_prologue: bool| {
                let mut ws = ConvWorkspace::default();
                let mut y = vec![f32::NAN; g.output_len()];
                if with_prologue {
                    let prologue = Prologue {
                        normalize: with_bn.then_some(apply),
                        relu,
                    };
                    conv_forward(
                        gemm,
                        &g,
                        &x,
                        &wt,
                        ConvOps::train(Some(&b)).with_prologue(prologue),
                        &mut ws,
                        &mut y,
                    );
                } else {
                    conv_forward(
                        gemm,
                        &g,
                        &normalized,
                        &wt,
                        ConvOps::train(Some(&b)),
                        &mut ws,
                        &mut y,
                    );
                }
                let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                let span = whole(g.batch);
                let shards = Shards::local(&span);
                conv_backward(
                    gemm,
                    &g,
                    shards,
                    &mut ws,
                    &wt,
                    &dy,
                    ConvGrads {
                        dx: Some(&mut dx),
                        dw: &mut dw,
                        db: None,
                    },
                );
                [y, dx, dw].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            };
            assert!(
                run(true) == run(false),
                "{g:?} batch norm {with_bn} relu {relu}"
            );
        }
    }
}

/// The backward pass is the adjoint of the forward: <conv(x), dy> = <x, dx> and = <w, dw>; and
/// the forward is the reference's TF-SAME convolution, so these are the gradients of that
/// convolution (an adjoint pair built on a wrong geometry would pass the dot products alone).
#[test]
fn backward_is_the_adjoint_of_forward() {
    for &(n, h, w, cin, cout, stride) in &[
        (2, 7, 7, 3, 5, 1),
        (3, 8, 8, 4, 6, 2),
        // Stride 2 with a 7+ wide output: the sub-pixel data gradient, odd and even sides.
        (2, 15, 14, 5, 9, 2),
        (33, 2, 2, 3, 2, 2),
        // The column path, its weight gradient in several row blocks and a shorter last one.
        (37, 4, 4, 6, 7, 1),
        // The small-image dense product (2x2, 1x2 and 2x1 at stride 1).
        (13, 2, 2, 5, 7, 1),
        (9, 1, 2, 3, 11, 1),
        (9, 2, 1, 4, 9, 1),
        (70, 1, 1, 7, 9, 1),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        let x = pseudo(g.input_len(), 4);
        let wt = pseudo(g.weight_len(), 5);
        let dy = pseudo(g.output_len(), 6);
        let mut ws = ConvWorkspace::default();
        let mut y = vec![0.0; g.output_len()];
        conv_forward(
            GemmBackend::default(),
            &g,
            &x,
            &wt,
            ConvOps::train(None),
            &mut ws,
            &mut y,
        );
        let want = conv_forward_reference(&ConvSizes::of(&g), &x, &wt, None);
        assert_eq!(want.len(), y.len(), "{g:?}: output size");
        for (i, (a, r)) in y.iter().zip(&want).enumerate() {
            assert!((a - r).abs() < 1e-5, "{g:?} forward at {i}: {a} vs {r}");
        }
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; cout]);
        conv_backward(
            GemmBackend::default(),
            &g,
            Shards::local(&whole(n)),
            &mut ws,
            &wt,
            &dy,
            ConvGrads {
                dx: Some(&mut dx),
                dw: &mut dw,
                db: Some(&mut db),
            },
        );
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| *p as f64 * *q as f64)
                .sum::<f64>()
        };
        let ydy = dot(&y, &dy);
        assert!(
            (ydy - dot(&x, &dx)).abs() < 1e-4 * (1.0 + ydy.abs()),
            "{g:?} dx"
        );
        assert!(
            (ydy - dot(&wt, &dw)).abs() < 1e-4 * (1.0 + ydy.abs()),
            "{g:?} dw"
        );
        let sum_dy: Vec<f64> = (0..cout)
            .map(|c| dy.iter().skip(c).step_by(cout).map(|v| *v as f64).sum())
            .collect();
        for c in 0..cout {
            assert!((db[c] as f64 - sum_dy[c]).abs() < 1e-4, "{g:?} db");
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // 37 images: tasks of whole images that the thread count splits unevenly; the 4x4 layer
    // takes the column path, whose weight gradient is cut into row blocks.
    for (batch, size) in [(64, 14), (37, 14), (37, 4)] {
        let g = ConvGeometry::same(batch, size, size, 8, 12, 1);
        let x = pseudo(g.input_len(), 7);
        let wt = pseudo(g.weight_len(), 8);
        let dy = pseudo(g.output_len(), 9);
        let run = |threads: usize| {
            on_threads(threads, || {
                let mut ws = ConvWorkspace::default();
                let mut y = vec![0.0; g.output_len()];
                conv_forward(
                    GemmBackend::default(),
                    &g,
                    &x,
                    &wt,
                    ConvOps::train(None),
                    &mut ws,
                    &mut y,
                );
                let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
                conv_backward(
                    GemmBackend::default(),
                    &g,
                    Shards::local(&whole(batch)),
                    &mut ws,
                    &wt,
                    &dy,
                    ConvGrads {
                        dx: Some(&mut dx),
                        dw: &mut dw,
                        db: None,
                    },
                );
                (y, dx, dw)
            })
        };
        assert!(run(1) == run(3), "1 and 3 threads must agree bitwise");
    }
}

/// The evaluation forward gives the training forward's output bitwise, for uneven batches
/// and any thread count: on the implicit path it keeps no bordered images (one scratch image
/// per task); the column path is the same code in both.
#[test]
fn evaluation_forward_equals_training_forward_bitwise() {
    let mut paths = [0, 0];
    for &(n, h, w, cin, cout, stride) in &[
        (1, 9, 8, 3, 5, 1),
        (5, 8, 8, 4, 6, 1),
        (37, 14, 14, 8, 12, 1),
        (5, 4, 4, 6, 7, 1),
        (3, 8, 8, 4, 6, 2),
        (37, 4, 4, 8, 12, 1),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        paths[usize::from(ConvPlan::new(GemmBackend::Native, &g).accepts_prologue())] += 1;
        let x = pseudo(g.input_len(), 21);
        let wt = pseudo(g.weight_len(), 22);
        let b = pseudo(cout, 23);
        let mut train = vec![0.0; g.output_len()];
        conv_forward(
            GemmBackend::Native,
            &g,
            &x,
            &wt,
            ConvOps::train(Some(&b)),
            &mut ConvWorkspace::default(),
            &mut train,
        );
        for threads in [1, 2, 3] {
            let eval = on_threads(threads, || {
                let mut y = vec![f32::NAN; g.output_len()];
                let mut ws = ConvWorkspace::default();
                conv_forward(
                    GemmBackend::Native,
                    &g,
                    &x,
                    &wt,
                    ConvOps::eval(Epilogue::bias(Some(&b))),
                    &mut ws,
                    &mut y,
                );
                y
            });
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&eval), bits(&train), "{g:?} on {threads} threads");
        }
    }
    assert_eq!(paths, [3, 3], "three geometries per path");
}

/// A backward pass after the evaluation forward would read bordered images that were never
/// kept: it refuses instead of computing garbage.
#[test]
#[should_panic(expected = "keeps nothing for backward")]
fn backward_refuses_the_workspace_of_an_evaluation_forward() {
    let g = ConvGeometry::same(2, 8, 8, 3, 4, 1);
    let (x, wt, dy) = (
        pseudo(g.input_len(), 1),
        pseudo(g.weight_len(), 2),
        pseudo(g.output_len(), 3),
    );
    let mut ws = ConvWorkspace::default();
    let mut y = vec![0.0; g.output_len()];
    let ops = ConvOps::eval(Epilogue::NONE);
    conv_forward(GemmBackend::Native, &g, &x, &wt, ops, &mut ws, &mut y);
    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
    conv_backward(
        GemmBackend::Native,
        &g,
        Shards::local(&whole(2)),
        &mut ws,
        &wt,
        &dy,
        ConvGrads {
            dx: Some(&mut dx),
            dw: &mut dw,
            db: None,
        },
    );
}

/// Forward and backward of `g` (its batch this process's share) on `shards`: output, input,
/// weight and bias gradients as bits.
fn pass_bits(
    gemm: GemmBackend,
    g: &ConvGeometry,
    shards: Shards<'_>,
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
) -> [Vec<u32>; 4] {
    let mut ws = ConvWorkspace::default();
    let mut y = vec![f32::NAN; g.output_len()];
    conv_forward(gemm, g, x, wt, ConvOps::train(None), &mut ws, &mut y);
    let (mut dx, mut dw, mut db) = (
        vec![f32::NAN; x.len()],
        vec![f32::NAN; wt.len()],
        vec![f32::NAN; g.out_c],
    );
    conv_backward(
        gemm,
        g,
        shards,
        &mut ws,
        wt,
        dy,
        ConvGrads {
            dx: Some(&mut dx),
            dw: &mut dw,
            db: Some(&mut db),
        },
    );
    [y, dx, dw, db].map(|v| v.iter().map(|f| f.to_bits()).collect())
}

/// Two and four processes (threads standing in), each with its share of the batch and of the
/// 8 shards, get the weight and bias gradients of one process bitwise, and their images' output
/// and input gradient: on every path (implicit, columns in one and several row blocks, small
/// image, 1x1) and GEMM backend, with shards of unequal size (12 images in 8 shards).
#[test]
fn gradients_split_over_processes_equal_one_process() {
    for &(n, h, w, cin, cout, stride) in &[
        (16, 14, 14, 4, 6, 1),
        (12, 8, 8, 3, 5, 2),
        (16, 4, 4, 6, 7, 1),
        (12, 4, 4, 5, 6, 2),
        (16, 2, 2, 5, 7, 1),
        (12, 1, 1, 7, 9, 1),
        (16, 2, 2, 6, 5, 2),
    ] {
        let g = ConvGeometry::same(n, h, w, cin, cout, stride);
        let x = pseudo(g.input_len(), 31);
        let wt = pseudo(g.weight_len(), 32);
        let dy = pseudo(g.output_len(), 33);
        for &gemm in GemmBackend::available() {
            let one = pass_bits(gemm, &g, Shards::local(&whole(n)), &x, &wt, &dy);
            for ranks in [2, 4] {
                let got = as_processes(ranks, |rank, across| {
                    let span = ShardSpan::new(n, 8, rank * 8 / ranks, 8 / ranks);
                    let mine = ConvGeometry::same(n / ranks, h, w, cin, cout, stride);
                    let part = |len: usize| rank * len / ranks..(rank + 1) * len / ranks;
                    pass_bits(
                        gemm,
                        &mine,
                        Shards {
                            span: &span,
                            across,
                        },
                        &x[part(x.len())],
                        &wt,
                        &dy[part(dy.len())],
                    )
                });
                let what = format!("{gemm} {g:?}, {ranks} processes");
                for (rank, bits) in got.iter().enumerate() {
                    assert_eq!(bits[2], one[2], "{what}: dw on rank {rank}");
                    assert_eq!(bits[3], one[3], "{what}: db on rank {rank}");
                }
                for (i, name) in [(0, "y"), (1, "dx")] {
                    let joined: Vec<u32> = got.iter().flat_map(|b| b[i].clone()).collect();
                    assert_eq!(joined, one[i], "{what}: {name}");
                }
            }
        }
    }
}
