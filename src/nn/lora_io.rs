//! LoRA adapters on disk, in the Hugging Face PEFT layout, so they open in Python and back.
//!
//! A directory with two files:
//!
//! - `adapter_model.safetensors`: f32 tensors `base_model.model.<path>.lora_A.weight` (r, in)
//!   and `base_model.model.<path>.lora_B.weight` (out, r), metadata `format: pt`;
//! - `adapter_config.json`: `peft_type: "LORA"`, `r`, `lora_alpha`, `lora_dropout`,
//!   `target_modules`, `bias: "none"`, `task_type`, `base_model_name_or_path`,
//!   `fan_in_fan_out: false`, `inference_mode: true`, and PEFT's defaults for the options
//!   kiln does not implement (`use_rslora`, `use_dora`, `rank_pattern`, ...).
//!
//! In Python: `PeftModel.from_pretrained(base, dir)` (with module paths that match the
//! model's), or `safetensors.torch.load_file(dir + "/adapter_model.safetensors")`.
//! Files are written atomically (temporary file + rename).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::Module;
use super::lora::{self, LoraConfig};
use crate::error::{Error, Result, io_err};
use crate::io::safetensors::read_weights;
use crate::io::write_atomic;
use crate::tensor::{DType, Tensor};

/// File name of the adapter weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// File name of the adapter config.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// Prefix PEFT puts before module paths in the weights file.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// `adapter_config.json` as PEFT writes it (the fields kiln reads and writes; unknown fields
/// are ignored on reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always `"LORA"`.
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    /// alpha (scale alpha / r).
    pub lora_alpha: f32,
    /// Dropout on the LoRA path.
    #[serde(default)]
    pub lora_dropout: f32,
    /// Target module names.
    pub target_modules: Vec<String>,
    /// Always `"none"` in kiln.
    #[serde(default = "none")]
    pub bias: String,
    /// E.g. `CAUSAL_LM`.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model's name or path.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Always false (weights stored (out, in)).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// True in saved adapters.
    #[serde(default)]
    pub inference_mode: bool,
    /// scale alpha / sqrt(r) when true; not supported.
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA; not supported.
    #[serde(default)]
    pub use_dora: bool,
    /// Per-layer ranks; must be empty.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    /// Per-layer alphas; must be empty.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    /// Extra fully trained modules; must be null.
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// PEFT's init flag, kept for Python.
    #[serde(default = "yes")]
    pub init_lora_weights: bool,
    /// Layer selection; must be null.
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
}

fn none() -> String {
    "none".into()
}

fn yes() -> bool {
    true
}

impl AdapterConfig {
    /// The PEFT config of `cfg`.
    pub fn from_lora(cfg: &LoraConfig) -> Self {
        AdapterConfig {
            peft_type: "LORA".into(),
            r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            target_modules: cfg.target_modules.clone(),
            bias: none(),
            task_type: cfg.task_type.clone(),
            base_model_name_or_path: cfg.base_model_name_or_path.clone(),
            fan_in_fan_out: false,
            inference_mode: true,
            use_rslora: false,
            use_dora: false,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            modules_to_save: None,
            init_lora_weights: true,
            layers_to_transform: None,
        }
    }

    /// The kiln config, or an error naming the first PEFT option kiln does not support.
    pub fn to_lora(&self) -> std::result::Result<LoraConfig, String> {
        let unsupported = |what: &str| Err(format!("{what} is not supported by kiln's LoRA"));
        if self.peft_type != "LORA" {
            return Err(format!(
                "peft_type is `{}`; kiln loads LORA adapters only",
                self.peft_type
            ));
        }
        if self.bias != "none" {
            return unsupported(&format!("bias `{}` (only `none`)", self.bias));
        }
        if self.fan_in_fan_out {
            return unsupported("fan_in_fan_out: true (Conv1D-style weights)");
        }
        if self.use_rslora {
            return unsupported("use_rslora: true");
        }
        if self.use_dora {
            return unsupported("use_dora: true");
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return unsupported("a rank_pattern / alpha_pattern");
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported("modules_to_save");
        }
        if self
            .layers_to_transform
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return unsupported("layers_to_transform");
        }
        let cfg = LoraConfig {
            r: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules: self.target_modules.clone(),
            task_type: self.task_type.clone(),
            base_model_name_or_path: self.base_model_name_or_path.clone(),
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Write the adapters of `model` (made with `cfg`) to directory `dir` in the PEFT layout
/// (created if needed; both files replaced atomically). Errors when the model has no adapter.
pub fn save_adapter(model: &dyn Module, cfg: &LoraConfig, dir: &Path) -> Result<()> {
    let params = lora::lora_parameters(model);
    if params.is_empty() {
        return Err(bad(dir, "the model has no LoRA adapter to save"));
    }
    let wpath = dir.join(ADAPTER_WEIGHTS);
    let mut host = Vec::with_capacity(params.len());
    for (name, t) in &params {
        let bytes: Vec<u8> = bytemuck::cast_slice(&t.to_vec::<f32>()?).to_vec();
        host.push((format!("{PEFT_PREFIX}{name}"), t.shape().to_vec(), bytes));
    }
    let mut views = Vec::with_capacity(host.len());
    for (name, shape, bytes) in &host {
        let v = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| bad(&wpath, format!("{name}: {e}")))?;
        views.push((name.clone(), v));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| bad(&wpath, e.to_string()))?;
    let json = serde_json::to_string_pretty(&AdapterConfig::from_lora(cfg))
        .map_err(|e| bad(dir, e.to_string()))?;
    write_atomic(&wpath, &bytes)?;
    write_atomic(&dir.join(ADAPTER_CONFIG), json.as_bytes())
}

/// Read `dir/adapter_config.json` (any PEFT LoRA config kiln supports).
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let p = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
    let ac: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| bad(&p, format!("not a PEFT adapter config ({e})")))?;
    ac.to_lora().map_err(|m| bad(&p, m))
}

/// Load the adapter in `dir` into `model` and return its config. A model without adapters
/// gets them first as the config says ([`lora::apply_lora`], which also freezes the base); a
/// model that has adapters must have the same rank and alpha. Every tensor must fit: the
/// error lists missing, unexpected and mis-shaped tensors, and nothing is changed on error.
pub fn load_adapter(model: &mut dyn Module, dir: &Path) -> Result<LoraConfig> {
    let cfg = read_adapter_config(dir)?;
    let wpath = dir.join(ADAPTER_WEIGHTS);
    if !wpath.is_file() {
        let hint = if dir.join("adapter_model.bin").is_file() {
            " (found adapter_model.bin: save it with safe_serialization=True)"
        } else {
            ""
        };
        return Err(bad(&wpath, format!("no such adapter weights file{hint}")));
    }
    let file = read_weights(&wpath)?;
    // The names and shapes the model has (or will have once adapted).
    let existing = lora::adapted_layers(model);
    let expected: Vec<(String, Vec<usize>)> = if existing.is_empty() {
        lora::plan(model, &cfg)
            .map_err(|e| bad(dir, format!("the adapter does not fit the model: {e}")))?
            .into_iter()
            .flat_map(|(p, i, o)| {
                [
                    (format!("{p}.lora_A.weight"), vec![cfg.r, i]),
                    (format!("{p}.lora_B.weight"), vec![o, cfg.r]),
                ]
            })
            .collect()
    } else {
        if let Some((p, r, a)) = existing
            .iter()
            .find(|(_, r, a)| *r != cfg.r || *a != cfg.alpha)
        {
            return Err(bad(
                dir,
                format!(
                    "the adapter has r = {}, lora_alpha = {} but the model's layer {p} has \
                     r = {r}, alpha = {a}",
                    cfg.r, cfg.alpha
                ),
            ));
        }
        lora::lora_parameters(model)
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect()
    };
    let mut misshaped = Vec::new();
    let mut missing = Vec::new();
    for (n, shape) in &expected {
        match file.get(&format!("{PEFT_PREFIX}{n}")) {
            None => missing.push(n.clone()),
            Some(h) if &h.shape != shape || !matches!(h.dtype, DType::F32 | DType::F16) => {
                misshaped.push(format!(
                    "{n}: file {:?} {:?}, model {shape:?} F32",
                    h.shape, h.dtype
                ))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<&String> = file
        .keys()
        .filter(|k| {
            k.strip_prefix(PEFT_PREFIX)
                .is_none_or(|n| !expected.iter().any(|(e, _)| e == n))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let mut msg = "the adapter does not fit the model:".to_string();
        let mut list = |what: &str, v: Vec<String>| {
            if !v.is_empty() {
                msg += &format!("\n  {what} ({}): {}", v.len(), v.join("; "));
            }
        };
        list("missing from the file", missing);
        list(
            "unexpected in the file",
            unexpected.into_iter().cloned().collect(),
        );
        list("mis-shaped", misshaped);
        return Err(bad(&wpath, msg));
    }
    if existing.is_empty() {
        lora::apply_lora(model, &cfg)?;
    }
    let _g = crate::no_grad();
    for (n, t) in lora::lora_parameters(model) {
        let h = &file[&format!("{PEFT_PREFIX}{n}")];
        let data: Vec<f32> = match h.dtype {
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&h.bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
            _ => bytemuck::pod_collect_to_vec::<u8, f32>(&h.bytes),
        };
        t.copy_from(&Tensor::from_slice_on(t.gpu(), &data, &h.shape)?)?;
    }
    Ok(cfg)
}
