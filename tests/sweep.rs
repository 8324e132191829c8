//! A seed sweep's runs, several at once on pools of their own, are bitwise the runs one gets
//! alone: every loss, accuracy and the final weights' digest of each (variant, seed) equal those
//! of `run_protocol` on a pool of another size. Runs are short (20 batches of 16) with
//! validation and test cut to 500 images.

#[path = "support/report_bits.rs"]
mod report_bits;

use bnconv_nn::mnist::Mnist;
use bnconv_nn::sweep::{run_sweep, SweepConfig};
use bnconv_nn::sweep_summary::summarize;
use bnconv_nn::train::{run_protocol, TrainConfig};
use bnconv_nn::Variant;
use std::path::Path;
use std::sync::Mutex;

fn data() -> Mnist {
    let full = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("load data/mnist");
    Mnist {
        validation: full.validation.slice(0..500),
        test: full.test.slice(0..500),
        train: full.train,
    }
}

fn base() -> TrainConfig {
    let mut cfg = TrainConfig::protocol(Variant::Bn);
    cfg.batches = 20;
    cfg.batch_size = 16;
    cfg.eval_batch = 128;
    cfg
}

#[test]
fn every_sweep_run_equals_the_same_run_alone_bit_for_bit() {
    let data = data();
    let cfg = SweepConfig {
        base: base(),
        variants: vec![Variant::Plain, Variant::Bn],
        seeds: vec![4, 9],
        jobs: 2,
        threads_per_job: 1,
    };
    let finished = Mutex::new(Vec::new());
    let sweep = run_sweep(&cfg, &data, &|run| {
        finished.lock().unwrap().push((run.index, run.job));
    })
    .expect("the sweep runs");
    let finished = finished.into_inner().unwrap();
    assert_eq!(finished.len(), 4, "on_done once per run: {finished:?}");
    assert_eq!(sweep.runs.len(), 4);
    assert!(sweep.wall_seconds > 0.0);

    let alone_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let mut digests = Vec::new();
    for (run, run_cfg) in sweep.runs.iter().zip(cfg.runs()) {
        assert_eq!((run.variant, run.seed), (run_cfg.variant, run_cfg.seed));
        assert!(run.job < 2);
        let swept = run.outcome.as_ref().expect("a healthy run");
        assert_eq!(swept.timing.threads, 1);
        let alone = alone_pool
            .install(|| run_protocol(&run_cfg, &data, &mut |_| {}))
            .expect("a healthy run");
        let what = format!("{} seed {}: sweep vs alone", run.variant, run.seed);
        report_bits::assert_same_results(swept, &alone, &what);
        digests.push(swept.parameters_sha256.clone());
    }
    // Guards the comparison: four different runs, four different final states.
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4);

    let summary = summarize(&cfg.variants, &sweep.runs);
    assert_eq!(summary.len(), 2);
    for s in &summary {
        assert_eq!(s.test_accuracy.len(), 2, "{s:?}");
        assert!(s.failed_seeds.is_empty());
        assert!(s.min <= s.max && s.min as f64 <= s.mean && s.mean <= s.max as f64);
    }
}

#[test]
fn a_diverging_run_is_reported_and_the_others_finish() {
    let data = data();
    let mut base = base();
    base.adam.lr = 1e30;
    base.batches = 3;
    let cfg = SweepConfig {
        base,
        variants: vec![Variant::Plain, Variant::Bn],
        seeds: vec![1],
        jobs: 2,
        threads_per_job: 1,
    };
    let sweep = run_sweep(&cfg, &data, &|_| {}).expect("the sweep runs");
    let failed: Vec<_> = sweep
        .runs
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| (r.variant, e.to_string())))
        .collect();
    assert!(!failed.is_empty(), "lr 1e30 diverges");
    for (variant, err) in &failed {
        assert!(err.contains("diverged"), "{variant}: {err}");
    }
    let summary = summarize(&cfg.variants, &sweep.runs);
    let listed: usize = summary.iter().map(|s| s.failed_seeds.len()).sum();
    assert_eq!(listed, failed.len());
}
