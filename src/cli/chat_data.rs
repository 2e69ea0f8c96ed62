//! Chat data for `kiln finetune`: read the conversations (a JSONL file, or the embedded
//! chitchat set), split them into train / validation by conversation, cut long ones at turn
//! boundaries so that they fit the base model's context, and build the windows.
//!
//! **Fitting the context.** A base GPT trained on the Shakespeare slice reads a few hundred
//! characters at most, while a chitchat conversation is about 4,400. Rather than keep only the
//! start of each conversation (what [`ChatDataset`] does with one that is too long), a
//! conversation longer than a window of T + 1 tokens is cut into pieces of whole
//! *exchanges* (the user message(s) and the assistant reply that follows), laid greedily into
//! pieces that fit. Its system message heads the first piece when the two fit together. An
//! exchange longer than the window is a piece of its own, truncated by [`ChatDataset`] (and
//! dropped there if no assistant token is left). Messages after the last assistant turn carry
//! nothing to train on and are dropped.
//!
//! **Split.** Whole conversations go to validation (`val_fraction` of them, at least one when
//! there are two or more and the fraction is positive), chosen by a seeded shuffle, so pieces
//! of one conversation never land on both sides.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{Error, Result};
use crate::data::chat::{
    ChatDataset, ChatOptions, ChatTemplate, Conversation, Message, Role, load_chat, parse_chat,
    tokenize_chat,
};
use crate::data::tokenizer::Tokenizer;
use crate::show::digits;

/// The embedded chat set: 1,500 chitchat conversations (see data/README.md).
const CHITCHAT_GZ: &[u8] = include_bytes!("../../data/chat/chitchat_train.jsonl.gz");

/// The `--data` name of the embedded set.
pub const CHITCHAT: &str = "chitchat";

/// Read `data` (`chitchat`, or a JSONL file, gzipped or not): the conversations and a label.
/// A file with bad lines fails with each one's line number.
pub fn load_conversations(data: &str) -> Result<(Vec<Conversation>, String)> {
    if data == CHITCHAT {
        let mut text = String::new();
        flate2::read::GzDecoder::new(CHITCHAT_GZ)
            .read_to_string(&mut text)
            .map_err(|e| Error(format!("chitchat (embedded): cannot decompress: {e}")))?;
        let (convs, errs) = parse_chat(&text);
        if let Some(e) = errs.first() {
            return Err(Error(format!("chitchat (embedded): {e}")));
        }
        return Ok((convs, "chitchat (embedded, 1,500 conversations)".into()));
    }
    let p = Path::new(data);
    if !p.is_file() {
        return Err(Error(format!(
            "--data {data}: no such file; give a chat JSONL file ({{\"messages\": [{{\"role\": \
             ..., \"content\": ...}}]}} a line) or `chitchat` for the embedded set"
        )));
    }
    let convs = load_chat(p).map_err(|e| Error(format!("--data {e}")))?;
    Ok((convs, data.to_string()))
}

/// Tokens of one message as [`tokenize_chat`] lays it out (header, content, end, newline).
fn message_len(m: &Message, tok: &dyn Tokenizer, template: &ChatTemplate) -> usize {
    let c = Conversation {
        messages: vec![m.clone()],
        line: 0,
    };
    tokenize_chat(&c, tok, template).ids.len()
}

/// Cut `conv` into pieces that fit `window` tokens (see the module notes). A conversation that
/// fits is returned whole.
pub fn split_to_fit(
    conv: &Conversation,
    tok: &dyn Tokenizer,
    template: &ChatTemplate,
    window: usize,
) -> Vec<Conversation> {
    let lens: Vec<usize> = conv
        .messages
        .iter()
        .map(|m| message_len(m, tok, template))
        .collect();
    if lens.iter().sum::<usize>() <= window {
        return vec![conv.clone()];
    }
    // Leading system messages, then exchanges: [non-assistant...] assistant.
    let lead = conv
        .messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let mut exchanges: Vec<(usize, usize)> = Vec::new(); // message ranges
    let mut start = lead;
    for (i, m) in conv.messages.iter().enumerate().skip(lead) {
        if m.role == Role::Assistant {
            exchanges.push((start, i + 1));
            start = i + 1;
        }
    }
    let len_of = |r: (usize, usize)| lens[r.0..r.1].iter().sum::<usize>();
    let piece = |ranges: &[(usize, usize)], system: bool| {
        let mut messages: Vec<Message> = Vec::new();
        if system {
            messages.extend_from_slice(&conv.messages[..lead]);
        }
        for &(a, b) in ranges {
            messages.extend_from_slice(&conv.messages[a..b]);
        }
        Conversation {
            messages,
            line: conv.line,
        }
    };
    let system_len: usize = lens[..lead].iter().sum();
    let mut out = Vec::new();
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut cur_len = 0usize;
    let mut with_system = false;
    for (k, &r) in exchanges.iter().enumerate() {
        let l = len_of(r);
        if k == 0 && lead > 0 && system_len + l <= window {
            with_system = true;
            cur_len = system_len;
        }
        if !cur.is_empty() && cur_len + l > window {
            out.push(piece(&cur, with_system));
            with_system = false;
            cur.clear();
            cur_len = 0;
        }
        cur.push(r);
        cur_len += l;
    }
    if !cur.is_empty() {
        out.push(piece(&cur, with_system));
    }
    out
}

/// Indices `0..n` in a seeded pseudo-random order (splitmix64 Fisher-Yates).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Conversations split into (train, validation), see the module notes.
pub fn split_train_val(
    convs: &[Conversation],
    val_fraction: f64,
    seed: u64,
) -> (Vec<Conversation>, Vec<Conversation>) {
    let n = convs.len();
    let mut n_val = (val_fraction * n as f64).round() as usize;
    if val_fraction > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    } else {
        n_val = 0;
    }
    let order = shuffled(n, seed);
    let mut val: Vec<usize> = order[..n_val].to_vec();
    val.sort_unstable();
    let (mut tr, mut va) = (Vec::new(), Vec::new());
    for (i, c) in convs.iter().enumerate() {
        if val.binary_search(&i).is_ok() {
            va.push(c.clone());
        } else {
            tr.push(c.clone());
        }
    }
    (tr, va)
}

/// Training and validation windows, ready for the loop.
pub struct ChatData {
    /// Training windows.
    pub train: Arc<ChatDataset>,
    /// Validation windows (none without validation conversations).
    pub val: Option<Arc<ChatDataset>>,
    /// One line for the log.
    pub report: String,
}

/// Split, cut and window `convs` for a model of context `context` (see the module notes).
pub fn prepare(
    convs: &[Conversation],
    tok: &dyn Tokenizer,
    template: &ChatTemplate,
    context: usize,
    val_fraction: f64,
    seed: u64,
    pack: bool,
) -> Result<ChatData> {
    let (tr, va) = split_train_val(convs, val_fraction, seed);
    let window = context + 1;
    let cut = |cs: &[Conversation]| -> Vec<Conversation> {
        cs.iter()
            .flat_map(|c| split_to_fit(c, tok, template, window))
            .collect()
    };
    let (tr_pieces, va_pieces) = (cut(&tr), cut(&va));
    let opts = ChatOptions {
        context,
        pack,
        pad_id: 0,
        template: template.clone(),
    };
    let build =
        |p: &[Conversation]| ChatDataset::new(p, tok, &opts).map_err(|e| Error(e.to_string()));
    let train = build(&tr_pieces)?;
    use crate::data::Dataset;
    if train.is_empty() {
        return Err(Error(format!(
            "no training window holds an assistant token: with a context of {context} tokens \
             every conversation piece lost its assistant turn to truncation; fine-tune a base \
             with a longer --context"
        )));
    }
    let val = if va_pieces.is_empty() {
        None
    } else {
        Some(Arc::new(build(&va_pieces)?)).filter(|d| !d.is_empty())
    };
    let report = format!(
        "{} conversations ({} train / {} val) -> {} pieces of at most {window} tokens -> {} \
         train windows ({} assistant tokens trained on, {} truncated, {} dropped){}",
        digits(convs.len()),
        digits(tr.len()),
        digits(va.len()),
        digits(tr_pieces.len() + va_pieces.len()),
        digits(train.len()),
        digits(train.trained_tokens()),
        digits(train.truncated),
        digits(train.dropped),
        match &val {
            Some(v) => format!(", {} val windows", digits(v.len())),
            None => ", no validation".into(),
        }
    );
    Ok(ChatData {
        train: Arc::new(train),
        val,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::CharTokenizer;

    fn msg(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }

    fn long_conv() -> Conversation {
        let mut messages = vec![msg(Role::System, "sys")];
        for i in 0..6 {
            messages.push(msg(Role::User, &format!("question {i}")));
            messages.push(msg(Role::Assistant, &format!("answer {i}")));
        }
        messages.push(msg(Role::User, "dangling"));
        Conversation { messages, line: 3 }
    }

    #[test]
    fn long_conversations_split_into_whole_exchanges_that_fit() {
        let t = ChatTemplate::default();
        let c = long_conv();
        let tok = CharTokenizer::train(&t.render(&c));
        let exchange =
            message_len(&c.messages[1], &tok, &t) + message_len(&c.messages[2], &tok, &t);
        let sys = message_len(&c.messages[0], &tok, &t);
        // Room for the system message and two exchanges, not three.
        let window = sys + 2 * exchange + exchange / 2;
        let pieces = split_to_fit(&c, &tok, &t, window);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].messages[0].role, Role::System);
        assert_eq!(pieces[0].messages.len(), 5);
        for p in &pieces[1..] {
            assert_eq!(p.messages.len(), 4);
            assert_eq!(p.messages[0].role, Role::User);
        }
        for p in &pieces {
            assert!(tokenize_chat(p, &tok, &t).ids.len() <= window);
            assert_eq!(p.messages.last().unwrap().role, Role::Assistant);
            assert_eq!(p.line, 3);
        }
        // Every exchange appears once, in order; the dangling user message is gone.
        let answers: Vec<&str> = pieces
            .iter()
            .flat_map(|p| &p.messages)
            .filter(|m| m.role == Role::Assistant)
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(
            answers,
            (0..6).map(|i| format!("answer {i}")).collect::<Vec<_>>()
        );
        // A window smaller than one exchange: one exchange a piece, no system message.
        let tiny = split_to_fit(&c, &tok, &t, exchange - 1);
        assert_eq!(tiny.len(), 6);
        assert!(tiny.iter().all(|p| p.messages.len() == 2));
        // A conversation that fits stays whole.
        assert_eq!(split_to_fit(&c, &tok, &t, 10_000), vec![c.clone()]);
    }

    #[test]
    fn validation_takes_whole_conversations_reproducibly() {
        let convs: Vec<Conversation> = (0..20)
            .map(|i| Conversation {
                messages: vec![msg(Role::User, "q"), msg(Role::Assistant, "a")],
                line: i + 1,
            })
            .collect();
        let (tr, va) = split_train_val(&convs, 0.25, 7);
        assert_eq!((tr.len(), va.len()), (15, 5));
        assert_eq!(split_train_val(&convs, 0.25, 7).1, va);
        assert_ne!(split_train_val(&convs, 0.25, 8).1, va);
        let mut lines: Vec<usize> = tr.iter().chain(&va).map(|c| c.line).collect();
        lines.sort_unstable();
        assert_eq!(lines, (1..=20).collect::<Vec<_>>());
        // At least one validation conversation when asked for any; none when not.
        assert_eq!(split_train_val(&convs[..2], 0.01, 0).1.len(), 1);
        assert_eq!(split_train_val(&convs, 0.0, 0).1.len(), 0);
        assert_eq!(split_train_val(&convs[..1], 0.5, 0).1.len(), 0);
    }
}
