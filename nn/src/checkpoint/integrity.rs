//! Integrity of a checkpoint: the digests written with it and checked when it is read, and the
//! refusal of non-finite values.
//!
//! Two metadata entries, both lower-case hex SHA-256, let a reader tell the bits it reads from
//! the bits bnconv wrote:
//! - [`TENSOR_DIGESTS`] (`tensor_sha256`): a JSON object mapping every tensor's name to the
//!   SHA-256 of its data bytes exactly as stored (little-endian), sorted by name. A mismatch
//!   names the tensor.
//! - [`METADATA_DIGEST`] (`metadata_sha256`): the SHA-256 of every other metadata entry (the
//!   tensor digests included), in byte order of the keys, each as the key's bytes, a 0 byte, the
//!   value's bytes and a 0 byte. It covers the settings a resumed run continues with.
//!
//! Both are plain safetensors metadata: readers that do not know them are unaffected, and any
//! language recomputes them in a few lines (tests/python/check_checkpoint.py does).

use super::error::CheckpointError;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata key holding each tensor's digest.
pub const TENSOR_DIGESTS: &str = "tensor_sha256";
/// The metadata key holding the digest of the other metadata entries.
pub const METADATA_DIGEST: &str = "metadata_sha256";

/// Lower-case hex SHA-256 of `bytes`.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The [`TENSOR_DIGESTS`] entry for tensors given as (name, data bytes): a JSON object sorted by
/// name.
pub(super) fn tensor_digests_json<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> String {
    let digests: BTreeMap<&str, String> = tensors
        .map(|(name, data)| (name, sha256_hex(data)))
        .collect();
    // A map of strings always serialises.
    serde_json::to_string(&digests).unwrap_or_default()
}

/// The [`METADATA_DIGEST`] of `meta`: every entry but that one, by key in byte order.
pub(super) fn metadata_digest<'a>(meta: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let sorted: BTreeMap<&String, &String> = meta
        .filter(|(key, _)| key.as_str() != METADATA_DIGEST)
        .collect();
    let mut hasher = Sha256::new();
    for (key, value) in sorted {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())
}

/// Checks the metadata digest, then every tensor against its recorded digest (in name order):
/// the first difference is an error naming it. A file missing either entry is refused.
pub(super) fn verify(
    path: &Path,
    tensors: &SafeTensors<'_>,
    meta: &HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let missing = |detail: String| CheckpointError::MissingDigest {
        path: path.to_path_buf(),
        detail,
    };
    let mismatch = |what: String| CheckpointError::DigestMismatch {
        path: path.to_path_buf(),
        what,
    };
    let absent = |key: &str| {
        missing(format!(
            "no {key:?} metadata, which every file of this format version carries: it was \
             written by another program or edited"
        ))
    };
    let recorded = meta
        .get(METADATA_DIGEST)
        .ok_or_else(|| absent(METADATA_DIGEST))?;
    if *recorded != metadata_digest(meta.iter()) {
        return Err(mismatch("the metadata".into()));
    }
    let digests = meta
        .get(TENSOR_DIGESTS)
        .ok_or_else(|| absent(TENSOR_DIGESTS))?;
    let digests: BTreeMap<String, String> =
        serde_json::from_str(digests).map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            detail: format!("{TENSOR_DIGESTS} metadata is not a JSON object of strings: {e}"),
        })?;
    let mut names = tensors.names();
    names.sort_unstable();
    // The lists of names first (cheap), then the data.
    if let Some(name) = names.iter().find(|n| !digests.contains_key(**n)) {
        return Err(missing(format!("tensor {name} has no recorded digest")));
    }
    if let Some(name) = digests.keys().find(|n| !names.contains(&n.as_str())) {
        return Err(mismatch(format!(
            "the tensor list (tensor {name} was written but is not in the file)"
        )));
    }
    for name in &names {
        // Both lookups use names the checks above found in both lists; treat a failure as a
        // mismatch rather than panic if one ever did.
        let data = tensors
            .tensor(name)
            .map_err(|_| mismatch(format!("tensor {name}")))?;
        if digests.get(*name).map(String::as_str) != Some(sha256_hex(data.data()).as_str()) {
            return Err(mismatch(format!("tensor {name}")));
        }
    }
    Ok(())
}

/// Refuses the first F32 tensor (in name order) holding a NaN or an infinity, with the count.
pub(super) fn check_finite(path: &Path, tensors: &SafeTensors<'_>) -> Result<(), CheckpointError> {
    let mut names = tensors.names();
    names.sort_unstable();
    for name in names {
        let Ok(view) = tensors.tensor(name) else {
            continue;
        };
        if view.dtype() != Dtype::F32 {
            continue;
        }
        let data = view.data();
        let count = data
            .chunks_exact(4)
            .filter(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
            .count();
        if count > 0 {
            return Err(CheckpointError::NonFinite {
                path: path.to_path_buf(),
                name: name.to_string(),
                count,
                len: data.len() / 4,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_digest_follows_its_documented_definition() {
        let meta: HashMap<String, String> = [("b", "2"), ("a", "1"), (METADATA_DIGEST, "x")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        // Sorted keys, NUL after each key and value, the digest entry itself left out.
        assert_eq!(
            metadata_digest(meta.iter()),
            sha256_hex(b"a\x001\x00b\x002\x00")
        );
        // Moving a byte between key and value changes it.
        let shifted: HashMap<String, String> = [("a1", ""), ("b", "2")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert_ne!(
            metadata_digest(shifted.iter()),
            metadata_digest(meta.iter())
        );
    }

    #[test]
    fn tensor_digests_are_sorted_by_name() {
        let json = tensor_digests_json([("z", &b"1"[..]), ("a", &b""[..])].into_iter());
        assert_eq!(
            json,
            format!(
                "{{\"a\":\"{}\",\"z\":\"{}\"}}",
                sha256_hex(b""),
                sha256_hex(b"1")
            )
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
