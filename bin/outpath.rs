//! Output files named on the command line: checked before any work starts, written like a
//! shell's `>` redirection. `-` is standard output; a symbolic link is followed and its target
//! replaced atomically; a FIFO or a device (`/dev/stdout`) is written straight into
//! ([`bnconv_nn::atomic_write`]).

use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// The output name that means standard output.
pub const STDOUT: &str = "-";

/// Whether `path` is `-` (standard output).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT
}

/// Rejects, before any work starts, an output file named by `flag` that could not be written
/// later: a missing directory, a directory that refuses new files (probed by creating and
/// removing one), or a path that is itself a directory. Every output flag (`--json`, `--plot`,
/// `--save`) is checked here, so a long run never ends unable to save its results. `-` passes.
pub fn check_output(flag: &str, path: &Path) -> Result<()> {
    if is_stdout(path) {
        return Ok(());
    }
    bnconv_nn::atomic_write::check_writable(path)
        .map_err(|e| anyhow!("{flag} {}: {e}", path.display()))
}

/// [`check_output`] for outputs that must be files (`--save`: resuming needs the file).
pub fn check_file_output(flag: &str, path: &Path) -> Result<()> {
    if is_stdout(path) {
        bail!("{flag} -: a checkpoint must be a file (resuming reads it back); name one");
    }
    check_output(flag, path)
}

/// Refuses two outputs that both go to standard output.
pub fn check_one_stdout(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    let flags: Vec<&str> = outputs
        .iter()
        .filter(|(_, p)| p.is_some_and(is_stdout))
        .map(|(flag, _)| *flag)
        .collect();
    if flags.len() > 1 {
        bail!(
            "{} all name standard output (-); at most one output can go there",
            flags.join(" and ")
        );
    }
    Ok(())
}

/// Writes an output: to standard output for `-`, else as [`bnconv_nn::atomic_write::write_atomic`]
/// does (never half-written; links followed; FIFOs and devices written in place).
pub fn write_output(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let result = if is_stdout(path) {
        let mut out = std::io::stdout().lock();
        write(&mut out).and_then(|()| out.flush())
    } else {
        bnconv_nn::atomic_write::write_atomic(path, write)
    };
    result.with_context(|| format!("could not write {}", shown(path)))
}

/// How an output is named in messages: `standard output` for `-`.
pub fn shown(path: &Path) -> String {
    if is_stdout(path) {
        "standard output".into()
    } else {
        path.display().to_string()
    }
}

/// Image formats `--plot` writes, chosen by the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

/// A writable `.png` or `.svg` path, and which of the two it is. (`-` is not accepted: the
/// format comes from the extension.)
pub fn check_plot_path(flag: &str, path: &Path) -> Result<ImageFormat> {
    check_output(flag, path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(ImageFormat::Png),
        Some("svg") => Ok(ImageFormat::Svg),
        _ => bail!(
            "{flag} {}: the file name must end in .png or .svg",
            path.display()
        ),
    }
}
