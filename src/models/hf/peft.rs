//! LoRA adapters that Python's `peft` wrote for a Hugging Face model (module paths of the
//! Hugging Face architecture), loaded onto the kiln [`Gpt`] that [`super::load`] built.
//!
//! An adapter directory holds `adapter_config.json` (`r`, `lora_alpha`, `target_modules`, ...)
//! and `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` (r, in) and
//! `.lora_B.weight` (out, r) per adapted module. Each architecture maps a module path to the
//! kiln Linear layers it feeds ([`ModuleMap`]): one layer for most, several for a fused module
//! (GPT-2's `c_attn` feeds the query, key and value projections), each taking its rows of
//! `lora_B` and all of `lora_A`, so that
//!
//! ```text
//! y_part = x W_part^T + b_part + (alpha / r) (x A^T) B[rows]^T        x (B, T, in)
//! ```
//!
//! equals the rows of PEFT's fused output. `fan_in_fan_out` (PEFT sets it for Conv1D) changes
//! how PEFT merges, not A and B, and is accepted. A module the architecture does not have (an
//! adapter for another model), a tensor of another shape than `r` and the model say, or a
//! module with only one of A and B is an error naming the file and the tensor.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use super::gpt2;
use crate::error::{Error, Result, io_err};
use crate::io::safetensors::{HostTensor, read_weights};
use crate::models::gpt::{Gpt, GptConfig};
use crate::nn::lora::{self, LoraConfig};
use crate::nn::lora_io::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterConfig, PEFT_PREFIX};
use crate::tensor::{DType, Tensor};

/// One kiln Linear layer fed by (part of) a Hugging Face module: its path and the rows of the
/// module's `lora_B` it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The kiln layer, e.g. `blocks.0.attn.q_proj`.
    pub path: String,
    /// Rows of `lora_B` (out, r).
    pub rows: Range<usize>,
}

/// An architecture's adapter map: a Hugging Face module path (without `base_model.model.`)
/// to the kiln layers it feeds, `None` when the model has no such module.
pub type ModuleMap = fn(&str, &GptConfig) -> Option<Vec<Part>>;

/// The adapter map of an architecture (`architectures[0]`), `None` where kiln has none.
pub fn module_map(architecture: &str) -> Option<ModuleMap> {
    match architecture {
        "GPT2LMHeadModel" => Some(gpt2::peft_parts),
        _ => None,
    }
}

/// Add the PEFT adapter in `dir` to `gpt`, a `architecture` model loaded by [`super::load`];
/// returns the adapter's config (targets in Hugging Face names). See the module notes.
pub fn load_adapter(gpt: &mut Gpt, architecture: &str, dir: &Path) -> Result<LoraConfig> {
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let bad = |path: &Path, msg: String| Error::Checkpoint {
        path: path.display().to_string(),
        msg,
    };
    let map = module_map(architecture).ok_or_else(|| {
        bad(
            dir,
            format!("kiln reads PEFT adapters of GPT2LMHeadModel, not {architecture}"),
        )
    })?;
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| io_err(&cfg_path, e))?;
    let mut ac: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| bad(&cfg_path, format!("not a PEFT adapter config ({e})")))?;
    ac.fan_in_fan_out = false; // how PEFT merges Conv1D weights; A and B are the same
    let cfg = ac.to_lora().map_err(|m| bad(&cfg_path, m))?;
    let wpath = dir.join(ADAPTER_WEIGHTS);
    let file = read_weights(&wpath)?;

    // Module -> (A, B), each named for errors.
    let mut modules: BTreeMap<String, [Option<(String, &HostTensor)>; 2]> = BTreeMap::new();
    for (name, h) in &file {
        let rest = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
        let (module, which) = match (
            rest.strip_suffix(".lora_A.weight"),
            rest.strip_suffix(".lora_B.weight"),
        ) {
            (Some(m), _) => (m, 0),
            (_, Some(m)) => (m, 1),
            _ => {
                return Err(bad(
                    &wpath,
                    format!("tensor {name} is not a lora_A / lora_B weight"),
                ));
            }
        };
        modules.entry(module.to_string()).or_default()[which] = Some((name.clone(), h));
    }
    let gcfg = *gpt.config();
    let mut plan = Vec::new();
    for (module, [a, b]) in &modules {
        let parts = map(module, &gcfg).ok_or_else(|| {
            bad(
                &wpath,
                format!(
                    "module {module} is not in this {architecture} (an adapter for another \
                     model or architecture?)"
                ),
            )
        })?;
        let (Some(a), Some(b)) = (a, b) else {
            return Err(bad(
                &wpath,
                format!("module {module} has only one of lora_A and lora_B"),
            ));
        };
        plan.push((parts, a, b));
    }
    let targets: Vec<&str> = plan
        .iter()
        .flat_map(|(p, _, _)| p.iter().map(|p| p.path.as_str()))
        .collect();
    let mut kcfg = LoraConfig::new(cfg.r, cfg.alpha, &targets);
    kcfg.dropout = cfg.dropout;
    lora::apply_lora(gpt, &kcfg)?;
    let params: BTreeMap<String, Tensor> = lora::lora_parameters(&*gpt).into_iter().collect();
    for (parts, (a_name, a), (b_name, b)) in plan {
        let a_t = &params[&format!("{}.lora_A.weight", parts[0].path)];
        let out = parts.iter().map(|p| p.rows.end).max().unwrap_or(0);
        for (name, h, want) in [
            (a_name, a, a_t.shape().to_vec()),
            (b_name, b, vec![out, cfg.r]),
        ] {
            if h.shape != want {
                return Err(bad(
                    &wpath,
                    format!(
                        "tensor {name} has shape {:?}, but r = {} ({ADAPTER_CONFIG}) and the \
                         model need {want:?}",
                        h.shape, cfg.r
                    ),
                ));
            }
        }
        let a_host = Tensor::from_host_on(a_t.gpu(), a)?.to_dtype(DType::F32)?;
        let b_vals = Tensor::from_host_on(a_t.gpu(), b)?
            .to_dtype(DType::F32)?
            .to_vec::<f32>()?;
        for p in &parts {
            params[&format!("{}.lora_A.weight", p.path)].copy_from(&a_host)?;
            let rows = &b_vals[p.rows.start * cfg.r..p.rows.end * cfg.r];
            let b_t = &params[&format!("{}.lora_B.weight", p.path)];
            b_t.copy_from(&Tensor::from_slice_on(a_t.gpu(), rows, b_t.shape())?)?;
        }
    }
    lora::set_training(gpt, false);
    Ok(cfg)
}
