//! The `bnconv` binary under `mpirun` (feature `mpi`; every test is skipped, saying so, when no
//! `mpirun` is on the PATH):
//! - every printed figure and `parameters_sha256` of `compare` (plain and bn) are bitwise those of
//!   one plain process, for 1, 2 and 4 ranks (oversubscribed on small machines) and 1 or 2
//!   threads per rank;
//! - a checkpoint written by a 2-rank run resumes in one process, and one written by one process
//!   resumes under 2 ranks, both ending with the uninterrupted run's weights;
//! - refusals before any work: a batch the ranks cannot share, ranks started with different
//!   options (the message names the option), `profile` under mpirun;
//! - a rank that fails (missing data) or is killed ends the whole job with a non-zero exit naming
//!   the rank, within seconds, never a hang;
//! - a SIGTERM to one rank stops every rank at the same step, and rank 0 saves that state.
#![cfg(feature = "mpi")]

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

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the JSON file")).expect("JSON")
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
    let want = figures(&read_json(&single_json));
    for (ranks, threads) in [(1, 2), (2, 1), (2, 2), (4, 1)] {
        let json = dir.path().join(format!("r{ranks}t{threads}.json"));
        let mut cmd = mpirun(ranks).expect("mpirun");
        cmd.arg(BIN)
            .args(COMPARE)
            .args(["--threads", &threads.to_string(), "--json"])
            .arg(&json);
        let out = run_within(cmd, Duration::from_secs(900));
        ok(&out, &format!("{ranks} ranks x {threads} threads"));
        let doc = read_json(&json);
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
    read_json(&json)["runs"][0]["parameters_sha256"].clone()
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
    let want = read_json(&json)["runs"][0]["parameters_sha256"].clone();
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
    // Ranks started with different seeds (an MPMD launch: one command line per rank).
    let mut cmd = mpirun(1).expect("mpirun");
    cmd.arg(BIN)
        .args(train)
        .args(["--seed", "1", ":", "-np", "1", BIN]);
    cmd.args(train).args(["--seed", "2"]);
    let out = run_within(cmd, Duration::from_secs(120));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("seed is 2 on rank 1 but 1 on rank 0"),
        "{}",
        stderr(&out)
    );
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
        ok(&run_within(cmd, Duration::from_secs(600)), "eval");
        let doc = read_json(&json);
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
        read_json(&resumed)["runs"][0]["parameters_sha256"],
        read_json(&straight)["runs"][0]["parameters_sha256"]
    );
}
