//! `kiln chat`: talk to a GPT (with a LoRA adapter from `kiln finetune`) line by line.
//!
//! ```text
//! kiln chat --checkpoint runs/shakespeare-gpt-1 --adapter runs/chat --system "Be brief."
//! ```
//!
//! Each line read from stdin is a user message. The running conversation (the `--system`
//! message, then every user and assistant turn so far) is rendered with the chat template the
//! adapter was trained with, followed by an open assistant header, and the model writes the
//! reply until it emits the end-of-turn marker or `--max-tokens` (see
//! [`super::chat_model::generate_reply`]). The reply is printed as it is sampled, on its own
//! line. When the conversation outgrows the context, the oldest exchanges are left out of the
//! prompt (the system message stays). The session ends at end of input or a line `/quit`;
//! `/reset` forgets the conversation. Works with piped stdin: a `you> ` prompt is shown only on
//! a terminal. One sampler serves the whole session, so the same input and `--seed` give the
//! same replies.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use super::chat_model::{GptBase, attach_adapter, end_ids, generate_reply, gpt_of, prompt_ids};
use super::{Error, Result};
use crate::data::chat::{ChatTemplate, Message, Role};
use crate::models::Sampling;
use crate::models::sampling::Sampler;

/// Flags of `kiln chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The base GPT: a run directory or checkpoint of `kiln train --model gpt`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// A LoRA adapter directory from `kiln finetune` (PEFT layout).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Quantise the adapted base weights to NF4 (QLoRA); automatic when the adapter was
    /// trained with --qlora.
    #[arg(long)]
    pub qlora: bool,
    /// A system message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// The sampling flags of `generate` and `chat`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// New tokens to sample, at most 1,000,000 (a chat reply also ends at the end-of-turn
    /// marker).
    #[arg(long, default_value_t = 200)]
    pub max_tokens: usize,
    /// Softmax temperature: lower is more conservative; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens (1 = greedy).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Nucleus sampling: only among the most likely tokens whose probability sums to P.
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Seed of the sampling stream: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The most tokens one `kiln generate` call or `kiln chat` reply samples.
const MAX_TOKENS: usize = 1_000_000;

/// The opening of a conversation: the `--system` message, if any.
pub(super) fn opening(system: &Option<String>) -> Vec<Message> {
    let system = system.iter().map(|s| Message {
        role: Role::System,
        content: s.clone(),
    });
    system.collect()
}

impl SamplingArgs {
    /// The checked settings: an error names a flag out of range.
    pub fn sampling(&self) -> Result<Sampling> {
        let (temperature, top_p) = (self.temperature, self.top_p);
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(Error(format!(
                "--max-tokens {}: from 1 to {MAX_TOKENS} new tokens per call (each token \
                 re-decodes the text so far)",
                self.max_tokens
            )));
        }
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(Error(format!(
                "--temperature {temperature}: must be a number >= 0 (0 is greedy)"
            )));
        }
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error(format!("--top-p {p}: must be in (0, 1]")));
            }
        }
        Ok(Sampling {
            temperature,
            top_k: self.top_k,
            top_p,
            seed: self.seed,
        })
    }
}

/// The prompt ids of `messages` (system first, if any), leaving out the oldest exchanges until
/// the prompt and `room` new tokens fit `context` (one exchange at least is kept).
fn fitted_prompt(
    tok: &dyn crate::data::tokenizer::Tokenizer,
    template: &ChatTemplate,
    messages: &[Message],
    context: usize,
    room: usize,
) -> Vec<u32> {
    let lead = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let mut from = lead;
    loop {
        let mut ms = messages[..lead].to_vec();
        ms.extend_from_slice(&messages[from..]);
        let ids = prompt_ids(tok, template, &ms);
        // Drop through the next user message that starts an exchange.
        let next = messages[from + 1..]
            .iter()
            .position(|m| m.role == Role::User)
            .map(|p| from + 1 + p);
        match next {
            Some(n) if ids.len() + room > context => from = n,
            _ => return ids,
        }
    }
}

/// Run `kiln chat`.
pub fn run(a: ChatArgs) -> Result<()> {
    let sampling = a.sampling.sampling()?;
    let max_tokens = a.sampling.max_tokens;
    let base = GptBase::open(&a.checkpoint, "--checkpoint")?;
    let gpu = a.device.open()?;
    let mut lm = base.build(&gpu)?;
    if let Some(dir) = &a.adapter {
        attach_adapter(&mut lm, dir, a.qlora, &a.checkpoint)?;
    }
    let gpt = gpt_of(&lm)?;
    let tok = base.tokenizer.as_ref();
    let template = ChatTemplate::default();
    let stop = end_ids(tok, &template);
    let mut sampler = Sampler::new(sampling);
    let opening = opening(&a.system);
    let mut messages = opening.clone();
    let tty = std::io::stdin().is_terminal();
    let mut out = std::io::stdout().lock();
    let room = max_tokens.min(base.context / 2);
    if tty {
        let _ = write!(out, "you> ");
        let _ = out.flush();
    }
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| Error(format!("stdin: {e}")))?;
        let text = line.trim_end_matches('\r');
        match text.trim() {
            "/quit" | "/exit" => break,
            "/reset" => {
                messages = opening.clone();
                continue;
            }
            "" => continue,
            _ => {}
        }
        messages.push(Message {
            role: Role::User,
            content: text.to_string(),
        });
        let prompt = fitted_prompt(tok, &template, &messages, base.context, room);
        if tty {
            let _ = write!(out, "kiln> ");
        }
        let reply = generate_reply(gpt, tok, &prompt, max_tokens, &mut sampler, &stop, |s| {
            let _ = write!(out, "{s}");
            let _ = out.flush();
        })?;
        let _ = writeln!(out);
        if tty {
            let _ = write!(out, "you> ");
        }
        let _ = out.flush();
        messages.push(Message {
            role: Role::Assistant,
            content: reply.text,
        });
    }
    Ok(())
}
