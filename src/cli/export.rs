//! `kiln export --hf OUT RUN`: a kiln GPT run written as a Hugging Face model directory that
//! `transformers` loads with `from_pretrained`.
//!
//! ```text
//! kiln export --hf exported/tiny-gpt2 runs/shakespeare-gpt
//! ```
//!
//! A GPT with learned positions (kiln train's default) becomes a GPT-2 (`GPT2LMHeadModel`):
//! config.json, model.safetensors with Hugging Face names and Conv1D transposes, and, when the
//! run's tokenizer is byte-level BPE (`--tokenizer bpe`), tokenizer.json and
//! tokenizer_config.json (see [`crate::models::hf::gpt2`]). A GPT with RoPE or grouped-query
//! attention has no GPT-2 layout and is refused; other models are refused too. OUT is created
//! and must not hold a config.json already.

use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result, open_device};
use crate::models::{LanguageModel, hf};
use crate::nn::Module;

/// Flags of `kiln export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write a Hugging Face model directory here (created; must not hold a config.json).
    #[arg(long, value_name = "OUT")]
    pub hf: PathBuf,
    /// The kiln run (a run directory or checkpoint file) of `kiln train --model gpt`.
    pub run: PathBuf,
    /// GPU adapter.
    #[arg(long)]
    pub device: Option<String>,
}

/// Run `kiln export`.
pub fn run(a: ExportArgs) -> Result<()> {
    if a.hf.join("config.json").exists() {
        return Err(Error(format!(
            "--hf {}: already holds a config.json; choose a new directory",
            a.hf.display()
        )));
    }
    let saved = SavedRun::open(&a.run)?;
    let name = saved.path.display().to_string();
    let gpu = open_device(a.device.as_deref())?;
    let lm = match saved.model_spec.build_lm(&gpu) {
        Ok(LanguageModel::Gpt(g)) => g,
        _ => {
            return Err(Error(format!(
                "{name}: holds a {} model; kiln export --hf writes GPTs (kiln train --model gpt)",
                saved.model_spec.name()
            )));
        }
    };
    saved
        .checkpoint
        .restore_into("model", &lm.named_parameters())?;
    let tok = saved.tokenizer(&name).ok();
    let report = hf::gpt2::export(&lm, tok.as_deref(), &a.hf)
        .map_err(|e| Error(format!("{name}: cannot export as GPT-2: {e}")))?;
    println!(
        "exported {name} as GPT2LMHeadModel ({}) to {}:",
        if report.tied {
            "head tied to the token table"
        } else {
            "untied head: tie_word_embeddings false"
        },
        a.hf.display()
    );
    for f in &report.files {
        println!("  {}", f.display());
    }
    if let Some(note) = report.note {
        println!("note: {note}");
    }
    Ok(())
}
