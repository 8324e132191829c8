//! `bnconv eval --checkpoint FILE`: loads a checkpoint and reports validation and test accuracy
//! and loss (eval mode: BN uses the stored moving statistics), the first-100 single-image
//! accuracy, evaluation throughput, and the confusion matrix of one set (`--split`), which
//! `--predictions` writes image by image and `--plot` draws.

use crate::checkpoints::{integrity_name, read_checkpoint};
use crate::cli::{default_data_dir, threads_option, EvalArgs, Split};
use crate::launch;
use crate::outpath::{self, check_output, check_plot_path};
use crate::plot;
use crate::report;
use anyhow::{Context, Result};
use bnconv_nn::confusion::ConfusionMatrix;
use bnconv_nn::distributed::Team;
use bnconv_nn::mnist::Mnist;
use bnconv_nn::predictions::evaluate_predictions;
use bnconv_nn::train::{evaluate, single_sample_accuracy};
use bnconv_nn::Exec;

/// Off-diagonal cells named in the "most confused" line and in the JSON.
const MOST_CONFUSED: usize = 5;

/// Evaluates the checkpoint; under mpirun each rank evaluates its part of each set and rank 0
/// reports the whole and writes the files.
pub fn run(team: &Team, args: &EvalArgs) -> Result<()> {
    let threads = threads_option(args.threads)?;
    let eval_batch = usize::try_from(args.eval_batch).context("--eval-batch is too large")?;
    outpath::check_one_stdout(&[
        ("--json", args.json.as_deref()),
        ("--predictions", args.predictions.as_deref()),
    ])?;
    // Every rank ends with the same figures: rank 0 writes the files.
    let root = team.is_root();
    let json = args.json.as_ref().filter(|_| root);
    let predictions_csv = args.predictions.as_ref().filter(|_| root);
    let plot_path = args.plot.as_deref().filter(|_| root);
    for (flag, output) in [("--json", json), ("--predictions", predictions_csv)] {
        if let Some(path) = output {
            check_output(flag, path)?;
            if outpath::is_stdout(path) {
                crate::stdout::report_to_stderr();
            }
        }
    }
    let plot_format = plot_path
        .map(|p| check_plot_path("--plot", p))
        .transpose()?;
    let exec = Exec {
        gemm: args.gemm,
        bn_path: args.bn,
        team: team.clone(),
        ..Exec::default()
    };
    // The checkpoint before the data: a bad file is reported without waiting for MNIST.
    let checkpoint = read_checkpoint("--checkpoint", &args.checkpoint, args.no_verify)?;
    let info = checkpoint.info().clone();
    let mut net = checkpoint.network(exec.clone()).context("--checkpoint")?;
    drop(checkpoint);
    let data_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")?;
    let data = Mnist::load(&data_dir)
        .with_context(|| format!("could not load MNIST from {}", data_dir.display()))?;
    if team.ranks() > 1 {
        let mut description = launch::describe_build();
        for (k, v) in [
            (
                "checkpoint",
                format!("{} after {} steps", info.variant, info.steps),
            ),
            (
                "weights (SHA-256)",
                bnconv_nn::digest::parameters_sha256(&mut net),
            ),
            ("BN path", args.bn.to_string()),
            ("GEMM", args.gemm.to_string()),
            ("eval batch", eval_batch.to_string()),
            ("split", args.split.name().to_string()),
            ("data (SHA-256)", launch::data_sha256(&data)),
        ] {
            description.push((k.to_string(), v));
        }
        launch::agree(team, &description)?;
    }
    // Under mpirun: how many processes share the evaluation (the thread count is each one's).
    let ranks = match team.ranks() {
        1 => String::new(),
        n => format!("{n} MPI ranks x "),
    };
    outln!(
        "bnconv eval: {} ({}, {} training steps); {} validation / {} test images from {}; {ranks}{} thread(s), BN {}, GEMM {}, SIMD {}",
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
    // The --split set is evaluated image by image (the same figures as `evaluate`), the other
    // as a whole.
    let (validation, test, single, predictions) = pool.install(|| {
        let _awake = bnconv_nn::distributed::keep_awake(&net.exec().team);
        let (validation, test, predictions) = match args.split {
            Split::Validation => {
                let (v, p) = evaluate_predictions(&mut net, &data.validation, eval_batch);
                (v, evaluate(&mut net, &data.test, eval_batch), p)
            }
            Split::Test => {
                let v = evaluate(&mut net, &data.validation, eval_batch);
                let (t, p) = evaluate_predictions(&mut net, &data.test, eval_batch);
                (v, t, p)
            }
        };
        let single = single_sample_accuracy(&mut net, &data.test, 100);
        (validation, test, single, predictions)
    });
    let confusion = predictions.confusion();
    for (set, e) in [("Validation", &validation), ("Test", &test)] {
        outln!(
            "{set} loss: {:.5}, {set} accuracy: {:.5}  ({} images, {:.0} img/s)",
            e.loss,
            e.accuracy,
            e.images,
            e.images as f64 / e.seconds
        );
    }
    outln!("Accuracy on 100 samples: {}", report::single_sample(single));
    let eval_images_per_second = test.images as f64 / test.seconds;
    outln!(
        "eval img/s: {eval_images_per_second:.0} (test set, batches of {eval_batch}, {threads} thread(s))"
    );
    print_confusion(&confusion, args.split);
    let most_confused = confusion.most_confused(MOST_CONFUSED);
    if let Some(path) = predictions_csv {
        outpath::write_output(path, |w| predictions.write_csv(w))?;
        outln!(
            "wrote {} ({} rows, the {} set)",
            outpath::shown(path),
            predictions.len(),
            args.split.name()
        );
    }
    if let (Some(path), Some(format)) = (plot_path, plot_format) {
        let title = format!(
            "{} after {} steps: {} set, {} of {} correct",
            info.variant,
            info.steps,
            args.split.name(),
            confusion.correct(),
            confusion.total()
        );
        plot::confusion_heatmap(path, format, &confusion, &title)?;
        outln!("wrote {}", outpath::shown(path));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "bnconv_version": env!("CARGO_PKG_VERSION"),
            "checkpoint": args.checkpoint,
            "integrity": integrity_name(info.integrity),
            "variant": info.variant,
            "steps": info.steps,
            "threads": threads,
            "ranks": team.ranks(),
            "bn_path": exec.bn_path,
            "gemm": exec.gemm.name(),
            "isa": bnconv_kernels::simd::active_isa().name(),
            "eval_batch": eval_batch,
            "validation": report::json_value(&validation)?,
            "test": report::json_value(&test)?,
            "single_sample_accuracy": report::json_value(&single)?,
            "eval_images_per_second": eval_images_per_second,
            "split": args.split,
            "confusion": report::json_value(&confusion)?,
            "most_confused": report::json_value(&most_confused)?,
            "peak_rss_bytes": crate::memory::peak_rss_bytes(),
        });
        report::write_json_value(path, &doc)?;
        outln!("wrote {}", outpath::shown(path));
    }
    Ok(())
}

/// The confusion matrix of `split`, its correct count and its most confused pairs.
fn print_confusion(m: &ConfusionMatrix, split: Split) {
    outln!();
    outln!(
        "Confusion matrix, {} set ({} of {} correct; rows: true class, columns: predicted):",
        split.name(),
        m.correct(),
        m.total()
    );
    for line in m.to_string().lines() {
        outln!("{line}");
    }
    let pairs = m.most_confused(MOST_CONFUSED);
    if pairs.is_empty() {
        outln!("No image misclassified.");
    } else {
        let pairs: Vec<String> = pairs.iter().map(ToString::to_string).collect();
        outln!(
            "Most confused (true -> predicted, count): {}",
            pairs.join(", ")
        );
    }
}
