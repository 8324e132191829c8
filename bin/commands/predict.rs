//! `bnconv predict --checkpoint FILE IMAGE...`: classifies image files of digits. Each file is
//! read and fitted to 28x28 on its own ([`crate::digit_image`]); a file that cannot be read is
//! reported by name and the others are still classified, then the command fails.

use crate::checkpoints::{integrity_name, read_checkpoint};
use crate::cli::{threads_option, to_usize, PredictArgs};
use crate::digit_image::{self, DigitImage};
use crate::outpath::{self, check_output};
use crate::report::write_json_value;
use anyhow::{bail, Context, Result};
use bnconv_nn::mnist::Dataset;
use bnconv_nn::predictions::top_classes;
use bnconv_nn::{Exec, Mode};
use std::path::PathBuf;

/// Images per forward pass (logits do not depend on it).
const BATCH: usize = 256;

/// A border brighter than this on average suggests a dark digit on a light background.
const LIGHT_BORDER: f32 = 0.5;

#[derive(serde::Serialize)]
struct Classified {
    image: PathBuf,
    predicted: usize,
    /// The top classes, most likely first, with sigmoid(logit).
    top: Vec<ClassProbability>,
    logits: Vec<f32>,
    width: u32,
    height: u32,
}

#[derive(serde::Serialize)]
struct ClassProbability {
    class: usize,
    probability: f32,
}

#[derive(serde::Serialize)]
struct Failed {
    image: PathBuf,
    error: String,
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let threads = threads_option(args.threads)?;
    let top = to_usize(args.top, "--top")?;
    if let Some(json) = &args.json {
        check_output("--json", json)?;
        if outpath::is_stdout(json) {
            crate::stdout::report_to_stderr();
        }
    }
    let checkpoint = read_checkpoint("--checkpoint", &args.checkpoint, args.no_verify)?;
    let info = checkpoint.info().clone();
    let mut net = checkpoint
        .network(Exec::default())
        .context("--checkpoint")?;
    drop(checkpoint);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")?;

    let mut loaded: Vec<(PathBuf, DigitImage)> = Vec::new();
    let mut failed: Vec<Failed> = Vec::new();
    for path in &args.images {
        match digit_image::load(path, args.invert, args.fit) {
            Ok(image) => loaded.push((path.clone(), image)),
            Err(e) => {
                eprintln!("error: {}: {e:#}", path.display());
                failed.push(Failed {
                    image: path.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }

    let mut classified = Vec::with_capacity(loaded.len());
    let mut x = Vec::with_capacity(BATCH.min(loaded.len()) * Dataset::PIXELS);
    for chunk in loaded.chunks(BATCH) {
        x.clear();
        for (_, image) in chunk {
            x.extend_from_slice(&image.pixels);
        }
        let logits = pool.install(|| net.forward(&x, chunk.len(), Mode::Eval).data().to_vec());
        for ((path, image), logits) in chunk.iter().zip(logits.chunks_exact(Dataset::CLASSES)) {
            let best = top_classes(logits, top);
            classified.push(Classified {
                image: path.clone(),
                predicted: best[0].0,
                top: best
                    .iter()
                    .map(|&(class, probability)| ClassProbability { class, probability })
                    .collect(),
                logits: logits.to_vec(),
                width: image.width,
                height: image.height,
            });
            if image.border_mean > LIGHT_BORDER {
                eprintln!(
                    "warning: {}: the border is light (mean {:.2}); MNIST digits are white on \
                     black: if this is a dark digit on a light background, use --invert",
                    path.display(),
                    image.border_mean
                );
            }
        }
    }

    for c in &classified {
        let others: Vec<String> = c.top[1..]
            .iter()
            .map(|t| format!("{} (p={:.2})", t.class, t.probability))
            .collect();
        let rest = if others.is_empty() {
            String::new()
        } else {
            format!("; then {}", others.join(", "))
        };
        outln!(
            "{}: {} (p={:.2}){rest}",
            c.image.display(),
            c.predicted,
            c.top[0].probability
        );
    }

    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "bnconv_version": env!("CARGO_PKG_VERSION"),
            "checkpoint": args.checkpoint,
            "integrity": integrity_name(info.integrity),
            "variant": info.variant,
            "steps": info.steps,
            "invert": args.invert,
            "fit": args.fit.name(),
            "probability": "sigmoid of the class's logit (the network is trained with sigmoid cross-entropy per class)",
            "predictions": crate::report::json_value(&classified)?,
            "errors": failed,
        });
        write_json_value(path, &doc)?;
        outln!("wrote {}", outpath::shown(path));
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} image(s) could not be classified",
            failed.len(),
            args.images.len()
        );
    }
    Ok(())
}
