//! What the binary prints and writes: the seed's final lines, a throughput summary, JSON.

use anyhow::{Context, Result};
use bnconv_nn::train::RunReport;
use std::path::Path;

/// The seed notebook's closing lines for one run.
pub fn print_final(r: &RunReport) {
    outln!(
        "Final validation accuracy: {:>3.5}",
        r.final_validation.accuracy
    );
    outln!("Final test accuracy: {:>3.5}", r.test.accuracy);
    outln!(
        "Accuracy on 100 samples: {}",
        single_sample(r.single_sample_accuracy)
    );
}

/// The first-100 single-image accuracy, always with two decimals (it counts hundredths).
pub fn single_sample(accuracy: f32) -> String {
    format!("{accuracy:.2}")
}

/// How long the FMA probe runs (once per process, on one thread).
const PEAK_PROBE: std::time::Duration = std::time::Duration::from_millis(60);

/// [`peak_gflops_per_core`]'s source when no override is set.
const PEAK_MEASURED: &str = "measured";

/// The probe's result, measured once per process.
static MEASURED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// `BNCONV_PEAK_GFLOPS_PER_CORE`, when set to a positive number.
fn peak_override() -> Option<f64> {
    std::env::var("BNCONV_PEAK_GFLOPS_PER_CORE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

fn measure_peak() -> f64 {
    *MEASURED.get_or_init(|| bnconv_kernels::runtime::peak::fma_peak_gflops(PEAK_PROBE))
}

/// Starts measuring the peak on a thread of its own, for [`peak_gflops_per_core`] to find done:
/// called before loading the data (one thread, ~0.1-0.3 s), the probe's ~60 ms run on another
/// core instead of adding to the run's wall time. Does nothing when the peak is overridden, or
/// if the thread cannot start (the peak is then measured when first asked for).
pub fn start_peak_probe() {
    if peak_override().is_none() && MEASURED.get().is_none() {
        let _ = std::thread::Builder::new()
            .name("peak-probe".into())
            .spawn(measure_peak);
    }
}

/// The per-core fp32 FMA peak the share of peak is computed against, and where it came from:
/// `BNCONV_PEAK_GFLOPS_PER_CORE` when set to a positive number, else measured on this CPU
/// ([`bnconv_kernels::runtime::peak`]) once per process ([`start_peak_probe`], or the first time
/// it is asked for; a call while the probe runs waits for its result).
pub fn peak_gflops_per_core() -> (f64, &'static str) {
    match peak_override() {
        Some(v) => (v, "BNCONV_PEAK_GFLOPS_PER_CORE"),
        None => (measure_peak(), PEAK_MEASURED),
    }
}

/// Achieved training GFLOP/s as a share of the peak of the threads used (over every process).
fn peak_share(r: &RunReport) -> f64 {
    let threads: usize = r.layout.threads_per_rank.iter().sum();
    r.timing.achieved_gflops / (peak_gflops_per_core().0 * threads.max(1) as f64)
}

/// `2 ranks x 1 thread on vm, 8 shards, communication 0.21 ms/step`: how a run was spread out.
fn layout_line(r: &RunReport) -> String {
    let l = &r.layout;
    let mut threads = l.threads_per_rank.clone();
    threads.dedup();
    let threads = match threads.as_slice() {
        [t] => format!("{t} thread{}", if *t == 1 { "" } else { "s" }),
        _ => format!("threads {:?}", l.threads_per_rank),
    };
    let mut hosts = l.hosts.clone();
    hosts.sort();
    hosts.dedup();
    format!(
        "{} rank{} x {threads} on {}, {} shards, communication {:.3} ms/step",
        l.ranks,
        if l.ranks == 1 { "" } else { "s" },
        hosts.join(", "),
        l.shards,
        r.timing.comm_ms_per_step
    )
}

/// One row per variant: accuracy and throughput.
pub fn print_summary(reports: &[RunReport]) {
    outln!();
    outln!(
        "{:<12} {:>7} {:>8} {:>8} {:>12} {:>8} {:>9} {:>7} {:>9} {:>12} {:>8}",
        "variant",
        "bn",
        "val acc",
        "test acc",
        "train img/s",
        "ms/step",
        "GFLOP/s",
        "% peak",
        "wall s",
        "eval img/s",
        "threads"
    );
    for r in reports {
        let t = &r.timing;
        outln!(
            "{:<12} {:>7} {:>8.4} {:>8.4} {:>12.0} {:>8.2} {:>9.1} {:>6.1}% {:>9.2} {:>12.0} {:>8}",
            r.variant.name(),
            // The plain variant has no batch norm to fuse.
            if r.variant.uses_batch_norm() {
                r.bn_path.name()
            } else {
                "-"
            },
            r.final_validation.accuracy,
            r.test.accuracy,
            t.train_images_per_second,
            t.ms_per_step,
            t.achieved_gflops,
            100.0 * peak_share(r),
            t.wall_seconds,
            t.eval_images_per_second,
            t.threads,
        );
    }
    for r in reports.iter().filter(|r| r.layout.ranks > 1) {
        outln!("{:<12} MPI: {}", r.variant.name(), layout_line(r));
    }
    if let Some(r) = reports.first() {
        let (peak, source) = peak_gflops_per_core();
        let origin = if source == PEAK_MEASURED {
            "measured by an FMA loop on one core; BNCONV_PEAK_GFLOPS_PER_CORE overrides"
        } else {
            "from BNCONV_PEAK_GFLOPS_PER_CORE"
        };
        outln!(
            "(training throughput over the {} steps alone; GFLOP/s counts the nominal {:.3} GFLOP of \
             convolution and dense GEMM per step, padding taps included, even where bnconv skips them; \
             % peak = that over {peak:.1} GFLOP/s per thread ({origin}); wall = whole protocol incl. \
             evaluations; eval = test set in batches)",
            r.timing.train_steps,
            r.timing.gflop_per_step,
        );
    }
    outln!(
        "peak memory (resident set): {}",
        crate::memory::peak_rss_shown()
    );
}

/// Writes the reports as JSON to `path` (`-`: standard output). Which fields are timings (and so
/// differ between two otherwise identical runs) is listed in docs/outputs.md.
pub fn write_json(path: &Path, reports: &[RunReport]) -> Result<()> {
    let (peak, peak_source) = peak_gflops_per_core();
    let doc = serde_json::json!({
        "bnconv_version": env!("CARGO_PKG_VERSION"),
        "peak_gflops_per_core": peak,
        "peak_gflops_per_core_source": peak_source,
        "peak_share": reports.iter().map(peak_share).collect::<Vec<_>>(),
        "peak_rss_bytes": crate::memory::peak_rss_bytes(),
        "runs": json_value(&reports)?,
    });
    write_json_value(path, &doc)
}

/// `value` as a JSON tree whose numbers print as `value` prints them: an f32 keeps its shortest
/// round-trip decimal (`0.002`, not the widened `0.0020000000949949026` that
/// `serde_json::to_value` gives). Goes through the text, which is exact for every number.
pub fn json_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<serde_json::Value> {
    let text = serde_json::to_string(value).context("could not encode JSON")?;
    serde_json::from_str(&text).context("could not encode JSON")
}

/// `value` with the keys of every object in sorted order (whatever serde_json's map type).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Writes any serialisable document as pretty JSON with sorted keys and f32 figures as their
/// shortest decimals ([`json_value`]), to `path` (`-`: standard output) through
/// [`crate::outpath::write_output`].
pub fn write_json_value(path: &Path, doc: &impl serde::Serialize) -> Result<()> {
    let doc = sorted(json_value(doc)?);
    crate::outpath::write_output(path, |w| {
        serde_json::to_writer_pretty(&mut *w, &doc)?;
        w.write_all(b"\n")
    })
}
