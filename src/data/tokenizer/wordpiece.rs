//! [`WordPieceTokenizer`]: BERT's tokenizer (`vocab.txt`, or a Hugging Face `tokenizer.json`
//! with `model.type` `"WordPiece"`).
//!
//! **Normalising** (BERT's `BasicTokenizer`): drop NUL, U+FFFD and control characters, turn
//! every whitespace character into a space, put spaces around CJK ideographs (each is a word),
//! and for an uncased vocabulary lowercase and strip accents (decompose to NFD, drop the
//! non-spacing marks: `café` -> `cafe`).
//!
//! **Pre-tokenising**: split on whitespace, and make every punctuation character (Unicode `P*`
//! and all ASCII symbols) a word of its own.
//!
//! **WordPiece** then cuts each word greedily, longest match first, into vocabulary entries; a
//! piece that does not start the word carries the prefix `##`: `unaffable` -> `un ##aff ##able`.
//! A word that cannot be cut (or is longer than 100 characters) becomes one `[UNK]`.
//!
//! `encode` gives the text's tokens only; [`WordPieceTokenizer::encode_with_specials`] adds
//! BERT's `[CLS] ... [SEP]`, as a model expects. `decode` joins the tokens with spaces, glues
//! `##` pieces to their word and `. , ! ?` to the word before, so it gives back the normalised
//! text (lowercased, accents stripped, spaces around other punctuation), not always the input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

use super::Tokenizer;
use crate::data::error::{DataError, format_err, invalid};

/// BERT's special tokens, recognised in text and listed by [`Tokenizer::special_tokens`] when
/// the vocabulary has them.
pub const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Longest word (in characters) WordPiece cuts; longer words become `[UNK]`.
pub const MAX_WORD_CHARS: usize = 100;

/// BERT's WordPiece tokenizer (see the module notes).
///
/// ```
/// use kiln::data::tokenizer::{Tokenizer, WordPieceTokenizer};
/// let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\ncafe\n,\n!";
/// let t = WordPieceTokenizer::from_vocab_txt(vocab, true)?;
/// assert_eq!(t.encode("Unaffable, CAFÉ!"), vec![4, 5, 6, 8, 7, 9]);
/// assert_eq!(t.encode_with_specials("xyz"), vec![2, 1, 3]); // [CLS] [UNK] [SEP]
/// assert_eq!(t.decode(&[2, 4, 5, 6, 8, 7, 9, 3])?, "[CLS] unaffable, cafe! [SEP]");
/// # Ok::<(), kiln::data::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct WordPieceTokenizer {
    tokens: Vec<String>, // id -> token ("" for an unused id)
    vocab: HashMap<String, u32>,
    unk: u32,
    prefix: String,
    max_word_chars: usize,
    lowercase: bool,
    strip_accents: bool,
    specials: Vec<(String, u32)>,
}

struct Patterns {
    remove: Regex,
    space: Regex,
    cjk: Regex,
    mark: Regex,
    word: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("WordPiece pattern is valid");
        // BERT's punctuation: Unicode P* and every ASCII symbol.
        let punct = r"\p{P}\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E";
        Patterns {
            remove: re(r"[\x00\x{FFFD}]|[\p{Cc}\p{Cf}&&[^\t\n\r]]"),
            space: re(r"[\t\n\r\p{Zs}]"),
            cjk: re(r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"),
            mark: re(r"\p{Mn}"),
            word: re(&format!(r"[{punct}]|[^\s{punct}]+")),
        }
    })
}

impl WordPieceTokenizer {
    /// A tokenizer from BERT's `vocab.txt` text (one token a line, id = line number from 0).
    /// `uncased` lowercases and strips accents (true for `bert-base-uncased` and MiniLM).
    pub fn from_vocab_txt(text: &str, uncased: bool) -> Result<Self, DataError> {
        let vocab = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        Self::build(
            "vocab.txt",
            vocab,
            "[UNK]",
            "##",
            MAX_WORD_CHARS,
            uncased,
            uncased,
        )
    }

    /// A tokenizer from a `vocab.txt` file (see [`WordPieceTokenizer::from_vocab_txt`]).
    pub fn load_vocab_txt(path: &Path, uncased: bool) -> Result<Self, DataError> {
        let name = path.display().to_string();
        let bytes = crate::data::read_maybe_gz(path)?;
        let text =
            String::from_utf8(bytes).or_else(|e| format_err(&name, format!("not UTF-8: {e}")))?;
        Self::from_vocab_txt(&text, uncased).or_else(|e| format_err(&name, e.to_string()))
    }

    fn build(
        name: &str,
        vocab: HashMap<String, u32>,
        unk_token: &str,
        prefix: &str,
        max_word_chars: usize,
        lowercase: bool,
        strip_accents: bool,
    ) -> Result<Self, DataError> {
        let size = super::id_table_size(name, &vocab)?;
        let mut tokens = vec![String::new(); size];
        for (t, &id) in &vocab {
            if !tokens[id as usize].is_empty() {
                return format_err(name, format!("two tokens share the id {id}"));
            }
            tokens[id as usize] = t.clone();
        }
        let Some(&unk) = vocab.get(unk_token) else {
            return format_err(
                name,
                format!("the unknown token {unk_token:?} is not in the vocabulary"),
            );
        };
        let specials = BERT_SPECIALS
            .iter()
            .filter_map(|s| vocab.get(*s).map(|&id| (s.to_string(), id)))
            .collect();
        Ok(WordPieceTokenizer {
            tokens,
            vocab,
            unk,
            prefix: prefix.to_string(),
            max_word_chars,
            lowercase,
            strip_accents,
            specials,
        })
    }

    /// A tokenizer from a Hugging Face `tokenizer.json` value with `model.type` `"WordPiece"`
    /// (normaliser options from a `BertNormalizer`; uncased when there is none).
    pub(crate) fn from_json_value(json: &Value, name: &str) -> Result<Self, DataError> {
        let model = &json["model"];
        let vocab = super::hf::vocab_of(model, name)?;
        let s = |v: &Value, key: &str, default: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let norm = json.get("normalizer").unwrap_or(&Value::Null);
        let lowercase = norm
            .get("lowercase")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let strip_accents = norm
            .get("strip_accents")
            .and_then(Value::as_bool)
            .unwrap_or(lowercase);
        let max = model
            .get("max_input_chars_per_word")
            .and_then(Value::as_u64)
            .unwrap_or(MAX_WORD_CHARS as u64) as usize;
        Self::build(
            name,
            vocab,
            &s(model, "unk_token", "[UNK]"),
            &s(model, "continuing_subword_prefix", "##"),
            max,
            lowercase,
            strip_accents,
        )
    }

    /// `[CLS]`, the text's tokens, `[SEP]`: BERT's input for one sentence. Without those two
    /// tokens in the vocabulary, just the text's tokens.
    pub fn encode_with_specials(&self, text: &str) -> Vec<u32> {
        let (cls, sep) = (self.vocab.get("[CLS]"), self.vocab.get("[SEP]"));
        let mut out: Vec<u32> = cls.copied().into_iter().collect();
        out.extend(self.encode(text));
        out.extend(sep.copied());
        out
    }

    /// The id of the unknown token.
    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    /// BERT's `BasicTokenizer` normalisation (see the module notes).
    pub fn normalize(&self, text: &str) -> String {
        let p = patterns();
        let text = p.remove.replace_all(text, "");
        let text = p.space.replace_all(&text, " ");
        let mut text = p.cjk.replace_all(&text, " $0 ").into_owned();
        if self.strip_accents {
            let nfd: String = text.nfd().collect();
            text = p.mark.replace_all(&nfd, "").into_owned();
        }
        if self.lowercase {
            text = text.to_lowercase();
        }
        text
    }

    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        let text = self.normalize(text);
        for word in patterns().word.find_iter(&text) {
            self.encode_word(word.as_str(), out);
        }
    }

    /// Greedy longest-match-first WordPiece of one word.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut start = 0;
        let mut piece = String::new();
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&piece) {
                    break Some(id);
                }
                match word[start..end].char_indices().next_back() {
                    Some((last, _)) if last > 0 => end = start + last,
                    _ => break None,
                }
            };
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

impl Tokenizer for WordPieceTokenizer {
    fn kind(&self) -> &'static str {
        "wordpiece"
    }

    /// The text's tokens, without `[CLS]` / `[SEP]` (see
    /// [`WordPieceTokenizer::encode_with_specials`]). Special tokens written in the text
    /// (`[MASK]`) encode to their id.
    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min();
            match next {
                Some((at, len, id)) => {
                    self.encode_ordinary(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_ordinary(rest, &mut out);
                    return out;
                }
            }
        }
    }

    /// Tokens joined by spaces, except that `##` pieces join their word and `. , ! ?` follow
    /// without a space (Hugging Face's WordPiece decoder with `cleanup`, special tokens kept).
    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let mut out = String::new();
        for (i, &id) in ids.iter().enumerate() {
            let Some(t) = self.id_to_token(id) else {
                return invalid(format!(
                    "WordPiece decode: id {id} (position {i}) is not in the vocabulary of {} ids",
                    self.tokens.len()
                ));
            };
            let glued = match t.strip_prefix(self.prefix.as_str()) {
                Some(rest) if !self.prefix.is_empty() => Some(rest),
                _ if matches!(t, "." | "," | "!" | "?") => Some(t),
                _ => None,
            };
            match glued {
                Some(rest) => out.push_str(rest),
                None => {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(t);
                }
            }
        }
        Ok(out)
    }

    vocab_table_methods!();

    /// The Hugging Face `tokenizer.json` format, `model.type` `"WordPiece"`.
    fn to_json(&self) -> String {
        let vocab: serde_json::Map<String, Value> = self
            .vocab
            .iter()
            .map(|(t, &id)| (t.clone(), json!(id)))
            .collect();
        let added: Vec<Value> = self
            .specials
            .iter()
            .map(|(s, id)| {
                json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                                  "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let v = json!({
            "version": "1.0",
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": true, "strip_accents": self.strip_accents,
                           "lowercase": self.lowercase},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "decoder": {"type": "WordPiece", "prefix": self.prefix, "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": self.tokens[self.unk as usize],
                      "continuing_subword_prefix": self.prefix,
                      "max_input_chars_per_word": self.max_word_chars, "vocab": vocab},
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}
