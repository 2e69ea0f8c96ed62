//! kiln's Gpt with Llama options and `models::hf::llama` without Python: config parsing and
//! its errors, the name mapping both ways, tied embeddings, a directory round trip. The
//! comparison with transformers is in llama_python.rs.

use crate::common;

use std::path::Path;

use common::*;
use kiln::Tensor;
use kiln::models::hf::llama;
use kiln::models::{Gpt, GptArch, GptConfig};
use kiln::nn::Module;
use kiln::ops::rope::RopeScaling;
use serde_json::json;

fn tiny_config() -> serde_json::Value {
    json!({"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 23,
           "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 500.0,
           "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "tie_word_embeddings": true})
}

#[test]
fn config_reads_llama_fields_and_names_bad_ones() {
    let file = Path::new("dir/config.json");
    let (cfg, arch) = llama::config(&tiny_config(), file).unwrap();
    assert_eq!(
        cfg,
        GptConfig {
            vocab_size: 23,
            n_layer: 2,
            n_head: 4,
            n_kv_head: 2,
            d_model: 16,
            context: 32,
            dropout: 0.0,
            rope: true
        }
    );
    let mut want = GptArch::llama(40, 1e-5, 500.0);
    want.rope_scaling = RopeScaling::Linear { factor: 2.0 };
    want.tied_embeddings = true;
    assert_eq!(arch, want);
    let cases: [(&str, serde_json::Value, &str); 5] = [
        (
            "hidden_size",
            serde_json::Value::Null,
            "`hidden_size` is missing",
        ),
        (
            "rope_scaling",
            json!({"rope_type": "yarn", "factor": 2.0}),
            "rope_scaling.rope_type",
        ),
        (
            "rope_scaling",
            json!({"rope_type": "linear"}),
            "rope_scaling.factor",
        ),
        ("hidden_act", json!("gelu"), "`hidden_act`"),
        ("num_hidden_layers", json!("two"), "whole number"),
    ];
    for (field, value, needle) in cases {
        let mut v = tiny_config();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        let e = err_text(llama::config(&v, file));
        assert_mentions(&e, &["dir/config.json", needle]);
    }
}

#[test]
fn names_map_both_ways() {
    let (cfg, mut arch) = llama::config(&tiny_config(), Path::new("c.json")).unwrap();
    arch.tied_embeddings = false;
    let gpt = Gpt::with_arch_on(&gpu(), cfg, arch).unwrap();
    let names: Vec<String> = gpt.named_parameters().into_iter().map(|(n, _)| n).collect();
    // Embedding, final norm, head, and 9 per layer (2 norms, 4 attention, 3 MLP), no biases.
    assert_eq!(names.len(), 3 + 2 * 9, "{names:?}");
    for n in &names {
        let hf = llama::kiln_to_hf(n).unwrap_or_else(|| panic!("{n} has no HF name"));
        assert_eq!(llama::hf_to_kiln(&hf).as_deref(), Some(n.as_str()), "{hf}");
    }
    assert_eq!(
        llama::kiln_to_hf("blocks.1.mlp.gate_proj.weight").unwrap(),
        "model.layers.1.mlp.gate_proj.weight"
    );
    assert_eq!(
        llama::hf_to_kiln("model.layers.0.post_attention_layernorm.weight").unwrap(),
        "blocks.0.ln2.weight"
    );
    for other in [
        "model.layers.0.self_attn.rotary_emb.inv_freq",
        "pos_emb.weight",
        "x",
    ] {
        assert!(llama::hf_to_kiln(other).is_none() && llama::kiln_to_hf(other).is_none());
    }
}

/// Tied: one table serves the embedding and the head, and its gradient sums both uses.
#[test]
fn tied_head_is_the_token_table() {
    let (cfg, arch) = llama::config(&tiny_config(), Path::new("c.json")).unwrap();
    let gpt = Gpt::with_arch_on(&gpu(), cfg, arch).unwrap();
    assert!(
        gpt.named_parameters()
            .iter()
            .all(|(n, _)| n != "lm_head.weight")
    );
    let ids = Tensor::from_slice_on(&gpu(), &[1u32, 7, 22, 3], &[1, 4]).unwrap();
    gpt.forward(&ids)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    let g = gpt.tok_emb.weight.grad().unwrap().to_vec::<f32>().unwrap();
    // Row 5 is not among the ids: only the head's use reaches it.
    assert!(g[5 * 16..6 * 16].iter().any(|v| *v != 0.0));
}

#[test]
fn directory_round_trip_and_bad_files() {
    let root = std::env::temp_dir().join(format!("kiln-llama-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (cfg, arch) = llama::config(&tiny_config(), Path::new("c.json")).unwrap();
    let mut gpt = Gpt::with_arch_on(&gpu(), cfg, arch).unwrap();
    gpt.set_training(false);
    for (i, (_, t)) in gpt.named_parameters().into_iter().enumerate() {
        let v = rand_vec(t.numel(), seed("llama-rt") + i as u64, 0.5, 1.5);
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
    llama::save_dir(&gpt, &root).unwrap();
    let back = llama::load_dir_on(&gpu(), &root).unwrap();
    assert_eq!((back.config(), back.arch()), (gpt.config(), gpt.arch()));
    let ids = Tensor::from_slice_on(&gpu(), &[4u32, 0, 9, 9, 21], &[1, 5]).unwrap();
    assert_eq!(
        f32s(&gpt.forward(&ids).unwrap()),
        f32s(&back.forward(&ids).unwrap())
    );

    // A file without one tensor: the error names the file and the tensor.
    let st = root.join("model.safetensors");
    let f = kiln::io::safetensors::read(&st).unwrap();
    let kept: Vec<_> = f
        .tensors
        .into_iter()
        .filter(|(n, _)| n != "model.layers.1.mlp.up_proj.weight")
        .collect();
    kiln::io::safetensors::write(&st, &kept, &Default::default()).unwrap();
    let e = err_text(llama::load_dir_on(&gpu(), &root));
    assert_mentions(
        &e,
        &[
            "model.safetensors",
            "missing",
            "model.layers.1.mlp.up_proj.weight",
        ],
    );
    // A GPT-2-style model is not written as Llama.
    let e = err_text(llama::save_dir(
        &Gpt::new_on(&gpu(), small_gpt_config(9)).unwrap(),
        &root,
    ));
    assert_mentions(&e, &["Llama"]);
    let _ = std::fs::remove_dir_all(&root);
}
