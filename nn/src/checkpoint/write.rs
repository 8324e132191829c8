//! Writing a checkpoint: the tensors, the metadata with its digests, and a header laid out the
//! same way every time, so that the same state always gives the same bytes.

use super::integrity::{metadata_digest, tensor_digests_json, METADATA_DIGEST, TENSOR_DIGESTS};
use super::{CheckpointError, FORMAT, FORMAT_VERSION, SAMPLER_ORDER};
use crate::adam::Adam;
use crate::atomic_write::write_atomic;
use crate::layer::{ParamKind, ParamMut};
use crate::network::Network;
use crate::seed::Variant;
use safetensors::{Dtype, SafeTensorError, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

/// What a resumable checkpoint adds to the weights.
pub(super) struct Training<'a> {
    /// The `training_state` metadata entry (JSON).
    pub json: String,
    pub adam: &'a Adam,
    pub order: &'a [usize],
}

/// A tensor owned for serialisation.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn f32_tensor(shape: &[usize], values: &[f32]) -> Owned {
    Owned {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The whole file: parameters and statistics of `net`, plus the training state when given.
pub(super) fn encode(
    net: &mut Network,
    variant: Variant,
    steps: usize,
    training: Option<Training<'_>>,
) -> Result<Vec<u8>, SafeTensorError> {
    let mut tensors: Vec<(String, Owned)> = Vec::new();
    let mut trainable = 0;
    let adam = training.as_ref().map(|t| t.adam.moments());
    net.visit_params(&mut |p: ParamMut<'_>| {
        let name = p.full_name();
        if let (Some((m, v)), ParamKind::Trainable) = (adam, p.kind) {
            // Before the first update Adam has no moments yet: they are zeros.
            let zeros = vec![0.0; p.value.len()];
            let m = m.get(trainable).unwrap_or(&zeros);
            let v = v.get(trainable).unwrap_or(&zeros);
            tensors.push((format!("adam.m.{name}"), f32_tensor(p.shape, m)));
            tensors.push((format!("adam.v.{name}"), f32_tensor(p.shape, v)));
            trainable += 1;
        }
        tensors.push((name, f32_tensor(p.shape, p.value)));
    });
    let mut meta = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("variant".to_string(), variant.name().to_string()),
        ("steps".to_string(), steps.to_string()),
        (
            "bnconv_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    if let Some(t) = training {
        meta.insert("training_state".into(), t.json);
        tensors.push((
            SAMPLER_ORDER.to_string(),
            Owned {
                dtype: Dtype::U64,
                shape: vec![t.order.len()],
                data: t
                    .order
                    .iter()
                    .flat_map(|&i| (i as u64).to_le_bytes())
                    .collect(),
            },
        ));
    }
    meta.insert(
        TENSOR_DIGESTS.into(),
        tensor_digests_json(tensors.iter().map(|(n, t)| (n.as_str(), t.data.as_slice()))),
    );
    meta.insert(METADATA_DIGEST.into(), metadata_digest(meta.iter()));
    let bytes = safetensors::serialize(
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        Some(meta.into_iter().collect::<HashMap<_, _>>()),
    )?;
    canonical_header(bytes)
}

/// Rewrites the JSON header of a serialised safetensors file with every object's keys in sorted
/// order (safetensors writes the metadata map in hash order, which changes from run to run), padded
/// with spaces to a multiple of 8 bytes as the format asks. The tensor data, whose offsets are
/// relative to the end of the header, is kept as is.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, SafeTensorError> {
    let invalid = || SafeTensorError::InvalidHeaderLength;
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(invalid)?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(invalid)?;
    let json_error = |e: serde_json::Error| SafeTensorError::IoError(io::Error::other(e));
    // Every map is re-collected into a BTreeMap: sorted, whatever serde_json features are on.
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(json_error)?;
    let header: BTreeMap<String, BTreeMap<String, serde_json::Value>> = header
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::from_value(v)?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(json_error)?;
    let mut text = serde_json::to_vec(&header).map_err(json_error)?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

pub(super) fn encode_error(path: &Path, e: SafeTensorError) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        action: "encode",
        source: io::Error::other(e),
    }
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomic(path, |w| w.write_all(bytes)).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "write",
        source,
    })
}
