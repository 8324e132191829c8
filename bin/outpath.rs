//! Checks on output files named on the command line, made before any work starts.

use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// Rejects, before any work starts, an output file named by `flag` that could not be written
/// later: a missing directory, a directory that refuses new files (probed by creating and
/// removing one), or a path that is itself a directory. Every output flag (`--json`, `--plot`,
/// `--save`) is checked here, so a long run never ends unable to save its results.
pub fn check_output(flag: &str, path: &Path) -> Result<()> {
    bnconv_nn::atomic_write::check_writable(path)
        .map_err(|e| anyhow!("{flag} {}: {e}", path.display()))
}

/// Image formats `--plot` writes, chosen by the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

/// A writable `.png` or `.svg` path, and which of the two it is.
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
