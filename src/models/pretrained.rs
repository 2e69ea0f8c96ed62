//! Pretrained Hugging Face BERT encoders (such as all-MiniLM-L6-v2) loaded into
//! [`BertEncoder`], and sentence embeddings from them.
//!
//! A model directory holds what `transformers` / `sentence-transformers` save:
//!
//! ```text
//! config.json                 BertConfig fields (hidden_size, num_hidden_layers, ...)
//! model.safetensors           f32 (or f16) tensors with BertModel names (see models::bert)
//! tokenizer.json | vocab.txt  the WordPiece tokenizer (the embedded MiniLM vocabulary if neither)
//! sentence_bert_config.json   optional: max_seq_length (longer inputs are cut; else 512)
//! ```
//!
//! Tensor names may carry a `bert.` prefix (as in `BertForMaskedLM` checkpoints); it is
//! stripped. `pooler.*` (BERT's `[CLS]` pooler, unused by mean pooling) and
//! `embeddings.position_ids` (an int64 buffer of 0..511) are skipped. Any other name the
//! encoder lacks, and any parameter missing or of the wrong shape, is an error listing them all.
//!
//! A sentence embedding is the mean of the last hidden states over the real tokens
//! (`[CLS] ... [SEP]`, padding excluded), L2-normalised:
//!
//! ```text
//! e = normalize( sum_t mask_t h_t / sum_t mask_t )        h (B, T, C), mask (B, T) -> e (B, C)
//! ```
//!
//! Sentences are embedded in batches padded to the longest one, with the padding masked out of
//! attention and of the mean, so a sentence gets the same embedding alone or in a batch.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_kernels::Gpu;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::bert::{BertConfig, BertEncoder, l2_normalize, mean_pool};
use crate::data::tokenizer::WordPieceTokenizer;
use crate::error::{Error, Result, io_err};
use crate::nn::Module;
use crate::tensor::Tensor;

/// The env var that names an all-MiniLM-L6-v2 directory for tests and examples.
pub const MINILM_ENV: &str = "KILN_MINILM_DIR";

/// Where `scripts/fetch-minilm.sh` puts all-MiniLM-L6-v2, relative to the project root.
pub const MINILM_DEFAULT_DIR: &str = "models/all-MiniLM-L6-v2";

/// BERT's uncased WordPiece vocabulary (as in all-MiniLM-L6-v2), gzipped.
static MINILM_VOCAB_GZ: &[u8] = include_bytes!("../../data/tokenizers/minilm/vocab.txt.gz");

/// The uncased WordPiece tokenizer of all-MiniLM-L6-v2 (and `bert-base-uncased`), from the
/// vocabulary embedded in kiln.
///
/// ```
/// let t = kiln::models::pretrained::minilm_tokenizer()?;
/// assert_eq!(t.encode_with_specials("A man is eating food."),
///            [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn minilm_tokenizer() -> Result<WordPieceTokenizer> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(MINILM_VOCAB_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Config(format!("embedded MiniLM vocab.txt.gz: {e}")))?;
    Ok(WordPieceTokenizer::from_vocab_txt(&text, true)?)
}

/// The fields of a Hugging Face `config.json` that a [`BertEncoder`] needs.
#[derive(Debug, Deserialize)]
struct HfBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_types")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default)]
    hidden_dropout_prob: f32,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_pos_type")]
    position_embedding_type: String,
}

fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos_type() -> String {
    "absolute".into()
}

/// Read a Hugging Face BERT `config.json` into a [`BertConfig`]. Only `hidden_act` `gelu`
/// (the erf form) and absolute positions are supported.
pub fn read_bert_config(path: &Path) -> Result<BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let c: HfBertConfig = serde_json::from_str(&text).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: format!("not a BERT config.json: {e}"),
    })?;
    if c.hidden_act != "gelu" || c.position_embedding_type != "absolute" {
        return Err(Error::Config(format!(
            "{}: hidden_act {:?} / position_embedding_type {:?} not supported (need \"gelu\" \
             and \"absolute\")",
            path.display(),
            c.hidden_act,
            c.position_embedding_type
        )));
    }
    Ok(BertConfig {
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        max_position_embeddings: c.max_position_embeddings,
        type_vocab_size: c.type_vocab_size,
        layer_norm_eps: c.layer_norm_eps,
        hidden_dropout_prob: c.hidden_dropout_prob,
    })
}

/// A host tensor read from a Hugging Face safetensors file: shape and f32 values.
pub type HfTensor = (Vec<usize>, Vec<f32>);

/// Names in a BERT checkpoint that kiln's encoder does not use: skipped on load.
fn is_skipped(name: &str) -> bool {
    name.starts_with("pooler.") || name == "embeddings.position_ids"
}

/// Read the tensors of a Hugging Face BERT `model.safetensors` as f32 (f16 and bf16 are
/// widened), with any `bert.` prefix stripped and the unused names (`pooler.*`,
/// `embeddings.position_ids`) skipped. Returns the tensors and the skipped names.
pub fn read_hf_safetensors(path: &Path) -> Result<(BTreeMap<String, HfTensor>, Vec<String>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let bad = |msg: String| Error::Checkpoint {
        path: path.display().to_string(),
        msg,
    };
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let mut out = BTreeMap::new();
    let mut skipped = Vec::new();
    for (name, view) in st.tensors() {
        let short = name.strip_prefix("bert.").unwrap_or(&name).to_string();
        if is_skipped(&short) {
            skipped.push(name);
            continue;
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytemuck::pod_collect_to_vec(data),
            Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(data)
                .into_iter()
                .map(f32::from)
                .collect(),
            Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(data)
                .into_iter()
                .map(f32::from)
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor {name} has dtype {other:?}; expected F32, F16 or BF16"
                )));
            }
        };
        out.insert(short, (view.shape().to_vec(), values));
    }
    Ok((out, skipped))
}

impl BertEncoder {
    /// Load a pretrained encoder from a Hugging Face model directory (`config.json` and
    /// `model.safetensors`; see the module notes) onto the default device, in eval mode
    /// (no dropout).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        Self::from_hf_dir_on(&crate::device()?, dir)
    }

    /// [`BertEncoder::from_hf_dir`] on `gpu`.
    pub fn from_hf_dir_on(gpu: &Arc<Gpu>, dir: &Path) -> Result<Self> {
        let cfg = read_bert_config(&require(dir, "config.json")?)?;
        let weights = require(dir, "model.safetensors")?;
        let (tensors, _skipped) = read_hf_safetensors(&weights)?;
        let mut enc = BertEncoder::new_on(gpu, cfg)?;
        load_named(&enc.named_parameters(), &tensors, &weights, "BERT encoder")?;
        enc.set_training(false);
        Ok(enc)
    }
}

/// Copy `tensors` into `params` by name, after checking that every parameter is there with
/// its shape and no tensor is left over; the error (about `path`, the `model` of config.json)
/// lists every problem.
pub(crate) fn load_named(
    params: &[(String, Tensor)],
    tensors: &BTreeMap<String, HfTensor>,
    path: &Path,
    model: &str,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, t) in params {
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some((shape, _)) if shape != t.shape() => {
                misshaped.push(format!("{name}: file {shape:?}, model {:?}", t.shape()))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<&String> = tensors
        .keys()
        .filter(|k| !params.iter().any(|(n, _)| n == *k))
        .collect();
    if !missing.is_empty() || !misshaped.is_empty() || !unexpected.is_empty() {
        let mut msg = format!("tensors do not match the {model} in config.json:");
        if !missing.is_empty() {
            msg += &format!("\n  missing: {}", missing.join(", "));
        }
        if !unexpected.is_empty() {
            let names: Vec<&str> = unexpected.iter().map(|s| s.as_str()).collect();
            msg += &format!("\n  unexpected: {}", names.join(", "));
        }
        if !misshaped.is_empty() {
            msg += &format!("\n  mis-shaped: {}", misshaped.join("; "));
        }
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            msg,
        });
    }
    for (name, t) in params {
        let (shape, values) = &tensors[name];
        t.copy_from(&Tensor::from_slice_on(t.gpu(), values, shape)?)?;
    }
    Ok(())
}

/// `dir/file`, or an error saying the directory lacks it and how to fetch MiniLM.
fn require(dir: &Path, file: &str) -> Result<PathBuf> {
    let p = dir.join(file);
    if p.is_file() {
        return Ok(p);
    }
    Err(Error::Config(format!(
        "{}: no {file} there; a model directory needs config.json, model.safetensors and \
         tokenizer.json or vocab.txt (for all-MiniLM-L6-v2 run scripts/fetch-minilm.sh, which \
         puts them in {MINILM_DEFAULT_DIR})",
        dir.display()
    )))
}

/// A pretrained BERT encoder with its WordPiece tokenizer, giving sentence embeddings
/// (see the module notes).
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    /// The encoder, in eval mode.
    pub encoder: BertEncoder,
    /// Its tokenizer.
    pub tokenizer: WordPieceTokenizer,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer sentences are cut.
    pub max_seq_length: usize,
}

#[derive(Debug, Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

impl SentenceEncoder {
    /// Load a model directory (see the module notes) onto the default device.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        Self::from_hf_dir_on(&crate::device()?, dir)
    }

    /// [`SentenceEncoder::from_hf_dir`] on `gpu`.
    pub fn from_hf_dir_on(gpu: &Arc<Gpu>, dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "{}: not a directory; for all-MiniLM-L6-v2 run scripts/fetch-minilm.sh \
                 (it fills {MINILM_DEFAULT_DIR})",
                dir.display()
            )));
        }
        let encoder = BertEncoder::from_hf_dir_on(gpu, dir)?;
        let tokenizer = load_wordpiece(dir)?;
        let positions = encoder.config().max_position_embeddings;
        let sbert = dir.join("sentence_bert_config.json");
        let max = match std::fs::read_to_string(&sbert) {
            Ok(text) => serde_json::from_str::<SbertConfig>(&text)
                .map_err(|e| Error::Io {
                    path: sbert.display().to_string(),
                    msg: e.to_string(),
                })?
                .max_seq_length
                .unwrap_or(positions),
            Err(_) => positions,
        };
        Ok(SentenceEncoder {
            encoder,
            tokenizer,
            max_seq_length: max.clamp(2, positions),
        })
    }

    /// The ids the encoder sees for `sentence`: `[CLS]`, its tokens, `[SEP]`, cut to
    /// [`max_seq_length`](Self::max_seq_length) (keeping the final `[SEP]`).
    pub fn tokenize(&self, sentence: &str) -> Vec<u32> {
        let mut ids = self.tokenizer.encode_with_specials(sentence);
        if ids.len() > self.max_seq_length {
            let last = ids[ids.len() - 1];
            ids.truncate(self.max_seq_length - 1);
            ids.push(last);
        }
        ids
    }

    /// L2-normalised mean-pooled embeddings, one (C) vector per sentence, computed in batches
    /// of up to 32 sentences padded to their longest.
    pub fn embed<S: AsRef<str>>(&self, sentences: &[S]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(sentences.len());
        let gpu = self.encoder.word_embeddings.weight.gpu().clone();
        for chunk in sentences.chunks(32) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|s| self.tokenize(s.as_ref())).collect();
            let (b, t) = (ids.len(), ids.iter().map(Vec::len).max().unwrap_or(1));
            let mut flat = vec![0u32; b * t]; // padding id 0 = [PAD]
            let mut mask = vec![0u32; b * t];
            for (r, row) in ids.iter().enumerate() {
                flat[r * t..r * t + row.len()].copy_from_slice(row);
                mask[r * t..r * t + row.len()].fill(1);
            }
            let ids = Tensor::from_slice_on(&gpu, &flat, &[b, t])?;
            let mask = Tensor::from_slice_on(&gpu, &mask, &[b, t])?;
            let h = self.encoder.forward_with(&ids, None, Some(&mask))?; // (B, T, C)
            let e = l2_normalize(&mean_pool(&h, &mask)?)?.to_vec::<f32>()?; // (B, C)
            let c = e.len() / b;
            out.extend(e.chunks(c).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// The WordPiece tokenizer of a model directory: `tokenizer.json`, else `vocab.txt` (uncased),
/// else the embedded MiniLM vocabulary.
pub fn load_wordpiece(dir: &Path) -> Result<WordPieceTokenizer> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        let text = std::fs::read_to_string(&json).map_err(|e| io_err(&json, e))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Io {
            path: json.display().to_string(),
            msg: format!("not JSON: {e}"),
        })?;
        return Ok(WordPieceTokenizer::from_json_value(
            &value,
            &json.display().to_string(),
        )?);
    }
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        return Ok(WordPieceTokenizer::load_vocab_txt(&vocab, true)?);
    }
    minilm_tokenizer()
}

/// Cosine similarity of two vectors (0 when either is all zeros).
///
/// ```
/// let c = kiln::models::pretrained::cosine(&[1.0, 0.0], &[1.0, 1.0]);
/// assert!((c - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
/// ```
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}
