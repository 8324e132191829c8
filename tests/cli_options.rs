//! Every run option of `bnconv train` and `compare` has its effect: the binary, run with a
//! non-default value for each option at once, must give what the library's `run_protocol` gives
//! under the same configuration (weights digest, every step's loss, final figures) and echo each
//! setting in its JSON; and each option that changes results does change them (negative
//! controls: the library run with that one option left at its default ends with other weights).
//! An option the command line parsed but did not pass on fails the first test, naming it.
//!
//! Options that by design do not change results (`--bn`, `--threads`, `--eval-batch`: bitwise
//! equal runs, see tests/determinism.rs) are checked through the echo, which the library writes
//! from the configuration it ran (`timing.threads` is the size of the pool it ran on).

#[path = "support/binary.rs"]
mod binary;
#[path = "support/small_mnist.rs"]
mod small_mnist;

use binary::{bnconv_ok, read_json, scratch};
use bnconv_kernels::GemmBackend;
use bnconv_nn::adam::AdamConfig;
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{run_protocol, RunReport, TrainConfig};
use bnconv_nn::{BnPath, Exec, Variant};
use serde_json::Value;
use small_mnist::small_data;
use std::path::Path;
use std::sync::OnceLock;

/// The settings of one run: what `train` takes on its command line.
#[derive(Clone, Debug)]
struct Settings {
    variant: Variant,
    seed: u64,
    bn: BnPath,
    gemm: GemmBackend,
    eval_batch: usize,
    batch_size: usize,
    lr: f32,
    threads: usize,
    batches: usize,
    shards: usize,
    /// The small MNIST (`--data`), or the repository's full one.
    small_data: bool,
}

/// A non-default value for every option (the defaults: bn, seed 1, fused, bnconv, 500, 64,
/// 0.002, every core, 800 batches, 8 shards, ./data/mnist).
fn chosen() -> Settings {
    Settings {
        variant: Variant::BnLowLevel,
        seed: 7,
        bn: BnPath::Unfused,
        gemm: GemmBackend::MatrixMultiply,
        eval_batch: 333,
        batch_size: 24,
        lr: 0.005,
        threads: 3,
        batches: 4,
        shards: 4,
        small_data: true,
    }
}

/// The value the command line uses when the option is not given.
fn defaults() -> TrainConfig {
    TrainConfig::protocol(Variant::Bn)
}

impl Settings {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            variant: self.variant,
            batches: self.batches,
            batch_size: self.batch_size,
            adam: AdamConfig {
                lr: self.lr,
                ..AdamConfig::default()
            },
            seed: self.seed,
            exec: Exec {
                gemm: self.gemm,
                bn_path: self.bn,
                shards: self.shards,
                ..Exec::default()
            },
            eval_batch: self.eval_batch,
        }
    }

    fn data_dir(&self) -> String {
        if self.small_data {
            small_data().to_string()
        } else {
            concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist").to_string()
        }
    }

    /// The run options on the command line.
    fn args(&self) -> Vec<String> {
        [
            ("--seed", self.seed.to_string()),
            ("--bn", self.bn.name().to_string()),
            ("--gemm", self.gemm.name().to_string()),
            ("--eval-batch", self.eval_batch.to_string()),
            ("--batch-size", self.batch_size.to_string()),
            ("--lr", self.lr.to_string()),
            ("--threads", self.threads.to_string()),
            ("--batches", self.batches.to_string()),
            ("--shards", self.shards.to_string()),
            ("--data", self.data_dir()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }

    /// The library's run of these settings, on a pool of `threads` threads.
    fn library(&self) -> RunReport {
        let data = Mnist::load(Path::new(&self.data_dir())).expect("MNIST loads");
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .expect("a pool")
            .install(|| run_protocol(&self.config(), &data, &mut |_| {}))
            .expect("the run trains")
    }
}

/// The library's run of [`chosen`], made once for the tests that need it.
fn chosen_library_run() -> &'static RunReport {
    static RUN: OnceLock<RunReport> = OnceLock::new();
    RUN.get_or_init(|| chosen().library())
}

/// Runs `bnconv <command> <args> --json FILE --quiet` and returns the JSON's runs.
fn binary_runs(command: &str, args: &[String]) -> Vec<Value> {
    let dir = scratch("cli-options", command);
    let json = dir.join("run.json");
    let mut all: Vec<&str> = vec![command, "--quiet", "--json", json.to_str().unwrap()];
    all.extend(args.iter().map(String::as_str));
    bnconv_ok(&all);
    read_json(&json)["runs"]
        .as_array()
        .expect("a runs array")
        .clone()
}

fn f32_of(v: &Value, what: &str) -> f32 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}")) as f32
}

/// Fails unless the binary's JSON run echoes every setting of `s` and has the library report's
/// results bit for bit, listing every option whose echo differs and every result that does.
fn assert_run_is(run: &Value, s: &Settings, lib: &RunReport) {
    let lr = f32_of(&run["adam"]["lr"], "adam.lr");
    let echoes: [(&str, Value, Value); 10] = [
        ("--variant", run["variant"].clone(), s.variant.name().into()),
        ("--seed", run["seed"].clone(), s.seed.into()),
        ("--bn", run["bn_path"].clone(), s.bn.name().into()),
        ("--gemm", run["gemm"].clone(), s.gemm.name().into()),
        (
            "--eval-batch",
            run["eval_batch"].clone(),
            s.eval_batch.into(),
        ),
        (
            "--batch-size",
            run["batch_size"].clone(),
            s.batch_size.into(),
        ),
        ("--lr", lr.to_bits().into(), s.lr.to_bits().into()),
        (
            "--threads",
            run["timing"]["threads"].clone(),
            s.threads.into(),
        ),
        ("--batches", run["batches"].clone(), s.batches.into()),
        ("--shards", run["layout"]["shards"].clone(), s.shards.into()),
    ];
    let mut wrong: Vec<String> = echoes
        .into_iter()
        .filter(|(_, got, want)| got != want)
        .map(|(flag, got, want)| format!("{flag}: the run used {got}, not the {want} given"))
        .collect();
    // `--data`: the evaluations ran on the given set (the small one has 500 test images).
    if run["test"]["images"].as_u64() != Some(lib.test.images as u64) {
        wrong.push(format!(
            "--data: the run tested {} images, not the {} of the given set",
            run["test"]["images"], lib.test.images
        ));
    }
    let bits = |v: &Value, what: &str| -> Vec<u32> {
        match v.as_array() {
            Some(a) => a.iter().map(|x| f32_of(x, what).to_bits()).collect(),
            None => vec![f32_of(v, what).to_bits()],
        }
    };
    let results: [(&str, Vec<u32>, Vec<u32>); 6] = [
        (
            "step_losses",
            bits(&run["step_losses"], "a step loss"),
            lib.step_losses.iter().map(|v| v.to_bits()).collect(),
        ),
        (
            "final_validation.loss",
            bits(&run["final_validation"]["loss"], "loss"),
            vec![lib.final_validation.loss.to_bits()],
        ),
        (
            "final_validation.accuracy",
            bits(&run["final_validation"]["accuracy"], "accuracy"),
            vec![lib.final_validation.accuracy.to_bits()],
        ),
        (
            "test.loss",
            bits(&run["test"]["loss"], "loss"),
            vec![lib.test.loss.to_bits()],
        ),
        (
            "test.accuracy",
            bits(&run["test"]["accuracy"], "accuracy"),
            vec![lib.test.accuracy.to_bits()],
        ),
        (
            "single_sample_accuracy",
            bits(&run["single_sample_accuracy"], "accuracy"),
            vec![lib.single_sample_accuracy.to_bits()],
        ),
    ];
    for (what, got, want) in results {
        if got != want {
            wrong.push(format!("{what} differs from the library's run"));
        }
    }
    if run["parameters_sha256"].as_str() != Some(lib.parameters_sha256.as_str()) {
        wrong.push("the final weights (parameters_sha256) differ from the library's".into());
    }
    assert!(
        wrong.is_empty(),
        "{} {}:\n  {}",
        s.variant,
        s.args().join(" "),
        wrong.join("\n  ")
    );
}

#[test]
fn train_with_every_option_set_is_the_library_run_of_those_settings() {
    let s = chosen();
    let mut args = s.args();
    args.extend(["--variant".to_string(), s.variant.name().to_string()]);
    let runs = binary_runs("train", &args);
    assert_eq!(runs.len(), 1);
    assert_run_is(&runs[0], &s, chosen_library_run());
}

#[test]
fn compare_trains_each_listed_variant_with_the_options() {
    let s = Settings {
        variant: Variant::Plain,
        batches: 2,
        threads: 2,
        ..chosen()
    };
    let mut args = s.args();
    args.extend(["--variants".to_string(), "plain,bn-lowlevel".to_string()]);
    let runs = binary_runs("compare", &args);
    assert_eq!(runs.len(), 2, "one run per listed variant");
    for (run, variant) in runs.iter().zip([Variant::Plain, Variant::BnLowLevel]) {
        let s = Settings {
            variant,
            ..s.clone()
        };
        assert_run_is(run, &s, &s.library());
    }
}

/// Negative controls: the library run of [`chosen`] with one option set back to its default
/// ends with other weights, so the comparison above sees that option.
macro_rules! changes_the_weights {
    ($($name:ident: |$s:ident| $reset:expr;)+) => {$(
        #[test]
        fn $name() {
            let mut $s = chosen();
            $reset;
            let other = $s.library();
            assert_ne!(
                other.parameters_sha256,
                chosen_library_run().parameters_sha256,
                "{}: the default gives the same weights, so the test cannot see the option",
                stringify!($name)
            );
        }
    )+};
}

changes_the_weights! {
    default_seed_changes_the_weights: |s| s.seed = defaults().seed;
    default_variant_changes_the_weights: |s| s.variant = defaults().variant;
    default_gemm_changes_the_weights: |s| s.gemm = defaults().exec.gemm;
    default_batch_size_changes_the_weights: |s| s.batch_size = defaults().batch_size;
    default_lr_changes_the_weights: |s| s.lr = defaults().adam.lr;
    fewer_batches_change_the_weights: |s| s.batches -= 1;
    default_shards_change_the_weights: |s| s.shards = defaults().exec.shards;
    the_full_data_changes_the_weights: |s| s.small_data = false;
}

/// The options that leave the results bitwise alone (so only the echo can show them) do: the
/// library run with their defaults has the same weights and figures.
#[test]
fn defaults_of_bn_threads_and_eval_batch_give_the_same_results() {
    let mut s = chosen();
    s.bn = defaults().exec.bn_path;
    s.eval_batch = defaults().eval_batch;
    s.threads = 1;
    let other = s.library();
    let lib = chosen_library_run();
    assert_eq!(other.parameters_sha256, lib.parameters_sha256);
    assert_eq!(other.test.loss.to_bits(), lib.test.loss.to_bits());
    assert_ne!(
        (other.bn_path, other.eval_batch),
        (lib.bn_path, lib.eval_batch)
    );
    assert_ne!(other.timing.threads, lib.timing.threads);
}
