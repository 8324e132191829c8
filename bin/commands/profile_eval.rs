//! `bnconv profile --eval`: where the evaluation's time goes. After the warm-up training steps
//! (so that batch norm's moving statistics are those of a network in training), the test set is
//! evaluated in rounds that alternate the two evaluation paths: whole network per task
//! (batches of 500, the protocol's) and layer by layer (batches of 128, each layer spread over
//! the pool). Each round's throughput is kept; one extra evaluation per path with the profiler
//! on gives each layer's time: summed over the threads on the per-task path (each task runs
//! every layer on its own thread), wall time on the layer-by-layer path.

use crate::cli::ProfileArgs;
use crate::outpath;
use crate::report;
use anyhow::{Context, Result};
use bnconv_kernels::runtime::profile;
use bnconv_nn::mnist::Mnist;
use bnconv_nn::network::EVAL_BLOCK;
use bnconv_nn::train::{evaluate, TrainConfig, Trainer};
use bnconv_nn::Shape;

/// Test-set evaluations per path.
const ROUNDS: usize = 5;

/// The protocol's evaluation batch (run per task).
const PER_TASK_BATCH: usize = 500;

/// One evaluation path's figures.
#[derive(serde::Serialize)]
struct PathFigures {
    /// Images per evaluation batch.
    eval_batch: usize,
    /// Test-set images per second, each round.
    rounds_images_per_second: Vec<f64>,
    images_per_second_median: f64,
    /// Per layer, in network order (layers whose work is folded into the one before get 0).
    layers: Vec<LayerFigures>,
}

#[derive(serde::Serialize)]
struct LayerFigures {
    name: String,
    /// Milliseconds for the whole test set: thread time summed over the threads on the per-task
    /// path, wall time on the layer-by-layer path.
    ms: f64,
    /// Nominal GEMM flops (padding taps included) over that time.
    gflops: f64,
}

#[derive(serde::Serialize)]
struct EvalProfile {
    variant: String,
    threads: usize,
    images: usize,
    warmup_steps: usize,
    gemm: String,
    isa: String,
    per_task: PathFigures,
    layer_by_layer: PathFigures,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the evaluation profile on `threads` threads.
pub fn run(
    args: &ProfileArgs,
    cfg: &TrainConfig,
    data: &Mnist,
    threads: usize,
    warmup: usize,
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")?;
    let doc = pool.install(|| -> Result<EvalProfile> {
        let mut trainer = Trainer::new(cfg, data.train.len());
        for _ in 0..warmup {
            trainer.step(&data.train)?;
        }
        let net = &mut trainer.net;
        let batches = [PER_TASK_BATCH, EVAL_BLOCK];
        // Untimed first pass per path: buffers sized, caches warm.
        for b in batches {
            evaluate(net, &data.test, b);
        }
        let mut rounds = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (r, b) in rounds.iter_mut().zip(batches) {
                let e = evaluate(net, &data.test, b);
                r.push(e.images as f64 / e.seconds);
            }
        }
        // Nominal flops of one image through each layer.
        let mut shape = Shape::new(&[1, 28, 28, 1]);
        let mut flops = Vec::new();
        for layer in net.layers() {
            flops.push(layer.forward_flops(shape));
            shape = layer
                .output_shape(shape)
                .expect("shapes were validated when the network was built");
        }
        let images = data.test.len();
        let mut paths = Vec::new();
        for (r, b) in rounds.into_iter().zip(batches) {
            profile::reset();
            profile::set_enabled(true);
            evaluate(net, &data.test, b);
            profile::set_enabled(false);
            let snapshot = profile::snapshot();
            let layers = net
                .layers()
                .iter()
                .enumerate()
                .map(|(i, layer)| {
                    let ms = snapshot.rows[i].layer_ns[0] as f64 / 1e6;
                    let gflop = (flops[i] * images as u64) as f64 / 1e9;
                    LayerFigures {
                        name: layer.name().to_string(),
                        ms,
                        gflops: if ms > 0.0 { gflop / (ms / 1e3) } else { 0.0 },
                    }
                })
                .collect();
            paths.push(PathFigures {
                eval_batch: b,
                images_per_second_median: median(&r),
                rounds_images_per_second: r,
                layers,
            });
        }
        let layer_by_layer = paths.pop().expect("two paths");
        let per_task = paths.pop().expect("two paths");
        Ok(EvalProfile {
            variant: cfg.variant.name().to_string(),
            threads,
            images,
            warmup_steps: warmup,
            gemm: cfg.exec.gemm.name().to_string(),
            isa: bnconv_kernels::simd::active_isa().name().to_string(),
            per_task,
            layer_by_layer,
        })
    })?;
    print(&doc);
    if let Some(path) = &args.json {
        report::write_json_value(path, &doc)?;
        outln!("wrote {}", outpath::shown(path));
    }
    Ok(())
}

fn print(d: &EvalProfile) {
    outln!(
        "bnconv profile --eval: {} network, evaluation of the {} test images on {} thread(s) after {} training step(s), GEMM {}, SIMD {}; {ROUNDS} rounds per path, alternated",
        d.variant, d.images, d.threads, d.warmup_steps, d.gemm, d.isa
    );
    for (name, p) in [
        ("whole network per task", &d.per_task),
        ("layer by layer", &d.layer_by_layer),
    ] {
        let (lo, hi) = p
            .rounds_images_per_second
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        outln!(
            "  {name:<24} (--eval-batch {:>3}): {:>8.0} img/s median ({lo:.0}-{hi:.0})",
            p.eval_batch,
            p.images_per_second_median
        );
    }
    outln!(
        "\nPer layer (one profiled evaluation per path; nominal GFLOP/s, padding taps included):"
    );
    outln!(
        "  {:<10} {:>14} {:>8} {:>10} {:>12} {:>8} {:>10}",
        "layer",
        "per task ms*",
        "share",
        "GFLOP/s*",
        "by layer ms",
        "share",
        "GFLOP/s"
    );
    let total = |p: &PathFigures| p.layers.iter().map(|l| l.ms).sum::<f64>().max(1e-9);
    let (ta, tb) = (total(&d.per_task), total(&d.layer_by_layer));
    for (a, b) in d.per_task.layers.iter().zip(&d.layer_by_layer.layers) {
        if a.ms == 0.0 && b.ms == 0.0 {
            continue;
        }
        outln!(
            "  {:<10} {:>14.1} {:>7.1}% {:>10.1} {:>12.1} {:>7.1}% {:>10.1}",
            a.name,
            a.ms,
            100.0 * a.ms / ta,
            a.gflops,
            b.ms,
            100.0 * b.ms / tb,
            b.gflops
        );
    }
    outln!(
        "  {:<10} {:>14.1} {:>8} {:>10} {:>12.1}",
        "total",
        ta,
        "",
        "",
        tb
    );
    outln!(
        "  * per task: thread time summed over the {} thread(s) (each task runs every layer on one thread), so GFLOP/s per thread; layer by layer: wall time. A layer whose map is folded into the one before shows no time of its own.",
        d.threads
    );
}
