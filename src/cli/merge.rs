//! `kiln merge`: fold a LoRA adapter (PEFT layout) into a kiln checkpoint and write a plain one.
//!
//! ```text
//! kiln merge --base runs/shakespeare-gpt --adapter runs/chat-lora --out runs/chat-merged
//! kiln generate --checkpoint runs/chat-merged --prompt "USER: hello"
//! ```
//!
//! Loads the base run (a run directory or a checkpoint file, as `kiln generate` reads it), adds
//! the adapter's layers as its `adapter_config.json` says and loads `adapter_model.safetensors`
//! into them, then writes `W + (alpha / r) B A` for every adapted layer, every other tensor as
//! it was, to `<out>/best.safetensors` (atomically: a temporary file and a rename). The result
//! has no LoRA tensors and loads wherever the base did. The base's metadata (model, tokenizer,
//! task, run settings) is kept, optimizer state is dropped, and `lora_merged` records the
//! adapter. With `--qlora` the adapted layers' bases are first quantised to NF4 and
//! dequantised, so the merge uses the weights a QLoRA adapter was trained against.
//!
//! Errors (non-zero exit, one paragraph): missing files, an adapter whose target modules or
//! tensor shapes do not fit the model (each tensor named), an output directory that already
//! holds a checkpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result};
use crate::nn::{lora, lora_io};
use crate::train::{checkpoint, trainer};

/// Flags of `kiln merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model: a kiln run directory or checkpoint file.
    #[arg(long)]
    pub base: PathBuf,
    /// A LoRA adapter directory in the PEFT layout (`adapter_config.json`,
    /// `adapter_model.safetensors`), as `kiln finetune` writes it.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Directory to write the merged checkpoint to (`<out>/best.safetensors`; created if
    /// needed, must not hold a checkpoint already).
    #[arg(long)]
    pub out: PathBuf,
    /// The adapter was trained with QLoRA: merge into the NF4-dequantised base weights it saw.
    #[arg(long)]
    pub qlora: bool,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// Run `kiln merge`.
pub fn run(a: MergeArgs) -> Result<()> {
    for name in [trainer::BEST, trainer::LAST] {
        let p = a.out.join(name);
        if p.exists() {
            return Err(Error(format!(
                "--out {}: already holds {name}; choose a new directory (a stale checkpoint \
                 there could be loaded instead of the merged one)",
                a.out.display()
            )));
        }
    }
    if !a.adapter.is_dir() {
        return Err(Error(format!(
            "--adapter {}: no such directory (expected a PEFT adapter directory with {} and {})",
            a.adapter.display(),
            lora_io::ADAPTER_CONFIG,
            lora_io::ADAPTER_WEIGHTS
        )));
    }
    let saved = SavedRun::open(&a.base)?;
    let gpu = a.device.open()?;
    let mut model = saved.model(&gpu)?;
    let adapter = a.adapter.display();
    if a.qlora {
        let cfg = lora_io::read_adapter_config(&a.adapter)?;
        lora::quantize_bases(&mut *model, &cfg).map_err(|e| {
            Error(format!(
                "{adapter}: the adapter does not fit the model {}: {e}",
                saved.path.display()
            ))
        })?;
    }
    let cfg = lora_io::load_adapter(&mut *model, &a.adapter).map_err(|e| {
        Error(format!(
            "merging {adapter} into {}: {e}",
            saved.path.display()
        ))
    })?;
    let layers = lora::adapted_layers(&mut *model).len();
    let mut tensors: Vec<(String, crate::Tensor)> = lora::merged_state(&mut *model)?
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    tensors.extend(
        model
            .named_buffers()
            .into_iter()
            .map(|(n, t)| (format!("buffer.{n}"), t)),
    );
    let mut meta: BTreeMap<String, String> = saved
        .checkpoint
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "format") // checkpoint::save writes its own
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record = serde_json::json!({
        "adapter": a.adapter.display().to_string(),
        "base": saved.path.display().to_string(),
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "target_modules": cfg.target_modules,
        "qlora": a.qlora,
    });
    meta.insert("lora_merged".into(), record.to_string());
    let out = a.out.join(trainer::BEST);
    checkpoint::save(&out, &tensors, &meta)?;
    println!(
        "merged {layers} adapted layers (r = {}, alpha = {}) of {} into {} -> {}",
        cfg.r,
        cfg.alpha,
        a.adapter.display(),
        saved.path.display(),
        out.display()
    );
    Ok(())
}
