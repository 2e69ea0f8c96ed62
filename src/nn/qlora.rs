//! QLoRA: the base weights of the adapted Linear layers held in NF4 (Dettmers et al. 2023),
//! and the dense or merged state of an adapted model for export. See [`super::lora`] for the
//! adapters themselves; these items are also reachable as `kiln::nn::lora::*`.

use super::Module;
use super::lora::{LoraAdapter, LoraConfig, check_targets, is_lora_name};
use crate::error::{Error, Result, arg_err};
use crate::ops::nf4::QuantError;
use crate::tensor::Tensor;

/// One layer quantised by [`quantize_bases`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    /// Dotted path of the Linear layer (`blocks.0.attn.q_proj`).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Bytes of the NF4 weight (codes, int8 scales, f32 stats).
    pub nf4_bytes: usize,
    /// Bytes the weight took in f32 (`4 out in`).
    pub f32_bytes: usize,
    /// Quantisation error against the f32 weight.
    pub error: QuantError,
}

/// What [`quantize_bases`] did: one entry per quantised layer, in the model's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantReport {
    /// The quantised layers.
    pub layers: Vec<QuantLayer>,
}

impl QuantReport {
    /// Total NF4 bytes of the quantised base weights.
    pub fn nf4_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.nf4_bytes).sum()
    }

    /// Total f32 bytes the same weights took before.
    pub fn f32_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.f32_bytes).sum()
    }

    /// `nf4_bytes / f32_bytes` (about 0.129; 0 for an empty report).
    pub fn ratio(&self) -> f64 {
        match self.f32_bytes() {
            0 => 0.0,
            f => self.nf4_bytes() as f64 / f as f64,
        }
    }

    /// Largest relative Frobenius error `|W - W'| / |W|` over the layers.
    pub fn max_rel_error(&self) -> f64 {
        self.layers
            .iter()
            .map(|l| l.error.rel_frobenius)
            .fold(0.0, f64::max)
    }
}

impl std::fmt::Display for QuantReport {
    /// A table: layer, shape, NF4 bytes, f32 bytes, relative and max abs error, then totals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<36} {:>12} {:>11} {:>11} {:>9} {:>9}",
            "layer", "shape", "nf4 bytes", "f32 bytes", "rel err", "max abs"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<36} {:>12} {:>11} {:>11} {:>9.5} {:>9.5}",
                l.name,
                format!("{}x{}", l.shape[0], l.shape[1]),
                l.nf4_bytes,
                l.f32_bytes,
                l.error.rel_frobenius,
                l.error.max_abs
            )?;
        }
        write!(
            f,
            "total: {} layers, {} NF4 bytes vs {} f32 bytes = {:.4} x",
            self.layers.len(),
            self.nf4_bytes(),
            self.f32_bytes(),
            self.ratio()
        )
    }
}

/// QLoRA: hold the base weight of every Linear layer `cfg` selects in NF4 instead of f32
/// ([`crate::nn::Linear::quantize_base`]; the selection is [`super::lora::apply_lora`]'s, by
/// [`LoraConfig::target_modules`]). Returns per-layer quantisation error and bytes.
///
/// **Order:** `quantize_bases(model, cfg)` first, then [`super::lora::apply_lora`]`(model, cfg)` (which
/// freezes everything else and adds the adapters), then build the optimizer over
/// [`super::lora::lora_parameters`]. Quantise before anything holds clones of the weights (an optimizer,
/// a `named_parameters` list), or their f32 buffers stay alive.
///
/// Errors, changing nothing, on a bad config, a target that selects no Linear layer, or a
/// selected layer already quantised or with a merged adapter. (A non-finite weight value
/// fails in the middle, leaving the layers before it quantised.)
///
/// ```
/// use kiln::{models::{Gpt, GptConfig}, nn::{Module, lora}};
/// let cfg = GptConfig { vocab_size: 11, n_layer: 2, n_head: 2, n_kv_head: 2, d_model: 8,
///                       context: 6, dropout: 0.0, rope: false };
/// let mut gpt = Gpt::new(cfg)?;
/// let lcfg = lora::LoraConfig::new(2, 4.0, &["q_proj", "v_proj"]);
/// let report = lora::quantize_bases(&mut gpt, &lcfg)?;
/// assert_eq!(report.layers.len(), 4);
/// lora::apply_lora(&mut gpt, &lcfg)?;
/// assert_eq!(lora::quantized_layers(&mut gpt).len(), 4);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn quantize_bases(model: &mut dyn Module, cfg: &LoraConfig) -> Result<QuantReport> {
    cfg.validate()?;
    let mut all = Vec::new();
    let mut bad = Vec::new();
    model.visit_linears_mut("", &mut |name, lin| {
        all.push(name.to_string());
        if cfg.selects(name)
            && (lin.is_quantized() || lin.lora.as_ref().is_some_and(LoraAdapter::is_merged))
        {
            bad.push(name.to_string());
        }
    });
    if !bad.is_empty() {
        return arg_err(
            "QLoRA",
            format!(
                "layers already quantised or with a merged adapter: {}",
                bad.join(", ")
            ),
        );
    }
    check_targets(model, cfg, &all)?;
    let mut report = QuantReport::default();
    let mut err: Option<Error> = None;
    model.visit_linears_mut("", &mut |name, lin| {
        if err.is_some() || !cfg.selects(name) {
            return;
        }
        if let Err(e) = lin.quantize_base() {
            err = Some(e);
            return;
        }
        let w = lin.nf4_weight().expect("just quantised");
        report.layers.push(QuantLayer {
            name: name.to_string(),
            shape: w.shape(),
            nf4_bytes: w.bytes(),
            f32_bytes: w.f32_bytes(),
            error: w.error(),
        });
    });
    match err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Paths of the Linear layers of `model` whose base weight is NF4.
pub fn quantized_layers(model: &mut dyn Module) -> Vec<String> {
    let mut v = Vec::new();
    model.visit_linears_mut("", &mut |name, lin| {
        if lin.is_quantized() {
            v.push(name.to_string());
        }
    });
    v
}

/// Scalars of the NF4 base weights of `model` (they are not in
/// [`Module::named_parameters`]; add them to its counts for the model's full size).
pub fn quantized_numel(model: &mut dyn Module) -> usize {
    let mut n = 0;
    model.visit_linears_mut("", &mut |_, lin| {
        if let Some(w) = lin.nf4_weight() {
            n += w.out_features() * w.in_features();
        }
    });
    n
}

/// The parameters of `model` by name with every NF4 base weight put back as `<path>.weight`
/// in f32 (dequantised, detached), LoRA tensors included as they are: the full checkpoint of
/// a QLoRA model. It loads (with `restore_into`) into the same architecture with f32 bases and
/// the same adapters ([`super::lora::apply_lora`] without [`quantize_bases`]); re-quantising such a
/// weight gives the same NF4 codes. Adapters must not be merged into a quantised layer (they
/// cannot be). The model is not changed.
pub fn dense_state(model: &mut dyn Module) -> Result<Vec<(String, Tensor)>> {
    let mut weights = Vec::new();
    let mut err: Option<Error> = None;
    model.visit_linears_mut("", &mut |name, lin| {
        if err.is_some() || !lin.is_quantized() {
            return;
        }
        match lin.base_weight_f32() {
            Ok(w) => weights.push((name.to_string(), w)),
            Err(e) => err = Some(e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(insert_weights(model.named_parameters(), weights))
}

/// The parameters of `model` as a plain model without adapters would have them: for each
/// adapted layer `<path>.weight` = W + s B A (W dequantised first if NF4; the adapter's
/// dropout is not applied), every other NF4 base dequantised, and no `lora_A` / `lora_B`
/// tensors. This is what `kiln merge` writes; it loads into the model built without LoRA.
/// The model is not changed (nothing is merged in place).
pub fn merged_state(model: &mut dyn Module) -> Result<Vec<(String, Tensor)>> {
    let _g = crate::no_grad();
    let mut weights = Vec::new();
    let mut err: Option<Error> = None;
    model.visit_linears_mut("", &mut |name, lin| {
        if err.is_some() {
            return;
        }
        let merged = || -> Result<Option<Tensor>> {
            let active = lin.lora.as_ref().filter(|a| !a.is_merged());
            if active.is_none() && !lin.is_quantized() {
                return Ok(None);
            }
            let w = lin.base_weight_f32()?.detach();
            Ok(Some(match active {
                Some(a) => {
                    let d = a.b.detach().matmul(&a.a.detach())?; // (out, in)
                    w.add(&d.mul_scalar(a.scale())?)?
                }
                None => w,
            }))
        };
        match merged() {
            Ok(Some(w)) => weights.push((name.to_string(), w)),
            Ok(None) => {}
            Err(e) => err = Some(e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let params = model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| !is_lora_name(n))
        .collect();
    Ok(insert_weights(params, weights))
}

/// `params` with `<path>.weight` set to the given tensors: replaced where present, else
/// inserted before the first name under `<path>.` (or appended).
fn insert_weights(
    mut params: Vec<(String, Tensor)>,
    weights: Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    for (path, w) in weights {
        let key = super::child_path(&path, "weight");
        if let Some(slot) = params.iter_mut().find(|(n, _)| *n == key) {
            slot.1 = w;
            continue;
        }
        let under = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.")
        };
        match params.iter().position(|(n, _)| n.starts_with(&under)) {
            Some(i) => params.insert(i, (key, w)),
            None => params.push((key, w)),
        }
    }
    params
}
