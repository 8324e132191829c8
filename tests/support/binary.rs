//! What the end-to-end tests share: running the built `bnconv` binary, and a scratch directory.
// Each test file uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the built `bnconv` with `args` and returns its exit status and output.
pub fn bnconv(args: &[&str]) -> Output {
    bnconv_with_env(args, &[])
}

/// [`bnconv`] with environment variables set for the run (e.g. `BNCONV_ISA`).
pub fn bnconv_with_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bnconv"))
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("the bnconv binary runs")
}

/// A fresh-enough directory under the system temp dir, unique per test file (`suite`), process
/// and test (`name`), so test binaries running side by side never share one.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bnconv-{suite}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
