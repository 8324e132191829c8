//! Reading a checkpoint: the safetensors view over the file's bytes, its bnconv metadata, and
//! each tensor checked for name, dtype and shape before any value is copied out.

use super::{CheckpointError, CheckpointInfo, Integrity, FORMAT, FORMAT_VERSION, SAMPLER_ORDER};
use crate::layer::ParamKind;
use crate::network::Network;
use crate::seed::Variant;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })
}

/// A parsed checkpoint: the safetensors view over the file's bytes and its metadata.
pub(super) struct File<'a> {
    pub path: &'a Path,
    pub tensors: SafeTensors<'a>,
    /// Every `__metadata__` entry.
    pub meta: HashMap<String, String>,
    pub format_version: u32,
    pub variant: Variant,
    pub steps: usize,
    pub training_json: Option<String>,
}

impl<'a> File<'a> {
    /// Parses the safetensors layout and checks the bnconv metadata (format, version, variant,
    /// steps). Digests and values are not looked at here.
    pub fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<File<'a>, CheckpointError> {
        let corrupt = |source| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let format = |detail: String| CheckpointError::Format {
            path: path.to_path_buf(),
            detail,
        };
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| format(format!("not a bnconv checkpoint: no {key:?} metadata")))
        };
        let kind = get("format")?;
        if kind != FORMAT {
            return Err(format(format!(
                "not a bnconv checkpoint: metadata format is {kind:?}, expected {FORMAT:?}"
            )));
        }
        let version = get("format_version")?;
        let format_version: u32 = version
            .parse()
            .map_err(|_| format(format!("format_version {version:?} is not a number")))?;
        if format_version == 0 || format_version > FORMAT_VERSION {
            return Err(format(format!(
                "format version {format_version} is not supported (this bnconv reads 1 to \
                 {FORMAT_VERSION}; a newer bnconv wrote it?)"
            )));
        }
        let variant = Variant::from_name(get("variant")?).map_err(format)?;
        let steps = get("steps")?;
        let steps: usize = steps
            .parse()
            .map_err(|_| format(format!("steps {steps:?} is not a number")))?;
        let training_json = meta.get("training_state").cloned();
        Ok(File {
            path,
            tensors,
            format_version,
            variant,
            steps,
            training_json,
            meta,
        })
    }

    /// What the metadata says, with the outcome of the integrity check.
    pub fn info(&self, integrity: Integrity) -> CheckpointInfo {
        CheckpointInfo {
            format_version: self.format_version,
            variant: self.variant,
            steps: self.steps,
            bnconv_version: self.meta.get("bnconv_version").cloned().unwrap_or_default(),
            has_training_state: self.training_json.is_some(),
            integrity,
        }
    }

    /// The tensor `name`, checked to be `dtype` with `shape`.
    pub fn tensor(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<&'a [u8], CheckpointError> {
        let path = self.path.to_path_buf();
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| CheckpointError::MissingTensor {
                path: path.clone(),
                name: name.to_string(),
            })?;
        if view.dtype() != dtype {
            return Err(CheckpointError::Dtype {
                path,
                name: name.to_string(),
                expected: dtype,
                found: view.dtype(),
            });
        }
        if view.shape() != shape {
            return Err(CheckpointError::Shape {
                path,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        if data.len() != shape.iter().product::<usize>() * dtype.bitsize() / 8 {
            return Err(CheckpointError::Format {
                path,
                detail: format!("tensor {name}: {} bytes for shape {shape:?}", data.len()),
            });
        }
        Ok(data)
    }

    /// Every tensor name the file may hold for `net`: its parameters, plus the training state
    /// when the metadata declares one.
    fn allowed_names(&self, net: &mut Network) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let training = self.training_json.is_some();
        net.visit_params(&mut |p| {
            let name = p.full_name();
            if training && p.kind == ParamKind::Trainable {
                names.insert(format!("adam.m.{name}"));
                names.insert(format!("adam.v.{name}"));
            }
            names.insert(name);
        });
        if training {
            names.insert(SAMPLER_ORDER.to_string());
        }
        names
    }

    /// Copies every parameter and statistic into `net` after checking all of them (names,
    /// dtypes, shapes, no extra tensors); `net` is untouched on error.
    pub fn load_params(&self, net: &mut Network) -> Result<(), CheckpointError> {
        let mut found: Vec<&'a [u8]> = Vec::new();
        let mut error = None;
        net.visit_params(&mut |p| {
            if error.is_none() {
                match self.tensor(&p.full_name(), Dtype::F32, p.shape) {
                    Ok(data) => found.push(data),
                    Err(e) => error = Some(e),
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        let allowed = self.allowed_names(net);
        let mut names = self.tensors.names();
        names.sort_unstable();
        if let Some(extra) = names.into_iter().find(|n| !allowed.contains(*n)) {
            return Err(CheckpointError::UnexpectedTensor {
                path: self.path.to_path_buf(),
                name: extra.to_string(),
            });
        }
        let mut next = found.into_iter();
        net.visit_params(&mut |p| {
            if let Some(data) = next.next() {
                copy_f32(data, p.value);
            }
        });
        Ok(())
    }

    /// Adam's moments for every trainable parameter of `net`, in visit order.
    pub fn adam_moments(&self, net: &mut Network) -> Result<(Moments, Moments), CheckpointError> {
        let (mut m, mut v) = (Vec::new(), Vec::new());
        let mut error = None;
        net.visit_params(&mut |p| {
            if error.is_some() || p.kind != ParamKind::Trainable {
                return;
            }
            let name = p.full_name();
            for (prefix, out) in [("adam.m.", &mut m), ("adam.v.", &mut v)] {
                match self.tensor(&format!("{prefix}{name}"), Dtype::F32, p.shape) {
                    Ok(data) => {
                        let mut values = vec![0.0; p.value.len()];
                        copy_f32(data, &mut values);
                        out.push(values);
                    }
                    Err(e) => {
                        error = Some(e);
                        return;
                    }
                }
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok((m, v)),
        }
    }

    /// The sampler's data order: a 1-D U64 tensor.
    pub fn sampler_order(&self) -> Result<Vec<usize>, CheckpointError> {
        let path = self.path.to_path_buf();
        let view =
            self.tensors
                .tensor(SAMPLER_ORDER)
                .map_err(|_| CheckpointError::MissingTensor {
                    path: path.clone(),
                    name: SAMPLER_ORDER.to_string(),
                })?;
        let n = match view.shape() {
            [n] => *n,
            other => {
                return Err(CheckpointError::Shape {
                    path,
                    name: SAMPLER_ORDER.to_string(),
                    expected: vec![other.iter().product()],
                    found: other.to_vec(),
                })
            }
        };
        let data = self.tensor(SAMPLER_ORDER, Dtype::U64, &[n])?;
        data.chunks_exact(8)
            .map(|b| {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                let i = u64::from_le_bytes(le);
                usize::try_from(i).map_err(|_| CheckpointError::InvalidState {
                    path: path.clone(),
                    detail: format!("data order entry {i} does not fit this machine"),
                })
            })
            .collect()
    }
}

/// One moment (first or second) per trainable parameter, in visit order.
pub(super) type Moments = Vec<Vec<f32>>;

/// Little-endian f32 bytes into `out` (lengths already checked to match).
fn copy_f32(data: &[u8], out: &mut [f32]) {
    for (v, b) in out.iter_mut().zip(data.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}
