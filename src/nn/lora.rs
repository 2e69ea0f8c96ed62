//! LoRA: low-rank adapters on frozen Linear layers (Hu et al. 2021, as in Hugging Face PEFT).
//!
//! A Linear layer `y = x W^T + b` with W (out, in) frozen gets two small trainable matrices,
//! A (r, in) and B (out, r), and computes
//!
//! ```text
//! y = x W^T + b + s * (drop(x) A^T) B^T        s = alpha / r,  x (..., in) -> y (..., out)
//! ```
//!
//! without ever forming `W + s B A`: the LoRA path is two thin matmuls, (..., in) x (in, r) and
//! (..., r) x (r, out), costing `r (in + out)` multiply-adds per row next to the base's
//! `in * out`. Autograd gives dA = s B^T g^T drop(x) and dB = s g^T (drop(x) A^T) (summed over
//! the leading dims), and dx = g W + s g B A; W and b are frozen and get nothing.
//!
//! A is initialised like PyTorch's Linear (`kaiming_uniform(a = sqrt 5)`: U(-1/sqrt(in),
//! 1/sqrt(in)), as PEFT does) and B to zeros, so a fresh adapter leaves the model's output
//! unchanged and training starts from the pretrained function.
//!
//! **Merging** folds the adapter into the base for inference: `W += s B A` (in place on the
//! GPU); the adapter then adds nothing until **unmerged** (`W -= s B A`, exact up to f32
//! rounding).
//!
//! **Where adapters live.** Every [`Linear`] has an optional [`LoraAdapter`] slot
//! ([`Linear::lora`]); [`apply_lora`] finds the Linear layers of any model by dotted path with
//! [`Module::visit_linears_mut`] and fills the slots of those whose path matches
//! [`LoraConfig::target_modules`]. The model keeps its type, its forward code and its names:
//! the adapter of `blocks.0.attn.q_proj` shows up as parameters
//! `blocks.0.attn.q_proj.lora_A.weight` (r, in) and `.lora_B.weight` (out, r), the names PEFT
//! uses (its files add the prefix `base_model.model.`, see [`super::lora_io`]).
//!
//! **The frozen base** is anything implementing [`FrozenBase`] (forward differentiable in x
//! only, and optionally a weight to merge into); [`Linear`] is the one kiln ships (its base may
//! be held in NF4, see QLoRA below).
//!
//! **QLoRA** keeps the adapted models' own Linear layers and holds their base weights in NF4:
//! [`quantize_bases`] (same selection as [`apply_lora`], call it first) replaces each selected
//! layer's f32 weight by an NF4 one ([`Linear::quantize_base`], about 0.13 x the bytes; the f32
//! buffer is freed), then [`apply_lora`] adds adapters as usual. The forward runs the fused
//! NF4 matmul plus the LoRA path; the NF4 weights are not parameters. [`merge`] on a quantised
//! layer dequantises it (it becomes f32); [`merged_state`] gives the tensors of a plain merged
//! checkpoint without changing the model, [`dense_state`] a full one with f32 bases and the
//! adapters.
//!
//! ```
//! use kiln::{Tensor, nn::{Linear, Module, lora::{LoraAdapter, LoraConfig}}};
//! let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let mut lin = Linear::from_tensors(w, None)?;
//! // A (1, 2) = [1, 1], B (2, 1) = [1, 0], alpha 2, r 1: y = x W^T + 2 * (x . [1, 1]) [1, 0]
//! let a = Tensor::from_slice(&[1.0f32, 1.0], &[1, 2])?;
//! let b = Tensor::from_slice(&[1.0f32, 0.0], &[2, 1])?;
//! lin.lora = Some(LoraAdapter::from_tensors(a, b, 2.0, 0.0)?);
//! let y = lin.forward(&Tensor::from_slice(&[1.0f32, 1.0], &[1, 2])?)?;
//! assert_eq!(y.to_vec::<f32>()?, [3.0 + 4.0, 7.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::init::{self, FanMode, Init};
pub use super::qlora::{
    QuantLayer, QuantReport, dense_state, merged_state, quantize_bases, quantized_layers,
    quantized_numel,
};
use super::{Linear, Module, dropout};
use crate::error::{Error, Result, arg_err, shape_err};
use crate::io::names::glob_match;
use crate::nn::freeze as transfer;
pub use crate::ops::nf4::QuantError;
use crate::tensor::Tensor;

/// The frozen layer under a [`LoraAdapter`]: a plain [`Linear`] now, a quantised linear later.
pub trait FrozenBase {
    /// Input width `in`.
    fn in_features(&self) -> usize;
    /// Output width `out`.
    fn out_features(&self) -> usize;
    /// `x W^T + b` for x (..., in) -> (..., out), recorded so that autograd sends a gradient to
    /// x (dx = g W) and none to the frozen weights.
    fn base_forward(&self, x: &Tensor) -> Result<Tensor>;
    /// `W += alpha * delta` in place for delta (out, in), without autograd (merging). A base
    /// that cannot be written (a quantised one) returns an error.
    fn add_to_weight(&self, alpha: f32, delta: &Tensor) -> Result<()>;
}

impl FrozenBase for Linear {
    fn in_features(&self) -> usize {
        Linear::in_features(self)
    }

    fn out_features(&self) -> usize {
        Linear::out_features(self)
    }

    fn base_forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_base(x)
    }

    /// Errors for a quantised layer ([`Linear::is_quantized`]): call
    /// [`Linear::dequantize_base`] first, or use [`merge`], which does.
    fn add_to_weight(&self, alpha: f32, delta: &Tensor) -> Result<()> {
        if self.is_quantized() {
            return arg_err(
                "LoRA merge",
                "the base weight is NF4 and cannot absorb an f32 update in place; call \
                 Linear::dequantize_base first (lora::merge does)",
            );
        }
        let _g = crate::no_grad();
        self.weight.axpy_assign(alpha, delta)
    }
}

/// The trainable low-rank pair of one layer: `delta(x) = s * (drop(x) A^T) B^T`, s = alpha / r.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// A (r, in), trainable.
    pub a: Tensor,
    /// B (out, r), trainable.
    pub b: Tensor,
    alpha: f32,
    dropout: f32,
    merged: bool,
    training: bool,
}

impl LoraAdapter {
    /// A fresh adapter for a layer `in_features -> out_features` on `gpu`: A as PyTorch's Linear
    /// (PEFT's default), B zeros, both trainable.
    pub fn new_on(
        gpu: &Arc<Gpu>,
        in_features: usize,
        out_features: usize,
        r: usize,
        alpha: f32,
        dropout: f32,
    ) -> Result<Self> {
        check_hyper(r, alpha, dropout)?;
        let a = Init::KaimingUniform {
            gain: init::linear_default_gain(),
            mode: FanMode::FanIn,
        }
        .tensor_on(gpu, &[r, in_features])?
        .requires_grad();
        let b = Tensor::zeros_on(gpu, &[out_features, r])?.requires_grad();
        Self::from_tensors(a, b, alpha, dropout)
    }

    /// An adapter with the given A (r, in) and B (out, r), used as they are (their
    /// `requires_grad` flags are kept).
    pub fn from_tensors(a: Tensor, b: Tensor, alpha: f32, dropout: f32) -> Result<Self> {
        a.expect_f32("LoRA")?;
        b.expect_f32("LoRA")?;
        a.same_device("LoRA", &b)?;
        if a.rank() != 2 || b.rank() != 2 || a.shape()[0] != b.shape()[1] {
            return shape_err(
                "LoRA",
                format!(
                    "need A (r, in) and B (out, r) with the same r, got A {:?} and B {:?}",
                    a.shape(),
                    b.shape()
                ),
            );
        }
        check_hyper(a.shape()[0], alpha, dropout)?;
        Ok(LoraAdapter {
            a,
            b,
            alpha,
            dropout,
            merged: false,
            training: true,
        })
    }

    /// The rank r.
    pub fn r(&self) -> usize {
        self.a.shape()[0]
    }

    /// alpha.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// Dropout probability on the LoRA path's input.
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// The scale s = alpha / r.
    pub fn scale(&self) -> f32 {
        self.alpha / self.r() as f32
    }

    /// True while `s B A` is folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Training mode (dropout on the LoRA path active).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Switch dropout on (training) or off (evaluation).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// `s * (drop(x) A^T) B^T` for x (..., in) -> (..., out); the scale is applied to the thin
    /// (..., r) intermediate.
    pub fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.training && self.dropout > 0.0 {
            dropout(x, self.dropout, true)?
        } else {
            x.clone()
        };
        let xa = x.matmul(&self.a.t()?)?.mul_scalar(self.scale())?; // (..., r)
        xa.matmul(&self.b.t()?) // (..., out)
    }

    /// `base(x) + delta(x)`, or just `base(x)` while merged.
    pub fn forward(&self, base: &dyn FrozenBase, x: &Tensor) -> Result<Tensor> {
        let y = base.base_forward(x)?;
        if self.merged {
            return Ok(y);
        }
        y.add(&self.delta(x)?)
    }

    fn check_base(&self, base: &dyn FrozenBase) -> Result<()> {
        if self.a.shape()[1] != base.in_features() || self.b.shape()[0] != base.out_features() {
            return shape_err(
                "LoRA",
                format!(
                    "adapter A {:?}, B {:?} does not fit a base layer {} -> {}",
                    self.a.shape(),
                    self.b.shape(),
                    base.in_features(),
                    base.out_features()
                ),
            );
        }
        Ok(())
    }

    /// `W += s B A` in place; forward then skips the LoRA path. No-op when already merged.
    pub fn merge(&mut self, base: &dyn FrozenBase) -> Result<()> {
        self.check_base(base)?;
        if !self.merged {
            let _g = crate::no_grad();
            base.add_to_weight(self.scale(), &self.b.matmul(&self.a)?)?; // (out, in)
            self.merged = true;
        }
        Ok(())
    }

    /// `W -= s B A` in place, undoing [`LoraAdapter::merge`] (up to f32 rounding). No-op when
    /// not merged.
    pub fn unmerge(&mut self, base: &dyn FrozenBase) -> Result<()> {
        self.check_base(base)?;
        if self.merged {
            let _g = crate::no_grad();
            base.add_to_weight(-self.scale(), &self.b.matmul(&self.a)?)?;
            self.merged = false;
        }
        Ok(())
    }

    /// `[("lora_A.weight", A), ("lora_B.weight", B)]`, PEFT's names.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("lora_A.weight".to_string(), self.a.clone()),
            ("lora_B.weight".to_string(), self.b.clone()),
        ]
    }
}

fn check_hyper(r: usize, alpha: f32, dropout: f32) -> Result<()> {
    if r == 0 {
        return arg_err("LoRA", "rank r must be at least 1");
    }
    if !alpha.is_finite() {
        return arg_err(
            "LoRA",
            format!("alpha must be a finite number, got {alpha}"),
        );
    }
    if !(0.0..1.0).contains(&dropout) {
        return arg_err("LoRA", format!("dropout must be in [0, 1), got {dropout}"));
    }
    Ok(())
}

/// Which layers get adapters and how (the fields of PEFT's `LoraConfig` that kiln supports;
/// `bias` is always `"none"`: biases stay frozen).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r of A (r, in) and B (out, r).
    pub r: usize,
    /// alpha; the LoRA path is scaled by alpha / r.
    pub alpha: f32,
    /// Dropout on the LoRA path's input (training only).
    pub dropout: f32,
    /// Module names to adapt, as in PEFT: an entry selects a Linear layer whose dotted path
    /// equals it or ends with `.` + it (`"q_proj"` selects `blocks.3.attn.q_proj`); selecting
    /// a layer that is not a Linear (a Conv, an Embedding) is an error. An entry with `*` or `?`
    /// is a glob over the whole path instead (`"blocks.0.*"`), selecting the Linear layers
    /// among what it matches.
    pub target_modules: Vec<String>,
    /// PEFT's `task_type` (e.g. `CAUSAL_LM`, `SEQ_CLS`), written to `adapter_config.json`.
    pub task_type: Option<String>,
    /// PEFT's `base_model_name_or_path`, written to `adapter_config.json`.
    pub base_model_name_or_path: Option<String>,
}

impl LoraConfig {
    /// r, alpha, no dropout, the given targets, no task type or base model name.
    pub fn new(r: usize, alpha: f32, target_modules: &[&str]) -> Self {
        LoraConfig {
            r,
            alpha,
            dropout: 0.0,
            target_modules: target_modules.iter().map(|s| s.to_string()).collect(),
            task_type: None,
            base_model_name_or_path: None,
        }
    }

    /// Check the hyper-parameters and that there is at least one target.
    pub fn validate(&self) -> Result<()> {
        check_hyper(self.r, self.alpha, self.dropout)?;
        if self.target_modules.is_empty() {
            return arg_err("LoRA", "target_modules is empty; name the layers to adapt");
        }
        Ok(())
    }

    /// True when module path `name` is selected by target `t` (see
    /// [`LoraConfig::target_modules`]).
    pub fn target_matches(t: &str, name: &str) -> bool {
        if t.contains(['*', '?']) {
            glob_match(t, name)
        } else {
            name == t || name.strip_suffix(t).is_some_and(|p| p.ends_with('.'))
        }
    }

    /// True when any target selects `name`.
    pub fn selects(&self, name: &str) -> bool {
        self.target_modules
            .iter()
            .any(|t| Self::target_matches(t, name))
    }
}

/// Paths and widths `(path, in, out)` of the Linear layers of `model` that `cfg` selects, in
/// the model's order, checking that every target selects one and none is adapted already.
/// Changes nothing.
pub fn plan(model: &mut dyn Module, cfg: &LoraConfig) -> Result<Vec<(String, usize, usize)>> {
    cfg.validate()?;
    let mut all = Vec::new();
    let mut chosen = Vec::new();
    let mut adapted = Vec::new();
    model.visit_linears_mut("", &mut |name, lin| {
        all.push(name.to_string());
        if cfg.selects(name) {
            chosen.push((name.to_string(), lin.in_features(), lin.out_features()));
            if lin.lora.is_some() {
                adapted.push(name.to_string());
            }
        }
    });
    if !adapted.is_empty() {
        return arg_err(
            "LoRA",
            format!("layers already have adapters: {}", adapted.join(", ")),
        );
    }
    check_targets(model, cfg, &all)?;
    Ok(chosen)
}

/// Every target of `cfg` must select at least one of the Linear layers `all` of `model`, and
/// an exact target must not name a layer that is not a Linear.
pub(super) fn check_targets(model: &dyn Module, cfg: &LoraConfig, all: &[String]) -> Result<()> {
    // A name picked by an exact (non-glob) target that owns a `.weight` but was not visited is
    // a layer LoRA cannot wrap (Conv, Embedding) or a container without `visit_linears_mut`:
    // say so rather than skip it. Globs pick the Linear layers among what they match.
    let visited: std::collections::BTreeSet<&str> = all.iter().map(String::as_str).collect();
    for (p, _) in model.named_parameters() {
        if let Some(m) = p.strip_suffix(".weight")
            && !visited.contains(m)
            && let Some(t) = cfg
                .target_modules
                .iter()
                .find(|t| !t.contains(['*', '?']) && LoraConfig::target_matches(t, m))
        {
            return arg_err(
                "LoRA",
                format!(
                    "target `{t}` selects `{m}`, which is not a Linear layer LoRA can reach \
                     (LoRA adapts nn::Linear layers found by Module::visit_linears_mut)"
                ),
            );
        }
    }
    for t in &cfg.target_modules {
        if !all.iter().any(|n| LoraConfig::target_matches(t, n)) {
            let mut some: Vec<&str> = all.iter().take(12).map(String::as_str).collect();
            if all.len() > 12 {
                some.push("...");
            }
            return arg_err(
                "LoRA",
                format!(
                    "target module `{t}` matches no Linear layer of the model (its Linear \
                     layers: {})",
                    if some.is_empty() {
                        "none".to_string()
                    } else {
                        some.join(", ")
                    }
                ),
            );
        }
    }
    Ok(())
}

/// Add fresh adapters (A as PyTorch's Linear, B zeros) to the Linear layers of `model` that
/// `cfg` selects and freeze everything else, as PEFT's `get_peft_model` does: afterwards only
/// the `lora_A` / `lora_B` tensors require grad. Returns the adapted paths. Errors, changing
/// nothing, on a bad config, a target that selects no Linear layer, or a layer already
/// adapted.
///
/// ```
/// use kiln::{models::{Gpt, GptConfig}, nn::{Module, lora}};
/// let cfg = GptConfig { vocab_size: 11, n_layer: 2, n_head: 2, n_kv_head: 2, d_model: 8,
///                       context: 6, dropout: 0.0, rope: false };
/// let mut gpt = Gpt::new(cfg)?;
/// let adapted = lora::apply_lora(&mut gpt, &lora::LoraConfig::new(2, 4.0, &["q_proj", "v_proj"]))?;
/// assert_eq!(adapted, ["blocks.0.attn.q_proj", "blocks.0.attn.v_proj",
///                      "blocks.1.attn.q_proj", "blocks.1.attn.v_proj"]);
/// assert_eq!(lora::lora_parameters(&gpt).len(), 8);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn apply_lora(model: &mut dyn Module, cfg: &LoraConfig) -> Result<Vec<String>> {
    let chosen = plan(model, cfg)?;
    transfer::freeze(&*model, &["*"])?;
    let mut err: Option<Error> = None;
    model.visit_linears_mut("", &mut |name, lin| {
        if err.is_some() || !cfg.selects(name) {
            return;
        }
        let gpu = lin.weight.gpu().clone();
        let (i, o) = (lin.in_features(), lin.out_features());
        match LoraAdapter::new_on(&gpu, i, o, cfg.r, cfg.alpha, cfg.dropout) {
            Ok(a) => lin.lora = Some(a),
            Err(e) => err = Some(e),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(chosen.into_iter().map(|(n, _, _)| n).collect()),
    }
}

/// Paths and adapters `(path, r, alpha)` of every adapted Linear layer of `model`.
pub fn adapted_layers(model: &mut dyn Module) -> Vec<(String, usize, f32)> {
    let mut v = Vec::new();
    model.visit_linears_mut("", &mut |name, lin| {
        if let Some(a) = &lin.lora {
            v.push((name.to_string(), a.r(), a.alpha()));
        }
    });
    v
}

/// The LoRA tensors of `model` (`<path>.lora_A.weight`, `<path>.lora_B.weight`) by name, in
/// the model's order: what to give the optimizer so that state exists only for them.
pub fn lora_parameters(model: &dyn Module) -> Vec<(String, Tensor)> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| is_lora_name(n))
        .collect()
}

/// True for a LoRA tensor name (`...lora_A.weight` / `...lora_B.weight`).
pub fn is_lora_name(name: &str) -> bool {
    ["lora_A.weight", "lora_B.weight"].iter().any(|s| {
        name.strip_suffix(s)
            .is_some_and(|p| p.is_empty() || p.ends_with('.'))
    })
}

fn each_adapter(
    model: &mut dyn Module,
    mut f: impl FnMut(&mut LoraAdapter, &mut Linear) -> Result<()>,
) -> Result<usize> {
    let mut n = 0;
    let mut err: Option<Error> = None;
    model.visit_linears_mut("", &mut |_, lin| {
        if err.is_some() {
            return;
        }
        if let Some(mut a) = lin.lora.take() {
            if let Err(e) = f(&mut a, lin) {
                err = Some(e);
            }
            lin.lora = Some(a);
            n += 1;
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Fold every adapter into its base weight (`W += s B A`); returns how many were merged now.
///
/// A quantised (QLoRA) layer is first dequantised ([`Linear::dequantize_base`]): it **becomes
/// an f32 layer** holding `W' + s B A` (W' the dequantised NF4 weight) and stays f32 after
/// [`unmerge`] (which then gives back W' in f32, not the NF4 codes).
pub fn merge(model: &mut dyn Module) -> Result<usize> {
    let mut n = 0;
    each_adapter(model, |a, lin| {
        n += usize::from(!a.is_merged());
        if !a.is_merged() {
            lin.dequantize_base()?;
        }
        a.merge(&*lin)
    })?;
    Ok(n)
}

/// Undo [`merge`] (`W -= s B A`); returns how many were unmerged now.
pub fn unmerge(model: &mut dyn Module) -> Result<usize> {
    let mut n = 0;
    each_adapter(model, |a, lin| {
        n += usize::from(a.is_merged());
        a.unmerge(&*lin)
    })?;
    Ok(n)
}

/// `model.set_training(training)`, and the same for every adapter's dropout (containers that
/// do not pass `set_training` down to their Linear layers would otherwise miss them).
pub fn set_training(model: &mut dyn Module, training: bool) {
    model.set_training(training);
    let _ = each_adapter(model, |a, _| {
        a.set_training(training);
        Ok(())
    });
}

/// Remove every adapter (after [`merge`] to keep its effect) and return how many there were;
/// the base parameters stay frozen.
pub fn remove_adapters(model: &mut dyn Module) -> usize {
    let mut n = 0;
    model.visit_linears_mut("", &mut |_, lin| {
        n += usize::from(lin.lora.take().is_some());
    });
    n
}

/// PEFT's `print_trainable_parameters` line:
/// `trainable params: 1,024 || all params: 65,536 || trainable%: 1.5625`.
pub fn trainable_summary(model: &dyn Module) -> String {
    let c = transfer::param_counts(model);
    let pct = if c.total == 0 {
        0.0
    } else {
        100.0 * c.trainable as f64 / c.total as f64
    };
    format!(
        "trainable params: {} || all params: {} || trainable%: {pct:.4}",
        crate::show::digits(c.trainable),
        crate::show::digits(c.total)
    )
}
