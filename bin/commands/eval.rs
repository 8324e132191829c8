//! `bnconv eval --checkpoint FILE`: loads a checkpoint and reports validation and test accuracy
//! and loss (eval mode: BN uses the stored moving statistics), the first-100 single-image
//! accuracy, and evaluation throughput.

use crate::cli::{default_data_dir, EvalArgs};
use crate::outpath::check_output;
use anyhow::{Context, Result};
use bnconv_nn::checkpoint::load_network;
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{evaluate, single_sample_accuracy};
use bnconv_nn::Exec;

pub fn run(args: &EvalArgs) -> Result<()> {
    let threads = match args.threads {
        Some(t) => usize::try_from(t).context("--threads is too large")?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let eval_batch = usize::try_from(args.eval_batch).context("--eval-batch is too large")?;
    if let Some(json) = &args.json {
        check_output("--json", json)?;
    }
    let exec = Exec {
        gemm: args.gemm,
        bn_path: args.bn,
        ..Exec::default()
    };
    // The checkpoint before the data: a bad file is reported without waiting for MNIST.
    let (mut net, info) = load_network(&args.checkpoint, exec)?;
    let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")?;
    let data = Mnist::load(&data_dir)
        .with_context(|| format!("could not load MNIST from {}", data_dir.display()))?;
    outln!(
        "bnconv eval: {} ({}, {} training steps); {} validation / {} test images from {}; {} thread(s), BN {}, GEMM {}, SIMD {}",
        args.checkpoint.display(),
        info.variant,
        info.steps,
        data.validation.len(),
        data.test.len(),
        data_dir.display(),
        threads,
        exec.bn_path,
        exec.gemm,
        bnconv_kernels::simd::active_isa().name(),
    );
    let (validation, test, single) = pool.install(|| {
        let _awake = bnconv_kernels::runtime::keep_awake::KeepAwake::start();
        let validation = evaluate(&mut net, &data.validation, eval_batch);
        let test = evaluate(&mut net, &data.test, eval_batch);
        let single = single_sample_accuracy(&mut net, &data.test, 100);
        (validation, test, single)
    });
    for (set, e) in [("Validation", &validation), ("Test", &test)] {
        outln!(
            "{set} loss: {:.5}, {set} accuracy: {:.5}  ({} images, {:.0} img/s)",
            e.loss,
            e.accuracy,
            e.images,
            e.images as f64 / e.seconds
        );
    }
    outln!("Accuracy on 100 samples: {single}");
    let eval_images_per_second = test.images as f64 / test.seconds;
    outln!(
        "eval img/s: {eval_images_per_second:.0} (test set, batches of {eval_batch}, {threads} thread(s))"
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "bnconv_version": env!("CARGO_PKG_VERSION"),
            "checkpoint": args.checkpoint,
            "variant": info.variant,
            "steps": info.steps,
            "threads": threads,
            "bn_path": exec.bn_path,
            "gemm": exec.gemm.name(),
            "isa": bnconv_kernels::simd::active_isa().name(),
            "eval_batch": eval_batch,
            "validation": validation,
            "test": test,
            "single_sample_accuracy": single,
            "eval_images_per_second": eval_images_per_second,
        });
        bnconv_nn::atomic_write::write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &doc)?;
            w.write_all(b"\n")
        })
        .with_context(|| format!("could not write {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}
