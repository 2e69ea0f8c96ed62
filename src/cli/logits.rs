//! `kiln logits`: a language model's logits for a token sequence, for comparing kiln with other
//! engines number for number.
//!
//! ```text
//! kiln logits --base models/tiny-gpt2 --ids 464,2068,7586 --json
//! {"ids":[464,2068,7586],"logits":[[...V values...],[...],[...]]}
//! ```
//!
//! `--base` is a Hugging Face model directory (config.json + model.safetensors: see
//! [`crate::models::hf`]) or a kiln run (a run directory or checkpoint file of `kiln train
//! --model gpt|lstm|gru|rnn`). The ids run through the model once, from position 0, in eval
//! mode: logits (T, V) for ids (T). Without `--json` each position prints one line: its id, the
//! arg-max and the largest logits. `--adapter DIR` adds a LoRA adapter first: on a Hugging Face
//! base one that Python's `peft` wrote for it (Hugging Face module names:
//! [`crate::models::hf::peft`]), on a kiln GPT run one of `kiln finetune` (kiln's names).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::chat_model::attach_adapter;
use super::saved::SavedRun;
use super::{Error, Result, open_device};
use crate::Gpu;
use crate::data::tokenizer::Tokenizer;
use crate::models::{LanguageModel, hf};
use crate::nn::Module;
use crate::tensor::Tensor;

/// Flags of `kiln logits`.
#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// A Hugging Face model directory (config.json, model.safetensors) or a kiln run of a
    /// language model.
    #[arg(long)]
    pub base: PathBuf,
    /// A LoRA adapter directory of `kiln finetune` to add to a kiln GPT first.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub ids: Vec<String>,
    /// Print `{"ids": [...], "logits": [[...], ...]}` (every logit) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// GPU adapter.
    #[arg(long)]
    pub device: Option<String>,
}

/// A language model opened from `--base`: a Hugging Face directory or a kiln run.
pub struct OpenedLm {
    /// The network, in eval mode.
    pub lm: LanguageModel,
    /// Its tokenizer, when it has one.
    pub tokenizer: Option<Arc<dyn Tokenizer>>,
    /// What it is, for messages: `GPT2LMHeadModel (Hugging Face)` or `gpt (kiln run)`.
    pub kind: String,
    /// `architectures[0]` of a Hugging Face directory; `None` for a kiln run.
    pub hf: Option<String>,
}

/// Open `base` (see the module notes); `flag` names it in errors.
pub fn open_lm(gpu: &Arc<Gpu>, base: &Path, flag: &str) -> Result<OpenedLm> {
    if hf::is_hf_dir(base) {
        let m = hf::load_on(gpu, base)?;
        return Ok(OpenedLm {
            lm: LanguageModel::Gpt(m.gpt),
            tokenizer: m.tokenizer,
            kind: format!("{} (Hugging Face)", m.architecture),
            hf: Some(m.architecture),
        });
    }
    let saved = SavedRun::open(base).map_err(|e| {
        Error(format!(
            "{flag} {}: neither a Hugging Face model directory (no config.json there) nor a \
             readable kiln run: {e}",
            base.display()
        ))
    })?;
    if !saved.model_spec.is_sequence() {
        return Err(Error(format!(
            "{flag} {}: holds a {} model, not a language model",
            saved.path.display(),
            saved.model_spec.name()
        )));
    }
    let mut lm = saved.model_spec.build_lm(gpu)?;
    saved
        .checkpoint
        .restore_into("model", &lm.named_parameters())?;
    lm.set_training(false);
    Ok(OpenedLm {
        lm,
        tokenizer: saved.tokenizer(&saved.path.display().to_string()).ok(),
        kind: format!("{} (kiln run)", saved.model_spec.name()),
        hf: None,
    })
}

/// `--ids` as token ids below `vocab`, at most `context` of them.
fn parse_ids(raw: &[String], vocab: usize, context: Option<usize>) -> Result<Vec<u32>> {
    let mut ids = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let id: u32 = s.trim().parse().map_err(|_| {
            Error(format!(
                "--ids: item {} ({s:?}) is not a token id (a non-negative integer)",
                i + 1
            ))
        })?;
        if id as usize >= vocab {
            return Err(Error(format!(
                "--ids: item {} is {id}, outside the model's vocabulary of {vocab} (ids 0..{})",
                i + 1,
                vocab - 1
            )));
        }
        ids.push(id);
    }
    if let Some(ctx) = context.filter(|&c| ids.len() > c) {
        return Err(Error(format!(
            "--ids: {} ids, but the model reads at most {ctx} (its context)",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Run `kiln logits`.
pub fn run(a: LogitsArgs) -> Result<()> {
    let gpu = open_device(a.device.as_deref())?;
    let mut opened = open_lm(&gpu, &a.base, "--base")?;
    match (&a.adapter, &opened.hf, &mut opened.lm) {
        (None, _, _) => {}
        (Some(dir), Some(arch), LanguageModel::Gpt(gpt)) => {
            hf::peft::load_adapter(gpt, arch, dir)
                .map_err(|e| Error(format!("--adapter {}: {e}", dir.display())))?;
        }
        (Some(dir), None, LanguageModel::Gpt(_)) => {
            attach_adapter(&mut opened.lm, dir, false, &a.base)?;
        }
        (Some(dir), _, _) => {
            return Err(Error(format!(
                "--adapter {}: LoRA adapters apply to GPTs; this base is a {}",
                dir.display(),
                opened.kind
            )));
        }
    }
    let lm = &opened.lm;
    let v = lm.vocab_size();
    let ids = parse_ids(&a.ids, v, lm.context())?;
    let logits = {
        let _g = crate::no_grad();
        let t = Tensor::from_slice_on(&gpu, &ids, &[1, ids.len()])?;
        lm.logits(&t)?.to_vec::<f32>()? // (1, T, V)
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let rows: Vec<&[f32]> = logits.chunks(v).collect();
        let doc = serde_json::json!({ "ids": ids, "logits": rows });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {}, vocabulary {v}, {} ids",
        a.base.display(),
        opened.kind,
        ids.len()
    )?;
    writeln!(
        out,
        "{:>5} {:>7} {:>12} {:>7}  largest logits (id: logit)",
        "pos", "id", "token", "argmax"
    )?;
    let show = |id: u32| match &opened.tokenizer {
        Some(tok) => format!("{:?}", tok.decode(&[id]).unwrap_or_default()),
        None => "-".into(),
    };
    for (t, row) in logits.chunks(v).enumerate() {
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
        let top: Vec<String> = order
            .iter()
            .take(5)
            .map(|&i| format!("{i}: {:.4}", row[i]))
            .collect();
        writeln!(
            out,
            "{t:>5} {:>7} {:>12} {:>7}  {}",
            ids[t],
            show(ids[t]),
            order[0],
            top.join(", ")
        )?;
    }
    Ok(())
}
