//! [`CharTokenizer`]: one token per character.
//!
//! The vocabulary is the sorted set of distinct characters (Unicode scalar values) of a training
//! corpus, so id `i` is the `i`-th smallest character, followed by one extra id for `<unk>`.
//! Any character the corpus did not contain encodes to `<unk>` (use
//! [`CharTokenizer::encode_strict`] to get an error instead), and `<unk>` decodes to U+FFFD `�`.
//! The Shakespeare corpus gives 76 characters, so a vocabulary of 77.

use std::collections::HashMap;

use serde_json::json;

use super::Tokenizer;
use crate::data::error::{DataError, format_err, invalid};

/// The name of the unknown-character token, the last id.
pub const UNK: &str = "<unk>";

/// A character-level tokenizer: ids `0..n` are the corpus's characters in sorted order and id
/// `n` is `<unk>`.
///
/// ```
/// use kiln::data::tokenizer::{CharTokenizer, Tokenizer};
/// let t = CharTokenizer::train("to be or not");
/// assert_eq!(t.vocab_size(), 8); // ' ' b e n o r t + <unk>
/// assert_eq!(t.decode(&t.encode("not to be"))?, "not to be");
/// assert_eq!(t.encode("z"), vec![t.unk_id()]);
/// assert!(t.encode_strict("z").is_err());
/// # Ok::<(), kiln::data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CharTokenizer {
    chars: Vec<char>,
    strings: Vec<String>, // id -> the character as a string, then "<unk>"
    index: HashMap<char, u32>,
}

impl CharTokenizer {
    /// The tokenizer whose vocabulary is the distinct characters of `corpus`, sorted.
    pub fn train(corpus: &str) -> Self {
        let mut chars: Vec<char> = corpus.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::build(chars)
    }

    /// A tokenizer over `chars` in the given order (id `i` is `chars[i]`). Fails on a repeated
    /// character.
    pub fn from_chars(chars: Vec<char>) -> Result<Self, DataError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = chars.iter().find(|c| !seen.insert(**c)) {
            return invalid(format!("char tokenizer: character {c:?} appears twice"));
        }
        Ok(Self::build(chars))
    }

    fn build(chars: Vec<char>) -> Self {
        let index = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32))
            .collect();
        let mut strings: Vec<String> = chars.iter().map(char::to_string).collect();
        strings.push(UNK.to_string());
        CharTokenizer {
            chars,
            strings,
            index,
        }
    }

    /// The characters of the vocabulary, by id.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `<unk>` (the last id).
    pub fn unk_id(&self) -> u32 {
        self.chars.len() as u32
    }

    /// Like [`Tokenizer::encode`], but a character outside the vocabulary is an error naming it
    /// and its byte offset.
    pub fn encode_strict(&self, text: &str) -> Result<Vec<u32>, DataError> {
        text.char_indices()
            .map(|(at, c)| match self.index.get(&c) {
                Some(&id) => Ok(id),
                None => invalid(format!(
                    "char tokenizer: character {c:?} at byte {at} is not in the vocabulary \
                     of {} characters",
                    self.chars.len()
                )),
            })
            .collect()
    }

    /// Read the JSON written by [`Tokenizer::to_json`]; `name` names the source in errors.
    pub fn from_json(text: &str, name: &str) -> Result<Self, DataError> {
        let json: serde_json::Value = serde_json::from_str(text)
            .or_else(|e| format_err(name, format!("not valid JSON: {e}")))?;
        Self::from_json_value(&json, name)
    }

    pub(crate) fn from_json_value(json: &serde_json::Value, name: &str) -> Result<Self, DataError> {
        let Some(vocab) = json.pointer("/model/vocab").and_then(|v| v.as_array()) else {
            return format_err(name, "model.vocab: expected an array of characters");
        };
        let mut chars = Vec::with_capacity(vocab.len());
        for (i, v) in vocab.iter().enumerate() {
            let mut it = v.as_str().unwrap_or("").chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => {
                    return format_err(
                        name,
                        format!("model.vocab[{i}]: expected a one-character string, found {v}"),
                    );
                }
            }
        }
        Self::from_chars(chars).or_else(|e| format_err(name, e.to_string()))
    }
}

impl Tokenizer for CharTokenizer {
    fn kind(&self) -> &'static str {
        "char"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let unk = self.unk_id();
        text.chars()
            .map(|c| self.index.get(&c).copied().unwrap_or(unk))
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let mut out = String::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            match self.chars.get(id as usize) {
                Some(&c) => out.push(c),
                None if id == self.unk_id() => out.push(char::REPLACEMENT_CHARACTER),
                None => {
                    return invalid(format!(
                        "char tokenizer: cannot decode id {id} (position {i}): the vocabulary \
                         has {} ids",
                        self.vocab_size()
                    ));
                }
            }
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.chars.len() + 1
    }

    fn id_to_token(&self, id: u32) -> Option<&str> {
        self.strings.get(id as usize).map(String::as_str)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        if token == UNK {
            return Some(self.unk_id());
        }
        let mut it = token.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => self.index.get(&c).copied(),
            _ => None,
        }
    }

    fn special_tokens(&self) -> Vec<(String, u32)> {
        vec![(UNK.to_string(), self.unk_id())]
    }

    /// `{"model": {"type": "Char", "vocab": [chars by id], "unk_token": "<unk>"}}`: the shape of
    /// a Hugging Face `tokenizer.json`, with a model type of kiln's own.
    fn to_json(&self) -> String {
        let vocab: Vec<String> = self.chars.iter().map(char::to_string).collect();
        let v = json!({
            "version": "1.0",
            "model": { "type": "Char", "vocab": vocab, "unk_token": UNK },
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}
