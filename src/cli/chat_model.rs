//! What `kiln finetune`, `kiln generate --adapter` and `kiln chat` share: a GPT base read from a
//! `kiln train --model gpt` checkpoint with its tokenizer, LoRA (or QLoRA) adapters attached to
//! it, and chat-template generation that stops at the end-of-turn marker.
//!
//! **Adapters.** `kiln finetune` writes a PEFT adapter directory (`adapter_model.safetensors`,
//! `adapter_config.json`, see [`crate::nn::lora_io`]) plus [`ADAPTER_META`], a small kiln file
//! naming the base checkpoint and whether the base was quantised to NF4 (QLoRA), so that
//! `generate` and `chat` rebuild exactly the model that was trained.
//!
//! **Generation** ([`generate_reply`]) feeds the prompt's last `context` tokens once, then one
//! token per step through the KV cache (sliding by `context / 2` when it fills, like
//! [`crate::models::LanguageModel::generate_with`]), and stops as soon as the new tokens end
//! with the template's end marker (`<|end|>`, tokenised as in training) or after `max_tokens`.
//! The marker is never printed: text is streamed up to the longest tail that could still be the
//! start of the marker.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::saved::SavedRun;
use super::{Error, Result};
use crate::Gpu;
use crate::data::chat::{ChatTemplate, Conversation, Message, Role, tokenize_chat};
use crate::data::tokenizer::Tokenizer;
use crate::models::sampling::Sampler;
use crate::models::{Gpt, LanguageModel, ModelSpec};
use crate::nn::Module;
use crate::nn::lora::{LoraConfig, QuantReport};

/// kiln's own file in an adapter directory: see [`AdapterMeta`].
pub const ADAPTER_META: &str = "kiln_finetune.json";

/// What an adapter directory records beside the PEFT files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    /// The base checkpoint the adapter was trained on (as given to `--base`).
    pub base: String,
    /// True when the targeted base weights were quantised to NF4 (QLoRA).
    pub qlora: bool,
    /// The model's context T.
    pub context: usize,
    /// The chat template's end-of-turn marker.
    pub end_marker: String,
}

impl AdapterMeta {
    /// Read `dir/kiln_finetune.json`; `None` when the directory has none (a PEFT adapter from
    /// elsewhere).
    pub fn read(dir: &Path) -> Result<Option<AdapterMeta>> {
        let p = dir.join(ADAPTER_META);
        if !p.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&p).map_err(|e| Error(format!("{}: {e}", p.display())))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error(format!("{}: not a kiln adapter note ({e})", p.display())))
    }
}

/// A GPT checkpoint opened for fine-tuning or chat.
pub struct GptBase {
    /// The checkpoint as saved by `kiln train`.
    pub saved: SavedRun,
    /// Its tokenizer.
    pub tokenizer: Arc<dyn Tokenizer>,
    /// T, its context.
    pub context: usize,
}

impl GptBase {
    /// Open `path` (a run directory or checkpoint file), refusing anything but a GPT.
    pub fn open(path: &Path, flag: &str) -> Result<GptBase> {
        let saved = SavedRun::open(path).map_err(|e| Error(format!("{flag} {e}")))?;
        let name = saved.path.display().to_string();
        let ModelSpec::Gpt { context, .. } = saved.model_spec else {
            return Err(Error(format!(
                "{flag} {name}: holds a `{}` model, not a GPT; LoRA fine-tuning and chat need a run \
                 of `kiln train --model gpt`",
                saved.model_spec.name()
            )));
        };
        let tokenizer = saved.tokenizer(&format!("{flag} {name}"))?;
        Ok(GptBase {
            saved,
            tokenizer,
            context,
        })
    }

    /// The network with the checkpoint's weights (training mode off).
    pub fn build(&self, gpu: &Arc<Gpu>) -> Result<LanguageModel> {
        let mut lm = self.saved.model_spec.build_lm(gpu)?;
        self.saved
            .checkpoint
            .restore_into("model", &lm.named_parameters())?;
        lm.set_training(false);
        Ok(lm)
    }
}

/// Quantise the base weights of the Linear layers `cfg` targets to NF4 (QLoRA; call before
/// adding adapters and before anything holds clones of the weights).
pub fn quantize_targets(lm: &mut LanguageModel, cfg: &LoraConfig) -> Result<QuantReport> {
    Ok(crate::nn::lora::quantize_bases(lm, cfg)?)
}

/// One line on a [`QuantReport`]: layers, NF4 vs f32 bytes, their ratio, the worst error.
pub fn quant_line(r: &QuantReport) -> String {
    format!(
        "{} layers in NF4: {} bytes vs {} bytes in f32 ({:.3} x), largest relative error {:.4}",
        r.layers.len(),
        crate::show::digits(r.nf4_bytes()),
        crate::show::digits(r.f32_bytes()),
        r.ratio(),
        r.max_rel_error()
    )
}

/// Attach the adapter in `dir` to `lm`: NF4 bases first when `qlora` is set or the adapter's
/// [`AdapterMeta`] says it was trained that way. Returns the adapter's config and whether the
/// base was quantised.
pub fn attach_adapter(
    lm: &mut LanguageModel,
    dir: &Path,
    qlora: bool,
    base: &Path,
) -> Result<(LoraConfig, bool)> {
    let bad = |e: &dyn std::fmt::Display| Error(format!("--adapter {}: {e}", dir.display()));
    if !dir.is_dir() {
        return Err(bad(
            &"no such adapter directory (expected the --out of kiln finetune)",
        ));
    }
    let meta = AdapterMeta::read(dir)?;
    if let Some(m) = &meta {
        check_base(m, dir, lm, base)?;
    }
    let qlora = qlora || meta.as_ref().is_some_and(|m| m.qlora);
    if qlora {
        let cfg = crate::nn::lora_io::read_adapter_config(dir).map_err(|e| bad(&e))?;
        quantize_targets(lm, &cfg).map_err(|e| bad(&e))?;
    }
    let cfg = crate::nn::lora_io::load_adapter(lm, dir).map_err(|e| bad(&e))?;
    crate::nn::lora::set_training(lm, false);
    Ok((cfg, qlora))
}

/// The run directory a checkpoint path names (a run directory, or a file inside one),
/// resolved; `None` when it does not exist.
fn run_dir_of(p: &Path) -> Option<std::path::PathBuf> {
    let c = p.canonicalize().ok()?;
    Some(if c.is_file() {
        c.parent().map(Path::to_path_buf).unwrap_or(c)
    } else {
        c
    })
}

/// An adapter used on another base than the one `kiln_finetune.json` records: an error when
/// the context differs (it cannot be that base), a warning when only the path differs (a copy
/// of the base is fine; another base of the same shape gives nonsense silently).
fn check_base(m: &AdapterMeta, dir: &Path, lm: &LanguageModel, base: &Path) -> Result<()> {
    if let Some(ctx) = lm.context() {
        if ctx != m.context {
            return Err(Error(format!(
                "--adapter {}: it was trained on {} (context {}), but this checkpoint's context \
                 is {ctx}; use the adapter with its own base",
                dir.display(),
                m.base,
                m.context
            )));
        }
    }
    let recorded = Path::new(&m.base);
    let same = match (run_dir_of(recorded), run_dir_of(base)) {
        (Some(a), Some(b)) => a == b,
        // The recorded path is relative to where kiln finetune ran; compare what is known.
        _ => recorded.file_name() == base.file_name(),
    };
    if !same {
        eprintln!(
            "warning: --adapter {} was trained on base {} (its kiln_finetune.json), not {}; an \
             adapter on another base gives meaningless output unless that is a copy of it",
            dir.display(),
            m.base,
            base.display()
        );
    }
    Ok(())
}

/// The ids of `template.end` as training tokenised it: the tokenizer's special token when it
/// has one, else the text's tokens.
pub fn end_ids(tok: &dyn Tokenizer, template: &ChatTemplate) -> Vec<u32> {
    match tok.token_to_id(&template.end) {
        Some(id) if tok.special_tokens().iter().any(|(_, s)| *s == id) => vec![id],
        _ => tok.encode(&template.end),
    }
}

/// The ids of `messages` rendered with `template`, then an open assistant header: what the
/// model continues with its reply. Pieces are tokenised one by one, exactly as in training.
pub fn prompt_ids(tok: &dyn Tokenizer, template: &ChatTemplate, messages: &[Message]) -> Vec<u32> {
    let conv = Conversation {
        messages: messages.to_vec(),
        line: 0,
    };
    let mut ids = tokenize_chat(&conv, tok, template).ids;
    ids.extend(tok.encode(&template.header(Role::Assistant)));
    ids
}

/// A generated reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The reply's tokens, without the end marker.
    pub ids: Vec<u32>,
    /// Its text.
    pub text: String,
    /// True when the model ended its turn (wrote the end marker) before `max_tokens`.
    pub ended: bool,
}

/// How many of the last tokens of `ids` could be the start of `stop` (held back from printing).
fn held_back(ids: &[u32], stop: &[u32]) -> usize {
    (1..stop.len().min(ids.len() + 1))
        .rev()
        .find(|&k| ids[ids.len() - k..] == stop[..k])
        .unwrap_or(0)
}

/// Continue `prompt` with `gpt` (batch 1) until the new tokens end with `stop` or `max_tokens`
/// are drawn, calling `on_text` with each new piece of decoded text (the stop marker is never
/// passed). See the module notes.
pub fn generate_reply(
    gpt: &Gpt,
    tok: &dyn Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    stop: &[u32],
    mut on_text: impl FnMut(&str),
) -> Result<Reply> {
    if prompt.is_empty() {
        return Err(Error(
            "generate: the prompt needs at least one token".into(),
        ));
    }
    let mut out: Vec<u32> = Vec::with_capacity(max_tokens.min(4096));
    let mut printed = 0usize;
    let mut ended = false;
    gpt.generate_each(prompt, max_tokens, sampler, |t| {
        out.push(t);
        if !stop.is_empty() && out.ends_with(stop) {
            out.truncate(out.len() - stop.len());
            ended = true;
            return Ok(false);
        }
        let shown = out.len() - held_back(&out, stop);
        let text = tok.decode(&out[..shown])?;
        if !text.ends_with('\u{FFFD}') && text.len() > printed && text.is_char_boundary(printed) {
            on_text(&text[printed..]);
            printed = text.len();
        }
        Ok(true)
    })?;
    let text = tok.decode(&out)?;
    if text.len() > printed && text.is_char_boundary(printed) {
        on_text(&text[printed..]);
    }
    Ok(Reply {
        ids: out,
        text,
        ended,
    })
}

/// The GPT inside `lm` (bases are always GPTs, see [`GptBase::open`]).
pub fn gpt_of(lm: &LanguageModel) -> Result<&Gpt> {
    match lm {
        LanguageModel::Gpt(g) => Ok(g),
        LanguageModel::Rnn(_) => Err(Error(
            "chat generation needs a GPT; this checkpoint holds a recurrent model".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::held_back;

    #[test]
    fn held_back_is_the_longest_tail_that_starts_the_marker() {
        let stop = [7, 8, 9];
        assert_eq!(held_back(&[1, 2, 3], &stop), 0);
        assert_eq!(held_back(&[1, 2, 7], &stop), 1);
        assert_eq!(held_back(&[1, 7, 8], &stop), 2);
        assert_eq!(held_back(&[7, 8], &stop), 2);
        assert_eq!(held_back(&[7, 8, 7], &stop), 1);
        assert_eq!(held_back(&[], &stop), 0);
        assert_eq!(held_back(&[7], &[]), 0);
    }
}
