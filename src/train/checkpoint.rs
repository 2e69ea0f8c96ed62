//! Checkpoints: named tensors plus string metadata in one safetensors file, written atomically.
//!
//! Layout of a kiln checkpoint:
//! - tensors `model.<param name>` (weights), `buffer.<name>` (e.g. BatchNorm running stats),
//!   `optim.<state name>` (momentum, Adam moments), all in their own dtype;
//! - metadata (`__metadata__` in the safetensors header, string to string): `format`
//!   (`kiln-checkpoint-1`), and whatever the trainer records (step, epoch, RNG state, model spec,
//!   config, data scaler, as JSON strings).
//!
//! Writing goes to `<file>.tmp`, is flushed to disk, then renamed over the target: a crash leaves
//! either the old checkpoint or the new one, never half of one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result, io_err};
use crate::tensor::{DType, Tensor};

/// The format tag stored in every kiln checkpoint.
pub const FORMAT: &str = "kiln-checkpoint-1";

/// A tensor read from a checkpoint, still on the host.
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
    /// The values as f32 (error for other dtypes).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return crate::error::arg_err(
                "checkpoint",
                format!("tensor is {:?}, not f32", self.dtype),
            );
        }
        Ok(bytemuck::pod_collect_to_vec(&self.bytes))
    }
}

/// A loaded checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Where it was read from (for error messages).
    pub path: String,
    /// Tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Metadata by key.
    pub metadata: BTreeMap<String, String>,
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
    }
}

/// Write `tensors` (read back from the GPU) and `metadata` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes: Vec<u8> = match t.dtype() {
            DType::F32 => bytemuck::cast_slice(&t.to_vec::<f32>()?).to_vec(),
            DType::F16 => bytemuck::cast_slice(&t.to_vec::<half::f16>()?).to_vec(),
            DType::I32 => bytemuck::cast_slice(&t.to_vec::<i32>()?).to_vec(),
            DType::U32 => bytemuck::cast_slice(&t.to_vec::<u32>()?).to_vec(),
        };
        host.push((name.clone(), t.dtype(), t.shape().to_vec(), bytes));
    }
    let mut views = Vec::with_capacity(host.len());
    for (name, dtype, shape, bytes) in &host {
        let v = TensorView::new(st_dtype(*dtype), shape.clone(), bytes).map_err(|e| {
            Error::Checkpoint {
                path: path.display().to_string(),
                msg: format!("{name}: {e}"),
            }
        })?;
        views.push((name.clone(), v));
    }
    let mut meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.insert("format".into(), FORMAT.into());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Read a checkpoint, with a clear error for missing, truncated or foreign files.
pub fn load(path: &Path) -> Result<Checkpoint> {
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
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a kiln checkpoint (format tag {:?}, expected {FORMAT:?})",
            metadata.get("format")
        )));
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::I32 => DType::I32,
            Dtype::U32 => DType::U32,
            other => {
                return Err(bad(format!(
                    "tensor {name} has unsupported dtype {other:?}"
                )));
            }
        };
        tensors.insert(
            name.clone(),
            HostTensor {
                dtype,
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            },
        );
    }
    Ok(Checkpoint {
        path: p,
        tensors,
        metadata,
    })
}

impl Checkpoint {
    /// A metadata value, or an error naming the missing key.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Checkpoint {
                path: self.path.clone(),
                msg: format!("metadata key {key:?} is missing"),
            })
    }

    /// Names under `prefix.` (without the prefix).
    pub fn names_under(&self, prefix: &str) -> Vec<String> {
        let pre = format!("{prefix}.");
        self.tensors
            .keys()
            .filter_map(|k| k.strip_prefix(&pre).map(str::to_string))
            .collect()
    }

    /// Copy the tensors under `prefix.` into `targets` (matched by name), in place.
    ///
    /// Every target must be present with the same shape and dtype, and no extra tensor may be
    /// under the prefix; otherwise the error lists every missing, unexpected and mis-shaped name.
    pub fn restore_into(&self, prefix: &str, targets: &[(String, Tensor)]) -> Result<()> {
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, t) in targets {
            match self.tensors.get(&format!("{prefix}.{name}")) {
                None => missing.push(name.clone()),
                Some(h) if h.shape != t.shape() || h.dtype != t.dtype() => misshaped.push(format!(
                    "{name}: checkpoint {:?} {:?}, model {:?} {:?}",
                    h.dtype,
                    h.shape,
                    t.dtype(),
                    t.shape()
                )),
                Some(_) => {}
            }
        }
        let known: Vec<&String> = targets.iter().map(|(n, _)| n).collect();
        let unexpected: Vec<String> = self
            .names_under(prefix)
            .into_iter()
            .filter(|n| !known.contains(&n))
            .collect();
        if !missing.is_empty() || !misshaped.is_empty() || !unexpected.is_empty() {
            let mut msg = format!("{prefix} tensors do not match the model:");
            if !missing.is_empty() {
                msg += &format!("\n  missing: {}", missing.join(", "));
            }
            if !unexpected.is_empty() {
                msg += &format!("\n  unexpected: {}", unexpected.join(", "));
            }
            if !misshaped.is_empty() {
                msg += &format!("\n  mis-shaped: {}", misshaped.join("; "));
            }
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                msg,
            });
        }
        for (name, t) in targets {
            let h = &self.tensors[&format!("{prefix}.{name}")];
            let src = match h.dtype {
                DType::F32 => Tensor::from_slice_on(
                    t.gpu(),
                    &bytemuck::pod_collect_to_vec::<u8, f32>(&h.bytes),
                    &h.shape,
                )?,
                DType::U32 => Tensor::from_slice_on(
                    t.gpu(),
                    &bytemuck::pod_collect_to_vec::<u8, u32>(&h.bytes),
                    &h.shape,
                )?,
                DType::I32 => Tensor::from_slice_on(
                    t.gpu(),
                    &bytemuck::pod_collect_to_vec::<u8, i32>(&h.bytes),
                    &h.shape,
                )?,
                DType::F16 => Tensor::from_slice_on(
                    t.gpu(),
                    &bytemuck::pod_collect_to_vec::<u8, half::f16>(&h.bytes),
                    &h.shape,
                )?,
            };
            t.copy_from(&src)?;
        }
        Ok(())
    }
}
