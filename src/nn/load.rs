//! Loading pretrained weights into a model by name (`kiln train --init-from`, transfer
//! learning): every tensor of a checkpoint goes into the parameter or buffer of the same name,
//! with skip patterns, a strict or non-strict mode, and a classifier head that is re-initialised
//! when its class count differs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::names::{any_match, pattern_matches};
use crate::io::run_dir::checkpoint_file;
use crate::io::safetensors::read_weights;
use crate::nn::Module;
use crate::tensor::Tensor;

/// How [`load_pretrained`] matches names.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Patterns of names not to load (left as initialised), in the model and the file alike.
    pub skip: Vec<String>,
    /// Strict: every model tensor must be in the file and every file tensor in the model.
    /// Non-strict: load the names both have and report the rest. Mis-shaped tensors are an
    /// error in both modes (as in PyTorch); skip them instead.
    pub strict: bool,
    /// The model's classifier head (e.g. `classifier.4`): when its tensors differ in shape
    /// from the file's (another class count) they are skipped and reported as a replaced head
    /// instead of being an error.
    pub head: Option<String>,
}

impl Default for LoadOptions {
    /// Strict, nothing skipped, no head.
    fn default() -> Self {
        LoadOptions {
            skip: Vec::new(),
            strict: true,
            head: None,
        }
    }
}

/// What [`load_pretrained`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// The file read.
    pub path: PathBuf,
    /// Model tensors (parameters and buffers) loaded from the file.
    pub loaded: Vec<String>,
    /// Model tensors left as initialised because a skip pattern or the head rule chose them.
    pub skipped: Vec<String>,
    /// Model tensors absent from the file (non-strict loads only).
    pub missing: Vec<String>,
    /// File tensors the model has no place for (non-strict loads only).
    pub unexpected: Vec<String>,
    /// `(head name, file outputs, model outputs)` when the head was re-initialised because
    /// the class count differs.
    pub head_replaced: Option<(String, usize, usize)>,
}

impl fmt::Display for LoadReport {
    /// Several lines: file, loaded, skipped, missing, unexpected, head.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "init:   {}", self.path.display())?;
        writeln!(f, "  loaded {} tensors", self.loaded.len())?;
        let list = |f: &mut fmt::Formatter<'_>, what: &str, v: &[String]| {
            if v.is_empty() {
                Ok(())
            } else {
                writeln!(f, "  {what} {}: {}", v.len(), v.join(", "))
            }
        };
        list(f, "skipped (kept fresh)", &self.skipped)?;
        list(f, "missing from the file (kept fresh)", &self.missing)?;
        list(f, "unexpected in the file (ignored)", &self.unexpected)?;
        if let Some((h, from, to)) = &self.head_replaced {
            writeln!(
                f,
                "  head {h} replaced: the checkpoint has {from} outputs, the model {to}; \
                 re-initialised"
            )?;
        }
        Ok(())
    }
}

/// Load the weights of checkpoint `path` (a file, or a run directory: see
/// [`crate::io::run_dir::checkpoint_file`]) into `model`'s parameters and buffers, matched by name.
///
/// Nothing is changed on error. The error names the file and lists every missing, unexpected
/// and mis-shaped tensor (with the file's and the model's shape), with the ways out: `skip`
/// patterns, a non-strict load, or another model.
pub fn load_pretrained(model: &dyn Module, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
    let file = checkpoint_file(path)?;
    let weights = read_weights(&file)?;
    let mut targets = model.named_parameters();
    targets.extend(model.named_buffers());
    let mut report = LoadReport {
        path: file.clone(),
        ..Default::default()
    };
    let mut misshaped = Vec::new();
    let mut to_load = Vec::new();
    let head = opts.head.as_deref();
    let in_head = |n: &str| head.is_some_and(|h| pattern_matches(h, n));
    for (name, t) in &targets {
        if any_match(&opts.skip, name) {
            report.skipped.push(name.clone());
            continue;
        }
        match weights.get(name) {
            None => report.missing.push(name.clone()),
            Some(h) if h.shape != t.shape() || h.dtype != t.dtype() => {
                if in_head(name) && h.dtype == t.dtype() {
                    report.skipped.push(name.clone());
                    let (from, to) = (h.shape.first(), t.shape().first());
                    if let (Some(&from), Some(&to), Some(hn)) = (from, to, head) {
                        report.head_replaced = Some((hn.to_string(), from, to));
                    }
                } else {
                    misshaped.push(format!(
                        "{name}: file {:?} {:?}, model {:?} {:?}",
                        h.shape,
                        h.dtype,
                        t.shape(),
                        t.dtype()
                    ));
                }
            }
            Some(h) => to_load.push((t, h, name)),
        }
    }
    let known: BTreeSet<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
    report.unexpected = weights
        .keys()
        .filter(|n| !known.contains(n.as_str()) && !any_match(&opts.skip, n))
        .cloned()
        .collect();
    let strict_fail = opts.strict && !(report.missing.is_empty() && report.unexpected.is_empty());
    if strict_fail || !misshaped.is_empty() {
        let mut msg = "the weights do not fit the model:".to_string();
        if opts.strict && !report.missing.is_empty() {
            msg += &format!(
                "\n  missing from the file ({}): {}",
                report.missing.len(),
                report.missing.join(", ")
            );
        }
        if opts.strict && !report.unexpected.is_empty() {
            msg += &format!(
                "\n  unexpected in the file ({}): {}",
                report.unexpected.len(),
                report.unexpected.join(", ")
            );
        }
        if !misshaped.is_empty() {
            msg += &format!(
                "\n  mis-shaped ({}): {}",
                misshaped.len(),
                misshaped.join("; ")
            );
        }
        msg += "\n  skip tensors by name pattern (--init-skip 'classifier.*'), load what fits \
                (--init-non-strict), or build the model the checkpoint was trained with";
        return Err(Error::Checkpoint {
            path: file.display().to_string(),
            msg,
        });
    }
    let _g = crate::no_grad();
    for (t, h, name) in to_load {
        t.copy_from(&Tensor::from_host_on(t.gpu(), h)?)?;
        report.loaded.push(name.clone());
    }
    Ok(report)
}
