//! Hugging Face `tokenizer.json` for byte-level BPE: reading and writing.
//!
//! The parts kiln reads:
//!
//! ```text
//! {
//!   "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true, ...}],
//!   "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, ...},
//!   "model": {
//!     "type": "BPE",
//!     "vocab": {"!": 0, "\"": 1, ...},
//!     "merges": ["Ġ t", "Ġ a", ...]          // or [["Ġ", "t"], ["Ġ", "a"], ...]
//!   }
//! }
//! ```
//!
//! Both merge forms are read (older files write `"a b"` strings, newer ones pairs); kiln writes
//! strings, which every version reads. A `pre_tokenizer` other than `ByteLevel` (alone or in a
//! `Sequence`), or a `continuing_subword_prefix` / `end_of_word_suffix`, means a BPE kiln does
//! not implement, and is an error rather than a silently different encoding.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::bpe::BpeTokenizer;
use super::{ENDOFTEXT, Tokenizer};
use crate::data::error::{DataError, format_err};

impl BpeTokenizer {
    /// A tokenizer from the text of a Hugging Face `tokenizer.json` (`model.type` `"BPE"`,
    /// byte-level); `name` names the source in errors.
    pub fn from_hf_json(text: &str, name: &str) -> Result<Self, DataError> {
        let json: Value = serde_json::from_str(text)
            .or_else(|e| format_err(name, format!("not valid JSON: {e}")))?;
        bpe_from_json_value(&json, name)
    }

    /// A tokenizer from a Hugging Face `tokenizer.json` file (may be gzipped).
    pub fn from_hf_file(path: &Path) -> Result<Self, DataError> {
        let name = path.display().to_string();
        let bytes = crate::data::read_maybe_gz(path)?;
        let text = String::from_utf8(bytes)
            .or_else(|e| format_err(&name, format!("not UTF-8 text: {e}")))?;
        Self::from_hf_json(&text, &name)
    }
}

/// Whether a pre-tokenizer JSON is byte-level, and its `add_prefix_space`.
/// `model.vocab` of a `tokenizer.json` (BPE or WordPiece): token -> id, every id a u32.
pub(crate) fn vocab_of(model: &Value, name: &str) -> Result<HashMap<String, u32>, DataError> {
    let Some(vocab_json) = model.get("vocab").and_then(Value::as_object) else {
        return format_err(name, "model.vocab: expected an object of token -> id");
    };
    let mut vocab = HashMap::with_capacity(vocab_json.len());
    for (token, id) in vocab_json {
        let Some(id) = id.as_u64().filter(|&id| id < u32::MAX as u64) else {
            return format_err(
                name,
                format!("model.vocab[{token:?}]: expected an id, found {id}"),
            );
        };
        vocab.insert(token.clone(), id as u32);
    }
    Ok(vocab)
}

fn byte_level(pre: &Value) -> Option<bool> {
    match pre.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => Some(
            pre.get("add_prefix_space")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        Some("Sequence") => pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find_map(byte_level)),
        _ => None,
    }
}

/// `model.merges` of a BPE `tokenizer.json`: `"a b"` strings or `["a", "b"]` pairs, in rank
/// order.
pub(crate) fn merges_of(model: &Value, name: &str) -> Result<Vec<(String, String)>, DataError> {
    let Some(merges_json) = model.get("merges").and_then(Value::as_array) else {
        return format_err(name, "model.merges: expected an array");
    };
    let mut merges = Vec::with_capacity(merges_json.len());
    for (i, m) in merges_json.iter().enumerate() {
        let pair = match m {
            Value::String(s) => s
                .split_once(' ')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' ')),
            Value::Array(v) if v.len() == 2 => v[0].as_str().zip(v[1].as_str()),
            _ => None,
        };
        match pair {
            Some((a, b)) => merges.push((a.to_string(), b.to_string())),
            None => {
                return format_err(
                    name,
                    format!("model.merges[{i}]: expected \"a b\" or [\"a\", \"b\"], found {m}"),
                );
            }
        }
    }
    Ok(merges)
}

/// One entry of a `tokenizer.json`'s `added_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AddedTokenSpec {
    pub content: String,
    pub id: u32,
    /// A special token (`<s>`), as opposed to an added word.
    pub special: bool,
    /// Matched in the normalized text (true) or the raw text (false).
    pub normalized: bool,
    /// `lstrip`, `rstrip` or `single_word` set.
    pub stripping: bool,
}

/// The `added_tokens` of a `tokenizer.json` (none when absent).
pub(crate) fn added_tokens_of(json: &Value, name: &str) -> Result<Vec<AddedTokenSpec>, DataError> {
    let mut out = Vec::new();
    for (i, t) in json
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let content = t.get("content").and_then(Value::as_str);
        let id = t
            .get("id")
            .and_then(Value::as_u64)
            .filter(|&id| id < u32::MAX as u64);
        let flag = |k: &str| t.get(k).and_then(Value::as_bool);
        match (content, id) {
            (Some(c), Some(id)) => out.push(AddedTokenSpec {
                content: c.to_string(),
                id: id as u32,
                special: flag("special").unwrap_or(false),
                normalized: flag("normalized").unwrap_or(false),
                stripping: ["lstrip", "rstrip", "single_word"]
                    .iter()
                    .any(|k| flag(k) == Some(true)),
            }),
            _ => {
                return format_err(
                    name,
                    format!("added_tokens[{i}]: expected \"id\" and \"content\", found {t}"),
                );
            }
        }
    }
    Ok(out)
}

/// `json`'s `model`, refused unless it is a BPE (or untyped) without a continuing-subword prefix
/// or end-of-word suffix (BPE variants kiln does not implement).
pub(super) fn plain_bpe_model<'a>(json: &'a Value, name: &str) -> Result<&'a Value, DataError> {
    let model = json.get("model").unwrap_or(&Value::Null);
    match model.get("type").and_then(Value::as_str) {
        None | Some("BPE") => {}
        Some(t) => return format_err(name, format!("model.type is {t:?}, expected \"BPE\"")),
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(s) = model
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return format_err(name, format!("model.{key} {s:?} is not supported"));
        }
    }
    Ok(model)
}

pub(crate) fn bpe_from_json_value(json: &Value, name: &str) -> Result<BpeTokenizer, DataError> {
    let model = plain_bpe_model(json, name)?;
    let add_prefix_space = match json.get("pre_tokenizer") {
        None | Some(Value::Null) => false,
        Some(pre) => match byte_level(pre) {
            Some(p) => p,
            None => {
                return format_err(
                    name,
                    format!(
                        "pre_tokenizer {} is not ByteLevel: kiln reads byte-level BPE only",
                        pre.get("type").unwrap_or(&Value::Null)
                    ),
                );
            }
        },
    };
    let vocab = vocab_of(model, name)?;
    let merges = merges_of(model, name)?;
    let specials: Vec<(String, u32)> = added_tokens_of(json, name)?
        .into_iter()
        .map(|t| (t.content, t.id))
        .collect();
    BpeTokenizer::build(name, vocab, &merges, &specials, add_prefix_space)
}

/// The vocabulary written in id order (serde_json's own map would sort it by token).
struct VocabById<'a>(&'a [String]);

impl Serialize for VocabById<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.is_empty())
                .map(|(id, t)| (t, id)),
        )
    }
}

#[derive(Serialize)]
struct AddedToken<'a> {
    id: u32,
    content: &'a str,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
    normalized: bool,
    special: bool,
}

#[derive(Serialize)]
struct HfModel<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dropout: Option<f32>,
    unk_token: Option<&'a str>,
    continuing_subword_prefix: &'static str,
    end_of_word_suffix: &'static str,
    fuse_unk: bool,
    byte_fallback: bool,
    vocab: VocabById<'a>,
    merges: Vec<String>,
}

#[derive(Serialize)]
struct HfFile<'a> {
    version: &'static str,
    truncation: Option<()>,
    padding: Option<()>,
    added_tokens: Vec<AddedToken<'a>>,
    normalizer: Option<()>,
    pre_tokenizer: Value,
    post_processor: Value,
    decoder: Value,
    model: HfModel<'a>,
}

/// `t` as a Hugging Face `tokenizer.json` (merges as `"a b"` strings, vocabulary in id order).
pub fn to_hf_json(t: &BpeTokenizer) -> String {
    let tokens = t.tokens();
    let byte_level = serde_json::json!({
        "type": "ByteLevel",
        "add_prefix_space": t.add_prefix_space(),
        "trim_offsets": true,
        "use_regex": true,
    });
    let specials = t.special_tokens();
    let file = HfFile {
        version: "1.0",
        truncation: None,
        padding: None,
        added_tokens: specials
            .iter()
            .map(|(s, id)| AddedToken {
                id: *id,
                content: s,
                single_word: false,
                lstrip: false,
                rstrip: false,
                normalized: s == ENDOFTEXT,
                special: true,
            })
            .collect(),
        normalizer: None,
        pre_tokenizer: byte_level.clone(),
        post_processor: byte_level.clone(),
        decoder: byte_level,
        model: HfModel {
            kind: "BPE",
            dropout: None,
            unk_token: None,
            continuing_subword_prefix: "",
            end_of_word_suffix: "",
            fuse_unk: false,
            byte_fallback: false,
            vocab: VocabById(tokens),
            merges: t
                .merges()
                .iter()
                .map(|&(a, b)| format!("{} {}", tokens[a as usize], tokens[b as usize]))
                .collect(),
        },
    };
    serde_json::to_string_pretty(&file).unwrap_or_default()
}
