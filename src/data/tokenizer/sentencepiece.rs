//! [`SentencePieceBpe`]: the sentencepiece-style BPE of a Hugging Face `tokenizer.json`, as
//! Llama, TinyLlama and Mistral ship it, with the ids of Python's `tokenizers`.
//!
//! Unlike byte-level BPE (GPT-2, [`super::BpeTokenizer`]) the symbols are Unicode characters,
//! a space is shown as `▁` (U+2581), and a character outside the vocabulary becomes its UTF-8
//! bytes as `<0xNN>` tokens (*byte fallback*), or `<unk>`. Encoding a text:
//!
//! 1. cut out the added tokens matched in the raw text (`normalized: false`, such as `<s>`):
//!    the earliest match, the longest at a tie; they encode to their own ids;
//! 2. normalize each other segment: the `normalizer` steps, `Prepend("▁")` (only on a
//!    non-empty segment) and `Replace(" ", "▁")`, in their order (Llama-2's layout);
//! 3. cut out the added tokens matched in the normalized text (`normalized: true`);
//! 4. pre-tokenize each piece with `Metaspace` if the file has it: spaces become `▁`, a `▁` is
//!    put in front (`prepend_scheme` `always`, or `first`: only for the piece at the start of
//!    the text), and with `split` the piece is cut before every `▁`;
//! 5. each word: its characters' ids (byte fallback or `<unk>` for the others; consecutive
//!    `<unk>`s fused with `fuse_unk`), then merges by rank as in [`super::bpe`]; with
//!    `ignore_merges` a word in the vocabulary is one token.
//!
//! Decoding runs the `decoder` steps over the tokens' strings: `Replace`, `ByteFallback` (runs
//! of `<0xNN>` become their UTF-8 text, or one U+FFFD per byte when not valid), `Fuse`,
//! `Strip` (up to `start` / `stop` of a character at each end of every token), `Metaspace`
//! (`▁` becomes a space, and every `▁` of the first token is dropped unless `prepend_scheme`
//! is `never`); with no decoder the tokens are joined with spaces. Added tokens are decoded
//! as their text, through the same steps, as `tokenizers` does with
//! `skip_special_tokens=False`.
//!
//! `encode` gives the ids without the post-processor's additions (Llama's `<s>` in front, which
//! `tokenizers` adds with `add_special_tokens=True`). A normalizer, pre-tokenizer or decoder of
//! another type, a regex `Replace` pattern, `lstrip` / `rstrip` / `single_word` added tokens or
//! BPE dropout are refused, naming the field.

use std::collections::HashMap;

use serde_json::Value;

use super::Tokenizer;
use super::bpe::apply_merges;
use super::hf::{added_tokens_of, merges_of, vocab_of};
use crate::data::error::{DataError, format_err, invalid};

/// The space character of sentencepiece vocabularies.
pub const SPACE: char = '\u{2581}';

#[derive(Debug, Clone, PartialEq)]
enum Normalize {
    Prepend(String),
    Replace(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PrependScheme {
    Always,
    First,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
struct Metaspace {
    replacement: char,
    prepend: PrependScheme,
    split: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Decode {
    Replace(String, String),
    ByteFallback,
    Fuse,
    Strip(char, usize, usize),
    Metaspace(char, PrependScheme),
}

/// A sentencepiece-style BPE tokenizer from a `tokenizer.json` (see the module notes).
#[derive(Debug, Clone)]
pub struct SentencePieceBpe {
    tokens: Vec<String>,
    vocab: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), (u32, u32)>,
    unk: Option<u32>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    normalizer: Vec<Normalize>,
    metaspace: Option<Metaspace>,
    decoder: Option<Vec<Decode>>,
    /// Added tokens as matched: (pattern, id, normalized); a normalized token's pattern is its
    /// content through the normalizer, as `tokenizers` matches it.
    added: Vec<(String, u32, bool)>,
    specials: Vec<(String, u32)>,
    json: String,
}

fn type_of<'a>(v: &'a Value, field: &str, name: &str) -> Result<&'a str, DataError> {
    match v.get("type").and_then(Value::as_str) {
        Some(t) => Ok(t),
        None => format_err(name, format!("{field}.type: missing")),
    }
}

fn unsupported<T>(name: &str, field: &str, what: &str) -> Result<T, DataError> {
    format_err(
        name,
        format!("{field}.type {what:?} is not supported by kiln's sentencepiece-style BPE"),
    )
}

/// The `String` of a `Replace` pattern (a `Regex` pattern is refused).
fn replace_of(v: &Value, field: &str, name: &str) -> Result<(String, String), DataError> {
    let pattern = v.pointer("/pattern/String").and_then(Value::as_str);
    let content = v.get("content").and_then(Value::as_str);
    match (pattern, content) {
        (Some(p), Some(c)) => Ok((p.to_string(), c.to_string())),
        _ => format_err(
            name,
            format!("{field}: only a Replace of a plain String pattern is supported, found {v}"),
        ),
    }
}

/// The steps of a normalizer (a `Sequence` flattened).
fn normalizer_of(v: &Value, field: &str, name: &str) -> Result<Vec<Normalize>, DataError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    match type_of(v, field, name)? {
        "Sequence" => {
            let list = v.get("normalizers").and_then(Value::as_array);
            let mut out = Vec::new();
            for (i, n) in list.into_iter().flatten().enumerate() {
                out.extend(normalizer_of(
                    n,
                    &format!("{field}.normalizers[{i}]"),
                    name,
                )?);
            }
            Ok(out)
        }
        "Prepend" => match v.get("prepend").and_then(Value::as_str) {
            Some(p) => Ok(vec![Normalize::Prepend(p.to_string())]),
            None => format_err(name, format!("{field}.prepend: missing")),
        },
        "Replace" => {
            let (p, c) = replace_of(v, field, name)?;
            Ok(vec![Normalize::Replace(p, c)])
        }
        other => unsupported(name, field, other),
    }
}

fn replacement_of(v: &Value, field: &str, name: &str) -> Result<char, DataError> {
    let r = v
        .get("replacement")
        .and_then(Value::as_str)
        .unwrap_or("\u{2581}");
    let mut chars = r.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => format_err(
            name,
            format!("{field}.replacement: expected one character, found {r:?}"),
        ),
    }
}

fn scheme_of(v: &Value, field: &str, name: &str) -> Result<PrependScheme, DataError> {
    match v.get("prepend_scheme").and_then(Value::as_str) {
        Some("always") => Ok(PrependScheme::Always),
        Some("first") => Ok(PrependScheme::First),
        Some("never") => Ok(PrependScheme::Never),
        Some(other) => format_err(
            name,
            format!("{field}.prepend_scheme {other:?} is not known"),
        ),
        // Older files: add_prefix_space.
        None => Ok(match v.get("add_prefix_space").and_then(Value::as_bool) {
            Some(false) => PrependScheme::Never,
            _ => PrependScheme::Always,
        }),
    }
}

fn pre_tokenizer_of(v: &Value, name: &str) -> Result<Option<Metaspace>, DataError> {
    let field = "pre_tokenizer";
    if v.is_null() {
        return Ok(None);
    }
    match type_of(v, field, name)? {
        "Metaspace" => Ok(Some(Metaspace {
            replacement: replacement_of(v, field, name)?,
            prepend: scheme_of(v, field, name)?,
            split: v.get("split").and_then(Value::as_bool).unwrap_or(true),
        })),
        other => unsupported(name, field, other),
    }
}

fn decoder_of(v: &Value, field: &str, name: &str) -> Result<Vec<Decode>, DataError> {
    match type_of(v, field, name)? {
        "Sequence" => {
            let list = v.get("decoders").and_then(Value::as_array);
            let mut out = Vec::new();
            for (i, d) in list.into_iter().flatten().enumerate() {
                out.extend(decoder_of(d, &format!("{field}.decoders[{i}]"), name)?);
            }
            Ok(out)
        }
        "Replace" => {
            let (p, c) = replace_of(v, field, name)?;
            Ok(vec![Decode::Replace(p, c)])
        }
        "ByteFallback" => Ok(vec![Decode::ByteFallback]),
        "Fuse" => Ok(vec![Decode::Fuse]),
        "Strip" => {
            let content = v.get("content").and_then(Value::as_str).unwrap_or(" ");
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
            match content.chars().next() {
                Some(c) => Ok(vec![Decode::Strip(c, n("start"), n("stop"))]),
                None => format_err(name, format!("{field}.content: empty")),
            }
        }
        "Metaspace" => Ok(vec![Decode::Metaspace(
            replacement_of(v, field, name)?,
            scheme_of(v, field, name)?,
        )]),
        other => unsupported(name, field, other),
    }
}

/// Whether a `tokenizer.json` holds a sentencepiece-style BPE rather than a byte-level one: a
/// `Metaspace` pre-tokenizer, a normalizer, or byte fallback.
pub(crate) fn is_sentencepiece_style(json: &Value) -> bool {
    let pre = json.pointer("/pre_tokenizer/type").and_then(Value::as_str);
    pre == Some("Metaspace")
        || (pre.is_none()
            && (json.get("normalizer").is_some_and(|n| !n.is_null())
                || json.pointer("/model/byte_fallback") == Some(&Value::Bool(true))))
}

impl SentencePieceBpe {
    /// A tokenizer from the text of a `tokenizer.json`; `name` names the source in errors.
    pub fn from_hf_json(text: &str, name: &str) -> Result<Self, DataError> {
        let json: Value = serde_json::from_str(text)
            .or_else(|e| format_err(name, format!("not valid JSON: {e}")))?;
        Self::from_json_value(&json, text, name)
    }

    pub(crate) fn from_json_value(json: &Value, text: &str, name: &str) -> Result<Self, DataError> {
        let model = super::hf::plain_bpe_model(json, name)?;
        if model.get("dropout").is_some_and(|d| !d.is_null()) {
            return format_err(name, "model.dropout: BPE dropout is not supported");
        }
        let mut vocab = vocab_of(model, name)?;
        let added = added_tokens_of(json, name)?;
        for a in &added {
            if a.stripping {
                return format_err(
                    name,
                    format!(
                        "added token {:?}: lstrip, rstrip and single_word are not supported",
                        a.content
                    ),
                );
            }
            vocab.entry(a.content.clone()).or_insert(a.id);
        }
        let size = super::id_table_size(name, &vocab)?;
        let mut tokens = vec![String::new(); size];
        for (t, &id) in &vocab {
            tokens[id as usize] = t.clone();
        }
        let mut ranks = HashMap::new();
        for (rank, (a, b)) in merges_of(model, name)?.iter().enumerate() {
            let get = |t: &str| match vocab.get(t) {
                Some(&id) => Ok(id),
                None => format_err(
                    name,
                    format!("model.merges[{rank}]: {t:?} is not in the vocabulary"),
                ),
            };
            let pair = (get(a)?, get(b)?);
            let merged = get(&format!("{a}{b}"))?;
            ranks.entry(pair).or_insert((rank as u32, merged));
        }
        let unk = match model.get("unk_token").and_then(Value::as_str) {
            None => None,
            Some(u) => match vocab.get(u) {
                Some(&id) => Some(id),
                None => {
                    return format_err(
                        name,
                        format!("model.unk_token {u:?} is not in the vocabulary"),
                    );
                }
            },
        };
        let flag = |k: &str| model.get(k).and_then(Value::as_bool).unwrap_or(false);
        let decoder = match json.get("decoder") {
            None | Some(Value::Null) => None,
            Some(d) => Some(decoder_of(d, "decoder", name)?),
        };
        let mut t = SentencePieceBpe {
            specials: added
                .iter()
                .filter(|a| a.special)
                .map(|a| (a.content.clone(), a.id))
                .collect(),
            tokens,
            vocab,
            ranks,
            unk,
            fuse_unk: flag("fuse_unk"),
            byte_fallback: flag("byte_fallback"),
            ignore_merges: flag("ignore_merges"),
            normalizer: normalizer_of(
                json.get("normalizer").unwrap_or(&Value::Null),
                "normalizer",
                name,
            )?,
            metaspace: pre_tokenizer_of(json.get("pre_tokenizer").unwrap_or(&Value::Null), name)?,
            decoder,
            added: Vec::new(),
            json: text.to_string(),
        };
        t.added = added
            .iter()
            .map(|a| {
                let pattern = match a.normalized {
                    true => t.normalize(&a.content),
                    false => a.content.clone(),
                };
                (pattern, a.id, a.normalized)
            })
            .collect();
        Ok(t)
    }

    /// Cut `text` at the added tokens with `normalized == normalized`: pieces of text (with
    /// their start offset) and token ids, in order.
    fn split_added<'t>(&self, text: &'t str, normalized: bool) -> Vec<Result<&'t str, u32>> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = self
                .added
                .iter()
                .filter(|(p, _, n)| *n == normalized && !p.is_empty())
                .filter_map(|(p, id, _)| {
                    rest.find(p.as_str())
                        .map(|at| (at, usize::MAX - p.len(), *id))
                })
                .min();
            let Some((at, longest, id)) = next else { break };
            if at > 0 {
                out.push(Ok(&rest[..at]));
            }
            out.push(Err(id));
            rest = &rest[at + (usize::MAX - longest)..];
        }
        if !rest.is_empty() {
            out.push(Ok(rest));
        }
        out
    }

    /// The ids of one word: characters (byte fallback, `<unk>`), then merges.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(word) {
                out.push(id);
                return;
            }
        }
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        let mut last_unk = false;
        let mut buf = [0u8; 4];
        for c in word.chars() {
            if let Some(&id) = self.vocab.get(c.encode_utf8(&mut buf) as &str) {
                syms.push(id);
                last_unk = false;
                continue;
            }
            if self.byte_fallback {
                let bytes: Option<Vec<u32>> = c
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| self.vocab.get(&format!("<0x{b:02X}>")).copied())
                    .collect();
                if let Some(bytes) = bytes {
                    syms.extend(bytes);
                    last_unk = false;
                    continue;
                }
            }
            if let Some(unk) = self.unk {
                if !(self.fuse_unk && last_unk) {
                    syms.push(unk);
                }
                last_unk = true;
            }
        }
        out.extend(apply_merges(&self.ranks, syms));
    }

    /// Pre-tokenize one normalized piece (`first`: it starts the text) and encode its words.
    fn encode_piece(&self, piece: &str, first: bool, out: &mut Vec<u32>) {
        let Some(m) = &self.metaspace else {
            return self.encode_word(piece, out);
        };
        let mut s: String = piece
            .chars()
            .map(|c| if c == ' ' { m.replacement } else { c })
            .collect();
        let prepend = match m.prepend {
            PrependScheme::Always => true,
            PrependScheme::First => first,
            PrependScheme::Never => false,
        };
        if prepend && !s.starts_with(m.replacement) {
            s.insert(0, m.replacement);
        }
        if !m.split {
            return self.encode_word(&s, out);
        }
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if c == m.replacement && i > start {
                self.encode_word(&s[start..i], out);
                start = i;
            }
        }
        if start < s.len() {
            self.encode_word(&s[start..], out);
        }
    }

    fn normalize(&self, text: &str) -> String {
        let mut s = text.to_string();
        for step in &self.normalizer {
            match step {
                Normalize::Prepend(p) if !s.is_empty() => s.insert_str(0, p),
                Normalize::Prepend(_) => {}
                Normalize::Replace(a, b) => s = s.replace(a.as_str(), b),
            }
        }
        s
    }

    /// The decoder steps over token strings.
    fn decode_tokens(&self, mut toks: Vec<String>) -> String {
        let Some(steps) = &self.decoder else {
            return toks.join(" ");
        };
        for step in steps {
            toks = match step {
                Decode::Replace(a, b) => toks.iter().map(|t| t.replace(a.as_str(), b)).collect(),
                Decode::Fuse => vec![toks.concat()],
                Decode::ByteFallback => byte_fallback(toks),
                Decode::Strip(c, start, stop) => {
                    toks.iter().map(|t| strip(t, *c, *start, *stop)).collect()
                }
                Decode::Metaspace(r, scheme) => toks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.chars()
                            .filter_map(|ch| match ch == *r {
                                true if i == 0 && *scheme != PrependScheme::Never => None,
                                true => Some(' '),
                                false => Some(ch),
                            })
                            .collect()
                    })
                    .collect(),
            };
        }
        toks.concat()
    }
}

/// `ByteFallback`: runs of `<0xNN>` tokens become their UTF-8 text (or one U+FFFD per byte).
fn byte_fallback(toks: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(toks.len());
    let mut bytes = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut Vec<String>| {
        if bytes.is_empty() {
            return;
        }
        match String::from_utf8(std::mem::take(bytes)) {
            Ok(s) => out.push(s),
            Err(e) => out.extend(e.as_bytes().iter().map(|_| "\u{FFFD}".to_string())),
        }
    };
    for t in toks {
        let byte = (t.len() == 6 && t.starts_with("<0x") && t.ends_with('>'))
            .then(|| u8::from_str_radix(&t[3..5], 16).ok())
            .flatten();
        match byte {
            Some(b) => bytes.push(b),
            None => {
                flush(&mut bytes, &mut out);
                out.push(t);
            }
        }
    }
    flush(&mut bytes, &mut out);
    out
}

/// `Strip`: up to `start` leading and `stop` trailing `c`s off `t`.
fn strip(t: &str, c: char, start: usize, stop: usize) -> String {
    let chars: Vec<char> = t.chars().collect();
    let lead = chars.iter().take(start).take_while(|&&x| x == c).count();
    let trail = chars[lead..]
        .iter()
        .rev()
        .take(stop)
        .take_while(|&&x| x == c)
        .count();
    chars[lead..chars.len() - trail].iter().collect()
}

impl Tokenizer for SentencePieceBpe {
    fn kind(&self) -> &'static str {
        "sentencepiece-bpe"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut at_start = true;
        for seg in self.split_added(text, false) {
            let raw = match seg {
                Err(id) => {
                    out.push(id);
                    at_start = false;
                    continue;
                }
                Ok(s) => s,
            };
            let norm = self.normalize(raw);
            for piece in self.split_added(&norm, true) {
                match piece {
                    Err(id) => out.push(id),
                    Ok(p) => self.encode_piece(p, at_start, &mut out),
                }
                at_start = false;
            }
        }
        out
    }

    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let mut toks = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            match self.tokens.get(id as usize).filter(|t| !t.is_empty()) {
                Some(t) => toks.push(t.clone()),
                None => {
                    return invalid(format!(
                        "decode: id {id} (position {i}) is not in the vocabulary of {} ids",
                        self.tokens.len()
                    ));
                }
            }
        }
        Ok(self.decode_tokens(toks))
    }

    vocab_table_methods!();

    /// The `tokenizer.json` it was read from.
    fn to_json(&self) -> String {
        self.json.clone()
    }
}
