//! The `SHA256SUMS` list beside the data files, and the check of each file against it.

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::DataError;

/// The checksum list's file name.
pub(super) const CHECKSUMS: &str = "SHA256SUMS";

/// One `SHA256SUMS` entry; the digest is stored lower-case.
pub(super) struct ChecksumEntry {
    name: String,
    sha256: String,
}

/// An absent `SHA256SUMS` means "nothing to check", so it yields an empty list.
pub(super) fn read_checksums(dir: &Path) -> Result<Vec<ChecksumEntry>, DataError> {
    let path = dir.join(CHECKSUMS);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DataError::Io { path, source }),
    };
    let mut sums = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |detail: &str| DataError::BadChecksumList {
            path: path.clone(),
            line: i + 1,
            detail: format!("{detail}; expected `<sha256 hex>  <file name>`"),
        };
        let (hex, rest) = line.split_once(' ').ok_or_else(|| bad("no file name"))?;
        // sha256sum writes "  name" in text mode and " *name" in binary mode.
        let name = rest
            .strip_prefix([' ', '*'])
            .filter(|name| !name.is_empty())
            .ok_or_else(|| bad("no file name"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not 64 hex digits"));
        }
        sums.push(ChecksumEntry {
            name: name.to_owned(),
            sha256: hex.to_ascii_lowercase(),
        });
    }
    Ok(sums)
}

pub(super) fn verify_checksum(
    path: &Path,
    bytes: &[u8],
    sums: &[ChecksumEntry],
) -> Result<(), DataError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let mut actual = None;
    for sum in sums.iter().filter(|sum| sum.name == name) {
        let actual = actual.get_or_insert_with(|| {
            Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        if *actual != sum.sha256 {
            return Err(DataError::Checksum {
                path: path.into(),
                expected: sum.sha256.clone(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}
