//! Output files that a crash never leaves half-written: the bytes go to a temporary file in the
//! destination's directory, which is flushed, synced to disk and then renamed over the final name.
//! Readers see either the previous file or the complete new one.
//!
//! Like a shell's `>` redirection, a symbolic link is followed (its target is replaced, the link
//! stays a link), and a destination that exists but is not a regular file (a FIFO, a character
//! device such as `/dev/stdout` or `/dev/null`) is written straight into, without a rename.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Symbolic links followed before giving up, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// The directory `path` lives in: its parent, or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file next to `path` (same directory, so the final rename stays on one file
/// system), named after it: `.NAME.XXXXXX.tmp`. Removed when dropped unless persisted.
fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map_or_else(|| "bnconv".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Like `File::create`: 0o666 minus the umask (tempfile's own default is owner-only).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder.tempfile_in(parent_dir(path))
}

/// The file `path` names once symbolic links in its last component are followed: `path` itself
/// when it is not a link, else the (final) target, which need not exist yet.
pub fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = parent_dir(&current).join(target);
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Whether `path` (links followed) exists and is something other than a regular file or a
/// directory: a FIFO, a device, a socket. Such destinations are written in place.
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Writes a file atomically: `write` fills a temporary file in the same directory, which is
/// flushed, `sync_all`ed and renamed to `path` (replacing any previous file). On any error the
/// temporary file is removed and `path` is untouched. The directory is synced after the rename
/// where the platform allows it (best effort: the new file is already in place).
///
/// A symbolic link is followed and its target replaced; a FIFO or device is opened and written
/// directly (there is nothing to rename over).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let path = &resolve_links(path)?;
    if path.is_dir() {
        return Err(is_a_directory(path));
    }
    if is_special(path) {
        let mut file = fs::OpenOptions::new().write(true).open(path)?;
        let mut out = io::BufWriter::new(&mut file);
        write(&mut out)?;
        return out.flush();
    }
    let mut tmp = temp_beside(path)?;
    {
        let mut out = io::BufWriter::new(tmp.as_file_mut());
        write(&mut out)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(parent_dir(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Checks, before any work starts, that [`write_atomic`] can later create `path`: its directory
/// exists and accepts a new file (tried for real, then removed), and `path` is not a directory.
/// `path` itself is not touched (a FIFO is not opened: that would wait for a reader).
pub fn check_writable(path: &Path) -> io::Result<()> {
    let path = &resolve_links(path)?;
    if is_special(path) {
        return Ok(());
    }
    let dir = parent_dir(path);
    if !dir.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    if !dir.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(is_a_directory(path));
    }
    temp_beside(path).map(drop).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create a file in {}: {e}", dir.display()),
        )
    })
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::other(format!("{} is a directory", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when the guard drops.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("bnconv-atomic-{name}-"))
            .tempdir()
            .unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = scratch("replace");
        let dir = tmp.path();
        let path = dir.join("out.bin");
        write_atomic(&path, |w| w.write_all(b"first")).unwrap();
        write_atomic(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(dir), ["out.bin"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let tmp = scratch("fail");
        let dir = tmp.path();
        let path = dir.join("out.bin");
        write_atomic(&path, |w| w.write_all(b"good")).unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("simulated crash"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "simulated crash");
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        assert_eq!(entries(dir), ["out.bin"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_keeps_pointing_at_its_replaced_target() {
        let tmp = scratch("link");
        let dir = tmp.path();
        std::fs::create_dir(dir.join("real")).unwrap();
        let target = dir.join("real/out.json");
        std::fs::write(&target, b"old").unwrap();
        // A relative link, and a link to that link.
        std::os::unix::fs::symlink("real/out.json", dir.join("link.json")).unwrap();
        std::os::unix::fs::symlink("link.json", dir.join("link2.json")).unwrap();
        check_writable(&dir.join("link2.json")).unwrap();
        write_atomic(&dir.join("link2.json"), |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        for link in ["link.json", "link2.json"] {
            let meta = std::fs::symlink_metadata(dir.join(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "{link} is still a link");
        }
        assert_eq!(entries(&dir.join("real")), ["out.json"]);
        // A dangling link creates its target.
        std::os::unix::fs::symlink("real/new.json", dir.join("dangling.json")).unwrap();
        write_atomic(&dir.join("dangling.json"), |w| w.write_all(b"x")).unwrap();
        assert_eq!(std::fs::read(dir.join("real/new.json")).unwrap(), b"x");
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink("loop-b", dir.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", dir.join("loop-b")).unwrap();
        let err = write_atomic(&dir.join("loop-a"), |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_in_place() {
        // /dev/null is a character device: written without a rename (which would replace it,
        // or fail for want of permission on /dev).
        check_writable(Path::new("/dev/null")).unwrap();
        write_atomic(Path::new("/dev/null"), |w| w.write_all(b"discarded")).unwrap();
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(!meta.is_file(), "still a device");
    }

    #[test]
    fn unwritable_destinations_are_reported() {
        let tmp = scratch("check");
        let dir = tmp.path();
        check_writable(&dir.join("ok.bin")).unwrap();
        assert_eq!(entries(dir), Vec::<String>::new(), "the probe is removed");
        let missing = check_writable(&dir.join("absent/x.bin")).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        let is_dir = check_writable(dir).unwrap_err();
        assert!(is_dir.to_string().contains("is a directory"), "{is_dir}");
        assert!(write_atomic(dir, |_| Ok(())).is_err());
        let file = dir.join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let not_dir = check_writable(&file.join("x.bin")).unwrap_err();
        assert!(
            not_dir.to_string().contains("is not a directory"),
            "{not_dir}"
        );
    }
}
