//! The `bnconv` binary under `mpirun` (feature `mpi`; every test is skipped, saying so, when no
//! `mpirun` is on the PATH):
//! - every printed figure and `parameters_sha256` of `compare` (plain and bn) are bitwise those of
//!   one plain process, for 1, 2 and 4 ranks (oversubscribed on small machines) and 1 or 2
//!   threads per rank;
//! - a checkpoint written by a 2-rank run resumes in one process, and one written by one process
//!   resumes under 2 ranks, both ending with the uninterrupted run's weights;
//! - refusals before any work: a batch the ranks cannot share, ranks started with different
//!   options or data (the message names each difference), `profile` under mpirun;
//! - ranks on different SIMD paths (one of them portable) train to one process's bits;
//! - a rank that fails (missing data), panics or is killed ends the whole job with a non-zero exit
//!   naming the rank, within seconds, never a hang;
//! - rank 0 alone writes the output files;
//! - a SIGTERM to one rank stops every rank at the same step, and rank 0 saves that state.
#![cfg(feature = "mpi")]

#[path = "support/binary.rs"]
mod binary;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bnconv");

/// `mpirun` with the options an Open MPI job needs here (root in CI containers, more ranks than
/// cores), or `None` when there is no `mpirun`.
fn mpirun(ranks: usize) -> Option<Command> {
    let version = Command::new("mpirun").arg("--version").output().ok()?;
    let mut cmd = Command::new("mpirun");
    if String::from_utf8_lossy(&version.stdout).contains("Open MPI") {
        cmd.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
        ]);
    }
    cmd.args(["-np", &ranks.to_string()]);
    Some(cmd)
}

/// Skips the calling test, loudly, when `mpirun` is missing.
macro_rules! require_mpirun {
    () => {
        if mpirun(1).is_none() {
            eprintln!("SKIPPED: no mpirun on the PATH (install openmpi-bin to run the MPI tests)");
            return;
        }
    };
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs `cmd` to the end, or kills it after `limit` and fails the test (no test may hang).
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    wait_within(child, limit)
}

fn wait_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect the output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the output");
            panic!(
                "still running after {limit:?} (a hang): stderr {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every figure of each run of a `--json` document, without timing: what must be bitwise equal.
fn figures(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for run in doc["runs"].as_array().expect("runs") {
        let v = run["variant"].as_str().unwrap_or("?").to_string();
        for key in [
            "step_losses",
            "log",
            "single_sample_accuracy",
            "parameters_sha256",
        ] {
            out.push((format!("{v}.{key}"), run[key].clone()));
        }
        for set in ["final_validation", "test"] {
            for key in ["loss", "accuracy", "images"] {
                out.push((format!("{v}.{set}.{key}"), run[set][key].clone()));
            }
        }
    }
    out
}

const COMPARE: [&str; 6] = [
    "compare",
    "--batches",
    "30",
    "--batch-size",
    "32",
    "--quiet",
];

#[test]
fn compare_is_bitwise_the_single_process_run_for_1_2_and_4_ranks() {
    require_mpirun!();
    let dir = scratch();
    let single_json = dir.path().join("single.json");
    let mut single = Command::new(BIN);
    single
        .args(COMPARE)
        .args(["--threads", "2", "--json"])
        .arg(&single_json);
    ok(&run_within(single, Duration::from_secs(600)), "one process");
    let want = figures(&binary::read_json(&single_json));
    for (ranks, threads) in [(1, 2), (2, 1), (2, 2), (4, 1)] {
        let json = dir.path().join(format!("r{ranks}t{threads}.json"));
        let mut cmd = mpirun(ranks).expect("mpirun");
        cmd.arg(BIN)
            .args(COMPARE)
            .args(["--threads", &threads.to_string(), "--json"])
            .arg(&json);
        let out = run_within(cmd, Duration::from_secs(900));
        ok(&out, &format!("{ranks} ranks x {threads} threads"));
        let doc = binary::read_json(&json);
        for ((name, want), (_, got)) in want.iter().zip(&figures(&doc)) {
            assert_eq!(
                got, want,
                "{ranks} ranks x {threads} threads: {name} differs"
            );
        }
        for run in doc["runs"].as_array().expect("runs") {
            assert_eq!(run["layout"]["ranks"], ranks);
            assert_eq!(
                run["layout"]["threads_per_rank"],
                Value::from(vec![threads; ranks])
            );
            assert!(run["timing"]["comm_ms_per_step"].as_f64().is_some());
        }
        // Rank 0 alone prints: one summary, not one per rank.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches("Final test accuracy").count(), 2, "{stdout}");
        if ranks > 1 {
            assert!(stdout.contains(&format!("MPI: {ranks} ranks")), "{stdout}");
        }
    }
}

/// One rank on the portable SIMD path (what a CPU without AVX2, or an aarch64 CPU, runs) and
/// one on the best path of this CPU: one process's figures and weights. Short, since the
/// portable path is slow.
#[test]
fn ranks_on_different_simd_paths_give_the_single_process_bits() {
    require_mpirun!();
    let dir = scratch();
    let train = [
        "train",
        "--batches",
        "4",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--quiet",
        "--json",
    ];
    let single_json = dir.path().join("single.json");
    let mut single = Command::new(BIN);
    single.args(train).arg(&single_json);
    ok(&run_within(single, Duration::from_secs(600)), "one process");
    let mixed_json = dir.path().join("mixed.json");
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN).args(train).arg(&mixed_json);
    cmd.args([":", "-np", "1", "env", "BNCONV_ISA=portable", BIN])
        .args(train)
        .arg(dir.path().join("unused.json"));
    ok(
        &run_within(cmd, Duration::from_secs(600)),
        "avx2 and portable ranks",
    );
    let (want, got) = (
        binary::read_json(&single_json),
        binary::read_json(&mixed_json),
    );
    assert_eq!(got["runs"][0]["layout"]["ranks"], 2);
    for ((name, want), (_, got)) in figures(&want).iter().zip(&figures(&got)) {
        assert_eq!(got, want, "{name} differs");
    }
}

/// `train --save` then `train --resume` to 24 steps, under the given rank counts (0: no mpirun).
fn split_run(dir: &Path, name: &str, first_ranks: usize, second_ranks: usize) -> Value {
    let ckpt = dir.join(format!("{name}.safetensors"));
    let json = dir.join(format!("{name}.json"));
    let common = ["--batch-size", "32", "--threads", "1", "--quiet"];
    let command = |ranks: usize| match ranks {
        0 => Command::new(BIN),
        r => {
            let mut c = mpirun(r).expect("mpirun");
            c.arg(BIN);
            c
        }
    };
    let mut first = command(first_ranks);
    first
        .args(["train", "--variant", "bn", "--batches", "12"])
        .args(common)
        .arg("--save")
        .arg(&ckpt);
    ok(&run_within(first, Duration::from_secs(600)), "first half");
    let mut second = command(second_ranks);
    second
        .args(["train", "--batches", "24", "--resume"])
        .arg(&ckpt)
        .args(["--threads", "1", "--quiet", "--json"])
        .arg(&json);
    ok(&run_within(second, Duration::from_secs(600)), "second half");
    binary::read_json(&json)["runs"][0]["parameters_sha256"].clone()
}

#[test]
fn checkpoints_move_between_mpi_and_one_process() {
    require_mpirun!();
    let dir = scratch();
    let json = dir.path().join("straight.json");
    let mut straight = Command::new(BIN);
    straight
        .args([
            "train",
            "--variant",
            "bn",
            "--batches",
            "24",
            "--batch-size",
            "32",
        ])
        .args(["--threads", "2", "--quiet", "--json"])
        .arg(&json);
    ok(
        &run_within(straight, Duration::from_secs(600)),
        "straight run",
    );
    let want = binary::read_json(&json)["runs"][0]["parameters_sha256"].clone();
    assert_eq!(split_run(dir.path(), "mpi_then_one", 2, 0), want);
    assert_eq!(split_run(dir.path(), "one_then_mpi", 0, 2), want);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn runs_the_ranks_cannot_share_or_that_differ_are_refused() {
    require_mpirun!();
    let train = ["train", "--batches", "2", "--threads", "1", "--quiet"];
    // 64 images over 3 ranks; 2 images over 4 ranks.
    for (ranks, extra, want) in [
        (3, &[][..], "cannot be split evenly over 3 processes"),
        (
            4,
            &["--batch-size", "2"][..],
            "cannot be split evenly over 4 processes",
        ),
        (
            2,
            &["--shards", "1"][..],
            "2 processes cannot share 1 shards",
        ),
    ] {
        let mut cmd = mpirun(ranks).expect("mpirun");
        cmd.arg(BIN).args(train).args(extra);
        let out = run_within(cmd, Duration::from_secs(120));
        assert!(!out.status.success(), "{ranks} ranks {extra:?} ran");
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Final"));
    }
    // Ranks started with different options and data (an MPMD launch: one command line per
    // rank): every difference is named.
    let dir = scratch();
    let other_data = altered_data(dir.path());
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN)
        .args(train)
        .args(["--seed", "1", ":", "-np", "1", BIN]);
    cmd.args(train)
        .args(["--seed", "2", "--lr", "0.001", "--batch-size", "32"])
        .args(["--variant", "plain", "--data"])
        .arg(&other_data);
    let out = run_within(cmd, Duration::from_secs(120));
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        "were not started with the same run",
        "seed is 2 on rank 1 but 1 on rank 0",
        "learning rate is 1e-3 on rank 1 but 2e-3 on rank 0",
        "batch size is 32 on rank 1 but 64 on rank 0",
        "variants is [Plain] on rank 1 but [Bn] on rank 0",
        "data (SHA-256) is ",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    // Printed once (by rank 0), before any training.
    assert_eq!(err.matches("were not started").count(), 1, "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Final"));
    let mut cmd = mpirun(2).expect("mpirun");
    cmd.arg(BIN).args(["profile", "--steps", "2"]);
    let out = run_within(cmd, Duration::from_secs(120));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("without mpirun"), "{}", stderr(&out));
}

#[test]
fn a_rank_that_fails_ends_the_job_naming_it() {
    require_mpirun!();
    let mut cmd = mpirun(1).expect("mpirun");
    let train = ["train", "--batches", "50", "--threads", "1", "--quiet"];
    cmd.arg(BIN).args(train).args([":", "-np", "1", BIN]);
    cmd.args(train).args(["--data", "/nonexistent/mnist"]);
    let start = Instant::now();
    let out = run_within(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("error on rank 1 of 2"), "{err}");
    assert!(err.contains("/nonexistent/mnist"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

/// The MNIST files with one test label changed, in `dir`: data that loads, but differs.
fn altered_data(dir: &Path) -> PathBuf {
    use std::io::Read;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let data = dir.join("altered-mnist");
    std::fs::create_dir_all(&data).expect("a data directory");
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::fs::copy(source.join(name), data.join(name)).expect("copy an MNIST file");
    }
    let gz = std::fs::File::open(source.join("t10k-labels-idx1-ubyte.gz")).expect("labels");
    let mut labels = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut labels)
        .expect("gunzip the labels");
    let last = labels.last_mut().expect("a label");
    *last = (*last + 1) % 10;
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), &labels).expect("write the labels");
    data
}

#[test]
fn a_rank_that_panics_ends_the_job_naming_it() {
    require_mpirun!();
    // Rank 1 panics after its third step, while rank 0 goes on to the next exchange.
    let train = ["train", "--batches", "50", "--threads", "1", "--quiet"];
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN).args(train).args([":", "-np", "1", "env"]);
    cmd.arg("BNCONV_TEST_PANIC_AT_STEP=3").arg(BIN).args(train);
    let start = Instant::now();
    let out = run_within(cmd, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the fault injected for a test"), "{err}");
    // The rank and its host.
    assert!(err.contains("bnconv: rank 1 of 2 ("), "{err}");
    assert!(err.contains(") panicked; aborting the MPI job"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Final"));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

/// Rank 0 alone writes `--json`, `--save`, `--plot` (train) and `--json`, `--predictions`
/// (eval): rank 1, given paths of its own, writes none of them.
#[test]
fn only_rank_0_writes_files() {
    require_mpirun!();
    let dir = scratch();
    let out = |rank: usize, name: &str| dir.path().join(format!("r{rank}.{name}"));
    let train = |rank: usize| {
        let mut args: Vec<std::ffi::OsString> = [
            "train",
            "--batches",
            "3",
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--quiet",
        ]
        .map(Into::into)
        .to_vec();
        for (flag, name) in [
            ("--json", "train.json"),
            ("--save", "safetensors"),
            ("--plot", "svg"),
        ] {
            args.push(flag.into());
            args.push(out(rank, name).into());
        }
        args
    };
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN).args(train(0)).args([":", "-np", "1", BIN]);
    cmd.args(train(1));
    ok(&run_within(cmd, Duration::from_secs(600)), "training");
    let eval = |rank: usize| {
        let mut args: Vec<std::ffi::OsString> = ["eval", "--threads", "1", "--checkpoint"]
            .map(Into::into)
            .to_vec();
        args.push(out(0, "safetensors").into());
        for (flag, name) in [("--json", "eval.json"), ("--predictions", "csv")] {
            args.push(flag.into());
            args.push(out(rank, name).into());
        }
        args
    };
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN).args(eval(0)).args([":", "-np", "1", BIN]);
    cmd.args(eval(1));
    ok(&run_within(cmd, Duration::from_secs(600)), "eval");
    for name in ["train.json", "safetensors", "svg", "eval.json", "csv"] {
        assert!(out(0, name).is_file(), "rank 0 did not write its {name}");
        assert!(!out(1, name).exists(), "rank 1 wrote its {name}");
    }
}

/// The processes whose environment says they are rank `rank` of an Open MPI job started by
/// `mpirun_pid` (children of it), from /proc.
fn rank_pids(mpirun_pid: u32, rank: usize) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The parent pid is the 2nd field after the parenthesised command name.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            parent == Some(mpirun_pid)
                && environ.split(|b| *b == 0).any(|var| var == want.as_bytes())
        })
        .collect()
}

#[test]
fn a_killed_rank_ends_the_job() {
    require_mpirun!();
    if !PathBuf::from("/proc/self/environ").exists() {
        eprintln!("SKIPPED: no /proc to find the rank's process");
        return;
    }
    let mut cmd = mpirun(2).expect("mpirun");
    cmd.arg(BIN)
        .args(["train", "--batches", "100000", "--threads", "1", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start mpirun");
    let start = Instant::now();
    let pid = loop {
        if let Some(&pid) = rank_pids(child.id(), 1).first() {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rank 1 never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let it reach the training loop (and its exchanges), then kill it.
    std::thread::sleep(Duration::from_secs(3));
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let killed_at = Instant::now();
    let out = wait_within(child, Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed_at.elapsed()
    );
    assert!(stderr(&out).contains("rank 1"), "{}", stderr(&out));
}

#[test]
fn eval_under_mpirun_reports_the_single_process_figures() {
    require_mpirun!();
    let dir = scratch();
    let ckpt = dir.path().join("bn.safetensors");
    let mut train = Command::new(BIN);
    train
        .args([
            "train",
            "--variant",
            "bn",
            "--batches",
            "40",
            "--quiet",
            "--save",
        ])
        .arg(&ckpt);
    ok(&run_within(train, Duration::from_secs(600)), "training");
    let eval = |ranks: usize| {
        let (json, csv) = (
            dir.path().join(format!("eval{ranks}.json")),
            dir.path().join(format!("eval{ranks}.csv")),
        );
        let mut cmd = match ranks {
            0 => Command::new(BIN),
            r => {
                let mut c = mpirun(r).expect("mpirun");
                c.arg(BIN);
                c
            }
        };
        cmd.args(["eval", "--threads", "1", "--checkpoint"])
            .arg(&ckpt)
            .arg("--json")
            .arg(&json)
            .arg("--predictions")
            .arg(&csv);
        let out = run_within(cmd, Duration::from_secs(600));
        ok(&out, "eval");
        let doc = binary::read_json(&json);
        assert_eq!(doc["ranks"], ranks.max(1), "{ranks} ranks");
        if ranks > 1 {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("{ranks} MPI ranks x 1 thread(s)")),
                "{stdout}"
            );
        }
        let keep = ["validation", "test"].map(|set| {
            let mut e = doc[set].clone();
            e["seconds"] = Value::Null;
            e
        });
        (
            keep,
            doc["single_sample_accuracy"].clone(),
            doc["confusion"].clone(),
            std::fs::read(&csv).expect("the predictions"),
        )
    };
    let single = eval(0);
    for ranks in [2, 4] {
        let got = eval(ranks);
        assert_eq!(got.0, single.0, "{ranks} ranks: set figures");
        assert_eq!(got.1, single.1, "{ranks} ranks: single-image accuracy");
        assert_eq!(got.2, single.2, "{ranks} ranks: confusion matrix");
        assert!(got.3 == single.3, "{ranks} ranks: predictions CSV differs");
    }
}

/// A SIGTERM that reaches one rank only (or reaches the ranks at different steps, as mpirun's
/// forwarded Ctrl-C does) stops every rank at the same step boundary: rank 0 saves and reports
/// the signal, and the saved state resumes in one process to the uninterrupted run's weights.
/// A rank stopping alone would leave the others waiting in an exchange (a hang, failed here).
#[test]
fn a_signal_to_one_rank_stops_every_rank_at_the_same_step() {
    require_mpirun!();
    if !PathBuf::from("/proc/self/environ").exists() {
        eprintln!("SKIPPED: no /proc to find the rank's process");
        return;
    }
    let dir = scratch();
    let ckpt = dir.path().join("stopped.safetensors");
    let run = ["--batch-size", "32", "--threads", "1", "--quiet"];
    let batches = "60";
    let mut cmd = mpirun(2).expect("mpirun");
    cmd.arg(BIN)
        .args(["train", "--variant", "bn", "--batches", batches])
        .args(run)
        .arg("--save")
        .arg(&ckpt)
        .args(["--save-every", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start mpirun");
    // The first --save-every file says every rank is in the training loop.
    let start = Instant::now();
    while !ckpt.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = *rank_pids(child.id(), 1).first().expect("rank 1's process");
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = wait_within(child, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let stopped = err
        .lines()
        .find_map(|l| l.strip_prefix("stopped by SIGTERM after batch "))
        .unwrap_or_else(|| panic!("rank 0 did not report the stop: {err}"));
    assert!(
        stopped.contains(&format!(" of {batches}; saved the resumable checkpoint")),
        "{err}"
    );
    let step: usize = stopped.split(' ').next().unwrap().parse().expect("a step");
    assert!(step < 60, "{err}");
    // Rank 0's checkpoint holds the state every rank stopped with: it resumes to the bits of
    // a run that was never stopped.
    let resumed = dir.path().join("resumed.json");
    let mut resume = Command::new(BIN);
    resume
        .args(["train", "--resume"])
        .arg(&ckpt)
        .args(["--threads", "2", "--quiet", "--json"])
        .arg(&resumed);
    ok(&run_within(resume, Duration::from_secs(600)), "resume");
    let straight = dir.path().join("straight.json");
    let mut whole = Command::new(BIN);
    whole
        .args(["train", "--variant", "bn", "--batches", batches])
        .args(run)
        .arg("--json")
        .arg(&straight);
    ok(&run_within(whole, Duration::from_secs(600)), "straight run");
    assert_eq!(
        binary::read_json(&resumed)["runs"][0]["parameters_sha256"],
        binary::read_json(&straight)["runs"][0]["parameters_sha256"]
    );
}
