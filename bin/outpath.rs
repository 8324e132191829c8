//! Checks on output files named on the command line, made before any work starts.

use anyhow::{bail, Result};
use std::path::Path;

/// `path` can be written: its directory exists and it is not itself a directory.
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            bail!(
                "{flag} {}: directory {} does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    if path.is_dir() {
        bail!("{flag} {}: is a directory", path.display());
    }
    Ok(())
}

/// Image formats `--plot` writes, chosen by the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

/// A writable `.png` or `.svg` path, and which of the two it is.
pub fn check_plot_path(flag: &str, path: &Path) -> Result<ImageFormat> {
    check_writable(flag, path)?;
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
