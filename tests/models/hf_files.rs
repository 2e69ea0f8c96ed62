//! Hugging Face GPT-2 directories without Python: a random kiln GPT exported as GPT-2 loads back
//! with the same logits (from one model.safetensors and from a sharded index), and broken
//! directories are refused naming the file and the field or tensor.

use std::path::{Path, PathBuf};

use crate::cli_util::*;
use crate::common::*;

use kiln::io::safetensors::{self as st, HostTensor};
use kiln::models::hf;
use kiln::models::{Gpt, GptConfig};
use kiln::nn::Module;

/// 3 blocks of width 12 (3 heads), context 9, vocabulary 23: awkward sizes.
fn config() -> GptConfig {
    GptConfig {
        vocab_size: 23,
        n_layer: 3,
        n_head: 3,
        n_kv_head: 3,
        d_model: 12,
        context: 9,
        dropout: 0.0,
        rope: false,
    }
}

/// A GPT with every parameter random (LayerNorm weights and biases too).
fn random_gpt(cfg: GptConfig) -> Gpt {
    let mut gpt = Gpt::new_on(&gpu(), cfg).unwrap();
    for (i, (_, t)) in gpt.named_parameters().into_iter().enumerate() {
        let v = rand_signed_away_from_zero(t.numel(), seed("hf-files") + i as u64, 0.05, 0.6);
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
    gpt.set_training(false);
    gpt
}

fn logits(gpt: &Gpt, ids: &[u32]) -> Vec<f32> {
    let t = kiln::Tensor::from_slice_on(&gpu(), ids, &[1, ids.len()]).unwrap();
    gpt.forward(&t).unwrap().to_vec::<f32>().unwrap()
}

/// A fresh export of `gpt` in `scratch/name`.
fn exported(gpt: &Gpt, name: &str) -> PathBuf {
    let dir = scratch_in("hf-files", name);
    let r = hf::gpt2::export(gpt, None, &dir).unwrap();
    assert!(!r.tied, "kiln's head is its own");
    dir
}

fn load_err(dir: &Path) -> String {
    match hf::load_on(&gpu(), dir) {
        Ok(_) => panic!("{} should be refused", dir.display()),
        Err(e) => e.to_string(),
    }
}

const IDS: [u32; 7] = [4, 22, 0, 9, 13, 1, 17];

#[test]
fn gpt2_export_loads_back_with_the_same_logits() {
    let gpt = random_gpt(config());
    let dir = exported(&gpt, "roundtrip");
    let back = hf::load_on(&gpu(), &dir).unwrap();
    assert_eq!(back.architecture, "GPT2LMHeadModel");
    assert_eq!(*back.gpt.config(), config());
    assert!(back.tokenizer.is_none());
    let (a, b) = (logits(&gpt, &IDS), logits(&back.gpt, &IDS));
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-5, "max abs {d}");

    // The same weights split over two shards and an index.
    let f = st::read(&dir.join("model.safetensors")).unwrap();
    let names: Vec<&String> = f.tensors.keys().collect();
    let mut map = serde_json::Map::new();
    let mut shards: [Vec<(String, HostTensor)>; 2] = [Vec::new(), Vec::new()];
    for (i, n) in names.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        map.insert(n.to_string(), file.into());
        shards[i % 2].push((n.to_string(), f.tensors[*n].clone()));
    }
    for (i, s) in shards.iter().enumerate() {
        let p = dir.join(format!("model-0000{}-of-00002.safetensors", i + 1));
        st::write(&p, s, &Default::default()).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let sharded = hf::load_on(&gpu(), &dir).unwrap();
    assert_eq!(logits(&sharded.gpt, &IDS), b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrite `dir/config.json` through `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Rewrite `dir/model.safetensors` through `edit`.
fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, HostTensor>),
) {
    let p = dir.join("model.safetensors");
    let mut f = st::read(&p).unwrap();
    edit(&mut f.tensors);
    let v: Vec<(String, HostTensor)> = f.tensors.into_iter().collect();
    st::write(&p, &v, &f.metadata).unwrap();
}

#[test]
fn broken_gpt2_directories_are_refused_naming_what() {
    let gpt = random_gpt(config());
    let dir = exported(&gpt, "broken");
    let fresh = || {
        let d = scratch_in("hf-files", "broken-copy");
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(dir.join(f), d.join(f)).unwrap();
        }
        d
    };

    let d = fresh();
    edit_config(&d, |v| {
        v.as_object_mut().unwrap().remove("n_embd");
    });
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("n_embd") && e.contains("missing"),
        "{e}"
    );

    let d = fresh();
    edit_config(&d, |v| {
        v["architectures"] = serde_json::json!(["FooForCausalLM"])
    });
    let e = load_err(&d);
    assert!(
        e.contains("architectures") && e.contains("FooForCausalLM"),
        "{e}"
    );
    assert!(
        e.contains("GPT2LMHeadModel"),
        "the error lists what loads: {e}"
    );

    let d = fresh();
    edit_config(&d, |v| v["activation_function"] = "relu".into());
    let e = load_err(&d);
    assert!(
        e.contains("activation_function") && e.contains("relu"),
        "{e}"
    );

    let d = fresh();
    let gone = "transformer.h.1.mlp.c_fc.weight";
    edit_weights(&d, |t| {
        t.remove(gone);
    });
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains(gone) && e.contains("missing"),
        "{e}"
    );

    let d = fresh();
    let bad = "transformer.h.0.attn.c_attn.bias";
    edit_weights(&d, |t| {
        t.insert(bad.into(), HostTensor::from_f32(&[0.5; 35], &[35]));
    });
    let e = load_err(&d);
    assert!(
        e.contains(bad) && e.contains("[35]") && e.contains("[36]"),
        "{e}"
    );

    let d = fresh();
    edit_weights(&d, |t| {
        t.insert(
            "transformer.h.7.attn.c_attn.weight".into(),
            HostTensor::from_f32(&[1.0], &[1]),
        );
    });
    let e = load_err(&d);
    assert!(e.contains("transformer.h.7.attn.c_attn.weight"), "{e}");

    let d = fresh();
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(e.contains("model.safetensors"), "{e}");

    // A GPT with RoPE has no GPT-2 layout.
    let rope = Gpt::new_on(
        &gpu(),
        GptConfig {
            rope: true,
            ..config()
        },
    )
    .unwrap();
    let e = hf::gpt2::export(&rope, None, &d.join("rope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("RoPE") && e.contains("Llama"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kiln_logits_refuses_bad_ids() {
    let dir = exported(&random_gpt(config()), "cli");
    let base = s(&dir);
    let e = fails(&["logits", "--base", base, "--ids", "1,x,3"]);
    assert!(e.contains("--ids") && e.contains("item 2"), "{e}");
    let e = fails(&["logits", "--base", base, "--ids", "1,23"]);
    assert!(e.contains("23") && e.contains("vocabulary of 23"), "{e}");
    let e = fails(&["logits", "--base", base, "--ids", "1,2,3,4,5,6,7,8,9,10"]);
    assert!(e.contains("context"), "{e}");
    let (ok, out, err) = kiln(&["logits", "--base", base, "--ids", "4,22,0"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("GPT2LMHeadModel") && out.lines().count() == 5,
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_with_a_hugging_face_base_matches_the_library() {
    use kiln::data::tokenizer::{BpeTokenizer, Tokenizer};
    let corpus = "the cat sat on the mat and the dog ran to the log. ".repeat(20);
    let tok = BpeTokenizer::train(&corpus, 280, 2).unwrap();
    let gpt = random_gpt(GptConfig {
        vocab_size: tok.vocab_size(),
        ..config()
    });
    let dir = scratch_in("hf-files", "generate");
    let r = hf::gpt2::export(&gpt, Some(&tok), &dir).unwrap();
    assert!(r.note.is_none(), "{:?}", r.note);
    assert_files(&dir, &["tokenizer.json", "tokenizer_config.json"]);
    let prompt = "the cat";
    let greedy = kiln::models::Sampling {
        temperature: 0.0,
        top_k: None,
        top_p: None,
        seed: 0,
    };
    // 12 new tokens: the window of 9 slides on the way.
    let want = gpt.generate(&tok.encode(prompt), 12, greedy).unwrap();
    let (ok, out, err) = kiln(&[
        "generate",
        "--base",
        s(&dir),
        "--prompt",
        prompt,
        "--max-tokens",
        "12",
        "--temperature",
        "0",
    ]);
    assert!(ok, "{err}");
    let text = format!("{prompt}{}\n", tok.decode(&want).unwrap());
    assert_eq!(out, text);
    let _ = std::fs::remove_dir_all(&dir);
}
