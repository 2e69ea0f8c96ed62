//! safetensors files on the host: named little-endian arrays plus a string-to-string metadata
//! map in one file (the format of Hugging Face, PyTorch's `safetensors.torch` and kiln's own
//! checkpoints).
//!
//! A kiln checkpoint is a safetensors file whose metadata has `format` = [`KILN_FORMAT`] and
//! whose tensors are named `model.<param>`, `buffer.<name>` and `optim.<state>` (see
//! `kiln::train::checkpoint`, which moves them to and from the GPU). [`read_weights`] reads
//! the model tensors of either kind of file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::atomic::write_atomic;
use crate::dtype::DType;
use crate::error::{Error, Result, io_err};

/// The format tag stored in every kiln checkpoint.
pub const KILN_FORMAT: &str = "kiln-checkpoint-1";

/// A tensor on the host, as stored in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes, row-major.
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// An f32 tensor of `shape` holding `values`.
    pub fn from_f32(values: &[f32], shape: &[usize]) -> HostTensor {
        HostTensor {
            dtype: DType::F32,
            shape: shape.to_vec(),
            bytes: bytemuck::cast_slice(values).to_vec(),
        }
    }

    /// The values as f32 (an error for other dtypes).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return crate::error::arg_err(
                "safetensors",
                format!("tensor is {:?}, not f32", self.dtype),
            );
        }
        Ok(bytemuck::pod_collect_to_vec(&self.bytes))
    }

    /// How many values are NaN or infinite, and the index of the first: `None` when all are
    /// finite or the dtype is an integer. Reads the bits, so it costs one pass over the bytes.
    pub fn non_finite(&self) -> Option<(usize, usize)> {
        let bad = |i: usize, x: bool| x.then_some(i);
        let hits: Vec<usize> = match self.dtype {
            DType::F32 => self
                .bytes
                .chunks_exact(4)
                .enumerate()
                .filter_map(|(i, b)| {
                    let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    bad(i, bits & 0x7f80_0000 == 0x7f80_0000)
                })
                .collect(),
            DType::F16 | DType::BF16 => {
                let exp = if self.dtype == DType::F16 {
                    0x7c00
                } else {
                    0x7f80
                };
                self.bytes
                    .chunks_exact(2)
                    .enumerate()
                    .filter_map(|(i, b)| bad(i, u16::from_le_bytes([b[0], b[1]]) & exp == exp))
                    .collect()
            }
            DType::I32 | DType::U32 => Vec::new(),
        };
        hits.first().map(|&first| (hits.len(), first))
    }
}

/// Refuse tensors holding NaN or infinite values, naming the file and the first such tensor:
/// a checkpoint saved from a diverged run must not pass as good weights.
pub fn check_finite<'a>(
    path: &str,
    tensors: impl IntoIterator<Item = (&'a str, &'a HostTensor)>,
) -> Result<()> {
    for (name, h) in tensors {
        if let Some((count, first)) = h.non_finite() {
            return Err(Error::Checkpoint {
                path: path.to_string(),
                msg: format!(
                    "tensor {name} holds {count} NaN or infinite value(s) (the first at index \
                     {first}); these weights come from a diverged run: use an earlier \
                     checkpoint or train again with a lower learning rate"
                ),
            });
        }
    }
    Ok(())
}

/// A safetensors file read whole.
#[derive(Debug, Clone, Default)]
pub struct StFile {
    /// Where it was read from (for error messages).
    pub path: String,
    /// Tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Metadata by key (empty when the file has none).
    pub metadata: BTreeMap<String, String>,
}

impl StFile {
    /// True for a kiln checkpoint (metadata `format` = [`KILN_FORMAT`]).
    pub fn is_kiln(&self) -> bool {
        self.metadata.get("format").map(String::as_str) == Some(KILN_FORMAT)
    }
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
    }
}

fn kiln_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        _ => return None,
    })
}

/// Read the safetensors file at `path`, with a clear error for missing, truncated or foreign
/// files and for element types kiln does not hold (f32, f16, bf16, i32, u32 are read).
pub fn read(path: &Path) -> Result<StFile> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let bad = |msg: String| Error::Checkpoint {
        path: p.clone(),
        msg,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        bad(format!(
            "not a readable safetensors file ({e}); it may be truncated or corrupt"
        ))
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = kiln_dtype(view.dtype()).ok_or_else(|| {
            bad(format!(
                "tensor {name} has unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let h = HostTensor {
            dtype,
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        };
        tensors.insert(name, h);
    }
    Ok(StFile {
        path: p,
        tensors,
        metadata,
    })
}

/// Serialise `tensors` and `metadata` as safetensors bytes.
pub fn to_bytes(
    path_for_errors: &Path,
    tensors: &[(String, HostTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bad = |msg: String| Error::Checkpoint {
        path: path_for_errors.display().to_string(),
        msg,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, h) in tensors {
        let v = TensorView::new(st_dtype(h.dtype), h.shape.clone(), &h.bytes)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        views.push((name.clone(), v));
    }
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = (!meta.is_empty()).then_some(meta);
    safetensors::serialize(views, meta).map_err(|e| bad(e.to_string()))
}

/// Write `tensors` and `metadata` to `path` atomically ([`write_atomic`]).
pub fn write(
    path: &Path,
    tensors: &[(String, HostTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path, &to_bytes(path, tensors, metadata)?)
}

/// The model tensors of a safetensors file by name: a kiln checkpoint's `model.*` and
/// `buffer.*` tensors (prefix removed, optimizer state ignored), or every tensor of any other
/// safetensors file (e.g. one saved by PyTorch's `safetensors.torch.save_file`).
pub fn read_weights(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let f = read(path)?;
    check_finite(
        &f.path,
        f.tensors
            .iter()
            .filter(|(n, _)| !n.starts_with("optim."))
            .map(|(n, h)| (n.as_str(), h)),
    )?;
    if !f.is_kiln() {
        return Ok(f.tensors);
    }
    Ok(f.tensors
        .into_iter()
        .filter_map(|(name, h)| {
            let n = name
                .strip_prefix("model.")
                .or_else(|| name.strip_prefix("buffer."))?;
            Some((n.to_string(), h))
        })
        .collect())
}
