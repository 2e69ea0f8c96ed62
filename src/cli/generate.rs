//! `kiln generate`: continue a prompt with a trained language model, printing the text as it is
//! sampled.
//!
//! ```text
//! kiln generate --checkpoint runs/shakespeare-gpt-1 --prompt "ROMEO:" --max-tokens 300 \
//!     --temperature 0.8 --top-k 40 --top-p 0.95 --seed 7
//! ```
//!
//! The checkpoint's tokenizer (saved by `kiln train`) encodes the prompt and decodes the new
//! tokens. A GPT feeds the prompt once and then one token per step through its KV cache; a
//! prompt longer than its context is cut to its last `context` tokens (a note on stderr says
//! so), and when generation fills the context the window slides: the cache is rebuilt from the
//! last `context / 2` tokens. An LSTM / GRU / RNN reads the whole prompt and carries its state
//! (no length limit). The same checkpoint, prompt, settings and `--seed` give the same text;
//! `--temperature 0` or `--top-k 1` is greedy.
//!
//! `--adapter DIR` adds a LoRA adapter from `kiln finetune` (PEFT layout) to a GPT first, with
//! NF4 bases when it was trained with `--qlora` (or `--qlora` is given). `--chat` wraps the
//! prompt as one user message (after an optional `--system` one) in the chat template and
//! prints only the assistant's reply, which ends at the end-of-turn marker or `--max-tokens`
//! (see [`super::chat_model`]).
//!
//! `--base HF_DIR` generates with a Hugging Face model directory instead of a kiln run (see
//! [`crate::models::hf`]; its tokenizer.json encodes and decodes), KV cache and sampling as
//! above; `--adapter` and `--chat` are for kiln runs.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::chat::SamplingArgs;
use super::chat_model::{attach_adapter, end_ids, generate_reply, gpt_of, prompt_ids};
use super::saved::SavedRun;
use super::{Error, Result};
use crate::data::chat::{ChatTemplate, Message, Role};
use crate::data::tokenizer::Tokenizer;
use crate::models::Sampling;
use crate::models::sampling::Sampler;
use crate::nn::Module;

/// Flags of `kiln generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A run directory or checkpoint file of a language model (`kiln train --model gpt|lstm|gru|rnn`).
    #[arg(long, required_unless_present = "base", conflicts_with = "base")]
    pub checkpoint: Option<PathBuf>,
    /// A Hugging Face model directory instead (config.json, model.safetensors, tokenizer.json:
    /// see `kiln logits`).
    #[arg(long, value_name = "HF_DIR", conflicts_with_all = ["adapter", "chat"])]
    pub base: Option<PathBuf>,
    /// The text to continue.
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// A LoRA adapter directory from `kiln finetune` to apply to the GPT first.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Quantise the adapted base weights to NF4 (QLoRA); automatic when the adapter was
    /// trained with --qlora.
    #[arg(long, requires = "adapter")]
    pub qlora: bool,
    /// Chat: wrap the prompt as a user message in the chat template and print the reply only.
    #[arg(long)]
    pub chat: bool,
    /// Chat: a system message before the prompt.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
}

/// Run `kiln generate`.
pub fn run(a: GenerateArgs) -> Result<()> {
    let sampling = a.sampling.sampling()?;
    let (Some(checkpoint), None) = (&a.checkpoint, &a.base) else {
        return run_hf(&a, sampling);
    };
    let saved = SavedRun::open(checkpoint)?;
    let ck_name = saved.path.display().to_string();
    if !saved.model_spec.is_sequence() {
        return Err(Error(format!(
            "{ck_name}: holds a {} model, not a language model; kiln generate needs a run of \
             `kiln train --model gpt|lstm|gru|rnn`",
            saved.model_spec.name()
        )));
    }
    let tok = saved.tokenizer(&ck_name)?;
    let prompt = if a.chat {
        Vec::new() // encoded by chat_reply with the template
    } else {
        encode_prompt(tok.as_ref(), &a.prompt)?
    };
    let gpu = a.device.open()?;
    let mut lm = saved.model_spec.build_lm(&gpu)?;
    saved
        .checkpoint
        .restore_into("model", &lm.named_parameters())?;
    lm.set_training(false);
    if let Some(dir) = &a.adapter {
        if !matches!(lm, crate::models::LanguageModel::Gpt(_)) {
            return Err(Error(format!(
                "{ck_name}: --adapter needs a GPT checkpoint (kiln finetune adapts GPTs only)"
            )));
        }
        attach_adapter(&mut lm, dir, a.qlora, checkpoint)?;
    }
    if a.chat {
        return chat_reply(&a, &lm, tok.as_ref(), sampling);
    }
    print_generated(&a, &lm, tok.as_ref(), &prompt, sampling)
}

/// `--base HF_DIR`: a Hugging Face model with its own tokenizer.json.
fn run_hf(a: &GenerateArgs, sampling: Sampling) -> Result<()> {
    let dir = a.base.as_deref().unwrap_or(std::path::Path::new("."));
    let gpu = a.device.open()?;
    let m = crate::models::hf::load_on(&gpu, dir)?;
    let tok = m.tokenizer.ok_or_else(|| {
        Error(format!(
            "--base {}: no tokenizer.json there to encode the prompt with",
            dir.display()
        ))
    })?;
    let prompt = encode_prompt(tok.as_ref(), &a.prompt)?;
    let lm = crate::models::LanguageModel::Gpt(m.gpt);
    print_generated(a, &lm, tok.as_ref(), &prompt, sampling)
}

/// Print the prompt, then each new token's text as it is sampled.
fn print_generated(
    a: &GenerateArgs,
    lm: &crate::models::LanguageModel,
    tok: &dyn Tokenizer,
    prompt: &[u32],
    sampling: Sampling,
) -> Result<()> {
    if let Some(ctx) = lm.context() {
        if prompt.len() > ctx {
            eprintln!(
                "note: the prompt has {} tokens and the model's context is {ctx}: it reads the \
                 last {ctx}",
                prompt.len()
            );
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", a.prompt);
    let _ = out.flush();
    // Decode everything generated so far and print what is new: a byte-level BPE token may end
    // inside a UTF-8 character, which then shows once its last byte arrives.
    let mut ids: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    lm.generate_with(prompt, a.sampling.max_tokens, sampling, |t| {
        ids.push(t);
        let text = tok.decode(&ids)?;
        if !text.ends_with('\u{FFFD}') && text.len() > printed {
            let _ = write!(out, "{}", &text[printed..]);
            let _ = out.flush();
            printed = text.len();
        }
        Ok(())
    })?;
    let text = tok.decode(&ids)?;
    if text.len() > printed {
        let _ = write!(out, "{}", &text[printed..]);
    }
    let _ = writeln!(out);
    Ok(())
}

/// `--chat`: the prompt as a user message in the chat template; prints the reply only.
fn chat_reply(
    a: &GenerateArgs,
    lm: &crate::models::LanguageModel,
    tok: &dyn Tokenizer,
    sampling: Sampling,
) -> Result<()> {
    let gpt = gpt_of(lm)?;
    let template = ChatTemplate::default();
    let mut messages = super::chat::opening(&a.system);
    messages.push(Message {
        role: Role::User,
        content: a.prompt.clone(),
    });
    let prompt = prompt_ids(tok, &template, &messages);
    let ctx = gpt.config().context;
    if prompt.len() > ctx {
        eprintln!(
            "note: the chat prompt has {} tokens and the model's context is {ctx}: it reads the \
             last {ctx}",
            prompt.len()
        );
    }
    let mut sampler = Sampler::new(sampling);
    let stop = end_ids(tok, &template);
    let mut out = std::io::stdout().lock();
    generate_reply(
        gpt,
        tok,
        &prompt,
        a.sampling.max_tokens,
        &mut sampler,
        &stop,
        |s| {
            let _ = write!(out, "{s}");
            let _ = out.flush();
        },
    )?;
    let _ = writeln!(out);
    Ok(())
}

/// The prompt's token ids. A character tokenizer maps characters it never saw to `<unk>`; that
/// is refused here with the characters named.
fn encode_prompt(tok: &dyn Tokenizer, prompt: &str) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(Error(
            "--prompt is empty: give at least one character to continue".into(),
        ));
    }
    if tok.kind() == "char" {
        let mut unknown: Vec<char> = prompt
            .chars()
            .filter(|c| tok.token_to_id(&c.to_string()).is_none())
            .collect();
        unknown.dedup();
        if !unknown.is_empty() {
            let shown: String = unknown.iter().map(|c| format!("{c:?} ")).collect();
            return Err(Error(format!(
                "--prompt: the character tokenizer of this model never saw {}(it knows {} \
                 characters from its training text); rephrase the prompt with those",
                shown,
                tok.vocab_size() - 1
            )));
        }
    }
    Ok(tok.encode(prompt))
}
