//! Checkpoints: named GPU tensors plus string metadata in one safetensors file, written
//! atomically ([`crate::io::atomic`]).
//!
//! Layout of a kiln checkpoint:
//! - tensors `model.<param name>` (weights), `buffer.<name>` (e.g. BatchNorm running stats),
//!   `optim.<state name>` (momentum, Adam moments), all in their own dtype;
//! - metadata (`__metadata__` in the safetensors header, string to string): `format`
//!   ([`FORMAT`]), and whatever the trainer records (progress with the loader position, RNG
//!   state, model spec, config, data scaler, as JSON strings).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
pub use crate::io::safetensors::{HostTensor, KILN_FORMAT as FORMAT};
use crate::tensor::Tensor;

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

/// Write `tensors` (read back from the GPU) and `metadata` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        host.push((name.clone(), t.to_host()?));
    }
    crate::io::safetensors::check_finite(
        &path.display().to_string(),
        host.iter().map(|(n, h)| (n.as_str(), h)),
    )?;
    let mut meta = metadata.clone();
    meta.insert("format".into(), FORMAT.into());
    crate::io::safetensors::write(path, &host, &meta)
}

/// Refuse tensors holding NaN or infinite values, naming the first such tensor (one readback
/// each; [`save`] checks the copies it writes, at no extra cost).
pub fn check_finite_tensors(tensors: &[(String, Tensor)]) -> Result<()> {
    for (name, t) in tensors {
        let h = t.to_host()?;
        crate::io::safetensors::check_finite("(in memory)", [(name.as_str(), &h)])?;
    }
    Ok(())
}

/// Read a checkpoint, with a clear error for missing, truncated or foreign files.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let f = crate::io::safetensors::read(path)?;
    if !f.is_kiln() {
        return Err(Error::Checkpoint {
            path: f.path,
            msg: format!(
                "not a kiln checkpoint (format tag {:?}, expected {FORMAT:?})",
                f.metadata.get("format")
            ),
        });
    }
    Ok(Checkpoint {
        path: f.path,
        tensors: f.tensors,
        metadata: f.metadata,
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
        crate::io::safetensors::check_finite(
            &self.path,
            targets
                .iter()
                .map(|(name, _)| (name.as_str(), &self.tensors[&format!("{prefix}.{name}")])),
        )?;
        for (name, t) in targets {
            let h = &self.tensors[&format!("{prefix}.{name}")];
            t.copy_from(&Tensor::from_host_on(t.gpu(), h)?)?;
        }
        Ok(())
    }
}
