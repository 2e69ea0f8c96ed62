//! Hugging Face Llama (`LlamaForCausalLM`: Llama, TinyLlama, SmolLM, ...) as kiln's [`Gpt`] with
//! [`GptArch::llama`] options: the config, the tensor names both ways, and a directory reader
//! and writer.
//!
//! The surface:
//!
//! | item | does |
//! | --- | --- |
//! | [`config`] | a `config.json` value -> ([`GptConfig`], [`GptArch`]) |
//! | [`hf_to_kiln`], [`kiln_to_hf`] | one tensor name each way (`None`: not a Llama tensor) |
//! | [`load_dir`], [`load_dir_on`] | `config.json` + `model.safetensors` (or a sharded index) -> [`Gpt`] |
//! | [`save_dir`] | a Llama-style [`Gpt`] -> `config.json` + `model.safetensors` |
//!
//! Names (N a layer; kiln's on the right, see `models::gpt`):
//!
//! ```text
//! model.embed_tokens.weight                          tok_emb.weight          (V, C)
//! model.layers.N.input_layernorm.weight              blocks.N.ln1.weight     (C)
//! model.layers.N.self_attn.{q,k,v,o}_proj.weight     blocks.N.attn.{q,k,v,o}_proj.weight
//! model.layers.N.post_attention_layernorm.weight     blocks.N.ln2.weight     (C)
//! model.layers.N.mlp.{gate,up,down}_proj.weight      blocks.N.mlp.{gate,up,down}_proj.weight
//! model.norm.weight                                  ln_f.weight             (C)
//! lm_head.weight                                     lm_head.weight          (V, C), absent when tied
//! ```
//!
//! (`.bias` likewise with `attention_bias` / `mlp_bias`.) Hugging Face's Llama applies RoPE in the
//! rotate-half layout (first half of each head paired with the second), which is the layout of
//! kiln's `ops::rope`, so q and k weights are copied as they are, with no permutation. Old
//! checkpoints' `rotary_emb.inv_freq` buffers are skipped on load; with tied embeddings a stored
//! `lm_head.weight` is ignored (the head is the token table).
//!
//! Config fields: `hidden_size`, `intermediate_size`, `num_hidden_layers`,
//! `num_attention_heads` and `vocab_size` are required; the rest take transformers' defaults
//! (`num_key_value_heads` = heads, `rms_norm_eps` 1e-6, `rope_theta` 10,000,
//! `max_position_embeddings` 2048, `tie_word_embeddings` false, no biases). `hidden_act` must be
//! `silu`; `rope_scaling` may be absent, `default`, `linear` or `llama3`; anything else is an error
//! naming the file and the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kiln_kernels::Gpu;
use serde_json::{Value, json};

use crate::error::{Error, Result, io_err};
use crate::io::safetensors::{self as st, HostTensor};
use crate::models::{Gpt, GptArch, GptConfig};
use crate::nn::Module;
use crate::ops::rope::RopeScaling;

/// An f32 as the JSON number of its shortest decimal form (1e-6, not 9.99999997e-7).
fn num(x: f32) -> Value {
    json!(x.to_string().parse::<f64>().unwrap_or(x as f64))
}

fn field_err(file: &Path, field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: field `{field}` {msg}", file.display()))
}

fn get_usize(v: &Value, file: &Path, field: &str, default: Option<usize>) -> Result<usize> {
    match v.get(field) {
        None | Some(Value::Null) => default.ok_or_else(|| field_err(file, field, "is missing")),
        Some(x) => x
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| field_err(file, field, format!("must be a whole number, got {x}"))),
    }
}

fn get_f32(v: &Value, file: &Path, field: &str, default: f32) -> Result<f32> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_f64()
            .map(|n| n as f32)
            .ok_or_else(|| field_err(file, field, format!("must be a number, got {x}"))),
    }
}

fn get_bool(v: &Value, file: &Path, field: &str, default: bool) -> Result<bool> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_bool()
            .ok_or_else(|| field_err(file, field, format!("must be true or false, got {x}"))),
    }
}

/// The `rope_scaling` object of a config (`null` or absent: none).
fn rope_scaling(v: &Value, file: &Path) -> Result<RopeScaling> {
    let Some(s) = v.get("rope_scaling").filter(|s| !s.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| field_err(file, "rope_scaling.rope_type", "is missing"))?;
    let factor = |f: &str, d: Option<f32>| -> Result<f32> {
        let name = format!("rope_scaling.{f}");
        match s.get(f).and_then(Value::as_f64) {
            Some(x) => Ok(x as f32),
            None => d.ok_or_else(|| field_err(file, &name, "is missing or not a number")),
        }
    };
    let out = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: factor("factor", None)?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: factor("factor", None)?,
            low_freq_factor: factor("low_freq_factor", None)?,
            high_freq_factor: factor("high_freq_factor", None)?,
            original_max_position_embeddings: get_usize(
                s,
                file,
                "original_max_position_embeddings",
                None,
            )
            .map_err(|_| {
                field_err(
                    file,
                    "rope_scaling.original_max_position_embeddings",
                    "is missing",
                )
            })?,
        },
        other => {
            return Err(field_err(
                file,
                "rope_scaling.rope_type",
                format!("{other:?} is not supported (default, linear or llama3)"),
            ));
        }
    };
    out.check()
        .map_err(|e| field_err(file, "rope_scaling", e))?;
    Ok(out)
}

/// The size and architecture of the Llama model a `config.json` value `v` (read from `file`,
/// named in errors) describes. See the module notes for the fields.
pub fn config(v: &Value, file: &Path) -> Result<(GptConfig, GptArch)> {
    let n_head = get_usize(v, file, "num_attention_heads", None)?;
    let c = get_usize(v, file, "hidden_size", None)?;
    let hidden = get_usize(v, file, "intermediate_size", None)?;
    let cfg = GptConfig {
        vocab_size: get_usize(v, file, "vocab_size", None)?,
        n_layer: get_usize(v, file, "num_hidden_layers", None)?,
        n_head,
        n_kv_head: get_usize(v, file, "num_key_value_heads", Some(n_head))?,
        d_model: c,
        context: get_usize(v, file, "max_position_embeddings", Some(2048))?,
        dropout: 0.0,
        rope: true,
    };
    if n_head == 0 || c % n_head != 0 {
        return Err(field_err(
            file,
            "hidden_size",
            format!("({c}) must be a multiple of num_attention_heads ({n_head})"),
        ));
    }
    if let Some(d) = v.get("head_dim").and_then(Value::as_u64) {
        if d as usize != c / n_head {
            return Err(field_err(
                file,
                "head_dim",
                format!(
                    "({d}) must be hidden_size / num_attention_heads ({})",
                    c / n_head
                ),
            ));
        }
    }
    match v.get("hidden_act").and_then(Value::as_str) {
        None | Some("silu") => {}
        Some(a) => {
            return Err(field_err(
                file,
                "hidden_act",
                format!("{a:?} is not supported (silu)"),
            ));
        }
    }
    let mut arch = GptArch::llama(
        hidden,
        get_f32(v, file, "rms_norm_eps", 1e-6)?,
        get_f32(v, file, "rope_theta", 10_000.0)?,
    );
    arch.rope_scaling = rope_scaling(v, file)?;
    arch.tied_embeddings = get_bool(v, file, "tie_word_embeddings", false)?;
    arch.attention_bias = get_bool(v, file, "attention_bias", false)?;
    arch.mlp_bias = get_bool(v, file, "mlp_bias", false)?;
    Ok((cfg, arch))
}

/// The kiln name of a Hugging Face Llama tensor name (`None`: not a Llama parameter).
pub fn hf_to_kiln(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("tok_emb.weight".into()),
        "model.norm.weight" => return Some("ln_f.weight".into()),
        "lm_head.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (n, rest) = rest.split_once('.')?;
    n.parse::<usize>().ok()?;
    let inner = match rest {
        "input_layernorm.weight" => "ln1.weight".to_string(),
        "post_attention_layernorm.weight" => "ln2.weight".to_string(),
        _ => {
            let (module, param) = rest.rsplit_once('.')?;
            let kiln = match module {
                "self_attn.q_proj" | "self_attn.k_proj" | "self_attn.v_proj"
                | "self_attn.o_proj" => module.replace("self_attn.", "attn."),
                "mlp.gate_proj" | "mlp.up_proj" | "mlp.down_proj" => module.to_string(),
                _ => return None,
            };
            if param != "weight" && param != "bias" {
                return None;
            }
            format!("{kiln}.{param}")
        }
    };
    Some(format!("blocks.{n}.{inner}"))
}

/// The Hugging Face name of a kiln Llama-style [`Gpt`] tensor name (`None`: no Llama
/// counterpart, such as `pos_emb.weight` or a LayerNorm bias).
pub fn kiln_to_hf(name: &str) -> Option<String> {
    match name {
        "tok_emb.weight" => return Some("model.embed_tokens.weight".into()),
        "ln_f.weight" => return Some("model.norm.weight".into()),
        "lm_head.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blocks.")?;
    let (n, rest) = rest.split_once('.')?;
    n.parse::<usize>().ok()?;
    let inner = match rest {
        "ln1.weight" => "input_layernorm.weight".to_string(),
        "ln2.weight" => "post_attention_layernorm.weight".to_string(),
        _ => {
            let hf = rest
                .strip_prefix("attn.")
                .map(|r| format!("self_attn.{r}"))
                .or_else(|| rest.starts_with("mlp.").then(|| rest.to_string()))?;
            // Round trip: only names hf_to_kiln accepts.
            hf_to_kiln(&format!("model.layers.{n}.{hf}"))?;
            hf
        }
    };
    Some(format!("model.layers.{n}.{inner}"))
}

/// [`load_dir_on`] on the default device.
pub fn load_dir(dir: &Path) -> Result<Gpt> {
    load_dir_on(&crate::device()?, dir)
}

/// Load a Hugging Face Llama directory (`config.json`, `model.safetensors` or a sharded index;
/// f32, f16 or bf16 tensors) into a [`Gpt`] on `gpu`, in eval mode. A missing, unexpected or
/// mis-shaped tensor is an error naming the file and the tensors (in Hugging Face's names).
pub fn load_dir_on(gpu: &Arc<Gpu>, dir: &Path) -> Result<Gpt> {
    Ok(super::load_on(gpu, dir)?.gpt)
}

/// [`super::BuildFn`] of `LlamaForCausalLM` for [`super::load`]: the config through [`config`],
/// each parameter taken from `w` under its Hugging Face name ([`kiln_to_hf`]) with the shape
/// kiln's model gives it (a missing or mis-shaped tensor is an error naming file and tensor).
pub fn build(gpu: &Arc<Gpu>, c: &super::HfConfig, w: &mut super::HfWeights) -> Result<Gpt> {
    let (cfg, arch) = config(&c.json, &c.path)?;
    let gpt = Gpt::with_arch_on(gpu, cfg, arch)?;
    w.drop_where(|n| {
        n.ends_with(".rotary_emb.inv_freq") || arch.tied_embeddings && n == "lm_head.weight"
    });
    for (name, t) in gpt.named_parameters() {
        let hf = kiln_to_hf(&name).unwrap_or(name);
        let values = w.take(&hf, t.shape())?;
        t.copy_from(&crate::Tensor::from_slice_on(gpu, &values, t.shape())?)?;
    }
    Ok(gpt)
}

/// Write a Llama-style `gpt` (RMSNorm, SwiGLU, RoPE: see [`GptArch::llama`]) as a Hugging Face
/// directory that `LlamaForCausalLM.from_pretrained(dir)` loads: `config.json` and
/// `model.safetensors` (f32). The directory is created if needed; other models are refused.
pub fn save_dir(gpt: &Gpt, dir: &Path) -> Result<()> {
    let (cfg, arch) = (gpt.config(), gpt.arch());
    if !(arch.rms_norm && arch.swiglu && cfg.rope) {
        return Err(Error::Config(format!(
            "{}: only a Llama-style model (RMSNorm, SwiGLU MLP, RoPE) can be written as Llama",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut tensors = Vec::new();
    for (name, t) in gpt.named_parameters() {
        let hf = kiln_to_hf(&name).ok_or_else(|| {
            Error::Config(format!("{name}: no Llama tensor name for this parameter"))
        })?;
        tensors.push((hf, HostTensor::from_f32(&t.to_vec::<f32>()?, t.shape())));
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    st::write(&dir.join("model.safetensors"), &tensors, &meta)?;
    let scaling = match arch.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": num(factor)}),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({"rope_type": "llama3", "factor": num(factor),
                    "low_freq_factor": num(low_freq_factor),
                    "high_freq_factor": num(high_freq_factor),
                    "original_max_position_embeddings": original_max_position_embeddings}),
    };
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": arch.mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.context,
        "rms_norm_eps": num(arch.norm_eps),
        "rope_theta": num(arch.rope_theta),
        "rope_scaling": scaling,
        "tie_word_embeddings": arch.tied_embeddings,
        "attention_bias": arch.attention_bias,
        "mlp_bias": arch.mlp_bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| io_err(dir, e))?;
    crate::io::atomic::write_atomic(&dir.join("config.json"), text.as_bytes())
}
