//! Tokenizers: text to token ids and back.
//!
//! A language model sees text as a sequence of integer ids from a fixed vocabulary. kiln has its
//! own implementations (no external tokenizer library), all behind the [`Tokenizer`] trait:
//!
//! - [`CharTokenizer`]: one id per character of a training corpus (plus `<unk>`). Tiny vocabulary,
//!   long sequences; the classic first language model.
//! - [`BpeTokenizer`]: byte-level byte-pair encoding, as in GPT-2. Trainable on a corpus
//!   ([`BpeTokenizer::train`]), loadable from GPT-2's `encoder.json` / `vocab.bpe`
//!   ([`BpeTokenizer::load_gpt2`], or the embedded copy [`BpeTokenizer::gpt2`]) and from a
//!   Hugging Face `tokenizer.json` ([`BpeTokenizer::from_hf_json`]). Its ids match GPT-2's.
//!
//! - [`SentencePieceBpe`]: the sentencepiece-style BPE of Llama-family `tokenizer.json` files
//!   (`▁` for spaces, byte fallback, normalizer / `Metaspace`); ids match Python's `tokenizers`.
//!
//! - [`WordPieceTokenizer`]: BERT's WordPiece, from `vocab.txt` or a Hugging Face
//!   `tokenizer.json` (`model.type` `"WordPiece"`).
//!
//! Another scheme plugs in as a further implementation of the trait, with its `model.type` in
//! [`tokenizer_from_json`].
//!
//! A tokenizer saves itself as JSON ([`Tokenizer::save`]; BPE in the Hugging Face
//! `tokenizer.json` format, the character tokenizer in a small kiln format of the same shape),
//! and [`load_tokenizer`] reads either back, so a checkpoint directory can carry its
//! [`TOKENIZER_FILE`].
//!
//! ```
//! use kiln::data::tokenizer::{BpeTokenizer, CharTokenizer, Tokenizer};
//! let gpt2 = BpeTokenizer::gpt2()?;
//! assert_eq!(gpt2.encode("Hello world"), vec![15496, 995]);
//! assert_eq!(gpt2.decode(&[15496, 995])?, "Hello world");
//!
//! let chars = CharTokenizer::train("hello");
//! assert_eq!(chars.encode("hole"), vec![1, 3, 2, 0]); // e h l o -> 0 1 2 3
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use std::path::Path;

use super::error::{DataError, format_err};

/// The [`Tokenizer`] methods of a tokenizer that holds its vocabulary as `tokens` (id to
/// token, `""` for an unused id), `vocab` (token to id) and `specials` ((token, id) pairs):
/// written once, expanded inside the BPE and WordPiece `impl Tokenizer` blocks.
macro_rules! vocab_table_methods {
    () => {
        fn vocab_size(&self) -> usize {
            self.tokens.len()
        }

        fn id_to_token(&self, id: u32) -> Option<&str> {
            self.tokens
                .get(id as usize)
                .filter(|t| !t.is_empty())
                .map(String::as_str)
        }

        fn token_to_id(&self, token: &str) -> Option<u32> {
            self.vocab.get(token).copied()
        }

        fn special_tokens(&self) -> Vec<(String, u32)> {
            self.specials.clone()
        }
    };
}

pub mod bpe;
pub mod bytelevel;
pub mod char;
pub mod hf;
pub mod sentencepiece;
mod train;
pub mod wordpiece;

pub use bpe::BpeTokenizer;
pub use char::CharTokenizer;
pub use sentencepiece::SentencePieceBpe;
pub use wordpiece::WordPieceTokenizer;

/// The file name a tokenizer takes in a checkpoint directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// GPT-2's end-of-text token, which BPE tokenizers trained by kiln also carry.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// Text to token ids and back.
///
/// `encode` never fails: every implementation has a way to represent any text (byte-level BPE
/// covers all bytes; the character tokenizer maps unseen characters to `<unk>`). `decode` fails
/// on an id outside the vocabulary.
pub trait Tokenizer: Send + Sync + std::fmt::Debug {
    /// A short name of the scheme: `"char"`, `"bpe"` or `"wordpiece"`.
    fn kind(&self) -> &'static str;

    /// The token ids of `text`.
    fn encode(&self, text: &str) -> Vec<u32>;

    /// The text of `ids`. Fails on an id outside the vocabulary.
    fn decode(&self, ids: &[u32]) -> Result<String, DataError>;

    /// Number of ids: every id is below this.
    fn vocab_size(&self) -> usize;

    /// The vocabulary entry of `id` as the tokenizer stores it (byte-level BPE shows a space as
    /// `Ġ`, see [`bytelevel`]), or `None` when `id` is not in the vocabulary.
    fn id_to_token(&self, id: u32) -> Option<&str>;

    /// The id of a vocabulary entry (in the stored form, as [`Tokenizer::id_to_token`] gives it).
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// Special tokens (`<|endoftext|>`, `<unk>`, ...) and their ids.
    fn special_tokens(&self) -> Vec<(String, u32)>;

    /// The id that marks the end of a text, if the vocabulary has one (`<|endoftext|>`,
    /// `</s>`, `<eos>` or `[SEP]`).
    fn eos_id(&self) -> Option<u32> {
        let specials = self.special_tokens();
        [ENDOFTEXT, "</s>", "<eos>", "[SEP]"]
            .iter()
            .find_map(|name| specials.iter().find(|(s, _)| s == name).map(|&(_, id)| id))
    }

    /// The tokenizer as JSON text that [`tokenizer_from_json`] reads back.
    fn to_json(&self) -> String;

    /// Write [`Tokenizer::to_json`] to `path` (conventionally `DIR/`[`TOKENIZER_FILE`])
    /// atomically: a crash leaves the old file or the new one.
    fn save(&self, path: &Path) -> Result<(), DataError> {
        crate::io::write_atomic(path, self.to_json().as_bytes())
            .map_err(|e| DataError::Invalid(e.to_string()))
    }
}

/// Read a tokenizer saved by [`Tokenizer::save`] or a Hugging Face `tokenizer.json` (byte-level
/// BPE), choosing the implementation by `model.type`.
pub fn load_tokenizer(path: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    let bytes = super::read_maybe_gz(path)?;
    let name = path.display().to_string();
    let text =
        String::from_utf8(bytes).or_else(|e| format_err(&name, format!("not UTF-8 text: {e}")))?;
    tokenizer_from_json(&text, &name)
}

/// The length of a table indexed by `vocab`'s ids: one past the largest id, which must be
/// below the token count (ids run 0..N-1), so a file claiming id 4e9 is refused before a table
/// that large is allocated. `name` names the source in errors.
pub(crate) fn id_table_size(
    name: &str,
    vocab: &std::collections::HashMap<String, u32>,
) -> Result<usize, DataError> {
    let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    if size > vocab.len() {
        return format_err(
            name,
            format!(
                "token id {} in a vocabulary of {} tokens: ids must run from 0 to {}",
                size - 1,
                vocab.len(),
                vocab.len().saturating_sub(1)
            ),
        );
    }
    Ok(size)
}

/// A tokenizer from JSON text (see [`load_tokenizer`]); `name` names the source in errors.
pub fn tokenizer_from_json(text: &str, name: &str) -> Result<Box<dyn Tokenizer>, DataError> {
    let json: serde_json::Value =
        serde_json::from_str(text).or_else(|e| format_err(name, format!("not valid JSON: {e}")))?;
    let kind = json
        .get("model")
        .and_then(|m| m.get("type"))
        .and_then(|t| t.as_str());
    match kind {
        Some("Char") => Ok(Box::new(CharTokenizer::from_json_value(&json, name)?)),
        Some("BPE") if sentencepiece::is_sentencepiece_style(&json) => Ok(Box::new(
            SentencePieceBpe::from_json_value(&json, text, name)?,
        )),
        Some("BPE") => Ok(Box::new(hf::bpe_from_json_value(&json, name)?)),
        Some("WordPiece") => Ok(Box::new(WordPieceTokenizer::from_json_value(&json, name)?)),
        // A BPE tokenizer.json may leave the type out; it then has both vocab and merges.
        None if json.pointer("/model/merges").is_some() => {
            Ok(Box::new(hf::bpe_from_json_value(&json, name)?))
        }
        Some(other) => format_err(
            name,
            format!(
                "model.type {other:?} is not supported (kiln reads \"BPE\", \"WordPiece\" \
                 and \"Char\")"
            ),
        ),
        None => format_err(
            name,
            "no model.type: expected a tokenizer.json with a \"model\" object",
        ),
    }
}
