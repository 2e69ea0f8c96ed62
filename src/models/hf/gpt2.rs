//! GPT-2 (`GPT2LMHeadModel`) in both directions: a Hugging Face GPT-2 directory onto kiln's
//! [`Gpt`] ([`build`]) and a kiln GPT with learned positions written as one ([`export`]).
//!
//! GPT-2 is kiln's GPT with learned positions: pre-norm blocks, LayerNorm, an MLP of 4 C with
//! tanh GELU (`activation_function` `gelu_new`), attention scaled by 1 / sqrt(Dh). Its linear
//! layers are `Conv1D`s, `y = x W + b` with W stored (in, out), the transpose of kiln's
//! `Linear` (out, in); queries, keys and values are one fused `c_attn` (C, 3 C):
//!
//! | Hugging Face (`transformer.` prefix) | shape | kiln | shape |
//! | --- | --- | --- | --- |
//! | `wte.weight` | (V, C) | `tok_emb.weight` | (V, C) |
//! | `wpe.weight` | (P, C) | `pos_emb.weight` | (P, C) |
//! | `h.N.ln_1.{weight,bias}` | (C) | `blocks.N.ln1.*` | (C) |
//! | `h.N.attn.c_attn.weight` | (C, 3C) | `blocks.N.attn.{q,k,v}_proj.weight` | 3 x (C, C), columns split, transposed |
//! | `h.N.attn.c_attn.bias` | (3C) | `blocks.N.attn.{q,k,v}_proj.bias` | 3 x (C) |
//! | `h.N.attn.c_proj.weight` | (C, C) | `blocks.N.attn.o_proj.weight` | transposed |
//! | `h.N.ln_2.*`, `h.N.mlp.c_fc.*`, `h.N.mlp.c_proj.*` | | `blocks.N.ln2.*`, `mlp.fc1.*`, `mlp.fc2.*` | weights transposed |
//! | `ln_f.*` | (C) | `ln_f.*` | (C) |
//! | `lm_head.weight` (absent when tied) | (V, C) | `lm_head.weight` | (V, C) |
//!
//! With `tie_word_embeddings` (GPT-2's default) kiln's head is a copy of `wte` (kiln's GPT has
//! its own head); an export writes `tie_word_embeddings: false` and the head, unless the two
//! are equal. The `attn.bias` / `attn.masked_bias` buffers of older checkpoints (the causal
//! mask) are dropped. Checkpoints of `GPT2Model` (names without `transformer.`) load too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_kernels::Gpu;
use serde_json::json;

use super::peft::Part;
use super::{HfConfig, HfWeights, transpose};
use crate::data::tokenizer::{ENDOFTEXT, Tokenizer};
use crate::error::{Error, Result};
use crate::io::safetensors::{HostTensor, write};
use crate::models::gpt::{Gpt, GptConfig};
use crate::nn::transformer::{FeedForward, Norm};
use crate::nn::{LayerNorm, Module};
use crate::ops::bias_gelu::GeluForm;
use crate::tensor::Tensor;

/// The parameters of kiln's [`Gpt`] and where they sit in a GPT-2 file: `(kiln name, HF name
/// without the prefix, Conv1D-transposed)`, the fused `c_attn` left out (see [`c_attn_parts`]).
fn plain_names(n_layer: usize) -> Vec<(String, String, bool)> {
    let mut v = vec![
        ("tok_emb.weight".into(), "wte.weight".into(), false),
        ("pos_emb.weight".into(), "wpe.weight".into(), false),
    ];
    for i in 0..n_layer {
        let (k, h) = (format!("blocks.{i}."), format!("h.{i}."));
        for (kn, hn, t) in [
            ("ln1.weight", "ln_1.weight", false),
            ("ln1.bias", "ln_1.bias", false),
            ("attn.o_proj.weight", "attn.c_proj.weight", true),
            ("attn.o_proj.bias", "attn.c_proj.bias", false),
            ("ln2.weight", "ln_2.weight", false),
            ("ln2.bias", "ln_2.bias", false),
            ("mlp.fc1.weight", "mlp.c_fc.weight", true),
            ("mlp.fc1.bias", "mlp.c_fc.bias", false),
            ("mlp.fc2.weight", "mlp.c_proj.weight", true),
            ("mlp.fc2.bias", "mlp.c_proj.bias", false),
        ] {
            v.push((format!("{k}{kn}"), format!("{h}{hn}"), t));
        }
    }
    v.push(("ln_f.weight".into(), "ln_f.weight".into(), false));
    v.push(("ln_f.bias".into(), "ln_f.bias".into(), false));
    v
}

/// The kiln names of block `i`'s query, key and value projections, in `c_attn`'s column order.
fn c_attn_parts(i: usize) -> [String; 3] {
    ["q", "k", "v"].map(|p| format!("blocks.{i}.attn.{p}_proj"))
}

/// The GELU form of `activation_function`.
fn gelu_form(cfg: &HfConfig) -> Result<GeluForm> {
    let act = cfg.str_or("activation_function", "gelu_new")?;
    match act.as_str() {
        "gelu_new" | "gelu_pytorch_tanh" => Ok(GeluForm::Tanh),
        "gelu" => Ok(GeluForm::Erf),
        other => Err(cfg.unsupported(
            "activation_function",
            &format!("{other:?} is not supported (gelu_new, gelu_pytorch_tanh or gelu)"),
        )),
    }
}

/// Build kiln's [`Gpt`] from a GPT-2 config.json and its weights (the [`super::BuildFn`] of
/// `GPT2LMHeadModel`; see the module notes).
pub fn build(gpu: &Arc<Gpu>, cfg: &HfConfig, w: &mut HfWeights) -> Result<Gpt> {
    let c = cfg.usize("n_embd")?;
    let n_head = cfg.usize("n_head")?;
    let n_layer = cfg.usize("n_layer")?;
    let vocab = cfg.usize("vocab_size")?;
    let context = cfg.usize("n_positions")?;
    if c % n_head != 0 {
        return Err(cfg.unsupported(
            "n_head",
            &format!("n_embd {c} is not a multiple of {n_head}"),
        ));
    }
    if cfg.usize_or("n_inner", 4 * c)? != 4 * c {
        return Err(cfg.unsupported(
            "n_inner",
            &format!("kiln's GPT has an MLP of 4 n_embd = {}", 4 * c),
        ));
    }
    if !cfg.bool_or("scale_attn_weights", true)?
        || cfg.bool_or("scale_attn_by_inverse_layer_idx", false)?
    {
        return Err(cfg.unsupported(
            "scale_attn_weights",
            "kiln scales attention by 1 / sqrt(head dim) only (scale_attn_weights true, \
             scale_attn_by_inverse_layer_idx false)",
        ));
    }
    let gelu = gelu_form(cfg)?;
    let eps = cfg.f32_or("layer_norm_epsilon", 1e-5)?;
    let tied = cfg.bool_or("tie_word_embeddings", true)?;
    let gcfg = GptConfig {
        vocab_size: vocab,
        n_layer,
        n_head,
        n_kv_head: n_head,
        d_model: c,
        context,
        dropout: 0.0,
        rope: false,
    };
    let mut gpt = Gpt::new_on(gpu, gcfg)?;
    for b in &mut gpt.blocks {
        b.ln1 = Norm::Layer(LayerNorm::new_on(gpu, c, eps, true)?);
        b.ln2 = Norm::Layer(LayerNorm::new_on(gpu, c, eps, true)?);
        if let FeedForward::Gelu(mlp) = &mut b.mlp {
            mlp.gelu = gelu;
        }
    }
    gpt.ln_f = Norm::Layer(LayerNorm::new_on(gpu, c, eps, true)?);

    let prefix = if w.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    w.drop_where(|n| {
        (n.ends_with(".attn.bias") && !n.contains("c_attn")) || n.ends_with(".attn.masked_bias")
    });
    let params: BTreeMap<String, Tensor> = gpt.named_parameters().into_iter().collect();
    let set = |name: &str, values: &[f32]| -> Result<()> {
        let t = &params[name];
        t.copy_from(&Tensor::from_slice_on(gpu, values, t.shape())?)
    };
    for (k, h, transposed) in plain_names(n_layer) {
        let shape = params[&k].shape().to_vec();
        if transposed {
            let v = w.take(&format!("{prefix}{h}"), &[shape[1], shape[0]])?;
            set(&k, &transpose(&v, shape[1], shape[0]))?;
        } else {
            set(&k, &w.take(&format!("{prefix}{h}"), &shape)?)?;
        }
    }
    for i in 0..n_layer {
        let h = format!("{prefix}h.{i}.attn.c_attn");
        let weight = transpose(&w.take(&format!("{h}.weight"), &[c, 3 * c])?, c, 3 * c); // (3C, C)
        let bias = w.take(&format!("{h}.bias"), &[3 * c])?;
        for (j, part) in c_attn_parts(i).iter().enumerate() {
            set(
                &format!("{part}.weight"),
                &weight[j * c * c..(j + 1) * c * c],
            )?;
            set(&format!("{part}.bias"), &bias[j * c..(j + 1) * c])?;
        }
    }
    let wte = params["tok_emb.weight"].to_vec::<f32>()?;
    let head = if !tied || w.contains("lm_head.weight") {
        w.take("lm_head.weight", &[vocab, c])?
    } else {
        wte
    };
    set("lm_head.weight", &head)?;
    Ok(gpt)
}

/// The kiln layers a GPT-2 module of a PEFT adapter feeds (the [`super::peft::ModuleMap`] of
/// `GPT2LMHeadModel`): `h.N.attn.c_attn` the query, key and value projections (rows C each of
/// lora_B), `h.N.attn.c_proj` `o_proj`, `h.N.mlp.c_fc` `fc1`, `h.N.mlp.c_proj` `fc2`.
pub fn peft_parts(module: &str, cfg: &GptConfig) -> Option<Vec<Part>> {
    let rest = module.strip_prefix("transformer.").unwrap_or(module);
    let (i, sub) = rest.strip_prefix("h.")?.split_once('.')?;
    let i: usize = i.parse().ok().filter(|&i| i < cfg.n_layer)?;
    let c = cfg.d_model;
    let one = |p: &str, n: usize| {
        Some(vec![Part {
            path: format!("blocks.{i}.{p}"),
            rows: 0..n,
        }])
    };
    match sub {
        "attn.c_attn" => Some(
            c_attn_parts(i)
                .into_iter()
                .enumerate()
                .map(|(j, path)| Part {
                    path,
                    rows: j * c..(j + 1) * c,
                })
                .collect(),
        ),
        "attn.c_proj" => one("attn.o_proj", c),
        "mlp.c_fc" => one("mlp.fc1", 4 * c),
        "mlp.c_proj" => one("mlp.fc2", c),
        _ => None,
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportReport {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// Whether the head was written as tied to the token table.
    pub tied: bool,
    /// Why tokenizer files were left out, when they were.
    pub note: Option<String>,
}

/// Write `gpt` (learned positions, plain multi-head attention) into `dir` as a Hugging Face
/// GPT-2 directory: config.json, model.safetensors (HF names, Conv1D transposes, fused
/// `c_attn`), and with a byte-level BPE `tokenizer` also tokenizer.json and tokenizer_config.json.
/// A GPT with RoPE or grouped-query attention has no GPT-2 layout and is refused.
pub fn export(gpt: &Gpt, tokenizer: Option<&dyn Tokenizer>, dir: &Path) -> Result<ExportReport> {
    let g = *gpt.config();
    if g.rope || g.n_kv_head != g.n_head {
        return Err(Error::Config(format!(
            "this GPT uses {}: GPT-2's layout has learned positions and one key/value head per \
             query head (a Llama-layout export is what such a model needs)",
            if g.rope {
                "rotary positions (RoPE)"
            } else {
                "grouped-query attention"
            }
        )));
    }
    let gelu = match gpt.blocks.first().map(|b| &b.mlp) {
        Some(FeedForward::Gelu(mlp)) => mlp.gelu,
        Some(FeedForward::SwiGlu(_)) => {
            return Err(Error::Config(
                "this GPT has Llama's SwiGLU MLP and RMSNorm: GPT-2's layout cannot hold it \
                 (models::hf::llama::save_dir writes the Llama layout)"
                    .into(),
            ));
        }
        None => GeluForm::Tanh,
    };
    let params: BTreeMap<String, Tensor> = gpt.named_parameters().into_iter().collect();
    let host = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = &params[name];
        Ok((t.shape().to_vec(), t.to_vec::<f32>()?))
    };
    let mut tensors: Vec<(String, HostTensor)> = Vec::new();
    let mut put = |name: String, values: &[f32], shape: &[usize]| {
        tensors.push((
            format!("transformer.{name}"),
            HostTensor::from_f32(values, shape),
        ));
    };
    for (k, h, transposed) in plain_names(g.n_layer) {
        let (shape, v) = host(&k)?;
        if transposed {
            put(h, &transpose(&v, shape[0], shape[1]), &[shape[1], shape[0]]);
        } else {
            put(h, &v, &shape);
        }
    }
    let c = g.d_model;
    for i in 0..g.n_layer {
        let (mut weight, mut bias) = (Vec::with_capacity(3 * c * c), Vec::with_capacity(3 * c));
        for part in c_attn_parts(i) {
            weight.extend(host(&format!("{part}.weight"))?.1);
            bias.extend(host(&format!("{part}.bias"))?.1);
        }
        put(
            format!("h.{i}.attn.c_attn.weight"),
            &transpose(&weight, 3 * c, c),
            &[c, 3 * c],
        );
        put(format!("h.{i}.attn.c_attn.bias"), &bias, &[3 * c]);
    }
    let (head_shape, head) = host("lm_head.weight")?;
    let tied = head == host("tok_emb.weight")?.1;
    if !tied {
        tensors.push((
            "lm_head.weight".into(),
            HostTensor::from_f32(&head, &head_shape),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| crate::error::io_err(dir, e))?;
    let mut report = ExportReport {
        tied,
        ..Default::default()
    };
    let eos = tokenizer.and_then(|t| t.eos_id());
    let config = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": g.vocab_size,
        "n_positions": g.context,
        "n_embd": c,
        "n_layer": g.n_layer,
        "n_head": g.n_head,
        "n_inner": null,
        "activation_function": if gelu == GeluForm::Erf { "gelu" } else { "gelu_new" },
        "layer_norm_epsilon": gpt.ln_f.eps(),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "use_cache": true,
        "tie_word_embeddings": tied,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    let write_json = |name: &str, v: &serde_json::Value| -> Result<PathBuf> {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        crate::io::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    };
    report.files.push(write_json("config.json", &config)?);
    let st = dir.join("model.safetensors");
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write(&st, &tensors, &meta)?;
    report.files.push(st);
    match tokenizer {
        Some(t) if t.kind() == "bpe" => {
            let special = t
                .eos_id()
                .and_then(|id| t.id_to_token(id))
                .unwrap_or(ENDOFTEXT);
            let cfg_path = write_json(
                "tokenizer_config.json",
                &json!({
                    "tokenizer_class": "GPT2Tokenizer",
                    "model_max_length": g.context,
                    "bos_token": special,
                    "eos_token": special,
                    "unk_token": special,
                    "add_prefix_space": false,
                    "clean_up_tokenization_spaces": false,
                }),
            )?;
            report.files.push(cfg_path);
            let path = dir.join("tokenizer.json");
            t.save(&path)?;
            report.files.push(path);
        }
        Some(t) => {
            report.note = Some(format!(
                "the run's {} tokenizer has no Hugging Face form (byte-level BPE has: kiln \
                 train --tokenizer bpe); no tokenizer files written",
                t.kind()
            ))
        }
        None => report.note = Some("the run has no tokenizer; no tokenizer files written".into()),
    }
    Ok(report)
}
