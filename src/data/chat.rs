//! Chat-format data for fine-tuning: JSONL conversations (the Chat Completions format), a chat
//! template, tokenisation with a loss mask over the assistant's tokens, truncation and packing
//! into context windows, and a [`ChatDataset`].
//!
//! **File format.** One conversation a line; blank lines are skipped; other keys are ignored:
//!
//! ```text
//! {"messages": [{"role": "system", "content": "Be brief."},
//!               {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
//! ```
//!
//! A line is rejected for bad JSON, a missing `messages` array, an empty conversation, a role
//! other than `system` / `user` / `assistant`, a missing or non-string `content`, or no
//! assistant turn. [`load_chat`] checks **every** line and fails with one error listing the
//! first [`MAX_REPORTED`] bad lines by 1-based line number (and how many in all), so one run
//! shows what to fix; [`parse_chat`] returns the good conversations and every error.
//!
//! **Template.** Each message becomes `<|ROLE|>\nCONTENT<|end|>\n`:
//!
//! ```text
//! <|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n
//! ```
//!
//! The pieces (header, content, `<|end|>`, `\n`) are tokenised one by one and concatenated, so
//! the assistant spans are exact token ranges whatever the tokenizer: a marker that the
//! tokenizer knows as a special token becomes that one id, otherwise it is encoded as text.
//! The **loss mask** is true on the assistant's content tokens and its `<|end|>` (the model
//! learns to answer and to stop), false on everything else.
//!
//! **Windows.** A context of T tokens trains on windows of T + 1 tokens: inputs `w[0..T]`,
//! targets `w[1..T+1]`, and target t is trained only where `mask[t + 1]` is true; masked
//! targets carry [`IGNORE_INDEX`] (`u32::MAX`, PyTorch's `ignore_index = -100` in spirit),
//! which [`crate::Tensor::cross_entropy_masked`] skips. A conversation longer than T + 1
//! tokens is truncated (its start is kept); one left with no assistant target is dropped.
//! Without packing each conversation gets its own window, padded; with packing conversations
//! are laid end to end greedily and a window is padded only when the next one does not fit.
//! Packed conversations can attend to the ones before them in the window (no block mask).
//!
//! ```
//! use kiln::data::chat::{parse_chat, tokenize_chat, ChatTemplate};
//! use kiln::data::tokenizer::{CharTokenizer, Tokenizer};
//! let (convs, errs) = parse_chat(r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#);
//! assert!(errs.is_empty());
//! let t = ChatTemplate::default();
//! let text = t.render(&convs[0]);
//! assert_eq!(text, "<|user|>\nhi<|end|>\n<|assistant|>\nyo<|end|>\n");
//! let tok = CharTokenizer::train(&text);
//! let chat = tokenize_chat(&convs[0], &tok, &t);
//! let trained: String = chat.ids.iter().zip(&chat.mask).filter(|p| *p.1)
//!     .map(|(&id, _)| tok.decode(&[id]).unwrap()).collect();
//! assert_eq!(trained, "yo<|end|>");
//! ```

use std::path::Path;

use serde_json::Value;

use super::tokenizer::Tokenizer;
use super::{Batch, DataError, Dataset};

/// The label of a target that is not trained on (see the module notes): `u32::MAX`.
pub use crate::dtype::IGNORE_INDEX;

/// How many bad lines [`load_chat`] lists in its error.
pub const MAX_REPORTED: usize = 20;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person talking to the model.
    User,
    /// The model: the only role trained on.
    Assistant,
}

impl Role {
    /// `system`, `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its author.
    pub role: Role,
    /// Its text.
    pub content: String,
}

/// A conversation read from a chat file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The messages in order (at least one, and at least one from the assistant).
    pub messages: Vec<Message>,
    /// 1-based line of the file it came from.
    pub line: usize,
}

/// What is wrong with one line of a chat file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the message index where there is one.
    pub msg: String,
}

impl std::fmt::Display for ChatLineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// Parse one non-blank line of a chat file.
fn parse_line(text: &str, line: usize) -> Result<Conversation, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    let Some(msgs) = v.get("messages") else {
        return Err("no \"messages\" array".into());
    };
    let Some(msgs) = msgs.as_array() else {
        return Err(format!("\"messages\" must be an array, found {msgs}"));
    };
    if msgs.is_empty() {
        return Err("empty conversation (\"messages\" is [])".into());
    }
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(other) => {
                return Err(format!(
                    "messages[{i}]: unknown role {other:?} (use system, user or assistant)"
                ));
            }
            None => return Err(format!("messages[{i}]: missing \"role\"")),
        };
        let Some(content) = m.get("content").and_then(Value::as_str) else {
            return Err(format!(
                "messages[{i}]: missing \"content\" (a string) for role {}",
                role.as_str()
            ));
        };
        messages.push(Message {
            role,
            content: content.to_string(),
        });
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("no assistant turn (nothing to train on)".into());
    }
    Ok(Conversation { messages, line })
}

/// Parse JSONL chat text: the valid conversations and an error for every bad line (see the
/// module notes). Never panics.
pub fn parse_chat(text: &str) -> (Vec<Conversation>, Vec<ChatLineError>) {
    let (mut convs, mut errs) = (Vec::new(), Vec::new());
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match parse_line(l, i + 1) {
            Ok(c) => convs.push(c),
            Err(msg) => errs.push(ChatLineError { line: i + 1, msg }),
        }
    }
    (convs, errs)
}

/// Read a chat JSONL file (gzipped when it ends in `.gz`). Every line is checked; any bad line
/// fails the load with one [`DataError::Format`] listing up to [`MAX_REPORTED`] of them by
/// line number. An empty file is an error too.
pub fn load_chat(path: &Path) -> Result<Vec<Conversation>, DataError> {
    let name = path.display().to_string();
    let bytes = super::read_maybe_gz(path)?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::Format {
        file: name.clone(),
        msg: format!("not UTF-8: {e}"),
    })?;
    let (convs, errs) = parse_chat(&text);
    if !errs.is_empty() {
        let mut msg = format!("{} bad line(s) in a chat file:", errs.len());
        for e in errs.iter().take(MAX_REPORTED) {
            msg += &format!("\n  {e}");
        }
        if errs.len() > MAX_REPORTED {
            msg += &format!("\n  ... and {} more", errs.len() - MAX_REPORTED);
        }
        return Err(DataError::Format { file: name, msg });
    }
    if convs.is_empty() {
        return Err(DataError::Format {
            file: name,
            msg: "no conversations".into(),
        });
    }
    Ok(convs)
}

/// The chat template (see the module notes): `{open}ROLE{close}\n`, content, `end`, `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// Before the role name: `<|`.
    pub open: String,
    /// After the role name: `|>`.
    pub close: String,
    /// After each message's content: `<|end|>`, trained on in assistant turns.
    pub end: String,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate {
            open: "<|".into(),
            close: "|>".into(),
            end: "<|end|>".into(),
        }
    }
}

impl ChatTemplate {
    /// The header of a message: `<|ROLE|>\n`.
    pub fn header(&self, role: Role) -> String {
        format!("{}{}{}\n", self.open, role.as_str(), self.close)
    }

    /// The whole conversation as text.
    pub fn render(&self, conv: &Conversation) -> String {
        conv.messages
            .iter()
            .map(|m| format!("{}{}{}\n", self.header(m.role), m.content, self.end))
            .collect()
    }

    /// A prompt for generation: the conversation so far followed by an open assistant header.
    pub fn prompt(&self, messages: &[Message]) -> String {
        let mut s: String = messages
            .iter()
            .map(|m| format!("{}{}{}\n", self.header(m.role), m.content, self.end))
            .collect();
        s += &self.header(Role::Assistant);
        s
    }
}

/// A tokenised conversation: ids and, per id, whether it is trained on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedChat {
    /// Token ids of the rendered conversation.
    pub ids: Vec<u32>,
    /// True on the assistant's content and end-marker tokens.
    pub mask: Vec<bool>,
}

/// `piece` as one special-token id when the tokenizer has it, else encoded as text.
fn encode_piece(tok: &dyn Tokenizer, piece: &str) -> Vec<u32> {
    match tok.token_to_id(piece) {
        Some(id) if tok.special_tokens().iter().any(|(_, s)| *s == id) => vec![id],
        _ => tok.encode(piece),
    }
}

/// Tokenise `conv` with `template` (see the module notes).
pub fn tokenize_chat(
    conv: &Conversation,
    tok: &dyn Tokenizer,
    template: &ChatTemplate,
) -> TokenizedChat {
    let mut out = TokenizedChat::default();
    let mut push = |ids: Vec<u32>, on: bool| {
        out.mask.extend(std::iter::repeat_n(on, ids.len()));
        out.ids.extend(ids);
    };
    for m in &conv.messages {
        let train = m.role == Role::Assistant;
        push(tok.encode(&template.header(m.role)), false);
        push(tok.encode(&m.content), train);
        push(encode_piece(tok, &template.end), train);
        push(tok.encode("\n"), false);
    }
    out
}

/// Options for [`ChatDataset::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOptions {
    /// T, the model's context: windows hold T + 1 tokens.
    pub context: usize,
    /// Lay several conversations in one window (see the module notes).
    pub pack: bool,
    /// The id that pads windows (never trained on).
    pub pad_id: u32,
    /// The template.
    pub template: ChatTemplate,
}

/// Fixed-size training windows built from conversations (see the module notes).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatDataset {
    /// Windows of T + 1 ids.
    windows: Vec<Vec<u32>>,
    /// Their loss masks, T + 1 each.
    masks: Vec<Vec<bool>>,
    context: usize,
    vocab_size: usize,
    /// Conversations cut to fit a window.
    pub truncated: usize,
    /// Conversations dropped because no assistant token was left after truncation.
    pub dropped: usize,
}

impl ChatDataset {
    /// Tokenise, truncate and (optionally) pack `convs` into windows of `opts.context + 1`.
    pub fn new(
        convs: &[Conversation],
        tok: &dyn Tokenizer,
        opts: &ChatOptions,
    ) -> Result<Self, DataError> {
        if opts.context == 0 {
            return Err(DataError::Format {
                file: "chat dataset".into(),
                msg: "context must be at least 1 token".into(),
            });
        }
        let w = opts.context + 1;
        let mut ds = ChatDataset {
            windows: Vec::new(),
            masks: Vec::new(),
            context: opts.context,
            vocab_size: tok.vocab_size(),
            truncated: 0,
            dropped: 0,
        };
        let (mut ids, mut mask) = (Vec::with_capacity(w), Vec::with_capacity(w));
        for c in convs {
            let mut t = tokenize_chat(c, tok, &opts.template);
            if t.ids.len() > w {
                t.ids.truncate(w);
                t.mask.truncate(w);
                ds.truncated += 1;
            }
            // Position 0 is never a target.
            if !t.mask.iter().skip(1).any(|&m| m) {
                ds.dropped += 1;
                continue;
            }
            if !ids.is_empty() && (!opts.pack || ids.len() + t.ids.len() > w) {
                ds.flush(&mut ids, &mut mask, opts.pad_id);
            }
            ids.extend(t.ids);
            mask.extend(t.mask);
        }
        if !ids.is_empty() {
            ds.flush(&mut ids, &mut mask, opts.pad_id);
        }
        Ok(ds)
    }

    fn flush(&mut self, ids: &mut Vec<u32>, mask: &mut Vec<bool>, pad: u32) {
        let w = self.context + 1;
        ids.resize(w, pad);
        mask.resize(w, false);
        self.windows.push(std::mem::take(ids));
        self.masks.push(std::mem::take(mask));
    }

    /// Window `i`: T + 1 ids and their loss mask.
    pub fn window(&self, i: usize) -> (&[u32], &[bool]) {
        (&self.windows[i], &self.masks[i])
    }

    /// Trained targets over all windows.
    pub fn trained_tokens(&self) -> usize {
        self.masks
            .iter()
            .map(|m| m[1..].iter().filter(|&&b| b).count())
            .sum()
    }
}

impl Dataset for ChatDataset {
    fn len(&self) -> usize {
        self.windows.len()
    }

    fn feature_shape(&self) -> Vec<usize> {
        vec![self.context]
    }

    /// `x (B, T)` ids as `f32`; targets `labels (B * T)`: the next token where the loss mask is
    /// set, [`IGNORE_INDEX`] elsewhere.
    fn batch(&self, indices: &[usize]) -> Batch {
        let t = self.context;
        super::text::window_batch(indices, t, self.vocab_size, |i, x, labels| {
            let (ids, mask) = self.window(i);
            x.extend(ids[..t].iter().map(|&id| id as f32));
            labels.extend(
                ids[1..]
                    .iter()
                    .zip(&mask[1..])
                    .map(|(&id, &m)| if m { id } else { IGNORE_INDEX }),
            );
        })
    }
}
