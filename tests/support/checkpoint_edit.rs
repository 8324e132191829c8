//! Editing checkpoint files the way a user with a safetensors library would, for the tests of
//! bad files: through the safetensors crate, and optionally re-signing the result with digests
//! computed here from the documented definition (nn/src/checkpoint/integrity.rs), independently
//! of bnconv's own code.
// Each test file uses only some of these.
#![allow(dead_code)]

use safetensors::Dtype;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Every tensor of a file as (dtype, shape, bytes), by name.
pub type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's tensors and metadata.
pub fn read(path: &Path) -> (Tensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect();
    (tensors, meta)
}

/// Writes `tensors` and `meta` as a safetensors file.
pub fn write(path: &Path, tensors: &Tensors, meta: HashMap<String, String>) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (d, s, b))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// Recomputes `tensor_sha256` (each tensor's data bytes) and `metadata_sha256` (every other
/// entry by sorted key: key, NUL, value, NUL) as documented.
pub fn sign(tensors: &Tensors, meta: &mut HashMap<String, String>) {
    let digests: BTreeMap<&String, String> = tensors
        .iter()
        .map(|(n, (_, _, data))| (n, hex(&Sha256::digest(data))))
        .collect();
    meta.insert(
        "tensor_sha256".into(),
        serde_json::to_string(&digests).unwrap(),
    );
    sign_metadata(meta);
}

/// Recomputes only `metadata_sha256`, over the other entries as they are.
pub fn sign_metadata(meta: &mut HashMap<String, String>) {
    meta.remove("metadata_sha256");
    let sorted: BTreeMap<&String, &String> = meta.iter().collect();
    let mut h = Sha256::new();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = hex(&h.finalize());
    meta.insert("metadata_sha256".into(), digest);
}

/// Reads `from`, lets `edit` change its tensors and metadata, re-signs it (so only the edit is
/// wrong with it) and writes it to `to`.
pub fn rewrite(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>),
) {
    let (mut tensors, mut meta) = read(from);
    edit(&mut tensors, &mut meta);
    sign(&tensors, &mut meta);
    write(to, &tensors, meta);
}

/// [`rewrite`] without re-signing: the digests are the original file's.
pub fn rewrite_unsigned(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>),
) {
    let (mut tensors, mut meta) = read(from);
    edit(&mut tensors, &mut meta);
    write(to, &tensors, meta);
}
