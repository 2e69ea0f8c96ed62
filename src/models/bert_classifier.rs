//! A sequence classifier on a (pretrained) [`BertEncoder`]: mean pooling over the real tokens,
//! dropout, then one Linear head. Three ways to fine-tune it ([`FineTuneMode`]): everything,
//! LoRA adapters on a frozen encoder, or QLoRA (the same with NF4 base weights).
//!
//! For ids (B, T), attention mask (B, T) (1 = token, 0 = padding) and K classes:
//!
//! ```text
//! h      = bert(ids, mask)                              (B, T, C)
//! pooled = sum_t mask_t h_t / sum_t mask_t              (B, C)
//! logits = dropout(pooled) W^T + b                      W (K, C), b (K)  -> (B, K)
//! loss   = cross_entropy(logits, labels)                labels (B) u32
//! ```
//!
//! Parameter names are those of Hugging Face's `BertForSequenceClassification` with kiln's
//! pooling: `bert.<encoder names>` (see [`super::bert`]) and `classifier.{weight,bias}`; LoRA
//! targets such as `query` select `bert.encoder.layer.N.attention.self.query`.
//!
//! The modes ([`BertClassifier::prepare`]):
//!
//! ```text
//! full   every parameter trains
//! lora   encoder frozen; adapters (r, alpha from the LoraConfig) on its targets; the head trains
//! qlora  as lora, after the base weights of QLORA_QUANTIZE (every encoder Linear) went to NF4
//! ```
//!
//! ```
//! use kiln::{Tensor, nn::{Module, lora::LoraConfig}};
//! use kiln::models::{BertConfig, BertEncoder, bert_classifier::{BertClassifier, FineTuneMode}};
//! let cfg = BertConfig { vocab_size: 20, hidden_size: 8, num_hidden_layers: 1,
//!     num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 8,
//!     type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_dropout_prob: 0.0 };
//! let mut clf = BertClassifier::new(BertEncoder::new(cfg)?, 2)?;
//! clf.prepare(FineTuneMode::Lora, &LoraConfig::new(2, 4.0, &["query", "value"]))?;
//! // Two adapters of 2 x (8 + 8) each, and the head's 2 x 8 + 2.
//! assert_eq!(clf.num_trainable_parameters(), 2 * 2 * 16 + 18);
//! let ids = Tensor::from_slice(&[3u32, 4, 5, 6, 7, 0], &[2, 3])?;
//! let mask = Tensor::from_slice(&[1u32, 1, 1, 1, 1, 0], &[2, 3])?;
//! assert_eq!(clf.logits(&ids, &mask)?.shape(), [2, 2]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::bert::{BertEncoder, mean_pool};
use crate::data::tokenizer::WordPieceTokenizer;
use crate::error::{Result, arg_err, shape_err};
use crate::nn::freeze as transfer;
use crate::nn::lora::{self, LoraConfig, QuantReport};
use crate::nn::{Linear, Module, child_path, dropout, prefixed};
use crate::tensor::{DType, Tensor};

/// The Linear layers whose base weights QLoRA holds in NF4: every Linear of the encoder (a
/// glob over module paths; the head stays f32).
pub const QLORA_QUANTIZE: &str = "bert.encoder.*";

/// How [`BertClassifier::prepare`] sets the model up for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FineTuneMode {
    /// Every parameter trains.
    Full,
    /// Frozen encoder, LoRA adapters on the targeted layers, trainable head.
    Lora,
    /// [`FineTuneMode::Lora`] on NF4 base weights ([`QLORA_QUANTIZE`]).
    QLora,
}

impl FineTuneMode {
    /// All modes, in table order.
    pub const ALL: [FineTuneMode; 3] =
        [FineTuneMode::Full, FineTuneMode::Lora, FineTuneMode::QLora];

    /// `full`, `lora` or `qlora`.
    pub fn name(self) -> &'static str {
        match self {
            FineTuneMode::Full => "full",
            FineTuneMode::Lora => "lora",
            FineTuneMode::QLora => "qlora",
        }
    }

    /// Parse `full`, `lora` or `qlora`.
    pub fn parse(s: &str) -> Result<FineTuneMode> {
        match s {
            "full" => Ok(FineTuneMode::Full),
            "lora" => Ok(FineTuneMode::Lora),
            "qlora" => Ok(FineTuneMode::QLora),
            _ => arg_err(
                "FineTuneMode",
                format!("unknown mode {s:?}; expected full, lora or qlora"),
            ),
        }
    }
}

/// What [`BertClassifier::prepare`] did.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Paths of the layers that got LoRA adapters (none in full mode).
    pub adapted: Vec<String>,
    /// QLoRA's quantisation report (`None` unless QLoRA).
    pub quantized: Option<QuantReport>,
    /// Parameters of the model as loaded, before any was quantised or adapted.
    pub base_parameters: usize,
}

/// Mean-pooled BERT with a Linear head. See the module notes.
#[derive(Debug, Clone)]
pub struct BertClassifier {
    /// The encoder (`bert.*`).
    pub encoder: BertEncoder,
    /// The head (`classifier`), (K, C).
    pub head: Linear,
    dropout: f32,
    training: bool,
}

impl BertClassifier {
    /// A classifier with a fresh head (PyTorch's Linear initialisation) for `num_classes`
    /// classes on `encoder`; dropout before the head is the encoder's `hidden_dropout_prob`.
    /// Training mode follows the encoder's.
    pub fn new(encoder: BertEncoder, num_classes: usize) -> Result<Self> {
        if num_classes < 2 {
            return arg_err(
                "BertClassifier",
                format!("need at least 2 classes, got {num_classes}"),
            );
        }
        let gpu = encoder.word_embeddings.weight.gpu().clone();
        let head = Linear::new_on(&gpu, encoder.config().hidden_size, num_classes, true)?;
        let dropout = encoder.config().hidden_dropout_prob;
        let training = encoder.is_training();
        Ok(BertClassifier {
            encoder,
            head,
            dropout,
            training,
        })
    }

    /// The device the model lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        self.encoder.word_embeddings.weight.gpu()
    }

    /// Number of classes K.
    pub fn num_classes(&self) -> usize {
        self.head.out_features()
    }

    /// Set the model up for `mode` (see the module notes); `lora` names the adapted layers
    /// and r / alpha / dropout (ignored in full mode). Call once, before building the
    /// optimizer over [`BertClassifier::trainable_parameters`].
    pub fn prepare(&mut self, mode: FineTuneMode, lora: &LoraConfig) -> Result<Prepared> {
        let base_parameters = self.num_parameters();
        let mut out = Prepared {
            base_parameters,
            ..Prepared::default()
        };
        match mode {
            FineTuneMode::Full => {
                transfer::unfreeze(&*self, &["*"])?;
            }
            FineTuneMode::Lora | FineTuneMode::QLora => {
                lora.validate()?;
                if mode == FineTuneMode::QLora {
                    let q = LoraConfig {
                        target_modules: vec![QLORA_QUANTIZE.to_string()],
                        ..lora.clone()
                    };
                    out.quantized = Some(lora::quantize_bases(self, &q)?);
                }
                out.adapted = lora::apply_lora(self, lora)?;
                transfer::unfreeze(&*self, &["classifier"])?;
            }
        }
        Ok(out)
    }

    /// The parameters that train (`requires_grad`), by name: what the optimizer gets, so that
    /// frozen weights get no optimizer state.
    pub fn trainable_parameters(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
            .into_iter()
            .filter(|(_, t)| t.requires_grad_flag())
            .collect()
    }

    /// Logits (B, K) of ids (B, T) with attention mask (B, T) (1 = token, 0 = padding).
    pub fn logits(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.encoder.forward_with(ids, None, Some(mask))?; // (B, T, C)
        let pooled = dropout(&mean_pool(&h, mask)?, self.dropout, self.training)?; // (B, C)
        self.head.forward(&pooled)
    }

    /// Mean cross-entropy of the batch against its labels (B) u32.
    pub fn loss(&self, batch: &TextBatch) -> Result<Tensor> {
        let Some(labels) = &batch.labels else {
            return arg_err("BertClassifier::loss", "the batch has no labels");
        };
        self.logits(&batch.ids, &batch.mask)?.cross_entropy(labels)
    }

    /// The most likely class of each row of `batch`, without recording gradients (call
    /// `set_training(false)` first to switch dropout off).
    pub fn predict(&self, batch: &TextBatch) -> Result<Vec<u32>> {
        let _g = crate::no_grad();
        let logits = self.logits(&batch.ids, &batch.mask)?.to_vec::<f32>()?;
        let k = self.num_classes();
        Ok(logits
            .chunks(k)
            .map(|row| {
                let mut best = 0;
                for (j, v) in row.iter().enumerate() {
                    if *v > row[best] {
                        best = j;
                    }
                }
                best as u32
            })
            .collect())
    }
}

impl Module for BertClassifier {
    /// Logits (B, K) of ids (B, T) (u32, i32, or f32 holding whole numbers, as a data loader's
    /// batches do); id [`PAD_ID`] (`[PAD]`) is padding and masked out, so batches padded to
    /// their longest text classify each text as if alone.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        if ids.rank() != 2 {
            return shape_err(
                "BertClassifier",
                format!("ids must be (B, T), got shape {:?}", ids.shape()),
            );
        }
        let f = ids.to_dtype(DType::F32)?;
        let mask = f.gt_scalar(PAD_ID as f32 + 0.5)?.to_dtype(DType::U32)?; // (B, T) 1 = token
        self.logits(&f.to_dtype(DType::U32)?, &mask)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("bert", self.encoder.named_parameters());
        v.extend(prefixed("classifier", self.head.named_parameters()));
        v
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.encoder.set_training(training);
        self.head.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.encoder
            .visit_linears_mut(&child_path(prefix, "bert"), f);
        self.head
            .visit_linears_mut(&child_path(prefix, "classifier"), f);
    }
}

/// The id of `[PAD]` in BERT vocabularies (and MiniLM's): 0.
pub const PAD_ID: u32 = 0;

/// A tokenised batch of sentences on the GPU, padded to its longest.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// Token ids (B, T) u32, `[CLS] ... [SEP]` then `[PAD]` (id 0).
    pub ids: Tensor,
    /// Attention mask (B, T) u32: 1 for a token, 0 for padding.
    pub mask: Tensor,
    /// Class labels (B) u32, if given.
    pub labels: Option<Tensor>,
}

/// The ids of `text` with `[CLS]` / `[SEP]`, cut to `max_len` (>= 2) tokens keeping `[SEP]`:
/// one row of a [`crate::data::token_rows::TokenRows`] dataset.
pub fn encode_ids(tokenizer: &WordPieceTokenizer, text: &str, max_len: usize) -> Vec<u32> {
    let mut ids = tokenizer.encode_with_specials(text);
    if ids.len() > max_len.max(2) {
        let last = ids[ids.len() - 1];
        ids.truncate(max_len.max(2) - 1);
        ids.push(last);
    }
    ids
}

/// Tokenise `texts` with `[CLS]` / `[SEP]`, cut each to `max_len` tokens (keeping `[SEP]`),
/// pad to the longest and upload, with `labels` (one per text) if given.
///
/// ```
/// use kiln::models::{bert_classifier::encode_batch, pretrained::minilm_tokenizer};
/// let tok = minilm_tokenizer()?;
/// let b = encode_batch(&kiln::device()?, &tok, &["A man is eating food.", "Hi"], 5, None)?;
/// assert_eq!(b.ids.to_vec::<u32>()?, [101, 1037, 2158, 2003, 102, 101, 7632, 102, 0, 0]);
/// assert_eq!(b.mask.to_vec::<u32>()?, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn encode_batch<S: AsRef<str>>(
    gpu: &Arc<Gpu>,
    tokenizer: &WordPieceTokenizer,
    texts: &[S],
    max_len: usize,
    labels: Option<&[u32]>,
) -> Result<TextBatch> {
    if texts.is_empty() || max_len < 2 {
        return arg_err(
            "encode_batch",
            format!(
                "need at least one text and max_len >= 2, got {} texts and max_len {max_len}",
                texts.len()
            ),
        );
    }
    if let Some(l) = labels
        && l.len() != texts.len()
    {
        return arg_err(
            "encode_batch",
            format!("{} labels for {} texts", l.len(), texts.len()),
        );
    }
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|s| encode_ids(tokenizer, s.as_ref(), max_len))
        .collect();
    let (b, t) = (rows.len(), rows.iter().map(Vec::len).max().unwrap_or(1));
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0u32; b * t];
    for (r, row) in rows.iter().enumerate() {
        ids[r * t..r * t + row.len()].copy_from_slice(row);
        mask[r * t..r * t + row.len()].fill(1);
    }
    Ok(TextBatch {
        ids: Tensor::from_slice_on(gpu, &ids, &[b, t])?,
        mask: Tensor::from_slice_on(gpu, &mask, &[b, t])?,
        labels: match labels {
            Some(l) => Some(Tensor::from_slice_on(gpu, l, &[b])?),
            None => None,
        },
    })
}
