//! What the end-to-end tests share: running the built `bnconv` binary, and a scratch directory.
// Each test file uses only some of these.
#![allow(dead_code)]

use std::path::Path;
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

/// A fresh directory under the system temp dir, named for the test file (`suite`) and test
/// (`name`) and unique to this run, removed when the returned guard drops (a failing test's
/// panic drops it too). It derefs to its [`Path`].
pub fn scratch(suite: &str, name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("bnconv-{suite}-{name}-"))
        .tempdir()
        .expect("a scratch directory under the temp dir");
    Scratch(dir)
}

/// A scratch directory, deleted on drop.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// Runs the built `bnconv` with `args`, expects success (failing with its stderr otherwise) and
/// returns its stdout.
pub fn bnconv_ok(args: &[&str]) -> String {
    let out = bnconv(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON file the binary wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("the JSON file exists"))
        .expect("the file is JSON")
}
