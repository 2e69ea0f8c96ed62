//! Hugging Face model directories: causal language models that `transformers` saved
//! (`save_pretrained`), loaded onto kiln's [`Gpt`], and kiln's GPTs written back in their layout.
//!
//! A directory holds:
//!
//! ```text
//! config.json                      architectures[0] picks the builder; its fields size the model
//! model.safetensors                the weights (f32, f16 or bf16; widened to f32), or
//! model.safetensors.index.json     {"weight_map": {tensor name: shard file}} with the shards
//! tokenizer.json                   optional: the tokenizer (byte-level BPE, ...)
//! tokenizer_config.json            optional: chat_template and the special tokens
//! ```
//!
//! **Architectures.** [`load`] reads `architectures[0]` of config.json and hands the config and
//! the weights to that architecture's [`BuildFn`]:
//!
//! | `architectures[0]` | builder |
//! | --- | --- |
//! | `GPT2LMHeadModel` | [`gpt2::build`] |
//! | `LlamaForCausalLM` | [`llama::build`] |
//!
//! A builder for another architecture (the Llama family: `LlamaForCausalLM`) is one function of
//! type [`BuildFn`] in its own file of this folder and one arm in [`builder`]: it reads its fields
//! with [`HfConfig`]'s getters (a missing field is an error naming config.json and the field),
//! takes each tensor with [`HfWeights::take`] (a missing or mis-shaped tensor is an error naming
//! the file and the tensor), and returns the [`Gpt`]; [`load`] then refuses any tensor the
//! builder left untaken.

pub mod gpt2;
pub mod llama;
pub mod peft;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_kernels::Gpu;
use serde_json::Value;

use super::gpt::Gpt;
use super::pretrained::{HfTensor, read_hf_safetensors};
use crate::data::tokenizer::{Tokenizer, load_tokenizer};
use crate::error::{Error, Result, io_err};
use crate::nn::Module;

/// The architectures [`load`] builds (`architectures[0]` of config.json).
pub const ARCHITECTURES: &[&str] = &["GPT2LMHeadModel", "LlamaForCausalLM"];

/// An architecture's builder: its config.json and weights in, a kiln [`Gpt`] out (eval mode).
/// It must take every tensor it uses from the weights ([`HfWeights::take`]) and may drop the
/// buffers it knows to be unused ([`HfWeights::drop_where`]); what is left is refused.
pub type BuildFn = fn(&Arc<Gpu>, &HfConfig, &mut HfWeights) -> Result<Gpt>;

/// The builder of an architecture name, `None` for the ones kiln does not build.
pub fn builder(architecture: &str) -> Option<BuildFn> {
    match architecture {
        "GPT2LMHeadModel" => Some(gpt2::build),
        "LlamaForCausalLM" => Some(llama::build),
        _ => None,
    }
}

/// A parsed `config.json`, with getters whose errors name the file and the field.
#[derive(Debug, Clone)]
pub struct HfConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// The JSON object.
    pub json: Value,
}

impl HfConfig {
    /// Read `dir/config.json`.
    pub fn read(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "{}: not a directory (a Hugging Face model directory holds config.json and \
                 model.safetensors)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: format!("not JSON: {e}"),
        })?;
        if !json.is_object() {
            return Err(Error::Io {
                path: path.display().to_string(),
                msg: "expected a JSON object".into(),
            });
        }
        Ok(HfConfig { path, json })
    }

    fn field_err(&self, field: &str, msg: &str) -> Error {
        Error::Config(format!("{}: field {field}: {msg}", self.path.display()))
    }

    /// The field, `None` when absent or null.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    /// `architectures[0]`.
    pub fn architecture(&self) -> Result<String> {
        let a = self.get("architectures").ok_or_else(|| {
            self.field_err("architectures", "missing (e.g. [\"GPT2LMHeadModel\"])")
        })?;
        a.get(0)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.field_err("architectures", "expected a list of names"))
    }

    /// A required positive integer.
    pub fn usize(&self, field: &str) -> Result<usize> {
        let v = self
            .get(field)
            .ok_or_else(|| self.field_err(field, "missing"))?;
        match v.as_u64() {
            Some(n) if n > 0 => Ok(n as usize),
            _ => Err(self.field_err(field, &format!("expected a positive integer, got {v}"))),
        }
    }

    /// An optional positive integer (absent or null: `default`).
    pub fn usize_or(&self, field: &str, default: usize) -> Result<usize> {
        match self.get(field) {
            None => Ok(default),
            Some(_) => self.usize(field),
        }
    }

    /// An optional number (absent or null: `default`).
    pub fn f32_or(&self, field: &str, default: f32) -> Result<f32> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| self.field_err(field, &format!("expected a number, got {v}"))),
        }
    }

    /// An optional boolean (absent or null: `default`).
    pub fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.field_err(field, &format!("expected true or false, got {v}"))),
        }
    }

    /// An optional string (absent or null: `default`).
    pub fn str_or(&self, field: &str, default: &str) -> Result<String> {
        match self.get(field) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.field_err(field, &format!("expected a string, got {v}"))),
        }
    }

    /// An error about `field`'s value (the builder found it unsupported).
    pub fn unsupported(&self, field: &str, msg: &str) -> Error {
        self.field_err(field, msg)
    }
}

/// The tensors of a directory's safetensors file(s) as f32, by name, each remembering its file.
#[derive(Debug, Clone, Default)]
pub struct HfWeights {
    tensors: BTreeMap<String, (HfTensor, PathBuf)>,
    /// The file that names the weights: model.safetensors or the shard index.
    pub source: PathBuf,
}

impl HfWeights {
    /// Read `dir/model.safetensors`, else the shards `dir/model.safetensors.index.json` lists.
    pub fn read(dir: &Path) -> Result<HfWeights> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut tensors = BTreeMap::new();
        if single.is_file() {
            for (name, t) in read_hf_safetensors(&single)?.0 {
                tensors.insert(name, (t, single.clone()));
            }
            return Ok(HfWeights {
                tensors,
                source: single,
            });
        }
        if !index.is_file() {
            return Err(Error::Config(format!(
                "{}: no model.safetensors and no model.safetensors.index.json (kiln reads \
                 safetensors weights; re-save PyTorch .bin files with save_pretrained)",
                dir.display()
            )));
        }
        let bad = |msg: String| Error::Checkpoint {
            path: index.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(&index).map_err(|e| io_err(&index, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("field weight_map: missing (tensor name -> shard file)".into()))?;
        let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("weight_map.{name}: expected a file name")))?;
            shards.entry(file).or_default().push(name);
        }
        for (file, names) in shards {
            let path = dir.join(file);
            let mut got = read_hf_safetensors(&path)?.0;
            for name in names {
                let t = got.remove(name).ok_or_else(|| Error::Checkpoint {
                    path: path.display().to_string(),
                    msg: format!("tensor {name} is missing (the index places it in this shard)"),
                })?;
                tensors.insert(name.to_string(), (t, path.clone()));
            }
        }
        Ok(HfWeights {
            tensors,
            source: index,
        })
    }

    /// Whether a tensor of that name is there (not yet taken).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Remove and return tensor `name` (row-major f32 values), which must have `shape`; the
    /// error names the file and the tensor.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(((got, values), file)) = self.tensors.remove(name) else {
            return Err(Error::Checkpoint {
                path: self.source.display().to_string(),
                msg: format!("tensor {name} is missing (config.json's model needs it: {shape:?})"),
            });
        };
        if got != shape {
            return Err(Error::Checkpoint {
                path: file.display().to_string(),
                msg: format!(
                    "tensor {name} has shape {got:?}, but config.json's model needs {shape:?}"
                ),
            });
        }
        Ok(values)
    }

    /// Drop the tensors whose names satisfy `unused` (buffers a builder knows it does not need).
    pub fn drop_where(&mut self, unused: impl Fn(&str) -> bool) {
        self.tensors.retain(|n, _| !unused(n));
    }

    /// The names not taken yet.
    pub fn remaining(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}

/// The fields of `tokenizer_config.json` kiln uses; every one optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    /// The Jinja chat template.
    pub chat_template: Option<String>,
    /// `bos_token`, `eos_token`, `pad_token`, `unk_token` (strings, or objects' `content`).
    pub special: BTreeMap<String, String>,
}

impl TokenizerConfig {
    /// Read `dir/tokenizer_config.json` (the default when there is none).
    pub fn read(dir: &Path) -> Result<TokenizerConfig> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(TokenizerConfig::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: format!("not JSON: {e}"),
        })?;
        let mut special = BTreeMap::new();
        for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            let v = json.get(key);
            let s = v
                .and_then(Value::as_str)
                .or_else(|| v.and_then(|o| o.get("content")).and_then(Value::as_str));
            if let Some(s) = s {
                special.insert(key.to_string(), s.to_string());
            }
        }
        Ok(TokenizerConfig {
            chat_template: json
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            special,
        })
    }
}

/// A loaded Hugging Face causal language model.
pub struct HfModel {
    /// `architectures[0]` of its config.json.
    pub architecture: String,
    /// The network, in eval mode.
    pub gpt: Gpt,
    /// Its tokenizer.json, when the directory has one.
    pub tokenizer: Option<Arc<dyn Tokenizer>>,
    /// Its tokenizer_config.json.
    pub tokenizer_config: TokenizerConfig,
}

/// Whether `dir` looks like a Hugging Face model directory (it holds config.json).
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// Load the model directory `dir` (see the module notes) onto the default device.
pub fn load(dir: &Path) -> Result<HfModel> {
    load_on(&crate::device()?, dir)
}

/// [`load`] on `gpu`.
pub fn load_on(gpu: &Arc<Gpu>, dir: &Path) -> Result<HfModel> {
    let cfg = HfConfig::read(dir)?;
    let architecture = cfg.architecture()?;
    let build = builder(&architecture).ok_or_else(|| {
        cfg.unsupported(
            "architectures",
            &format!(
                "{architecture:?} is not an architecture kiln loads (it loads {})",
                ARCHITECTURES.join(", ")
            ),
        )
    })?;
    let mut weights = HfWeights::read(dir)?;
    let mut gpt = {
        let _g = crate::no_grad();
        build(gpu, &cfg, &mut weights)?
    };
    let left = weights.remaining();
    if !left.is_empty() {
        return Err(Error::Checkpoint {
            path: weights.source.display().to_string(),
            msg: format!(
                "{} tensor(s) that a {architecture} of this config.json has no place for: {}",
                left.len(),
                left.join(", ")
            ),
        });
    }
    gpt.set_training(false);
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(Arc::from(load_tokenizer(&tok_path)?))
    } else {
        None
    };
    Ok(HfModel {
        architecture,
        gpt,
        tokenizer,
        tokenizer_config: TokenizerConfig::read(dir)?,
    })
}

/// `values` of a row-major (rows, cols) matrix, transposed to (cols, rows).
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}
