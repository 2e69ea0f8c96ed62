//! Transfer learning: load pretrained weights by name, freeze and unfreeze layers by name
//! pattern, and train a subset of classes.
//!
//! The recipe (what `kiln train --init-from` and `examples/transfer_digits.rs` do):
//!
//! 1. build the model for the new task (its head, the last Linear layer named by
//!    [`crate::models::ModelSpec::head_name`], has the new class count);
//! 2. [`load_pretrained`] copies every tensor of a checkpoint into the parameter or buffer of the
//!    same name, skipping names that match [`LoadOptions::skip`] patterns, and skipping the head
//!    when its shape differs (a different class count): the head stays freshly initialised;
//! 3. [`freeze`] turns `requires_grad` off for the trunk (`features.*`). Frozen parameters
//!    receive no gradient, the optimizer skips them and creates no state for them;
//! 4. train; optionally [`unfreeze_with_lr`] later with a smaller learning-rate scale
//!    ([`crate::optim::Optimizer::set_lr_scale`]), so the pretrained weights move gently.
//!
//! Name patterns (`--freeze`, `--init-skip`) are globs over dotted parameter names: `*` matches
//! any run of characters (dots included), `?` one character, anything else itself. A pattern
//! selects a name when it matches the whole name or a dotted prefix of it, so `features`,
//! `features.*` and `features.0` select whole modules, `*.bias` every bias, and
//! `classifier.4.weight` one tensor.
//!
//! ```
//! use kiln::train::transfer::pattern_matches;
//! assert!(pattern_matches("features.*", "features.0.weight"));
//! assert!(pattern_matches("features", "features.3.bias"));      // a module prefix
//! assert!(pattern_matches("*.bias", "classifier.4.bias"));
//! assert!(!pattern_matches("features", "features_extra.weight"));
//! assert!(!pattern_matches("classifier.?.bias", "classifier.4.weight"));
//! ```
//!
//! Frozen BatchNorm layers still update their running statistics in training mode (as in
//! PyTorch); call `set_training(false)` on them to keep those fixed too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use super::checkpoint::{self, HostTensor};
use crate::data::{Dataset, InMemoryDataset};
use crate::error::{Error, Result, io_err};
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::tensor::{DType, Tensor};

/// True when glob `pattern` matches all of `name` (`*`: any run, `?`: one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, name index)
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i + 1, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// True when `pattern` selects parameter `name`: it matches the whole name or a dotted prefix
/// of it (so a module name selects all its tensors). See the module notes for the syntax.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    glob_match(pattern, name)
        || name
            .match_indices('.')
            .any(|(k, _)| glob_match(pattern, &name[..k]))
}

fn any_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, name))
}

/// Check that every pattern selects at least one of `names` (a typo would otherwise freeze
/// nothing, silently).
fn check_patterns(op: &'static str, patterns: &[String], names: &[String]) -> Result<()> {
    for p in patterns {
        if !names.iter().any(|n| pattern_matches(p, n)) {
            let mut some: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            if names.len() > 8 {
                some.push("...");
            }
            return crate::error::arg_err(
                op,
                format!(
                    "pattern `{p}` matches no parameter of the model (its parameters: {})",
                    some.join(", ")
                ),
            );
        }
    }
    Ok(())
}

fn owned(patterns: &[impl AsRef<str>]) -> Vec<String> {
    patterns.iter().map(|p| p.as_ref().to_string()).collect()
}

fn set_frozen(
    op: &'static str,
    model: &dyn Module,
    patterns: &[String],
    frozen: bool,
) -> Result<Vec<String>> {
    let params = model.named_parameters();
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    check_patterns(op, patterns, &names)?;
    let mut changed = Vec::new();
    for (name, t) in &params {
        if any_match(patterns, name) {
            if t.requires_grad_flag() == frozen {
                changed.push(name.clone());
            }
            t.set_requires_grad(!frozen)?;
            if frozen {
                // A stale gradient would otherwise still be seen by clipping.
                t.clear_grad();
            }
        }
    }
    Ok(changed)
}

/// Freeze the parameters selected by any of `patterns`: `requires_grad` off, gradient dropped.
/// Returns the names that were trainable before. Errors, changing nothing, when a pattern
/// selects no parameter.
///
/// ```
/// use kiln::{models::LeNet, nn::Module, train::transfer};
/// let net = LeNet::new_on(&kiln::device()?, (1, 8, 8), 5)?;
/// let frozen = transfer::freeze(&net, &["features.*"])?;
/// assert_eq!(frozen, ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]);
/// let c = transfer::param_counts(&net);
/// assert_eq!(c.total - c.trainable, 6 * 25 + 6 + 16 * 6 * 25 + 16);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn freeze(model: &dyn Module, patterns: &[impl AsRef<str>]) -> Result<Vec<String>> {
    set_frozen("freeze", model, &owned(patterns), true)
}

/// Unfreeze the parameters selected by any of `patterns` (`requires_grad` on); they train at
/// the optimizer's rate times their scale (1 unless set). Returns the names that were frozen.
pub fn unfreeze(model: &dyn Module, patterns: &[impl AsRef<str>]) -> Result<Vec<String>> {
    set_frozen("unfreeze", model, &owned(patterns), false)
}

/// [`unfreeze`], then give the unfrozen parameters the learning rate `lr_scale` x the base rate
/// in `opt` (which must hold them: build optimizers over all of `named_parameters()`, frozen
/// ones included; they cost nothing while frozen). Errors, changing nothing, on a bad pattern,
/// a bad scale or a parameter `opt` does not hold.
pub fn unfreeze_with_lr(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    patterns: &[impl AsRef<str>],
    lr_scale: f32,
) -> Result<Vec<String>> {
    let patterns = owned(patterns);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| any_match(&patterns, n))
        .collect();
    check_patterns("unfreeze", &patterns, &names)?;
    opt.set_lr_scale(&names, lr_scale)?;
    set_frozen("unfreeze", model, &patterns, false)
}

/// Unfreeze every frozen parameter of `model` at `lr_scale` x the base rate (what the trainer
/// does at `unfreeze_at`). Returns their names; empty (and nothing changed) when none is frozen.
pub fn unfreeze_all_with_lr(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    lr_scale: f32,
) -> Result<Vec<String>> {
    let frozen: Vec<String> = model
        .named_parameters()
        .into_iter()
        .filter(|(_, t)| !t.requires_grad_flag())
        .map(|(n, _)| n)
        .collect();
    if frozen.is_empty() {
        return Ok(frozen);
    }
    unfreeze_with_lr(model, opt, &frozen, lr_scale)
}

/// Trainable and total parameter counts (scalars and tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    /// Scalars that require grad.
    pub trainable: usize,
    /// All scalars.
    pub total: usize,
    /// Tensors that require grad.
    pub trainable_tensors: usize,
    /// All parameter tensors.
    pub total_tensors: usize,
}

/// Count `model`'s trainable and total parameters.
pub fn param_counts(model: &dyn Module) -> ParamCounts {
    let params = model.named_parameters();
    let on: Vec<&Tensor> = params
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.requires_grad_flag())
        .collect();
    ParamCounts {
        trainable: on.iter().map(|t| t.numel()).sum(),
        total: params.iter().map(|(_, t)| t.numel()).sum(),
        trainable_tensors: on.len(),
        total_tensors: params.len(),
    }
}

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

/// The checkpoint file `path` names: the file itself, or in a run directory `best.safetensors`
/// (else `checkpoint.safetensors`).
pub fn checkpoint_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    for f in [super::trainer::BEST, super::trainer::LAST] {
        if path.join(f).is_file() {
            return Ok(path.join(f));
        }
    }
    Err(Error::Io {
        path: path.display().to_string(),
        msg: format!(
            "a directory without {} or {}; pass a run directory or a .safetensors file",
            super::trainer::BEST,
            super::trainer::LAST
        ),
    })
}

/// The model tensors of a safetensors file by name: a kiln checkpoint's `model.*` and
/// `buffer.*` tensors (prefix removed, optimizer state ignored), or every tensor of any other
/// safetensors file (e.g. one saved by PyTorch's `safetensors.torch.save_file`).
pub fn read_weights(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let bad = |msg: String| Error::Checkpoint {
        path: p.clone(),
        msg,
    };
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let kiln = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format"))
        .is_some_and(|f| f == checkpoint::FORMAT);
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let name = if kiln {
            match name
                .strip_prefix("model.")
                .or_else(|| name.strip_prefix("buffer."))
            {
                Some(n) => n.to_string(),
                None => continue,
            }
        } else {
            name
        };
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
        let h = HostTensor {
            dtype,
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        };
        out.insert(name, h);
    }
    Ok(out)
}

/// Copy host tensor `h` into `t` (same shape and dtype, checked by the caller).
fn upload_into(t: &Tensor, h: &HostTensor) -> Result<()> {
    let g = t.gpu();
    let src = match h.dtype {
        DType::F32 => Tensor::from_slice_on(
            g,
            &bytemuck::pod_collect_to_vec::<u8, f32>(&h.bytes),
            &h.shape,
        )?,
        DType::U32 => Tensor::from_slice_on(
            g,
            &bytemuck::pod_collect_to_vec::<u8, u32>(&h.bytes),
            &h.shape,
        )?,
        DType::I32 => Tensor::from_slice_on(
            g,
            &bytemuck::pod_collect_to_vec::<u8, i32>(&h.bytes),
            &h.shape,
        )?,
        DType::F16 => Tensor::from_slice_on(
            g,
            &bytemuck::pod_collect_to_vec::<u8, half::f16>(&h.bytes),
            &h.shape,
        )?,
    };
    t.copy_from(&src)
}

/// Load the weights of checkpoint `path` (a file, or a run directory: see
/// [`checkpoint_file`]) into `model`'s parameters and buffers, matched by name.
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
        upload_into(t, h)?;
        report.loaded.push(name.clone());
    }
    Ok(report)
}

/// Parse a class list: `0-4`, `5,6,7,8,9`, `0-2,7` (ascending ranges, no repeats).
pub fn parse_classes(spec: &str) -> Result<Vec<u32>> {
    let bad = |m: String| crate::error::arg_err("classes", m);
    let mut out: Vec<u32> = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let num = |s: &str| {
            s.trim().parse::<u32>().map_err(|_| Error::Arg {
                op: "classes",
                msg: format!("`{spec}`: `{s}` is not a class number (use e.g. 0-4 or 5,6,7)"),
            })
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let a = num(part)?;
                (a, a)
            }
        };
        if a > b {
            return bad(format!("`{spec}`: range {a}-{b} runs backwards"));
        }
        for c in a..=b {
            if out.contains(&c) {
                return bad(format!("`{spec}`: class {c} is listed twice"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

/// The examples of `data` whose class is in `classes`, relabelled `classes[i]` -> `i` with the
/// class names kept (`"5"`..`"9"` for digits 5-9). Errors on a regression dataset, a class
/// out of range or an empty selection.
///
/// ```
/// use kiln::{data::{digits, Dataset}, train::transfer::select_classes};
/// let high = select_classes(&digits()?, &[5, 6, 7, 8, 9])?;
/// assert_eq!(high.num_classes(), Some(5));
/// assert_eq!(high.class_names().unwrap()[0], "5");
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn select_classes(data: &InMemoryDataset, classes: &[u32]) -> Result<InMemoryDataset> {
    let bad = |m: String| crate::error::arg_err("classes", m);
    let (Some(labels), Some(k)) = (data.labels(), data.num_classes()) else {
        return bad("a class subset needs classification data".into());
    };
    if classes.is_empty() {
        return bad("no class selected".into());
    }
    if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
        return bad(format!(
            "class {c} does not exist; the data has classes 0..{}",
            k - 1
        ));
    }
    let mut map = vec![None; k];
    for (i, &c) in classes.iter().enumerate() {
        map[c as usize] = Some(i as u32);
    }
    let idx: Vec<usize> = (0..labels.len())
        .filter(|&i| map[labels[i] as usize].is_some())
        .collect();
    let names: Vec<String> = match data.class_names() {
        Some(n) => classes.iter().map(|&c| n[c as usize].clone()).collect(),
        None => classes.iter().map(|c| c.to_string()).collect(),
    };
    let (x, shape, y, _) = data.subset(&idx)?.into_parts();
    let new_labels = match y {
        crate::data::Targets::Classes { labels, .. } => labels
            .iter()
            .map(|&l| map[l as usize].unwrap_or(0))
            .collect(),
        crate::data::Targets::Values { .. } => return bad("regression targets".into()),
    };
    let y = crate::data::Targets::Classes {
        labels: new_labels,
        num_classes: classes.len(),
    };
    let out = InMemoryDataset::new(x, shape, y)?.with_class_names(names)?;
    if out.is_empty() {
        return bad(format!("no example has one of the classes {classes:?}"));
    }
    Ok(out)
}
