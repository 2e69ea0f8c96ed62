//! Text data for the language models (`--model gpt|lstm|gru|rnn`): read the corpus, tokenize
//! it, cut it by position into train / validation / test windows.
//!
//! The corpus is the embedded Shakespeare slice (`data = "shakespeare"`, the default) or any
//! UTF-8 file (`--text FILE`). Its tokens are split by position, never shuffled (neighbouring
//! windows overlap in text, so a shuffled split would leak): the first part trains, then
//! `val_fraction` of the tokens validate and the last `test_fraction` test. Each part is cut
//! into side-by-side windows of `context` tokens (see [`crate::data::text`]).
//!
//! The tokenizer travels with the model: checkpoints carry it as metadata [`TOKENIZER_META`]
//! (its JSON, or `gpt2` for GPT-2's embedded one) and the run directory as `tokenizer.json`, so
//! `kiln generate` and `kiln eval` encode text exactly as training did.

use std::path::Path;
use std::sync::Arc;

use super::spec::{PreparedData, RunSpec};
use crate::data::text::{self, TextOptions, TextSplit};
use crate::data::tokenizer::{self, BpeTokenizer, CharTokenizer, Tokenizer};
use crate::error::{Error, Result};
use crate::models::ModelSpec;
use crate::train::Task;

/// Checkpoint metadata key of the tokenizer: its JSON, or `gpt2`.
pub const TOKENIZER_META: &str = "tokenizer";

/// Tokens per window when the spec names no `context`.
pub const DEFAULT_CONTEXT: usize = 64;

/// What a text run knows beyond its windows.
#[derive(Debug, Clone)]
pub struct TextInfo {
    /// The tokenizer of the corpus.
    pub tokenizer: Arc<dyn Tokenizer>,
    /// Cross-entropy (nats per token) of the training-set unigram frequencies on the validation
    /// tokens: the loss of a model that ignores the context.
    pub unigram_baseline: Option<f64>,
    /// T, tokens per window.
    pub context: usize,
}

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::Config(msg))
}

/// The corpus text and a label for messages.
fn read_corpus(spec: &RunSpec) -> Result<(String, String)> {
    match spec.data.as_str() {
        "shakespeare" => Ok((
            text::shakespeare()?,
            "shakespeare (embedded, Project Gutenberg)".into(),
        )),
        "digits" | "fashion-mnist" => bad(format!(
            "model {} trains on text, not on {}: use the embedded corpus (data = \
             \"shakespeare\", the default) or --text FILE",
            spec.model, spec.data
        )),
        path => {
            let p = Path::new(path);
            let bytes = std::fs::read(p)
                .or_else(|e| bad(format!("--text {path}: cannot read the file ({e})")))?;
            let text = String::from_utf8(bytes)
                .or_else(|e| bad(format!("--text {path}: not UTF-8 text ({e})")))?;
            if text.trim().is_empty() {
                return bad(format!("--text {path}: the file is empty"));
            }
            Ok((text, path.to_string()))
        }
    }
}

/// The tokenizer `spec.tokenizer` names, trained on `corpus` where it learns a vocabulary.
pub fn build_tokenizer(spec: &RunSpec, corpus: &str) -> Result<Arc<dyn Tokenizer>> {
    Ok(match spec.tokenizer.as_str() {
        "char" => Arc::new(CharTokenizer::train(corpus)),
        "bpe" => Arc::new(BpeTokenizer::train(corpus, spec.bpe_vocab, 2)?),
        "gpt2" => Arc::new(BpeTokenizer::gpt2()?),
        path if Path::new(path).is_file() => Arc::from(tokenizer::load_tokenizer(Path::new(path))?),
        other => {
            return bad(format!(
                "--tokenizer {other:?}: use char, bpe, gpt2 or the path of a tokenizer.json"
            ));
        }
    })
}

/// The checkpoint metadata that restores `tok` ([`TOKENIZER_META`]).
pub fn tokenizer_metadata(spec: &RunSpec, tok: &dyn Tokenizer) -> String {
    if spec.tokenizer == "gpt2" {
        "gpt2".into() // 1 MB of JSON in every checkpoint otherwise; it is embedded in kiln
    } else {
        tok.to_json()
    }
}

/// The tokenizer a checkpoint's [`TOKENIZER_META`] holds.
pub fn tokenizer_from_metadata(meta: &str, name: &str) -> Result<Arc<dyn Tokenizer>> {
    if meta == "gpt2" {
        return Ok(Arc::new(BpeTokenizer::gpt2()?));
    }
    Ok(Arc::from(tokenizer::tokenizer_from_json(meta, name)?))
}

/// Read, tokenize (with `tokenizer`, or the one the spec names) and split the corpus.
pub fn load_text(spec: &RunSpec, tokenizer: Option<Arc<dyn Tokenizer>>) -> Result<PreparedData> {
    let (corpus, label) = read_corpus(spec)?;
    let tok = match tokenizer {
        Some(t) => t,
        None => build_tokenizer(spec, &corpus)?,
    };
    let context = spec.context.unwrap_or(DEFAULT_CONTEXT);
    let vocab = tok.vocab_size();
    let ids = tok.encode(&corpus);
    let n = ids.len();
    let short = |part: &str, e: String| {
        Error::Config(format!(
            "{label}: {n} tokens are too few for {part} with context {context} (lower \
             --context, or give a longer text): {e}"
        ))
    };
    // Test = the last test_fraction; validation just before it; training the rest.
    let opts = |validation: f64| TextOptions {
        context,
        stride: None,
        validation,
    };
    let outer = text::text_split(ids, vocab, &opts(spec.test_fraction))
        .map_err(|e| short("training", e.to_string()))?;
    let inner_fraction = spec.val_fraction / (1.0 - spec.test_fraction).max(1e-9);
    let inner: TextSplit =
        text::text_split(outer.train.tokens().to_vec(), vocab, &opts(inner_fraction))
            .map_err(|e| short("training", e.to_string()))?;
    use crate::data::Dataset;
    for (part, d) in [
        ("validation", &inner.validation),
        ("test", &outer.validation),
    ] {
        if d.is_empty() {
            return Err(short(
                part,
                format!(
                    "the {part} part has {} tokens and needs {}",
                    d.tokens().len(),
                    context + 1
                ),
            ));
        }
    }
    let baseline = inner.unigram_baseline();
    let class_names: Vec<String> = (0..vocab as u32)
        .map(|i| {
            tok.id_to_token(i)
                .map_or_else(|| i.to_string(), str::to_string)
        })
        .collect();
    let report = format!(
        "{label}: {} characters -> {} tokens ({} tokenizer, vocabulary {vocab}); windows of \
         {context}: {} train / {} val / {} test",
        crate::show::digits(corpus.chars().count()),
        crate::show::digits(n),
        tok.kind(),
        inner.train.len(),
        inner.validation.len(),
        outer.validation.len()
    );
    Ok(PreparedData {
        train: Arc::new(inner.train),
        val: Arc::new(inner.validation),
        test: Arc::new(outer.validation),
        task: Task::Classification { class_names },
        input: context,
        output: vocab,
        preprocessor: None,
        report,
        image: None,
        image_prep: None,
        unlabeled: None,
        hidden_labels: None,
        text: Some(TextInfo {
            tokenizer: tok,
            unigram_baseline: baseline,
            context,
        }),
    })
}

/// `model` with the spec's language-model settings (`layers`, `heads`, `width`, `dropout`)
/// applied; an error when one is set for a model it does not fit.
pub fn apply_overrides(spec: &RunSpec, model: ModelSpec) -> Result<ModelSpec> {
    let mut m = model;
    match &mut m {
        ModelSpec::Gpt {
            n_layer,
            n_head,
            d_model,
            dropout,
            ..
        } => {
            *n_layer = spec.layers.unwrap_or(*n_layer);
            *n_head = spec.heads.unwrap_or(*n_head);
            *d_model = spec.width.unwrap_or(*d_model);
            *dropout = spec.dropout.unwrap_or(*dropout);
            if *n_layer == 0 || *n_head == 0 || *d_model == 0 || *d_model % *n_head != 0 {
                return bad(format!(
                    "model gpt: --layers {n_layer}, --heads {n_head}, --width {d_model}: layers \
                     and heads must be at least 1 and the width a multiple of the heads"
                ));
            }
        }
        ModelSpec::Rnn {
            num_layers,
            hidden_size,
            dropout,
            ..
        } => {
            if spec.heads.is_some() {
                return bad(format!("--heads applies to gpt, not to {}", spec.model));
            }
            *num_layers = spec.layers.unwrap_or(*num_layers);
            *hidden_size = spec.width.unwrap_or(*hidden_size);
            *dropout = spec.dropout.unwrap_or(*dropout);
            if *num_layers == 0 || *hidden_size == 0 {
                return bad(format!(
                    "model {}: --layers and --width must be at least 1",
                    spec.model
                ));
            }
        }
        other => {
            let set = spec.layers.is_some()
                || spec.heads.is_some()
                || spec.width.is_some()
                || spec.dropout.is_some()
                || spec.context.is_some();
            if set {
                return bad(format!(
                    "--layers, --heads, --width, --dropout and --context apply to the language \
                     models (gpt, lstm, gru, rnn), not to {}",
                    other.name()
                ));
            }
        }
    }
    if let Some(p) = spec.dropout {
        if !(0.0..1.0).contains(&p) {
            return bad(format!("--dropout {p}: must be in [0, 1)"));
        }
    }
    Ok(m)
}
